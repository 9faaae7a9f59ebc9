// http_reorder.h - a bounded store for the segments of one direction that
// arrive beyond a hole in the sequence space, until the hole is filled or
// given up. Fixed capacity, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

constexpr size_t kHttpReorderSegments = 8;  // segments held per direction
constexpr size_t kHttpReorderBytes = 8192;  // their payload bytes per direction

// A segment as the kernel reports it: data_len bytes from seq, of a segment
// of segment_len bytes.
struct HttpSegment {
  uint32_t seq;
  uint32_t segment_len;
  uint32_t data_len;
  bool at_start;  // seq is where the segment began (not a trimmed piece)
  bool has_ack;
  uint32_t ack;  // its acknowledgement number: what its sender had of the other direction
  uint64_t ts_ns;
  const uint8_t* data;
};

class HttpReorderBuffer {
 public:
  void clear();
  bool empty() const { return count_ == 0; }
  size_t size() const { return count_; }

  // Stores a copy of s. A segment with the same seq and no more bytes than
  // one already held is dropped (true). False when there is no slot or no
  // room; when the buffer is empty, data that does not fit is cut (the cut
  // bytes count as not delivered).
  bool store(const HttpSegment& s);
  // The held segment that comes first in sequence order counted from `from`
  // (signed 32-bit distance), or -1.
  int earliest(uint32_t from) const;
  // Its data points into the buffer and stays valid until the next store().
  HttpSegment get(int i) const;
  void remove(int i);
  // Time of the oldest segment held (0 if none).
  uint64_t oldest_ts() const;

 private:
  struct Slot {
    uint32_t seq;
    uint32_t segment_len;
    uint32_t data_len;
    uint32_t offset;
    uint64_t ts_ns;
    uint32_t ack;
    bool used;
    bool at_start;
    bool has_ack;
  };
  void compact();

  Slot slots_[kHttpReorderSegments];
  uint32_t count_;
  uint32_t end_;  // bytes of bytes_ allocated (live or not)
  uint8_t bytes_[kHttpReorderBytes];
};

}  // namespace ebpfc
