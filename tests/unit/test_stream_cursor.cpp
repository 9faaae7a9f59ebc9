// StreamCursor: what each segment of one direction brings that is new.
#include "core/stream_cursor.h"

#include <gtest/gtest.h>

#include <cstring>

using ebpfc::SegmentNews;
using ebpfc::StreamCursor;

namespace {

// A segment at `seq` of `wire` bytes whose first `captured` were captured.
ebpfc_payload_event segment(uint32_t seq, uint32_t wire, uint32_t captured) {
  ebpfc_payload_event h{};
  h.seq = seq;
  h.segment_len = wire;
  h.data_len = captured;
  for (uint32_t i = 0; i < captured && i < EBPFC_PAYLOAD_MAX; i++)
    h.data[i] = static_cast<uint8_t>('a' + i % 26);
  return h;
}

}  // namespace

TEST(StreamCursor, InOrderSegmentsAreNewWithoutHoles) {
  StreamCursor c;
  auto h = segment(1000, 10, 10);
  SegmentNews n = c.take(h);
  EXPECT_TRUE(n.first);
  EXPECT_EQ(n.len, 10u);
  EXPECT_EQ(n.wire_len, 10u);
  EXPECT_EQ(n.hole, 0u);
  h = segment(1010, 5, 5);
  n = c.take(h);
  EXPECT_FALSE(n.first);
  EXPECT_EQ(n.seq, 1010u);
  EXPECT_EQ(n.len, 5u);
  EXPECT_EQ(n.hole, 0u);
}

TEST(StreamCursor, ARetransmissionIsNothingNew) {
  StreamCursor c;
  auto h = segment(1000, 10, 10);
  c.take(h);
  SegmentNews n = c.take(h);
  EXPECT_TRUE(n.repeat);
  EXPECT_EQ(n.len, 0u);
  // and the stream goes on where it was
  auto next = segment(1010, 4, 4);
  n = c.take(next);
  EXPECT_FALSE(n.repeat);
  EXPECT_EQ(n.hole, 0u);
  EXPECT_EQ(n.len, 4u);
}

TEST(StreamCursor, AnOverlapKeepsOnlyTheNewBytes) {
  StreamCursor c;
  auto a = segment(1000, 10, 10);
  c.take(a);
  auto b = segment(1006, 8, 8);  // 4 old bytes, 4 new
  SegmentNews n = c.take(b);
  EXPECT_EQ(n.seq, 1010u);
  EXPECT_EQ(n.len, 4u);
  EXPECT_EQ(n.data, b.data + 4);
  EXPECT_EQ(n.wire_len, 4u);
  EXPECT_EQ(n.hole, 0u);
}

TEST(StreamCursor, AHoleIsMeasured) {
  StreamCursor c;
  auto a = segment(1000, 10, 10);
  c.take(a);
  auto b = segment(1030, 5, 5);
  SegmentNews n = c.take(b);
  EXPECT_EQ(n.hole, 20u);
  EXPECT_FALSE(n.beyond_head);
  EXPECT_EQ(n.len, 5u);
}

TEST(StreamCursor, NewBytesBeyondTheCapturedHeadAreAHole) {
  StreamCursor c;
  auto a = segment(1000, 100, 100);
  c.take(a);
  // a 3000-byte retransmission overlapping 200 bytes whose head carries
  // only the first 100: the 2800 new bytes were not captured
  auto b = segment(900, 3000, 100);
  SegmentNews n = c.take(b);
  EXPECT_TRUE(n.beyond_head);
  EXPECT_EQ(n.hole, 2800u);
  EXPECT_EQ(n.len, 0u);
  // the next segment follows without a hole
  auto next = segment(3900, 10, 10);
  n = c.take(next);
  EXPECT_EQ(n.hole, 0u);
  EXPECT_EQ(n.len, 10u);
}

TEST(StreamCursor, TheHeadsCutOffTailIsCountedOnTheWire) {
  StreamCursor c;
  auto a = segment(1000, 5000, 200);
  SegmentNews n = c.take(a);
  EXPECT_EQ(n.len, 200u);
  EXPECT_EQ(n.wire_len, 5000u);
  auto next = segment(6000, 10, 10);
  EXPECT_EQ(c.take(next).hole, 0u);
}

TEST(StreamCursor, SequenceNumbersWrap) {
  StreamCursor c;
  auto a = segment(0xfffffff0u, 32, 32);
  c.take(a);
  auto b = segment(0x10u, 4, 4);
  SegmentNews n = c.take(b);
  EXPECT_EQ(n.hole, 0u);
  EXPECT_EQ(n.len, 4u);
  c.reset();
  EXPECT_TRUE(c.take(b).first);
}
