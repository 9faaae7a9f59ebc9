// http_traceparent.cpp - W3C traceparent (https://www.w3.org/TR/trace-context/)
// and B3 (https://github.com/openzipkin/b3-propagation).
#include "core/http_traceparent.h"

#include <cstring>

namespace ebpfc {

namespace {

constexpr size_t kLen = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

// A lowercase hex digit's value, or -1 (W3C: HEXDIGLC; B3: lower-hex).
int hex_lc(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes 2*n lowercase hex digits; returns false on a bad digit or when all
// bytes are zero and nonzero is required.
bool decode(const char* s, size_t n, uint8_t* out, bool nonzero) {
  uint8_t any = 0;
  for (size_t i = 0; i < n; i++) {
    const int hi = hex_lc(s[2 * i]), lo = hex_lc(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
    any |= out[i];
  }
  return !nonzero || any != 0;
}

}  // namespace

bool parse_traceparent(const char* v, size_t len, TraceParent* out) {
  if (len != kLen) return false;
  if (v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  return decode(v + 3, 16, out->trace_id, true) && decode(v + 36, 8, out->parent_id, true) &&
         decode(v + 53, 1, &out->flags, false);
}

bool parse_b3_trace_id(const char* v, size_t len, uint8_t out[16]) {
  if (len == 32) return decode(v, 16, out, true);
  if (len != 16) return false;
  std::memset(out, 0, 8);
  return decode(v, 8, out + 8, true);
}

bool parse_b3_span_id(const char* v, size_t len, uint8_t out[8]) {
  return len == 16 && decode(v, 8, out, true);
}

bool parse_b3_sampled(const char* v, size_t len, bool* sampled) {
  if (len != 1 || (v[0] != '0' && v[0] != '1' && v[0] != 'd')) return false;
  *sampled = v[0] != '0';
  return true;
}

bool parse_b3_single(const char* v, size_t len, TraceParent* out) {
  // {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]
  const char* dash = static_cast<const char*>(std::memchr(v, '-', len));
  if (dash == nullptr) return false;  // a sampling state alone
  const size_t trace_len = static_cast<size_t>(dash - v);
  if (!parse_b3_trace_id(v, trace_len, out->trace_id)) return false;
  const char* s = dash + 1;
  size_t rest = len - trace_len - 1;
  if (rest < 16 || !parse_b3_span_id(s, 16, out->parent_id)) return false;
  out->flags = 1;
  if (rest == 16) return true;
  if (s[16] != '-') return false;
  s += 17;
  rest -= 17;
  bool sampled = true;
  if (rest < 1 || !parse_b3_sampled(s, 1, &sampled)) return false;
  out->flags = sampled ? 1 : 0;
  if (rest == 1) return true;
  uint8_t parent[8];
  return rest == 18 && s[1] == '-' && parse_b3_span_id(s + 2, 16, parent);
}

}  // namespace ebpfc
