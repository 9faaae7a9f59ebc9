#include "core/span_batch.h"

#include <algorithm>
#include <cstring>

namespace ebpfc {

void SpanBatch::set_max_bytes(size_t max_bytes) {
  max_bytes_ = max_bytes;
  tcp_.reserve(max_bytes_ / sizeof(Span));
  http_spans_.reserve(max_bytes_);
  pg_spans_.reserve(max_bytes_);
  reserve_flushing();
}

void SpanBatch::reserve_flushing() {
  flushing_tcp_.reserve(max_bytes_ / sizeof(Span));
  flushing_http_.reserve(max_bytes_);
  flushing_pg_.reserve(max_bytes_);
}

// The flush's spans count until the flush ends, written or not: their
// memory is held until then.
size_t SpanBatch::pending_bytes() const {
  return (tcp_.size() + flushing_tcp_.size()) * sizeof(Span) + http_spans_.bytes() +
         flushing_http_.bytes() + pg_spans_.bytes() + flushing_pg_.bytes();
}

size_t SpanBatch::reserved_bytes() const {
  return (tcp_.capacity() + flushing_tcp_.capacity()) * sizeof(Span) +
         http_spans_.capacity_bytes() + flushing_http_.capacity_bytes() +
         pg_spans_.capacity_bytes() + flushing_pg_.capacity_bytes();
}

void SpanBatch::note_first() {
  if (waiting() == 0) oldest_ns_ = WallClock::monotonic_ns();
}

void SpanBatch::after_http(size_t before) {
  if (http_spans_.size() > before && before + tcp_.size() + pg_spans_.size() == 0)
    oldest_ns_ = WallClock::monotonic_ns();
  while (http_spans_.size() > before && pending_bytes() > max_bytes_) {
    http_spans_.pop_back();
    dropped_++;
  }
}

void SpanBatch::after_pg(size_t before) {
  if (pg_spans_.size() > before && before + tcp_.size() + http_spans_.size() == 0)
    oldest_ns_ = WallClock::monotonic_ns();
  while (pg_spans_.size() > before && pending_bytes() > max_bytes_) {
    pg_spans_.pop_back();
    dropped_++;
  }
}

void SpanBatch::flow_ended(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats,
                           CloseReason reason) {
  uint8_t connection_span_id[8];
  bool had_http = false;
  if (http_ != nullptr) {
    const size_t before = http_spans_.size();
    had_http = http_->on_flow_ended(key, connection_span_id, clock_, ids_, http_spans_);
    after_http(before);
  }
  if (pg_ != nullptr && !had_http) {
    const size_t before = pg_spans_.size();
    had_http = pg_->on_flow_ended(key, connection_span_id, clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (redis_ != nullptr && !had_http) {
    const size_t before = pg_spans_.size();
    had_http = redis_->on_flow_ended(key, connection_span_id, clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (!fits(sizeof(Span))) {
    dropped_++;
    return;
  }
  note_first();
  tcp_.emplace_back();
  span_from_flow(key, stats, reason, clock_, ids_, tcp_.back());
  // The connection's HTTP spans already refer to this id.
  if (had_http) std::memcpy(tcp_.back().span_id, connection_span_id, 8);
}

void SpanBatch::payload(const ebpfc_payload_event& head) {
  if (head.l7 == EBPFC_L7_PGSQL || head.l7 == EBPFC_L7_REDIS) {
    const bool pg = head.l7 == EBPFC_L7_PGSQL;
    if (pg ? pg_ == nullptr : redis_ == nullptr) return;
    if (pending_bytes() >= max_bytes_) {
      heads_shed_++;
      return;
    }
    const size_t before = pg_spans_.size();
    if (pg)
      pg_->on_payload(head, clock_, ids_, pg_spans_);
    else
      redis_->on_payload(head, clock_, ids_, pg_spans_);
    after_pg(before);
    return;
  }
  if (http_ == nullptr) return;
  // At the bound every span made would be dropped: the head is not parsed
  // either (the connection's parser sees a gap and resynchronises later).
  // Falling behind then costs less per event, not more.
  if (pending_bytes() >= max_bytes_) {
    heads_shed_++;
    return;
  }
  const size_t before = http_spans_.size();
  http_->on_payload(head, clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::flow_open(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats) {
  open_.emplace_back();
  span_from_flow(key, stats, CloseReason::None, clock_, ids_, open_.back());
}

void SpanBatch::end_of_drain(uint64_t now_ns) {
  if (pg_ != nullptr) {
    const size_t before = pg_spans_.size();
    pg_->end_of_drain(now_ns, clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (redis_ != nullptr) {
    const size_t before = pg_spans_.size();
    redis_->end_of_drain(now_ns, clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (http_ == nullptr) return;
  const size_t before = http_spans_.size();
  http_->end_of_drain(now_ns, clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::close_all() {
  if (pg_ != nullptr) {
    const size_t before = pg_spans_.size();
    pg_->close_all(clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (redis_ != nullptr) {
    const size_t before = pg_spans_.size();
    redis_->close_all(clock_, ids_, pg_spans_);
    after_pg(before);
  }
  if (http_ == nullptr) return;
  const size_t before = http_spans_.size();
  http_->close_all(clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::drop_waiting() {
  dropped_ += waiting();
  tcp_.clear();
  http_spans_.clear();
  pg_spans_.clear();
  oldest_ns_ = 0;
}

size_t SpanBatch::left_over() const {
  return flushing_tcp_.size() - tcp_done_ + flushing_http_.size() - http_done_ +
         flushing_pg_.size() - pg_done_;
}

void SpanBatch::begin_flush() {
  if (left_over() > 0) return;  // those first
  flushing_tcp_.clear();
  flushing_http_.clear();
  flushing_pg_.clear();
  tcp_done_ = http_done_ = pg_done_ = 0;
  std::swap(tcp_, flushing_tcp_);
  std::swap(http_spans_, flushing_http_);
  pg_spans_.swap(flushing_pg_);
  oldest_ns_ = 0;
  const size_t bytes =
      flushing_tcp_.size() * sizeof(Span) + flushing_http_.bytes() + flushing_pg_.bytes();
  if (bytes > written_high_) written_high_ = bytes;
}

SpanBatch::Chunk SpanBatch::next_chunk(size_t limit) const {
  Chunk c;
  c.tcp = flushing_tcp_.data() + tcp_done_;
  c.ntcp = std::min(flushing_tcp_.size() - tcp_done_, limit);
  c.http = flushing_http_.data() + http_done_;
  c.nhttp = std::min(flushing_http_.size() - http_done_, limit - c.ntcp);
  c.http_text = flushing_http_.text();
  c.pg = flushing_pg_.data() + pg_done_;
  c.npg = std::min(flushing_pg_.size() - pg_done_, limit - c.ntcp - c.nhttp);
  c.pg_text = flushing_pg_.text();
  return c;
}

void SpanBatch::chunk_done(const Chunk& chunk, bool refused) {
  tcp_done_ += chunk.ntcp;
  http_done_ += chunk.nhttp;
  pg_done_ += chunk.npg;
  if (refused) dropped_ += chunk.size();
}

void SpanBatch::end_flush() {
  if (left_over() > 0) return;  // kept for the next flush
  flushing_tcp_.clear();
  flushing_http_.clear();
  flushing_pg_.clear();
  tcp_done_ = http_done_ = pg_done_ = 0;
  // The buffers keep the pages a flush wrote (the waiting ones swap in here
  // at the next flush): a steady load neither allocates nor faults pages in.
  // A burst that wrote more than an eighth of the bound gives its pages back
  // (and reserves the address space again), so that what is resident stays
  // near the bound.
  if (written_high_ > max_bytes_ / 8) {
    flushing_http_.release();
    flushing_pg_.release();
    std::vector<Span>().swap(flushing_tcp_);
    reserve_flushing();
  }
  written_high_ = 0;
}

}  // namespace ebpfc
