// http_fuzz.cpp - libFuzzer target for the HTTP/1.x parser core
// (extension/core/http_stream.* and what it uses).
//
// The input is a connection's capture, as the kernel would report it:
//
//   config (1 byte) | isn (4 bytes) | records...
//
// config: bit 0 the capture joined mid-stream; bit 1 the stream starts are
// known (set_stream_start) and each segment carries an acknowledgement number
// (the other direction up to what was delivered or lost, held segments not
// included); bits 2-4 how the simulated kernel treats the skip
// hint (2: leaves out segments that end before it, 3: reports segments from
// the skip point on, 4: also leaves out the segment that reaches it); bits 5-7
// the head size the kernel reports of each segment.
//
// A record is ctl (1 byte) and its operands. ctl bit 0 is the direction,
// bits 4-7 advance the clock (15: by more than the hole timeout), bits 1-3:
//   0  n (1 byte), n bytes: the direction's next bytes, one segment
//   1  k (1 byte): a canned HTTP piece (request line, header, chunk...), one segment;
//      k >= 0xc0: filler to reach the bounds, (k & 31) + 1 times 512 bytes of
//      'a' (k < 0xe0) or of "x=1," (a long tracestate)
//   2  n, n bytes: like 0, but the segment is held back (delivered by 3 or at the end)
//   3  held segments are delivered, newest first
//   4  the last segment again, or a piece of it overlapping (retransmission)
//   5  n (1 byte): n*13 bytes are lost (sent, never reported)
//   6  on_progress up to the direction's end
//   7  the connection closes; the object is reused for a new one (next byte: config)
//
// Checked (CHECK aborts: libFuzzer reports a crash): every exchange is well
// formed (bounds, NUL-terminated strings of printable bytes, consistent
// method/flags/trace context, times in order); body bytes never exceed the
// sequence space the direction covered; open exchanges stay bounded; no
// allocation happens inside the stream; after close nothing comes out. Then
// the same bytes, delivered in order in other segmentations, must give the
// same exchanges whenever no resynchronisation was involved.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/http_stream.h"

#include "alloc_hooks.h"
#include "fuzz_check.h"

namespace {

using ebpfc::HttpExchange;
using ebpfc::HttpMethod;
using ebpfc::HttpStream;

constexpr uint64_t kMs = 1000 * 1000;

const char* const kCanned[] = {
    "GET / HTTP/1.1\r\n",
    "POST /submit?x=1 HTTP/1.1\r\n",
    "HEAD /h HTTP/1.1\r\n",
    "CONNECT db:443 HTTP/1.1\r\n",
    "PUT /p HTTP/1.0\r\n",
    "OPTIONS * HTTP/1.1\r\n",
    "Host: example.com\r\n",
    "Content-Length: 5\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 99999999999999999999\r\n",
    "Content-Length: 4000\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive, Upgrade\r\n",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n",
    "tracestate: a=1,b=2\r\n",
    "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\r\n",
    "b3: 64fe8b2a57d3eff7-e457b5a2e4d86bd1\r\n",
    "X-B3-TraceId: 463ac35c9f6413ad48485a3953bb6124\r\n",
    "X-B3-SpanId: a2fb4a1d1a96d312\r\n",
    "X-B3-Sampled: 0\r\n",
    "Expect: 100-continue\r\n",
    "Cookie: secret\r\n",
    "\r\n",
    "\n",
    "HTTP/1.1 200 OK\r\n",
    "HTTP/1.1 100 Continue\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\r\n",
    "HTTP/1.1 204 No Content\r\n",
    "HTTP/1.1 304 Not Modified\r\n",
    "HTTP/1.0 404 Not Found\r\n",
    "HTTP/1.1 500 X\r\n",
    "5;e=1\r\nhello\r\n",
    "0\r\n\r\n",
    "0\r\nX-T: 1\r\n\r\n",
    "hello",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "*1\r\n$4\r\nPING\r\n",
    "GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
};
constexpr size_t kCannedCount = sizeof(kCanned) / sizeof(kCanned[0]);
constexpr uint32_t kHeads[8] = {UINT32_MAX, 1, 7, 16, 64, 200, 1448, 4096};

class Sink final : public ebpfc::HttpExchangeSink {
 public:
  std::vector<HttpExchange>* keep = nullptr;  // filled outside the counted region only
  size_t n = 0;
  size_t incomplete = 0;
  uint64_t body[2] = {0, 0};
  bool closed = false;

  void on_exchange(const HttpExchange& x) override {
    CHECK(!closed);
    check(x);
    n++;
    incomplete += x.incomplete != 0;
    body[0] += x.request_body_bytes;
    body[1] += x.response_body_bytes;
    if (keep) {
      const bool was = g_counting;
      g_counting = false;
      keep->push_back(x);
      g_counting = was;
    }
  }

  static void check_string(const char* s, size_t len, size_t max) {
    CHECK(len <= max);
    CHECK(s[len] == '\0');
    for (size_t i = 0; i < len; i++) {
      const uint8_t c = static_cast<uint8_t>(s[i]);
      CHECK(c >= 0x20 || c == '\t');
      CHECK(c != 0x7f);
    }
  }

  static bool nonzero(const uint8_t* p, size_t n) {
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) any |= p[i];
    return any != 0;
  }

  static void check(const HttpExchange& x) {
    CHECK(x.status == 0 || x.status == 101 || (x.status >= 200 && x.status <= 599));
    CHECK(static_cast<int>(x.method) <= static_cast<int>(HttpMethod::Other));
    CHECK((x.incomplete & ~0x1fffu) == 0);
    CHECK((x.flags & ~0x007fu) == 0);
    check_string(x.method_text, x.method_len, ebpfc::kHttpMethodMax);
    check_string(x.target, x.target_len, ebpfc::kHttpTargetMax);
    check_string(x.host, x.host_len, ebpfc::kHttpHostMax);
    check_string(x.tracestate, x.tracestate_len, ebpfc::kHttpTracestateMax);
    for (size_t i = 0; i < x.target_len; i++) CHECK(static_cast<uint8_t>(x.target[i]) > 0x20);
    if (x.method == HttpMethod::None) {
      CHECK(x.incomplete & ebpfc::kHttpNoRequest);
      CHECK(x.method_len == 0 && x.target_len == 0 && x.host_len == 0);
      CHECK(x.request_start_ns == 0 && x.request_body_bytes == 0 && x.request_version == 0);
      CHECK(!x.has_traceparent);
    } else {
      CHECK(!(x.incomplete & ebpfc::kHttpNoRequest));
      CHECK(x.method_len > 0);
      CHECK(ebpfc::http_method_of(x.method_text, x.method_len) == x.method);
      for (size_t i = 0; i < x.method_len; i++)  // an RFC 9110 token
        CHECK(std::strchr("!#$%&'*+-.^_`|~", x.method_text[i]) != nullptr ||
              std::isalnum(static_cast<unsigned char>(x.method_text[i])));
      CHECK(x.request_start_ns != 0);
      CHECK(x.request_start_ns <= x.response_end_ns);
      if (x.target_len == 0) CHECK(x.incomplete != 0);
    }
    CHECK(x.request_version == 0 || x.request_version == 10 || x.request_version == 11);
    CHECK(x.response_version == 0 || x.response_version == 10 || x.response_version == 11);
    if (x.status != 0) CHECK(x.response_version != 0);
    if (x.status == 0) CHECK(x.incomplete != 0);
    if (x.has_traceparent) {
      CHECK(nonzero(x.trace_id, 16) && nonzero(x.parent_id, 8));
      CHECK(!(x.flags & ebpfc::kHttpTraceparentInvalid));
    } else {
      CHECK(x.tracestate_len == 0);
    }
    if (x.flags & ebpfc::kHttpKeepAlive) CHECK(!(x.flags & ebpfc::kHttpTunnel));
    if (x.incomplete & ebpfc::kHttpNoResponse) CHECK(x.response_body_bytes == 0);
  }
};

struct Seg {
  uint64_t off;  // in the direction's virtual byte space
  std::string bytes;
  unsigned dir;
};

// One connection's capture, replayed through a simulated kernel.
class Replay {
 public:
  Replay(HttpStream& s, Sink& sink) : s_(s), sink_(sink) {}

  void start(uint8_t config, uint32_t isn) {
    config_ = config;
    isn_[0] = isn;
    isn_[1] = isn * 2654435761u + 12345;
    end_[0] = end_[1] = 0;
    acked_[0] = acked_[1] = 0;
    min_[0] = min_[1] = UINT64_MAX;
    max_[0] = max_[1] = 0;
    last_[0] = Seg{0, std::string(), 0};
    last_[1] = Seg{0, std::string(), 1};
    held_.clear();
    sink_.n = sink_.incomplete = 0;
    sink_.body[0] = sink_.body[1] = 0;
    if (config & 2) note(0, 0, 0), note(1, 0, 0);  // the parser starts at offset 0
    g_counting = true;
    s_.reset(config & 1);
    if (config & 2) {
      s_.set_stream_start(0, isn_[0]);
      s_.set_stream_start(1, isn_[1]);
    }
    g_counting = false;
  }

  // Appends bytes to dir's stream; delivers them (or holds them back).
  void append(unsigned dir, std::string bytes, bool hold) {
    if (bytes.empty()) return;
    Seg seg{end_[dir], std::move(bytes), dir};
    end_[dir] += seg.bytes.size();
    if (hold && held_.size() < 16) {
      held_.push_back(std::move(seg));
      return;
    }
    deliver(seg);
  }

  void release() {
    while (!held_.empty()) {
      const Seg seg = held_.back();
      held_.pop_back();
      deliver(seg);
    }
  }

  void retransmit(unsigned dir, uint8_t how) {
    const Seg& l = last_[dir];
    if (l.bytes.empty()) return;
    const size_t from = how % (l.bytes.size() + 1);
    Seg seg{l.off + from, l.bytes.substr(from), dir};
    deliver(seg);
  }

  void lose(unsigned dir, size_t n) {  // the peer gets them; the capture does not
    end_[dir] += n;
    acked_[dir] = std::max(acked_[dir], end_[dir]);
  }

  void progress(unsigned dir) {
    g_counting = true;
    s_.on_progress(dir, isn_[dir] + static_cast<uint32_t>(end_[dir]), ts_, sink_);
    g_counting = false;
    note(dir, end_[dir], end_[dir]);
    check_stream();
  }

  void close() {
    release();
    g_counting = true;
    s_.on_close(sink_);
    g_counting = false;
    CHECK(s_.open_exchanges() == 0);
    CHECK(s_.done());
    CHECK(s_.skip_all(0) && s_.skip_all(1));
    CHECK(!s_.has_skip(0) && !s_.has_skip(1));
    // what was emitted: consistent with the counters and the sequence space
    CHECK(s_.counters().exchanges == sink_.n);
    CHECK(s_.counters().incomplete == sink_.incomplete);
    for (unsigned d = 0; d < 2; d++) {
      const uint64_t span = min_[d] == UINT64_MAX ? 0 : max_[d] - min_[d];
      CHECK(sink_.body[d] <= span);
    }
    // nothing comes out after the close
    const size_t before = sink_.n;
    sink_.closed = true;
    g_counting = true;
    static const uint8_t kGet[] = "GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    s_.on_segment(0, isn_[0] + static_cast<uint32_t>(end_[0]), kGet, 18, 18, ts_, sink_);
    s_.on_segment(1, isn_[1] + static_cast<uint32_t>(end_[1]), kGet + 18, 19, 19, ts_, sink_);
    s_.on_close(sink_);
    g_counting = false;
    sink_.closed = false;
    CHECK(sink_.n == before);
  }

  void tick(unsigned step) { ts_ += step == 15 ? ebpfc::kHttpHoleTimeoutNs + kMs : step * kMs; }

 private:
  void note(unsigned dir, uint64_t from, uint64_t to) {
    if (from < min_[dir]) min_[dir] = from;
    if (to > max_[dir]) max_[dir] = to;
  }

  void deliver(const Seg& seg) {
    const unsigned dir = seg.dir;
    last_[dir] = seg;
    uint64_t off = seg.off;
    const char* p = seg.bytes.data();
    uint32_t len = static_cast<uint32_t>(seg.bytes.size());
    note(dir, off, off + len);
    ts_++;
    if ((config_ & 4) && s_.has_skip(dir)) {
      const uint32_t skip = s_.skip_until(dir);
      const int32_t end_vs_skip = static_cast<int32_t>(isn_[dir] + off + len - skip);
      if (end_vs_skip < 0 || (end_vs_skip == 0 && (config_ & 16))) return;  // left out
      const int32_t into = static_cast<int32_t>(skip - isn_[dir] - off);
      if ((config_ & 8) && into > 0) {
        p += into;
        len -= static_cast<uint32_t>(into);
        off += static_cast<uint32_t>(into);
      }
    }
    acked_[dir] = std::max(acked_[dir], seg.off + seg.bytes.size());
    // the acknowledged bytes of the other direction count as covered: the
    // stream counts body bytes from sequence numbers, seen or not
    if (config_ & 2) note(dir ^ 1, acked_[dir ^ 1], acked_[dir ^ 1]);
    const uint32_t head = kHeads[config_ >> 5];
    const uint32_t data_len = len < head ? len : head;
    // a heap block of exactly the reported head: reads past it are ASan reports
    std::unique_ptr<uint8_t[]> copy(new uint8_t[data_len ? data_len : 1]);
    std::memcpy(copy.get(), p, data_len);
    g_counting = true;
    s_.on_segment(dir, isn_[dir] + static_cast<uint32_t>(off), copy.get(), data_len, len, ts_,
                  sink_, isn_[dir ^ 1] + static_cast<uint32_t>(acked_[dir ^ 1]),
                  (config_ & 2) != 0);
    g_counting = false;
    check_stream();
  }

  void check_stream() {
    CHECK(s_.open_exchanges() <= ebpfc::kHttpOpenMax);
    for (unsigned d = 0; d < 2; d++) {
      if (s_.has_skip(d)) {
        CHECK(!s_.skip_all(d));
        // ahead of what was delivered by at most the skip bound
        const uint32_t ahead = s_.skip_until(d) - isn_[d] - static_cast<uint32_t>(min_[d]);
        CHECK(ahead <= max_[d] - min_[d] + ebpfc::kHttpSkipMax);
      }
    }
  }

  HttpStream& s_;
  Sink& sink_;
  uint8_t config_ = 0;
  uint32_t isn_[2] = {0, 0};
  uint64_t end_[2] = {0, 0};
  uint64_t acked_[2] = {0, 0};  // what the peer of each direction received (delivered or lost)
  uint64_t min_[2], max_[2];
  uint64_t ts_ = 1;
  Seg last_[2];
  std::vector<Seg> held_;
};

// The exchanges of dir 0's bytes then dir 1's, delivered in order, cut at
// `cuts` (sizes, repeated), in a fresh stream.
std::vector<HttpExchange> in_order(const std::string bytes[2], const std::vector<size_t>& cuts,
                                   bool* resynced) {
  std::unique_ptr<HttpStream> s(new HttpStream);
  Sink sink;
  std::vector<HttpExchange> got;
  sink.keep = &got;
  s->reset(false);
  uint64_t ts = 1;
  size_t k = 0;
  for (unsigned d = 0; d < 2; d++) {
    const std::string& b = bytes[d];
    for (size_t off = 0; off < b.size();) {
      const size_t n = std::min(b.size() - off, cuts.empty() ? b.size() : cuts[k++ % cuts.size()]);
      s->on_segment(d, 1000 + static_cast<uint32_t>(off),
                    reinterpret_cast<const uint8_t*>(b.data() + off), static_cast<uint32_t>(n),
                    static_cast<uint32_t>(n), ts++, sink);
      off += n;
    }
  }
  s->on_close(sink);
  const ebpfc::HttpCounters& c = s->counters();
  *resynced = c.junk || c.resyncs || c.malformed || c.header_bound || c.gaps;
  return got;
}

bool same(const HttpExchange& a, const HttpExchange& b) {
  return a.request_body_bytes == b.request_body_bytes &&
         a.response_body_bytes == b.response_body_bytes && a.status == b.status &&
         a.incomplete == b.incomplete && a.flags == b.flags &&
         a.interim_responses == b.interim_responses && a.method == b.method &&
         a.request_version == b.request_version && a.response_version == b.response_version &&
         a.has_traceparent == b.has_traceparent && a.trace_origin == b.trace_origin &&
         a.trace_flags == b.trace_flags && std::memcmp(a.trace_id, b.trace_id, 16) == 0 &&
         std::memcmp(a.parent_id, b.parent_id, 8) == 0 && a.method_len == b.method_len &&
         std::memcmp(a.method_text, b.method_text, a.method_len) == 0 &&
         a.target_len == b.target_len && std::memcmp(a.target, b.target, a.target_len) == 0 &&
         a.host_len == b.host_len && std::memcmp(a.host, b.host, a.host_len) == 0 &&
         a.tracestate_len == b.tracestate_len &&
         std::memcmp(a.tracestate, b.tracestate, a.tracestate_len) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  static HttpStream* stream = new HttpStream;  // reused, as the worker's pool does
  Sink sink;
  Replay r(*stream, sink);
  const uint8_t config0 = data[0];
  uint32_t isn;
  std::memcpy(&isn, data + 1, 4);
  r.start(config0, isn);
  const uint8_t* p = data + 5;
  const uint8_t* const end = data + size;
  std::string plain[2];  // every byte appended, in order: for the in-order replays
  bool only_first = true;
  g_allocations = 0;

  while (p < end) {
    const uint8_t ctl = *p++;
    const unsigned dir = ctl & 1;
    r.tick(ctl >> 4);
    switch ((ctl >> 1) & 7) {
      case 0:
      case 2: {
        if (p == end) break;
        size_t n = *p++;
        if (n > static_cast<size_t>(end - p)) n = static_cast<size_t>(end - p);
        std::string b(reinterpret_cast<const char*>(p), n);
        p += n;
        if (only_first) plain[dir] += b;
        r.append(dir, std::move(b), ((ctl >> 1) & 7) == 2);
        break;
      }
      case 1: {
        if (p == end) break;
        const uint8_t k = *p++;
        std::string b;
        if (k < 0xc0) {
          b = kCanned[k % kCannedCount];
        } else {
          const size_t n = ((k & 31u) + 1) * 512;
          if (k < 0xe0) {
            b.assign(n, 'a');
          } else {
            for (size_t i = 0; i < n / 4; i++) b += "x=1,";
          }
        }
        if (only_first) plain[dir] += b;
        r.append(dir, std::move(b), false);
        break;
      }
      case 3:
        r.release();
        break;
      case 4:
        if (p == end) break;
        r.retransmit(dir, *p++);
        break;
      case 5:
        if (p == end) break;
        r.lose(dir, *p++ * 13u);
        only_first = false;
        break;
      case 6:
        r.progress(dir);
        break;
      case 7:
        r.close();
        only_first = false;
        if (p == end) break;
        const uint8_t config = *p++;
        r.start(config, isn + static_cast<uint32_t>(p - data) * 7919u);
        break;
    }
  }
  r.close();
  CHECK(g_allocations == 0);

  // Segmentation does not change what in-order bytes mean (unless the parser
  // had to hunt for a message start, which happens at segment starts).
  if (!(config0 & 1) && plain[0].size() + plain[1].size() > 0) {
    bool r1 = false, r2 = false, r3 = false;
    const std::vector<HttpExchange> whole = in_order(plain, {}, &r1);
    const size_t total = plain[0].size() + plain[1].size();
    const std::vector<HttpExchange> ones = in_order(plain, {total <= 4096 ? 1u : 61u}, &r2);
    const std::vector<HttpExchange> mixed = in_order(plain, {3, 1, 17, 250, 2}, &r3);
    if (!r1 && !r2) {
      CHECK(whole.size() == ones.size());
      for (size_t i = 0; i < whole.size(); i++) CHECK(same(whole[i], ones[i]));
    }
    if (!r1 && !r3) {
      CHECK(whole.size() == mixed.size());
      for (size_t i = 0; i < whole.size(); i++) CHECK(same(whole[i], mixed[i]));
    }
  }
  return 0;
}
