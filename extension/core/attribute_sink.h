// attribute_sink.h - where a span's attributes go: the attributes of a span
// are emitted once, as calls on a sink, and the sink decides the form. The
// JSON text writer here serves the tests and the fuzzers; the worker's sink
// (pg/jsonb_attributes) builds the jsonb value directly, with no JSON text
// in between to print and parse again.
//
// Emitters (tcp_attributes, http_attributes) and sinks hold no objects with
// destructors on the stack: the worker's sink calls PostgreSQL, whose errors
// unwind with longjmp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

class AttributeSink {
 public:
  // Keys are ours (string literals). String values may be bytes from the
  // wire: the sink makes them valid (see text_sanitize.h).
  virtual void string(const char* key, const char* s, size_t len) = 0;
  virtual void number(const char* key, uint64_t v) = 0;
  virtual void boolean(const char* key, bool v) = 0;
  // bytes as lowercase hex, a string value
  virtual void hex(const char* key, const uint8_t* bytes, size_t n) = 0;
  // an array of strings (ours, not from the wire)
  virtual void begin_array(const char* key) = 0;
  virtual void array_string(const char* s) = 0;
  virtual void end_array() = 0;

 protected:
  ~AttributeSink() = default;
};

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

}  // namespace ebpfc
