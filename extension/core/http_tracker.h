// http_tracker.h - follows the HTTP connections of one capture: routes the
// kernel's payload heads to a pooled HttpStream per connection, turns the
// exchanges they produce into spans, and tells the kernel which body bytes it
// may skip.
//
// PostgreSQL-free. Memory is bounded: at most max_connections streams
// (sizeof(HttpStream) each), allocated the first time the pool grows to that
// size and reused after; a connection beyond the bound is not followed (and
// the kernel is told to stop sending its payload), and that is counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "capture_abi.h"
#include "core/http_span.h"
#include "core/http_stream.h"
#include "core/span_ids.h"
#include "core/trace_links.h"
#include "core/wall_clock.h"

namespace ebpfc {

// Where the tracker's instructions to the kernel go (PacketCapture in the
// worker; applied in a batch at the end of each drain).
class PayloadControl {
 public:
  virtual ~PayloadControl() = default;
  virtual void set_l7_control(const ebpfc_flow_key& key, const ebpfc_l7_control& control) = 0;
  virtual void clear_l7_control(const ebpfc_flow_key& key) = 0;
};

struct HttpTrackerCounters {
  uint64_t connections;  // connections followed so far
  uint64_t pool_full;    // connections not followed: max_connections were open
  uint64_t expired;      // connections given up after silence (their close was not seen)
  uint64_t not_http;     // connections given up as not HTTP (the kernel took them for HTTP)
  HttpCounters parser;   // summed over every stream, released or not
};

struct HttpTrackerOptions {
  size_t max_connections = 2048;                // see HttpTracker::connections_within
  HttpQueryMode query = HttpQueryMode::Redact;  // what becomes of targets' query strings
  uint64_t expire_after_ns = 0;  // a connection silent this long is given up (0: never)
  TraceLinksOptions trace;       // span ids and parents of requests with trace context
};

class HttpTracker final : private HttpExchangeSink {
 public:
  HttpTracker(const HttpTrackerOptions& options, PayloadControl& control);
  ~HttpTracker() override;
  HttpTracker(const HttpTracker&) = delete;
  HttpTracker& operator=(const HttpTracker&) = delete;

  void set_options(const HttpTrackerOptions& options);

  // What one followed connection costs at most: its stream, its entries in
  // the connections table (which holds up to twice as many as are followed:
  // those that ended in this drain wait for its end) and on the free list.
  static size_t bytes_per_connection();
  // How many connections fit in `bytes` (at least one).
  static size_t connections_within(size_t bytes);
  // Who is behind an address, for the parent rules (trace_links.h); null:
  // addresses. Must outlive the tracker.
  void set_peer_keys(const PeerKeys* peers) { peers_ = peers; }

  // A payload head from the kernel; finished exchanges are appended to out.
  void on_payload(const ebpfc_payload_event& head, const WallClock& clock, SpanIdGenerator& ids,
                  HttpSpanList& out);

  // The connection `key` ended. If it was followed, copies the span id its
  // tcp span must carry (HTTP spans refer to it) to span_id and returns true.
  // Its last exchanges are appended to out now and its stream goes back to
  // the pool at once: one drain may read the whole life of thousands of
  // connections (when the worker was busy inserting), and they must not run
  // the pool out. The connection itself is forgotten at the end of the drain,
  // so that a payload head trailing its close event is ignored rather than
  // taken for a new connection; a head of a new connection on the same
  // four-tuple (another flow_first_ns) starts that connection at once.
  bool on_flow_ended(const ebpfc_flow_key& key, uint8_t span_id[8], const WallClock& clock,
                     SpanIdGenerator& ids, HttpSpanList& out);

  // After each drain of the ring buffer: forgets the connections that ended
  // and gives up those silent for expire_after_ns.
  void end_of_drain(uint64_t now_ns, const WallClock& clock, SpanIdGenerator& ids,
                    HttpSpanList& out);

  // Ends every connection (the capture stops).
  void close_all(const WallClock& clock, SpanIdGenerator& ids, HttpSpanList& out);

  size_t open_connections() const { return conns_.size(); }
  HttpTrackerCounters counters() const;
  const TraceLinksCounters& trace_counters() const { return links_.counters(); }

 private:
  struct Conn {
    ebpfc_flow_key key;
    uint64_t first_ns;  // the kernel flow's: tells connections on one four-tuple apart
    HttpStream* stream;
    uint8_t client;  // endpoint index of the client
    uint8_t span_id[8];
    bool ended;
    bool control_set;  // the kernel holds an l7_control entry for it
    bool skip_valid[2];
    uint32_t skip_to[2];
    uint64_t last_ns;
  };
  struct KeyHash {
    size_t operator()(const ebpfc_flow_key& k) const;
  };
  struct KeyEq {
    bool operator()(const ebpfc_flow_key& a, const ebpfc_flow_key& b) const;
  };

  void on_exchange(const HttpExchange& exchange) override;
  void on_request_context(const uint8_t trace_id[16], const uint8_t caller_id[8],
                          TraceIds* ids) override;
  void peer_key(const uint8_t addr[16], uint8_t out[16]) const;
  void update_control(Conn& c);
  void finish(Conn& c);
  void release(Conn& c);
  HttpStream* take_stream();

  HttpTrackerOptions options_;
  PayloadControl& control_;
  std::unordered_map<ebpfc_flow_key, Conn, KeyHash, KeyEq> conns_;
  std::vector<HttpStream*> free_;  // streams to reuse
  size_t allocated_ = 0;
  HttpTrackerCounters counters_{};
  HttpCounters released_{};            // parser counters of released streams
  std::vector<ebpfc_flow_key> ended_;  // connections that ended in this drain
  TraceLinks links_;
  const PeerKeys* peers_ = nullptr;
  uint64_t now_ns_ = 0;  // the newest kernel time seen

  // Context of the exchange callbacks.
  Conn* current_ = nullptr;
  const WallClock* clock_ = nullptr;
  SpanIdGenerator* ids_ = nullptr;
  HttpSpanList* out_ = nullptr;
};

}  // namespace ebpfc
