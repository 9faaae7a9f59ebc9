// wall_clock.h - converts kernel CLOCK_MONOTONIC timestamps to wall-clock time.
#pragma once

#include <cstdint>

namespace ebpfc {

// BPF programs stamp events with bpf_ktime_get_ns() (CLOCK_MONOTONIC). Spans
// need wall-clock time. The offset between the two clocks is re-sampled once
// per drain but only adopted when it has really moved (a clock step, or NTP
// slewing past kMaxDriftNs): every sample differs by some nanoseconds, and
// adopting each one would convert the same kernel timestamp to different
// microseconds in different drains (two spans that start together would not).
class WallClock {
 public:
  // An adopted offset is kept while new samples stay this close to it.
  static constexpr uint64_t kMaxDriftNs = 100000;
  // A sample whose realtime read took longer than this (the thread was
  // preempted between the reads) is too uncertain to use.
  static constexpr uint64_t kMaxBracketNs = 50000;

  WallClock() { refresh(); }
  // Samples the offset between CLOCK_REALTIME and CLOCK_MONOTONIC.
  void refresh();
  // Applies one sample: the offset it measured and how long the bracketing
  // monotonic reads took. Returns true when the offset in use changed.
  bool apply_sample(uint64_t sampled_offset_ns, uint64_t bracket_ns);
  int64_t to_unix_us(uint64_t monotonic_ns) const {
    return static_cast<int64_t>((monotonic_ns + offset_ns_) / 1000);
  }
  uint64_t offset_ns() const { return offset_ns_; }
  static uint64_t monotonic_ns();

 private:
  uint64_t offset_ns_ = 0;
  bool have_offset_ = false;
};

}  // namespace ebpfc
