// http_pairing_fuzz.cpp - libFuzzer target for the pairing of requests and
// responses after losses (extension/core/http_stream.*): never a wrong pair.
//
// The input drives a simulated connection whose truth is known: exchange i
// sends a request for "/e<i>" and gets a response with status 200 + i (204
// and 304 without a body), so that an exchange carrying another's status
// shows. The input chooses, byte by byte (zeros once it runs out):
//
//   config (1 byte): bit 0 the client pipelines (bursts of requests), bit 1
//     the capture joins mid-stream, bit 2 some requests expect 100 Continue,
//     bits 3-4 how often a segment is lost (never, 1/16, 1/4, 1/2)
//   then per exchange: its kind (GET, POST with a body, a chunked response,
//     a request split in the middle of its request line), its body size, the
//     segment size of each message, which of its segments are lost,
//     reordered (within a window of 4) or duplicated, and for the pipelined
//     client the length of each burst.
//
// Each segment carries the acknowledgement number its sender would have: the
// other direction's bytes up to the last message it received whole before
// sending (lost segments reach the peer; the capture never sees them).
//
// Checked (CHECK aborts: libFuzzer reports a crash): no exchange has a status
// that is not its own (one whose request lost bytes, maybe in its target, has
// the status of an exchange whose target begins as its does); every exchange is well formed enough
// to tell (a request without a response has no status, a response without a request says so); no
// allocation; the open exchanges stay bounded. For a client that waits for each response, from the
// handshake on: every exchange whose request and response (and its 100 Continue) were seen whole,
// and whose preceding request was seen whole, is paired.
#include <algorithm>
#include <cstdio>
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

constexpr int kMaxExchanges = 60;

class Input {
 public:
  Input(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
  uint8_t byte() { return p_ < end_ ? *p_++ : 0; }
  bool done() const { return p_ >= end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

int status_of(int i) { return 200 + i; }
bool bodyless(int st) { return st == 204 || st == 304; }

struct Seg {
  unsigned dir;
  uint32_t seq;
  std::string bytes;
  uint32_t ack;
};

class Sink final : public ebpfc::HttpExchangeSink {
 public:
  std::vector<bool> paired = std::vector<bool>(kMaxExchanges, false);
  void on_exchange(const HttpExchange& x) override {
    if (x.status != 0) CHECK(x.response_version != 0);
    if (x.method == HttpMethod::None) {
      CHECK(x.incomplete & ebpfc::kHttpNoRequest);
      return;
    }
    CHECK(!(x.incomplete & ebpfc::kHttpNoRequest));
    if (x.status == 0) {
      CHECK(x.incomplete != 0);
      return;
    }
    const std::string target(x.target, x.target_len);
    if (x.incomplete & ebpfc::kHttpGapRequest) {
      // bytes of the request were lost, maybe inside its target: the status
      // is that of an exchange whose target begins so
      bool some = false;
      for (int i = 0; i < kMaxExchanges; i++)
        some |= ("/e" + std::to_string(i)).compare(0, target.size(), target) == 0 &&
                x.status == status_of(i);
      CHECK(some);
      return;
    }
    CHECK(target.size() >= 3 && target.compare(0, 2, "/e") == 0);
    const int i = std::atoi(target.c_str() + 2);
    CHECK(i >= 0 && i < kMaxExchanges && target == "/e" + std::to_string(i));
    CHECK(x.status == status_of(i));  // never another exchange's status
    paired[static_cast<size_t>(i)] = true;
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  install_alloc_hooks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static HttpStream* stream = new HttpStream;  // reused, as the worker's pool does
  Input in(data, size);
  const uint8_t config = in.byte();
  const bool pipelined = config & 1;
  const bool mid_stream = config & 2;
  const bool interim = config & 4;
  // a segment is lost when its fate byte & loss_mask is 0: never, 1/16, 1/4, 1/2
  const uint8_t loss_mask = (const uint8_t[]){0, 0x0f, 0x03, 0x01}[(config >> 3) & 3];
  const uint32_t isn[2] = {static_cast<uint32_t>(in.byte()) << 24 | 0x1234,
                           static_cast<uint32_t>(in.byte()) << 24 | 0x5678};
  uint32_t seq[2] = {isn[0], isn[1]};

  std::vector<Seg> segs;
  std::vector<bool> req_whole(kMaxExchanges, true), resp_whole(kMaxExchanges, true);
  // Cuts message m of dir into segments chosen by the input, losing,
  // reordering and duplicating some; returns whether all were delivered.
  auto add = [&](unsigned dir, const std::string& m, uint32_t ack) {
    const size_t mss = 1 + (in.byte() % 64) * 23;
    std::vector<Seg> v;
    for (size_t off = 0; off < m.size(); off += mss)
      v.push_back({dir, seq[dir] + static_cast<uint32_t>(off), m.substr(off, mss), ack});
    seq[dir] += static_cast<uint32_t>(m.size());
    const uint8_t how = in.byte();
    if (how & 1)
      for (size_t w = 0; w + 1 < v.size(); w += 4)
        std::swap(v[w], v[std::min(w + 3, v.size() - 1)]);
    bool whole = true;
    for (const Seg& s : v) {
      const uint8_t fate = in.byte();
      if (loss_mask != 0 && (fate & loss_mask) == 0) {
        whole = false;
        continue;
      }
      segs.push_back(s);
      if (fate == 0xff) segs.push_back(s);  // duplicate
    }
    return whole;
  };

  const int n = 1 + in.byte() % kMaxExchanges;
  std::vector<bool> interim_whole(kMaxExchanges, true), expects(kMaxExchanges, false);
  uint32_t resp_acked = seq[1];
  for (int i = 0; i < n;) {
    const int burst = pipelined ? 1 + in.byte() % 6 : 1;
    const int end = std::min(n, i + burst);
    for (int k = i; k < end; k++) {
      const uint8_t kind = in.byte();
      const std::string target = "/e" + std::to_string(k);
      std::string req;
      const bool expect = interim && (kind & 1) && (kind & 8);
      expects[static_cast<size_t>(k)] = expect;
      if (kind & 1) {
        const size_t body = in.byte() * 7u;
        req = "POST " + target + " HTTP/1.1\r\nHost: h\r\n" +
              (expect ? "Expect: 100-continue\r\n" : "") +
              "Content-Length: " + std::to_string(body) + "\r\n\r\n" + std::string(body, 'b');
      } else {
        req = "GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n";
      }
      req_whole[static_cast<size_t>(k)] = add(0, req, resp_acked);
    }
    const uint32_t req_acked = seq[0];
    for (int k = i; k < end; k++) {
      const uint8_t kind = in.byte();
      const int st = status_of(k);
      if (expects[static_cast<size_t>(k)])
        interim_whole[static_cast<size_t>(k)] = add(1, "HTTP/1.1 100 Continue\r\n\r\n", req_acked);
      std::string resp = "HTTP/1.1 " + std::to_string(st) + " X\r\n";
      if (bodyless(st)) {
        resp += "\r\n";
      } else if (kind & 2) {
        resp += "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n" +
                std::string("a\r\n0123456789\r\n") + "0\r\n\r\n";
      } else {
        const size_t body = in.byte() * 11u;
        resp += "Content-Length: " + std::to_string(body) + "\r\n\r\n" + std::string(body, 'r');
      }
      resp_whole[static_cast<size_t>(k)] = add(1, resp, req_acked);
    }
    resp_acked = seq[1];
    i = end;
  }

  size_t from = 0;
  if (mid_stream && !segs.empty()) from = in.byte() % segs.size();

  Sink sink;
  g_allocations = 0;
  g_counting = true;
  stream->reset(false);
  for (unsigned d = 0; d < 2; d++) {
    if (mid_stream)
      stream->set_stream_unknown(d);
    else
      stream->set_stream_start(d, isn[d]);
  }
  uint64_t ts = 1;
  for (size_t k = from; k < segs.size(); k++) {
    const Seg& s = segs[k];
    stream->on_segment(s.dir, s.seq, reinterpret_cast<const uint8_t*>(s.bytes.data()),
                       static_cast<uint32_t>(s.bytes.size()), static_cast<uint32_t>(s.bytes.size()),
                       ts++, sink, s.ack, true);
    CHECK(stream->open_exchanges() <= ebpfc::kHttpOpenMax);
  }
  stream->on_close(sink);
  g_counting = false;
  CHECK(g_allocations == 0);
  CHECK(stream->open_exchanges() == 0);

  if (!pipelined && !mid_stream) {
    for (int k = 0; k < n; k++) {
      const size_t i = static_cast<size_t>(k);
      if (!req_whole[i] || !resp_whole[i] || !interim_whole[i]) continue;
      if (k > 0 && !req_whole[i - 1]) continue;
      if (!sink.paired[i]) std::fprintf(stderr, "exchange %d of %d not paired\n", k, n);
      CHECK(sink.paired[i]);
    }
  }
  return 0;
}
