// Tests of extension/core/http_stream.*: HTTP/1.x exchanges of a connection
// from segments as the kernel reports them (heads, skip hint, duplicates,
// reordering, losses), pairing, bounds, and input that is not HTTP.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/http_stream.h"

// The sanitizer runtime's allocation hooks (sanitizer/allocator_interface.h,
// which GCC does not install): the tests are built with ASan.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));

namespace ebpfc_test {
namespace {

using namespace std::string_literals;
using ebpfc::HttpExchange;
using ebpfc::HttpMethod;
using ebpfc::HttpStream;

constexpr unsigned kC = 0;  // client -> server
constexpr unsigned kS = 1;  // server -> client

class Recorder final : public ebpfc::HttpExchangeSink {
 public:
  std::vector<HttpExchange> got;
  void on_exchange(const HttpExchange& x) override { got.push_back(x); }
};

// What the simulated kernel reports of each segment.
struct Kernel {
  uint32_t head = UINT32_MAX;  // at most this many bytes of a segment
  bool honour_skip = false;    // leave out segments that end before skip_until()
  bool from_skip = false;      // report a segment from skip_until() on when it lies inside it
  bool drop_reaching = false;  // leave out the segment that ends at skip_until() too
};

// One connection: sends each direction's bytes as segments with increasing
// timestamps (1 per segment).
class Conn {
 public:
  explicit Conn(bool mid_stream = false, uint32_t isn_c = 1000, uint32_t isn_s = 7000000)
      : stream_(new HttpStream) {
    stream_->reset(mid_stream);
    seq[kC] = isn_c;
    seq[kS] = isn_s;
  }

  HttpStream& stream() { return *stream_; }
  std::vector<HttpExchange>& got() { return rec.got; }

  // The next `bytes` of `dir`, in segments of at most mss bytes.
  void send(unsigned dir, const std::string& bytes, size_t mss = 1448) {
    for (size_t off = 0; off < bytes.size(); off += mss)
      segment(dir, seq[dir] + static_cast<uint32_t>(off), bytes.substr(off, mss));
    seq[dir] += static_cast<uint32_t>(bytes.size());
  }

  // Cuts `bytes` (the next of `dir`) into segments of mss; returns them with
  // their sequence numbers, without sending.
  std::vector<std::pair<uint32_t, std::string>> cut(unsigned dir, const std::string& bytes,
                                                    size_t mss) {
    std::vector<std::pair<uint32_t, std::string>> v;
    for (size_t off = 0; off < bytes.size(); off += mss)
      v.emplace_back(seq[dir] + static_cast<uint32_t>(off), bytes.substr(off, mss));
    seq[dir] += static_cast<uint32_t>(bytes.size());
    return v;
  }

  // One segment through the simulated kernel.
  void segment(unsigned dir, uint32_t sq, const std::string& data) {
    ts++;
    const char* p = data.data();
    uint32_t len = static_cast<uint32_t>(data.size());
    if (kernel.honour_skip && stream_->has_skip(dir)) {
      const uint32_t skip = stream_->skip_until(dir);
      const int32_t end_vs_skip = static_cast<int32_t>(sq + len - skip);
      if (end_vs_skip < 0 || (end_vs_skip == 0 && kernel.drop_reaching)) {
        left_out++;
        return;
      }
      const int32_t into = static_cast<int32_t>(skip - sq);
      if (kernel.from_skip && into > 0) {
        p += into;
        len -= static_cast<uint32_t>(into);
        sq = skip;
      }
    }
    raw(dir, sq, p, std::min(len, kernel.head), len);
  }

  void raw(unsigned dir, uint32_t sq, const char* p, uint32_t data_len, uint32_t segment_len) {
    reported++;
    last_ts[dir] = ts;
    stream_->on_segment(dir, sq, reinterpret_cast<const uint8_t*>(p), data_len, segment_len, ts,
                        rec);
  }
  void raw(unsigned dir, uint32_t sq, const std::string& data) {
    ts++;
    raw(dir, sq, data.data(), static_cast<uint32_t>(data.size()),
        static_cast<uint32_t>(data.size()));
  }

  void close() { stream_->on_close(rec); }

  uint32_t seq[2];
  uint64_t ts = 1000;
  uint64_t last_ts[2] = {0, 0};
  Kernel kernel;
  size_t reported = 0;
  size_t left_out = 0;
  Recorder rec;

 private:
  std::unique_ptr<HttpStream> stream_;
};

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: example.com\r\n" + extra + "\r\n";
}

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target +
         " HTTP/1.1\r\nHost: example.com\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string response(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

// A chunked body of `chunks` (with an extension on the first) and a trailer.
std::string chunked_body(const std::vector<std::string>& chunks) {
  std::string b;
  char size[32];
  bool first = true;
  for (const std::string& c : chunks) {
    std::snprintf(size, sizeof(size), "%zx", c.size());
    b += size;
    if (first) b += ";ext=1";
    first = false;
    b += "\r\n" + c + "\r\n";
  }
  return b + "0\r\nX-Checksum: 42\r\n\r\n";
}

std::string chunked_response(int status, const std::vector<std::string>& chunks) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nTransfer-Encoding: chunked\r\n\r\n" +
         chunked_body(chunks);
}

std::string target(const HttpExchange& x) { return std::string(x.target, x.target_len); }
std::string host(const HttpExchange& x) { return std::string(x.host, x.host_len); }

// The fields that do not depend on timing.
std::string summary(const HttpExchange& x) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), " %d %u req=%llu resp=%llu inc=%#x flags=%#x interim=%u v=%u/%u",
                static_cast<int>(x.method), x.status,
                static_cast<unsigned long long>(x.request_body_bytes),
                static_cast<unsigned long long>(x.response_body_bytes), x.incomplete, x.flags,
                x.interim_responses, x.request_version, x.response_version);
  return std::string(x.method_text, x.method_len) + " " + target(x) + " host=" + host(x) + buf;
}

std::string summaries(const std::vector<HttpExchange>& v) {
  std::string s;
  for (const HttpExchange& x : v) s += summary(x) + "\n";
  return s;
}

void expect_ok(const HttpExchange& x, const char* method, const std::string& tgt, int status) {
  EXPECT_STREQ(x.method_text, method);
  EXPECT_EQ(target(x), tgt);
  EXPECT_EQ(x.status, status);
  EXPECT_EQ(x.incomplete, 0) << summary(x);
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// ---- basics ---------------------------------------------------------------

TEST(HttpStream, OneExchange) {
  Conn c;
  c.send(kC, get("/a/b?c=1&d=%20x"));
  const uint64_t start = c.ts;
  EXPECT_EQ(c.stream().open_exchanges(), 1u);
  c.send(kS, response(200, "hello"));
  ASSERT_EQ(c.got().size(), 1u);
  const HttpExchange& x = c.got()[0];
  expect_ok(x, "GET", "/a/b?c=1&d=%20x", 200);
  EXPECT_EQ(x.method, HttpMethod::Get);
  EXPECT_EQ(host(x), "example.com");
  EXPECT_EQ(x.request_version, 11);
  EXPECT_EQ(x.response_version, 11);
  EXPECT_EQ(x.request_body_bytes, 0u);
  EXPECT_EQ(x.response_body_bytes, 5u);
  EXPECT_EQ(x.request_start_ns, start);
  EXPECT_EQ(x.response_end_ns, c.ts);
  EXPECT_EQ(x.flags, ebpfc::kHttpKeepAlive);
  EXPECT_FALSE(x.has_traceparent);
  EXPECT_EQ(x.interim_responses, 0);
  EXPECT_EQ(c.stream().open_exchanges(), 0u);
  EXPECT_TRUE(c.stream().is_http());
  c.close();
  EXPECT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.stream().counters().exchanges, 1u);
  EXPECT_EQ(c.stream().counters().incomplete, 0u);
  EXPECT_TRUE(c.stream().done());
}

TEST(HttpStream, KeepAliveManyExchanges) {
  Conn c;
  for (int i = 0; i < 300; i++) {
    c.send(kC, i % 3 == 0 ? post("/p" + std::to_string(i), std::string(i, 'b'))
                          : get("/g" + std::to_string(i)));
    c.send(kS, i % 2 ? response(200 + i % 4, std::string(3 * i, 'r'))
                     : chunked_response(404, {std::string(i + 1, 'c'), "x"}));
  }
  c.close();
  ASSERT_EQ(c.got().size(), 300u);
  for (int i = 0; i < 300; i++) {
    const HttpExchange& x = c.got()[i];
    expect_ok(x, i % 3 == 0 ? "POST" : "GET", (i % 3 == 0 ? "/p" : "/g") + std::to_string(i),
              i % 2 ? 200 + i % 4 : 404);
    EXPECT_EQ(x.request_body_bytes, i % 3 == 0 ? static_cast<uint64_t>(i) : 0u);
    if (i % 2)
      EXPECT_EQ(x.response_body_bytes, 3u * i);
    else
      EXPECT_EQ(x.response_body_bytes, chunked_body({std::string(i + 1, 'c'), "x"}).size());
    EXPECT_TRUE(x.flags & ebpfc::kHttpKeepAlive);
    EXPECT_LE(x.request_start_ns, x.response_end_ns);
  }
  EXPECT_EQ(c.stream().counters().incomplete, 0u);
  EXPECT_EQ(c.stream().counters().gaps, 0u);
}

TEST(HttpStream, Pipelining) {
  Conn c;
  std::string reqs, resps;
  for (int i = 0; i < 10; i++) reqs += get("/" + std::to_string(i));
  reqs += "HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n";
  c.send(kC, reqs, 100000);  // all in one segment
  EXPECT_EQ(c.stream().open_exchanges(), 11u);
  for (int i = 0; i < 10; i++)
    resps += i % 3 == 0   ? response(200, "body" + std::to_string(i))
             : i % 3 == 1 ? chunked_response(201, {"ab", "cd"})
                          : "HTTP/1.1 204 No Content\r\n\r\n";
  // a HEAD response announces a length but has no body
  resps += "HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n";
  c.send(kS, resps, 100000);
  ASSERT_EQ(c.got().size(), 11u);
  for (int i = 0; i < 10; i++)
    expect_ok(c.got()[i], "GET", "/" + std::to_string(i),
              i % 3 == 0   ? 200
              : i % 3 == 1 ? 201
                           : 204);
  expect_ok(c.got()[10], "HEAD", "/h", 200);
  for (const HttpExchange& x : c.got()) EXPECT_EQ(x.request_start_ns, c.got()[0].request_start_ns);
}

TEST(HttpStream, PipelinedBeyondTheQueueBound) {
  Conn c;
  const int n = static_cast<int>(ebpfc::kHttpOpenMax) + 8;
  for (int i = 0; i < n; i++) c.send(kC, get("/" + std::to_string(i)));
  // the 8 oldest were emitted early, without a response
  ASSERT_EQ(c.got().size(), 8u);
  for (int i = 0; i < 8; i++) {
    EXPECT_EQ(target(c.got()[i]), "/" + std::to_string(i));
    EXPECT_EQ(c.got()[i].incomplete, ebpfc::kHttpQueueBound | ebpfc::kHttpNoResponse);
  }
  EXPECT_EQ(c.stream().counters().queue_bound, 8u);
  EXPECT_EQ(c.stream().open_exchanges(), ebpfc::kHttpOpenMax);
  // their responses are dropped; the others pair with the right request
  for (int i = 0; i < n; i++) c.send(kS, response(200 + i, "x"));
  ASSERT_EQ(c.got().size(), static_cast<size_t>(n));
  for (int i = 8; i < n; i++) expect_ok(c.got()[i], "GET", "/" + std::to_string(i), 200 + i);
  EXPECT_EQ(c.stream().counters().orphan_responses, 8u);
}

// Requests and responses cut into two segments at every byte, and into
// one-byte segments, give the same exchanges.
TEST(HttpStream, SplitAtEveryByteBoundary) {
  const std::string req =
      "POST /upload?x=1 HTTP/1.1\r\nHost: h.example:81\r\nContent-Length: 7\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n1234567" +
      get("/second");
  const std::string resp =
      "HTTP/1.1 100 Continue\r\n\r\n" + chunked_response(200, {"abc", "de"}) + response(404, "nf");
  Conn ref;
  ref.send(kC, req, 100000);
  ref.send(kS, resp, 100000);
  const std::string want = summaries(ref.got());
  ASSERT_EQ(ref.got().size(), 2u);
  EXPECT_EQ(ref.got()[0].interim_responses, 1);
  EXPECT_TRUE(ref.got()[0].has_traceparent);

  for (size_t i = 1; i < req.size(); i++) {
    Conn c;
    c.raw(kC, c.seq[kC], req.substr(0, i));
    c.raw(kC, c.seq[kC] + static_cast<uint32_t>(i), req.substr(i));
    c.send(kS, resp, 100000);
    ASSERT_EQ(summaries(c.got()), want) << "request cut at " << i;
  }
  for (size_t i = 1; i < resp.size(); i++) {
    Conn c;
    c.send(kC, req, 100000);
    c.raw(kS, c.seq[kS], resp.substr(0, i));
    c.raw(kS, c.seq[kS] + static_cast<uint32_t>(i), resp.substr(i));
    ASSERT_EQ(summaries(c.got()), want) << "response cut at " << i;
  }
  Conn c;
  c.send(kC, req, 1);
  c.send(kS, resp, 1);
  EXPECT_EQ(summaries(c.got()), want);
  // one byte per timestamp: the first exchange ended before the 404's bytes
  EXPECT_EQ(c.got()[0].response_end_ns, c.ts - response(404, "nf").size());
}

TEST(HttpStream, HeaderBlockSpanningSegments) {
  std::string extra = "Cookie: " + std::string(3000, 'c') + "\r\n";
  for (int i = 0; i < 100; i++) extra += "X-Header-" + std::to_string(i) + ": value\r\n";
  extra += "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n";
  const std::string req = "GET /big HTTP/1.1\r\n" + extra + "Host: last.example\r\n\r\n";
  ASSERT_GT(req.size(), 5000u);
  Conn c;
  c.send(kC, req, 1000);
  c.send(kS, "HTTP/1.1 200 OK\r\n" + extra + "Content-Length: 2\r\n\r\nok", 700);
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/big", 200);
  EXPECT_EQ(host(c.got()[0]), "last.example");
  EXPECT_TRUE(c.got()[0].has_traceparent);
  EXPECT_EQ(c.got()[0].trace_flags, 0);
  EXPECT_EQ(c.got()[0].response_body_bytes, 2u);
}

TEST(HttpStream, ContentLengthAndChunkedBodies) {
  Conn c;
  const std::string up(100000, 'u');
  c.send(kC, post("/up", up));
  c.send(kS, response(201, std::string(250000, 'd')));
  const std::string chunked_req = "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                  chunked_body({std::string(5000, 'a'), std::string(17, 'b')});
  c.send(kC, chunked_req, 999);
  const std::vector<std::string> chunks = {std::string(70000, 'x'), "y", std::string(4096, 'z')};
  c.send(kS, chunked_response(200, chunks), 1448);
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[0], "POST", "/up", 201);
  EXPECT_EQ(c.got()[0].request_body_bytes, up.size());
  EXPECT_EQ(c.got()[0].response_body_bytes, 250000u);
  expect_ok(c.got()[1], "PUT", "/c", 200);
  EXPECT_EQ(c.got()[1].request_body_bytes,
            chunked_body({std::string(5000, 'a'), std::string(17, 'b')}).size());
  EXPECT_EQ(c.got()[1].response_body_bytes, chunked_body(chunks).size());
  EXPECT_EQ(c.got()[1].flags,
            ebpfc::kHttpRequestChunked | ebpfc::kHttpResponseChunked | ebpfc::kHttpKeepAlive);
}

// The kernel reports only a head of each segment: bodies are counted from
// sequence numbers.
TEST(HttpStream, BodiesFromSegmentHeadsOnly) {
  Conn c;
  c.kernel.head = 64;
  for (int i = 0; i < 20; i++) {
    c.send(kC, post("/h" + std::to_string(i), std::string(10000 + i, 'p')));
    c.send(kS, response(200, std::string(100000 * (i % 3) + i, 'q')));
  }
  ASSERT_EQ(c.got().size(), 20u);
  for (int i = 0; i < 20; i++) {
    expect_ok(c.got()[i], "POST", "/h" + std::to_string(i), 200);
    EXPECT_EQ(c.got()[i].request_body_bytes, 10000u + i);
    EXPECT_EQ(c.got()[i].response_body_bytes, 100000u * (i % 3) + i);
  }
  EXPECT_GT(c.stream().counters().skipped_bytes, 1000000u);
  EXPECT_EQ(c.stream().counters().gaps, 0u);
}

// Chunked bodies with heads only: a chunk boundary inside the part of a
// segment that was not reported is a gap, unless the kernel reports segments
// from the skip point on.
TEST(HttpStream, ChunkedFromHeadsNeedsTheSkipPoint) {
  // (one chunk boundary per segment at most: the kernel reports one piece
  // of a segment)
  const std::vector<std::string> chunks = {std::string(3000, 'a'), std::string(2500, 'b'),
                                           std::string(2000, 'c')};
  {
    Conn c;
    c.kernel.head = 256;
    c.send(kC, get("/c"));
    c.send(kS, chunked_response(200, chunks));
    c.send(kC, get("/next"));
    c.send(kS, response(200, "n"));
    ASSERT_EQ(c.got().size(), 2u);
    EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
    expect_ok(c.got()[1], "GET", "/next", 200);  // resynchronised
    EXPECT_GE(c.stream().counters().gaps, 1u);
  }
  {
    Conn c;
    c.kernel = Kernel{256, true, true, false};
    c.send(kC, get("/c"));
    c.send(kS, chunked_response(200, chunks));
    c.send(kC, get("/next"));
    c.send(kS, response(200, "n"));
    ASSERT_EQ(c.got().size(), 2u);
    expect_ok(c.got()[0], "GET", "/c", 200);
    EXPECT_EQ(c.got()[0].response_body_bytes, chunked_body(chunks).size());
    expect_ok(c.got()[1], "GET", "/next", 200);
    EXPECT_EQ(c.stream().counters().gaps, 0u);
  }
}

TEST(HttpStream, SkipHintLeavesBodySegmentsOut) {
  Conn c;
  c.kernel.honour_skip = true;
  c.send(kC, get("/large"));
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
  const std::string resp = head + std::string(1000000, 'L');
  const auto segs = c.cut(kS, resp, 1448);
  c.segment(kS, segs[0].first, segs[0].second);
  ASSERT_TRUE(c.stream().has_skip(kS));
  EXPECT_EQ(c.stream().skip_until(kS), segs[0].first + resp.size());
  EXPECT_FALSE(c.stream().has_skip(kC));
  EXPECT_FALSE(c.stream().skip_all(kS));
  for (size_t i = 1; i < segs.size(); i++) c.segment(kS, segs[i].first, segs[i].second);
  EXPECT_EQ(c.left_out, segs.size() - 2);  // only the first and the last were reported
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/large", 200);
  EXPECT_EQ(c.got()[0].response_body_bytes, 1000000u);
  EXPECT_EQ(c.got()[0].response_end_ns, c.ts);  // the last segment's time
  EXPECT_FALSE(c.got()[0].flags & ebpfc::kHttpEndUnseen);
  EXPECT_FALSE(c.stream().has_skip(kS));
  // uploads too; and chunked bodies, one chunk at a time
  c.send(kC, post("/upload", std::string(300000, 'U')));
  c.send(kS, chunked_response(200, {std::string(50000, '1'), std::string(80000, '2')}));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "POST", "/upload", 200);
  EXPECT_EQ(c.got()[1].request_body_bytes, 300000u);
  EXPECT_EQ(c.got()[1].response_body_bytes,
            chunked_body({std::string(50000, '1'), std::string(80000, '2')}).size());
  EXPECT_LT(c.reported, 20u);
}

// A kernel that also leaves out the segment that reaches the skip point: the
// body ends when the next message arrives (or on_progress says so); its end
// time is then only a lower bound.
TEST(HttpStream, SkipHintWithoutTheReachingSegment) {
  Conn c;
  c.kernel = Kernel{UINT32_MAX, true, false, true};
  c.send(kC, get("/a"));
  c.send(kS, response(200, std::string(5000, 'x')));
  const uint64_t header_ts = c.last_ts[kS];
  EXPECT_TRUE(c.got().empty());
  c.send(kC, get("/b"));
  c.send(kS, response(200, std::string(5000, 'y')));
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/a", 200);
  EXPECT_EQ(c.got()[0].response_body_bytes, 5000u);
  EXPECT_TRUE(c.got()[0].flags & ebpfc::kHttpEndUnseen);
  EXPECT_EQ(c.got()[0].response_end_ns, header_ts);
  // the flow's sequence number ends the second one
  c.stream().on_progress(kS, c.seq[kS], c.ts + 5, c.rec);
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "GET", "/b", 200);
  EXPECT_EQ(c.got()[1].response_body_bytes, 5000u);
}

TEST(HttpStream, HeadResponsesHaveNoBody) {
  Conn c;
  c.send(kC, "HEAD /file HTTP/1.1\r\nHost: a\r\n\r\n");
  c.send(kS, "HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nContent-Type: x\r\n\r\n");
  c.send(kC, get("/after"));
  c.send(kS, response(200, "body"));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[0], "HEAD", "/file", 200);
  EXPECT_EQ(c.got()[0].method, HttpMethod::Head);
  EXPECT_EQ(c.got()[0].response_body_bytes, 0u);
  expect_ok(c.got()[1], "GET", "/after", 200);
}

TEST(HttpStream, ExpectContinue) {
  Conn c;
  c.send(kC,
         "PUT /obj HTTP/1.1\r\nHost: s3\r\nExpect: 100-continue\r\nContent-Length: 4000\r\n\r\n");
  c.send(kS, "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_TRUE(c.got().empty());
  c.send(kC, std::string(4000, 'o'));
  c.send(kS, "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "PUT", "/obj", 200);
  EXPECT_EQ(c.got()[0].interim_responses, 2);
  EXPECT_EQ(c.got()[0].request_body_bytes, 4000u);
}

TEST(HttpStream, NoBodyFor204And304) {
  Conn c;
  c.send(kC, get("/a") + get("/b") + get("/c"), 100000);
  c.send(kS,
         "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
         "HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n" +
             response(200, "x"),
         100000);
  ASSERT_EQ(c.got().size(), 3u);
  expect_ok(c.got()[0], "GET", "/a", 204);
  expect_ok(c.got()[1], "GET", "/b", 304);
  expect_ok(c.got()[2], "GET", "/c", 200);
  EXPECT_EQ(c.got()[1].response_body_bytes, 0u);
}

TEST(HttpStream, ResponseEndedByClose) {
  Conn c;
  c.send(kC, "GET /old HTTP/1.0\r\n\r\n");
  c.send(kS, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + std::string(3000, 'z'));
  const uint64_t last = c.ts;
  EXPECT_TRUE(c.got().empty());
  EXPECT_FALSE(c.stream().has_skip(kS));
  c.cut(kS, std::string(500, 'z'), 1448);  // the last bytes were not reported
  c.stream().on_progress(kS, c.seq[kS], c.ts + 1, c.rec);
  c.close();
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/old", 200);
  EXPECT_EQ(c.got()[0].response_body_bytes, 3500u);
  EXPECT_EQ(c.got()[0].response_end_ns, last);
  EXPECT_EQ(c.got()[0].request_version, 10);
  EXPECT_FALSE(c.got()[0].flags & ebpfc::kHttpKeepAlive);
  EXPECT_EQ(c.got()[0].host_len, 0);
}

TEST(HttpStream, ClosedMidResponseAndBeforeResponse) {
  Conn c;
  c.send(kC, get("/1") + get("/2") + "POST /3 HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 100000);
  c.send(kS, response(200, std::string(1000, 'a')).substr(0, 500));
  c.close();
  ASSERT_EQ(c.got().size(), 3u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpResponseCut);
  EXPECT_EQ(c.got()[0].status, 200);
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpNoResponse);
  EXPECT_EQ(c.got()[1].status, 0);
  EXPECT_EQ(c.got()[2].incomplete, ebpfc::kHttpNoResponse | ebpfc::kHttpRequestCut);
  EXPECT_EQ(c.got()[2].request_body_bytes, 3u);
  EXPECT_EQ(c.got()[2].response_end_ns, c.got()[2].request_start_ns);
}

TEST(HttpStream, ResponseWithoutRequest) {
  Conn c;
  c.send(kS, response(503, "busy"));
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.got()[0].method, HttpMethod::None);
  EXPECT_EQ(c.got()[0].method_len, 0);
  EXPECT_EQ(c.got()[0].status, 503);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpNoRequest);
  EXPECT_EQ(c.got()[0].request_start_ns, 0u);
  EXPECT_EQ(c.stream().counters().no_request, 1u);
  // and the connection goes on normally
  c.send(kC, get("/x"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "GET", "/x", 200);
}

// ---- reassembly -------------------------------------------------------------

TEST(HttpStream, DuplicatesAndRetransmissions) {
  Conn ref, c;
  std::string req, resp;
  for (int i = 0; i < 5; i++) {
    req += post("/d" + std::to_string(i), std::string(700 * i, 'p'));
    resp += i % 2 ? response(200, std::string(900 * i, 'r')) : chunked_response(200, {"ab", "c"});
  }
  ref.send(kC, req, 300);
  ref.send(kS, resp, 300);
  for (unsigned dir : {kC, kS}) {
    const auto segs = c.cut(dir, dir == kC ? req : resp, 300);
    for (size_t i = 0; i < segs.size(); i++) {
      c.segment(dir, segs[i].first, segs[i].second);
      c.segment(dir, segs[i].first, segs[i].second);  // duplicate
      if (i > 0)  // a retransmission overlapping the previous and this one
        c.segment(dir, segs[i].first - 100, segs[i - 1].second.substr(200) + segs[i].second);
      if (i > 2) c.segment(dir, segs[i - 2].first + 10, segs[i - 2].second.substr(10, 50));
    }
  }
  EXPECT_EQ(summaries(c.got()), summaries(ref.got()));
  EXPECT_EQ(c.got().size(), 5u);
  EXPECT_GT(c.stream().counters().duplicates, 10u);
  EXPECT_EQ(c.stream().counters().incomplete, 0u);
}

TEST(HttpStream, OutOfOrderFilled) {
  Conn ref, c;
  std::string req, resp;
  for (int i = 0; i < 6; i++) {
    req += get("/o" + std::to_string(i), "X-Pad: " + std::string(200 * i, 'x') + "\r\n");
    resp += chunked_response(200, {std::string(100 * i + 1, 'a'), std::string(50, 'b')});
  }
  ref.send(kC, req, 97);
  ref.send(kS, resp, 97);
  std::mt19937 rng(7);
  c.stream().set_stream_start(kC, c.seq[kC]);  // the handshake was seen
  c.stream().set_stream_start(kS, c.seq[kS]);
  for (unsigned dir : {kC, kS}) {
    auto segs = c.cut(dir, dir == kC ? req : resp, 97);
    // shuffle within windows of 5 segments (fits the reorder buffer)
    for (size_t w = 0; w < segs.size(); w += 5)
      std::shuffle(segs.begin() + w, segs.begin() + std::min(w + 5, segs.size()), rng);
    for (const auto& s : segs) c.segment(dir, s.first, s.second);
  }
  EXPECT_EQ(summaries(c.got()), summaries(ref.got()));
  EXPECT_EQ(c.got().size(), 6u);
  EXPECT_EQ(c.stream().counters().gaps, 0u);
}

// The first segment of a direction arriving second (the stream start known
// from the handshake).
TEST(HttpStream, StreamStartFromHandshake) {
  Conn c;
  c.stream().set_stream_start(kC, c.seq[kC]);
  const auto segs = c.cut(kC, get("/first", "X: " + std::string(2000, 'x') + "\r\n"), 1000);
  c.segment(kC, segs[1].first, segs[1].second);
  c.segment(kC, segs[2].first, segs[2].second);
  c.segment(kC, segs[0].first, segs[0].second);
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/first", 200);
}

// Bytes lost inside a body of known length are not a gap: they are counted.
TEST(HttpStream, LostSegmentInsideALengthBody) {
  Conn c;
  c.send(kC, get("/l"));
  const auto segs = c.cut(kS, response(200, std::string(6000, 'b')), 1448);
  for (size_t i = 0; i < segs.size(); i++)
    if (i != 2) c.segment(kS, segs[i].first, segs[i].second);
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "GET", "/l", 200);
  EXPECT_EQ(c.got()[0].response_body_bytes, 6000u);
  EXPECT_EQ(c.stream().counters().gaps, 0u);
}

// A lost segment holding a chunk-size line: the exchange is incomplete, and
// the stream resynchronises on the next response. The hole is given up when
// the client sends its next request (it had the whole response).
TEST(HttpStream, GapMidChunkedBodyThenResync) {
  Conn c;
  c.send(kC, get("/chunks"));
  const auto segs =
      c.cut(kS, chunked_response(200, std::vector<std::string>(10, "0123456789")), 40);
  for (size_t i = 0; i < segs.size(); i++)
    if (i != 3) c.segment(kS, segs[i].first, segs[i].second);
  EXPECT_TRUE(c.got().empty());  // waiting for the hole to fill
  c.send(kC, get("/n0"));
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
  EXPECT_EQ(target(c.got()[0]), "/chunks");
  EXPECT_EQ(c.got()[0].status, 200);
  c.send(kS, response(200, "ok0"));
  for (int i = 1; i < 5; i++) {
    c.send(kC, get("/n" + std::to_string(i)));
    c.send(kS, response(200, "ok" + std::to_string(i)));
  }
  ASSERT_EQ(c.got().size(), 6u);
  for (int i = 0; i < 5; i++) expect_ok(c.got()[i + 1], "GET", "/n" + std::to_string(i), 200);
  EXPECT_EQ(c.stream().counters().gaps, 1u);
  EXPECT_EQ(c.stream().counters().reorder_full, 0u);
}

// The hole is given up when the reorder buffer is full.
TEST(HttpStream, GapGivenUpWhenTheReorderBufferIsFull) {
  Conn c;
  c.send(kC, get("/long"));
  const auto segs =
      c.cut(kS, chunked_response(200, std::vector<std::string>(40, "0123456789")), 40);
  ASSERT_GT(segs.size(), ebpfc::kHttpReorderSegments + 5);
  for (size_t i = 0; i < segs.size(); i++) {
    if (i == 3) continue;
    c.segment(kS, segs[i].first, segs[i].second);
    EXPECT_EQ(c.got().size(), i > ebpfc::kHttpReorderSegments + 3 ? 1u : 0u) << i;
  }
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
  EXPECT_EQ(c.stream().counters().reorder_full, 1u);
  c.send(kC, get("/next"));
  c.send(kS, response(200, "n"));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "GET", "/next", 200);
  EXPECT_GE(c.stream().counters().resyncs, 1u);
}

// The hole is given up when it is older than kHttpHoleTimeoutNs.
TEST(HttpStream, GapGivenUpAfterTimeout) {
  Conn c;
  c.send(kC, get("/t"));
  const auto segs = c.cut(kS, chunked_response(200, {"a", "b", "c"}), 20);
  c.segment(kS, segs[0].first, segs[0].second);
  c.segment(kS, segs[2].first, segs[2].second);
  c.segment(kS, segs[3].first, segs[3].second);
  EXPECT_TRUE(c.got().empty());
  c.ts += ebpfc::kHttpHoleTimeoutNs + 1;
  c.segment(kS, segs[4].first, segs[4].second);
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
  c.send(kC, get("/u"));
  c.send(kS, response(200, "u"));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "GET", "/u", 200);
  EXPECT_EQ(c.stream().counters().reorder_full, 0u);
  EXPECT_EQ(c.stream().counters().gaps, 1u);
}

// A request header segment lost: the response to it shows the hole will not
// fill; the exchange is recorded, incomplete; the next ones are whole.
TEST(HttpStream, GapMidRequestHeaders) {
  Conn c;
  const auto segs = c.cut(kC, get("/hdrs", "X-Long: " + std::string(2500, 'l') + "\r\n"), 1000);
  c.segment(kC, segs[0].first, segs[0].second);
  c.segment(kC, segs[2].first, segs[2].second);
  c.send(kS, response(200, "r1"));
  c.send(kC, get("/next"));
  c.send(kS, response(201, "r2"));
  ASSERT_EQ(c.got().size(), 2u);
  EXPECT_EQ(target(c.got()[0]), "/hdrs");
  EXPECT_EQ(c.got()[0].status, 200);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapRequest);
  EXPECT_EQ(host(c.got()[0]), "example.com");  // before the lost part
  expect_ok(c.got()[1], "GET", "/next", 201);
}

// A response header segment lost.
TEST(HttpStream, GapMidResponseHeaders) {
  Conn c;
  c.send(kC, get("/r"));
  const auto segs = c.cut(kS, response(200, "x", "X-Long: " + std::string(300, 'l') + "\r\n"), 100);
  for (size_t i = 0; i < segs.size(); i++)
    if (i != 1) c.segment(kS, segs[i].first, segs[i].second);
  for (int i = 0; i < 8; i++) {
    c.send(kC, get("/s" + std::to_string(i)));
    c.send(kS, response(200, "s"));
  }
  c.close();
  ASSERT_EQ(c.got().size(), 9u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
  EXPECT_EQ(c.got()[0].status, 200);
  for (int i = 0; i < 8; i++) expect_ok(c.got()[i + 1], "GET", "/s" + std::to_string(i), 200);
}

// A whole request lost: its response has no request; the next request pairs
// with its own response (not with the orphan one).
TEST(HttpStream, LostWholeRequest) {
  Conn c;
  c.send(kC, get("/1"));
  c.send(kS, response(200, "1"));
  c.cut(kC, get("/2"), 1448);  // never reported
  c.send(kS, response(202, "2"));
  c.send(kC, get("/3"));
  c.send(kS, response(203, "3"));
  ASSERT_EQ(c.got().size(), 3u);
  expect_ok(c.got()[0], "GET", "/1", 200);
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpNoRequest);
  EXPECT_EQ(c.got()[1].status, 202);
  expect_ok(c.got()[2], "GET", "/3", 203);
}

// Holes in both directions: giving up the request side's hole makes a
// request begin, which gives up the response side's hole, whose next
// response would give up the request side's again while it is being parsed.
// (Found by the fuzzer.) The stream must not re-enter a direction.
TEST(HttpStream, HolesInBothDirections) {
  Conn c;
  c.stream().set_stream_start(kC, c.seq[kC]);
  c.stream().set_stream_start(kS, c.seq[kS]);
  c.send(kC, get("/1"));
  const auto s1 = c.cut(kS, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"s, 1448);
  c.segment(kS, s1[0].first, s1[0].second);
  c.cut(kS, "5\r\nhello\r\n", 1448);  // lost
  const auto s3 = c.cut(kS, "0\r\n\r\n", 1448);
  c.segment(kS, s3[0].first, s3[0].second);
  const auto s4 = c.cut(kS, response(201, ""), 1448);  // to request 2
  c.segment(kS, s4[0].first, s4[0].second);
  c.cut(kC, "GET /2 HTTP/1.1\r\n", 1448);  // lost
  const auto y = c.cut(kC, "Host: a\r\n\r\n", 1448);
  c.segment(kC, y[0].first, y[0].second);
  const auto z = c.cut(kC, get("/3"), 1448);
  c.segment(kC, z[0].first, z[0].second);
  const auto z2 = c.cut(kC, get("/3b"), 1448);
  c.segment(kC, z2[0].first, z2[0].second);
  EXPECT_TRUE(c.got().empty());
  c.ts += ebpfc::kHttpHoleTimeoutNs + 1;
  c.send(kC, get("/4"));  // the request side's hole is given up: /3, /3b, /4 begin
  ASSERT_EQ(c.got().size(), 2u);
  EXPECT_EQ(target(c.got()[0]), "/1");
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpGapResponse);
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpNoRequest);  // request 2 was lost
  EXPECT_EQ(c.got()[1].status, 201);
  EXPECT_EQ(c.stream().open_exchanges(), 3u);
  c.send(kS, response(203, "3") + response(205, "") + response(204, ""), 100000);
  ASSERT_EQ(c.got().size(), 5u);
  expect_ok(c.got()[2], "GET", "/3", 203);
  expect_ok(c.got()[3], "GET", "/3b", 205);
  expect_ok(c.got()[4], "GET", "/4", 204);
}

// The server answers before the request body is over (413): the exchange is
// emitted with what was seen of the request; the rest of its body is still
// parsed (not taken for a new request).
TEST(HttpStream, EarlyResponse) {
  Conn c;
  const std::string body(5000, 'B');
  const std::string req = post("/big", body);
  c.send(kC, req.substr(0, req.size() - 4000));
  c.send(kS, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(target(c.got()[0]), "/big");
  EXPECT_EQ(c.got()[0].status, 413);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpRequestCut);
  EXPECT_EQ(c.got()[0].request_body_bytes, 1000u);
  c.send(kC, req.substr(req.size() - 4000));
  c.send(kC, get("/next"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[1], "GET", "/next", 200);
}

// A whole response lost (e.g. its event dropped): its request is emitted
// without a response, and the next responses pair with their own requests.
TEST(HttpStream, LostWholeResponse) {
  Conn c;
  c.send(kC, get("/1"));
  c.send(kS, response(201, ""));
  c.send(kC, get("/2"));
  c.cut(kS, response(202, "lost"), 1448);  // never reported
  c.send(kC, get("/3"));
  c.send(kS, response(203, ""));  // waits beyond the hole
  c.send(kC, get("/4"));          // the client had it all: the hole is given up
  c.send(kS, response(204, ""));
  for (int i = 5; i < 9; i++) {
    c.send(kC, get("/" + std::to_string(i)));
    c.send(kS, response(200 + i, ""));
  }
  ASSERT_EQ(c.got().size(), 8u);
  expect_ok(c.got()[0], "GET", "/1", 201);
  EXPECT_EQ(target(c.got()[1]), "/2");
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpGapResponse | ebpfc::kHttpNoResponse);
  for (int i = 3; i < 9; i++) expect_ok(c.got()[i - 1], "GET", "/" + std::to_string(i), 200 + i);
}

TEST(HttpStream, SequenceWraparound) {
  for (uint32_t isn : {0xfffffff0u, 0xffffffffu, 0xffff0000u, 0u, 0x7fffff00u}) {
    Conn c(false, isn, isn - 5000);
    c.kernel.honour_skip = true;
    for (int i = 0; i < 30; i++) {
      c.send(kC, post("/w" + std::to_string(i), std::string(3000 * i, 'w')), 1000);
      const auto segs = c.cut(kS, response(200, std::string(2000 * i, 'v')), 1000);
      for (size_t k = 0; k < segs.size(); k += 2) {  // pairwise swapped
        if (k + 1 < segs.size()) c.segment(kS, segs[k + 1].first, segs[k + 1].second);
        c.segment(kS, segs[k].first, segs[k].second);
      }
    }
    ASSERT_EQ(c.got().size(), 30u) << isn;
    for (int i = 0; i < 30; i++) {
      expect_ok(c.got()[i], "POST", "/w" + std::to_string(i), 200);
      EXPECT_EQ(c.got()[i].request_body_bytes, 3000u * i);
      EXPECT_EQ(c.got()[i].response_body_bytes, 2000u * i);
    }
  }
}

TEST(HttpStream, MidStreamJoin) {
  Conn c(true);
  // the middle of a response body, and of a request body, then new exchanges
  c.send(kS, std::string(5000, 'm') + "\r\n0\r\n\r\n");
  c.send(kC, std::string(3000, 'n'));
  EXPECT_FALSE(c.stream().is_http());
  c.send(kC, get("/joined"));
  c.send(kS, response(200, "j"));
  c.send(kC, get("/again"));
  c.send(kS, response(200, "a"));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[0], "GET", "/joined", 200);
  expect_ok(c.got()[1], "GET", "/again", 200);
  EXPECT_GE(c.stream().counters().resyncs, 2u);
}

// ---- trace context, Host, privacy ------------------------------------------

TEST(HttpStream, Traceparent) {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  Conn c;
  c.send(kC, get("/t1", "traceparent: " + tp +
                            "\r\ntracestate: rojo=00f067aa0ba902b7, congo=t61rcWkgMzE\r\n"));
  c.send(kS, response(200, ""));
  c.send(kC, get("/t2", "traceparent: " + tp.substr(0, 54) + "X\r\ntracestate: a=b\r\n"));
  c.send(kS, response(200, ""));
  c.send(kC, get("/t3", "traceparent: " + tp + "\r\ntraceparent: " + tp + "\r\n"));
  c.send(kS, response(200, ""));
  c.send(kC, get("/t4", "Traceparent:   " + tp + "  \r\nTracestate: a=1\r\ntracestate: b=2\r\n"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 4u);
  const HttpExchange& x = c.got()[0];
  EXPECT_TRUE(x.has_traceparent);
  const uint8_t tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                           0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
  const uint8_t pid[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  EXPECT_EQ(std::memcmp(x.trace_id, tid, 16), 0);
  EXPECT_EQ(std::memcmp(x.parent_id, pid, 8), 0);
  EXPECT_EQ(x.trace_flags, 1);
  EXPECT_STREQ(x.tracestate, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE");
  EXPECT_EQ(x.flags & ebpfc::kHttpTraceparentInvalid, 0);
  for (int i : {1, 2}) {
    EXPECT_FALSE(c.got()[i].has_traceparent) << i;
    EXPECT_TRUE(c.got()[i].flags & ebpfc::kHttpTraceparentInvalid) << i;
    EXPECT_EQ(c.got()[i].tracestate_len, 0) << i;  // not used without a valid traceparent
    EXPECT_EQ(c.got()[i].incomplete, 0) << i;
  }
  EXPECT_TRUE(c.got()[3].has_traceparent);
  EXPECT_STREQ(c.got()[3].tracestate, "a=1,b=2");
  EXPECT_EQ(c.stream().counters().traceparent_invalid, 2u);
}

TEST(HttpStream, TracestateKeepsWholeMembers) {
  const std::string tp = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n";
  std::string ts;
  for (int i = 0; i < 40; i++)
    ts += (i ? "," : "") + ("vendor" + std::to_string(i) + "=" + std::string(10, 'v'));
  ASSERT_GT(ts.size(), ebpfc::kHttpTracestateMax);
  Conn c;
  c.send(kC, get("/ts", tp + "tracestate: " + ts + "\r\n"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 1u);
  const HttpExchange& x = c.got()[0];
  EXPECT_TRUE(x.flags & ebpfc::kHttpTracestateTruncated);
  EXPECT_LE(x.tracestate_len, ebpfc::kHttpTracestateMax);
  EXPECT_GT(x.tracestate_len, 400);
  const std::string kept(x.tracestate, x.tracestate_len);
  EXPECT_EQ(ts.compare(0, kept.size(), kept), 0);
  EXPECT_EQ(ts[kept.size()], ',');  // cut before a member
}

TEST(HttpStream, Host) {
  Conn c;
  c.send(kC, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nHost: second\r\n\r\n");
  c.send(kS, response(200, ""));
  c.send(kC, "GET / HTTP/1.1\r\nHost: " + std::string(300, 'h') + "\r\n\r\n");
  c.send(kS, response(200, ""));
  c.send(kC, "GET http://abs.example/x HTTP/1.1\r\n\r\n");
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 3u);
  EXPECT_EQ(host(c.got()[0]), "[::1]:8080");
  EXPECT_EQ(c.got()[1].host_len, ebpfc::kHttpHostMax);
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpHostTruncated);
  EXPECT_EQ(target(c.got()[2]), "http://abs.example/x");
  EXPECT_EQ(c.got()[2].host_len, 0);
}

bool contains(const void* mem, size_t n, const std::string& needle) {
  const char* p = static_cast<const char*>(mem);
  return std::search(p, p + n, needle.begin(), needle.end()) != p + n;
}

TEST(HttpStream, HeaderValuesAreNotKept) {
  const std::string secret = "s3cr3t-T0k3n-value";
  Conn c;
  c.send(kC, get("/private", "Authorization: Bearer " + secret + "\r\nCookie: sid=" + secret +
                                 "\r\nX-Api-Key: " + secret + "\r\n"));
  EXPECT_FALSE(contains(&c.stream(), sizeof(HttpStream), secret));
  c.send(kS, response(200, "body-" + secret, "Set-Cookie: sid=" + secret + "\r\n"));
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_FALSE(contains(&c.got()[0], sizeof(HttpExchange), secret));
  EXPECT_FALSE(contains(&c.stream(), sizeof(HttpStream), secret));
}

// ---- bounds -------------------------------------------------------------------

TEST(HttpStream, TargetBound) {
  Conn c;
  const std::string long_target = "/" + std::string(3000, 't');
  c.send(kC, get(long_target));
  c.send(kS, response(414, ""));
  ASSERT_EQ(c.got().size(), 1u);
  EXPECT_EQ(c.got()[0].target_len, ebpfc::kHttpTargetMax);
  EXPECT_EQ(target(c.got()[0]), long_target.substr(0, ebpfc::kHttpTargetMax));
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpTargetTruncated);
  EXPECT_EQ(c.got()[0].status, 414);
  EXPECT_EQ(host(c.got()[0]), "example.com");
  EXPECT_EQ(c.stream().counters().string_bound, 1u);
}

// Strings of pipelined requests share kHttpStringBytes: what does not fit is
// truncated (and counted), and the space is reused once they are emitted.
TEST(HttpStream, StringSpaceBound) {
  Conn c;
  std::string reqs;
  for (int i = 0; i < 6; i++) reqs += get("/" + std::string(2000, 'a' + i));
  c.send(kC, reqs, 100000);
  std::string resps;
  for (int i = 0; i < 6; i++) resps += response(200, "");
  c.send(kS, resps, 100000);
  ASSERT_EQ(c.got().size(), 6u);
  size_t total = 0;
  for (const HttpExchange& x : c.got()) total += x.target_len + x.host_len;
  EXPECT_LE(total, ebpfc::kHttpStringBytes);
  EXPECT_EQ(c.got()[0].incomplete, 0);
  EXPECT_TRUE(c.got()[5].incomplete & (ebpfc::kHttpTargetTruncated | ebpfc::kHttpHostTruncated));
  EXPECT_GT(c.stream().counters().string_bound, 0u);
  c.send(kC, get("/" + std::string(2000, 'z')));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 7u);
  expect_ok(c.got()[6], "GET", "/" + std::string(2000, 'z'), 200);
}

TEST(HttpStream, HeaderBlockBound) {
  Conn c;
  std::string flood;
  for (int i = 0; i < 3000; i++) flood += "X-Flood: " + std::to_string(i) + "\r\n";
  c.send(kC, get("/flood", flood));
  c.send(kS, response(431, ""));
  c.send(kC, get("/fine"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 2u);
  EXPECT_EQ(target(c.got()[0]), "/flood");
  EXPECT_EQ(c.got()[0].status, 431);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpHeaderBound);
  expect_ok(c.got()[1], "GET", "/fine", 200);
  EXPECT_EQ(c.stream().counters().header_bound, 1u);
}

TEST(HttpStream, HostileFraming) {
  Conn c;
  c.send(kC, "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n");
  c.send(kS, response(400, "bad"));
  c.send(kC, "POST /b HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
  c.send(kS, response(400, "bad"));
  c.send(kC, get("/c"));
  c.send(kS, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n");
  c.send(kC, get("/d"));
  c.send(kS, "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nxx");
  c.send(kC, get("/e"));
  c.send(kS, response(200, "fine"));
  ASSERT_EQ(c.got().size(), 5u);
  EXPECT_EQ(c.got()[0].incomplete, ebpfc::kHttpBadRequest);
  EXPECT_EQ(c.got()[0].status, 400);
  EXPECT_EQ(c.got()[1].incomplete, ebpfc::kHttpBadRequest);
  EXPECT_EQ(c.got()[2].incomplete, ebpfc::kHttpBadResponse);
  EXPECT_EQ(c.got()[3].incomplete, ebpfc::kHttpBadResponse);
  expect_ok(c.got()[4], "GET", "/e", 200);
  EXPECT_EQ(c.stream().counters().malformed, 4u);
}

TEST(HttpStream, JunkBetweenMessages) {
  Conn c;
  c.send(kC, get("/1"));
  c.send(kS, response(200, ""));
  c.send(kC, "\x01\x02junk\0\0\0 more junk\r\n"s);
  c.send(kS, "garbage!\r\n"s);
  c.send(kC, get("/2"));
  c.send(kS, response(200, ""));
  ASSERT_EQ(c.got().size(), 2u);
  expect_ok(c.got()[0], "GET", "/1", 200);
  expect_ok(c.got()[1], "GET", "/2", 200);
  EXPECT_EQ(c.stream().counters().junk, 2u);
}

// ---- not HTTP -----------------------------------------------------------------

void expect_not_http(const std::string& client, const std::string& server, bool mid_stream) {
  Conn c(mid_stream);
  for (int i = 0; i < 40; i++) {
    c.send(kC, client, 500);
    c.send(kS, server, 500);
  }
  c.close();
  EXPECT_TRUE(c.got().empty());
  EXPECT_FALSE(c.stream().is_http());
  EXPECT_EQ(c.stream().counters().exchanges, 0u);
}

TEST(HttpStream, NotHttp) {
  // TLS 1.2 ClientHello / ServerHello record starts
  const std::string hello =
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x12\x33\x44\x55\x66\x77\x88\x99"
      "GET / HTTP/1.1\r\n\r\n"s;
  const std::string server_hello = "\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03"s;
  expect_not_http(hello, server_hello, false);
  expect_not_http(hello, server_hello, true);
  expect_not_http("*1\r\n$4\r\nPING\r\n", "+PONG\r\n", false);
  expect_not_http("*1\r\n$4\r\nPING\r\n", "+PONG\r\n", true);
  expect_not_http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\0\0\x12\x04\0\0\0\0\0"s, false);
  expect_not_http("SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2\r\n", false);
  expect_not_http("EHLO client.example\r\n", "220 mail.example ESMTP\r\n", false);
  std::mt19937 rng(1234);
  for (int i = 0; i < 200; i++) {
    const bool mid = i % 2;
    expect_not_http(random_bytes(rng, 1 + rng() % 3000), random_bytes(rng, 1 + rng() % 3000), mid);
  }
  // the kernel may stop sending payload
  Conn c;
  c.send(kC, "*1\r\n$4\r\nPING\r\n");
  EXPECT_TRUE(c.stream().skip_all(kC));
  EXPECT_TRUE(c.stream().skip_all(kS));
  EXPECT_TRUE(c.stream().done());
  EXPECT_EQ(c.stream().counters().not_http, 2u);
  // mid-stream: given up after enough segments that start nothing
  Conn m(true);
  for (int i = 0; i < 20; i++) {
    m.send(kC, "*1\r\n$4\r\nPING\r\n");
    m.send(kS, "+PONG\r\n");
  }
  EXPECT_TRUE(m.stream().done());
}

// After 2xx to CONNECT or 101, neither direction is HTTP any more.
TEST(HttpStream, TunnelAfterConnectAndUpgrade) {
  Conn c;
  c.send(kC, "CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n");
  c.send(kS, "HTTP/1.1 200 Connection Established\r\n\r\n");
  ASSERT_EQ(c.got().size(), 1u);
  expect_ok(c.got()[0], "CONNECT", "db.example:443", 200);
  EXPECT_TRUE(c.got()[0].flags & ebpfc::kHttpTunnel);
  EXPECT_FALSE(c.got()[0].flags & ebpfc::kHttpKeepAlive);
  EXPECT_TRUE(c.stream().skip_all(kC));
  EXPECT_TRUE(c.stream().skip_all(kS));
  c.send(kC, "\x16\x03\x01\x00\x10GET / HTTP/1.1\r\n\r\n"s);
  c.send(kS, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  c.close();
  EXPECT_EQ(c.got().size(), 1u);

  Conn w;
  w.send(kC, get("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n"));
  w.send(kS,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
         "\x81\x05hello"s);
  w.send(kC, "\x81\x85\x01\x02\x03\x04GET / HTTP/1.1"s);
  w.close();
  ASSERT_EQ(w.got().size(), 1u);
  expect_ok(w.got()[0], "GET", "/ws", 101);
  EXPECT_TRUE(w.got()[0].flags & ebpfc::kHttpTunnel);
  EXPECT_TRUE(w.stream().done());
}

// ---- allocation ------------------------------------------------------------------

thread_local bool t_counting = false;
size_t g_allocations = 0;

void count_malloc(const volatile void*, size_t) {
  if (t_counting) g_allocations++;
}
void count_free(const volatile void*) {}

class CountingSink final : public ebpfc::HttpExchangeSink {
 public:
  size_t n = 0;
  void on_exchange(const HttpExchange&) override { n++; }
};

TEST(HttpStream, NoAllocationAfterConstruction) {
  static bool installed = false;
  if (!installed) installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
  ASSERT_TRUE(installed);
  std::string traffic_c, traffic_s;
  for (int i = 0; i < 50; i++) {
    traffic_c += post("/p" + std::to_string(i), std::string(i * 100, 'x'));
    traffic_s += chunked_response(200, {std::string(i * 10 + 1, 'y'), "z"});
  }
  std::mt19937 rng(99);
  const std::string junk = random_bytes(rng, 5000);
  std::unique_ptr<HttpStream> s(new HttpStream);
  CountingSink sink;
  g_allocations = 0;
  t_counting = true;
  const auto* c_bytes = reinterpret_cast<const uint8_t*>(traffic_c.data());
  const auto* s_bytes = reinterpret_cast<const uint8_t*>(traffic_s.data());
  for (int round = 0; round < 3; round++) {
    s->reset(round == 2);
    // client: segments of 333 bytes, pairwise swapped; server: heads of half
    // of each 200-byte segment; then junk
    const uint32_t c_len = static_cast<uint32_t>(traffic_c.size());
    for (uint32_t off = 0; off < c_len; off += 666) {
      for (uint32_t o : {off + 333, off}) {
        if (o >= c_len) continue;
        const uint32_t n = std::min<uint32_t>(333, c_len - o);
        s->on_segment(kC, 1 + o, c_bytes + o, n, n, o, sink);
      }
    }
    const uint32_t s_len = static_cast<uint32_t>(traffic_s.size());
    for (uint32_t off = 0; off < s_len; off += 200) {
      const uint32_t n = std::min<uint32_t>(200, s_len - off);
      s->on_segment(kS, 2 + off, s_bytes + off, n / 2, n, off, sink);
    }
    s->on_segment(kC, 77, reinterpret_cast<const uint8_t*>(junk.data()), 5000, 5000, 1, sink);
    s->on_close(sink);
  }
  t_counting = false;
  EXPECT_GT(sink.n, 20u);
  EXPECT_EQ(g_allocations, 0u);
}

}  // namespace
}  // namespace ebpfc_test
