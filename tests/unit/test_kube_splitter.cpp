// Tests of extension/kube/line_splitter.*: newline-delimited events out of
// arbitrary chunks.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kube/line_splitter.h"

namespace {

using ebpfc::kube::LineSplitter;

std::vector<std::string> feed_in_pieces(LineSplitter& s, const std::string& data,
                                        const std::vector<size_t>& cuts) {
  std::vector<std::string> lines;
  size_t pos = 0, k = 0;
  while (pos < data.size()) {
    size_t n = cuts.empty() ? data.size() : cuts[k++ % cuts.size()];
    if (n == 0) n = 1;
    if (n > data.size() - pos) n = data.size() - pos;
    s.feed(data.data() + pos, n, [&](std::string_view l) { lines.emplace_back(l); });
    pos += n;
  }
  return lines;
}

TEST(KubeSplitter, ManyEventsInOneChunk) {
  LineSplitter s;
  const auto lines = feed_in_pieces(s, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n", {});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "{\"a\":1}");
  EXPECT_EQ(lines[2], "{\"c\":3}");
  EXPECT_EQ(s.buffered(), 0u);
  EXPECT_EQ(s.counters().lines, 3u);
}

TEST(KubeSplitter, OneEventAcrossChunks) {
  LineSplitter s;
  const std::string ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n";
  for (size_t cut = 1; cut < ev.size(); cut++) {
    LineSplitter t;
    const auto lines = feed_in_pieces(t, ev + ev, {cut});
    ASSERT_EQ(lines.size(), 2u) << cut;
    EXPECT_EQ(lines[0] + "\n", ev);
    EXPECT_EQ(lines[1] + "\n", ev);
  }
}

TEST(KubeSplitter, EveryWayOfCuttingGivesTheSameLines) {
  std::mt19937 rng(7);
  std::string data;
  std::vector<std::string> want;
  for (int i = 0; i < 200; i++) {
    std::string line(rng() % 300 + 1, 'x');
    for (char& c : line) c = static_cast<char>('a' + rng() % 26);
    want.push_back(line);
    data += line + (i % 3 == 0 ? "\r\n" : "\n");
  }
  for (int trial = 0; trial < 50; trial++) {
    std::vector<size_t> cuts;
    for (int i = 0; i < 10; i++) cuts.push_back(rng() % 700 + 1);
    LineSplitter s;
    EXPECT_EQ(feed_in_pieces(s, data, cuts), want);
    EXPECT_TRUE(s.finish().empty());
  }
}

TEST(KubeSplitter, CarriageReturnsAndEmptyLinesAreDropped) {
  LineSplitter s;
  const auto lines = feed_in_pieces(s, "\n\r\none\r\n\ntwo\n", {2});
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "one");
  EXPECT_EQ(lines[1], "two");
}

TEST(KubeSplitter, OversizeLineIsSkippedAndCounted) {
  for (size_t cut : {size_t(1), size_t(7), size_t(64), size_t(1000)}) {
    LineSplitter s(32);
    const std::string big(100, 'y');
    const auto lines =
        feed_in_pieces(s, "first\n" + big + "\nafter\n" + big + big + "\nlast\n", {cut});
    ASSERT_EQ(lines.size(), 3u) << cut;
    EXPECT_EQ(lines[0], "first");
    EXPECT_EQ(lines[1], "after");
    EXPECT_EQ(lines[2], "last");
    EXPECT_EQ(s.counters().oversize_lines, 2u) << cut;
    EXPECT_LE(s.buffered(), 33u);
  }
}

TEST(KubeSplitter, LineOfExactlyTheBoundIsKept) {
  for (size_t cut : {size_t(1), size_t(5), size_t(100)}) {
    LineSplitter s(16);
    const auto lines = feed_in_pieces(
        s,
        std::string(16, 'a') + "\n" + std::string(16, 'b') + "\r\n" + std::string(17, 'c') + "\n",
        {cut});
    ASSERT_EQ(lines.size(), 2u) << cut;
    EXPECT_EQ(lines[0], std::string(16, 'a'));
    EXPECT_EQ(lines[1], std::string(16, 'b'));
    EXPECT_EQ(s.counters().oversize_lines, 1u);
  }
}

TEST(KubeSplitter, FinishReturnsAnUnterminatedTail) {
  LineSplitter s;
  auto lines = feed_in_pieces(s, "a\nb\n{\"trunc", {3});
  EXPECT_EQ(lines.size(), 2u);
  EXPECT_EQ(s.finish(), "{\"trunc");
  EXPECT_EQ(s.buffered(), 0u);
  // a new stream starts clean
  lines = feed_in_pieces(s, "c\n", {});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "c");
}

TEST(KubeSplitter, ResetForgetsAPartialLine) {
  LineSplitter s;
  feed_in_pieces(s, "partial", {});
  s.reset();
  const auto lines = feed_in_pieces(s, "whole\n", {});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "whole");
}

TEST(KubeSplitter, SkippingEndsAtTheStreamEnd) {
  LineSplitter s(8);
  feed_in_pieces(s, std::string(50, 'z'), {10});
  EXPECT_TRUE(s.skipping());
  EXPECT_TRUE(s.finish().empty());
  EXPECT_FALSE(s.skipping());
  const auto lines = feed_in_pieces(s, "ok\n", {});
  ASSERT_EQ(lines.size(), 1u);
}

}  // namespace
