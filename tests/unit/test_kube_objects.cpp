// Tests of extension/kube/kube_objects.*, kube_time.*, ip_addr.*: decoding
// what the Kubernetes API sends, never throwing.
#include <gtest/gtest.h>

#include "kube/kube_objects.h"
#include "test_kube_fixtures.h"

namespace {

using namespace ebpfc::kube;
using kube_fixtures::json;
using kube_fixtures::PodSpec;

TEST(KubeTime, Rfc3339) {
  int64_t us = 0;
  ASSERT_TRUE(parse_rfc3339("1970-01-01T00:00:00Z", &us));
  EXPECT_EQ(us, 0);
  ASSERT_TRUE(parse_rfc3339("2024-05-01T12:00:00Z", &us));
  EXPECT_EQ(us, 1714564800ll * 1000000);
  ASSERT_TRUE(parse_rfc3339("2024-05-01T12:00:00.25Z", &us));
  EXPECT_EQ(us, 1714564800ll * 1000000 + 250000);
  ASSERT_TRUE(parse_rfc3339("2024-05-01T14:00:00+02:00", &us));
  EXPECT_EQ(us, 1714564800ll * 1000000);
  ASSERT_TRUE(parse_rfc3339("2000-02-29T00:00:00Z", &us));
  for (const char* bad :
       {"", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T00:00:00Z", "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00Zjunk", "nope", "2024-05-01T25:00:00Z", "2024-05-01T12:00:00+2"})
    EXPECT_FALSE(parse_rfc3339(bad, &us)) << bad;
  char buf[32];
  format_rfc3339(1714564800ll * 1000000 + 7, buf);
  EXPECT_STREQ(buf, "2024-05-01T12:00:00.000007Z");
  ASSERT_TRUE(parse_rfc3339(buf, &us));
  EXPECT_EQ(us, 1714564800ll * 1000000 + 7);
}

TEST(KubeIp, ParseAndFormat) {
  IpAddr a;
  ASSERT_TRUE(parse_ip("10.1.2.3", &a));
  EXPECT_TRUE(a.is_v4());
  EXPECT_EQ(a, IpAddr::v4(10, 1, 2, 3));
  char buf[46];
  format_ip(a, buf);
  EXPECT_STREQ(buf, "10.1.2.3");
  ASSERT_TRUE(parse_ip("fd00::1", &a));
  EXPECT_FALSE(a.is_v4());
  format_ip(a, buf);
  EXPECT_STREQ(buf, "fd00::1");
  for (const char* bad :
       {"", "10.1.2", "10.1.2.3.4", "[fd00::1]", "fe80::1%eth0", "host", "1.2.3.256"})
    EXPECT_FALSE(parse_ip(bad, &a)) << bad;
  EXPECT_FALSE(parse_ip(std::string_view("10.0.0.1\0", 9), &a));
}

TEST(KubeObjects, DecodesAPod) {
  PodSpec spec;
  spec.ips = {"10.0.0.5", "fd00::5"};
  Pod pod;
  std::string error;
  ASSERT_TRUE(decode_pod(kube_fixtures::pod_json(spec), &pod, &error)) << error;
  EXPECT_EQ(pod.meta.uid, "uid-1");
  EXPECT_EQ(pod.meta.name, "web-7d4b9c6f5d-abcde");
  EXPECT_EQ(pod.meta.ns, "default");
  EXPECT_EQ(pod.meta.resource_version, "100");
  EXPECT_EQ(pod.node, "node-a");
  EXPECT_EQ(pod.phase, PodPhase::Running);
  EXPECT_FALSE(pod.host_network);
  ASSERT_EQ(pod.ips.size(), 2u);
  EXPECT_EQ(pod.ips[0], kube_fixtures::ip("10.0.0.5"));
  EXPECT_EQ(pod.ips[1], kube_fixtures::ip("fd00::5"));
  EXPECT_EQ(pod.meta.created_us, 1714564800ll * 1000000);
  EXPECT_EQ(pod.start_us, 1714564801ll * 1000000);
  EXPECT_EQ(pod.meta.deletion_requested_us, kNoTime);
  ASSERT_NE(pod.meta.controller(), nullptr);
  EXPECT_EQ(pod.meta.controller()->kind, "ReplicaSet");
  EXPECT_EQ(pod.meta.controller()->uid, "rs-uid-1");
  ASSERT_NE(pod.meta.label("pod-template-hash"), nullptr);
  EXPECT_EQ(*pod.meta.label("pod-template-hash"), "7d4b9c6f5d");
  EXPECT_EQ(labels_to_json(pod.meta.labels), R"({"app":"web","pod-template-hash":"7d4b9c6f5d"})");
}

TEST(KubeObjects, PodIpFallsBackToPodIP) {
  json j = kube_fixtures::pod_json(PodSpec());
  j["status"].erase("podIPs");
  j["status"]["podIP"] = "10.9.9.9";
  Pod pod;
  std::string error;
  ASSERT_TRUE(decode_pod(j, &pod, &error));
  ASSERT_EQ(pod.ips.size(), 1u);
  EXPECT_EQ(pod.ips[0], kube_fixtures::ip("10.9.9.9"));
}

TEST(KubeObjects, PodWithoutStatusOrSpecIsFine) {
  json j = kube_fixtures::pod_json(PodSpec());
  j.erase("status");
  j.erase("spec");
  Pod pod;
  std::string error;
  ASSERT_TRUE(decode_pod(j, &pod, &error)) << error;
  EXPECT_TRUE(pod.ips.empty());
  EXPECT_EQ(pod.phase, PodPhase::Unset);
  EXPECT_EQ(pod.node, "");
}

TEST(KubeObjects, HostNetworkAndBadAddresses) {
  PodSpec spec;
  spec.host_network = true;
  spec.ips = {"not-an-ip", "192.168.1.10", "192.168.1.10"};
  Pod pod;
  std::string error;
  ASSERT_TRUE(decode_pod(kube_fixtures::pod_json(spec), &pod, &error));
  EXPECT_TRUE(pod.host_network);
  ASSERT_EQ(pod.ips.size(), 1u);
  EXPECT_EQ(pod.bad_ips, 1u);
}

TEST(KubeObjects, MalformedPodsAreErrorsNotExceptions) {
  const json good = kube_fixtures::pod_json(PodSpec());
  std::vector<json> bad;
  bad.push_back(json(nullptr));
  bad.push_back(json::array());
  bad.push_back(json("pod"));
  json j = good;
  j.erase("metadata");
  bad.push_back(j);
  j = good;
  j["metadata"]["uid"] = 5;
  bad.push_back(j);
  j = good;
  j["metadata"].erase("uid");
  bad.push_back(j);
  j = good;
  j["metadata"]["name"] = "";
  bad.push_back(j);
  j = good;
  j["metadata"]["name"] = std::string(5000, 'n');
  bad.push_back(j);
  j = good;
  j["metadata"]["name"] = std::string("a\0b", 3);
  bad.push_back(j);
  j = good;
  j["spec"]["nodeName"] = json::array();
  bad.push_back(j);
  for (const json& b : bad) {
    Pod pod;
    std::string error;
    EXPECT_FALSE(decode_pod(b, &pod, &error)) << b.dump();
    EXPECT_FALSE(error.empty());
  }
  // wrong types in optional places are ignored
  j = good;
  j["status"]["podIPs"] = "x";
  j["status"]["phase"] = 3;
  j["spec"]["hostNetwork"] = "yes";
  j["metadata"]["labels"] = json::array();
  j["metadata"]["ownerReferences"] = json::array({1, {{"kind", 2}}});
  j["metadata"]["creationTimestamp"] = "yesterday";
  Pod pod;
  std::string error;
  EXPECT_TRUE(decode_pod(j, &pod, &error)) << error;
  EXPECT_EQ(pod.meta.controller(), nullptr);
  EXPECT_EQ(pod.meta.created_us, kNoTime);
}

TEST(KubeObjects, ReplicaSetMetadataAndPartialObjectMetadata) {
  OwnerInfo rs;
  std::string error;
  ASSERT_TRUE(decode_owner(kube_fixtures::replicaset_json("web-abc", "rs1", "web"), "ReplicaSet",
                           &rs, &error));
  EXPECT_EQ(rs.name, "web-abc");
  EXPECT_EQ(rs.uid, "rs1");
  EXPECT_EQ(rs.kind, "ReplicaSet");
  EXPECT_EQ(rs.controller_kind, "Deployment");
  EXPECT_EQ(rs.controller_name, "web");
  // what the server sends for Accept: ...;as=PartialObjectMetadata
  const json partial = {{"kind", "PartialObjectMetadata"},
                        {"apiVersion", "meta.k8s.io/v1"},
                        {"metadata", {{"name", "bare"}, {"namespace", "x"}, {"uid", "rs2"}}}};
  ASSERT_TRUE(decode_owner(partial, "ReplicaSet", &rs, &error));
  EXPECT_EQ(rs.name, "bare");
  EXPECT_EQ(rs.controller_kind, "");
}

TEST(KubeObjects, NodeInternalAddresses) {
  Node node;
  std::string error;
  ASSERT_TRUE(
      decode_node(kube_fixtures::node_json("n1", {"192.168.1.10", "fd00::10"}), &node, &error));
  EXPECT_EQ(node.name, "n1");
  ASSERT_EQ(node.internal_ips.size(), 2u);
  EXPECT_EQ(node.internal_ips[0], kube_fixtures::ip("192.168.1.10"));
  EXPECT_NE(node.created_us, kNoTime);
}

TEST(KubeObjects, WatchEvents) {
  json doc;
  WatchEvent ev;
  std::string error;
  const std::string added =
      json{{"type", "ADDED"}, {"object", kube_fixtures::pod_json(PodSpec())}}.dump();
  ASSERT_TRUE(decode_watch_event(added, &doc, &ev, &error)) << error;
  EXPECT_EQ(ev.type, EventType::Added);
  EXPECT_EQ(ev.resource_version, "100");
  ASSERT_NE(ev.object, nullptr);
  Pod pod;
  EXPECT_TRUE(decode_pod(*ev.object, &pod, &error));

  ASSERT_TRUE(decode_watch_event(
      R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12345"}}})", &doc,
      &ev, &error));
  EXPECT_EQ(ev.type, EventType::Bookmark);
  EXPECT_EQ(ev.resource_version, "12345");

  ASSERT_TRUE(decode_watch_event(
      R"J({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}})J",
      &doc, &ev, &error));
  EXPECT_EQ(ev.type, EventType::Error);
  EXPECT_TRUE(ev.status.expired());
  EXPECT_EQ(ev.status.reason, "Expired");
  ASSERT_TRUE(decode_watch_event(
      R"({"type":"ERROR","object":{"kind":"Status","reason":"Gone","message":"x"}})", &doc, &ev,
      &error));
  EXPECT_TRUE(ev.status.expired());
  ASSERT_TRUE(decode_watch_event(
      R"({"type":"ERROR","object":{"kind":"Status","code":500,"reason":"InternalError"}})", &doc,
      &ev, &error));
  EXPECT_FALSE(ev.status.expired());
  EXPECT_EQ(ev.status.code, 500);

  ASSERT_TRUE(decode_watch_event(R"({"type":"SURPRISE","object":{}})", &doc, &ev, &error));
  EXPECT_EQ(ev.type, EventType::Unknown);
  EXPECT_EQ(ev.type_text, "SURPRISE");

  for (const char* bad :
       {"", "{", "null", "[]", "{\"type\":1,\"object\":{}}", "{\"object\":{}}",
        "{\"type\":\"ADDED\"}", "{\"type\":\"ADDED\",\"object\":[]}",
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}",
        "{\"type\":\"ADDED\",\"object\":{}} x", "\xff\xfe",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":7}}}"}) {
    EXPECT_FALSE(decode_watch_event(bad, &doc, &ev, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TEST(KubeObjects, ParserDropsWhatIsNotRead) {
  json doc;
  std::string error;
  const json pod = kube_fixtures::pod_json(PodSpec());
  ASSERT_TRUE(parse_json(pod.dump(), &doc, &error));
  EXPECT_FALSE(doc["metadata"].contains("managedFields"));
  EXPECT_FALSE(doc["metadata"].contains("annotations"));
  EXPECT_TRUE(doc["metadata"].contains("labels"));
  EXPECT_TRUE(doc["metadata"].contains("ownerReferences"));
  EXPECT_FALSE(doc["spec"].contains("containers"));
  EXPECT_TRUE(doc["spec"].contains("nodeName"));
  EXPECT_FALSE(doc["status"].contains("conditions"));
  EXPECT_TRUE(doc["status"].contains("podIPs"));
  // labels named like filtered objects are labels like any other
  json j = pod;
  j["metadata"]["labels"]["spec"] = "s";
  j["metadata"]["labels"]["managedFields"] = "m";
  ASSERT_TRUE(parse_json(j.dump(), &doc, &error));
  EXPECT_EQ(doc["metadata"]["labels"]["spec"], "s");
  EXPECT_EQ(doc["metadata"]["labels"]["managedFields"], "m");
  // the same in a list and in a watch event
  const json list = {{"kind", "PodList"},
                     {"metadata", {{"resourceVersion", "9"}, {"continue", "c"}}},
                     {"items", json::array({pod, pod})}};
  ListPage page;
  ASSERT_TRUE(decode_list(list.dump(), &doc, &page, &error)) << error;
  EXPECT_EQ(page.resource_version, "9");
  EXPECT_EQ(page.continue_token, "c");
  ASSERT_NE(page.items, nullptr);
  ASSERT_EQ(page.items->size(), 2u);
  EXPECT_FALSE((*page.items)[1]["spec"].contains("containers"));
  EXPECT_TRUE((*page.items)[1]["status"].contains("startTime"));
  // a node keeps its addresses, not its images
  ASSERT_TRUE(parse_json(kube_fixtures::node_json("n", {"1.2.3.4"}).dump(), &doc, &error));
  EXPECT_TRUE(doc["status"].contains("addresses"));
  EXPECT_FALSE(doc["status"].contains("images"));
}

TEST(KubeObjects, DeepNestingIsDroppedNotFatal) {
  std::string deep =
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"u\",\"name\":\"n\","
      "\"namespace\":\"d\"},\"x\":";
  for (int i = 0; i < 100000; i++) deep += "[";
  for (int i = 0; i < 100000; i++) deep += "]";
  deep += "}}";
  json doc;
  WatchEvent ev;
  std::string error;
  ASSERT_TRUE(decode_watch_event(deep, &doc, &ev, &error)) << error;
  Pod pod;
  EXPECT_TRUE(decode_pod(*ev.object, &pod, &error)) << error;
}

TEST(KubeObjects, Lists) {
  json doc;
  ListPage page;
  std::string error;
  ASSERT_TRUE(decode_list(R"({"kind":"PodList","metadata":{"resourceVersion":"5"},"items":null})",
                          &doc, &page, &error));
  EXPECT_EQ(page.items, nullptr);
  EXPECT_EQ(page.continue_token, "");
  ASSERT_TRUE(decode_list(R"({"metadata":{"resourceVersion":"5","continue":""},"items":[]})", &doc,
                          &page, &error));
  ASSERT_NE(page.items, nullptr);
  EXPECT_TRUE(page.items->empty());
  for (const char* bad : {"", "[]", "{}", R"({"metadata":{},"items":{}})",
                          R"({"metadata":{"resourceVersion":1}})", "{\"metadata\":{}"})
    EXPECT_FALSE(decode_list(bad, &doc, &page, &error)) << bad;
}

TEST(KubeObjects, StatusFromBodies) {
  ApiStatus st = status_from_body(
      403,
      R"({"kind":"Status","status":"Failure","message":"pods is forbidden: User \"x\" cannot list","reason":"Forbidden","code":403})");
  EXPECT_EQ(st.code, 403);
  EXPECT_EQ(st.reason, "Forbidden");
  EXPECT_EQ(st.message, "pods is forbidden: User \"x\" cannot list");
  st = status_from_body(429, "Too many requests, please try again later.\nmore\n");
  EXPECT_EQ(st.code, 429);
  EXPECT_EQ(st.message, "Too many requests, please try again later.");
  st = status_from_body(504, "");
  EXPECT_EQ(st.code, 504);
  EXPECT_EQ(st.message, "");
  st = status_from_body(500, std::string(5000, 'x') + "\x01\x02");
  EXPECT_LE(st.message.size(), 512u);
  st = status_from_body(410, R"({"kind":"Status","reason":"Expired","code":410})");
  EXPECT_TRUE(st.expired());
}

TEST(KubeObjects, LabelsJsonIsEscapedAndBounded) {
  std::vector<std::pair<std::string, std::string>> labels = {{"a\"b", "c\\d\n"}, {"e", "\x01"}};
  EXPECT_EQ(labels_to_json(labels), R"({"a\"b":"c\\d\n","e":"\u0001"})");
  labels.clear();
  for (int i = 0; i < 2000; i++)
    labels.emplace_back("key" + std::to_string(i), std::string(60, 'v'));
  const std::string j = labels_to_json(labels);
  EXPECT_LE(j.size(), kMaxLabelsJson);
  json parsed;
  EXPECT_NO_THROW(parsed = json::parse(j));
  EXPECT_EQ(labels_to_json({}), "{}");
}

}  // namespace
