// span_batch.h - the spans waiting to be written: built from what the
// capture reports (connections that ended, payload heads of HTTP
// connections), taken by the store a transaction at a time.
//
// Spans accumulate in the waiting buffers. A flush takes them all (a swap of
// buffers: nothing is copied) and hands them out in chunks, one per
// transaction; what the capture reports meanwhile waits in the emptied
// buffers. A chunk that could not be written for a passing reason (a lock
// that was not granted in time) is handed back: it and the rest of that
// flush are written first by the next flush, before anything newer.
//
// The backlog - waiting and being flushed - is bounded in bytes (each span's
// own, its strings included): a span that would take it over the bound is
// dropped, and counted. The buffers keep the memory they grew to, so that a
// steady load neither allocates nor faults pages in; what a burst grew
// beyond an eighth of the bound is given back when its flush ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/flow_sink.h"
#include "core/flow_span.h"
#include "core/http_span.h"
#include "core/http_tracker.h"
#include "core/pg_wire.h"
#include "core/redis_wire.h"
#include "core/span.h"
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

class SpanBatch final : public FlowSink {
 public:
  // `max_bytes`: the bound of the backlog (see pending_bytes()).
  explicit SpanBatch(size_t max_bytes) { set_max_bytes(max_bytes); }

  // Follows the HTTP exchanges of the connections (null: HTTP is off).
  void set_http(HttpTracker* http) { http_ = http; }
  // Follows the PostgreSQL connections (null: PostgreSQL is off).
  void set_pg(PgTracker* pg) { pg_ = pg; }
  // Follows the Redis connections (null: Redis is off). Their spans go with
  // PostgreSQL's (database client calls, PgSpan).
  void set_redis(RedisTracker* redis) { redis_ = redis; }
  // Sets the bound and reserves the buffers' address space for it, so that
  // they never move their contents to grow (resident memory follows use).
  void set_max_bytes(size_t max_bytes);

  // FlowSink: what the capture reports.
  void flow_ended(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats,
                  CloseReason reason) override;
  void payload(const ebpfc_payload_event& head) override;
  void flow_open(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats) override;

  // After a drain of the ring buffer: connections that ended give their last
  // exchanges.
  void end_of_drain(uint64_t now_ns);
  // The capture is ending: every exchange still followed becomes a span.
  void close_all();

  // Spans waiting for a flush.
  size_t waiting() const { return tcp_.size() + http_spans_.size() + pg_spans_.size(); }
  // Bytes held by the waiting spans and those of the flush in progress
  // (written or not: they are held until it ends): what the bound counts.
  size_t pending_bytes() const;
  // Bytes the buffers have reserved, used or not.
  size_t reserved_bytes() const;
  // When the oldest waiting span was made (monotonic ns), 0 if none waits.
  uint64_t oldest_ns() const { return oldest_ns_; }
  // Spans dropped so far at the bound, or by drop_waiting().
  uint64_t dropped() const { return dropped_; }
  // Payload heads not parsed because the backlog was at its bound.
  uint64_t heads_shed() const { return heads_shed_; }
  // Counts spans lost elsewhere (a chunk the table refused) with the others.
  void count_dropped(uint64_t n) { dropped_ += n; }
  // Drops every waiting span (counted): writing is paused.
  void drop_waiting();

  // One transaction's worth of a flush.
  struct Chunk {
    const Span* tcp = nullptr;
    size_t ntcp = 0;
    const HttpSpan* http = nullptr;
    size_t nhttp = 0;
    const char* http_text = nullptr;  // what the http spans' TextRefs point into
    const PgSpan* pg = nullptr;
    size_t npg = 0;
    const char* pg_text = nullptr;  // what the postgresql spans' TextRefs point into
    size_t size() const { return ntcp + nhttp + npg; }
  };
  // Starts a flush: unless spans of the last flush are left to write, takes
  // every waiting span.
  void begin_flush();
  // The next chunk of at most `limit` spans (tcp, http, then postgresql),
  // empty at the end.
  Chunk next_chunk(size_t limit) const;
  // The chunk was written, or refused for good (it is then counted as
  // dropped when `refused`): the next chunk follows it.
  void chunk_done(const Chunk& chunk, bool refused = false);
  // Ends the flush. What was not handed out (a chunk handed back, and those
  // after it) is kept for the next flush.
  void end_flush();
  // Spans of an earlier flush still to be written.
  size_t left_over() const;

  // The connections open at the last sweep that reported them.
  std::vector<Span>& open_spans() { return open_; }

  WallClock& clock() { return clock_; }

 private:
  void reserve_flushing();
  // Whether one more span of `bytes` fits under the bound.
  bool fits(size_t bytes) const { return pending_bytes() + bytes <= max_bytes_; }
  void note_first();
  // Keeps the HTTP spans made since `before` within the bound.
  void after_http(size_t before);
  // The same for PostgreSQL spans.
  void after_pg(size_t before);

  size_t max_bytes_;
  std::vector<Span> tcp_;  // waiting
  HttpSpanList http_spans_;
  std::vector<Span> flushing_tcp_;  // taken by the flush, written up to tcp_done_
  HttpSpanList flushing_http_;
  PgSpanList pg_spans_;
  PgSpanList flushing_pg_;
  size_t tcp_done_ = 0;
  size_t http_done_ = 0;
  size_t pg_done_ = 0;
  std::vector<Span> open_;
  HttpTracker* http_ = nullptr;
  PgTracker* pg_ = nullptr;
  RedisTracker* redis_ = nullptr;
  uint64_t oldest_ns_ = 0;
  uint64_t dropped_ = 0;
  uint64_t heads_shed_ = 0;
  size_t written_high_ = 0;  // bytes the flush in progress took
  WallClock clock_;
  SpanIdGenerator ids_;
};

}  // namespace ebpfc
