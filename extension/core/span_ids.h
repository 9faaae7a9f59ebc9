// span_ids.h - trace and span ids (W3C trace context: never all zero).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

// xoshiro256** seeded from getrandom(2): fast, no allocation, not for secrets.
class SpanIdGenerator {
 public:
  SpanIdGenerator();
  explicit SpanIdGenerator(uint64_t seed);
  // A trace id that starts with the time, as UUIDv7 does: 6 bytes of Unix
  // milliseconds (big-endian, so the hex sorts by time; before 1970 counts
  // as 0), then 10 random bytes. The trace_id b-tree then takes each new span
  // at its right edge instead of in a random leaf, where a span costs about
  // the same whatever the table's size. The random rightmost 7 bytes that W3C
  // trace context level 2 asks of a random trace id are there.
  void trace_id(uint8_t out[16], int64_t start_unix_us);
  void span_id(uint8_t out[8]);

 private:
  uint64_t next();
  void fill_nonzero(uint8_t* out, size_t n);
  uint64_t s_[4];
};

// Writes 2*n lowercase hex digits and a NUL into out.
void to_hex(const uint8_t* bytes, size_t n, char* out);

}  // namespace ebpfc
