// Tests of extension/kube/hub_discovery.*: which node databases a hub reads,
// from the pods the API reports (ParseProfile::DatabasePods keeps their
// ports and annotations), and the request that finds them.
#include <gtest/gtest.h>

#include "kube/hub_discovery.h"
#include "kube/reflector.h"
#include "test_kube_fixtures.h"

namespace {

using namespace ebpfc::kube;
using kube_fixtures::json;
using kube_fixtures::PodSpec;

// A DaemonSet pod of a node database: the fixture's pod with a container
// port named "postgres" (after a container with an unnamed port).
json db_pod(const std::string& name, const std::string& node, const std::string& ip, int port = 0,
            const std::string& created = "2024-05-01T12:00:00Z", const std::string& database = "") {
  PodSpec s;
  s.name = name;
  s.uid = "uid-" + name;
  s.node = node;
  s.ips = ip.empty() ? std::vector<std::string>{} : std::vector<std::string>{ip};
  s.created = created;
  json pod = kube_fixtures::pod_json(s);
  json containers = json::array();
  containers.push_back({{"name", "exporter"}, {"ports", {{{"containerPort", 9187}}}}});
  json main = {{"name", "postgres"}, {"image", "ebpf-capture:0.2"}};
  if (port != 0)
    main["ports"] = {{{"name", "metrics"}, {"containerPort", 9000}},
                     {{"name", "postgres"}, {"containerPort", port}}};
  containers.push_back(main);
  pod["spec"]["containers"] = containers;
  if (!database.empty()) pod["metadata"]["annotations"] = {{kDatabaseAnnotation, database}};
  return pod;
}

// The pod as the reflector hands it over: through parse_json with a profile.
json parsed(const json& pod, ParseProfile profile = ParseProfile::DatabasePods) {
  json out;
  std::string error;
  EXPECT_TRUE(parse_json(pod.dump(), &out, &error, profile)) << error;
  return out;
}

const Instant kNow{1000000000ull, 1714564800000000ll};

TEST(HubDiscovery, DecodesPortDatabaseAndNode) {
  DatabasePod p;
  std::string error;
  ASSERT_TRUE(decode_database_pod(parsed(db_pod("ebpf-capture-x1", "node-1", "10.0.0.7", 5433,
                                                "2024-05-01T12:00:00Z", "capture")),
                                  &p, &error))
      << error;
  EXPECT_EQ(p.uid, "uid-ebpf-capture-x1");
  EXPECT_EQ(p.node, "node-1");
  EXPECT_EQ(p.address, "10.0.0.7");
  EXPECT_EQ(p.port, 5433);
  EXPECT_EQ(p.database, "capture");
  EXPECT_EQ(p.phase, PodPhase::Running);
  EXPECT_FALSE(p.terminating);
  // no port named postgres: 5432; no annotation: the default (empty here)
  ASSERT_TRUE(decode_database_pod(parsed(db_pod("b", "node-2", "10.0.0.8")), &p, &error));
  EXPECT_EQ(p.port, kDefaultPostgresPort);
  EXPECT_EQ(p.database, "");
}

TEST(HubDiscovery, TheCaptureProfileDropsContainersAndAnnotations) {
  // the capture's pod cache must not pay for containers; the hub needs them
  DatabasePod p;
  std::string error;
  const json pod = db_pod("a", "node-1", "10.0.0.7", 5433, "2024-05-01T12:00:00Z", "capture");
  ASSERT_TRUE(decode_database_pod(parsed(pod, ParseProfile::Capture), &p, &error));
  EXPECT_EQ(p.port, kDefaultPostgresPort);
  EXPECT_EQ(p.database, "");
  const json kept = parsed(pod, ParseProfile::Capture);
  EXPECT_FALSE(kept["spec"].contains("containers"));
  EXPECT_FALSE(kept["metadata"].contains("annotations"));
}

TEST(HubDiscovery, BadPortsAndAnnotationsAreIgnored) {
  json pod = db_pod("a", "node-1", "10.0.0.7", 5433);
  pod["spec"]["containers"][1]["ports"][1]["containerPort"] = 70000;
  pod["metadata"]["annotations"] = {{kDatabaseAnnotation, std::string(100, 'x')}};
  DatabasePod p;
  std::string error;
  ASSERT_TRUE(decode_database_pod(parsed(pod), &p, &error));
  EXPECT_EQ(p.port, kDefaultPostgresPort);
  EXPECT_EQ(p.database, "");
  pod["spec"]["containers"] = "not a list";
  ASSERT_TRUE(decode_database_pod(parsed(pod), &p, &error));
  EXPECT_EQ(p.port, kDefaultPostgresPort);
  json no_uid = db_pod("a", "node-1", "10.0.0.7");
  no_uid["metadata"].erase("uid");
  EXPECT_FALSE(decode_database_pod(parsed(no_uid), &p, &error));
}

TEST(HubDiscovery, TargetsAreRunningPodsWithAnAddressOnePerNode) {
  DatabasePodSet set("postgres");
  std::string error;
  EXPECT_FALSE(set.synced());
  set.begin_list();
  ASSERT_TRUE(
      set.apply(EventType::Added, parsed(db_pod("a", "node-1", "10.0.0.1", 5432)), kNow, &error));
  ASSERT_TRUE(set.apply(EventType::Added, parsed(db_pod("b", "node-2", "")), kNow, &error));
  json pending = db_pod("c", "node-3", "10.0.0.3");
  pending["status"]["phase"] = "Pending";
  ASSERT_TRUE(set.apply(EventType::Added, parsed(pending), kNow, &error));
  json leaving = db_pod("d", "node-4", "10.0.0.4");
  leaving["metadata"]["deletionTimestamp"] = "2024-05-01T12:05:00Z";
  ASSERT_TRUE(set.apply(EventType::Added, parsed(leaving), kNow, &error));
  // node-5 has two pods (one replacing the other): the newer wins
  ASSERT_TRUE(set.apply(EventType::Added,
                        parsed(db_pod("e-old", "node-5", "10.0.0.5", 0, "2024-05-01T12:00:00Z")),
                        kNow, &error));
  ASSERT_TRUE(
      set.apply(EventType::Added,
                parsed(db_pod("e-new", "node-5", "10.0.0.6", 0, "2024-05-01T13:00:00Z", "other")),
                kNow, &error));
  set.end_list(kNow);
  EXPECT_TRUE(set.synced());
  const std::vector<HubTarget> t = set.targets();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].node, "node-1");
  EXPECT_EQ(t[0].host, "10.0.0.1");
  EXPECT_EQ(t[0].database, "postgres");
  EXPECT_EQ(t[1].node, "node-5");
  EXPECT_EQ(t[1].uid, "uid-e-new");
  EXPECT_EQ(t[1].host, "10.0.0.6");
  EXPECT_EQ(t[1].database, "other");
}

TEST(HubDiscovery, GenerationMovesOnlyWhenSomethingChanged) {
  DatabasePodSet set;
  std::string error;
  set.begin_list();
  ASSERT_TRUE(set.apply(EventType::Added, parsed(db_pod("a", "node-1", "10.0.0.1")), kNow, &error));
  set.end_list(kNow);
  const uint64_t g = set.generation();
  // the same pod again (a MODIFIED that changed nothing the hub reads)
  ASSERT_TRUE(
      set.apply(EventType::Modified, parsed(db_pod("a", "node-1", "10.0.0.1")), kNow, &error));
  EXPECT_EQ(set.generation(), g);
  ASSERT_TRUE(
      set.apply(EventType::Modified, parsed(db_pod("a", "node-1", "10.0.0.9")), kNow, &error));
  EXPECT_GT(set.generation(), g);
  EXPECT_EQ(set.targets()[0].host, "10.0.0.9");
  // a relist that no longer names it: gone
  const uint64_t g2 = set.generation();
  set.begin_list();
  ASSERT_TRUE(set.apply(EventType::Added, parsed(db_pod("b", "node-2", "10.0.0.2")), kNow, &error));
  set.end_list(kNow);
  EXPECT_GT(set.generation(), g2);
  ASSERT_EQ(set.targets().size(), 1u);
  EXPECT_EQ(set.targets()[0].node, "node-2");
  ASSERT_TRUE(
      set.apply(EventType::Deleted, parsed(db_pod("b", "node-2", "10.0.0.2")), kNow, &error));
  EXPECT_TRUE(set.targets().empty());
  set.clear();
  EXPECT_FALSE(set.synced());
}

TEST(HubDiscovery, RequestNamesNamespaceAndSelector) {
  ResourceSpec spec = database_pods_spec("ebpf-capture", "app.kubernetes.io/name=ebpf-capture");
  EXPECT_EQ(spec.path, "/api/v1/namespaces/ebpf-capture/pods");
  EXPECT_EQ(spec.query, "labelSelector=app.kubernetes.io%2Fname%3Debpf-capture");
  EXPECT_EQ(spec.profile, ParseProfile::DatabasePods);
  spec = database_pods_spec("", "");
  EXPECT_EQ(spec.path, "/api/v1/pods");
  EXPECT_EQ(spec.query, "");

  // the reflector asks for it on every list and watch
  DatabasePodSet set;
  KubeCounters counters{};
  std::mt19937_64 rng(1);
  Reflector r(database_pods_spec("ns", "tier in (db)"), ReflectorOptions(), set, counters, rng);
  HttpRequest req = r.begin(kNow);
  EXPECT_EQ(req.path_and_query,
            "/api/v1/namespaces/ns/pods?limit=500&labelSelector=tier%20in%20%28db%29");
  r.on_status(200, -1);
  const json list = {{"kind", "PodList"},
                     {"metadata", {{"resourceVersion", "7"}}},
                     {"items", {db_pod("a", "node-1", "10.0.0.1", 5544)}}};
  const std::string body = list.dump();
  ASSERT_TRUE(r.on_body(body.data(), body.size(), kNow));
  r.on_done(TransferResult{}, kNow);
  ASSERT_TRUE(set.synced());
  // the list went through the DatabasePods profile: the port survived
  ASSERT_EQ(set.targets().size(), 1u);
  EXPECT_EQ(set.targets()[0].port, 5544);
  req = r.begin(kNow);
  EXPECT_TRUE(req.watch);
  EXPECT_NE(req.path_and_query.find("&labelSelector=tier%20in%20%28db%29"), std::string::npos)
      << req.path_and_query;
  EXPECT_EQ(req.path_and_query.rfind("/api/v1/namespaces/ns/pods?watch=1", 0), 0u);
}

}  // namespace
