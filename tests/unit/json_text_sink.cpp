#include "json_text_sink.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "core/span_ids.h"
#include "core/span_attributes.h"
#include "core/text_sanitize.h"

namespace ebpfc {

namespace {
// The longest string value an emitter passes (a Host header, a tracestate,
// a method): http_exchange.h bounds them well below this.
constexpr size_t kStringMax = 2048;
}  // namespace

JsonTextSink::JsonTextSink(char* buf, size_t size) : buf_(buf), size_(size) { ok_ = put("{", 1); }

void JsonTextSink::number(const char* k, uint64_t v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
  raw_value(k, tmp, static_cast<size_t>(n));
}

void JsonTextSink::boolean(const char* k, bool v) { raw_value(k, v ? "true" : "false", v ? 4 : 5); }

void JsonTextSink::string(const char* k, const char* s, size_t len) {
  char clean[kStringMax * 3 + 1];
  size_t n = sanitize_utf8(s, len, clean, sizeof(clean));
  // sanitize_utf8 leaves no control bytes: only '"' and '\\' double.
  char quoted[sizeof(clean) * 2 + 3];
  size_t q = json_string(clean, n, quoted, sizeof(quoted));
  if (q == 0) {
    ok_ = false;
    return;
  }
  raw_value(k, quoted, q);
}

void JsonTextSink::hex(const char* k, const uint8_t* bytes, size_t n) {
  char tmp[2 * 16 + 3];
  if (n > 16) {
    ok_ = false;
    return;
  }
  tmp[0] = '"';
  to_hex(bytes, n, tmp + 1);
  tmp[2 * n + 1] = '"';
  raw_value(k, tmp, 2 * n + 2);
}

void JsonTextSink::begin_array(const char* k) {
  key(k);
  ok_ = ok_ && put("[", 1);
  first_in_array_ = true;
}

void JsonTextSink::array_string(const char* s) {
  if (!first_in_array_) ok_ = ok_ && put(",", 1);
  first_in_array_ = false;
  ok_ = ok_ && put("\"", 1) && put(s, strlen(s)) && put("\"", 1);
}

void JsonTextSink::end_array() { ok_ = ok_ && put("]", 1); }

size_t JsonTextSink::finish() {
  ok_ = ok_ && put("}", 1);
  if (!ok_ || used_ >= size_) {
    if (size_ > 0) buf_[0] = '\0';
    return 0;
  }
  buf_[used_] = '\0';
  return used_;
}

bool JsonTextSink::put(const char* s, size_t n) {
  if (used_ + n >= size_) return false;
  std::memcpy(buf_ + used_, s, n);
  used_ += n;
  return true;
}

void JsonTextSink::key(const char* k) {
  if (!first_) ok_ = ok_ && put(",", 1);
  first_ = false;
  ok_ = ok_ && put("\"", 1) && put(k, strlen(k)) && put("\":", 2);
}

void JsonTextSink::raw_value(const char* k, const char* v, size_t n) {
  key(k);
  ok_ = ok_ && put(v, n);
}

size_t format_tcp_attributes(const Span& s, char* buf, size_t size) {
  if (size == 0) return 0;
  JsonTextSink j(buf, size);
  tcp_attributes(s, j);
  return j.finish();
}

size_t format_http_attributes(const HttpSpan& span, const char* text, char* buf, size_t size) {
  if (size == 0) return 0;
  JsonTextSink j(buf, size);
  http_attributes(span, text, j);
  return j.finish();
}

}  // namespace ebpfc
