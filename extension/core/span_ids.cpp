#include "core/span_ids.h"

#include <sys/random.h>

#include <cstring>
#include <ctime>

namespace ebpfc {

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

SpanIdGenerator::SpanIdGenerator() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), 0) != static_cast<ssize_t>(sizeof(seed))) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 20);
  }
  for (auto& s : s_) s = splitmix64(seed);
}

SpanIdGenerator::SpanIdGenerator(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t SpanIdGenerator::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

void SpanIdGenerator::fill_nonzero(uint8_t* out, size_t n) {
  for (;;) {
    uint8_t any = 0;
    for (size_t i = 0; i < n; i += 8) {
      uint64_t r = next();
      size_t k = n - i < 8 ? n - i : 8;
      std::memcpy(out + i, &r, k);
    }
    for (size_t i = 0; i < n; i++) any |= out[i];
    if (any) return;
  }
}

void SpanIdGenerator::trace_id(uint8_t out[16], int64_t start_unix_us) {
  const uint64_t ms = start_unix_us > 0 ? static_cast<uint64_t>(start_unix_us) / 1000 : 0;
  for (int i = 0; i < 6; i++) out[i] = static_cast<uint8_t>(ms >> (8 * (5 - i)));
  fill_nonzero(out + 6, 10);
}
void SpanIdGenerator::span_id(uint8_t out[8]) { fill_nonzero(out, 8); }

void to_hex(const uint8_t* bytes, size_t n, char* out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0x0f];
  }
  out[2 * n] = '\0';
}

}  // namespace ebpfc
