#include "core/trace_links.h"

#include <cstring>

namespace ebpfc {

namespace {

size_t pow2_at_least(size_t n) {
  size_t p = 16;
  while (p < n) p <<= 1;
  return p;
}

bool same8(const uint8_t* a, const uint8_t* b) { return std::memcmp(a, b, 8) == 0; }
bool same16(const uint8_t* a, const uint8_t* b) { return std::memcmp(a, b, 16) == 0; }

}  // namespace

TraceLinks::TraceLinks(const TraceLinksOptions& options) : options_(options) {
  if (options_.capacity < 16) options_.capacity = 16;
  const size_t n = options_.capacity;
  entries_.resize(n);
  for (Entry& e : entries_) std::memset(&e, 0, sizeof(e));
  buckets_.assign(pow2_at_least(2 * n), kNone);
  fifo_.assign(n, kNone);
  free_.reserve(n);
  for (size_t i = n; i > 0; i--) free_.push_back(static_cast<uint32_t>(i - 1));
}

void TraceLinks::set_options(const TraceLinksOptions& options) {
  options_.mode = options.mode;
  options_.keep_closed_ns = options.keep_closed_ns;
}

uint32_t TraceLinks::bucket_of(const uint8_t trace_id[16]) const {
  // Trace ids are random (or start with a time, then random): their last
  // eight bytes hash well enough.
  uint64_t h;
  std::memcpy(&h, trace_id + 8, sizeof(h));
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h & (buckets_.size() - 1));
}

void TraceLinks::unlink(uint32_t i) {
  Entry& e = entries_[i];
  uint32_t* at = &buckets_[bucket_of(e.trace_id)];
  while (*at != kNone && *at != i) at = &entries_[*at].next;
  if (*at == i) *at = e.next;
  e.used = false;
  e.gen++;
  used_--;
}

// Frees the oldest entries whose requests ended more than keep_closed_ns ago.
void TraceLinks::expire(uint64_t now_ns) {
  while (used_ > 0) {
    const uint32_t i = fifo_[fifo_head_];
    const Entry& e = entries_[i];
    if (e.closed_ns == 0 || now_ns < e.closed_ns + options_.keep_closed_ns) return;
    unlink(i);
    free_.push_back(i);
    fifo_head_ = (fifo_head_ + 1) % fifo_.size();
  }
}

// An entry to fill: a free one, else (every entry in use) the oldest whose
// request has ended; entries of open requests met on the way become the
// newest (with every entry in use, the ring's head and tail are one slot).
// After kScan open ones, the oldest is dropped, open or not.
uint32_t TraceLinks::take_entry() {
  if (!free_.empty()) {
    const uint32_t i = free_.back();
    free_.pop_back();
    return i;
  }
  constexpr int kScan = 64;
  for (int n = 0;; n++) {
    const uint32_t i = fifo_[fifo_head_];
    if (entries_[i].closed_ns != 0 || n == kScan) {
      if (entries_[i].closed_ns == 0) counters_.evicted_open++;
      unlink(i);
      fifo_head_ = (fifo_head_ + 1) % fifo_.size();
      return i;
    }
    fifo_head_ = (fifo_head_ + 1) % fifo_.size();  // still open: it stays, as the newest
  }
}

void TraceLinks::open(const uint8_t trace_id[16], const uint8_t caller_id[8],
                      const uint8_t client[16], const uint8_t server[16], uint64_t now_ns,
                      SpanIdGenerator& ids, TraceIds* out) {
  counters_.requests++;
  out->assigned = true;
  out->resend_count = 0;
  out->link = 0;
  out->link_gen = 0;
  if (options_.mode == TraceSpanIds::Own) {
    ids.span_id(out->span_id);
    std::memcpy(out->parent_id, caller_id, 8);
    out->has_parent = true;
    return;
  }
  expire(now_ns);
  uint32_t forwarded = kNone, parent = kNone;
  bool taken = false;
  unsigned resends = 0;
  for (uint32_t i = buckets_[bucket_of(trace_id)]; i != kNone; i = entries_[i].next) {
    const Entry& e = entries_[i];
    if (!same16(e.trace_id, trace_id)) continue;
    const bool open = e.closed_ns == 0;
    if (same8(e.span_id, caller_id)) taken = true;
    if (same8(e.caller_id, caller_id)) {
      if (!same16(e.client, client)) {
        if (open && (forwarded == kNone || e.opened > entries_[forwarded].opened)) forwarded = i;
      } else {
        resends++;
      }
    }
    if (open && same16(e.server, client) && (parent == kNone || e.opened > entries_[parent].opened))
      parent = i;
  }
  if (forwarded != kNone) {
    parent = forwarded;
    counters_.forwarded++;
  }
  out->has_parent = parent != kNone;
  if (out->has_parent) {
    std::memcpy(out->parent_id, entries_[parent].span_id, 8);
    counters_.with_parent++;
  } else {
    std::memset(out->parent_id, 0, 8);
  }
  if (taken) {
    ids.span_id(out->span_id);
    counters_.resent++;
    if (forwarded == kNone) out->resend_count = static_cast<uint8_t>(resends > 255 ? 255 : resends);
  } else {
    std::memcpy(out->span_id, caller_id, 8);
  }

  const uint32_t i = take_entry();
  Entry& e = entries_[i];
  std::memcpy(e.trace_id, trace_id, 16);
  std::memcpy(e.caller_id, caller_id, 8);
  std::memcpy(e.span_id, out->span_id, 8);
  std::memcpy(e.client, client, 16);
  std::memcpy(e.server, server, 16);
  e.opened = next_open_++;
  e.closed_ns = 0;
  e.used = true;
  const uint32_t b = bucket_of(trace_id);
  e.next = buckets_[b];
  buckets_[b] = i;
  fifo_[(fifo_head_ + used_) % fifo_.size()] = i;
  used_++;
  out->link = i + 1;
  out->link_gen = e.gen;
}

void TraceLinks::close(const TraceIds& ids, uint64_t now_ns) {
  if (ids.link == 0 || ids.link > entries_.size()) return;
  Entry& e = entries_[ids.link - 1];
  if (!e.used || e.gen != ids.link_gen || e.closed_ns != 0) return;
  e.closed_ns = now_ns != 0 ? now_ns : 1;
}

}  // namespace ebpfc
