// RestartBackoff: the wait before a background worker is started again.
#include "core/restart_backoff.h"

#include <gtest/gtest.h>

using ebpfc::RestartBackoff;

TEST(RestartBackoff, DoublesFromOneSecondToAMinute) {
  long ms = 0;
  const long expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (long e : expected) {
    ms = RestartBackoff::after_failure(ms);
    EXPECT_EQ(ms, e);
  }
}

TEST(RestartBackoff, AHealthyRunStartsOver) {
  EXPECT_EQ(RestartBackoff::after_exit(60000, true), RestartBackoff::kMinMs);
  EXPECT_EQ(RestartBackoff::after_exit(60000, false), 60000);
  EXPECT_EQ(RestartBackoff::after_exit(0, false), 1000);
  EXPECT_EQ(RestartBackoff::after_exit(4000, false), 8000);
}

TEST(RestartBackoff, NoSlotWaitsAQuarterOfTheLongest) {
  EXPECT_EQ(RestartBackoff::kNoSlotMs, 15000);
}
