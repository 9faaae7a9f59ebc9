// json_text_sink.h - a span's attributes as a JSON object text, for the
// unit tests and the fuzzers (the worker builds jsonb directly).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/attribute_sink.h"
#include "core/http_span.h"
#include "core/span.h"

namespace ebpfc {

// A bounded JSON object writer into a caller's buffer.
class JsonTextSink final : public AttributeSink {
 public:
  JsonTextSink(char* buf, size_t size);
  void string(const char* key, const char* s, size_t len) override;
  void number(const char* key, uint64_t v) override;
  void boolean(const char* key, bool v) override;
  void hex(const char* key, const uint8_t* bytes, size_t n) override;
  void begin_array(const char* key) override;
  void array_string(const char* s) override;
  void end_array() override;
  // Closes the object. Returns its length (buf NUL-terminated), or 0 (buf
  // empty) if it did not fit.
  size_t finish();

 private:
  bool put(const char* s, size_t n);
  void key(const char* k);
  void raw_value(const char* k, const char* v, size_t n);

  char* buf_;
  size_t size_;
  size_t used_ = 0;
  bool ok_ = true;
  bool first_ = true;
  bool first_in_array_ = true;
};

// The attributes of a tcp span, or of an http span (whose strings are in
// `text`), as JSON text in buf. Return the length, or 0 if buf is too small.
constexpr size_t kAttributesMax = 400;
constexpr size_t kHttpAttributesMax = 8192;
size_t format_tcp_attributes(const Span& span, char* buf, size_t size);
size_t format_http_attributes(const HttpSpan& span, const char* text, char* buf, size_t size);

}  // namespace ebpfc
