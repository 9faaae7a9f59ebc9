// Tests of extension/kube/pod_cache.*: address resolution over time, the
// change feed for the pods table, and the cost of 10,000 pods.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <set>

#include "kube/pod_cache.h"
#include "test_kube_fixtures.h"

// The sanitizer runtime's allocation hooks (the tests are built with ASan).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));
extern "C" size_t __sanitizer_get_allocated_size(const volatile void* p);

namespace {

using namespace ebpfc::kube;
using kube_fixtures::ip;
using kube_fixtures::PodSpec;

constexpr int64_t kS = 1000000;            // one second in us
constexpr int64_t T0 = 1714564800ll * kS;  // 2024-05-01T12:00:00Z: the pods' creation
constexpr int64_t kStart = T0 + kS;        // their startTime

// Allocation accounting while `g_counting`.
bool g_counting = false;
int64_t g_allocs = 0;
int64_t g_live_bytes = 0;
void on_malloc(const volatile void*, size_t size) {
  if (!g_counting) return;
  g_allocs++;
  g_live_bytes += static_cast<int64_t>(size);
}
void on_free(const volatile void* p) {
  if (!g_counting || p == nullptr) return;
  g_live_bytes -= static_cast<int64_t>(__sanitizer_get_allocated_size(p));
}
bool install_hooks() {
  static bool installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
  return installed;
}

PodSpec spec(const std::string& name, const std::string& uid, const std::string& addr,
             int start_s = 1) {
  PodSpec s;
  s.name = name;
  s.uid = uid;
  s.ips = {addr};
  s.owner_kind = "StatefulSet";
  s.owner_name = "db";
  s.owner_uid = "sts-1";
  s.template_hash = "";
  char buf[32];
  format_rfc3339(T0 + start_s * kS, buf);
  s.started = buf;
  return s;
}

std::string name_at(const PodCache& c, const char* addr, int64_t at) {
  const PeerIdentity* id = c.lookup(ip(addr), at);
  if (id == nullptr) return "-";
  return std::string(id->pod.empty() ? "node:" + std::string(id->node) : std::string(id->pod));
}

void check(const PodCache& c) {
  std::string why;
  ASSERT_TRUE(c.check(&why)) << why;
}

TEST(KubeCache, ResolvesAPodsAddressesToItsIdentity) {
  PodCache c;
  PodSpec s;
  s.ips = {"10.0.0.5", "fd00::5"};
  ASSERT_TRUE(c.upsert_pod(kube_fixtures::pod(s), T0 + 5 * kS));
  for (const char* a : {"10.0.0.5", "fd00::5"}) {
    const PeerIdentity* id = c.lookup(ip(a), T0 + 6 * kS);
    ASSERT_NE(id, nullptr) << a;
    EXPECT_EQ(id->pod, "web-7d4b9c6f5d-abcde");
    EXPECT_EQ(id->ns, "default");
    EXPECT_EQ(id->workload, "web");
    EXPECT_EQ(id->workload_kind, "Deployment");
    EXPECT_EQ(id->node, "node-a");
  }
  EXPECT_EQ(c.lookup(ip("10.0.0.6"), T0), nullptr);
  // the span path's form: 16 bytes, IPv4-mapped
  const IpAddr a = ip("10.0.0.5");
  EXPECT_NE(c.lookup(a.b, T0 + 6 * kS), nullptr);
  EXPECT_EQ(c.pods_known(), 1u);
  EXPECT_EQ(c.addresses(), 2u);
  check(c);
}

TEST(KubeCache, ADeletedPodResolvesForTheGracePeriod) {
  PodCache c;
  c.upsert_pod(kube_fixtures::pod(spec("a", "ua", "10.0.0.5")), T0 + 2 * kS);
  c.delete_pod("ua", T0 + 100 * kS);
  EXPECT_EQ(c.pods_known(), 0u);
  c.expire(T0 + 150 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 50 * kS), "a");   // a late span
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 150 * kS), "a");  // nobody took it
  c.expire(T0 + 221 * kS);                                // 100 + 120 + 1
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 50 * kS), "-");
  EXPECT_EQ(c.addresses(), 0u);
  check(c);
}

TEST(KubeCache, AReusedAddressNamesWhoeverHadItAtTheTime) {
  PodCache c;
  c.upsert_pod(kube_fixtures::pod(spec("a", "ua", "10.0.0.5", 1)), T0 + 2 * kS);
  c.delete_pod("ua", T0 + 100 * kS);
  c.upsert_pod(kube_fixtures::pod(spec("b", "ub", "10.0.0.5", 110)), T0 + 111 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 50 * kS), "a");
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 105 * kS), "a");  // after a went, before b came
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 110 * kS), "b");
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 500 * kS), "b");
  check(c);
  // once a's grace is over only b is known: before b (beyond the skew) is
  // nobody
  c.expire(T0 + 300 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 50 * kS), "-");
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 105 * kS), "b");  // within the clock skew
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 200 * kS), "b");
  check(c);
}

TEST(KubeCache, TheNewerPodWinsAnAddress) {
  for (bool newer_first : {false, true}) {
    PodCache c;
    const Pod a = kube_fixtures::pod(spec("a", "ua", "10.0.0.5", 1));
    const Pod b = kube_fixtures::pod(spec("b", "ub", "10.0.0.5", 50));
    if (newer_first) {
      c.upsert_pod(b, T0 + 60 * kS);
      c.upsert_pod(a, T0 + 61 * kS);
    } else {
      c.upsert_pod(a, T0 + 60 * kS);
      c.upsert_pod(b, T0 + 61 * kS);
    }
    EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 70 * kS), "b") << newer_first;
    EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 10 * kS), "a") << newer_first;
    c.delete_pod("ua", T0 + 80 * kS);
    EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 90 * kS), "b");
    c.delete_pod("ub", T0 + 85 * kS);
    EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 90 * kS), "b");
    check(c);
  }
}

TEST(KubeCache, SucceededAndFailedPodsDoNotOwnTheirAddress) {
  PodCache c;
  PodSpec done = spec("job-done", "u1", "10.0.0.7", 1);
  done.phase = "Succeeded";
  c.upsert_pod(kube_fixtures::pod(done), T0 + 10 * kS);  // first seen finished
  EXPECT_EQ(name_at(c, "10.0.0.7", T0 + 5 * kS), "-");
  EXPECT_EQ(c.pods_known(), 1u);  // still a pod, for the pods table

  // a running pod that then fails: late spans still get its name ...
  PodSpec run = spec("job-run", "u2", "10.0.0.8", 1);
  c.upsert_pod(kube_fixtures::pod(run), T0 + 10 * kS);
  run.phase = "Failed";
  c.upsert_pod(kube_fixtures::pod(run), T0 + 100 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.8", T0 + 50 * kS), "job-run");
  // ... until the address is taken
  c.upsert_pod(kube_fixtures::pod(spec("next", "u3", "10.0.0.8", 120)), T0 + 121 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.8", T0 + 130 * kS), "next");
  // a Failed pod newer than a running one with the same address does not win
  PodSpec failed = spec("crashed", "u4", "10.0.0.8", 200);
  failed.phase = "Failed";
  c.upsert_pod(kube_fixtures::pod(failed), T0 + 201 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.8", T0 + 300 * kS), "next");
  c.expire(T0 + 1000 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.8", T0 + 300 * kS), "next");
  check(c);
}

TEST(KubeCache, PendingPodsGetTheirAddressLater) {
  PodCache c;
  PodSpec p = spec("p", "up", "10.0.0.9", 1);
  p.ips.clear();
  p.phase = "Pending";
  c.upsert_pod(kube_fixtures::pod(p), T0 + 2 * kS);
  EXPECT_EQ(c.addresses(), 0u);
  p.ips = {"10.0.0.9"};
  c.upsert_pod(kube_fixtures::pod(p), T0 + 3 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.9", T0 + 3 * kS), "p");
  check(c);
}

TEST(KubeCache, HostNetworkPodsResolveToTheirNode) {
  PodCache c;
  PodSpec h1 = spec("kube-proxy-x", "h1", "192.168.1.10");
  h1.host_network = true;
  h1.owner_kind = "DaemonSet";
  h1.owner_name = "kube-proxy";
  PodSpec h2 = h1;
  h2.name = "node-exporter-y";
  h2.uid = "h2";
  c.upsert_pod(kube_fixtures::pod(h1), T0 + 2 * kS);
  c.upsert_pod(kube_fixtures::pod(h2), T0 + 2 * kS);
  const PeerIdentity* id = c.lookup(ip("192.168.1.10"), T0 + 3 * kS);
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->pod, "");
  EXPECT_EQ(id->ns, "");
  EXPECT_EQ(id->workload, "node-a");
  EXPECT_EQ(id->workload_kind, "Node");
  EXPECT_EQ(id->node, "node-a");
  // even for a time long before (the node had its address all along)
  EXPECT_NE(c.lookup(ip("192.168.1.10"), T0 - 1000 * kS), nullptr);
  // the pods themselves keep their own workload in the pods table
  PodRecord r;
  ASSERT_TRUE(c.find_pod("h1", &r));
  EXPECT_EQ(r.workload, "kube-proxy");
  EXPECT_EQ(r.workload_kind, "DaemonSet");
  EXPECT_TRUE(r.host_network);
  check(c);
  c.delete_pod("h1", T0 + 10 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + 11 * kS), "node:node-a");
  c.delete_pod("h2", T0 + 20 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + 21 * kS), "node:node-a");  // grace
  c.expire(T0 + 200 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + 21 * kS), "-");
  EXPECT_EQ(c.nodes_known(), 0u);
  check(c);
}

TEST(KubeCache, NodeInternalAddressesResolveToTheNode) {
  PodCache c;
  Node n;
  std::string error;
  ASSERT_TRUE(decode_node(kube_fixtures::node_json("node-a", {"192.168.1.10"}), &n, &error));
  c.upsert_node(n, T0);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + kS), "node:node-a");
  EXPECT_EQ(name_at(c, "203.0.113.9", T0 + kS), "-");  // ExternalIP: not on the bridge
  EXPECT_EQ(c.nodes_known(), 1u);
  // a host-network pod on it shares the claim
  PodSpec h = spec("hn", "h1", "192.168.1.10");
  h.host_network = true;
  c.upsert_pod(kube_fixtures::pod(h), T0 + kS);
  check(c);
  c.delete_node("node-a", T0 + 10 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + 500 * kS), "node:node-a");  // the pod still holds it
  c.delete_pod("h1", T0 + 20 * kS);
  c.expire(T0 + 500 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.10", T0 + 500 * kS), "-");
  EXPECT_EQ(c.nodes_known(), 0u);
  check(c);
  // an address change
  n.internal_ips = {ip("192.168.1.11")};
  c.upsert_node(n, T0 + 600 * kS);
  n.internal_ips = {ip("192.168.1.12")};
  c.upsert_node(n, T0 + 700 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.12", T0 + 701 * kS), "node:node-a");
  c.expire(T0 + 900 * kS);
  EXPECT_EQ(name_at(c, "192.168.1.11", T0 + 900 * kS), "-");
  check(c);
}

// A node that nothing else uses is erased by its own deletion; the deletion
// must not touch the entry after that (found by the kube fuzzer: a
// heap-use-after-free in reconcile_claims under ASan).
TEST(KubeCache, DeletingAnUnusedNodeErasesItSafely) {
  PodCache c;
  Node n;
  std::string error;
  // without an InternalIP nothing keeps the entry once the node is deleted
  ASSERT_TRUE(decode_node(kube_fixtures::node_json("node-b", {}), &n, &error));
  c.upsert_node(n, T0);
  EXPECT_EQ(c.nodes_known(), 1u);
  c.delete_node("node-b", T0 + kS);
  EXPECT_EQ(c.nodes_known(), 0u);
  c.delete_node("node-b", T0 + 2 * kS);  // again: unknown now
  ASSERT_TRUE(decode_node(kube_fixtures::node_json("node-b", {"192.168.2.11"}), &n, &error));
  c.upsert_node(n, T0 + 3 * kS);  // and back, with an address
  EXPECT_EQ(name_at(c, "192.168.2.11", T0 + 4 * kS), "node:node-b");
  check(c);
}

TEST(KubeCache, WorkloadFollowsTheReplicaSetWhenItBecomesKnown) {
  PodCache c;
  c.upsert_pod(kube_fixtures::pod(PodSpec()), T0 + 2 * kS);
  EXPECT_EQ(c.lookup(ip("10.0.0.5"), T0 + 2 * kS)->workload, "web");
  std::vector<PodRecord> changes;
  c.take_changes(changes);
  OwnerInfo rs;
  std::string error;
  ASSERT_TRUE(decode_owner(kube_fixtures::replicaset_json("web-7d4b9c6f5d", "rs-uid-1", "frontend"),
                           "ReplicaSet", &rs, &error));
  c.upsert_owner(rs);
  EXPECT_EQ(c.lookup(ip("10.0.0.5"), T0 + 2 * kS)->workload, "frontend");
  changes.clear();
  ASSERT_EQ(c.take_changes(changes), 1u);
  EXPECT_EQ(changes[0].workload, "frontend");
  EXPECT_EQ(c.counters().workload_updates, 1u);
  // unchanged again: no change
  c.upsert_owner(rs);
  EXPECT_EQ(c.pending_changes(), 0u);
  // a pod of a known ReplicaSet gets it at once
  PodSpec s2;
  s2.uid = "uid-2";
  s2.ips = {"10.0.0.6"};
  c.upsert_pod(kube_fixtures::pod(s2), T0 + 3 * kS);
  EXPECT_EQ(c.lookup(ip("10.0.0.6"), T0 + 3 * kS)->workload, "frontend");
  c.delete_owner("rs-uid-1");
  EXPECT_EQ(c.lookup(ip("10.0.0.6"), T0 + 3 * kS)->workload, "web");
  check(c);
}

TEST(KubeCache, RelistDeletesWhatIsNoLongerListed) {
  PodCache c;
  c.begin_resync(ResourceKind::Pods);
  c.upsert_pod(kube_fixtures::pod(spec("a", "ua", "10.0.0.1")), T0 + 2 * kS);
  c.upsert_pod(kube_fixtures::pod(spec("b", "ub", "10.0.0.2")), T0 + 2 * kS);
  EXPECT_EQ(c.end_resync(ResourceKind::Pods, T0 + 2 * kS), 0u);
  // the watch missed a's deletion; the relist does not list it
  c.begin_resync(ResourceKind::Pods);
  c.upsert_pod(kube_fixtures::pod(spec("b", "ub", "10.0.0.2")), T0 + 50 * kS);
  EXPECT_EQ(c.end_resync(ResourceKind::Pods, T0 + 50 * kS), 1u);
  EXPECT_EQ(c.pods_known(), 1u);
  PodRecord r;
  ASSERT_TRUE(c.find_pod("ua", &r));
  EXPECT_EQ(r.deleted_us, T0 + 50 * kS);
  EXPECT_EQ(name_at(c, "10.0.0.1", T0 + 40 * kS), "a");  // grace
  // owners and nodes likewise
  OwnerInfo rs;
  rs.uid = "r1";
  rs.name = "x";
  rs.kind = "ReplicaSet";
  c.begin_resync(ResourceKind::Owners);
  c.upsert_owner(rs);
  c.end_resync(ResourceKind::Owners, T0);
  EXPECT_EQ(c.owners_known(), 1u);
  c.begin_resync(ResourceKind::Owners);
  EXPECT_EQ(c.end_resync(ResourceKind::Owners, T0), 1u);
  EXPECT_EQ(c.owners_known(), 0u);
  Node n;
  n.name = "n1";
  n.internal_ips = {ip("192.168.0.1")};
  c.begin_resync(ResourceKind::Nodes);
  c.upsert_node(n, T0);
  c.end_resync(ResourceKind::Nodes, T0);
  c.begin_resync(ResourceKind::Nodes);
  EXPECT_EQ(c.end_resync(ResourceKind::Nodes, T0 + kS), 1u);
  EXPECT_EQ(c.nodes_known(), 0u);
  check(c);
}

TEST(KubeCache, ChangeFeedForThePodsTable) {
  PodCache c;
  PodSpec s = spec("a", "ua", "10.0.0.1");
  s.ips = {"10.0.0.1", "fd00::1"};
  c.upsert_pod(kube_fixtures::pod(s), T0 + 2 * kS);
  s.phase = "Running";
  c.upsert_pod(kube_fixtures::pod(s), T0 + 3 * kS);
  c.upsert_pod(kube_fixtures::pod(spec("b", "ub", "10.0.0.2")), T0 + 3 * kS);
  std::vector<PodRecord> out;
  ASSERT_EQ(c.take_changes(out, 1), 1u);  // a bounded drain
  ASSERT_EQ(c.take_changes(out), 1u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(c.take_changes(out), 0u);
  const PodRecord& a = out[0];
  EXPECT_EQ(a.uid, "ua");
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.ns, "default");
  EXPECT_EQ(a.node, "node-a");
  EXPECT_EQ(a.workload, "db");
  EXPECT_EQ(a.workload_kind, "StatefulSet");
  EXPECT_EQ(a.phase, "Running");
  EXPECT_EQ(a.labels_json, R"({"app":"web"})");
  ASSERT_EQ(a.ips.size(), 2u);
  EXPECT_EQ(a.ips[0], "10.0.0.1");
  EXPECT_EQ(a.ips[1], "fd00::1");
  EXPECT_EQ(a.first_seen_us, T0 + 2 * kS);
  EXPECT_EQ(a.last_seen_us, T0 + 3 * kS);
  EXPECT_EQ(a.created_us, T0);
  EXPECT_EQ(a.started_us, T0 + kS);
  EXPECT_EQ(a.deleted_us, kNoTime);
  // a deleted pod stays until its deletion was taken, even past the grace
  c.delete_pod("ua", T0 + 10 * kS);
  c.expire(T0 + 1000 * kS);
  EXPECT_EQ(c.pods_held(), 2u);
  out.clear();
  ASSERT_EQ(c.take_changes(out), 1u);
  EXPECT_EQ(out[0].deleted_us, T0 + 10 * kS);
  c.expire(T0 + 2000 * kS);
  EXPECT_EQ(c.pods_held(), 1u);
  std::vector<PodRecord> all;
  c.snapshot(all);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "b");
  check(c);
}

TEST(KubeCache, ChangeFeedIsBoundedAndOptional) {
  PodCacheOptions o;
  o.max_pending_changes = 3;
  PodCache c(o);
  for (int i = 0; i < 5; i++)
    c.upsert_pod(kube_fixtures::pod(spec("p" + std::to_string(i), "u" + std::to_string(i),
                                         "10.0.1." + std::to_string(i))),
                 T0);
  EXPECT_EQ(c.pending_changes(), 3u);
  EXPECT_EQ(c.counters().changes_dropped, 2u);
  o.track_changes = false;
  PodCache quiet(o);
  quiet.upsert_pod(kube_fixtures::pod(spec("a", "ua", "10.0.0.1")), T0);
  EXPECT_EQ(quiet.pending_changes(), 0u);
  check(c);
}

TEST(KubeCache, RejectsPodsWithoutIdentity) {
  PodCache c;
  Pod p;
  EXPECT_FALSE(c.upsert_pod(p, T0));
  EXPECT_EQ(c.counters().rejected, 1u);
  c.delete_pod("nobody", T0);  // unknown: nothing happens
  EXPECT_EQ(c.pods_held(), 0u);
}

TEST(KubeCache, HistoryPerAddressIsBounded) {
  PodCacheOptions o;
  o.max_claims_per_address = 3;
  PodCache c(o);
  for (int i = 0; i < 10; i++) {
    const std::string uid = "u" + std::to_string(i);
    c.upsert_pod(kube_fixtures::pod(spec(uid, uid, "10.0.0.5", 10 * i + 1)),
                 T0 + (10 * i + 2) * kS);
    c.delete_pod(uid, T0 + (10 * i + 5) * kS);
    check(c);
  }
  EXPECT_EQ(name_at(c, "10.0.0.5", T0 + 92 * kS), "u9");
  EXPECT_GT(c.counters().claims_dropped, 0u);
  // live claims are never pushed out: a fourth live pod is refused an address
  PodCache d(o);
  for (int i = 0; i < 4; i++) {
    const std::string uid = "l" + std::to_string(i);
    d.upsert_pod(kube_fixtures::pod(spec(uid, uid, "10.0.0.5", i + 1)), T0 + 10 * kS);
  }
  EXPECT_EQ(name_at(d, "10.0.0.5", T0 + 10 * kS), "l2");
  check(d);
  for (int i = 0; i < 4; i++) d.delete_pod("l" + std::to_string(i), T0 + 20 * kS);
  d.expire(T0 + 1000 * kS);
  EXPECT_EQ(d.addresses(), 0u);
  check(d);
}

TEST(KubeCache, LookupDoesNotAllocate) {
  ASSERT_TRUE(install_hooks());
  PodCache c;
  for (int i = 0; i < 100; i++) {
    const std::string uid = "u" + std::to_string(i);
    c.upsert_pod(kube_fixtures::pod(spec(uid, uid, "10.0.2." + std::to_string(i))), T0);
  }
  const IpAddr hit = ip("10.0.2.50"), miss = ip("10.9.9.9");
  size_t found = 0;
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 10000; i++) {
    found += c.lookup(hit.b, T0 + i) != nullptr;
    found += c.lookup(miss.b, T0 + i) != nullptr;
  }
  g_counting = false;
  EXPECT_EQ(g_allocs, 0);
  EXPECT_EQ(found, 10000u);
}

// The figure the issue asks for: the cache's memory for 10,000 pods (each
// with an IPv4 and an IPv6 address, labels, a ReplicaSet), 1,000 ReplicaSets
// and 100 nodes, counted as bytes requested from malloc and still held.
TEST(KubeCache, TenThousandPods) {
  ASSERT_TRUE(install_hooks());
  std::vector<Pod> pods;
  pods.reserve(10000);
  for (int i = 0; i < 10000; i++) {
    PodSpec s;
    const std::string rs = "service-" + std::to_string(i / 10) + "-6b8f9c7d5f";
    s.name = rs + "-" + std::to_string(10000 + i);
    s.uid = "4c5a1f3e-8b2d-4e6f-9a0b-" + std::to_string(100000000000 + i);
    s.ns = "team-" + std::to_string(i % 20);
    s.node = "ip-10-1-" + std::to_string(i % 100) + "-17.eu-west-1.compute.internal";
    s.owner_name = rs;
    s.owner_uid = "rs-" + std::to_string(i / 10);
    s.template_hash = "6b8f9c7d5f";
    char v4[32], v6[64];
    std::snprintf(v4, sizeof(v4), "10.%d.%d.%d", 100 + i / 65536, (i / 256) % 256, i % 256);
    std::snprintf(v6, sizeof(v6), "fd00:10::%x", i + 1);
    s.ips = {v4, v6};
    pods.push_back(kube_fixtures::pod(s));
  }
  std::vector<OwnerInfo> owners(1000);
  for (int i = 0; i < 1000; i++) {
    owners[i].uid = "rs-" + std::to_string(i);
    owners[i].name = "service-" + std::to_string(i) + "-6b8f9c7d5f";
    owners[i].ns = "team-x";
    owners[i].kind = "ReplicaSet";
    owners[i].controller_kind = "Deployment";
    owners[i].controller_name = "service-" + std::to_string(i);
  }
  PodCacheOptions quiet;
  quiet.track_changes = false;
  g_live_bytes = 0;
  g_counting = true;
  auto* c = new PodCache(quiet);
  for (const OwnerInfo& o : owners) c->upsert_owner(o);
  for (int i = 0; i < 100; i++) {
    Node n;
    n.name = "ip-10-1-" + std::to_string(i) + "-17.eu-west-1.compute.internal";
    n.internal_ips = {IpAddr::v4(192, 168, 0, static_cast<uint8_t>(i))};
    c->upsert_node(n, T0);
  }
  for (const Pod& p : pods) c->upsert_pod(p, T0);
  g_counting = false;
  const int64_t bytes = g_live_bytes;
  EXPECT_EQ(c->pods_known(), 10000u);
  EXPECT_EQ(c->addresses(), 20100u);
  std::printf(
      "[   INFO   ] pod cache: 10000 pods, 20100 addresses, 1000 ReplicaSets, 100 nodes: "
      "%.2f MiB (%lld bytes, %lld per pod)\n",
      static_cast<double>(bytes) / (1 << 20), static_cast<long long>(bytes),
      static_cast<long long>(bytes / 10000));
  RecordProperty("pod_cache_bytes_10000_pods", static_cast<int>(bytes));
  EXPECT_LT(bytes, 16ll << 20);
  for (int i = 0; i < 10000; i += 97) {
    const PeerIdentity* id = c->lookup(pods[i].ips[0], T0 + kS);
    ASSERT_NE(id, nullptr);
    EXPECT_EQ(id->pod, pods[i].meta.name);
    EXPECT_EQ(id->workload, "service-" + std::to_string(i / 10));
  }
  std::string why;
  EXPECT_TRUE(c->check(&why)) << why;
  g_counting = true;
  delete c;
  g_counting = false;
  EXPECT_EQ(g_live_bytes, 0);  // everything it held came back
}

// Random operations on a few pods, nodes and addresses: the invariants hold
// after each, and lookups agree with a simple model for live pods.
TEST(KubeCache, RandomOperationsKeepTheInvariants) {
  std::mt19937 rng(1234);
  PodCacheOptions o;
  o.max_claims_per_address = 4;
  o.grace_us = 30 * kS;
  PodCache c(o);
  int64_t now = T0;
  for (int step = 0; step < 20000; step++) {
    now += static_cast<int64_t>(rng() % 3) * kS;
    const int pod = static_cast<int>(rng() % 12);
    const std::string uid = "u" + std::to_string(pod);
    const std::string addr = "10.0.0." + std::to_string(rng() % 5);
    switch (rng() % 10) {
      case 0:
      case 1:
      case 2: {
        PodSpec s = spec(uid, uid, addr, static_cast<int>((now - T0) / kS));
        s.host_network = rng() % 6 == 0;
        s.node = "n" + std::to_string(rng() % 2);
        const char* phases[] = {"Pending", "Running", "Running", "Succeeded", "Failed", ""};
        s.phase = phases[rng() % 6];
        if (rng() % 5 == 0) s.ips.clear();
        if (rng() % 4 == 0) s.owner_kind = "ReplicaSet";
        c.upsert_pod(kube_fixtures::pod(s), now);
        break;
      }
      case 3:
        c.delete_pod(uid, now);
        break;
      case 4: {
        Node n;
        n.name = "n" + std::to_string(rng() % 2);
        n.internal_ips = {ip(addr.c_str())};
        c.upsert_node(n, now);
        break;
      }
      case 5:
        c.delete_node("n" + std::to_string(rng() % 2), now);
        break;
      case 6:
        c.expire(now);
        break;
      case 7: {
        std::vector<PodRecord> out;
        c.take_changes(out, rng() % 4);
        break;
      }
      case 8:
        if (rng() % 8 == 0) {
          c.begin_resync(ResourceKind::Pods);
          c.upsert_pod(kube_fixtures::pod(spec(uid, uid, addr)), now);
          c.end_resync(ResourceKind::Pods, now);
        }
        break;
      case 9: {
        OwnerInfo rs;
        rs.uid = "rs-uid-1";
        rs.name = "web-7d4b9c6f5d";
        rs.kind = "ReplicaSet";
        rs.controller_kind = rng() % 2 ? "Deployment" : "";
        rs.controller_name = "web";
        if (rng() % 3 == 0)
          c.delete_owner(rs.uid);
        else
          c.upsert_owner(rs);
        break;
      }
    }
    std::string why;
    ASSERT_TRUE(c.check(&why)) << "step " << step << ": " << why;
    // a live, running, non-host-network pod that is the newest claimant of
    // its address resolves to itself at `now`
    const PeerIdentity* id = c.lookup(ip(addr.c_str()), now);
    if (id != nullptr) {
      ASSERT_FALSE(id->workload.empty());
      ASSERT_FALSE(id->workload_kind.empty());
    }
  }
}

}  // namespace
