// Tests of extension/core/span_ids.*: W3C trace and span ids.
#include <gtest/gtest.h>

#include <bitset>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <unordered_set>

#include "core/span_ids.h"

namespace {

using ebpfc::SpanIdGenerator;

// 2026-11-26T19:16:03.123456Z
constexpr int64_t kSomeTimeUs = 1795720563123456;

std::string hex(const uint8_t* bytes, size_t n) {
  // exactly 2n + 1 bytes on the heap: an overrun is an AddressSanitizer report
  std::unique_ptr<char[]> out(new char[2 * n + 1]);
  ebpfc::to_hex(bytes, n, out.get());
  return std::string(out.get());
}

uint64_t as_u64(const uint8_t b[8]) {
  uint64_t v;
  std::memcpy(&v, b, 8);
  return v;
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

TEST(SpanIds, HexFormatting) {
  const uint8_t bytes[] = {0x00, 0x01, 0x09, 0x0a, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
  EXPECT_EQ(hex(bytes, sizeof(bytes)), "0001090a0f107f80abcdefff");
  EXPECT_EQ(hex(bytes, 1), "00");
  EXPECT_EQ(hex(bytes + 8, 1), "ab");
  EXPECT_EQ(hex(bytes, 0), "");

  uint8_t id[16];
  for (int i = 0; i < 16; i++) id[i] = static_cast<uint8_t>(0x10 * (i % 16) + (15 - i));
  EXPECT_EQ(hex(id, 16), "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
}

TEST(SpanIds, HexOfGeneratedIdsIsLowercaseOfTheRightLength) {
  SpanIdGenerator g(99);
  for (int i = 0; i < 100; i++) {
    uint8_t t[16];
    uint8_t s[8];
    g.trace_id(t, kSomeTimeUs);
    g.span_id(s);
    const std::string th = hex(t, 16);
    const std::string sh = hex(s, 8);
    ASSERT_EQ(th.size(), 32u);
    ASSERT_EQ(sh.size(), 16u);
    EXPECT_EQ(th.find_first_not_of("0123456789abcdef"), std::string::npos) << th;
    EXPECT_EQ(sh.find_first_not_of("0123456789abcdef"), std::string::npos) << sh;
    EXPECT_NE(th, std::string(32, '0'));
    EXPECT_NE(sh, std::string(16, '0'));
  }
}

TEST(SpanIds, DeterministicWithASeed) {
  SpanIdGenerator a(12345);
  SpanIdGenerator b(12345);
  SpanIdGenerator c(12346);
  int differ_from_c = 0;
  for (int i = 0; i < 1000; i++) {
    uint8_t ta[16], tb[16], tc[16], sa[8], sb[8], sc[8];
    a.trace_id(ta, kSomeTimeUs);
    b.trace_id(tb, kSomeTimeUs);
    c.trace_id(tc, kSomeTimeUs);
    a.span_id(sa);
    b.span_id(sb);
    c.span_id(sc);
    ASSERT_EQ(std::memcmp(ta, tb, 16), 0);
    ASSERT_EQ(std::memcmp(sa, sb, 8), 0);
    differ_from_c += std::memcmp(ta, tc, 16) != 0;
  }
  EXPECT_EQ(differ_from_c, 1000);
}

TEST(SpanIds, SeedZeroWorks) {
  SpanIdGenerator g(0);
  uint8_t s[8];
  g.span_id(s);
  EXPECT_FALSE(all_zero(s, 8));
}

TEST(SpanIds, NeverAllZeroAndDistinct) {
  SpanIdGenerator g(2024);
  std::unordered_set<uint64_t> spans;
  std::set<std::string> traces;
  for (int i = 0; i < 100000; i++) {
    uint8_t s[8];
    g.span_id(s);
    ASSERT_FALSE(all_zero(s, 8));
    spans.insert(as_u64(s));
    if (i % 10 == 0) {
      uint8_t t[16];
      g.trace_id(t, kSomeTimeUs);
      ASSERT_FALSE(all_zero(t, 16));
      traces.insert(std::string(reinterpret_cast<char*>(t), 16));
    }
  }
  EXPECT_EQ(spans.size(), 100000u);
  EXPECT_EQ(traces.size(), 10000u);
}

TEST(SpanIds, BitsAreBalanced) {
  // every bit position of a span id is set about half the time
  SpanIdGenerator g(777);
  constexpr int kDraws = 20000;
  int ones[64] = {};
  for (int i = 0; i < kDraws; i++) {
    uint8_t s[8];
    g.span_id(s);
    const std::bitset<64> bits(as_u64(s));
    for (int b = 0; b < 64; b++) ones[b] += bits[b];
  }
  for (int b = 0; b < 64; b++) {
    // mean 10000, sd ~71: 9500..10500 is seven standard deviations
    EXPECT_GT(ones[b], 9500) << "bit " << b;
    EXPECT_LT(ones[b], 10500) << "bit " << b;
  }
}

TEST(SpanIds, TheRandomTenBytesOfATraceIdAreBalanced) {
  // at one and the same millisecond, every bit after the time is set about
  // half the time
  SpanIdGenerator g(778);
  constexpr int kDraws = 20000;
  int ones[80] = {};
  for (int i = 0; i < kDraws; i++) {
    uint8_t t[16];
    g.trace_id(t, kSomeTimeUs);
    for (int b = 0; b < 80; b++) ones[b] += (t[6 + b / 8] >> (b % 8)) & 1;
  }
  for (int b = 0; b < 80; b++) {
    EXPECT_GT(ones[b], 9500) << "bit " << b;
    EXPECT_LT(ones[b], 10500) << "bit " << b;
  }
}

TEST(SpanIds, ATraceIdStartsWithItsStartInUnixMilliseconds) {
  SpanIdGenerator g(31);
  uint8_t t[16];
  g.trace_id(t, kSomeTimeUs);
  // 1795720563123 ms = 0x01a2194949b3
  EXPECT_EQ(hex(t, 16).substr(0, 12), "01a2194949b3") << hex(t, 16);
  g.trace_id(t, 999);  // under a millisecond after the epoch
  EXPECT_EQ(hex(t, 16).substr(0, 12), "000000000000");
  EXPECT_FALSE(all_zero(t, 16));
  g.trace_id(t, -5000000);  // a clock before 1970 counts as the epoch
  EXPECT_EQ(hex(t, 16).substr(0, 12), "000000000000");
  EXPECT_FALSE(all_zero(t, 16));
  g.trace_id(t, INT64_MAX);  // the year 292277: the 48 bits wrap, nothing breaks
  EXPECT_EQ(hex(t, 16).size(), 32u);
}

TEST(SpanIds, TraceIdsSortByTimeAndAreDistinctWithinAMillisecond) {
  // the b-tree's right edge: a later millisecond's id sorts after every
  // earlier one's, as text too (the column's collation is "C")
  SpanIdGenerator g(4242);
  std::string previous;
  std::set<std::string> same_ms;
  for (int i = 0; i < 2000; i++) {
    uint8_t t[16];
    g.trace_id(t, kSomeTimeUs + int64_t{1000} * i);
    const std::string h = hex(t, 16);
    if (!previous.empty()) {
      EXPECT_LT(previous, h) << i;
    }
    previous = h;
    g.trace_id(t, kSomeTimeUs);
    same_ms.insert(hex(t, 16));
  }
  EXPECT_EQ(same_ms.size(), 2000u);
}

TEST(SpanIds, UnseededGeneratorsDiffer) {
  SpanIdGenerator a;
  SpanIdGenerator b;
  uint8_t ta[16], tb[16];
  a.trace_id(ta, kSomeTimeUs);
  b.trace_id(tb, kSomeTimeUs);
  EXPECT_NE(std::memcmp(ta, tb, 16), 0);
  EXPECT_FALSE(all_zero(ta, 16));
}

}  // namespace
