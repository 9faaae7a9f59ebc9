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
    D.ack = 0;
    D.has_ack = false;
    D.started = false;
    D.start_unknown = mid_stream;
    D.validated = false;
    D.busy = false;
    D.skip_holes = false;
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
  mid_stream_ = mid_stream;
  closed_ = false;
  aligned_ = !mid_stream;
  pipelines_ = false;
  req_contiguous_ = !mid_stream;
  last_req_has_ack_ = false;
  resp_lost_ = false;
  last_req_ack_ = 0;
  resp_lost_end_ = 0;
  evicted_ = 0;
  evicted_ack_ = 0;
  evicted_has_ack_ = false;
  unpaired_count_ = 0;
  sink_ = nullptr;
  counters_ = HttpCounters{};
}

void HttpStream::set_stream_start(unsigned dir, uint32_t seq) {
  if (dir > 1 || dirs_[dir].started) return;
  dirs_[dir].started = true;
  dirs_[dir].next = seq;
}

void HttpStream::set_stream_unknown(unsigned dir) {
  if (dir > 1 || dirs_[dir].started || dirs_[dir].start_unknown) return;
  Direction& D = dirs_[dir];
  D.start_unknown = true;
  if (!D.parser.ignoring()) D.parser.reset(dir == 1, true);
  if (dir == 0) req_contiguous_ = false;
  mid_stream_ = true;
  misaligned();
}

// ---- reassembly -----------------------------------------------------------

void HttpStream::on_segment(unsigned dir, uint32_t seq, const uint8_t* data, uint32_t data_len,
                            uint32_t segment_len, uint64_t ts_ns, HttpExchangeSink& sink,
                            uint32_t ack, bool has_ack) {
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
    if (D.start_unknown) lost_bytes(dir, seq);  // what came before is unknown
  }
  if (has_ack) acked(dir ^ 1, ack, ts_ns);
  const HttpSegment s{seq, segment_len, data_len, true, has_ack, ack, ts_ns, data};
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
  D.skip_holes = false;
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
        // A message head may lie in the hole: wait for it, unless holes
        // are being given up
        if (!D.skip_holes) return false;
        D.next = s.seq;
        lost_bytes(dir, s.seq);
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
        lost_bytes(dir, D.next);  // unread: message heads inside it are missed
        hunt_miss(dir);
        return true;
      }
      D.parser.resync();
      counters_.resyncs++;
    }
    D.ack = s.ack;
    D.has_ack = s.has_ack;
    const size_t used = D.parser.feed(s.data, s.data_len, s.ts_ns, s.seq, *this);
    if (D.parser.hunting() || D.parser.ignoring()) {  // the rest of s is of no use
      D.next = s.seq + s.segment_len;
      lost_bytes(dir, D.next);
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
      lost_bytes(dir, D.next);
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
    if (dist > 0 && D.parser.hunting() && !D.skip_holes) return;  // the hole may fill
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
  D.skip_holes = false;
  D.busy = false;
}

// The bytes of `dir` up to `end` were not parsed (lost, or skipped while
// hunting): for the responses, pairing must allow for messages among them.
void HttpStream::lost_bytes(unsigned dir, uint32_t end) {
  if (dir == 0) {
    req_contiguous_ = false;  // requests may have been among them
    return;
  }
  resp_lost_ = true;
  resp_lost_end_ = end;
}

// Bytes of `dir` are lost: the message in progress ends, the parser hunts.
// Whole messages may have been lost with them: pairing by order stops.
void HttpStream::lost(unsigned dir) {
  counters_.gaps++;
  dirs_[dir].skip_holes = true;  // up to the segment at hand (see on_segment)
  if (dir == 0) req_contiguous_ = false;
  dirs_[dir].parser.gap(*this);
  // Between a 1xx and its final response: the final one may be among the
  // lost bytes, and the next status line is not known to be its.
  if (dir == 1 && bind_ != Bind::None) finish_response(nullptr, kHttpGapResponse);
  misaligned();
}

// Requests and responses are no longer known to be aligned: the requests
// whose responses the aligned stream was to drop (emitted early) are now
// unresolved, and responses are paired only when certain (bind_in_doubt).
void HttpStream::misaligned() {
  if (!aligned_) return;
  aligned_ = false;
  evicted_ += skip_responses_;
  skip_responses_ = 0;
}

// A segment of the other direction says its sender had received `dir` up to
// `ack` (its acknowledgement number) when it sent it, at ts_ns. Those bytes
// crossed the capture point: a hole below `ack` will not fill, and bytes
// beyond what was reported that the parser needs (not body bytes the kernel
// was told to skip) were lost, even with no later segment to show a hole.
void HttpStream::acked(unsigned dir, uint32_t ack, uint64_t ts_ns) {
  Direction& D = dirs_[dir];
  if (D.busy || !D.started || D.parser.ignoring()) return;
  // Each round consumes at least one held segment (see give_up_hole).
  while (!D.reorder.empty()) {
    const HttpSegment held = D.reorder.get(D.reorder.earliest(D.next));
    if (static_cast<int32_t>(ack - held.seq) < 0) return;  // a hole beyond `ack` may fill
    give_up_hole(dir);
    if (D.parser.ignoring()) return;
  }
  const int32_t ahead = static_cast<int32_t>(ack - D.next);
  if (ahead <= 0) return;
  if (D.parser.hunting()) {  // bytes it did not see: lost
    D.next = ack;
    lost_bytes(dir, ack);
    return;
  }
  const uint64_t op = D.parser.opaque();
  if (op == UINT64_MAX) return;  // a body that ends with the connection
  D.busy = true;
  // Body bytes it need not see (the kernel may have left them out): counted,
  // and a body that ends there ends. What the parser needed beyond is lost.
  const uint64_t take = op < static_cast<uint64_t>(ahead) ? op : static_cast<uint64_t>(ahead);
  if (take > 0) {
    D.parser.skip(take, ts_ns, false, *this);
    D.next += static_cast<uint32_t>(take);
    counters_.skipped_bytes += take;
  }
  if (take < static_cast<uint64_t>(ahead) && !D.parser.ignoring()) {
    lost(dir);
    D.next = ack;
    lost_bytes(dir, ack);
    D.skip_holes = false;
  }
  D.busy = false;
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
  if (!f.response_started) {  // its response is yet to come: drop it
    if (aligned_)
      skip_responses_++;
    else
      evicted_++;
    evicted_ack_ = f.ack;
    evicted_has_ack_ = f.has_ack;
  }
  f.incomplete |= kHttpQueueBound;
  if (f.doubt) f.incomplete |= kHttpUnpaired;
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

void HttpStream::bind_no_request(uint64_t ts_ns, uint16_t incomplete) {
  bind_ = Bind::NoRequest;
  std::memset(&no_request_, 0, sizeof(no_request_));
  no_request_.incomplete = incomplete;
  no_request_.last_ns = ts_ns;
  counters_.no_request++;
}

// A response begins while requests and responses are not known to be aligned
// (after a loss, or mid-stream). Its request is certain only if
//   - exactly one open request may be it: one that began before it (at the
//     capture, and at the server as far as the response's acknowledgement
//     number tells) whose client, when it sent it, had received the server's
//     bytes exactly up to where this response begins (its acknowledgement
//     number lies between the end of what came before and the status line).
//     A client that waits for each response before its next request sends
//     every request that way; no other request can have that number unless
//     the client sent two without reading in between;
//   - the request before that one was seen, with no request byte lost
//     between them, and the client had received more of the server's bytes
//     when it sent this one (after_known): else it may have been sent right
//     behind a request the capture lost, whose response this would be;
//   - the client was never seen pipelining on this connection (a request
//     sent while another waited for its response): a pipelining client may
//     have sent that request while an earlier one still waited;
//   - every earlier open request (and every one emitted early) can have had
//     its response before this one (earlier_answerable()).
// Then the earlier open requests are emitted without a response (their
// responses were lost: response_gap, or emitted unpaired: unpaired), this
// response is that request's, and pairing by order resumes. Otherwise the
// response is emitted without a request, and the open requests that began
// before it with kHttpUnpaired when they end.
void HttpStream::bind_in_doubt(uint64_t ts_ns) {
  const HttpMessageParser& p = dirs_[1].parser;
  const Direction& R = dirs_[1];
  const uint32_t at = p.message_seq();
  const uint32_t lead = p.lead_seq();
  uint32_t before = 0, matches = 0, found = 0;
  for (uint32_t k = 0; k < open_count_; k++) {
    const Open& e = open_[(open_head_ + k) % kHttpOpenMax];
    if (e.request_start_ns > ts_ns) break;                             // began after the response
    if (R.has_ack && static_cast<int32_t>(R.ack - e.seq) <= 0) break;  // not at the server yet
    before = k + 1;
    if (e.has_ack && e.ack - lead <= at - lead) {
      matches++;
      found = k;
    }
  }
  if (!pipelines_ && matches == 1 && open_[(open_head_ + found) % kHttpOpenMax].after_known &&
      earlier_answerable(found, at)) {
    for (uint32_t k = 0; k < found; k++) {
      Open& f = open_[open_head_];
      f.incomplete |= f.doubt ? kHttpUnpaired : kHttpGapResponse;
      emit(f, true, nullptr);
    }
    bind_ = Bind::Entry;
    resp_id_ = open_[open_head_].id;
    aligned_ = true;
    resp_lost_ = false;
    evicted_ = 0;
    unpaired_count_ = 0;
    counters_.realigned++;
    return;
  }
  for (uint32_t k = 0; k < before; k++) open_[(open_head_ + k) % kHttpOpenMax].doubt = true;
  bind_no_request(ts_ns, before > 0 ? kHttpNoRequest | kHttpUnpaired : kHttpNoRequest);
  if (before > 0) counters_.unpaired++;
  unpaired_seq_[unpaired_count_ % kHttpOpenMax] = at;
  unpaired_count_++;
}

// Whether every open request before open_[head + cand] (and every request
// emitted early whose response may still come) can have had its response
// before the response that begins at `at`. A response begins at or after its
// request's acknowledgement number; before `at` there is room for any number
// of responses in bytes the capture did not read, and for one at each
// response emitted unpaired. The requests' intervals [ack, at) are nested
// (the later the request, the shorter), so counting from the latest request
// back, the k-th must find k places in its interval.
bool HttpStream::earlier_answerable(uint32_t cand, uint32_t at) const {
  uint32_t need = 0;
  auto room = [&](bool has_ack, uint32_t ack) {
    need++;
    const uint32_t span = at - ack;
    if (!has_ack || span == 0 || span > INT32_MAX) return false;
    if (resp_lost_ && static_cast<int32_t>(resp_lost_end_ - ack) > 0) return true;
    const uint32_t n = unpaired_count_ < kHttpOpenMax ? unpaired_count_ : kHttpOpenMax;
    uint32_t places = 0;
    for (uint32_t i = 0; i < n; i++)
      if (unpaired_seq_[i] - ack < span) places++;
    return places >= need;
  };
  for (uint32_t k = cand; k-- > 0;) {
    const Open& e = open_[(open_head_ + k) % kHttpOpenMax];
    if (!room(e.has_ack, e.ack)) return false;
  }
  for (uint32_t i = 0; i < evicted_; i++)
    if (!room(evicted_has_ack_, evicted_ack_)) return false;
  return true;
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
  while (open_count_ > 0) {
    Open& f = open_[open_head_];
    if (f.doubt) f.incomplete |= kHttpUnpaired;
    // a response may have been among the bytes lost since it was sent
    if (!aligned_ && resp_lost_ && (!f.has_ack || static_cast<int32_t>(resp_lost_end_ - f.ack) > 0))
      f.incomplete |= kHttpGapResponse;
    emit(f, true, nullptr);
  }
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
  const Direction& D = dirs_[0];
  // A request sent before the response to an earlier one ended (the aligned
  // queue holds only those), or without the client having received anything
  // since its previous request: the client pipelines.
  const bool read_since = D.has_ack && (last_req_has_ack_ ? D.ack != last_req_ack_ : next_id_ == 0);
  if ((aligned_ && open_count_ > 0) || (D.has_ack && last_req_has_ack_ && D.ack == last_req_ack_))
    pipelines_ = true;
  const bool after_known = req_contiguous_ && read_since;
  req_contiguous_ = true;
  last_req_has_ack_ = D.has_ack;
  last_req_ack_ = D.ack;
  if (open_count_ == kHttpOpenMax) evict_front();
  Open& e = push_back();
  e.has_request = true;
  e.seq = D.parser.message_seq();
  e.ack = D.ack;
  e.has_ack = D.has_ack;
  e.after_known = after_known;
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
    if (!aligned_) {
      bind_in_doubt(ts_ns);
    } else if (skip_responses_ > 0) {
      bind_ = Bind::Orphan;
      counters_.orphan_responses++;
    } else if (open_count_ > 0 && open_[open_head_].request_start_ns <= ts_ns) {
      bind_ = Bind::Entry;  // a request that began after the response is not its request
      resp_id_ = open_[open_head_].id;
    } else {
      bind_no_request(ts_ns, kHttpNoRequest);
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
  // the parser hunts for the next message: where this one ended is unknown
  if (why == HttpAbort::HeaderBound || why == HttpAbort::Malformed) misaligned();
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
  if (!response) {
    void_request();
    req_contiguous_ = false;
  }
  if (first && dirs_[!response].validated) {
    // The other direction is HTTP: this one's first bytes were not its
    // start after all (they were not seen): it hunts for a message start.
    dirs_[response].parser.reset(response, true);
    first = false;
  }
  if (!first) {
    counters_.junk++;
    if (response && bind_ != Bind::None) finish_response(nullptr, kHttpBadResponse);
    misaligned();
    return;
  }
  // the direction's first bytes are not HTTP (the parser ignores them now)
  counters_.not_http++;
  dirs_[response].reorder.clear();
  if (!dirs_[!response].validated) not_http(!response);
}

}  // namespace ebpfc
