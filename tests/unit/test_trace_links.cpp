// Tests of span trees: B3 parsing (core/http_traceparent), the parent and id
// rules of core/trace_links, and the tracker applying them to HTTP exchanges
// of several connections in the order the kernel reports them.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "core/http_traceparent.h"
#include "core/http_tracker.h"
#include "core/trace_links.h"

namespace ebpfc {
namespace {

std::string hex(const uint8_t* b, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += d[b[i] >> 4];
    s += d[b[i] & 15];
  }
  return s;
}

void unhex(const std::string& s, uint8_t* out) {
  for (size_t i = 0; i < s.size() / 2; i++)
    out[i] = static_cast<uint8_t>(std::stoi(s.substr(2 * i, 2), nullptr, 16));
}

// ---- B3 --------------------------------------------------------------------

TEST(B3, SingleHeader) {
  TraceParent tp;
  const char* full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
  ASSERT_TRUE(parse_b3_single(full, std::strlen(full), &tp));
  EXPECT_EQ(hex(tp.trace_id, 16), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(hex(tp.parent_id, 8), "e457b5a2e4d86bd1");  // the caller's id for the request
  EXPECT_EQ(tp.flags, 1);
  const char* unsampled = "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0";
  ASSERT_TRUE(parse_b3_single(unsampled, std::strlen(unsampled), &tp));
  EXPECT_EQ(hex(tp.trace_id, 16), "000000000000000064fe8b2a57d3eff7");  // 64-bit: left-padded
  EXPECT_EQ(tp.flags, 0);
  const char* ids_only = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1";
  ASSERT_TRUE(parse_b3_single(ids_only, std::strlen(ids_only), &tp));
  EXPECT_EQ(tp.flags, 1);
  const char* debug = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d";
  EXPECT_TRUE(parse_b3_single(debug, std::strlen(debug), &tp));
  for (const char* bad : {"0", "1", "d", "", "80f198ee56343ba864fe8b2a57d3eff7",
                          "80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1",
                          "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1",
                          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd",
                          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
                          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-",
                          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b9",
                          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1x",
                          "00000000000000000000000000000000-e457b5a2e4d86bd1",
                          "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000"})
    EXPECT_FALSE(parse_b3_single(bad, std::strlen(bad), &tp)) << bad;
}

TEST(B3, MultiHeaderParts) {
  uint8_t t[16], s[8];
  bool sampled = false;
  EXPECT_TRUE(parse_b3_trace_id("463ac35c9f6413ad48485a3953bb6124", 32, t));
  EXPECT_TRUE(parse_b3_trace_id("463ac35c9f6413ad", 16, t));
  EXPECT_EQ(hex(t, 16), "0000000000000000463ac35c9f6413ad");
  EXPECT_FALSE(parse_b3_trace_id("463ac35c9f6413a", 15, t));
  EXPECT_FALSE(parse_b3_trace_id("0000000000000000", 16, t));
  EXPECT_TRUE(parse_b3_span_id("a2fb4a1d1a96d312", 16, s));
  EXPECT_FALSE(parse_b3_span_id("a2fb4a1d1a96d31g", 16, s));
  EXPECT_TRUE(parse_b3_sampled("0", 1, &sampled));
  EXPECT_FALSE(sampled);
  EXPECT_TRUE(parse_b3_sampled("d", 1, &sampled));
  EXPECT_TRUE(sampled);
  EXPECT_FALSE(parse_b3_sampled("true", 4, &sampled));
}

// ---- the rules, on TraceLinks alone ------------------------------------------

struct Peer {
  uint8_t key[16];
  explicit Peer(uint8_t n) {
    std::memset(key, 0, 16);
    key[15] = n;
  }
};

class Links : public ::testing::Test {
 protected:
  TraceIds open(const std::string& caller, const Peer& client, const Peer& server,
                const std::string& trace = kTrace) {
    uint8_t t[16], c[8];
    unhex(trace, t);
    unhex(caller, c);
    TraceIds out{};
    links_.open(t, c, client.key, server.key, now_ += 1000, ids_, &out);
    EXPECT_TRUE(out.assigned);
    return out;
  }
  void close(const TraceIds& ids) { links_.close(ids, now_ += 1000); }

  static constexpr const char* kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  TraceLinks links_;
  SpanIdGenerator ids_{3};
  uint64_t now_ = 1000000;
  const Peer a_{1}, b_{2}, c_{3}, d_{4};
};

TEST_F(Links, AnExchangeTakesItsCallersIdAndTheOpenExchangeIntoTheCallingPodIsItsParent) {
  // a -> b (caller id 1111...), and while it is open b -> c (b's own id 2222...)
  const TraceIds ab = open("1111111111111111", a_, b_);
  EXPECT_EQ(hex(ab.span_id, 8), "1111111111111111");
  EXPECT_FALSE(ab.has_parent);  // nothing entered a: a root as far as the capture knows
  const TraceIds bc = open("2222222222222222", b_, c_);
  EXPECT_EQ(hex(bc.span_id, 8), "2222222222222222");
  ASSERT_TRUE(bc.has_parent);
  EXPECT_EQ(hex(bc.parent_id, 8), "1111111111111111");
  // c -> d nests one deeper; a call of b's after a->b ended has no parent
  const TraceIds cd = open("3333333333333333", c_, d_);
  ASSERT_TRUE(cd.has_parent);
  EXPECT_EQ(hex(cd.parent_id, 8), "2222222222222222");
  close(cd);
  close(bc);
  close(ab);
  const TraceIds late = open("4444444444444444", b_, d_);
  EXPECT_FALSE(late.has_parent);
  // another trace never links
  const TraceIds other = open("5555555555555555", c_, d_, "00000000000000000000000000000001");
  EXPECT_FALSE(other.has_parent);
  EXPECT_EQ(links_.counters().with_parent, 2u);
}

TEST_F(Links, AForwardedHeaderMakesAChildWithAFreshId) {
  // an uninstrumented proxy b copies a's header to c: same caller id
  const TraceIds ab = open("1111111111111111", a_, b_);
  const TraceIds bc = open("1111111111111111", b_, c_);
  EXPECT_NE(hex(bc.span_id, 8), "1111111111111111");
  ASSERT_TRUE(bc.has_parent);
  EXPECT_EQ(hex(bc.parent_id, 8), "1111111111111111");
  EXPECT_EQ(bc.resend_count, 0);
  // even when b's two addresses differ (IPv6 in, IPv4 out: no pod keys)
  const Peer b4(20);
  const TraceIds b4c = open("1111111111111111", b4, c_);
  ASSERT_TRUE(b4c.has_parent);
  EXPECT_EQ(hex(b4c.parent_id, 8), hex(bc.span_id, 8)) << "the newest open exchange with the id";
  EXPECT_EQ(links_.counters().forwarded, 2u);
  close(ab);
}

TEST_F(Links, ARetryWithTheSameIdGetsAFreshIdAndTheSameParent) {
  const TraceIds ab = open("1111111111111111", a_, b_);
  const TraceIds first = open("2222222222222222", b_, c_);
  close(first);
  const TraceIds retry = open("2222222222222222", b_, c_);
  EXPECT_EQ(hex(first.span_id, 8), "2222222222222222");
  EXPECT_NE(hex(retry.span_id, 8), "2222222222222222");
  EXPECT_EQ(retry.resend_count, 1);
  ASSERT_TRUE(retry.has_parent);
  EXPECT_EQ(hex(retry.parent_id, 8), "1111111111111111");
  close(retry);
  const TraceIds again = open("2222222222222222", b_, c_);
  EXPECT_EQ(again.resend_count, 2);
  close(ab);
}

TEST_F(Links, ClosedEntriesAreForgottenAfterTheKeepTime) {
  const TraceIds first = open("2222222222222222", b_, c_);
  close(first);
  EXPECT_EQ(links_.size(), 1u);
  now_ += TraceLinksOptions().keep_closed_ns;
  const TraceIds later = open("2222222222222222", b_, c_);
  EXPECT_EQ(hex(later.span_id, 8), "2222222222222222") << "the first is gone";
  EXPECT_EQ(later.resend_count, 0);
  EXPECT_EQ(links_.size(), 1u);
}

TEST_F(Links, OwnModeTakesFreshIdsAndTheCallersIdAsParent) {
  TraceLinksOptions o;
  o.mode = TraceSpanIds::Own;
  links_.set_options(o);
  const TraceIds ab = open("1111111111111111", a_, b_);
  EXPECT_NE(hex(ab.span_id, 8), "1111111111111111");
  ASSERT_TRUE(ab.has_parent);
  EXPECT_EQ(hex(ab.parent_id, 8), "1111111111111111");
  EXPECT_EQ(ab.link, 0u);
  EXPECT_EQ(links_.size(), 0u);
}

TEST(TraceLinksBound, MemoryIsBoundedAndOpenEntriesOutliveClosedOnes) {
  TraceLinksOptions o;
  o.capacity = 32;
  TraceLinks links(o);
  SpanIdGenerator ids(5);
  uint8_t trace[16] = {}, caller[8] = {}, a[16] = {}, b[16] = {};
  a[15] = 1;
  b[15] = 2;
  trace[15] = 1;
  caller[7] = 1;
  TraceIds outer{};
  links.open(trace, caller, a, b, 10, ids, &outer);  // stays open throughout
  for (int i = 0; i < 1000; i++) {
    uint8_t t[16] = {};
    t[0] = static_cast<uint8_t>(i >> 8);
    t[1] = static_cast<uint8_t>(i);
    t[15] = 2;
    TraceIds x{};
    links.open(t, caller, a, b, 20 + i, ids, &x);
    links.close(x, 20 + i);
  }
  EXPECT_EQ(links.size(), 32u);
  EXPECT_EQ(links.counters().evicted_open, 0u);
  // the outer request is still known: a call from b in its trace is its child
  TraceIds inner{};
  caller[7] = 2;
  links.open(trace, caller, b, a, 2000, ids, &inner);
  ASSERT_TRUE(inner.has_parent);
  EXPECT_EQ(hex(inner.parent_id, 8), hex(outer.span_id, 8));
  // closing a stale handle does nothing
  TraceIds stale = outer;
  stale.link_gen++;
  links.close(stale, 3000);
  // with every entry open, the oldest goes and is counted
  for (int i = 0; i < 100; i++) {
    uint8_t t[16] = {};
    t[2] = static_cast<uint8_t>(i);
    t[15] = 3;
    TraceIds x{};
    links.open(t, caller, a, b, 4000 + i, ids, &x);
  }
  EXPECT_EQ(links.size(), 32u);
  EXPECT_GT(links.counters().evicted_open, 0u);
}

// ---- the tracker: exchanges of several connections ------------------------

class NullControl final : public PayloadControl {
 public:
  void set_l7_control(const ebpfc_flow_key&, const ebpfc_l7_control&) override {}
  void clear_l7_control(const ebpfc_flow_key&) override {}
};

// A connection from 10.0.0.<client>:<port> to 10.0.0.<server>:80.
ebpfc_flow_key conn(uint8_t client, uint8_t server, uint16_t port) {
  ebpfc_flow_key k{};
  for (int i = 0; i < 2; i++) k.addr[i][10] = k.addr[i][11] = 0xff;
  k.addr[0][12] = k.addr[1][12] = 10;
  k.addr[0][15] = client;
  k.addr[1][15] = server;
  k.port[0] = port;
  k.port[1] = 80;
  k.family = 4;
  return k;
}

class TrackerTrees : public ::testing::Test {
 protected:
  void send(const ebpfc_flow_key& k, bool from_client, const std::string& data) {
    ebpfc_payload_event e;
    std::memset(&e, 0, EBPFC_PAYLOAD_HEADER_LEN);
    e.type = EBPFC_EVENT_PAYLOAD;
    e.sender = from_client ? 0 : 1;
    e.from_client = from_client ? 1 : 0;
    // both directions start at sequence number 1: the kernel saw the SYNs
    e.flags = EBPFC_PAYLOAD_STREAM_START | EBPFC_PAYLOAD_PEER_START;
    e.stream_start = e.peer_start = 1;
    e.key = k;
    e.ts_ns = ts_ += 1000;
    e.flow_first_ns = 1;
    uint32_t& seq = seq_[k.port[0]][from_client ? 0 : 1];
    if (seq == 0) seq = 1;
    e.seq = seq;
    seq += static_cast<uint32_t>(data.size());
    e.segment_len = static_cast<uint32_t>(data.size());
    e.data_len = static_cast<uint32_t>(data.size());
    std::memcpy(e.data, data.data(), data.size());
    tracker_->on_payload(e, clock_, ids_, out_);
  }
  void request(const ebpfc_flow_key& k, const std::string& target, const std::string& headers) {
    send(k, true, "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n");
  }
  void respond(const ebpfc_flow_key& k) {
    send(k, false, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  }
  const HttpSpan* span(const std::string& target) const {
    for (size_t i = 0; i < out_.size(); i++)
      if (text_of(out_.text(), out_[i].target) == target) return &out_[i];
    return nullptr;
  }

  NullControl control_;
  std::unique_ptr<HttpTracker> tracker_{new HttpTracker(HttpTrackerOptions(), control_)};
  WallClock clock_;
  SpanIdGenerator ids_{9};
  HttpSpanList out_;
  uint64_t ts_ = 1000000;
  std::map<uint16_t, std::array<uint32_t, 2>> seq_;
};

// The bookinfo chain: loadgen (5) -> productpage (1), which calls details (2)
// and reviews (3) with ids of its own; reviews, an nginx proxy, forwards its
// header unchanged to ratings (4). The inner exchanges end first.
TEST_F(TrackerTrees, TheBookinfoChainIsATreeOfDepthThree) {
  const std::string trace = "0af7651916cd43dd8448eb211c80319c";
  const auto lp = conn(5, 1, 40000), pd = conn(1, 2, 40001), pr = conn(1, 3, 40002),
             rr = conn(3, 4, 40003);
  request(lp, "/productpage", "traceparent: 00-" + trace + "-aaaaaaaaaaaaaaaa-01\r\n");
  request(pd, "/details", "traceparent: 00-" + trace + "-bbbbbbbbbbbbbbbb-01\r\n");
  respond(pd);
  request(pr, "/reviews", "traceparent: 00-" + trace + "-cccccccccccccccc-01\r\n");
  request(rr, "/ratings", "traceparent: 00-" + trace + "-cccccccccccccccc-01\r\n");
  respond(rr);
  respond(pr);
  respond(lp);
  ASSERT_EQ(out_.size(), 4u);
  const HttpSpan* page = span("/productpage");
  const HttpSpan* details = span("/details");
  const HttpSpan* reviews = span("/reviews");
  const HttpSpan* ratings = span("/ratings");
  ASSERT_TRUE(page && details && reviews && ratings);
  for (const HttpSpan* s : {page, details, reviews, ratings})
    EXPECT_EQ(hex(s->trace_id, 16), trace);
  EXPECT_EQ(hex(page->span_id, 8), "aaaaaaaaaaaaaaaa");
  EXPECT_FALSE(page->has_parent);
  EXPECT_EQ(hex(details->span_id, 8), "bbbbbbbbbbbbbbbb");
  EXPECT_EQ(hex(details->parent_span_id, 8), "aaaaaaaaaaaaaaaa");
  EXPECT_EQ(hex(reviews->span_id, 8), "cccccccccccccccc");
  EXPECT_EQ(hex(reviews->parent_span_id, 8), "aaaaaaaaaaaaaaaa");
  ASSERT_TRUE(ratings->has_parent);
  EXPECT_EQ(hex(ratings->parent_span_id, 8), "cccccccccccccccc");
  EXPECT_NE(hex(ratings->span_id, 8), "cccccccccccccccc");
  EXPECT_EQ(tracker_->trace_counters().forwarded, 1u);
}

TEST_F(TrackerTrees, B3HeadersJoinTheTraceAndW3CWinsOverThem) {
  const auto ab = conn(1, 2, 41000), bc = conn(2, 3, 41001), cd = conn(3, 4, 41002);
  request(ab, "/a", "X-B3-TraceId: 463ac35c9f6413ad\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\n");
  request(bc, "/b", "b3: 463ac35c9f6413ad-b7ad6b7169203331-1\r\n");
  request(cd, "/c",
          "b3: 463ac35c9f6413ad-0102030405060708-1\r\n"
          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01\r\n");
  respond(cd);
  respond(bc);
  respond(ab);
  const HttpSpan* a = span("/a");
  const HttpSpan* b = span("/b");
  const HttpSpan* c = span("/c");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(hex(a->trace_id, 16), "0000000000000000463ac35c9f6413ad");
  EXPECT_EQ(hex(a->span_id, 8), "a2fb4a1d1a96d312");
  EXPECT_EQ(hex(b->trace_id, 16), "0000000000000000463ac35c9f6413ad");
  EXPECT_EQ(hex(b->span_id, 8), "b7ad6b7169203331");
  EXPECT_EQ(hex(b->parent_span_id, 8), "a2fb4a1d1a96d312");
  EXPECT_EQ(hex(c->trace_id, 16), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(hex(c->span_id, 8), "b9c7c989f97918e1");
  EXPECT_FALSE(c->has_parent) << "another trace than what entered its caller";
}

TEST_F(TrackerTrees, OwnModeKeepsTheCallersIdAsParent) {
  HttpTrackerOptions o;
  o.trace.mode = TraceSpanIds::Own;
  tracker_->set_options(o);
  const auto ab = conn(1, 2, 42000);
  request(ab, "/a", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01\r\n");
  respond(ab);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(hex(out_[0].parent_span_id, 8), "b9c7c989f97918e1");
  EXPECT_NE(hex(out_[0].span_id, 8), "b9c7c989f97918e1");
}

}  // namespace
}  // namespace ebpfc
