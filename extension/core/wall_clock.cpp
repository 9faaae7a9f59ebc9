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
  offset_ns_ = r - (m1 + (m2 - m1) / 2);
}

}  // namespace ebpfc
