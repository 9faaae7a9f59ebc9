// Tests of extension/kube/kube_config.*, token_file.*, backoff.*.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "kube/backoff.h"
#include "kube/kube_config.h"
#include "kube/token_file.h"

namespace {

using namespace ebpfc::kube;

EnvLookup env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(KubeConfig, NothingConfiguredIsDisabledWithAReason) {
  const KubeConfig c = resolve_kube_config(KubeSettings{}, env({}));
  EXPECT_FALSE(c.enabled);
  EXPECT_NE(c.disabled_reason.find("kube_api_url"), std::string::npos);
}

TEST(KubeConfig, InCluster) {
  KubeConfig c = resolve_kube_config(
      KubeSettings{},
      env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}), "/sa");
  ASSERT_TRUE(c.enabled);
  EXPECT_EQ(c.api_url, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, "/sa/token");
  EXPECT_EQ(c.ca_file, "/sa/ca.crt");
  EXPECT_STREQ(c.source, "in-cluster");
  c = resolve_kube_config(KubeSettings{}, env({{"KUBERNETES_SERVICE_HOST", "fd00:10:96::1"},
                                               {"KUBERNETES_SERVICE_PORT", "6443"}}));
  EXPECT_EQ(c.api_url, "https://[fd00:10:96::1]:6443");
  EXPECT_EQ(c.token_file, std::string(kServiceAccountDir) + "/token");
  c = resolve_kube_config(KubeSettings{}, env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                               {"KUBERNETES_SERVICE_PORT", "x/y"}}));
  EXPECT_FALSE(c.enabled);
  c = resolve_kube_config(KubeSettings{}, env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}}));
  EXPECT_FALSE(c.enabled);
}

TEST(KubeConfig, SettingsWinOneByOne) {
  KubeSettings s;
  s.api_url = "https://127.0.0.1:6443/";
  s.token_file = "/tmp/t";
  s.ca_file = "/tmp/ca";
  KubeConfig c = resolve_kube_config(s, env({}));
  ASSERT_TRUE(c.enabled);
  EXPECT_EQ(c.api_url, "https://127.0.0.1:6443");
  EXPECT_EQ(c.token_file, "/tmp/t");
  EXPECT_EQ(c.ca_file, "/tmp/ca");
  EXPECT_STREQ(c.source, "settings");
  // a URL alone, outside a cluster: no token, the system's CAs
  s.token_file.clear();
  s.ca_file.clear();
  c = resolve_kube_config(s, env({}));
  EXPECT_EQ(c.token_file, "");
  EXPECT_EQ(c.ca_file, "");
  // in a cluster the rest comes from the service account
  c = resolve_kube_config(
      s, env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      "/sa");
  EXPECT_EQ(c.api_url, "https://127.0.0.1:6443");
  EXPECT_EQ(c.token_file, "/sa/token");
  EXPECT_STREQ(c.source, "settings+in-cluster");
  // only a token file set: the in-cluster URL
  KubeSettings t;
  t.token_file = "/tmp/t";
  c = resolve_kube_config(
      t, env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      "/sa");
  EXPECT_EQ(c.api_url, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, "/tmp/t");
  s.api_url = "ftp://x";
  EXPECT_FALSE(resolve_kube_config(s, env({})).enabled);
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kube-token-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    path = dir + "/token";
  }
  void TearDown() override {
    unlink(path.c_str());
    rmdir(dir.c_str());
  }
  void write(const std::string& text) {
    std::ofstream(path + ".new") << text;
    ASSERT_EQ(rename((path + ".new").c_str(), path.c_str()), 0);
  }
  std::string dir, path;
};

TEST_F(TokenFileTest, ReadsRereadsAndKeepsTheOldTokenOnFailure) {
  const uint64_t minute = 60ull * 1000000000;
  TokenFile t(path, minute);
  std::string error;
  EXPECT_EQ(t.reload(0, false, &error), TokenFile::Result::Failed);  // not there yet
  EXPECT_EQ(t.token(), "");
  write("  abc.def-ghi\n");
  EXPECT_EQ(t.reload(1, false, &error), TokenFile::Result::Unchanged);  // not due
  EXPECT_EQ(t.reload(minute, false, &error), TokenFile::Result::Changed);
  EXPECT_EQ(t.token(), "abc.def-ghi");
  write("rotated");
  EXPECT_EQ(t.reload(minute + 5, false, &error), TokenFile::Result::Unchanged);
  EXPECT_EQ(t.reload(minute + 5, true, &error), TokenFile::Result::Changed);  // after a 401
  EXPECT_EQ(t.token(), "rotated");
  unlink(path.c_str());
  EXPECT_EQ(t.reload(3 * minute, false, &error), TokenFile::Result::Failed);
  EXPECT_NE(error.find("cannot open"), std::string::npos);
  EXPECT_EQ(t.token(), "rotated");
  write("\n\n");
  EXPECT_EQ(t.reload(4 * minute, false, &error), TokenFile::Result::Failed);
  EXPECT_EQ(t.token(), "rotated");
  write("bad token");
  EXPECT_EQ(t.reload(5 * minute, false, &error), TokenFile::Result::Failed);
  write(std::string(70000, 'a'));
  EXPECT_EQ(t.reload(6 * minute, false, &error), TokenFile::Result::Failed);
  EXPECT_EQ(t.token(), "rotated");
  EXPECT_EQ(t.next_due_ns(), 7 * minute);
  TokenFile none("");
  EXPECT_FALSE(none.enabled());
  EXPECT_EQ(none.reload(0, true, &error), TokenFile::Result::Unchanged);
}

TEST_F(TokenFileTest, FollowsASwappedSymlink) {
  // the kubelet's layout: token -> ..data/token, ..data -> ..2024_xx
  const std::string a = dir + "/a", b = dir + "/b";
  std::ofstream(a) << "first";
  std::ofstream(b) << "second";
  ASSERT_EQ(symlink(a.c_str(), path.c_str()), 0);
  TokenFile t(path, 1);
  std::string error;
  EXPECT_EQ(t.reload(0, false, &error), TokenFile::Result::Changed);
  EXPECT_EQ(t.token(), "first");
  ASSERT_EQ(symlink(b.c_str(), (path + ".tmp").c_str()), 0);
  ASSERT_EQ(rename((path + ".tmp").c_str(), path.c_str()), 0);
  EXPECT_EQ(t.reload(10, false, &error), TokenFile::Result::Changed);
  EXPECT_EQ(t.token(), "second");
  unlink(a.c_str());
  unlink(b.c_str());
}

TEST(KubeBackoff, DoublesWithJitterToTheCap) {
  std::mt19937_64 rng(5);
  Backoff b;
  uint64_t now = 0;
  const double want[] = {0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30};
  for (double w : want) {
    const double d = static_cast<double>(b.next(now, rng)) / 1e9;
    EXPECT_GE(d, w - 1e-9);
    EXPECT_LT(d, w * 1.25 + 1e-9);
    now += 1000000000;
  }
  // reset after two minutes without a failure
  now += 121ull * 1000000000;
  EXPECT_EQ(b.current(now), 800000000u);
  EXPECT_LT(b.next(now, rng), 1000000001u);
}

TEST(KubeBackoff, JitterSpreadsClients) {
  std::set<uint64_t> seen;
  for (int seed = 1; seed < 50; seed++) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    Backoff b;
    seen.insert(b.next(0, rng) / 1000000);
  }
  EXPECT_GT(seen.size(), 20u);
}

TEST(KubeBackoff, RetryAfter) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100; i++) {
    const uint64_t d = retry_after_delay_ns(2, rng);
    EXPECT_GE(d, 2000000000u);
    EXPECT_LE(d, 2200000000u);
  }
  EXPECT_LE(retry_after_delay_ns(1e9, rng), 601000000000u);
  EXPECT_LE(retry_after_delay_ns(-5, rng), 1u);
}

}  // namespace

namespace ebpfc::kube {
namespace {

TEST(KubeConfig, PlainHttpIsRefusedUnlessAllowed) {
  KubeSettings s;
  s.api_url = "http://127.0.0.1:8001";
  const EnvLookup none = [](const char*) -> const char* { return nullptr; };
  KubeConfig c = resolve_kube_config(s, none);
  EXPECT_FALSE(c.enabled);
  EXPECT_NE(c.disabled_reason.find("clear text"), std::string::npos) << c.disabled_reason;
  EXPECT_NE(c.disabled_reason.find("kube_allow_insecure_http"), std::string::npos);
  s.allow_http = true;
  c = resolve_kube_config(s, none);
  EXPECT_TRUE(c.enabled) << c.disabled_reason;
  EXPECT_EQ(c.api_url, "http://127.0.0.1:8001");
}

}  // namespace
}  // namespace ebpfc::kube
