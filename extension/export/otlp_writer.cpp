#include "export/otlp_writer.h"

#include <cstdio>
#include <cstring>

#include "core/text_sanitize.h"

namespace ebpfc::otlp {

std::string_view Writer::sanitize(const char* s, size_t n) {
  size_t i = 0;
  while (i < n && static_cast<unsigned char>(s[i]) >= 0x20 &&
         static_cast<unsigned char>(s[i]) < 0x7f)
    i++;
  if (i == n) return std::string_view(s, n);
  scratch_.resize(3 * n + 1);
  scratch_.resize(sanitize_utf8(s, n, &scratch_[0], scratch_.size()));
  return scratch_;
}

// ---- protobuf ---------------------------------------------------------------

namespace {
constexpr int kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5;
}  // namespace

void ProtobufWriter::clear() {
  len_ = 0;
  out_.resize(out_.capacity());
  lists_.clear();
  open_.clear();
}

void ProtobufWriter::raw(const void* p, size_t n) {
  std::memcpy(room(n), p, n);
  len_ += n;
}

void ProtobufWriter::varint(uint64_t v) {
  uint8_t* o = room(10);
  size_t k = 0;
  while (v >= 0x80) {
    o[k++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  o[k++] = static_cast<uint8_t>(v);
  len_ += k;
}

void ProtobufWriter::tag(int field, int wire_type) {
  varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}

void ProtobufWriter::begin(int field, const char*) {
  if (field <= 0) {  // the request itself: no tag, no length
    open_.push_back(SIZE_MAX);
    return;
  }
  tag(field, kLen);
  open_.push_back(len_);
  *room(1) = 0;  // the length, if it fits in one byte
  len_++;
}

void ProtobufWriter::end() {
  const size_t at = open_.back();
  open_.pop_back();
  if (at == SIZE_MAX) {
    out_.resize(len_);  // the request is whole
    return;
  }
  const size_t len = len_ - at - 1;
  uint8_t buf[10];
  size_t n = 0;
  uint64_t v = len;
  while (v >= 0x80) {
    buf[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<uint8_t>(v);
  if (n > 1) {
    room(n - 1);
    std::memmove(&out_[at + n], &out_[at + 1], len);
    len_ += n - 1;
  }
  std::memcpy(&out_[at], buf, n);
}

void ProtobufWriter::string(int field, const char*, const char* s, size_t n) {
  const std::string_view v = sanitize(s, n);
  tag(field, kLen);
  varint(v.size());
  raw(v.data(), v.size());
}

void ProtobufWriter::bytes(int field, const char*, const uint8_t* b, size_t n) {
  tag(field, kLen);
  varint(n);
  raw(b, n);
}

void ProtobufWriter::fixed64(int field, const char*, uint64_t v) {
  tag(field, kFixed64);
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
  raw(b, 8);
}

void ProtobufWriter::fixed32(int field, const char*, uint32_t v) {
  tag(field, kFixed32);
  uint8_t b[4];
  for (int i = 0; i < 4; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
  raw(b, 4);
}

void ProtobufWriter::uint(int field, const char*, uint64_t v) {
  tag(field, kVarint);
  varint(v);
}

void ProtobufWriter::int64(int field, const char*, int64_t v) {
  tag(field, kVarint);
  varint(static_cast<uint64_t>(v));
}

void ProtobufWriter::boolean(int field, const char*, bool v) {
  tag(field, kVarint);
  varint(v ? 1 : 0);
}

// ---- JSON -------------------------------------------------------------------

void JsonWriter::clear() {
  out_.clear();
  lists_.clear();
  first_.clear();
}

void JsonWriter::put(const char* s) { out_.insert(out_.end(), s, s + std::strlen(s)); }

void JsonWriter::key(const char* name) {
  if (first_.empty()) return;
  if (!first_.back()) out_.push_back(',');
  first_.back() = false;
  if (name == nullptr) return;
  out_.push_back('"');
  put(name);
  put("\":");
}

void JsonWriter::quoted(std::string_view s) {
  // json_string needs room for the worst case: every byte escaped (\u00XX)
  const size_t at = out_.size();
  out_.resize(at + 6 * s.size() + 3);
  const size_t n =
      json_string(s.data(), s.size(), reinterpret_cast<char*>(&out_[at]), out_.size() - at);
  out_.resize(at + n);
}

void JsonWriter::begin(int, const char* name) {
  key(name);
  out_.push_back('{');
  first_.push_back(true);
}

void JsonWriter::end() {
  out_.push_back('}');
  first_.pop_back();
}

void JsonWriter::open_list(const char* name) {
  key(name);
  out_.push_back('[');
  first_.push_back(true);
}

void JsonWriter::close_list() {
  out_.push_back(']');
  first_.pop_back();
}

void JsonWriter::string(int, const char* name, const char* s, size_t n) {
  key(name);
  quoted(sanitize(s, n));
}

void JsonWriter::bytes(int, const char* name, const uint8_t* b, size_t n) {
  static const char* d = "0123456789abcdef";
  key(name);
  out_.push_back('"');
  for (size_t i = 0; i < n; i++) {
    out_.push_back(static_cast<uint8_t>(d[b[i] >> 4]));
    out_.push_back(static_cast<uint8_t>(d[b[i] & 15]));
  }
  out_.push_back('"');
}

void JsonWriter::fixed64(int, const char* name, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "\"%llu\"", static_cast<unsigned long long>(v));
  key(name);
  put(buf);
}

void JsonWriter::fixed32(int, const char* name, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u", v);
  key(name);
  put(buf);
}

void JsonWriter::uint(int, const char* name, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
  key(name);
  put(buf);
}

void JsonWriter::int64(int, const char* name, int64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "\"%lld\"", static_cast<long long>(v));
  key(name);
  put(buf);
}

void JsonWriter::boolean(int, const char* name, bool v) {
  key(name);
  put(v ? "true" : "false");
}

}  // namespace ebpfc::otlp
