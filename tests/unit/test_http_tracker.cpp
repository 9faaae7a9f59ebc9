// Tests of core/http_tracker: payload heads as the kernel sends them, routed
// to pooled streams, and the spans and kernel instructions that come out_.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/http_tracker.h"

namespace ebpfc {
namespace {

// Records what the tracker tells the kernel: the connections (by client
// port) that hold an l7_control entry, and how many were told to stop.
class RecordingControl final : public PayloadControl {
 public:
  void set_l7_control(const ebpfc_flow_key& k, const ebpfc_l7_control& c) override {
    entries.insert(k.port[0]);
    if (c.not_http) stops++;
  }
  void clear_l7_control(const ebpfc_flow_key& k) override { entries.erase(k.port[0]); }
  std::set<uint16_t> entries;
  int stops = 0;
};

ebpfc_flow_key key_for(uint16_t client_port) {
  ebpfc_flow_key k{};
  k.addr[0][10] = k.addr[1][10] = 0xff;
  k.addr[0][11] = k.addr[1][11] = 0xff;
  k.addr[0][12] = 10, k.addr[0][15] = 1;  // 10.0.0.1: the client
  k.addr[1][12] = 10, k.addr[1][15] = 2;  // 10.0.0.2:80
  k.port[0] = client_port;
  k.port[1] = 80;
  k.family = 4;
  return k;
}

// first_ns names the kernel flow (one connection on the four-tuple). Each
// direction starts at sequence number 1 (the kernel saw the SYNs), unless
// mid_stream.
ebpfc_payload_event head(const ebpfc_flow_key& key, bool from_client, uint32_t seq,
                         const std::string& data, uint64_t ts, uint64_t first_ns = 1,
                         bool mid_stream = false) {
  ebpfc_payload_event e;
  std::memset(&e, 0, EBPFC_PAYLOAD_HEADER_LEN);
  e.type = EBPFC_EVENT_PAYLOAD;
  e.sender = from_client ? 0 : 1;
  e.from_client = from_client ? 1 : 0;
  if (!mid_stream) {
    e.flags = EBPFC_PAYLOAD_STREAM_START | EBPFC_PAYLOAD_PEER_START;
    e.stream_start = e.peer_start = 1;
  }
  e.key = key;
  e.ts_ns = ts;
  e.flow_first_ns = first_ns;
  e.seq = seq;
  e.segment_len = static_cast<uint32_t>(data.size());
  e.data_len = static_cast<uint32_t>(data.size());
  std::memcpy(e.data, data.data(), data.size());
  return e;
}

const std::string kRequest = "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const std::string kResponse =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

class HttpTrackerTest : public ::testing::Test {
 protected:
  HttpTrackerTest() : ids_(7) {}

  // One connection's request and response, then its close; its span id goes
  // to span_id if given.
  void short_exchange(HttpTracker& t, uint16_t port, uint64_t ts, bool* followed,
                      uint64_t first_ns = 1, uint8_t* span_id = nullptr) {
    const ebpfc_flow_key k = key_for(port);
    t.on_payload(head(k, true, 1, kRequest, ts, first_ns), clock_, ids_, out_);
    t.on_payload(head(k, false, 1, kResponse, ts + 10, first_ns), clock_, ids_, out_);
    uint8_t id[8];
    *followed = t.on_flow_ended(k, span_id != nullptr ? span_id : id, clock_, ids_, out_);
  }

  // A tracker with a pool of max_connections streams, reporting to control_.
  HttpTracker& tracker(size_t max_connections = HttpTrackerOptions().max_connections) {
    HttpTrackerOptions o;
    o.max_connections = max_connections;
    tracker_ = std::make_unique<HttpTracker>(o, control_);
    return *tracker_;
  }

  WallClock clock_;
  SpanIdGenerator ids_;
  RecordingControl control_;
  HttpSpanList out_;  // the spans the tracker gave
  std::unique_ptr<HttpTracker> tracker_;
};

TEST_F(HttpTrackerTest, ExchangeOfAConnectionComesOutWhenItEnds) {
  HttpTracker& t = tracker();
  bool followed = false;
  short_exchange(t, 40000, 5000, &followed);
  EXPECT_TRUE(followed);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].http_status, 200);
  EXPECT_EQ(out_[0].src_port, 40000);
  EXPECT_EQ(out_[0].dst_port, 80);
  t.end_of_drain(6000, clock_, ids_, out_);
  EXPECT_EQ(out_.size(), 1u);
  EXPECT_EQ(t.open_connections(), 0u);
}

// A drain can hold the whole life of many more connections than the pool has
// streams (the worker was busy inserting while they came and went): each
// connection that ended gives its stream back at once, so every one is
// followed.
TEST_F(HttpTrackerTest, ConnectionsThatEndedInOneDrainDoNotRunThePoolOut) {
  HttpTracker& t = tracker(16);
  constexpr int kConnections = 500;
  for (int i = 0; i < kConnections; i++) {
    bool followed = false;
    short_exchange(t, static_cast<uint16_t>(30000 + i), 1000 + 100 * i, &followed);
    EXPECT_TRUE(followed) << i;
  }
  EXPECT_EQ(out_.size(), static_cast<size_t>(kConnections));
  EXPECT_EQ(t.counters().pool_full, 0u);
  EXPECT_EQ(t.counters().connections, static_cast<uint64_t>(kConnections));
  EXPECT_EQ(control_.stops, 0);
  t.end_of_drain(1'000'000, clock_, ids_, out_);
  EXPECT_EQ(t.open_connections(), 0u);
}

// Connections still open are what the bound is for: the 17th open one is not
// followed, and the kernel is told to stop sending its payload.
TEST_F(HttpTrackerTest, OpenConnectionsBeyondThePoolAreNotFollowed) {
  HttpTracker& t = tracker(16);
  for (int i = 0; i < 17; i++)
    t.on_payload(head(key_for(static_cast<uint16_t>(31000 + i)), true, 1, kRequest, 100), clock_,
                 ids_, out_);
  EXPECT_EQ(t.counters().pool_full, 1u);
  EXPECT_EQ(control_.stops, 1);
  EXPECT_EQ(t.open_connections(), 17u);
}

// ebpf_capture.max_http_memory is turned into a number of connections: each
// costs its stream and its table entries, and what is allowed is followed.
TEST_F(HttpTrackerTest, AMemoryBoundFollowsAsManyConnectionsAsFitInIt) {
  const size_t per = HttpTracker::bytes_per_connection();
  EXPECT_GT(per, sizeof(HttpStream));
  EXPECT_LT(per, sizeof(HttpStream) + 1024);
  EXPECT_EQ(HttpTracker::connections_within(16 * per), 16u);
  EXPECT_EQ(HttpTracker::connections_within(17 * per - 1), 16u);
  EXPECT_EQ(HttpTracker::connections_within(512 * 1024), 16u);  // the setting's smallest
  EXPECT_EQ(HttpTracker::connections_within(0), 1u);
  HttpTracker& t = tracker(HttpTracker::connections_within(5 * per));
  for (int i = 0; i < 8; i++)
    t.on_payload(head(key_for(static_cast<uint16_t>(32000 + i)), true, 1, kRequest, 100), clock_,
                 ids_, out_);
  EXPECT_EQ(t.counters().pool_full, 3u);
}

// A payload head that trails its connection's close event in the same drain
// is ignored: it does not start a connection of its own.
TEST_F(HttpTrackerTest, PayloadTrailingTheCloseIsIgnored) {
  HttpTracker& t = tracker();
  bool followed = false;
  short_exchange(t, 40001, 5000, &followed);
  t.on_payload(head(key_for(40001), false, 1 + static_cast<uint32_t>(kResponse.size()), "x", 7000),
               clock_, ids_, out_);
  EXPECT_EQ(t.open_connections(), 1u);  // the ended one, until the end of the drain
  EXPECT_EQ(t.counters().connections, 1u);
  t.end_of_drain(8000, clock_, ids_, out_);
  EXPECT_EQ(t.open_connections(), 0u);
  EXPECT_EQ(out_.size(), 1u);
}

// A client port reused at once (the kernel reports a new connection on the
// four-tuple, e.g. after a reset) while the first connection's entry waits for
// the end of the drain: the second close is not the first connection's, so it
// is not followed and does not get that connection's span id.
TEST_F(HttpTrackerTest, ASecondConnectionOnTheSameFourTupleInOneDrainKeepsItsOwnId) {
  HttpTracker& t = tracker();
  bool followed = false;
  short_exchange(t, 40003, 5000, &followed);
  ASSERT_TRUE(followed);
  ASSERT_EQ(out_.size(), 1u);
  uint8_t second_id[8] = {};
  EXPECT_FALSE(t.on_flow_ended(key_for(40003), second_id, clock_, ids_, out_));
  EXPECT_EQ(out_.size(), 1u);
  EXPECT_EQ(t.counters().connections, 1u);
  t.end_of_drain(8000, clock_, ids_, out_);
  EXPECT_EQ(t.open_connections(), 0u);
}

// The same, but the second connection's exchange is read in that drain too
// (the kernel names it by another first_ns): it is followed, with its own span
// id, and the l7_control entry the first one left in the kernel is removed
// when the second ends.
TEST_F(HttpTrackerTest, ASecondConnectionOnTheSameFourTupleInOneDrainIsFollowed) {
  HttpTracker& t = tracker();
  const ebpfc_flow_key k = key_for(40005);
  uint8_t first_id[8] = {}, second_id[8] = {};
  // The first: a response whose body the kernel is told to skip, cut short.
  t.on_payload(head(k, true, 1, kRequest, 5000, 100), clock_, ids_, out_);
  t.on_payload(head(k, false, 1, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 5010, 100),
               clock_, ids_, out_);
  ASSERT_EQ(control_.entries.count(40005), 1u) << "no skip for the body";
  ASSERT_TRUE(t.on_flow_ended(k, first_id, clock_, ids_, out_));
  ASSERT_EQ(out_.size(), 1u);
  bool followed = false;
  short_exchange(t, 40005, 6000, &followed, 200, second_id);
  ASSERT_TRUE(followed);
  EXPECT_NE(std::memcmp(first_id, second_id, sizeof(first_id)), 0);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].start_unix_us, clock_.to_unix_us(6000));
  EXPECT_EQ(std::memcmp(out_[0].connection_span_id, first_id, sizeof(first_id)), 0);
  EXPECT_EQ(std::memcmp(out_[1].connection_span_id, second_id, sizeof(second_id)), 0);
  EXPECT_EQ(t.counters().connections, 2u);
  t.end_of_drain(8000, clock_, ids_, out_);
  EXPECT_EQ(t.open_connections(), 0u);
  EXPECT_TRUE(control_.entries.empty()) << "the kernel is left an l7_control entry";
}

// A body longer than the segment that starts it: the kernel is told to skip to
// its end, and the connection's l7_control entry is removed once it is over.
TEST_F(HttpTrackerTest, BodyIsSkippedInTheKernelAndItsEntryRemovedAtTheEnd) {
  HttpTracker& t = tracker();
  const ebpfc_flow_key k = key_for(40002);
  const std::string head_part = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
  const uint32_t body_start = 1 + static_cast<uint32_t>(head_part.size());
  t.on_payload(head(k, true, 1, kRequest, 100), clock_, ids_, out_);
  t.on_payload(head(k, false, 1, head_part + std::string(1000, 'b'), 200), clock_, ids_, out_);
  EXPECT_EQ(control_.entries.count(40002), 1u) << "no skip for the body";
  // the segment that reaches the body's end, sent as a 0-byte head
  ebpfc_payload_event end = head(k, false, body_start + 100000, "", 300);
  t.on_payload(end, clock_, ids_, out_);
  uint8_t span_id[8];
  EXPECT_TRUE(t.on_flow_ended(k, span_id, clock_, ids_, out_));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].response_body_bytes, 100000u);
  t.end_of_drain(400, clock_, ids_, out_);
  EXPECT_TRUE(control_.entries.empty()) << "the kernel is left an l7_control entry";
}

// A connection the kernel took for HTTP whose first bytes are not: it is
// given up, the kernel is told to stop, and it is counted.
TEST_F(HttpTrackerTest, ConnectionsGivenUpAsNotHttpAreCounted) {
  HttpTracker& t = tracker();
  const ebpfc_flow_key k = key_for(40100);
  t.on_payload(head(k, true, 1, "GET key\r\nmore", 100), clock_, ids_, out_);
  EXPECT_EQ(t.counters().not_http, 1u);
  EXPECT_EQ(control_.stops, 1);
  EXPECT_TRUE(out_.empty());
  // an HTTP connection is not
  bool followed = false;
  short_exchange(t, 40101, 200, &followed);
  EXPECT_EQ(t.counters().not_http, 1u);
}

// Heads say where each direction starts (the kernel saw the SYNs) or not (the
// connection was first seen mid-stream), and carry acknowledgement numbers:
// a response whose first segment was lost does not make every later one go
// unpaired, nor take another request's status.
TEST_F(HttpTrackerTest, StreamStartsAndAcknowledgementsReachTheStream) {
  HttpTracker& t = tracker();
  const std::string a = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string b = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string ra = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
  const std::string rb = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  auto with_ack = [](ebpfc_payload_event e, uint32_t ack) {
    e.flags |= EBPFC_PAYLOAD_ACK;
    e.ack = ack;
    return e;
  };
  const uint32_t ra_end = 1 + static_cast<uint32_t>(ra.size()) + 3;
  const uint32_t a_end = 1 + static_cast<uint32_t>(a.size());
  const uint32_t b_end = a_end + static_cast<uint32_t>(b.size());
  // The first response's head is lost (its body, "abc", is seen), or all of
  // it: then the next request's acknowledgement number shows the loss (the
  // response direction's start came with the requests).
  uint16_t port = 40200;
  for (const bool body_seen : {true, false}) {
    SCOPED_TRACE(body_seen ? "head lost" : "response lost whole");
    out_.clear();
    const ebpfc_flow_key k = key_for(port++);
    t.on_payload(with_ack(head(k, true, 1, a, 100), 1), clock_, ids_, out_);
    if (body_seen)
      t.on_payload(with_ack(head(k, false, ra_end - 3, "abc", 110), a_end), clock_, ids_, out_);
    t.on_payload(with_ack(head(k, true, a_end, b, 120), ra_end), clock_, ids_, out_);
    t.on_payload(with_ack(head(k, false, ra_end, rb, 130), b_end), clock_, ids_, out_);
    ASSERT_EQ(out_.size(), 2u);
    EXPECT_EQ(text_of(out_.text(), out_[0].target), "/a");
    EXPECT_EQ(out_[0].http_status, 0);
    EXPECT_NE(out_[0].incomplete & kHttpGapResponse, 0);
    EXPECT_EQ(text_of(out_.text(), out_[1].target), "/b");
    EXPECT_EQ(out_[1].http_status, 404);
    EXPECT_EQ(out_[1].incomplete, 0);
  }
  // mid-stream: the first bytes seen (a body) are not taken for "not HTTP"
  const ebpfc_flow_key m = key_for(port);
  t.on_payload(head(m, false, 500, "rest of a body", 200, 1, true), clock_, ids_, out_);
  t.on_payload(head(m, true, 900, a, 210, 1, true), clock_, ids_, out_);
  EXPECT_EQ(t.counters().not_http, 0u);
  EXPECT_EQ(t.open_connections(), 3u);
}

}  // namespace
}  // namespace ebpfc
