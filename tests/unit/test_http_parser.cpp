// Tests of the pieces under extension/core/http_stream.*: the message parser
// of one direction (http_message.*), start-line plausibility, W3C traceparent
// (http_traceparent.*) and the out-of-order buffer (http_reorder.*).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/http_message.h"
#include "core/http_reorder.h"
#include "core/http_traceparent.h"

namespace ebpfc_test {
namespace {

using namespace std::string_literals;

using ebpfc::HttpAbort;
using ebpfc::HttpBody;
using ebpfc::HttpHeader;
using ebpfc::HttpMessageInfo;
using ebpfc::HttpMessageParser;
using ebpfc::HttpReorderBuffer;
using ebpfc::HttpSegment;
using ebpfc::TraceParent;

// Records what a parser reports, as text.
class Events : public ebpfc::HttpMessageListener {
 public:
  std::vector<std::string> log;
  HttpBody body_rule = HttpBody::Framed;
  std::string target;

  void on_request_begin(const char* m, size_t len, uint64_t ts) override {
    target.clear();
    log.push_back("begin " + std::string(m, len) + " @" + std::to_string(ts));
  }
  void on_request_target(const char* p, size_t n) override { target.append(p, n); }
  void on_request_line(uint8_t v) override {
    log.push_back("line " + target + " " + std::to_string(v));
  }
  void on_request_header(HttpHeader h, const char* v, size_t len, bool trunc) override {
    log.push_back("header " + std::to_string(static_cast<int>(h)) + " " + std::string(v, len) +
                  (trunc ? " (truncated)" : ""));
  }
  void on_response_line(uint8_t v, uint16_t status, uint64_t ts) override {
    log.push_back("status " + std::to_string(status) + " " + std::to_string(v) + " @" +
                  std::to_string(ts));
  }
  HttpBody on_response_headers() override { return body_rule; }
  void on_message_end(bool response, const HttpMessageInfo& m) override {
    log.push_back(std::string(response ? "response" : "request") + " end " +
                  std::to_string(m.body_bytes) + (m.chunked ? " chunked" : "") +
                  (m.keep_alive ? " keep-alive" : "") + (m.end_seen ? "" : " unseen"));
  }
  void on_message_abort(bool response, HttpAbort why, const HttpMessageInfo& m) override {
    log.push_back(std::string(response ? "response" : "request") + " abort " +
                  std::to_string(static_cast<int>(why)) + " " + std::to_string(m.body_bytes));
  }
  void on_bad_start(bool response, bool first) override {
    log.push_back(std::string(response ? "response" : "request") + " bad start" +
                  (first ? " first" : ""));
  }
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += x + "\n";
  return s;
}

// Feeds `text` in pieces of `piece` bytes; returns the log.
std::string parse(bool response, const std::string& text, size_t piece = SIZE_MAX,
                  HttpBody rule = HttpBody::Framed) {
  HttpMessageParser p;
  p.reset(response, false);
  Events ev;
  ev.body_rule = rule;
  const auto* b = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t off = 0; off < text.size(); off += piece) {
    const size_t n = std::min(piece, text.size() - off);
    p.feed(b + off, n, 7, static_cast<uint32_t>(off), ev);
  }
  return joined(ev.log);
}

const uint8_t* u8(const char* s) { return reinterpret_cast<const uint8_t*>(s); }

TEST(HttpParser, RequestLineHeadersAndBody) {
  const std::string req =
      "POST /a/b?c=d HTTP/1.1\r\nHost:  example.com:8080 \r\nContent-Length: 5\r\n"
      "Authorization: Bearer secret\r\n\r\nhello";
  const std::string want =
      "begin POST @7\nline /a/b?c=d 11\nheader 1 example.com:8080\nrequest end 5 keep-alive\n";
  EXPECT_EQ(parse(false, req), want);
  EXPECT_EQ(parse(false, req, 1), want);
  EXPECT_EQ(parse(false, req, 3), want);
}

TEST(HttpParser, BareLineFeedsAndLeadingEmptyLines) {
  EXPECT_EQ(parse(false, "\r\n\nGET / HTTP/1.0\nHost: h\n\n"),
            "begin GET @7\nline / 10\nheader 1 h\nrequest end 0\n");
  EXPECT_EQ(parse(true, "HTTP/1.1 204 No Content\n\n", SIZE_MAX, HttpBody::None),
            "status 204 11 @7\nresponse end 0 keep-alive\n");
  // (no body for a 204 is the listener's call: framed, it would last until close)
  EXPECT_EQ(parse(true, "HTTP/1.1 204 No Content\n\n"), "status 204 11 @7\n");
  EXPECT_EQ(parse(true, "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"),
            "status 200 11 @7\nresponse end 2 keep-alive\n");
}

TEST(HttpParser, ResponseFraming) {
  // until the connection closes: no end yet, not keep-alive
  EXPECT_EQ(parse(true, "HTTP/1.0 200 OK\r\n\r\nabc"), "status 200 10 @7\n");
  EXPECT_EQ(parse(true, "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", SIZE_MAX,
                  HttpBody::None),
            "status 304 11 @7\nresponse end 0 keep-alive\n");
  EXPECT_EQ(parse(true, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"),
            "status 200 11 @7\nresponse end 1\n");
  EXPECT_EQ(parse(true, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"),
            "status 200 10 @7\nresponse end 1 keep-alive\n");
  // Transfer-Encoding wins over Content-Length
  EXPECT_EQ(parse(true,
                  "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n"
                  "\r\n3\r\nabc\r\n0\r\n\r\n"),
            "status 200 11 @7\nresponse end 13 chunked keep-alive\n");
}

TEST(HttpParser, ChunkedWithExtensionsAndTrailers) {
  const std::string body = "5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
  const std::string resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body;
  const std::string want =
      "status 200 11 @7\nresponse end " + std::to_string(body.size()) + " chunked keep-alive\n";
  for (size_t piece : {SIZE_MAX, size_t{1}, size_t{2}, size_t{7}})
    EXPECT_EQ(parse(true, resp, piece), want) << piece;
  // bare LF in chunk lines
  EXPECT_EQ(parse(true, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nab\n0\n\n"),
            "status 200 11 @7\nresponse end 8 chunked keep-alive\n");
}

TEST(HttpParser, InvalidFramingAborts) {
  for (const char* cl : {"99999999999999999999", "-1", "1, 2", "12a", "", "+5", "0x10"}) {
    EXPECT_EQ(parse(false, std::string("PUT / HTTP/1.1\r\nContent-Length: ") + cl + "\r\n\r\n"),
              "begin PUT @7\nline / 11\nrequest abort 2 0\n")
        << cl;
  }
  EXPECT_EQ(parse(false, "PUT / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"),
            "begin PUT @7\nline / 11\nrequest end 5 keep-alive\n");
  EXPECT_EQ(parse(false, "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            "begin PUT @7\nline / 11\nrequest abort 2 0\n");
  // a request with a transfer coding other than chunked has no knowable length
  EXPECT_EQ(parse(false, "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            "begin PUT @7\nline / 11\nrequest abort 2 0\n");
  const std::string h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse(true, h + "zz\r\n"), "status 200 11 @7\nresponse abort 2 1\n");
  EXPECT_EQ(parse(true, h + "1234567890abcdef0\r\n"), "status 200 11 @7\nresponse abort 2 16\n");
  EXPECT_EQ(parse(true, h + "\r\n"), "status 200 11 @7\nresponse abort 2 2\n");
  EXPECT_EQ(parse(true, h + "2\r\nabX"), "status 200 11 @7\nresponse abort 2 6\n");
  EXPECT_EQ(parse(true, h + "1;" + std::string(2000, 'e')),
            "status 200 11 @7\nresponse abort 2 1024\n");
}

TEST(HttpParser, BadStartLines) {
  // the direction's first bytes: not HTTP
  for (const std::string& text :
       {"g@t / HTTP/1.1\r\n"s, "GET / HTTP/2.0\r\n"s, "GET /\r\n"s, "GET  / HTTP/1.1\r\n"s,
        "GET / HTTP/1.1 \r\n"s, "GE\0T / HTTP/1.1\r\n"s, "*1\r\n$4\r\nPING\r\n"s,
        "\x16\x03\x01\x02\x00"s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"s,
        "AVERYLONGMETHODTOKENXX / HTTP/1.1\r\n"s}) {
    const std::string got = parse(false, text);
    EXPECT_NE(got.find("request bad start first\n"), std::string::npos) << text;
    EXPECT_EQ(got.find("line"), std::string::npos) << text;
  }
  for (const char* s :
       {"HTTP/1.1 20 OK\r\n", "HTTP/1.1 600 X\r\n", "HTTP/1.1 099 X\r\n", "HTTP/2 200\r\n",
        "http/1.1 200 OK\r\n", "SSH-2.0-OpenSSH_9.2\r\n", "+PONG\r\n", "HTTP/1.1  200 OK\r\n"}) {
    EXPECT_EQ(parse(true, s), "response bad start first\n") << s;
  }
  // a NUL inside the request line
  const std::string nul = "GET /a\0b HTTP/1.1\r\n\r\n"s;
  EXPECT_EQ(parse(false, nul), "begin GET @7\nrequest bad start first\n");
  // too many empty lines
  EXPECT_EQ(parse(false, std::string(17, '\n') + "GET / HTTP/1.1\r\n\r\n"),
            "request bad start first\n");
  // after a first message, a bad start line is junk, not "not HTTP"
  EXPECT_EQ(parse(false, "GET / HTTP/1.1\r\n\r\n{xyz"),
            "begin GET @7\nline / 11\nrequest end 0 keep-alive\nrequest bad start\n");
}

// RFC 9110 9.1: the method is any token, case-sensitive; methods outside the
// nine of RFC 9110 (QUERY, WebDAV's, private ones) are requests too.
TEST(HttpParser, AnyTokenIsAMethod) {
  for (const char* m : {"QUERY", "PROPFIND", "MKCOL", "VERSION-CONTROL", "get", "M-SEARCH",
                        "X!#$%&'*+.^_`|~9", "UPDATEREDIRECTREF", "A2345678901234567890"}) {
    const std::string req = std::string(m) + " /x HTTP/1.1\r\nHost: h\r\n\r\n";
    EXPECT_EQ(parse(false, req),
              "begin " + std::string(m) + " @7\nline /x 11\nheader 1 h\nrequest end 0 keep-alive\n")
        << m;
    EXPECT_EQ(parse(false, req, 1), parse(false, req)) << m;
  }
  // longer than kHttpMethodMax (20), or with a byte that is no tchar
  for (const char* m : {"A23456789012345678901", "PROP\"FIND", "PROP(FIND", "PROP/FIND"}) {
    const std::string req = std::string(m) + " /x HTTP/1.1\r\n\r\n";
    EXPECT_EQ(parse(false, req).rfind("request bad start first\n"),
              parse(false, req).size() - std::strlen("request bad start first\n"))
        << m;
  }
}

TEST(HttpParser, HeaderFieldsLenient) {
  // lines that are not fields, folded lines, NUL in another header: ignored;
  // control bytes in a kept value: the value is dropped
  const std::string req =
      "GET / HTTP/1.1\r\nno colon here\r\n : folded\r\n\tfolded too\r\n"
      "X-Bin: a\0b\r\nHost: a\x01"
      "b\r\nHost: ok\r\nBad Name: x\r\n\r\n"s;
  EXPECT_EQ(parse(false, req), "begin GET @7\nline / 11\nheader 1 ok\nrequest end 0 keep-alive\n");
  // names are case-insensitive; values keep their case
  EXPECT_EQ(
      parse(false, "GET / HTTP/1.1\r\nHOST: Ex.COM\r\nTraceParent: v\r\nTRACESTATE: a=1\r\n\r\n"),
      "begin GET @7\nline / 11\nheader 1 Ex.COM\nheader 5 v\nheader 6 a=1\n"
      "request end 0 keep-alive\n");
  // a long value is truncated at kHttpValueMax
  const std::string longv(700, 'h');
  const std::string got = parse(false, "GET / HTTP/1.1\r\nHost: " + longv + "\r\n\r\n");
  EXPECT_NE(got.find("header 1 " + longv.substr(0, ebpfc::kHttpValueMax) + " (truncated)\n"),
            std::string::npos);
  // a response's Host/traceparent are not reported
  EXPECT_EQ(
      parse(true, "HTTP/1.1 200 OK\r\nHost: x\r\ntraceparent: y\r\nContent-Length: 0\r\n\r\n"),
      "status 200 11 @7\nresponse end 0 keep-alive\n");
}

TEST(HttpParser, HeaderBlockBound) {
  std::string req = "GET / HTTP/1.1\r\n";
  while (req.size() < ebpfc::kHttpHeaderBlockMax - 2) req += "X: y\r\n";
  req.resize(ebpfc::kHttpHeaderBlockMax - 2);  // cut inside a field line
  req.back() = '\n';
  std::string exact = req + "\r\n";  // the bound itself: fine
  ASSERT_EQ(exact.size(), ebpfc::kHttpHeaderBlockMax);
  EXPECT_EQ(parse(false, exact), "begin GET @7\nline / 11\nrequest end 0 keep-alive\n");
  EXPECT_EQ(parse(false, req + "X\r\n\r\n"), "begin GET @7\nline / 11\nrequest abort 1 0\n");
  // a very long target hits the same bound
  EXPECT_EQ(parse(false, "GET /" + std::string(20000, 'a'), 1000),
            "begin GET @7\nrequest abort 1 0\n");
  // one endless header line
  EXPECT_EQ(parse(true, "HTTP/1.1 200 OK\r\nX-A: " + std::string(20000, 'a'), 333),
            "status 200 11 @7\nresponse abort 1 0\n");
}

TEST(HttpParser, SkipAndOpaque) {
  HttpMessageParser p;
  p.reset(true, false);
  Events ev;
  const std::string h = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  EXPECT_EQ(p.feed(u8(h.data()), h.size(), 1, 0, ev), h.size());
  EXPECT_EQ(p.opaque(), 1000u);
  EXPECT_EQ(p.skip(400, 2, true, ev), 400u);
  EXPECT_EQ(p.opaque(), 600u);
  EXPECT_EQ(p.skip(5000, 3, false, ev), 600u);  // no more than the body
  EXPECT_EQ(p.opaque(), 0u);
  EXPECT_EQ(joined(ev.log), "status 200 11 @1\nresponse end 1000 keep-alive unseen\n");
  EXPECT_EQ(p.skip(10, 4, true, ev), 0u);  // a start line must be seen
  // until close: unbounded
  const std::string h2 = "HTTP/1.1 200 OK\r\n\r\n";
  p.feed(u8(h2.data()), h2.size(), 5, 0, ev);
  EXPECT_EQ(p.opaque(), UINT64_MAX);
  EXPECT_EQ(p.skip(12345, 6, true, ev), 12345u);
  p.close(ev);
  EXPECT_TRUE(p.ignoring());
  EXPECT_EQ(ev.log.back(), "response end 12345");
}

TEST(HttpParser, GapAndClose) {
  HttpMessageParser p;
  p.reset(false, false);
  Events ev;
  const std::string h = "POST /x HTTP/1.1\r\nContent-";
  p.feed(u8(h.data()), h.size(), 1, 0, ev);
  p.gap(ev);
  EXPECT_TRUE(p.hunting());
  EXPECT_EQ(ev.log.back(), "request abort 0 0");
  p.resync();
  const std::string r = "GET /y HTTP/1.1\r\n\r\nGET /z HTTP/1.1\r\nHost: a";
  p.feed(u8(r.data()), r.size(), 2, 0, ev);
  p.close(ev);
  EXPECT_EQ(joined(ev.log),
            "begin POST @1\nline /x 11\nrequest abort 0 0\nbegin GET @2\nline /y 11\nrequest end 0 "
            "keep-alive\n"
            "begin GET @2\nline /z 11\nrequest abort 3 0\n");
  EXPECT_TRUE(p.ignoring());
}

TEST(HttpParser, PlausibleStart) {
  auto req = [](const char* s, bool whole) {
    return ebpfc::http_plausible_start(false, u8(s), std::strlen(s), whole);
  };
  auto resp = [](const char* s, bool whole) {
    return ebpfc::http_plausible_start(true, u8(s), std::strlen(s), whole);
  };
  EXPECT_TRUE(req("GET /", false));
  EXPECT_TRUE(req("M-SEARCH *", false));
  EXPECT_TRUE(req("CONNECT a:443", false));
  EXPECT_FALSE(req("GET", false));  // a head too short to tell
  EXPECT_TRUE(req("GET", true));    // ... unless it is the whole segment
  EXPECT_FALSE(req("get /", false));
  EXPECT_FALSE(req("GET  /", false));
  EXPECT_FALSE(req("*1\r\n", true));
  EXPECT_FALSE(req("\x16\x03\x01", true));
  EXPECT_FALSE(req("", true));
  EXPECT_TRUE(resp("HTTP/1.1 200", false));
  EXPECT_TRUE(resp("HTTP/1.", true));
  EXPECT_FALSE(resp("HTTP/1.", false));
  EXPECT_FALSE(resp("HTTP/2 200", false));
  EXPECT_FALSE(resp("+OK", true));
}

TEST(Traceparent, Valid) {
  TraceParent tp;
  ASSERT_TRUE(
      ebpfc::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55, &tp));
  EXPECT_EQ(tp.trace_id[0], 0x4b);
  EXPECT_EQ(tp.trace_id[15], 0x36);
  EXPECT_EQ(tp.parent_id[0], 0x00);
  EXPECT_EQ(tp.parent_id[7], 0xb7);
  EXPECT_EQ(tp.flags, 1);
}

TEST(Traceparent, Invalid) {
  const char* bad[] = {
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // uppercase
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero parent id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",   // flags
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  // length
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    // short trace id
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // separator
      "",
  };
  for (const char* s : bad) {
    TraceParent tp;
    EXPECT_FALSE(ebpfc::parse_traceparent(s, std::strlen(s), &tp)) << s;
  }
}

HttpSegment seg(uint32_t seq, const std::string& data, uint64_t ts = 1) {
  return HttpSegment{seq,
                     static_cast<uint32_t>(data.size()),
                     static_cast<uint32_t>(data.size()),
                     true,
                     false,
                     0,
                     ts,
                     u8(data.data())};
}

TEST(HttpReorder, EarliestAcrossWraparound) {
  HttpReorderBuffer b;
  b.clear();
  const std::string x = "abc", y = "defg", z = "h";
  ASSERT_TRUE(b.store(seg(5, y)));
  ASSERT_TRUE(b.store(seg(0xfffffff0u, x)));
  ASSERT_TRUE(b.store(seg(100, z)));
  EXPECT_EQ(b.size(), 3u);
  int i = b.earliest(0xffffff00u);
  ASSERT_GE(i, 0);
  HttpSegment s = b.get(i);
  EXPECT_EQ(s.seq, 0xfffffff0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.data), s.data_len), "abc");
  b.remove(i);
  s = b.get(b.earliest(0xffffff00u));
  EXPECT_EQ(s.seq, 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.data), s.data_len), "defg");
  // a duplicate is not stored twice
  EXPECT_TRUE(b.store(seg(5, y)));
  EXPECT_EQ(b.size(), 2u);
}

TEST(HttpReorder, BoundsAndCompaction) {
  HttpReorderBuffer b;
  b.clear();
  const std::string k(1000, 'k');
  for (uint32_t i = 0; i < ebpfc::kHttpReorderSegments; i++)
    ASSERT_TRUE(b.store(seg(i * 1000, k))) << i;
  EXPECT_FALSE(b.store(seg(50000, "x")));  // no slot
  // free slots, then fill the bytes: compaction makes room
  for (int r = 0; r < 4; r++) b.remove(b.earliest(0));
  const std::string big(4000, 'b');
  EXPECT_TRUE(b.store(seg(60000, big)));
  EXPECT_FALSE(b.store(seg(70000, std::string(1000, 'c'))));  // 4 KiB + 4 KiB used
  // what was held is intact
  for (int r = 0; r < 4; r++) {
    const HttpSegment s = b.get(b.earliest(0));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.data), s.data_len), k);
    b.remove(b.earliest(0));
  }
  const HttpSegment s = b.get(b.earliest(0));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.data), s.data_len), big);
  b.remove(b.earliest(0));
  EXPECT_TRUE(b.empty());
  // alone, a segment larger than the buffer is cut
  const std::string huge(ebpfc::kHttpReorderBytes + 100, 'h');
  EXPECT_TRUE(b.store(seg(1, huge)));
  const HttpSegment h = b.get(b.earliest(0));
  EXPECT_EQ(h.data_len, ebpfc::kHttpReorderBytes);
  EXPECT_EQ(h.segment_len, huge.size());
}

}  // namespace
}  // namespace ebpfc_test
