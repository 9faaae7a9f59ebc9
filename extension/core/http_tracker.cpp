#include "core/http_tracker.h"

#include <cstring>

namespace ebpfc {

namespace {

// Adds every uint64_t field of b to a (HttpCounters is all uint64_t).
void add_counters(HttpCounters& a, const HttpCounters& b) {
  static_assert(sizeof(HttpCounters) % sizeof(uint64_t) == 0, "HttpCounters holds uint64_t only");
  uint64_t fa[sizeof(HttpCounters) / sizeof(uint64_t)];
  uint64_t fb[sizeof(HttpCounters) / sizeof(uint64_t)];
  std::memcpy(fa, &a, sizeof(a));
  std::memcpy(fb, &b, sizeof(b));
  for (size_t i = 0; i < sizeof(fa) / sizeof(fa[0]); i++) fa[i] += fb[i];
  std::memcpy(&a, fa, sizeof(a));
}

}  // namespace

size_t HttpTracker::KeyHash::operator()(const ebpfc_flow_key& k) const {
  // FNV-1a over the key's bytes (its padding is always zero).
  const auto* p = reinterpret_cast<const unsigned char*>(&k);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof(k); i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return static_cast<size_t>(h);
}

bool HttpTracker::KeyEq::operator()(const ebpfc_flow_key& a, const ebpfc_flow_key& b) const {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

HttpTracker::HttpTracker(const HttpTrackerOptions& options, PayloadControl& control)
    : options_(options), control_(control), links_(options.trace) {
  conns_.reserve(options.max_connections * 2);
  free_.reserve(options.max_connections);
}

HttpTracker::~HttpTracker() {
  for (auto& entry : conns_) delete entry.second.stream;
  for (HttpStream* s : free_) delete s;
}

size_t HttpTracker::bytes_per_connection() {
  // an unordered_map node holds the value and a next pointer, plus its bucket
  constexpr size_t kEntry = sizeof(std::pair<const ebpfc_flow_key, Conn>) + 3 * sizeof(void*);
  return sizeof(HttpStream) + 2 * kEntry + sizeof(HttpStream*);
}

size_t HttpTracker::connections_within(size_t bytes) {
  const size_t n = bytes / bytes_per_connection();
  return n > 0 ? n : 1;
}

void HttpTracker::set_options(const HttpTrackerOptions& options) {
  options_ = options;
  links_.set_options(options.trace);
  free_.reserve(options.max_connections);
}

HttpStream* HttpTracker::take_stream() {
  if (!free_.empty()) {
    HttpStream* s = free_.back();
    free_.pop_back();
    return s;
  }
  if (allocated_ >= options_.max_connections) return nullptr;
  allocated_++;
  return new HttpStream();
}

void HttpTracker::on_payload(const ebpfc_payload_event& head, const WallClock& clock,
                             SpanIdGenerator& ids, HttpSpanList& out) {
  auto it = conns_.find(head.key);
  bool inherited_control = false;
  if (it != conns_.end() && it->second.ended && it->second.first_ns != head.flow_first_ns) {
    // A new connection on the four-tuple of one that ended in this drain (a
    // client port reused at once). The ended one gave its exchanges when it
    // ended; the kernel's l7_control entry it may have left is this one's to
    // remove when it ends (the filter ignores it meanwhile: first_ns differs).
    inherited_control = it->second.control_set;
    conns_.erase(it);
    it = conns_.end();
  }
  if (it == conns_.end()) {
    Conn c{};
    c.key = head.key;
    c.first_ns = head.flow_first_ns;
    c.control_set = inherited_control;
    c.client = head.from_client ? head.sender : head.sender ^ 1;
    ids.span_id(c.span_id);
    c.stream = take_stream();
    if (c.stream == nullptr) {
      // Not followed: ask the kernel to stop sending its payload.
      counters_.pool_full++;
      ebpfc_l7_control stop{};
      stop.not_http = 1;
      stop.first_ns = c.first_ns;
      control_.set_l7_control(c.key, stop);
      c.control_set = true;
    } else {
      c.stream->reset(false);
      counters_.connections++;
    }
    it = conns_.emplace(head.key, c).first;
  }
  Conn& c = it->second;
  c.last_ns = head.ts_ns;
  if (head.ts_ns > now_ns_) now_ns_ = head.ts_ns;
  if (c.stream == nullptr || c.ended) return;

  current_ = &c;
  clock_ = &clock;
  ids_ = &ids;
  out_ = &out;
  const unsigned dir = head.from_client ? 0 : 1;
  // Where the directions start: after the SYNs the kernel saw, or unknown
  // (the connection was first seen mid-stream). Taken before a direction's
  // first segment (the stream ignores it after). The other direction's start
  // lets a first response lost whole show as a loss.
  if (head.flags & EBPFC_PAYLOAD_STREAM_START)
    c.stream->set_stream_start(dir, head.stream_start);
  else
    c.stream->set_stream_unknown(dir);
  if (head.flags & EBPFC_PAYLOAD_PEER_START) c.stream->set_stream_start(dir ^ 1, head.peer_start);
  if (head.segment_len == 0) {
    // The kernel skipped body bytes up to here: this is where they end.
    c.stream->on_progress(dir, head.seq, head.ts_ns, *this);
  } else {
    c.stream->on_segment(dir, head.seq, head.data, head.data_len, head.segment_len, head.ts_ns,
                         *this, head.ack, (head.flags & EBPFC_PAYLOAD_ACK) != 0);
  }
  current_ = nullptr;
  update_control(c);
}

void HttpTracker::update_control(Conn& c) {
  ebpfc_l7_control want{};
  want.first_ns = c.first_ns;
  if (c.stream->done()) {
    // Nothing more will come out of it: free the stream now, and tell the
    // kernel to stop sending its payload.
    if (!c.stream->is_http()) counters_.not_http++;
    add_counters(released_, c.stream->counters());
    free_.push_back(c.stream);
    c.stream = nullptr;
    want.not_http = 1;
    control_.set_l7_control(c.key, want);
    c.control_set = true;
    return;
  }
  bool changed = false;
  for (unsigned dir = 0; dir < 2; dir++) {
    // Directions in the kernel's terms: dir 0 is what the client sends.
    const unsigned endpoint = dir == 0 ? c.client : c.client ^ 1;
    const bool valid = c.stream->has_skip(dir);
    const uint32_t to = valid ? c.stream->skip_until(dir) : 0;
    want.skip_valid[endpoint] = valid;
    want.skip_to[endpoint] = to;
    if (valid != c.skip_valid[dir] || (valid && to != c.skip_to[dir])) changed = true;
    c.skip_valid[dir] = valid;
    c.skip_to[dir] = to;
  }
  if (changed) {
    control_.set_l7_control(c.key, want);
    c.control_set = true;
  }
}

bool HttpTracker::on_flow_ended(const ebpfc_flow_key& key, uint8_t span_id[8],
                                const WallClock& clock, SpanIdGenerator& ids, HttpSpanList& out) {
  auto it = conns_.find(key);
  // An entry that already ended belongs to an earlier connection on the same
  // four-tuple (a port reused within one drain); had this one sent payload, its
  // first head would have replaced that entry. So this one was not followed,
  // and its span must not take the earlier connection's id.
  if (it == conns_.end() || it->second.ended) return false;
  Conn& c = it->second;
  std::memcpy(span_id, c.span_id, sizeof(c.span_id));
  c.ended = true;
  clock_ = &clock;
  ids_ = &ids;
  out_ = &out;
  finish(c);
  ended_.push_back(key);
  return true;
}

// The connection's stream gives its last exchanges and goes back to the pool.
void HttpTracker::finish(Conn& c) {
  if (c.stream == nullptr) return;
  current_ = &c;
  c.stream->on_close(*this);
  current_ = nullptr;
  add_counters(released_, c.stream->counters());
  free_.push_back(c.stream);
  c.stream = nullptr;
}

void HttpTracker::release(Conn& c) {
  finish(c);
  if (c.control_set) control_.clear_l7_control(c.key);
}

void HttpTracker::end_of_drain(uint64_t now_ns, const WallClock& clock, SpanIdGenerator& ids,
                               HttpSpanList& out) {
  clock_ = &clock;
  ids_ = &ids;
  out_ = &out;
  for (const ebpfc_flow_key& key : ended_) {
    auto it = conns_.find(key);
    // Gone, or a newer connection on the four-tuple that has not ended.
    if (it == conns_.end() || !it->second.ended) continue;
    release(it->second);  // finished when it ended: clears the kernel's control
    conns_.erase(it);
  }
  ended_.clear();

  if (options_.expire_after_ns == 0) return;
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn& c = it->second;
    if (!c.ended && now_ns > c.last_ns && now_ns - c.last_ns > options_.expire_after_ns) {
      release(c);
      counters_.expired++;
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void HttpTracker::close_all(const WallClock& clock, SpanIdGenerator& ids, HttpSpanList& out) {
  clock_ = &clock;
  ids_ = &ids;
  out_ = &out;
  for (auto& entry : conns_) release(entry.second);
  conns_.clear();
  ended_.clear();
}

void HttpTracker::peer_key(const uint8_t addr[16], uint8_t out[16]) const {
  if (peers_ != nullptr)
    peers_->key(addr, clock_->to_unix_us(now_ns_), out);
  else
    std::memcpy(out, addr, 16);
}

void HttpTracker::on_request_context(const uint8_t trace_id[16], const uint8_t caller_id[8],
                                     TraceIds* ids) {
  if (current_ == nullptr || ids_ == nullptr || clock_ == nullptr) return;
  uint8_t client[16], server[16];
  peer_key(current_->key.addr[current_->client & 1], client);
  peer_key(current_->key.addr[(current_->client & 1) ^ 1], server);
  links_.open(trace_id, caller_id, client, server, now_ns_, *ids_, ids);
}

void HttpTracker::on_exchange(const HttpExchange& exchange) {
  if (current_ == nullptr || out_ == nullptr) return;
  TraceIds ids = exchange.ids;
  // A request whose header block never ended had no ids decided.
  if (exchange.trace_origin != TraceOrigin::None && !ids.assigned)
    on_request_context(exchange.trace_id, exchange.parent_id, &ids);
  HttpSpan& span = out_->append(exchange, options_.query);
  http_span_from_exchange(exchange, ids, current_->key, current_->client, current_->span_id,
                          *clock_, *ids_, span);
  links_.close(ids, now_ns_);
}

HttpTrackerCounters HttpTracker::counters() const {
  HttpTrackerCounters out = counters_;
  out.parser = released_;
  for (const auto& entry : conns_)
    if (entry.second.stream != nullptr) add_counters(out.parser, entry.second.stream->counters());
  return out;
}

}  // namespace ebpfc
