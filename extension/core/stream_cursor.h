// stream_cursor.h - where one direction of a followed TCP stream is, for the
// parsers of the database protocols: the next sequence number expected, and
// what each payload segment brings that was not seen (retransmitted and
// overlapping bytes cut off, holes measured).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "capture_abi.h"

namespace ebpfc {

// The part of a segment not seen before.
struct SegmentNews {
  const uint8_t* data = nullptr;  // its new bytes that were captured (the head)
  size_t len = 0;
  uint32_t seq = 0;       // the sequence number of data[0]
  uint32_t wire_len = 0;  // its new bytes on the wire: len, and what the head cut off
  uint32_t hole = 0;      // bytes never seen just before it (a capture loss)
  bool first = false;     // the first segment seen in this direction
  bool repeat = false;    // nothing new: a retransmission
  // The new bytes all lie beyond the captured head: they are a hole too
  // (counted in `hole`), and there is nothing to parse.
  bool beyond_head = false;
};

class StreamCursor {
 public:
  void reset() {
    valid_ = false;
    next_seq_ = 0;
  }

  // Cuts segment h against what was seen and moves past it.
  SegmentNews take(const ebpfc_payload_event& h) {
    SegmentNews n;
    n.data = h.data;
    n.len = std::min<uint32_t>(h.data_len, EBPFC_PAYLOAD_MAX);
    const uint32_t seg_len = std::max<uint32_t>(h.segment_len, static_cast<uint32_t>(n.len));
    n.seq = h.seq;
    if (!valid_) {
      valid_ = true;
      n.first = true;
    } else {
      const int32_t delta = static_cast<int32_t>(h.seq - next_seq_);
      if (delta < 0) {  // a retransmission, or an overlap: only what is new
        const uint32_t old = static_cast<uint32_t>(-static_cast<int64_t>(delta));
        if (old >= seg_len) {
          n.repeat = true;
          n.len = 0;
          return n;
        }
        const size_t drop = std::min<size_t>(old, n.len);
        n.data += drop;
        n.len -= drop;
        n.seq += old;
        if (old > drop) {  // the new part starts in bytes that were not captured
          n.beyond_head = true;
          n.hole = seg_len - old;
          n.len = 0;
          next_seq_ = n.seq + n.hole;
          return n;
        }
      } else if (delta > 0) {
        n.hole = static_cast<uint32_t>(delta);
      }
    }
    n.wire_len = seg_len - (n.seq - h.seq);
    next_seq_ = n.seq + n.wire_len;
    return n;
  }

 private:
  bool valid_ = false;
  uint32_t next_seq_ = 0;
};

}  // namespace ebpfc
