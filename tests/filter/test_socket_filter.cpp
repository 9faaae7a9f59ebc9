// Tests of the socket filter itself (bpf/capture.bpf.c), loaded into this
// machine's kernel and fed replayed connections with BPF_PROG_TEST_RUN: what
// it counts, which events it sends and which flow entries it leaves for user
// space. The frame decoder and the flow accounting are also tested in user
// space (tests/unit); these tests cover what only the kernel program does.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "filter_harness.h"

namespace ebpfc_test {
namespace {

class SocketFilter : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs CAP_BPF: run as root";
    filter_ = std::make_unique<LoadedFilter>(options_);
  }
  void replay(const std::vector<ReplayFrame>& frames) {
    for (const ReplayFrame& f : frames) filter_->run(f);
  }
  LoadedFilter::Options options_;
  std::unique_ptr<LoadedFilter> filter_;
};

const ebpfc_flow_dir& client_dir(const ebpfc_flow_stats& st) { return st.dir[st.client & 1]; }
const ebpfc_flow_dir& server_dir(const ebpfc_flow_stats& st) { return st.dir[(st.client & 1) ^ 1]; }

void expect_short_connection(const ebpfc_event& e, uint16_t cport) {
  EXPECT_EQ(e.type, static_cast<__u32>(EBPFC_EVENT_FLOW_CLOSED));
  EXPECT_EQ(e.stats.close_reason, EBPFC_CLOSE_FIN);
  EXPECT_EQ(e.key.port[e.stats.client & 1], cport);
  EXPECT_EQ(client_dir(e.stats).bytes, kReplayRequest);
  EXPECT_EQ(server_dir(e.stats).bytes, kReplayResponse);
  EXPECT_EQ(client_dir(e.stats).packets, 5u);
  EXPECT_EQ(server_dir(e.stats).packets, 5u);
  EXPECT_NE(e.stats.syn_ns, 0u);
  EXPECT_NE(e.stats.synack_ns, 0u);
  EXPECT_GE(e.stats.established_ns, e.stats.synack_ns);
  EXPECT_EQ(e.stats.mid_stream, 0);
}

TEST_F(SocketFilter, ConnectionClosedByFinsIsReportedOnceAndItsEntryRemoved) {
  std::vector<ReplayFrame> frames;
  short_connection(frames, 40001);
  replay(frames);

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 1u);
  expect_short_connection(events[0], 40001);
  EXPECT_EQ(events[0].flags, static_cast<__u32>(EBPFC_EVENT_ENTRY_REMOVED));
  EXPECT_TRUE(filter_->flows().empty()) << "the filter removes what it reported";
  const ebpfc_counters c = filter_->counters();
  EXPECT_EQ(c.frames, 10u);
  EXPECT_EQ(c.tcp_packets, 10u);
  EXPECT_EQ(c.flows_created, 1u);
  EXPECT_EQ(c.events_dropped, 0u);
}

TEST_F(SocketFilter, RetransmittedFinAfterTheCloseStartsNoFlow) {
  std::vector<ReplayFrame> frames;
  short_connection(frames, 40002);
  replay(frames);
  filter_->run(frames[8]);  // the client's FIN again
  filter_->run(frames[9]);  // and the server's ACK of it

  EXPECT_EQ(filter_->events().size(), 1u);
  EXPECT_TRUE(filter_->flows().empty());
  EXPECT_EQ(filter_->counters().untracked, 2u);
}

TEST_F(SocketFilter, PortReusedAtOnceAfterFinsIsANewConnection) {
  std::vector<ReplayFrame> frames;
  short_connection(frames, 40003, 1000, 5000);
  short_connection(frames, 40003, 900000, 700000);  // new initial sequence numbers
  replay(frames);

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 2u) << "one close event each, and no restarted event";
  expect_short_connection(events[0], 40003);
  expect_short_connection(events[1], 40003);
  EXPECT_EQ(client_dir(events[1].stats).isn, 900000u);
  EXPECT_TRUE(filter_->flows().empty());
}

class SocketFilterHttp : public SocketFilter {
 protected:
  void SetUp() override {
    options_.http = true;
    SocketFilter::SetUp();
  }
};

// User space removes a connection's l7_control entry only after it has read
// the close, so a client port reused at once meets its predecessor's entry
// (here: "stop sending payload"). The filter must not apply it to the new
// connection, and must still apply an entry that is the connection's own.
TEST_F(SocketFilterHttp, AnEarlierConnectionsControlIsIgnoredAndItsOwnApplies) {
  std::vector<ReplayFrame> first;
  short_connection(first, 40006, 1000, 5000, true);
  replay(first);
  const auto closed = filter_->events();
  ASSERT_EQ(closed.size(), 1u);
  const auto first_heads = filter_->payloads();
  ASSERT_EQ(first_heads.size(), 2u) << "the request and the response";
  const uint64_t first_ns = first_heads[0].flow_first_ns;
  EXPECT_EQ(first_ns, closed[0].stats.first_ns);
  EXPECT_EQ(first_heads[1].flow_first_ns, first_ns);

  // The first connection's parser was done with it: "stop", still in the map.
  ebpfc_l7_control stop{};
  stop.not_http = 1;
  stop.first_ns = first_ns;
  filter_->set_l7_control(closed[0].key, stop);

  // The same four-tuple again, at once: both of its heads are sent.
  std::vector<ReplayFrame> second;
  short_connection(second, 40006, 900000, 700000, true);
  for (size_t i = 0; i < 4; i++) filter_->run(second[i]);  // up to the request
  filter_->events();
  const auto request = filter_->payloads();
  ASSERT_EQ(request.size(), 1u) << "the earlier connection's entry stopped this one";
  EXPECT_TRUE(request[0].from_client);
  EXPECT_NE(request[0].flow_first_ns, first_ns);

  // Its own "stop" applies: the response is not sent.
  stop.first_ns = request[0].flow_first_ns;
  filter_->set_l7_control(closed[0].key, stop);
  for (size_t i = 4; i < second.size(); i++) filter_->run(second[i]);
  ASSERT_EQ(filter_->events().size(), 1u);
  EXPECT_TRUE(filter_->payloads().empty()) << "the connection's own entry was not applied";
}

// The classifier in the kernel (bpf/l7_classify.h): a connection whose first
// request uses any RFC 9110 token as its method is HTTP, and both of its heads
// are sent to user space. (Before, only nine methods were known: a connection
// that began with QUERY or PROPFIND was never parsed.)
TEST_F(SocketFilterHttp, AnyTokenMethodMakesAConnectionHttp) {
  uint16_t port = 42000;
  for (const std::string m : {"QUERY", "PROPFIND", "MKCOL", "VERSION-CONTROL", "get",
                              "X!#$%&'*+.^_`|~9", "UPDATEREDIRECTREF", "GET"}) {
    std::vector<ReplayFrame> frames;
    exchange_connection(frames, port++, m + " /x HTTP/1.1\r\nHost: h\r\n\r\n",
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    replay(frames);
    ASSERT_EQ(filter_->events().size(), 1u) << m;
    const auto heads = filter_->payloads();
    ASSERT_EQ(heads.size(), 2u) << m;
    EXPECT_TRUE(heads[0].from_client);
    EXPECT_EQ(heads[0].data.substr(0, m.size() + 1), m + " ");
    EXPECT_EQ(heads[1].data.substr(0, 12), "HTTP/1.1 200");
  }
  EXPECT_EQ(filter_->counters().l7_not_http, 0u);
}

// Line protocols whose commands are tokens too, TLS and HTTP/2: no head is
// sent, and each connection is counted once as not HTTP.
TEST_F(SocketFilterHttp, OtherProtocolsAreNotSentAndCounted) {
  const std::pair<std::string, std::string> cases[] = {
      {"EHLO client.example\r\n", "250 mail.example\r\n"},
      {"get key\r\n", "END\r\n\r\n"},
      {"INVITE sip:bob@example.com SIP/2.0\r\n", "SIP/2.0 100 Trying\r\n"},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", std::string("\0\0\0\x04\0\0\0\0\0", 9)},
      {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
       std::string("\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", 11)},
  };
  uint16_t port = 42100;
  for (const auto& [request, response] : cases) {
    std::vector<ReplayFrame> frames;
    exchange_connection(frames, port++, request, response);
    replay(frames);
    EXPECT_EQ(filter_->events().size(), 1u) << request;
    EXPECT_TRUE(filter_->payloads().empty()) << request;
  }
  EXPECT_EQ(filter_->counters().l7_not_http, 5u);
  // a server that speaks first (SMTP) is judged on its greeting
  std::vector<ReplayFrame> smtp;
  exchange_connection(smtp, port++, "", "220 mail.example ESMTP\r\n");
  smtp.erase(smtp.begin() + 3);  // no request segment
  replay(smtp);
  filter_->events();
  EXPECT_TRUE(filter_->payloads().empty());
  EXPECT_EQ(filter_->counters().l7_not_http, 6u);
}

// Each head carries its segment's acknowledgement number and, for a
// connection whose SYNs the filter saw, where both directions' streams
// start: user space sees losses and pairs responses after them by these.
TEST_F(SocketFilterHttp, HeadsCarryTheAckAndTheStreamStart) {
  const std::string req = "GET / HTTP/1.1\r\n\r\n", resp = "HTTP/1.1 204 No Content\r\n\r\n";
  std::vector<ReplayFrame> frames;
  exchange_connection(frames, 42200, req, resp, 1000, 5000);
  replay(frames);
  filter_->events();
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), 2u);
  const uint8_t all = EBPFC_PAYLOAD_ACK | EBPFC_PAYLOAD_STREAM_START | EBPFC_PAYLOAD_PEER_START;
  EXPECT_EQ(heads[0].seq, 1001u);
  EXPECT_EQ(heads[0].ack, 5001u);
  EXPECT_EQ(heads[0].stream_start, 1001u);
  EXPECT_EQ(heads[0].peer_start, 5001u);
  EXPECT_EQ(heads[0].flags, all);
  EXPECT_EQ(heads[1].seq, 5001u);
  EXPECT_EQ(heads[1].ack, 1001u + req.size());
  EXPECT_EQ(heads[1].stream_start, 5001u);
  EXPECT_EQ(heads[1].peer_start, 1001u);
  EXPECT_EQ(heads[1].flags, all);
}

// A connection first seen mid-stream (the capture started, or its SYNs went
// another way): its first payload may be the middle of a body, so it does
// not decide. Segments that start no message are not sent; the first request
// or status line makes it HTTP and is sent, with no stream start.
TEST_F(SocketFilterHttp, MidStreamConnectionIsJudgedAtItsNextMessageHead) {
  const uint16_t cport = 42300;
  uint32_t c = 70000, s = 90000;
  for (int i = 0; i < 5; i++) {  // the rest of a response body
    filter_->run(replay_frame(false, cport, s, c, kReplayAck, payload_of(1000, 'r')));
    s += 1000;
  }
  const std::string req = "PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n";
  filter_->run(replay_frame(true, cport, c, s, kReplayPsh | kReplayAck, text_bytes(req)));
  c += static_cast<uint32_t>(req.size());
  filter_->run(replay_frame(false, cport, s, c, kReplayPsh | kReplayAck,
                            text_bytes("HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n")));
  filter_->events();
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[0].data.substr(0, 9), "PROPFIND ");
  EXPECT_EQ(heads[0].flags, EBPFC_PAYLOAD_ACK) << "no stream starts without the SYNs";
  EXPECT_EQ(heads[0].ack, s);
  EXPECT_EQ(heads[1].data.substr(0, 12), "HTTP/1.1 207");
  EXPECT_EQ(filter_->counters().l7_not_http, 0u);
  auto flows = filter_->flows();
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].second.l7, static_cast<__u32>(EBPFC_L7_HTTP));
  EXPECT_EQ(flows[0].second.l7_probes, 5u);
}

// ... and is given up as not HTTP after EBPFC_L7_PROBES_MAX segments that
// start no message: then it is never looked at again.
TEST_F(SocketFilterHttp, MidStreamConnectionIsGivenUpAfterItsProbes) {
  const uint16_t cport = 42400;
  uint32_t s = 90000;
  for (int i = 0; i < EBPFC_L7_PROBES_MAX; i++) {
    filter_->run(replay_frame(false, cport, s, 1, kReplayAck, payload_of(100, 'x')));
    s += 100;
    EXPECT_EQ(filter_->counters().l7_not_http, i + 1 == EBPFC_L7_PROBES_MAX ? 1u : 0u) << i;
  }
  filter_->run(replay_frame(true, cport, 1, s, kReplayPsh | kReplayAck,
                            text_bytes("GET / HTTP/1.1\r\n\r\n")));
  filter_->events();
  EXPECT_TRUE(filter_->payloads().empty());
  auto flows = filter_->flows();
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].second.l7, static_cast<__u32>(EBPFC_L7_OTHER));
  EXPECT_EQ(filter_->counters().l7_not_http, 1u);
}

// A request written a few bytes at a time (TCP_NODELAY): its first segment
// is too short to tell, and the segments that continue it are sent to the
// parser, whatever their length, until the response decides.
TEST_F(SocketFilterHttp, ARequestInSmallPiecesIsSentWhole) {
  const std::string req =
      "POST /raw?len=10&run=ab HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
  const uint16_t cport = 42500;
  uint32_t c = 1000, s = 5000;
  replay({replay_frame(true, cport, c, 0, kReplaySyn, 0),
          replay_frame(false, cport, s, c + 1, kReplaySyn | kReplayAck, 0),
          replay_frame(true, cport, c + 1, s + 1, kReplayAck, 0)});
  c++, s++;
  size_t sent = 0;
  for (size_t off = 0, k = 0; off < req.size(); k++) {
    const size_t n = std::min<size_t>(req.size() - off, k % 2 ? 11 : 5);
    filter_->run(
        replay_frame(true, cport, c, s, kReplayPsh | kReplayAck, text_bytes(req.substr(off, n))));
    c += static_cast<uint32_t>(n);
    off += n;
    sent++;
  }
  filter_->run(replay_frame(false, cport, s, c, kReplayPsh | kReplayAck,
                            text_bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")));
  filter_->events();
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), sent + 1);
  std::string got;
  for (size_t i = 0; i < sent; i++) got += heads[i].data;
  EXPECT_EQ(got, req);
  EXPECT_EQ(filter_->counters().l7_not_http, 0u);
}

// The routed program with everything on, as a capture of 'cali*' loads it
// by default (HTTP payloads, PostgreSQL's and Redis's classifiers, one
// source's share of the flows map): the verifier must take it within its
// complexity bound.
TEST(SocketFilterLoad, RoutedWithHttpLoads) {
  LoadedFilter::Options o;
  o.routed = true;
  o.http = true;
  o.pgsql = true;
  o.redis = true;
  ASSERT_NE(o.max_half_open_per_source, 0u);
  std::unique_ptr<LoadedFilter> f;
  ASSERT_NO_THROW(f = std::make_unique<LoadedFilter>(o));
  const uint32_t insns = f->verified_insns();
  std::printf("routed, HTTP, PostgreSQL, Redis, source share: %u instructions verified\n", insns);
  EXPECT_LT(insns, 1000000u);
}

class SocketFilterRouted : public SocketFilter {
 protected:
  void SetUp() override {
    options_.routed = true;
    SocketFilter::SetUp();
  }
};

// At routed pod interfaces the filter sees a frame between two pods twice:
// coming in from the sender's pod and going out to the receiver's
// (PACKET_OUTGOING). BPF_PROG_TEST_RUN cannot make a frame outgoing, so this
// checks the half it can: the verifier takes the routed program, frames
// coming in count as on a bridge port, and mark their direction in the flow
// entry (the bits the outgoing copies are checked against). The outgoing
// half runs in tests/integration/test_25_routed.py, on real traffic.
TEST_F(SocketFilterRouted, FramesComingInCountOnceAndMarkTheirDirection) {
  std::vector<ReplayFrame> frames;
  short_connection(frames, 40011);
  for (size_t i = 0; i + 1 < frames.size(); i++) filter_->run(frames[i]);
  auto open = filter_->flows();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].second.counted_in, 3u) << "both directions came in through a pod's interface";
  filter_->run(frames.back());

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 1u);
  expect_short_connection(events[0], 40011);
  EXPECT_EQ(events[0].stats.dir[0].retransmits + events[0].stats.dir[1].retransmits, 0u);
  EXPECT_TRUE(filter_->flows().empty());
  const ebpfc_counters c = filter_->counters();
  EXPECT_EQ(c.frames, 10u);
  EXPECT_EQ(c.routed_copies, 0u);

  // Not routed: no marks.
  LoadedFilter::Options plain;
  LoadedFilter bridge(plain);
  for (size_t i = 0; i + 1 < frames.size(); i++) bridge.run(frames[i]);
  ASSERT_EQ(bridge.flows().size(), 1u);
  EXPECT_EQ(bridge.flows()[0].second.counted_in, 0u);
}

// SYN, SYN-ACK, ACK, the request, then the server resets.
std::vector<ReplayFrame> reset_connection(uint16_t cport, uint32_t c, uint32_t s) {
  return {replay_frame(true, cport, c, 0, kReplaySyn, 0),
          replay_frame(false, cport, s, c + 1, kReplaySyn | kReplayAck, 0),
          replay_frame(true, cport, c + 1, s + 1, kReplayAck, 0),
          replay_frame(true, cport, c + 1, s + 1, kReplayPsh | kReplayAck, kReplayRequest),
          replay_frame(false, cport, s + 1, 0, kReplayRst, 0)};
}

class SocketFilterPg : public SocketFilter {
 protected:
  void SetUp() override {
    options_.http = true;
    options_.pgsql = true;
    SocketFilter::SetUp();
  }
};

std::string pg_be32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::string pg_msg(char type, const std::string& body) {
  return std::string(1, type) + pg_be32(static_cast<uint32_t>(body.size() + 4)) + body;
}

// A startup packet, an SSLRequest, a CancelRequest: the connection is
// PostgreSQL, both directions' payload is sent (classified so), counted once.
TEST_F(SocketFilterPg, StartupPacketsMakeAConnectionPostgresql) {
  const std::string body = pg_be32(196608) + std::string("user\0alice\0database\0shop\0\0", 26);
  const std::string startup = pg_be32(static_cast<uint32_t>(body.size() + 4)) + body;
  const std::string cases[] = {startup, pg_be32(8) + pg_be32(80877103),
                               pg_be32(16) + pg_be32(80877102) + pg_be32(7) + pg_be32(9)};
  uint16_t port = 43000;
  for (const std::string& request : cases) {
    std::vector<ReplayFrame> frames;
    exchange_connection(frames, port++, request, pg_msg('R', pg_be32(0)) + pg_msg('Z', "I"));
    replay(frames);
    ASSERT_EQ(filter_->events().size(), 1u);
    const auto heads = filter_->payloads();
    ASSERT_EQ(heads.size(), 2u);
    EXPECT_TRUE(heads[0].from_client);
    EXPECT_EQ(heads[0].data, request);
    EXPECT_EQ(heads[0].l7, EBPFC_L7_PGSQL);
    EXPECT_EQ(heads[1].l7, EBPFC_L7_PGSQL);
  }
  EXPECT_EQ(filter_->counters().l7_pgsql, 3u);
  EXPECT_EQ(filter_->counters().l7_not_http, 0u);
}

// HTTP stays HTTP, other protocols stay unsent, with PostgreSQL on too.
TEST_F(SocketFilterPg, HttpAndOtherProtocolsAreUnchanged) {
  std::vector<ReplayFrame> frames;
  exchange_connection(frames, 43100, "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  exchange_connection(frames, 43101, "EHLO client.example\r\n", "250 mail.example\r\n");
  exchange_connection(frames, 43102,
                      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
                      std::string("\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", 11));
  replay(frames);
  EXPECT_EQ(filter_->events().size(), 3u);
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[0].l7, EBPFC_L7_HTTP);
  EXPECT_EQ(filter_->counters().l7_not_http, 2u);
  EXPECT_EQ(filter_->counters().l7_pgsql, 0u);
}

// A connection first seen mid-stream is taken for PostgreSQL at a segment
// of whole messages (after segments that are not).
TEST_F(SocketFilterPg, MidStreamConnectionIsJudgedByMessageShapes) {
  const uint16_t cport = 43200;
  uint32_t c = 70000, s = 90000;
  for (int i = 0; i < 3; i++) {  // the middle of a large DataRow
    filter_->run(replay_frame(false, cport, s, c, kReplayAck, payload_of(1000, 'r')));
    s += 1000;
  }
  const std::string q = pg_msg('Q', std::string("SELECT 1\0", 9));
  filter_->run(replay_frame(true, cport, c, s, kReplayPsh | kReplayAck, text_bytes(q)));
  filter_->events();
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].data, q);
  EXPECT_EQ(heads[0].l7, EBPFC_L7_PGSQL);
  EXPECT_EQ(filter_->counters().l7_pgsql, 1u);
}

class SocketFilterRedis : public SocketFilter {
 protected:
  void SetUp() override {
    options_.http = true;
    options_.pgsql = true;
    options_.redis = true;
    SocketFilter::SetUp();
  }
};

std::string redis_cmd(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// A client's command array makes a connection Redis: both directions'
// payload is sent, counted once; HTTP, PostgreSQL and other protocols are
// classified as before.
TEST_F(SocketFilterRedis, CommandArraysMakeAConnectionRedis) {
  std::vector<ReplayFrame> frames;
  exchange_connection(frames, 44000, redis_cmd({"SET", "k", "v"}), "+OK\r\n");
  exchange_connection(frames, 44001, redis_cmd({"GET", "key:000000000001"}), "$3\r\nxxx\r\n");
  exchange_connection(frames, 44002, "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  exchange_connection(frames, 44003, pg_msg('Q', std::string("SELECT 1\0", 9)), pg_msg('Z', "I"));
  exchange_connection(frames, 44004, "PING\r\n", "+PONG\r\n");  // inline: not taken
  exchange_connection(frames, 44005, "EHLO client.example\r\n", "250 mail.example\r\n");
  replay(frames);
  EXPECT_EQ(filter_->events().size(), 6u);
  const auto heads = filter_->payloads();
  // 2 + 2 Redis, 2 HTTP, 2 PostgreSQL, and the inline command's two
  // segments: shorter than EBPFC_L7_PROBE_MIN at their streams' starts, they
  // go to the HTTP parser unclassified, as before
  ASSERT_EQ(heads.size(), 10u);
  EXPECT_EQ(heads[0].l7, EBPFC_L7_REDIS);
  EXPECT_EQ(heads[0].data, redis_cmd({"SET", "k", "v"}));
  EXPECT_TRUE(heads[0].from_client);
  EXPECT_EQ(heads[1].l7, EBPFC_L7_REDIS);
  EXPECT_EQ(heads[1].data, "+OK\r\n");
  EXPECT_EQ(heads[3].l7, EBPFC_L7_REDIS);
  EXPECT_EQ(heads[4].l7, EBPFC_L7_HTTP);
  EXPECT_EQ(heads[6].l7, EBPFC_L7_PGSQL);
  EXPECT_EQ(heads[8].l7, EBPFC_L7_UNKNOWN);
  EXPECT_EQ(filter_->counters().l7_redis, 2u);
  EXPECT_EQ(filter_->counters().l7_pgsql, 1u);
  EXPECT_EQ(filter_->counters().l7_not_http, 1u);  // SMTP
}

// Off, a Redis connection is one like any other: no payload.
TEST_F(SocketFilterPg, RedisOffSendsNothing) {
  std::vector<ReplayFrame> frames;
  exchange_connection(frames, 44100, redis_cmd({"SET", "k", "v"}), "+OK\r\n");
  replay(frames);
  EXPECT_EQ(filter_->payloads().size(), 0u);
  EXPECT_EQ(filter_->counters().l7_redis, 0u);
  EXPECT_EQ(filter_->counters().l7_not_http, 1u);
}

// A connection first seen mid-stream (replies, then a command) is taken
// for Redis at the client's next command.
TEST_F(SocketFilterRedis, MidStreamConnectionIsTakenAtACommand) {
  const uint16_t cport = 44200;
  uint32_t c = 70000, s = 90000;
  for (int i = 0; i < 3; i++) {  // the middle of a large reply
    filter_->run(replay_frame(false, cport, s, c, kReplayAck, payload_of(1000, 'r')));
    s += 1000;
  }
  const std::string q = redis_cmd({"HGETALL", "h"});
  filter_->run(replay_frame(true, cport, c, s, kReplayPsh | kReplayAck, text_bytes(q)));
  filter_->events();
  const auto heads = filter_->payloads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].data, q);
  EXPECT_EQ(heads[0].l7, EBPFC_L7_REDIS);
  EXPECT_EQ(filter_->counters().l7_redis, 1u);
}

TEST_F(SocketFilter, ResetConnectionStaysClosedForUserSpaceAndCountsLateSegments) {
  replay(reset_connection(40004, 1000, 5000));
  // more of the client's data, sent before the reset reached it
  filter_->run(replay_frame(true, 40004, 1000 + 1 + kReplayRequest, 5001, kReplayPsh | kReplayAck,
                            kReplayRequest));

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].stats.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(events[0].flags, 0u) << "user space removes a reset connection's entry";
  EXPECT_EQ(client_dir(events[0].stats).bytes, kReplayRequest);
  auto flows = filter_->flows();
  ASSERT_EQ(flows.size(), 1u) << "the late segment must not start a flow of its own";
  EXPECT_EQ(flows[0].second.state, static_cast<__u32>(EBPFC_FLOW_CLOSED));
  EXPECT_EQ(filter_->counters().late, 1u);
}

TEST_F(SocketFilter, PortReusedBeforeUserSpaceRemovedAResetEntrySaysSo) {
  replay(reset_connection(40005, 1000, 5000));
  std::vector<ReplayFrame> frames;
  short_connection(frames, 40005, 900000, 700000);
  replay(frames);

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, static_cast<__u32>(EBPFC_EVENT_FLOW_CLOSED));
  EXPECT_EQ(events[0].stats.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(events[1].type, static_cast<__u32>(EBPFC_EVENT_FLOW_RESTARTED))
      << "user space must not remove the entry the new connection took over";
  expect_short_connection(events[2], 40005);
  EXPECT_TRUE(filter_->flows().empty());
}

TEST_F(SocketFilter, ZeroWindowsAreCountedForTheEndpointThatAdvertisedThem) {
  const uint16_t cport = 40006;
  const uint32_t c = 1000, s = 5000;
  replay({replay_frame(true, cport, c, 0, kReplaySyn, 0),
          replay_frame(false, cport, s, c + 1, kReplaySyn | kReplayAck, 0),
          replay_frame(true, cport, c + 1, s + 1, kReplayAck, 0),
          replay_frame(true, cport, c + 1, s + 1, kReplayPsh | kReplayAck, 1000),
          // the server's buffer is full; the client probes; still full; room again
          replay_frame(false, cport, s + 1, c + 1001, kReplayAck, 0, 0),
          replay_frame(true, cport, c + 1000, s + 1, kReplayAck, 0),
          replay_frame(false, cport, s + 1, c + 1001, kReplayAck, 0, 0),
          replay_frame(false, cport, s + 1, c + 1001, kReplayAck, 0, 512),
          // a reset carries a zero window and says nothing of the buffer
          replay_frame(true, cport, c + 1001, 0, kReplayRst, 0, 0)});

  auto events = filter_->events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].stats.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(server_dir(events[0].stats).zero_windows, 2u);
  EXPECT_EQ(client_dir(events[0].stats).zero_windows, 0u);
  EXPECT_EQ(client_dir(events[0].stats).bytes, 1000u);
}

class SocketFilterSmallRing : public SocketFilter {
 protected:
  void SetUp() override {
    options_.ring_buffer_bytes = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));  // the smallest
    SocketFilter::SetUp();
  }
};

TEST_F(SocketFilterSmallRing, ConnectionWhoseEventIsLostStaysInTheMapWithItsCounts) {
  constexpr int kConnections = 40;  // more close events than the ring buffer holds
  std::vector<ReplayFrame> frames;
  for (int i = 0; i < kConnections; i++) short_connection(frames, static_cast<uint16_t>(41000 + i));
  replay(frames);

  const auto events = filter_->events();
  const auto flows = filter_->flows();
  const ebpfc_counters c = filter_->counters();
  ASSERT_GT(c.events_dropped, 0u);
  EXPECT_EQ(events.size() + flows.size(), static_cast<size_t>(kConnections))
      << "every connection is either reported or left for the sweep";
  EXPECT_EQ(flows.size(), c.events_dropped);
  for (const auto& [key, st] : flows) {
    EXPECT_EQ(st.state, static_cast<__u32>(EBPFC_FLOW_CLOSED));
    EXPECT_EQ(client_dir(st).bytes, kReplayRequest);
    EXPECT_EQ(server_dir(st).bytes, kReplayResponse);
  }
}

// A SYN from `client` (port sport) to the replay server, 10.77.0.2:80.
ReplayFrame syn_from(Ip4 client, uint16_t sport) {
  Ipv4Spec ip;
  TcpSpec t;
  ip.src = client;
  ip.dst = Ip4{10, 77, 0, 2};
  t.sport = sport;
  t.dport = 80;
  t.seq = 1000;
  t.flags = kReplaySyn;
  t.window = 65535;
  Bytes out(14, 0);  // the throwaway Ethernet header (see replay_frame)
  out[12] = 0x08;
  Bytes frame = tcp4_frame(ip, t);
  out.insert(out.end(), frame.begin(), frame.end());
  return ReplayFrame{std::move(out), 0};
}

// The flows map as the worker sizes it for a 1,024-entry table: 64 half-open
// connections per source (max_half_open_share).
class SocketFilterSynShare : public SocketFilter {
 protected:
  void SetUp() override {
    options_.flow_table_size = 1024;
    options_.max_half_open_per_source = 64;
    SocketFilter::SetUp();
  }
};

// A SYN flood from one source (never answered, as to a port that drops
// them) takes its share of the map and no more: another client's connection
// is tracked whole, and the SYNs beyond the share are counted. Without the
// share, the flood fills the map and that connection is lost.
TEST_F(SocketFilterSynShare, ASynFloodFromOneSourceLeavesTheTableToTheOthers) {
  for (int i = 0; i < 2000; i++) filter_->run(syn_from(Ip4{10, 77, 0, 9}, 20000 + i));
  ebpfc_counters c = filter_->counters();
  EXPECT_EQ(c.flows_created, 64u);
  EXPECT_EQ(c.source_capped, 2000u - 64u);
  EXPECT_EQ(c.flow_table_full, 0u);

  std::vector<ReplayFrame> frames;
  short_connection(frames, 40001);
  replay(frames);
  auto events = filter_->events();
  ASSERT_EQ(events.size(), 1u);
  expect_short_connection(events[0], 40001);
  EXPECT_EQ(filter_->counters().flow_table_full, 0u);
}

// Connections that complete their handshake give their share back: a
// source may open any number of them, one after another.
TEST_F(SocketFilterSynShare, CompletedHandshakesGiveTheShareBack) {
  constexpr int kConnections = 200;
  std::vector<ReplayFrame> frames;
  for (int i = 0; i < kConnections; i++) short_connection(frames, static_cast<uint16_t>(41000 + i));
  replay(frames);
  const ebpfc_counters c = filter_->counters();
  EXPECT_EQ(c.flows_created, static_cast<uint64_t>(kConnections));
  EXPECT_EQ(c.source_capped, 0u);
  EXPECT_EQ(filter_->events().size(), static_cast<size_t>(kConnections));
}

}  // namespace
}  // namespace ebpfc_test
