// wall_clock.h - converts kernel CLOCK_MONOTONIC timestamps to wall-clock time.
#pragma once

#include <cstdint>

namespace ebpfc {

// BPF programs stamp events with bpf_ktime_get_ns() (CLOCK_MONOTONIC). Spans
// need wall-clock time; one offset, refreshed explicitly, keeps every span of
// a batch on the same scale.
class WallClock {
 public:
  WallClock() { refresh(); }
  // Re-samples the offset between CLOCK_REALTIME and CLOCK_MONOTONIC.
  void refresh();
  int64_t to_unix_us(uint64_t monotonic_ns) const {
    return static_cast<int64_t>((monotonic_ns + offset_ns_) / 1000);
  }
  static uint64_t monotonic_ns();

 private:
  uint64_t offset_ns_ = 0;
};

}  // namespace ebpfc
