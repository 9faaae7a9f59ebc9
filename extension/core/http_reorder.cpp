// http_reorder.cpp - bounded out-of-order segment store.
#include "core/http_reorder.h"

#include <cstring>

namespace ebpfc {

void HttpReorderBuffer::clear() {
  for (Slot& s : slots_) s.used = false;
  count_ = 0;
  end_ = 0;
}

void HttpReorderBuffer::compact() {
  // live slots by offset (at most kHttpReorderSegments: insertion sort)
  int order[kHttpReorderSegments];
  int n = 0;
  for (int i = 0; i < static_cast<int>(kHttpReorderSegments); i++) {
    if (!slots_[i].used) continue;
    int j = n++;
    while (j > 0 && slots_[order[j - 1]].offset > slots_[i].offset) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  uint32_t at = 0;
  for (int k = 0; k < n; k++) {
    Slot& s = slots_[order[k]];
    if (s.offset != at && s.data_len) std::memmove(bytes_ + at, bytes_ + s.offset, s.data_len);
    s.offset = at;
    at += s.data_len;
  }
  end_ = at;
}

bool HttpReorderBuffer::store(const HttpSegment& seg) {
  for (const Slot& s : slots_) {
    if (s.used && s.seq == seg.seq && s.segment_len >= seg.segment_len &&
        s.data_len >= seg.data_len)
      return true;
  }
  if (count_ == kHttpReorderSegments) return false;
  uint32_t len = seg.data_len;
  if (end_ + len > kHttpReorderBytes) compact();
  if (end_ + len > kHttpReorderBytes) {
    if (count_ != 0) return false;
    len = static_cast<uint32_t>(kHttpReorderBytes);
  }
  for (Slot& s : slots_) {
    if (s.used) continue;
    s.used = true;
    s.seq = seg.seq;
    s.segment_len = seg.segment_len;
    s.data_len = len;
    s.offset = end_;
    s.ts_ns = seg.ts_ns;
    s.at_start = seg.at_start;
    s.has_ack = seg.has_ack;
    s.ack = seg.ack;
    if (len) std::memcpy(bytes_ + end_, seg.data, len);
    end_ += len;
    count_++;
    return true;
  }
  return false;  // not reached: count_ < kHttpReorderSegments
}

int HttpReorderBuffer::earliest(uint32_t from) const {
  int best = -1;
  int64_t best_d = 0;
  for (int i = 0; i < static_cast<int>(kHttpReorderSegments); i++) {
    if (!slots_[i].used) continue;
    const int64_t d = static_cast<int32_t>(slots_[i].seq - from);
    if (best < 0 || d < best_d) {
      best = i;
      best_d = d;
    }
  }
  return best;
}

HttpSegment HttpReorderBuffer::get(int i) const {
  const Slot& s = slots_[i];
  HttpSegment seg;
  seg.seq = s.seq;
  seg.segment_len = s.segment_len;
  seg.data_len = s.data_len;
  seg.at_start = s.at_start;
  seg.has_ack = s.has_ack;
  seg.ack = s.ack;
  seg.ts_ns = s.ts_ns;
  seg.data = bytes_ + s.offset;
  return seg;
}

void HttpReorderBuffer::remove(int i) {
  if (!slots_[i].used) return;
  slots_[i].used = false;
  if (--count_ == 0) end_ = 0;
}

uint64_t HttpReorderBuffer::oldest_ts() const {
  uint64_t t = 0;
  bool any = false;
  for (const Slot& s : slots_) {
    if (s.used && (!any || s.ts_ns < t)) {
      t = s.ts_ns;
      any = true;
    }
  }
  return t;
}

}  // namespace ebpfc
