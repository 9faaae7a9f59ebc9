// trace_links.h - the ids of the HTTP spans of requests that carry trace
// context, and their parents: what turns the capture's spans into trees.
//
// W3C says a traceparent's parent-id is "the ID of this request as known by
// the caller" (B3's SpanId says the same). The exchange the capture sees on
// the wire is that request, so in the default mode (Caller) its span takes
// that id, and its parent is the exchange that entered the calling pod in
// the same trace and was still open when this request began: the calling
// pod was serving it while it made this call. The rules, in order, for a
// request of trace T with caller id P from client C:
//
//  1. Forwarded: an exchange of T with the same caller id P is open and its
//     client is not C. The request passed through something that copied the
//     header without making an id of its own (an nginx or Envoy without
//     tracing): this hop is a child of that exchange (the newest such), with
//     a fresh span id.
//  2. Otherwise the parent is the newest exchange of T that is open and
//     entered C's pod (its server is C, by pod when the worker knows the
//     pods, else by address); none: a root as far as the capture knows.
//  3. The span id is P, unless an exchange of T that the index still holds
//     already took P: a retry that reused its id (counted in resend_count
//     when the client is the same), or a forwarded hop (rule 1). Then it is
//     fresh.
//
// "Open" is decided by the order in which the capture saw things, not by
// clocks: a request is open from the end of its header block until its
// exchange is emitted (its response ended, or the connection did). The
// calling pod cannot send its call before the request that caused it has
// arrived, and the filter stamps and queues each frame before the bridge
// forwards it, so the order of the ring buffer is the order on the wire; the
// kernel timestamps of two ports, which may differ by tens of microseconds
// on a busy node, play no part.
//
// Mode Own is for callers that export their own client spans (an
// instrumented application): the caller's span already has id P, so the
// capture's span takes a fresh id and P as its parent, and no index is kept.
//
// Memory is bounded: `capacity` entries, allocated once. An entry is kept
// while its request is open and for keep_closed_ns after (to recognise a
// retry); when every entry is in use the oldest is dropped (counted in
// evicted_open if its request was still open).
//
// PostgreSQL-free; no allocation after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/http_exchange.h"
#include "core/span_ids.h"

namespace ebpfc {

enum class TraceSpanIds : uint8_t {
  Caller,  // a span takes its caller's id for the request; parents inferred (the default)
  Own,     // a span takes a fresh id; its parent is the caller's id
};

struct TraceLinksOptions {
  TraceSpanIds mode = TraceSpanIds::Caller;
  size_t capacity = 32768;                               // entries (96 bytes each)
  uint64_t keep_closed_ns = 10ull * 1000 * 1000 * 1000;  // retries are recognised this long after
};

struct TraceLinksCounters {
  uint64_t requests;      // requests with trace context given ids
  uint64_t with_parent;   // ... given a parent
  uint64_t forwarded;     // ... found to be a forwarded header (rule 1)
  uint64_t resent;        // ... whose caller id was taken already (fresh span id)
  uint64_t evicted_open;  // entries dropped while their request was open
};

// What "the same pod" means for the rules above: the key of the pod behind
// an address (16 bytes). The worker keys by pod when the Kubernetes cache
// knows the address (so a pod's IPv4 and IPv6 addresses are one peer); by
// default, and for addresses no pod owns, the key is the address.
class PeerKeys {
 public:
  virtual void key(const uint8_t addr[16], int64_t at_unix_us, uint8_t out[16]) const = 0;

 protected:
  ~PeerKeys() = default;
};

class TraceLinks {
 public:
  explicit TraceLinks(const TraceLinksOptions& options = TraceLinksOptions());
  TraceLinks(const TraceLinks&) = delete;
  TraceLinks& operator=(const TraceLinks&) = delete;

  TraceSpanIds mode() const { return options_.mode; }
  // Applies a new mode and keep time (the capacity stays).
  void set_options(const TraceLinksOptions& options);

  // A request of trace `trace_id` whose caller gave it `caller_id`, from
  // client `client` to server `server` (16-byte peer keys: addresses, or
  // keys of pods), seen at now_ns (monotonic): decides the ids of its span
  // into `out` and, in mode Caller, opens its entry.
  void open(const uint8_t trace_id[16], const uint8_t caller_id[8], const uint8_t client[16],
            const uint8_t server[16], uint64_t now_ns, SpanIdGenerator& ids, TraceIds* out);
  // The exchange of `ids` was emitted at now_ns: it encloses nothing more.
  void close(const TraceIds& ids, uint64_t now_ns);

  size_t size() const { return used_; }
  const TraceLinksCounters& counters() const { return counters_; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Entry {
    uint8_t trace_id[16];
    uint8_t caller_id[8];
    uint8_t span_id[8];
    uint8_t client[16];
    uint8_t server[16];
    uint64_t opened;     // sequence number of its open(): newer is larger
    uint64_t closed_ns;  // 0 while open
    uint32_t next;       // next entry in its hash bucket
    uint32_t gen;        // bumped whenever the entry is reused
    bool used;
  };

  uint32_t bucket_of(const uint8_t trace_id[16]) const;
  void expire(uint64_t now_ns);
  uint32_t take_entry();
  void unlink(uint32_t i);

  TraceLinksOptions options_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> buckets_;  // heads of the hash chains, by trace id
  std::vector<uint32_t> fifo_;     // entries in the order they were opened (a ring)
  size_t fifo_head_ = 0;           // the oldest
  size_t used_ = 0;
  std::vector<uint32_t> free_;
  uint64_t next_open_ = 1;
  TraceLinksCounters counters_{};
};

}  // namespace ebpfc
