// disk_guard.h - how much free space the data directory's file system must
// keep, and when writing spans stops and resumes.
//
// ebpf_capture.min_free_disk is a size ("2GB"), a share of the file system
// ("5%"), or both ("5%,2GB": the smaller of the two, so that a large disk is
// not kept 5 % empty and a small one keeps its 5 %). "0" turns the guard off.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ebpfc {

struct MinFreeDisk {
  uint64_t bytes = 0;         // 0: no size given
  uint32_t percent_x100 = 0;  // hundredths of a percent; 0: no share given
};

// Parses a min_free_disk setting. Returns false with a message for the user
// in *error if it is not one.
bool parse_min_free_disk(std::string_view text, MinFreeDisk* out, std::string* error);

// The free bytes the rule asks for on a file system of `total` bytes (0:
// the guard is off).
uint64_t min_free_bytes(const MinFreeDisk& rule, uint64_t total);

// When writing spans stops and resumes. Below the threshold the launcher
// first drops the oldest partitions; if the space is still short when there
// is nothing left to drop, writing pauses. It resumes once the free space is
// back above the threshold by a margin (a tenth of it, at least 16 MiB), so
// that one checkpoint's worth of WAL does not make it flap.
class DiskGuard {
 public:
  // The free space measured now, and whether retention still has partitions
  // it may drop. Returns whether writing is paused after this reading.
  bool update(uint64_t free_bytes, uint64_t threshold, bool can_drop_more);
  bool paused() const { return paused_; }
  static bool low(uint64_t free_bytes, uint64_t threshold) {
    return threshold > 0 && free_bytes < threshold;
  }
  static uint64_t resume_at(uint64_t threshold);

 private:
  bool paused_ = false;
};

}  // namespace ebpfc
