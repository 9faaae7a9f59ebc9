// Tests of bpf/flow_account.h: per-segment connection accounting, driven by
// real frames through the decoder (conn_sim.h).
#include <gtest/gtest.h>

#include "conn_sim.h"

namespace ebpfc_test {
namespace {

constexpr uint8_t kSyn = EBPFC_TCP_SYN;
constexpr uint8_t kAck = EBPFC_TCP_ACK;
constexpr uint8_t kFin = EBPFC_TCP_FIN;
constexpr uint8_t kRst = EBPFC_TCP_RST;
constexpr uint8_t kPsh = EBPFC_TCP_PSH;
constexpr uint64_t kValid = EBPFC_SEQ_VALID;

// The client has the larger address: it is endpoint 1 of the key.
const Endpoint4 kClientHigh{{10, 0, 0, 2}, 40000};
const Endpoint4 kServerLow{{10, 0, 0, 1}, 5432};
// The client has the smaller address: endpoint 0.
const Endpoint4 kClientLow{{10, 0, 0, 1}, 40000};
const Endpoint4 kServerHigh{{10, 0, 0, 2}, 80};

constexpr uint32_t kIsnC = 1000;
constexpr uint32_t kIsnS = 5000;

#define EXPECT_RESULT(expected, call) EXPECT_EQ(result_name(call), #expected)

// SYN, SYN-ACK, ACK at 1000, 2000, 3000 ns.
void handshake(ConnSim& c, uint32_t isn_c = kIsnC, uint32_t isn_s = kIsnS) {
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, isn_c, 0, 0, 1000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, isn_s, isn_c + 1, 0, 2000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, isn_c + 1, isn_s + 1, 0, 3000));
}

void full_lifecycle(ConnSim& c) {
  handshake(c);
  ASSERT_TRUE(c.tracked);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 100, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kPsh | kAck, 5001, 1101, 300, 5000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1101, 5301, 0, 6000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kFin | kAck, 1101, 5301, 0, 7000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 5301, 1102, 0, 8000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kFin | kAck, 5301, 1102, 0, 9000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_OPEN);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kAck, 1102, 5302, 0, 10000));

  const uint8_t ci = c.idx(Who::Client);
  const uint8_t si = c.idx(Who::Server);
  ASSERT_NE(ci, si);
  EXPECT_EQ(c.st.client, ci);
  EXPECT_EQ(c.st.first_ns, 1000u);
  EXPECT_EQ(c.st.last_ns, 10000u);
  EXPECT_EQ(c.st.syn_ns, 1000u);
  EXPECT_EQ(c.st.synack_ns, 2000u);
  EXPECT_EQ(c.st.established_ns, 3000u);
  EXPECT_EQ(c.st.dir[ci].bytes, 100u);
  EXPECT_EQ(c.st.dir[si].bytes, 300u);
  EXPECT_EQ(c.st.dir[ci].packets, 6u);  // SYN, ACK, data, ACK, FIN, ACK
  EXPECT_EQ(c.st.dir[si].packets, 4u);  // SYN-ACK, data, ACK, FIN
  EXPECT_EQ(c.st.dir[ci].retransmits, 0u);
  EXPECT_EQ(c.st.dir[si].retransmits, 0u);
  EXPECT_EQ(c.st.dir[ci].flags, unsigned{kSyn | kAck | kPsh | kFin});
  EXPECT_EQ(c.st.dir[si].flags, unsigned{kSyn | kAck | kPsh | kFin});
  EXPECT_EQ(c.st.dir[ci].seq, kValid | 1101);
  EXPECT_EQ(c.st.dir[si].seq, kValid | 5301);
  EXPECT_EQ(c.st.state, EBPFC_FLOW_CLOSED);
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_FIN);
  EXPECT_EQ(c.st.rst_from, EBPFC_NO_ENDPOINT);
  EXPECT_EQ(c.st.mid_stream, 0);
}

TEST(FlowAccount, FullLifecycleClientIsEndpointOne) {
  ConnSim c(kClientHigh, kServerLow);
  ASSERT_EQ(c.idx(Who::Client), 1);
  full_lifecycle(c);
}

TEST(FlowAccount, FullLifecycleClientIsEndpointZero) {
  ConnSim c(kClientLow, kServerHigh);
  ASSERT_EQ(c.idx(Who::Client), 0);
  full_lifecycle(c);
}

TEST(FlowAccount, ServerClosesFirst) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kFin | kAck, 5001, 1001, 0, 4000));
  // half-closed: the client still sends, the server still acknowledges
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5002, 40, 5000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 5002, 1041, 0, 6000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_OPEN);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kFin | kAck, 1041, 5002, 0, 7000));
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Server, kAck, 5002, 1042, 0, 8000));
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_FIN);
  EXPECT_EQ(c.dir(Who::Client).bytes, 40u);
}

TEST(FlowAccount, RepeatedFinDoesNotClose) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kFin | kAck, 1001, 5001, 0, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kFin | kAck, 5001, 1002, 0, 5000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kFin | kAck, 1001, 5002, 0, 6000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_OPEN);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kAck, 1002, 5002, 0, 7000));
}

TEST(FlowAccount, AckCarryingDataDoesNotClose) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 100, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kFin | kAck, 1101, 5001, 0, 5000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kFin | kAck, 5001, 1102, 0, 6000));
  // a late retransmission of the client's data, with ACK set: not the final ACK
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5002, 100, 7000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_OPEN);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kAck, 1102, 5002, 0, 8000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 100u);
}

TEST(FlowAccount, ResetByServerCloses) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 10, 4000));
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Server, kRst | kAck, 5001, 1011, 0, 5000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_CLOSED);
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(c.st.rst_from, c.idx(Who::Server));
  EXPECT_EQ(c.dir(Who::Server).packets, 2u);
  EXPECT_EQ(c.st.last_ns, 5000u);
  // the client's answering reset is late: the first one is what counts
  EXPECT_RESULT(LATE, c.send(Who::Client, kRst, 1011, 0, 0, 6000));
  EXPECT_EQ(c.st.rst_from, c.idx(Who::Server));
  EXPECT_EQ(c.dir(Who::Client).packets, 3u);
}

TEST(FlowAccount, ResetByClientCloses) {
  ConnSim c(kClientLow, kServerHigh);
  handshake(c);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kRst | kAck, 1001, 5001, 0, 4000));
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(c.st.rst_from, c.idx(Who::Client));
  EXPECT_EQ(c.st.rst_from, 0);
}

TEST(FlowAccount, RefusedConnection) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1000));
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Server, kRst | kAck, 0, kIsnC + 1, 0, 1500));
  EXPECT_EQ(c.st.syn_ns, 1000u);
  EXPECT_EQ(c.st.synack_ns, 0u);
  EXPECT_EQ(c.st.established_ns, 0u);
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_RST);
  EXPECT_EQ(c.st.rst_from, c.idx(Who::Server));
}

// A receiver whose buffer is full advertises a zero window; each such segment
// counts for its sender. Resets carry a zero window too and do not count.
TEST(FlowAccount, ZeroWindowsCountedForTheirSender) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_EQ(c.dir(Who::Client).zero_windows, 0u);
  EXPECT_EQ(c.dir(Who::Server).zero_windows, 0u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 1000, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 5001, 2001, 0, 5000, 0));
  // the client's window probe, and the server's answers: still full, then room
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 2000, 5001, 0, 6000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 5001, 2001, 0, 7000, 0));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 5001, 2001, 0, 8000, 1));
  EXPECT_EQ(c.dir(Who::Server).zero_windows, 2u);
  EXPECT_EQ(c.dir(Who::Client).zero_windows, 0u);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kRst, 2001, 0, 0, 9000, 0));
  EXPECT_EQ(c.dir(Who::Client).zero_windows, 0u);
}

// A SYN with a zero window (never sent by Linux; a hostile or odd stack) is not
// a full buffer either.
TEST(FlowAccount, SynWithZeroWindowIsNotCounted) {
  ConnSim c(kClientLow, kServerHigh);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1000, 0));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 2000, 0));
  EXPECT_EQ(c.dir(Who::Client).zero_windows, 0u);
  EXPECT_EQ(c.dir(Who::Server).zero_windows, 0u);
}

TEST(FlowAccount, RetransmittedSegmentCountedOnce) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 100, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 100, 5000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 100u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_EQ(c.dir(Who::Client).packets, 4u);  // every segment is a packet
  EXPECT_EQ(c.dir(Who::Server).retransmits, 0u);
  // a retransmission of a part of it
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1051, 5001, 50, 6000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 100u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 2u);
  // then new data
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1101, 5001, 7, 7000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 107u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 2u);
}

TEST(FlowAccount, PartialOverlapCountsOnlyNewBytes) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kPsh | kAck, 5001, 1001, 100, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kPsh | kAck, 5051, 1001, 100, 5000));
  EXPECT_EQ(c.dir(Who::Server).bytes, 150u);
  EXPECT_EQ(c.dir(Who::Server).retransmits, 1u);  // it repeated 50 bytes
  EXPECT_EQ(c.dir(Who::Server).seq, kValid | 5151);
  EXPECT_EQ(c.dir(Who::Client).bytes, 0u);
}

TEST(FlowAccount, GapThenFiller) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1001, 5001, 100, 4000));
  // [1101, 1201) is not seen yet: the segment after it arrives first
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1201, 5001, 100, 5000));
  // the gap counts as sent (the high-water mark moved over it)
  EXPECT_EQ(c.dir(Who::Client).bytes, 300u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 0u);
  // the filler adds no bytes: they were counted with the gap. It carried no
  // sequence space beyond the high-water mark, which is what `retransmits`
  // counts (capture_abi.h).
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1101, 5001, 100, 6000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 300u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1301, 5001, 100, 7000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 400u);
  EXPECT_EQ(c.dir(Who::Client).packets, 2u + 4u);
}

TEST(FlowAccount, LargestBelievedGap) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1001, 5001, 100, 4000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1101 + EBPFC_MAX_SEQ_GAP, 5001, 100, 5000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 200u + EBPFC_MAX_SEQ_GAP);
}

TEST(FlowAccount, AbsurdJumpIsAResync) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1001, 5001, 100, 4000));
  const uint32_t far = 1101 + EBPFC_MAX_SEQ_GAP + 1;
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, far, 5001, 100, 5000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 200u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 0u);
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | (far + 100));
  // counting continues from the new position
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, far + 100, 5001, 50, 6000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 250u);
  // and the old position is now far behind
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1101, 5001, 100, 7000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 250u);

  // 64 MiB ahead: also a resync
  const uint32_t farther = far + 150 + (64u << 20);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, farther, 5001, 10, 8000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 260u);
}

TEST(FlowAccount, SequenceWraparound) {
  ConnSim c(kClientHigh, kServerLow);
  const uint32_t isn = 0xffffff00u;
  handshake(c, isn, 0xfffffff0u);
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | 0xffffff01u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 0xffffff01u, 0, 0x80, 4000));
  // crosses 2^32: ends at 0x81
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 0xffffff81u, 0, 0x100, 5000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 0x180u);
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | 0x81u);
  // the pre-wrap segment again: a retransmission, not 4 GiB of new data
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 0xffffff01u, 0, 0x80, 6000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 0x180u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 0x81u, 0, 0x20, 7000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 0x1a0u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);

  // the server's data starts at 0xfffffff1 and wraps within one segment
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 0xfffffff1u, 0xa1u, 1000, 8000));
  EXPECT_EQ(c.dir(Who::Server).bytes, 1000u);
  EXPECT_EQ(c.dir(Who::Server).seq, kValid | (0xfffffff1u + 1000u));
}

TEST(FlowAccount, SynAtTheTopOfSequenceSpace) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c, 0xffffffffu, kIsnS);  // the first data byte is sequence number 0
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | 0u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 0, kIsnS + 1, 10, 4000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 10u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 0u);
}

TEST(FlowAccount, MidStreamPicksTheHigherPortAsClient) {
  {
    // first seen: the server's data (5432 -> 40000)
    ConnSim c(kClientHigh, kServerLow);
    EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kPsh | kAck, 777, 888, 64, 1000));
    EXPECT_EQ(c.st.client, c.idx(Who::Client));
    EXPECT_EQ(c.st.mid_stream, 1);
    EXPECT_EQ(c.st.syn_ns, 0u);
    EXPECT_EQ(c.dir(Who::Server).bytes, 64u);
    EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 888, 841, 32, 2000));
    EXPECT_EQ(c.dir(Who::Client).bytes, 32u);
    EXPECT_EQ(c.st.established_ns, 0u);  // no handshake seen
  }
  {
    // client at the smaller address, first seen sending
    ConnSim c(kClientLow, kServerHigh);
    EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1, 1, 1, 1000));
    EXPECT_EQ(c.st.client, 0);
    EXPECT_EQ(c.st.mid_stream, 1);
  }
  {
    // client at the smaller address, first seen receiving
    ConnSim c(kClientLow, kServerHigh);
    EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 1, 1, 1, 1000));
    EXPECT_EQ(c.st.client, 0);
  }
}

TEST(FlowAccount, MidStreamEqualPortsPicksTheSender) {
  ConnSim c({{10, 0, 0, 1}, 7000}, {{10, 0, 0, 2}, 7000});
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, 1, 1, 10, 1000));
  EXPECT_EQ(c.st.client, c.idx(Who::Server));
  EXPECT_EQ(c.st.mid_stream, 1);
}

TEST(FlowAccount, SegmentsWithoutSynOrPayloadDoNotStartAFlow) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(UNTRACKED, c.send(Who::Client, kAck, 1, 1, 0, 1000));
  EXPECT_RESULT(UNTRACKED, c.send(Who::Client, kFin | kAck, 1, 1, 0, 1000));
  EXPECT_RESULT(UNTRACKED, c.send(Who::Server, kRst, 1, 0, 0, 1000));
  EXPECT_FALSE(c.tracked);
}

TEST(FlowAccount, SynAckFirstPicksTheReceiverAsClient) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 2000));
  EXPECT_EQ(c.st.client, c.idx(Who::Client));
  EXPECT_EQ(c.st.mid_stream, 0);
  EXPECT_EQ(c.st.syn_ns, 0u);
  EXPECT_EQ(c.st.synack_ns, 2000u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, kIsnC + 1, kIsnS + 1, 0, 3000));
  EXPECT_EQ(c.st.established_ns, 3000u);

  ConnSim d(kClientLow, kServerHigh);
  EXPECT_RESULT(ACCOUNTED, d.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 2000));
  EXPECT_EQ(d.st.client, 0);
}

TEST(FlowAccount, EstablishedNeedsTheSynAck) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, kIsnC + 1, kIsnS + 1, 0, 1500));
  EXPECT_EQ(c.st.established_ns, 0u);
  // the server's ACK is not the client's
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 2000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kAck, kIsnS + 1, kIsnC + 1, 0, 2500));
  EXPECT_EQ(c.st.established_ns, 0u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, kIsnC + 1, kIsnS + 1, 0, 3000));
  EXPECT_EQ(c.st.established_ns, 3000u);
  // set once
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, kIsnC + 1, kIsnS + 1, 0, 4000));
  EXPECT_EQ(c.st.established_ns, 3000u);
}

TEST(FlowAccount, RepeatedSynIsARetransmission) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1001000));
  EXPECT_EQ(c.st.syn_ns, 1000u);
  EXPECT_EQ(c.dir(Who::Client).packets, 2u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_EQ(c.dir(Who::Client).bytes, 0u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 1002000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, kIsnS, kIsnC + 1, 0, 1003000));
  EXPECT_EQ(c.st.synack_ns, 1002000u);
  EXPECT_EQ(c.dir(Who::Server).retransmits, 1u);
}

TEST(FlowAccount, SynWithDataCountsItsPayload) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 50, 1000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 50u);
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | (kIsnC + 1 + 50));
  // the same SYN again: nothing new
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 50, 2000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 50u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, kIsnC + 51, 0, 25, 3000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 75u);
}

TEST(FlowAccount, SynRepeatedWithDataIsNotARetransmission) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 0, 1000));
  // the same SYN again, now carrying data (TCP Fast Open): new sequence space
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, kIsnC, 0, 30, 2000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 30u);
  EXPECT_EQ(c.dir(Who::Client).retransmits, 0u);
  EXPECT_EQ(c.st.syn_ns, 1000u);
}

TEST(FlowAccount, LastSeenNeverMovesBack) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 1001, 5001, 1, 2500));
  EXPECT_EQ(c.st.last_ns, 3000u);
  EXPECT_EQ(c.st.first_ns, 1000u);
}

TEST(FlowAccount, SegmentsAfterCloseAreLateAndNotCounted) {
  ConnSim c(kClientHigh, kServerLow);
  full_lifecycle(c);
  const ebpfc_flow_stats closed = c.st;
  EXPECT_RESULT(LATE, c.send(Who::Client, kAck, 1102, 5302, 0, 11000));
  EXPECT_RESULT(LATE, c.send(Who::Server, kPsh | kAck, 5302, 1102, 100, 11000));
  EXPECT_RESULT(LATE, c.send(Who::Server, kFin | kAck, 5301, 1102, 0, 11000));
  EXPECT_RESULT(LATE, c.send(Who::Client, kRst, 1102, 0, 0, 11000));
  EXPECT_RESULT(LATE, c.send(Who::Server, kSyn | kAck, 9000, 1, 0, 11000));
  EXPECT_RESULT(LATE, c.send(Who::Client, kSyn | kRst, 9000, 0, 0, 11000));
  EXPECT_EQ(std::memcmp(&closed, &c.st, sizeof(closed)), 0) << "a late segment changed the flow";
}

TEST(FlowAccount, ResetAfterResetIsLate) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Client, kRst, 1001, 0, 0, 4000));
  const ebpfc_flow_stats closed = c.st;
  EXPECT_RESULT(LATE, c.send(Who::Client, kRst, 1001, 0, 0, 5000));
  EXPECT_EQ(std::memcmp(&closed, &c.st, sizeof(closed)), 0);
}

TEST(FlowAccount, NewSynReinitialisesAClosedFlow) {
  ConnSim c(kClientHigh, kServerLow);
  full_lifecycle(c);
  // RESTARTED: the filter tells user space not to remove the entry
  EXPECT_RESULT(RESTARTED, c.send(Who::Client, kSyn, 777777, 0, 0, 20000));
  EXPECT_EQ(c.st.state, EBPFC_FLOW_OPEN);
  EXPECT_EQ(c.st.first_ns, 20000u);
  EXPECT_EQ(c.st.last_ns, 20000u);
  EXPECT_EQ(c.st.syn_ns, 20000u);
  EXPECT_EQ(c.st.synack_ns, 0u);
  EXPECT_EQ(c.st.established_ns, 0u);
  EXPECT_EQ(c.st.close_reason, EBPFC_CLOSE_NONE);
  EXPECT_EQ(c.st.rst_from, EBPFC_NO_ENDPOINT);
  EXPECT_EQ(c.st.client, c.idx(Who::Client));
  EXPECT_EQ(c.dir(Who::Client).packets, 1u);
  EXPECT_EQ(c.dir(Who::Client).bytes, 0u);
  EXPECT_EQ(c.dir(Who::Client).flags, unsigned{kSyn});
  EXPECT_EQ(c.dir(Who::Client).seq, kValid | 777778u);
  EXPECT_EQ(c.dir(Who::Server).packets, 0u);
  EXPECT_EQ(c.dir(Who::Server).bytes, 0u);
  EXPECT_EQ(c.dir(Who::Server).flags, 0u);
  EXPECT_EQ(c.dir(Who::Server).seq, 0u);

  // the new connection is counted from its own sequence numbers
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, 3, 777778, 0, 21000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 777778, 4, 0, 22000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 777778, 4, 20, 23000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 20u);
  EXPECT_EQ(c.st.established_ns, 22000u);
  EXPECT_RESULT(CLOSED_NOW, c.send(Who::Server, kRst, 4, 0, 0, 24000));
}

// KNOWN ISSUE (reported, not fixed here; disabled so that `make unit` stays
// green; run with --gtest_also_run_disabled_tests). The close of a connection
// was not seen (say the capture dropped its final ACK), so its flow is still
// OPEN when the same four-tuple opens again with a new ISN. flow_account.h only
// re-initialises CLOSED flows, so the new connection is merged into the old
// record: its data, behind the old high-water mark, counts as retransmissions
// (300 bytes lost), and the server's new ISN 4000 bytes ahead counts as a
// believed gap (4000 phantom bytes); the handshake times stay the old ones.
TEST(FlowAccount, ReusedTupleWhileStillOpenStartsANewRecord) {
  ConnSim c(kClientHigh, kServerLow);
  handshake(c);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 1001, 5001, 100, 4000));
  // the old connection's FINs and final ACK were not seen
  EXPECT_RESULT(REOPENED, c.send(Who::Client, kSyn, 500, 0, 0, 5000));
  // the old record comes out whole, closed as "reopened"
  EXPECT_EQ(c.old.state, EBPFC_FLOW_CLOSED);
  EXPECT_EQ(c.old.close_reason, EBPFC_CLOSE_REOPENED);
  EXPECT_EQ(c.old.dir[c.idx(Who::Client)].bytes, 100u);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kSyn | kAck, 9000, 501, 0, 6000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kAck, 501, 9001, 0, 7000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 501, 9001, 300, 8000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Server, kPsh | kAck, 9001, 801, 50, 9000));
  EXPECT_EQ(c.dir(Who::Client).bytes, 300u);
  EXPECT_EQ(c.dir(Who::Server).bytes, 50u);
  EXPECT_EQ(c.st.syn_ns, 5000u);
  EXPECT_EQ(c.st.first_ns, 5000u);
}

TEST(FlowAccount, RetransmittedSynIsNotAReopen) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, 1000, 0, 0, 1000));
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kSyn, 1000, 0, 0, 2000));
  EXPECT_EQ(c.dir(Who::Client).retransmits, 1u);
  EXPECT_EQ(c.st.first_ns, 1000u);
}

TEST(FlowAccount, SynOnAMidStreamRecordReopens) {
  ConnSim c(kClientHigh, kServerLow);
  EXPECT_RESULT(ACCOUNTED, c.send(Who::Client, kPsh | kAck, 7000, 1, 10, 1000));
  ASSERT_TRUE(c.st.mid_stream);
  EXPECT_RESULT(REOPENED, c.send(Who::Client, kSyn, 100, 0, 0, 2000));
  EXPECT_FALSE(c.st.mid_stream);
  EXPECT_EQ(c.old.dir[c.idx(Who::Client)].bytes, 10u);
}

TEST(FlowAccount, NewSynFromTheOtherSideReopensTheOtherWay) {
  ConnSim c(kClientHigh, kServerLow);
  full_lifecycle(c);
  EXPECT_RESULT(RESTARTED, c.send(Who::Server, kSyn, 1, 0, 0, 20000));
  EXPECT_EQ(c.st.client, c.idx(Who::Server));
}

TEST(FlowAccount, StartsFlow) {
  ConnSim c(kClientHigh, kServerLow);
  const struct {
    uint8_t flags;
    size_t len;
    bool starts;
  } cases[] = {
      {kSyn, 0, true},         {kSyn | kAck, 0, true},
      {kAck, 1, true},         {kPsh | kAck, 500, true},
      {kFin | kAck, 3, true},  {kAck, 0, false},
      {kFin | kAck, 0, false}, {kRst, 0, false},
      {kRst | kAck, 0, false}, {0, 0, false},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(std::to_string(tc.flags) + "/" + std::to_string(tc.len));
    const ebpfc_packet p = c.packet(Who::Client, tc.flags, 1, 0, tc.len);
    EXPECT_EQ(ebpfc_starts_flow(&p) != 0, tc.starts);
  }
}

}  // namespace
}  // namespace ebpfc_test
