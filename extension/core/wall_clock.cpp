#include "core/wall_clock.h"

#include <time.h>

namespace ebpfc {

static uint64_t read_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t WallClock::monotonic_ns() { return read_ns(CLOCK_MONOTONIC); }

void WallClock::refresh() {
  // Bracket the realtime read between two monotonic reads and take the middle.
  uint64_t m1 = read_ns(CLOCK_MONOTONIC);
  uint64_t r = read_ns(CLOCK_REALTIME);
  uint64_t m2 = read_ns(CLOCK_MONOTONIC);
  apply_sample(r - (m1 + (m2 - m1) / 2), m2 - m1);
}

bool WallClock::apply_sample(uint64_t sampled_offset_ns, uint64_t bracket_ns) {
  if (!have_offset_) {
    offset_ns_ = sampled_offset_ns;
    have_offset_ = true;
    return true;
  }
  if (bracket_ns > kMaxBracketNs) return false;
  uint64_t drift = sampled_offset_ns > offset_ns_ ? sampled_offset_ns - offset_ns_
                                                  : offset_ns_ - sampled_offset_ns;
  if (drift <= kMaxDriftNs) return false;
  offset_ns_ = sampled_offset_ns;
  return true;
}

}  // namespace ebpfc
