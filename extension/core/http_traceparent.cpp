// http_traceparent.cpp - W3C traceparent (https://www.w3.org/TR/trace-context/).
#include "core/http_traceparent.h"

namespace ebpfc {

namespace {

constexpr size_t kLen = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

// A lowercase hex digit's value, or -1 (W3C: HEXDIGLC).
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

}  // namespace ebpfc
