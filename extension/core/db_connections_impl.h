// db_connections_impl.h - DbConnections' members, for the .cpp of a protocol
// whose connection parser is complete there (it instantiates the template).
#pragma once

#include <cstring>

#include "core/db_connections.h"
#include "core/pg_wire.h"  // PgSpanList

namespace ebpfc {

template <class Conn, class Options, class Counters>
DbConnections<Conn, Options, Counters>::DbConnections(const Options& options,
                                                      PayloadControl& control)
    : options_(options), control_(control) {}

template <class Conn, class Options, class Counters>
DbConnections<Conn, Options, Counters>::~DbConnections() {
  for (auto& e : conns_) delete e.second.conn;
  for (Conn* c : free_) delete c;
}

template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::on_payload(const ebpfc_payload_event& head,
                                                        const WallClock& clock,
                                                        SpanIdGenerator& ids, PgSpanList& out) {
  auto it = conns_.find(head.key);
  bool inherited_control = false;
  if (it != conns_.end() && it->second.ended && it->second.first_ns != head.flow_first_ns) {
    // A new connection on the four-tuple of one that ended in this drain:
    // the kernel's l7_control entry the old one left is this one's to remove.
    inherited_control = it->second.control_set;
    it->second.control_set = false;
    release(it->second);
    conns_.erase(it);
    it = conns_.end();
  }
  if (it == conns_.end()) {
    Entry e{nullptr, head.flow_first_ns, head.ts_ns, false, inherited_control};
    if (followed_ >= options_.max_connections) {
      counters_.pool_full++;
      stop_payload(head.key, e);
    } else {
      if (!free_.empty()) {
        e.conn = free_.back();
        free_.pop_back();
      } else {
        e.conn = new Conn();
      }
      e.conn->reset(head, ids);
      followed_++;
      counters_.connections++;
    }
    it = conns_.emplace(head.key, e).first;
  }
  Entry& e = it->second;
  e.last_ns = head.ts_ns;
  if (e.ended || e.conn == nullptr || e.conn->stopped) return;
  Conn& c = *e.conn;
  c.last_ns = head.ts_ns;
  const typename Conn::Ctx ctx{&clock, &ids, &out, &counters_, &options_};
  c.on_segment(head.from_client ? 0 : 1, head, ctx);
  if (c.stopped && !e.control_set) {
    // Encrypted, push mode, or not the protocol: the kernel stops sending it.
    stop_payload(c.key, e);
  }
}

// Tells the kernel to send no more of the connection's payload.
template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::stop_payload(const ebpfc_flow_key& key, Entry& e) {
  ebpfc_l7_control stop{};
  stop.not_http = 1;
  stop.first_ns = e.first_ns;
  control_.set_l7_control(key, stop);
  e.control_set = true;
}

// The connection's last spans; its parser goes back to the pool.
template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::finish(Entry& e, const WallClock& clock,
                                                    SpanIdGenerator& ids, PgSpanList& out) {
  if (e.conn == nullptr) return;
  const typename Conn::Ctx ctx{&clock, &ids, &out, &counters_, &options_};
  e.conn->close(e.conn->last_ns, ctx);
  free_.push_back(e.conn);
  e.conn = nullptr;
  followed_--;
}

// Gives the parser back without its last spans (the connection ended
// before; or the capture stops and finish() ran).
template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::release(Entry& e) {
  if (e.conn != nullptr) {
    free_.push_back(e.conn);
    e.conn = nullptr;
    followed_--;
  }
}

template <class Conn, class Options, class Counters>
bool DbConnections<Conn, Options, Counters>::on_flow_ended(const ebpfc_flow_key& key,
                                                           uint8_t span_id[8],
                                                           const WallClock& clock,
                                                           SpanIdGenerator& ids, PgSpanList& out) {
  auto it = conns_.find(key);
  if (it == conns_.end() || it->second.ended) return false;
  Entry& e = it->second;
  e.ended = true;
  ended_.push_back(key);
  if (e.conn == nullptr) return false;
  std::memcpy(span_id, e.conn->span_id, 8);
  finish(e, clock, ids, out);
  return true;
}

template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::end_of_drain(uint64_t now_ns, const WallClock& clock,
                                                          SpanIdGenerator& ids, PgSpanList& out) {
  for (const ebpfc_flow_key& key : ended_) {
    auto it = conns_.find(key);
    if (it == conns_.end() || !it->second.ended) continue;
    if (it->second.control_set) control_.clear_l7_control(key);
    release(it->second);
    conns_.erase(it);
  }
  ended_.clear();
  if (options_.expire_after_ns == 0) return;
  for (auto it = conns_.begin(); it != conns_.end();) {
    Entry& e = it->second;
    if (!e.ended && now_ns > e.last_ns && now_ns - e.last_ns > options_.expire_after_ns) {
      finish(e, clock, ids, out);
      if (e.control_set) control_.clear_l7_control(it->first);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

template <class Conn, class Options, class Counters>
void DbConnections<Conn, Options, Counters>::close_all(const WallClock& clock, SpanIdGenerator& ids,
                                                       PgSpanList& out) {
  for (auto& entry : conns_) {
    if (!entry.second.ended) finish(entry.second, clock, ids, out);
    release(entry.second);
    if (entry.second.control_set) control_.clear_l7_control(entry.first);
  }
  conns_.clear();
  ended_.clear();
}

}  // namespace ebpfc
