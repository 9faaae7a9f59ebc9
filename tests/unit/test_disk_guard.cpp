// The disk guard's setting (ebpf_capture.min_free_disk) and when writing
// pauses and resumes.
#include "core/disk_guard.h"

#include <gtest/gtest.h>

namespace ebpfc {
namespace {

constexpr uint64_t MiB = 1ull << 20;
constexpr uint64_t GiB = 1ull << 30;

MinFreeDisk parse_ok(const char* text) {
  MinFreeDisk rule;
  std::string error;
  EXPECT_TRUE(parse_min_free_disk(text, &rule, &error)) << text << ": " << error;
  return rule;
}

std::string parse_error(const char* text) {
  MinFreeDisk rule;
  std::string error;
  EXPECT_FALSE(parse_min_free_disk(text, &rule, &error)) << text;
  return error;
}

TEST(MinFreeDisk, SizesInPostgresUnits) {
  EXPECT_EQ(parse_ok("2GB").bytes, 2 * GiB);
  EXPECT_EQ(parse_ok("512MB").bytes, 512 * MiB);
  EXPECT_EQ(parse_ok("512 mb").bytes, 512 * MiB);
  EXPECT_EQ(parse_ok("64kB").bytes, 64 * 1024u);
  EXPECT_EQ(parse_ok("1TB").bytes, 1024 * GiB);
  EXPECT_EQ(parse_ok("1.5GB").bytes, 3 * GiB / 2);
  EXPECT_EQ(parse_ok("4096").bytes, 4096u);  // plain bytes, as pg_size_bytes
  EXPECT_EQ(parse_ok("2GB").percent_x100, 0u);
}

TEST(MinFreeDisk, SharesAndBoth) {
  EXPECT_EQ(parse_ok("5%").percent_x100, 500u);
  EXPECT_EQ(parse_ok("0.5%").percent_x100, 50u);
  const MinFreeDisk both = parse_ok(" 5% , 2GB ");
  EXPECT_EQ(both.percent_x100, 500u);
  EXPECT_EQ(both.bytes, 2 * GiB);
  const MinFreeDisk reversed = parse_ok("2GB,5%");
  EXPECT_EQ(reversed.percent_x100, 500u);
  EXPECT_EQ(reversed.bytes, 2 * GiB);
}

TEST(MinFreeDisk, BadSettingsSayWhy) {
  EXPECT_NE(parse_error("").find("0 to turn"), std::string::npos);
  EXPECT_NE(parse_error("2XB").find("neither a size"), std::string::npos);
  EXPECT_NE(parse_error("101%").find("percentage"), std::string::npos);
  EXPECT_NE(parse_error("5%,6%").find("twice"), std::string::npos);
  EXPECT_NE(parse_error("1GB,2GB").find("twice"), std::string::npos);
  EXPECT_NE(parse_error("5%,").find("empty"), std::string::npos);
  parse_error("-1GB");
  parse_error("GB");
  parse_error("99999999999999999999999GB");
}

TEST(MinFreeDisk, TheSmallerOfShareAndSize) {
  const MinFreeDisk both = parse_ok("5%,2GB");
  EXPECT_EQ(min_free_bytes(both, 2048 * GiB), 2 * GiB);  // 5 % would be 102 GB
  EXPECT_EQ(min_free_bytes(both, 20 * GiB), 1 * GiB);    // 5 % of 20 GB
  EXPECT_EQ(min_free_bytes(parse_ok("5%"), 100 * GiB), 5 * GiB);
  EXPECT_EQ(min_free_bytes(parse_ok("2GB"), 1 * GiB), 2 * GiB);
  EXPECT_EQ(min_free_bytes(parse_ok("0"), 100 * GiB), 0u);  // off
}

TEST(DiskGuard, DropsFirstThenPausesThenResumesWithAMargin) {
  DiskGuard g;
  const uint64_t threshold = 1 * GiB;
  EXPECT_FALSE(g.update(2 * GiB, threshold, true));
  // Low, but partitions can still go: not yet.
  EXPECT_FALSE(g.update(threshold - 1, threshold, true));
  // Low with nothing left to drop: pause.
  EXPECT_TRUE(g.update(threshold - 1, threshold, false));
  // Just above the threshold is not enough to resume.
  EXPECT_TRUE(g.update(threshold + 1, threshold, false));
  EXPECT_TRUE(g.update(DiskGuard::resume_at(threshold) - 1, threshold, true));
  EXPECT_FALSE(g.update(DiskGuard::resume_at(threshold), threshold, true));
  EXPECT_EQ(DiskGuard::resume_at(threshold), threshold + threshold / 10);
  EXPECT_EQ(DiskGuard::resume_at(64 * MiB), 80 * MiB);  // at least 16 MiB
}

TEST(DiskGuard, OffNeverPauses) {
  DiskGuard g;
  EXPECT_FALSE(g.update(0, 0, false));
  EXPECT_TRUE(g.update(0, 1 * GiB, false));
  EXPECT_FALSE(g.update(0, 0, false));  // turned off while paused
}

}  // namespace
}  // namespace ebpfc
