// otlp_writer.h - writes OTLP messages in either of the encodings OTLP/HTTP
// accepts: protobuf (binary wire format) or JSON (the protobuf JSON mapping
// with OTLP's exceptions: trace and span ids as hex, enums as numbers).
//
// The encoder (otlp_encode) walks its messages once, naming each field by
// number (protobuf) and by lowerCamelCase name (JSON); each writer uses what
// its encoding needs. A repeated field is opened with begin_list() and its
// elements are begin()/end() (messages) or value calls with name nullptr.
//
// The protobuf writer reserves one byte for a nested message's length and
// moves the message up when its length needs more, so it writes in one pass.
// Strings are sanitized to valid UTF-8 (protobuf strings must be; receivers
// refuse the whole request otherwise).
//
// PostgreSQL-free. The output buffer keeps its capacity from one request to
// the next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace ebpfc::otlp {

class Writer {
 public:
  virtual ~Writer() = default;
  virtual void clear() = 0;
  // A nested message: field `field` (protobuf), key `name` (JSON; nullptr
  // for an element of a list or the top level).
  virtual void begin(int field, const char* name) = 0;
  virtual void end() = 0;
  void begin_list(int field, const char* name) {
    lists_.push_back(field);
    open_list(name);
  }
  void end_list() {
    lists_.pop_back();
    close_list();
  }
  // The field number of the innermost open list (its elements' tag).
  int list_field() const { return lists_.empty() ? 0 : lists_.back(); }
  // string: bytes that may come from the wire (sanitized here)
  virtual void string(int field, const char* name, const char* s, size_t n) = 0;
  // bytes: trace and span ids (JSON: lowercase hex)
  virtual void bytes(int field, const char* name, const uint8_t* b, size_t n) = 0;
  virtual void fixed64(int field, const char* name, uint64_t v) = 0;  // JSON: a decimal string
  virtual void fixed32(int field, const char* name, uint32_t v) = 0;
  virtual void uint(int field, const char* name, uint64_t v) = 0;  // varint, enums
  virtual void int64(int field, const char* name, int64_t v) = 0;  // JSON: a decimal string
  virtual void boolean(int field, const char* name, bool v) = 0;

  const std::vector<uint8_t>& data() const { return out_; }
  std::vector<uint8_t>& data() { return out_; }

 protected:
  virtual void open_list(const char* name) = 0;
  virtual void close_list() = 0;
  std::vector<uint8_t> out_;
  std::vector<int> lists_;
  std::string scratch_;  // sanitized strings
  // The bytes as valid UTF-8: themselves when they are printable ASCII
  // (nearly always), else a sanitized copy.
  std::string_view sanitize(const char* s, size_t n);
};

class ProtobufWriter final : public Writer {
 public:
  void clear() override;
  void begin(int field, const char* name) override;
  void end() override;
  void string(int field, const char* name, const char* s, size_t n) override;
  void bytes(int field, const char* name, const uint8_t* b, size_t n) override;
  void fixed64(int field, const char* name, uint64_t v) override;
  void fixed32(int field, const char* name, uint32_t v) override;
  void uint(int field, const char* name, uint64_t v) override;
  void int64(int field, const char* name, int64_t v) override;
  void boolean(int field, const char* name, bool v) override;

 private:
  void open_list(const char*) override {}
  void close_list() override {}
  // Room for n more bytes at out_[len_] (out_ grows by doubling; its size is
  // its capacity until the request ends, then len_).
  uint8_t* room(size_t n) {
    if (len_ + n > out_.size()) out_.resize(std::max(2 * out_.size(), len_ + n + 4096));
    return out_.data() + len_;
  }
  void tag(int field, int wire_type);
  void varint(uint64_t v);
  void raw(const void* p, size_t n);
  size_t len_ = 0;
  std::vector<size_t> open_;  // where each open message's reserved length byte is
};

class JsonWriter final : public Writer {
 public:
  void clear() override;
  void begin(int field, const char* name) override;
  void end() override;
  void string(int field, const char* name, const char* s, size_t n) override;
  void bytes(int field, const char* name, const uint8_t* b, size_t n) override;
  void fixed64(int field, const char* name, uint64_t v) override;
  void fixed32(int field, const char* name, uint32_t v) override;
  void uint(int field, const char* name, uint64_t v) override;
  void int64(int field, const char* name, int64_t v) override;
  void boolean(int field, const char* name, bool v) override;

 private:
  void open_list(const char* name) override;
  void close_list() override;
  void key(const char* name);  // a comma if needed, then "name": (or nothing for elements)
  void put(const char* s);
  void quoted(std::string_view s);
  std::vector<bool> first_;  // per open object or list: nothing written in it yet
};

}  // namespace ebpfc::otlp
