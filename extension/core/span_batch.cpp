#include "core/span_batch.h"

#include <algorithm>
#include <cstring>

namespace ebpfc {

// The bytes of the flushing http spans already written (spans and strings):
// their strings are the text before the first one left.
size_t SpanBatch::http_bytes_done() const {
  if (http_done_ == 0) return 0;
  const size_t text = http_done_ < flushing_http_.size()
                          ? flushing_http_[http_done_].method_text.offset
                          : flushing_http_.bytes() - flushing_http_.size() * sizeof(HttpSpan);
  return http_done_ * sizeof(HttpSpan) + text;
}

size_t SpanBatch::pending_bytes() const {
  const size_t tcp = tcp_.size() + flushing_tcp_.size() - tcp_done_;
  return tcp * sizeof(Span) + http_spans_.bytes() + flushing_http_.bytes() - http_bytes_done();
}

size_t SpanBatch::reserved_bytes() const {
  return (tcp_.capacity() + flushing_tcp_.capacity()) * sizeof(Span) +
         http_spans_.capacity_bytes() + flushing_http_.capacity_bytes();
}

void SpanBatch::note_first() {
  if (waiting() == 0) oldest_ns_ = WallClock::monotonic_ns();
}

void SpanBatch::after_http(size_t before) {
  if (http_spans_.size() > before && before + tcp_.size() == 0)
    oldest_ns_ = WallClock::monotonic_ns();
  while (http_spans_.size() > before && pending_bytes() > max_bytes_) {
    http_spans_.pop_back();
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
  if (http_ == nullptr) return;
  const size_t before = http_spans_.size();
  http_->on_payload(head, clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::flow_open(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats) {
  open_.emplace_back();
  span_from_flow(key, stats, CloseReason::None, clock_, ids_, open_.back());
}

void SpanBatch::end_of_drain(uint64_t now_ns) {
  if (http_ == nullptr) return;
  const size_t before = http_spans_.size();
  http_->end_of_drain(now_ns, clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::close_all() {
  if (http_ == nullptr) return;
  const size_t before = http_spans_.size();
  http_->close_all(clock_, ids_, http_spans_);
  after_http(before);
}

void SpanBatch::drop_waiting() {
  dropped_ += waiting();
  tcp_.clear();
  http_spans_.clear();
  oldest_ns_ = 0;
}

size_t SpanBatch::left_over() const {
  return flushing_tcp_.size() - tcp_done_ + flushing_http_.size() - http_done_;
}

void SpanBatch::begin_flush() {
  if (left_over() > 0) return;  // those first
  flushing_tcp_.clear();
  flushing_http_.clear();
  tcp_done_ = http_done_ = 0;
  std::swap(tcp_, flushing_tcp_);
  std::swap(http_spans_, flushing_http_);
  oldest_ns_ = 0;
}

SpanBatch::Chunk SpanBatch::next_chunk(size_t limit) const {
  Chunk c;
  c.tcp = flushing_tcp_.data() + tcp_done_;
  c.ntcp = std::min(flushing_tcp_.size() - tcp_done_, limit);
  c.http = flushing_http_.data() + http_done_;
  c.nhttp = std::min(flushing_http_.size() - http_done_, limit - c.ntcp);
  c.http_text = flushing_http_.text();
  return c;
}

void SpanBatch::chunk_done(const Chunk& chunk, bool refused) {
  tcp_done_ += chunk.ntcp;
  http_done_ += chunk.nhttp;
  if (refused) dropped_ += chunk.size();
}

void SpanBatch::end_flush() {
  if (left_over() > 0) return;  // kept for the next flush
  flushing_tcp_.clear();
  flushing_http_.clear();
  tcp_done_ = http_done_ = 0;
  // The buffers keep what they grew to (the waiting ones swap in here at the
  // next flush), unless together they reserve more than the bound: a burst
  // is over, the memory goes back.
  if (reserved_bytes() > max_bytes_) {
    flushing_http_.release();
    std::vector<Span>().swap(flushing_tcp_);
  }
}

}  // namespace ebpfc
