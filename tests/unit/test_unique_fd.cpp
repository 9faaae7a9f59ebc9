// UniqueFd: a descriptor is closed exactly once, by whoever holds it last.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "core/unique_fd.h"

using ebpfc::UniqueFd;

namespace {

bool is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

// A pair of fresh descriptors (the ends of a pipe).
std::pair<int, int> two_fds() {
  int p[2];
  EXPECT_EQ(pipe(p), 0);
  return {p[0], p[1]};
}

}  // namespace

TEST(UniqueFd, ClosesWhenItGoes) {
  auto [a, b] = two_fds();
  {
    UniqueFd fa(a);
    UniqueFd fb(b);
    EXPECT_TRUE(fa.valid());
    EXPECT_EQ(fa.get(), a);
  }
  EXPECT_FALSE(is_open(a));
  EXPECT_FALSE(is_open(b));
}

TEST(UniqueFd, AMoveHandsOverWithoutClosing) {
  auto [a, b] = two_fds();
  UniqueFd fa(a);
  UniqueFd moved(std::move(fa));
  EXPECT_FALSE(fa.valid());  // NOLINT(bugprone-use-after-move): what a move leaves
  EXPECT_TRUE(is_open(a));
  UniqueFd fb(b);
  fb = std::move(moved);  // b is closed, a now held by fb
  EXPECT_FALSE(is_open(b));
  EXPECT_TRUE(is_open(a));
  EXPECT_EQ(fb.get(), a);
  fb.reset();
  EXPECT_FALSE(is_open(a));
}

TEST(UniqueFd, ReleaseGivesUpWithoutClosing) {
  auto [a, b] = two_fds();
  int kept;
  {
    UniqueFd fa(a);
    kept = fa.release();
  }
  EXPECT_EQ(kept, a);
  EXPECT_TRUE(is_open(a));
  close(a);
  close(b);
}

TEST(UniqueFd, AnExceptionClosesWhatWasOpened) {
  auto [a, b] = two_fds();
  std::vector<UniqueFd> held;
  try {
    held.emplace_back(a);
    held.emplace_back(b);
    throw std::runtime_error("setup failed");
  } catch (const std::runtime_error&) {
    held.clear();
  }
  EXPECT_FALSE(is_open(a));
  EXPECT_FALSE(is_open(b));
}
