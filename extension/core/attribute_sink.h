// attribute_sink.h - where a span's attributes go: the attributes of a span
// are emitted once, as calls on a sink, and the sink decides the form: the
// worker's (pg/jsonb_attributes) builds the jsonb value directly, with no JSON
// text in between to print and parse again; the tests' writes JSON text
// (tests/unit/json_text_sink.h).
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

}  // namespace ebpfc
