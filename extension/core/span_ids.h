// span_ids.h - random trace and span ids (W3C trace context: never all zero).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

// xoshiro256** seeded from getrandom(2): fast, no allocation, not for secrets.
class SpanIdGenerator {
 public:
  SpanIdGenerator();
  explicit SpanIdGenerator(uint64_t seed);
  void trace_id(uint8_t out[16]);
  void span_id(uint8_t out[8]);

 private:
  uint64_t next();
  void fill_nonzero(uint8_t* out, size_t n);
  uint64_t s_[4];
};

// Writes 2*n lowercase hex digits and a NUL into out.
void to_hex(const uint8_t* bytes, size_t n, char* out);

}  // namespace ebpfc
