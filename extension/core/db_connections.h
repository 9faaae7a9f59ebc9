// db_connections.h - the connections of one capture that a database
// protocol's parser follows (PostgreSQL's, Redis's): one parser per
// connection, pooled; a bound on how many at once (the kernel is told to stop
// sending the payload of one over it, or of one its parser gave up); the
// spans still waiting when a connection ends, expires or the capture stops.
//
// Conn is the protocol's connection parser. It is complete only in its
// protocol's .cpp, which includes db_connections_impl.h and instantiates
// DbConnections<Conn, ...> there. It provides
//   struct Ctx { const WallClock*; SpanIdGenerator*; PgSpanList*; Counters*; const Options*; };
//   void reset(const ebpfc_payload_event& head, SpanIdGenerator& ids);
//   void on_segment(unsigned role, const ebpfc_payload_event& head, const Ctx& ctx);
//   void close(uint64_t now_ns, const Ctx& ctx);  // what still waits becomes spans
//   ebpfc_flow_key key; uint8_t span_id[8]; uint64_t last_ns; bool stopped;
// Options has max_connections and expire_after_ns; Counters has connections
// and pool_full.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "capture_abi.h"
#include "core/http_tracker.h"  // PayloadControl
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

class PgSpanList;

struct FlowKeyHash {
  size_t operator()(const ebpfc_flow_key& k) const {
    uint64_t h = 1469598103934665603ull;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&k);
    for (size_t i = 0; i < sizeof(k); i++) h = (h ^ p[i]) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};
struct FlowKeyEq {
  bool operator()(const ebpfc_flow_key& a, const ebpfc_flow_key& b) const {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
  }
};

template <class Conn, class Options, class Counters>
class DbConnections {
 public:
  DbConnections(const Options& options, PayloadControl& control);
  ~DbConnections();
  DbConnections(const DbConnections&) = delete;
  DbConnections& operator=(const DbConnections&) = delete;

  void set_options(const Options& options) { options_ = options; }
  const Options& options() const { return options_; }

  void on_payload(const ebpfc_payload_event& head, const WallClock& clock, SpanIdGenerator& ids,
                  PgSpanList& out);
  // As HttpTracker::on_flow_ended: true (and the tcp span's id) if followed.
  bool on_flow_ended(const ebpfc_flow_key& key, uint8_t span_id[8], const WallClock& clock,
                     SpanIdGenerator& ids, PgSpanList& out);
  void end_of_drain(uint64_t now_ns, const WallClock& clock, SpanIdGenerator& ids, PgSpanList& out);
  void close_all(const WallClock& clock, SpanIdGenerator& ids, PgSpanList& out);

  // Connections followed now.
  size_t open_connections() const { return followed_; }
  const Counters& counters() const { return counters_; }

 private:
  // A connection: followed (conn), or not (null: over the bound; the
  // kernel was told to stop sending its payload).
  struct Entry {
    Conn* conn;
    uint64_t first_ns;
    uint64_t last_ns;
    bool ended;
    bool control_set;
  };
  void finish(Entry& e, const WallClock& clock, SpanIdGenerator& ids, PgSpanList& out);
  void release(Entry& e);
  void stop_payload(const ebpfc_flow_key& key, Entry& e);

  Options options_;
  PayloadControl& control_;
  std::unordered_map<ebpfc_flow_key, Entry, FlowKeyHash, FlowKeyEq> conns_;
  std::vector<Conn*> free_;
  std::vector<ebpfc_flow_key> ended_;
  size_t followed_ = 0;
  Counters counters_{};
};

}  // namespace ebpfc
