// Tests of extension/core/edge_rollup.*: the per-minute service map rollup
// of a batch of spans.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/edge_rollup.h"

namespace {

using ebpfc::kLatencyBuckets;
using ebpfc::latency_bucket;
using ebpfc::minute_of;

struct Who {
  std::string name;
};
using Rollup = ebpfc::EdgeRollup<Who>;

const uint8_t kAddrA[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
const uint8_t kAddrB[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};

constexpr int64_t kT0 = 1700000000000000ll;  // 2023-11-14T22:13:20Z, 20 s into a minute

TEST(LatencyBucket, QuarterOctaveBoundaries) {
  // bucket b holds [2^((b-1)/4), 2^(b/4)) microseconds
  EXPECT_EQ(latency_bucket(-5), 1);
  EXPECT_EQ(latency_bucket(0), 1);
  EXPECT_EQ(latency_bucket(1), 1);
  for (int b = 2; b < kLatencyBuckets; b++) {
    double lo = std::pow(2.0, (b - 1) / 4.0);
    double hi = std::pow(2.0, b / 4.0);
    // whole microseconds well inside the bucket (boundaries themselves are
    // irrational except at whole octaves)
    int64_t inside = static_cast<int64_t>(std::ceil(lo * 1.0001));
    if (static_cast<double>(inside) < hi * 0.9999) {
      EXPECT_EQ(latency_bucket(inside), b) << inside << " us";
    }
  }
  // whole octaves start a bucket: 2^k us is in bucket 4k + 1
  for (int k = 1; k < 27; k++) EXPECT_EQ(latency_bucket(int64_t{1} << k), 4 * k + 1) << k;
  EXPECT_EQ(latency_bucket(int64_t{1} << 40), kLatencyBuckets);  // open-ended last bucket
  EXPECT_EQ(latency_bucket(INT64_MAX), kLatencyBuckets);
}

TEST(LatencyBucket, IsMonotonic) {
  int prev = latency_bucket(0);
  for (int64_t us = 1; us < 5000000; us += 1 + us / 97) {
    int b = latency_bucket(us);
    EXPECT_GE(b, prev) << us;
    prev = b;
  }
}

TEST(MinuteOf, FloorsToTheMinute) {
  EXPECT_EQ(minute_of(kT0), kT0 - 20 * 1000000ll);
  EXPECT_EQ(minute_of(kT0 - 20 * 1000000ll), kT0 - 20 * 1000000ll);
  EXPECT_EQ(minute_of(kT0 + 39999999), kT0 - 20 * 1000000ll);
  EXPECT_EQ(minute_of(kT0 + 40000000), kT0 + 40000000);
  EXPECT_EQ(minute_of(-1), -60 * 1000000ll);  // before 1970: still the floor
}

TEST(EdgeRollup, FoldsSpansOfOneEdgeMinuteAndBucket) {
  Who a{"a"}, b{"b"};
  Rollup r;
  auto src = Rollup::end(&a, 4, kAddrA);
  auto dst = Rollup::end(&b, 4, kAddrB);
  r.add_connection(kT0, src, dst, false, 100, 1000);
  r.add_connection(kT0 + 1000000, src, dst, true, 5, 7);
  r.add_request(kT0, kT0 + 1000, src, dst, false);  // 1000 us: bucket 40
  r.add_request(kT0 + 5, kT0 + 1005, src, dst, true);
  r.add_request(kT0, kT0 + 2000, src, dst, false);  // another bucket
  ASSERT_EQ(r.size(), 3u);
  const auto& e = r.entries();
  EXPECT_EQ(e[0].key.bucket, 0);
  EXPECT_EQ(e[0].key.minute_unix_us, minute_of(kT0));
  EXPECT_EQ(e[0].totals.spans, 2u);
  EXPECT_EQ(e[0].totals.errors, 1u);
  EXPECT_EQ(e[0].totals.bytes_sent, 105u);
  EXPECT_EQ(e[0].totals.bytes_received, 1007u);
  EXPECT_EQ(e[1].key.bucket, latency_bucket(1000));
  EXPECT_EQ(e[1].totals.spans, 2u);
  EXPECT_EQ(e[1].totals.errors, 1u);
  EXPECT_EQ(e[1].totals.bytes_sent, 0u);
  EXPECT_EQ(e[2].key.bucket, latency_bucket(2000));
  EXPECT_EQ(e[2].totals.spans, 1u);
  EXPECT_EQ(e[0].key.src.who, &a);
  EXPECT_EQ(e[0].key.dst.who, &b);
}

TEST(EdgeRollup, SeparatesMinutesDirectionsAndEnds) {
  Who a{"a"}, b{"b"};
  Rollup r;
  auto wa = Rollup::end(&a, 4, kAddrA);
  auto wb = Rollup::end(&b, 4, kAddrB);
  auto bare_a = Rollup::end(nullptr, 4, kAddrA);
  auto bare_b = Rollup::end(nullptr, 4, kAddrB);
  auto bare_a6 = Rollup::end(nullptr, 6, kAddrA);
  r.add_connection(kT0, wa, wb, false, 1, 1);
  r.add_connection(kT0 + 40000000, wa, wb, false, 1, 1);  // next minute
  r.add_connection(kT0, wb, wa, false, 1, 1);             // other direction
  r.add_connection(kT0, bare_a, wb, false, 1, 1);         // no identity: by address
  r.add_connection(kT0, bare_b, wb, false, 1, 1);
  r.add_connection(kT0, bare_a6, wb, false, 1, 1);  // same bytes, other family
  r.add_connection(kT0 + 1, bare_a, wb, false, 1, 1);
  EXPECT_EQ(r.size(), 6u);
  EXPECT_EQ(r.entries()[3].totals.spans, 2u);
}

TEST(EdgeRollup, IdentityMakesTheAddressIrrelevant) {
  // two pods' addresses under one identity are one end
  Who a{"a"}, b{"b"};
  Rollup r;
  r.add_connection(kT0, Rollup::end(&a, 4, kAddrA), Rollup::end(&b, 4, kAddrB), false, 1, 2);
  r.add_connection(kT0, Rollup::end(&a, 4, kAddrB), Rollup::end(&b, 6, kAddrA), false, 3, 4);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r.entries()[0].totals.bytes_sent, 4u);
  EXPECT_EQ(r.entries()[0].totals.bytes_received, 6u);
}

TEST(EdgeRollup, ClearForgetsEverything) {
  Who a{"a"};
  Rollup r;
  auto e = Rollup::end(&a, 4, kAddrA);
  for (int i = 0; i < 1000; i++)
    r.add_request(kT0 + i * 1000000ll, kT0 + i * 1000000ll + i, e, e, false);
  EXPECT_GT(r.size(), 16u);
  r.clear();
  EXPECT_EQ(r.size(), 0u);
  r.add_request(kT0, kT0 + 1, e, e, true);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r.entries()[0].totals.spans, 1u);
  EXPECT_EQ(r.entries()[0].totals.errors, 1u);
}

}  // namespace
