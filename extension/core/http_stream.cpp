// http_stream.cpp - reassembly, request/response pairing and emission of the
// HTTP/1.x exchanges of one connection.
#include "core/http_stream.h"

#include <cstring>

#include "core/http_traceparent.h"

namespace ebpfc {

namespace {

constexpr bool is_final(uint16_t status) { return status >= 200 || status == 101; }

uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

}  // namespace

void HttpStream::reset(bool mid_stream) {
  for (unsigned d = 0; d < 2; d++) {
    Direction& D = dirs_[d];
    D.parser.reset(d == 1, mid_stream);
    D.reorder.clear();
    D.next = 0;
    D.hunt_misses = 0;
    D.started = false;
    D.validated = false;
    D.busy = false;
  }
  open_head_ = 0;
  open_count_ = 0;
  next_id_ = 0;
  req_id_ = 0;
  resp_id_ = 0;
  skip_responses_ = 0;
  str_head_ = 0;
  str_tail_ = 0;
  resp_status_ = 0;
  req_live_ = false;
  bind_ = Bind::None;
  realign_ = false;
  mid_stream_ = mid_stream;
  closed_ = false;
  sink_ = nullptr;
  counters_ = HttpCounters{};
}

void HttpStream::set_stream_start(unsigned dir, uint32_t seq) {
  if (dir > 1 || dirs_[dir].started) return;
  dirs_[dir].started = true;
  dirs_[dir].next = seq;
}

// ---- reassembly -----------------------------------------------------------

void HttpStream::on_segment(unsigned dir, uint32_t seq, const uint8_t* data, uint32_t data_len,
                            uint32_t segment_len, uint64_t ts_ns, HttpExchangeSink& sink) {
  if (closed_ || dir > 1 || segment_len == 0) return;
  Direction& D = dirs_[dir];
  counters_.segments++;
  if (D.parser.ignoring()) return;
  if (!data) data_len = 0;
  if (data_len > segment_len) data_len = segment_len;
  sink_ = &sink;
  D.busy = true;
  if (!D.started) {
    D.started = true;
    D.next = seq;
  }
  const HttpSegment s{seq, segment_len, data_len, true, ts_ns, data};
  // Each round that gives a hole up consumes at least one held segment (the
  // parser hunts, so the earliest one is taken), so this ends.
  while (!process(dir, s)) {
    const uint64_t oldest = D.reorder.oldest_ts();
    const bool expired =
        !D.reorder.empty() && ts_ns > oldest && ts_ns - oldest > kHttpHoleTimeoutNs;
    if (!expired && D.reorder.store(s)) break;
    if (!expired) counters_.reorder_full++;
    lost(dir);
    drain(dir, &s);
  }
  drain(dir, nullptr);
  D.busy = false;
  sink_ = nullptr;
}

void HttpStream::on_progress(unsigned dir, uint32_t end_seq, uint64_t ts_ns,
                             HttpExchangeSink& sink) {
  if (closed_ || dir > 1) return;
  Direction& D = dirs_[dir];
  if (!D.started || D.parser.ignoring() || D.parser.hunting()) return;
  sink_ = &sink;
  D.busy = true;
  for (;;) {
    // (not hunting nor ignoring: UINT64_MAX is a body that ends with the connection)
    const int32_t dist = static_cast<int32_t>(end_seq - D.next);
    const uint64_t op = D.parser.opaque();
    if (dist <= 0 || op == 0) break;
    const uint64_t take = op < static_cast<uint64_t>(dist) ? op : static_cast<uint64_t>(dist);
    D.parser.skip(take, ts_ns, false, *this);
    D.next += static_cast<uint32_t>(take);
    counters_.skipped_bytes += take;
  }
  drain(dir, nullptr);
  D.busy = false;
  sink_ = nullptr;
}

// Parses what it can of s. False when s lies beyond a hole in bytes the
// parser needs (it must wait in the reorder buffer); true when it was used or
// was of no use.
bool HttpStream::process(unsigned dir, HttpSegment s) {
  Direction& D = dirs_[dir];
  for (;;) {
    if (D.parser.ignoring()) return true;
    const int32_t dist = static_cast<int32_t>(s.seq - D.next);
    if (dist < 0) {  // starts with bytes already counted
      const uint32_t behind = static_cast<uint32_t>(-static_cast<int64_t>(dist));
      if (behind >= s.segment_len) {
        counters_.duplicates++;
        return true;
      }
      s.seq += behind;
      s.segment_len -= behind;
      const uint32_t cut = behind < s.data_len ? behind : s.data_len;
      s.data += cut;
      s.data_len -= cut;
      s.at_start = false;
      continue;
    }
    if (dist > 0) {  // a hole before s
      if (D.parser.hunting()) {
        D.next = s.seq;
        continue;
      }
      const uint64_t op = D.parser.opaque();
      if (op == 0) return false;
      const uint64_t take = op < static_cast<uint64_t>(dist) ? op : static_cast<uint64_t>(dist);
      D.parser.skip(take, s.ts_ns, false, *this);
      D.next += static_cast<uint32_t>(take);
      counters_.skipped_bytes += take;
      continue;
    }
    if (D.parser.hunting()) {
      if (!s.at_start ||
          !http_plausible_start(dir == 1, s.data, s.data_len, s.data_len == s.segment_len)) {
        D.next += s.segment_len;
        hunt_miss(dir);
        return true;
      }
      D.parser.resync();
      counters_.resyncs++;
    }
    const size_t used = D.parser.feed(s.data, s.data_len, s.ts_ns, *this);
    if (D.parser.hunting() || D.parser.ignoring()) {  // the rest of s is of no use
      D.next = s.seq + s.segment_len;
      return true;
    }
    D.next += static_cast<uint32_t>(used);
    uint32_t rest = s.segment_len - s.data_len;  // not delivered
    while (rest > 0) {
      const uint64_t take = D.parser.skip(rest, s.ts_ns, true, *this);
      if (take == 0) break;
      D.next += static_cast<uint32_t>(take);
      rest -= static_cast<uint32_t>(take);
      counters_.skipped_bytes += take;
    }
    if (rest > 0) {  // bytes the parser needs were not delivered
      lost(dir);
      D.next += rest;
    }
    return true;
  }
}

// Parses the held segments that became usable, in sequence order. With
// `before`, only those that come before it (the parser is hunting after a
// hole was given up, and *before is still to be processed).
void HttpStream::drain(unsigned dir, const HttpSegment* before) {
  Direction& D = dirs_[dir];
  for (;;) {
    const int i = D.reorder.earliest(D.next);
    if (i < 0) return;
    if (D.parser.ignoring()) {
      D.reorder.clear();
      return;
    }
    const HttpSegment s = D.reorder.get(i);
    if (before && static_cast<int32_t>(s.seq - before->seq) >= 0) return;
    const int32_t dist = static_cast<int32_t>(s.seq - D.next);
    if (dist > 0 && !D.parser.hunting()) {
      const uint64_t op = D.parser.opaque();
      if (op == 0) return;
      const uint64_t take = op < static_cast<uint64_t>(dist) ? op : static_cast<uint64_t>(dist);
      D.parser.skip(take, s.ts_ns, false, *this);
      D.next += static_cast<uint32_t>(take);
      counters_.skipped_bytes += take;
      continue;
    }
    D.reorder.remove(i);  // its bytes stay valid: nothing is stored while processing
    process(dir, s);
  }
}

// A hole that will not fill: its bytes are lost, the direction hunts. Called
// from the other direction's listener callbacks too, so never while this
// direction is being parsed (its parser is in the middle of feed()).
void HttpStream::give_up_hole(unsigned dir) {
  Direction& D = dirs_[dir];
  if (D.busy || D.reorder.empty()) return;
  D.busy = true;
  lost(dir);
  drain(dir, nullptr);
  D.busy = false;
}

// Bytes of `dir` are lost: the message in progress ends, the parser hunts.
// Whole responses may have been lost with them: pairing is checked again.
void HttpStream::lost(unsigned dir) {
  counters_.gaps++;
  if (dir == 1) realign_ = true;
  dirs_[dir].parser.gap(*this);
}

void HttpStream::hunt_miss(unsigned dir) {
  if (!mid_stream_ || is_http()) return;
  dirs_[dir].hunt_misses++;
  const uint32_t h0 = dirs_[0].hunt_misses, h1 = dirs_[1].hunt_misses;
  if ((h0 >= kHttpHuntEachMax && h1 >= kHttpHuntEachMax) || h0 + h1 >= kHttpHuntTotalMax) {
    not_http(0);
    not_http(1);
  }
}

void HttpStream::not_http(unsigned dir) {
  Direction& D = dirs_[dir];
  if (D.parser.ignoring()) return;
  if (dir == 0) void_request();
  D.parser.ignore();
  D.reorder.clear();
  counters_.not_http++;
}

// ---- open exchanges ---------------------------------------------------------

HttpStream::Open* HttpStream::entry(uint32_t id) {
  if (open_count_ == 0) return nullptr;
  const uint32_t d = id - open_[open_head_].id;
  if (d >= open_count_) return nullptr;
  return &open_[(open_head_ + d) % kHttpOpenMax];
}

HttpStream::Open& HttpStream::push_back() {
  Open& e = open_[(open_head_ + open_count_) % kHttpOpenMax];
  open_count_++;
  std::memset(&e, 0, sizeof(e));
  e.id = next_id_++;
  e.strings_begin = str_tail_;
  e.target_off = e.host_off = e.tracestate_off = str_tail_;
  return e;
}

void HttpStream::pop_front() {
  open_head_ = (open_head_ + 1) % kHttpOpenMax;
  open_count_--;
  str_head_ = open_count_ ? open_[open_head_].strings_begin : str_tail_;
}

// The request line begun is not one: forget its entry.
void HttpStream::void_request() {
  if (!req_live_) return;
  req_live_ = false;
  Open* e = entry(req_id_);
  if (!e) return;
  if (e->response_started) {  // a response was already paired with it: keep it
    e->incomplete |= kHttpBadRequest;
    e->request_done = true;
    return;
  }
  // the request being parsed is always the newest entry
  str_tail_ = e->strings_begin;
  open_count_--;
  next_id_--;
  if (open_count_ == 0) str_head_ = str_tail_;
}

void HttpStream::evict_front() {
  Open& f = open_[open_head_];
  counters_.queue_bound++;
  if (!f.response_started) skip_responses_++;  // its response is yet to come: drop it
  f.incomplete |= kHttpQueueBound;
  emit(f, true, nullptr);
}

bool HttpStream::append(uint32_t* off, uint16_t* len, size_t max, const char* p, size_t n) {
  if (*len == 0)
    *off = str_tail_;
  else if (*off + *len != str_tail_)
    return n == 0;  // something else was stored after it
  const size_t room = max - *len;
  const size_t free = kHttpStringBytes - (str_tail_ - str_head_);
  size_t k = n < room ? n : room;
  if (k > free) k = free;
  const size_t at = str_tail_ % kHttpStringBytes;
  const size_t first = k < kHttpStringBytes - at ? k : kHttpStringBytes - at;
  if (first) std::memcpy(strings_ + at, p, first);
  if (k > first) std::memcpy(strings_, p + first, k - first);
  str_tail_ += static_cast<uint32_t>(k);
  *len = static_cast<uint16_t>(*len + k);
  return k == n;
}

void HttpStream::copy_string(uint32_t off, uint16_t len, char* out) const {
  const size_t at = off % kHttpStringBytes;
  const size_t first = len < kHttpStringBytes - at ? len : kHttpStringBytes - at;
  if (first) std::memcpy(out, strings_ + at, first);
  if (len > first) std::memcpy(out + first, strings_, len - first);
  out[len] = '\0';
}

// Adds a tracestate value (a list) to the request's, keeping whole list
// members: what does not fit is dropped from the end.
void HttpStream::add_tracestate(Open& e, const char* v, size_t len, bool truncated) {
  if (e.tracestate_len > 0 && e.tracestate_off + e.tracestate_len != str_tail_) {
    e.flags |= kHttpTracestateTruncated;
    return;
  }
  const size_t sep = e.tracestate_len > 0 ? 1 : 0;
  const size_t free = kHttpStringBytes - (str_tail_ - str_head_);
  size_t fit = kHttpTracestateMax - e.tracestate_len;
  if (fit > free) fit = free;
  size_t take = len;
  if (truncated || sep + take > fit) {
    e.flags |= kHttpTracestateTruncated;
    // the longest prefix of whole members that fits
    size_t cut = 0;
    for (size_t i = 0; i < len && sep + i <= fit; i++)
      if (v[i] == ',') cut = i;
    if (!truncated && sep + len <= fit) cut = len;
    take = cut;
    while (take > 0 && (v[take - 1] == ' ' || v[take - 1] == '\t')) take--;
  }
  if (take == 0) return;
  if (sep) append(&e.tracestate_off, &e.tracestate_len, kHttpTracestateMax, ",", 1);
  append(&e.tracestate_off, &e.tracestate_len, kHttpTracestateMax, v, take);
}

HttpStream::Open* HttpStream::response_entry() {
  switch (bind_) {
    case Bind::Entry:
      return entry(resp_id_);  // null once emitted early
    case Bind::NoRequest:
      return &no_request_;
    default:
      return nullptr;
  }
}

// The response being parsed ended (m) or was aborted.
void HttpStream::finish_response(const HttpMessageInfo* m, uint16_t incomplete) {
  if (bind_ == Bind::Orphan) {
    if (is_final(resp_status_) && skip_responses_ > 0) skip_responses_--;
  } else if (Open* e = response_entry()) {
    e->incomplete |= incomplete;
    emit(*e, bind_ == Bind::Entry, m);  // an open entry bound to a response is the front
  }
  bind_ = Bind::None;
}

// Emits e: the front of the queue (queued, then removed) or no_request_.
void HttpStream::emit(const Open& e, bool queued, const HttpMessageInfo* response) {
  HttpExchange x;
  uint16_t incomplete = e.incomplete;
  uint64_t request_body = e.request_body;
  uint64_t last_ns = e.last_ns;
  if (queued && req_live_ && req_id_ == e.id && !e.request_done) {  // still being parsed
    const HttpMessageInfo r = dirs_[0].parser.progress();
    request_body = r.body_bytes;
    last_ns = max64(last_ns, r.last_ns);
    incomplete |= kHttpRequestCut;
  }
  uint16_t flags = e.flags;
  if (response) {
    if (response->chunked) flags |= kHttpResponseChunked;
    if (!response->end_seen) flags |= kHttpEndUnseen;
    if (response->keep_alive && (!e.has_request || e.request_keep_alive) && !(flags & kHttpTunnel))
      flags |= kHttpKeepAlive;
  } else {
    incomplete |= kHttpNoResponse;
  }
  x.request_start_ns = e.request_start_ns;
  x.response_end_ns = response && incomplete == 0
                          ? response->last_ns
                          : max64(last_ns, response ? response->last_ns : 0);
  x.request_body_bytes = request_body;
  x.response_body_bytes = response ? response->body_bytes : 0;
  x.status = e.status;
  x.incomplete = incomplete;
  x.flags = flags;
  x.interim_responses = e.interim;
  x.method = e.method;
  x.request_version = e.request_version;
  x.response_version = e.response_version;
  x.has_traceparent = e.has_traceparent;
  // A context whose header block did not end (cut by a gap or the header
  // bound) is taken as it stands.
  x.trace_origin = origin_of(e, &x.trace_flags);
  x.ids = e.ids;
  std::memcpy(x.trace_id, e.trace_id, sizeof(x.trace_id));
  std::memcpy(x.parent_id, e.parent_id, sizeof(x.parent_id));
  x.method_len = e.method_len;
  std::memcpy(x.method_text, e.method_text, e.method_len);
  x.method_text[e.method_len] = '\0';
  x.target_len = e.target_len;
  copy_string(e.target_off, e.target_len, x.target);
  x.host_len = e.host_len;
  copy_string(e.host_off, e.host_len, x.host);
  // W3C: tracestate is not used without a valid traceparent
  x.tracestate_len = e.has_traceparent ? e.tracestate_len : 0;
  copy_string(e.tracestate_off, x.tracestate_len, x.tracestate);

  counters_.exchanges++;
  if (x.incomplete) counters_.incomplete++;
  if (queued) pop_front();
  if (sink_) sink_->on_exchange(x);
}

void HttpStream::on_close(HttpExchangeSink& sink) {
  if (closed_) return;
  sink_ = &sink;
  give_up_hole(0);
  give_up_hole(1);
  dirs_[0].parser.close(*this);
  dirs_[1].parser.close(*this);
  while (open_count_ > 0) emit(open_[open_head_], true, nullptr);
  closed_ = true;
  sink_ = nullptr;
}

bool HttpStream::has_skip(unsigned dir) const {
  if (dir > 1 || closed_ || !dirs_[dir].started) return false;
  const uint64_t op = dirs_[dir].parser.opaque();
  return op > 0 && op != UINT64_MAX;
}

uint32_t HttpStream::skip_until(unsigned dir) const {
  if (!has_skip(dir)) return dir > 1 ? 0 : dirs_[dir].next;
  const uint64_t op = dirs_[dir].parser.opaque();
  return dirs_[dir].next + static_cast<uint32_t>(op < kHttpSkipMax ? op : kHttpSkipMax);
}

bool HttpStream::skip_all(unsigned dir) const {
  return closed_ || dir > 1 || dirs_[dir].parser.ignoring();
}

bool HttpStream::done() const {
  return closed_ || (dirs_[0].parser.ignoring() && dirs_[1].parser.ignoring() && open_count_ == 0);
}

// ---- HttpMessageListener ------------------------------------------------------

void HttpStream::on_request_begin(const char* method, size_t len, uint64_t ts_ns) {
  // A client sends its next request once it has the response (unless it
  // pipelines): a hole in the responses will not fill.
  give_up_hole(1);
  if (open_count_ == kHttpOpenMax) evict_front();
  Open& e = push_back();
  e.has_request = true;
  e.method = http_method_of(method, len);
  e.method_len = static_cast<uint8_t>(len);
  std::memcpy(e.method_text, method, len);
  e.request_start_ns = ts_ns;
  e.last_ns = ts_ns;
  req_id_ = e.id;
  req_live_ = true;
}

void HttpStream::on_request_target(const char* p, size_t n) {
  Open* e = req_live_ ? entry(req_id_) : nullptr;
  if (!e) return;
  if (!append(&e->target_off, &e->target_len, kHttpTargetMax, p, n) &&
      !(e->incomplete & kHttpTargetTruncated)) {
    e->incomplete |= kHttpTargetTruncated;
    counters_.string_bound++;
  }
}

void HttpStream::on_request_line(uint8_t version) {
  dirs_[0].validated = true;
  if (Open* e = req_live_ ? entry(req_id_) : nullptr) e->request_version = version;
}

void HttpStream::on_request_header(HttpHeader h, const char* v, size_t len, bool truncated) {
  Open* e = req_live_ ? entry(req_id_) : nullptr;
  if (!e) return;
  switch (h) {
    case HttpHeader::Host:
      if (e->host_seen) return;  // the first one counts
      e->host_seen = true;
      if (!append(&e->host_off, &e->host_len, kHttpHostMax, v, len) || truncated) {
        e->incomplete |= kHttpHostTruncated;
        counters_.string_bound++;
      }
      break;
    case HttpHeader::Traceparent: {
      TraceParent tp;
      const bool ok = !e->traceparent_seen && !truncated && parse_traceparent(v, len, &tp);
      if (ok) {
        e->b3 = 0;  // its ids are overwritten: W3C wins
        std::memcpy(e->trace_id, tp.trace_id, sizeof(e->trace_id));
        std::memcpy(e->parent_id, tp.parent_id, sizeof(e->parent_id));
        e->trace_flags = tp.flags;
        e->has_traceparent = true;
      } else {
        if (e->has_traceparent || !(e->flags & kHttpTraceparentInvalid))
          counters_.traceparent_invalid++;
        e->has_traceparent = false;  // W3C: several traceparent headers are invalid
        e->flags |= kHttpTraceparentInvalid;
      }
      e->traceparent_seen = true;
      break;
    }
    case HttpHeader::Tracestate:
      add_tracestate(*e, v, len, truncated);
      break;
    case HttpHeader::B3:
    case HttpHeader::B3TraceId:
    case HttpHeader::B3SpanId:
    case HttpHeader::B3Sampled:
      if (!truncated) add_b3(*e, h, v, len);
      break;
    default:
      break;
  }
}

// B3 headers, kept in the request's trace_id/parent_id unless a traceparent
// is there (W3C wins); the single header wins over the multi ones. The
// first of each counts.
void HttpStream::add_b3(Open& e, HttpHeader h, const char* v, size_t len) {
  if (e.has_traceparent) return;
  switch (h) {
    case HttpHeader::B3: {
      TraceParent tp;
      if ((e.b3 & kB3Single) || !parse_b3_single(v, len, &tp)) return;
      std::memcpy(e.trace_id, tp.trace_id, sizeof(e.trace_id));
      std::memcpy(e.parent_id, tp.parent_id, sizeof(e.parent_id));
      e.trace_flags = tp.flags;
      e.b3 |= kB3Single;
      break;
    }
    case HttpHeader::B3TraceId:
      if ((e.b3 & (kB3Single | kB3Trace)) || !parse_b3_trace_id(v, len, e.trace_id)) return;
      e.b3 |= kB3Trace;
      break;
    case HttpHeader::B3SpanId:
      if ((e.b3 & (kB3Single | kB3Span)) || !parse_b3_span_id(v, len, e.parent_id)) return;
      e.b3 |= kB3Span;
      break;
    case HttpHeader::B3Sampled: {
      bool sampled = true;
      if ((e.b3 & (kB3Single | kB3Sampled)) || !parse_b3_sampled(v, len, &sampled)) return;
      e.b3 |= sampled ? kB3Sampled : kB3Sampled | kB3NotSampled;
      break;
    }
    default:
      break;
  }
}

// The header block ended: the request's trace context is known. The sink may
// decide its span's ids now, while the exchanges that enclose it (the calling
// pod's incoming requests of the same trace) are still open.
void HttpStream::on_request_headers() {
  Open* e = req_live_ ? entry(req_id_) : nullptr;
  uint8_t flags;
  if (!e || origin_of(*e, &flags) == TraceOrigin::None) return;
  if (sink_) sink_->on_request_context(e->trace_id, e->parent_id, &e->ids);
}

// The request's trace context as its headers say so far: a traceparent, else
// the b3 header, else X-B3-TraceId with X-B3-SpanId.
TraceOrigin HttpStream::origin_of(const Open& e, uint8_t* flags) {
  if (e.has_traceparent) {
    *flags = e.trace_flags;
    return TraceOrigin::W3C;
  }
  if (e.b3 & kB3Single) {
    *flags = e.trace_flags;
    return TraceOrigin::B3;
  }
  if ((e.b3 & (kB3Trace | kB3Span)) == (kB3Trace | kB3Span)) {
    *flags = (e.b3 & kB3NotSampled) ? 0 : 1;
    return TraceOrigin::B3;
  }
  *flags = 0;
  return TraceOrigin::None;
}

void HttpStream::on_response_line(uint8_t version, uint16_t status, uint64_t ts_ns) {
  dirs_[1].validated = true;
  resp_status_ = status;
  if (bind_ == Bind::None) {
    // The server answers a request it received in full: if that request (or
    // all of it) is behind a hole, the hole will not fill.
    if (open_count_ == 0 || (req_live_ && req_id_ == open_[open_head_].id)) give_up_hole(0);
    // After responses were lost (a gap), a request followed by another that
    // began before this response lost its response (or the client
    // pipelines, which a gap makes unknowable anyway).
    if (realign_) {
      realign_ = false;
      while (skip_responses_ == 0 && open_count_ >= 2 && !open_[open_head_].response_started &&
             open_[(open_head_ + 1) % kHttpOpenMax].request_start_ns <= ts_ns) {
        open_[open_head_].incomplete |= kHttpGapResponse;
        emit(open_[open_head_], true, nullptr);
      }
    }
    if (skip_responses_ > 0) {
      bind_ = Bind::Orphan;
      counters_.orphan_responses++;
    } else if (open_count_ > 0 && open_[open_head_].request_start_ns <= ts_ns) {
      bind_ = Bind::Entry;  // a request that began after the response is not its request
      resp_id_ = open_[open_head_].id;
    } else {
      bind_ = Bind::NoRequest;
      std::memset(&no_request_, 0, sizeof(no_request_));
      no_request_.incomplete = kHttpNoRequest;
      no_request_.last_ns = ts_ns;
      counters_.no_request++;
    }
  }
  Open* e = response_entry();
  if (!e) return;
  e->response_started = true;
  e->response_version = version;
  if (is_final(status)) e->status = status;
  e->last_ns = max64(e->last_ns, ts_ns);
}

HttpBody HttpStream::on_response_headers() {
  const uint16_t st = resp_status_;
  Open* e = response_entry();
  const HttpMethod m = e ? e->method : HttpMethod::None;
  HttpBody rule = HttpBody::Framed;
  if (st == 101 || (m == HttpMethod::Connect && st >= 200 && st < 300))
    rule = HttpBody::Tunnel;
  else if (st < 200 || st == 204 || st == 304 || m == HttpMethod::Head)
    rule = HttpBody::None;
  if (rule == HttpBody::Tunnel) {
    if (e) e->flags |= kHttpTunnel;
    // what follows the request is not HTTP either
    if (!dirs_[0].parser.ignoring()) {
      if (req_live_ && !(bind_ == Bind::Entry && req_id_ == resp_id_)) void_request();
      req_live_ = false;
      dirs_[0].parser.ignore();
      dirs_[0].reorder.clear();
    }
  }
  return rule;
}

void HttpStream::on_message_end(bool response, const HttpMessageInfo& m) {
  if (!response) {
    Open* e = req_live_ ? entry(req_id_) : nullptr;
    req_live_ = false;
    if (!e) return;
    e->request_done = true;
    e->request_body = m.body_bytes;
    e->request_keep_alive = m.keep_alive;
    if (m.chunked) e->flags |= kHttpRequestChunked;
    e->last_ns = max64(e->last_ns, m.last_ns);
    return;
  }
  if (!is_final(resp_status_)) {  // 1xx: the final response follows
    if (Open* e = response_entry()) {
      if (e->interim < UINT8_MAX) e->interim++;
      e->last_ns = max64(e->last_ns, m.last_ns);
    }
    return;
  }
  finish_response(&m, 0);
}

void HttpStream::on_message_abort(bool response, HttpAbort why, const HttpMessageInfo& m) {
  if (why == HttpAbort::HeaderBound) counters_.header_bound++;
  if (why == HttpAbort::Malformed) counters_.malformed++;
  if (!response) {
    Open* e = req_live_ ? entry(req_id_) : nullptr;
    req_live_ = false;
    if (!e) return;
    switch (why) {
      case HttpAbort::Gap:
        e->incomplete |= kHttpGapRequest;
        break;
      case HttpAbort::HeaderBound:
        e->incomplete |= kHttpHeaderBound;
        break;
      case HttpAbort::Malformed:
        e->incomplete |= kHttpBadRequest;
        break;
      case HttpAbort::Closed:
        e->incomplete |= kHttpRequestCut;
        break;
    }
    e->request_done = true;
    e->request_body = m.body_bytes;
    if (m.chunked) e->flags |= kHttpRequestChunked;
    e->last_ns = max64(e->last_ns, m.last_ns);
    return;
  }
  uint16_t incomplete = 0;
  switch (why) {
    case HttpAbort::Gap:
      incomplete = kHttpGapResponse;
      break;
    case HttpAbort::HeaderBound:
      incomplete = kHttpHeaderBound;
      break;
    case HttpAbort::Malformed:
      incomplete = kHttpBadResponse;
      break;
    case HttpAbort::Closed:
      incomplete = kHttpResponseCut;
      break;
  }
  finish_response(&m, incomplete);
}

void HttpStream::on_bad_start(bool response, bool first) {
  if (!response) void_request();
  if (!first) {
    counters_.junk++;
    return;
  }
  // the direction's first bytes are not HTTP (the parser ignores them now)
  counters_.not_http++;
  dirs_[response].reorder.clear();
  if (!dirs_[!response].validated) not_http(!response);
}

}  // namespace ebpfc
