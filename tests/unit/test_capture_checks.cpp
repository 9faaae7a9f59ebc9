// What capture_start accepts (capture/capture_checks.h): an interface's
// name, a shell-style pattern of pod interfaces, or "auto".
#include "capture/capture_checks.h"

#include <fnmatch.h>
#include <gtest/gtest.h>

#include <string>

using ebpfc::capture_target_problem;
using ebpfc::interface_pattern_problem;
using ebpfc::is_interface_pattern;

TEST(CaptureChecks, NamesPatternsAndAuto) {
  for (const char* ok : {"cni0", "eth0.100", "auto", "cali*", "lxc*", "veth?", "eni[0-9a-f]*",
                         "[!l]*", "[^c]xc*", "*", "*-ab_c.*", "a[b]c"})
    EXPECT_EQ(capture_target_problem(ok), "") << ok;
  EXPECT_FALSE(is_interface_pattern("cni0"));
  EXPECT_FALSE(is_interface_pattern("auto"));
  EXPECT_TRUE(is_interface_pattern("cali*"));
  EXPECT_TRUE(is_interface_pattern("eni[0-9]"));
  EXPECT_TRUE(is_interface_pattern("veth?"));
}

TEST(CaptureChecks, BadPatternsSayWhy) {
  auto expect_problem = [](const std::string& p, const std::string& says) {
    const std::string problem = capture_target_problem(p);
    EXPECT_NE(problem.find(says), std::string::npos) << p << ": " << problem;
  };
  expect_problem("cali*xxxxxxxxxxx", "is too long (at most 15 bytes)");
  expect_problem("cali[0-9", "'[' without ']'");
  expect_problem("cali[]*", "empty '[]'");
  expect_problem("cali[!]*", "empty '[]'");
  expect_problem("cali]*", "']' without '['");
  expect_problem("cali[*]", "'*' inside '[...]'");
  expect_problem("ca li*", "only letters, digits");
  expect_problem("cali/*", "only letters, digits");
  expect_problem("cali\\*", "only letters, digits");
  // names are checked as before
  EXPECT_NE(capture_target_problem("").find("it is empty"), std::string::npos);
  EXPECT_NE(capture_target_problem("eth0; rm").find("invalid interface name"), std::string::npos);
}

TEST(CaptureChecks, AValidPatternMeansWhatFnmatchSaysItDoes) {
  struct Case {
    const char* pattern;
    const char* name;
    bool match;
  } cases[] = {{"cali*", "cali0123456789a", true},
               {"cali*", "vxlan.calico", false},
               {"lxc*", "lxc_health", true},
               {"lxc[0-9a-f]*", "lxc_health", false},
               {"eni?", "eni1", true},
               {"eni?", "eni12", false},
               {"[!c]*", "cali1", false},
               {"[^c]*", "lxc1", true},
               {"veth*", "veth1", true},
               {"*", "lo", true}};
  for (const Case& c : cases) {
    ASSERT_EQ(interface_pattern_problem(c.pattern), "") << c.pattern;
    EXPECT_EQ(fnmatch(c.pattern, c.name, 0) == 0, c.match) << c.pattern << " " << c.name;
  }
}
