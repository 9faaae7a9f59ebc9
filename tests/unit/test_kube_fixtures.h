// test_kube_fixtures.h - Kubernetes objects as the API sends them, for the
// tests of extension/kube.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube/kube_objects.h"

namespace kube_fixtures {

using nlohmann::json;

struct PodSpec {
  std::string name = "web-7d4b9c6f5d-abcde";
  std::string ns = "default";
  std::string uid = "uid-1";
  std::string node = "node-a";
  std::string phase = "Running";
  std::vector<std::string> ips = {"10.0.0.5"};
  bool host_network = false;
  std::string owner_kind = "ReplicaSet";
  std::string owner_name = "web-7d4b9c6f5d";
  std::string owner_uid = "rs-uid-1";
  std::string template_hash = "7d4b9c6f5d";
  std::string created = "2024-05-01T12:00:00Z";
  std::string started = "2024-05-01T12:00:01Z";
  std::string rv = "100";
};

inline json pod_json(const PodSpec& p) {
  json labels = json::object();
  labels["app"] = "web";
  if (!p.template_hash.empty()) labels["pod-template-hash"] = p.template_hash;
  json meta = {{"name", p.name},
               {"namespace", p.ns},
               {"uid", p.uid},
               {"resourceVersion", p.rv},
               {"creationTimestamp", p.created},
               {"labels", labels},
               {"annotations", {{"big", std::string(100, 'a')}}},
               {"managedFields", json::array({{{"manager", "kubelet"}}})}};
  if (!p.owner_kind.empty())
    meta["ownerReferences"] = json::array({{{"apiVersion", "apps/v1"},
                                            {"kind", p.owner_kind},
                                            {"name", p.owner_name},
                                            {"uid", p.owner_uid},
                                            {"controller", true},
                                            {"blockOwnerDeletion", true}}});
  json spec = {{"nodeName", p.node},
               {"containers", json::array({{{"name", "c"}, {"image", "nginx"}}})}};
  if (p.host_network) spec["hostNetwork"] = true;
  json status = {{"phase", p.phase}, {"conditions", json::array()}};
  if (!p.ips.empty()) {
    status["podIP"] = p.ips[0];
    json ips = json::array();
    for (const auto& ip : p.ips) ips.push_back({{"ip", ip}});
    status["podIPs"] = ips;
  }
  if (!p.started.empty()) status["startTime"] = p.started;
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata", meta},
          {"spec", spec},
          {"status", status}};
}

inline ebpfc::kube::Pod pod(const PodSpec& p) {
  ebpfc::kube::Pod out;
  std::string error;
  if (!ebpfc::kube::decode_pod(pod_json(p), &out, &error)) throw std::runtime_error(error);
  return out;
}

inline json replicaset_json(const std::string& name, const std::string& uid,
                            const std::string& deployment, const std::string& ns = "default") {
  json meta = {{"name", name}, {"namespace", ns}, {"uid", uid}, {"resourceVersion", "7"}};
  if (!deployment.empty())
    meta["ownerReferences"] = json::array({{{"kind", "Deployment"},
                                            {"name", deployment},
                                            {"uid", "d-" + uid},
                                            {"controller", true}}});
  json tmpl = {{"metadata", {{"labels", {{"a", "b"}}}}}};
  json spec = {{"replicas", 3}, {"template", tmpl}};
  return {{"kind", "ReplicaSet"}, {"metadata", meta}, {"spec", spec}};
}

inline json node_json(const std::string& name, const std::vector<std::string>& internal_ips,
                      const std::string& uid = "node-uid") {
  json addrs = json::array();
  for (const auto& ip : internal_ips) addrs.push_back({{"type", "InternalIP"}, {"address", ip}});
  addrs.push_back({{"type", "Hostname"}, {"address", name}});
  addrs.push_back({{"type", "ExternalIP"}, {"address", "203.0.113.9"}});
  return {{"kind", "Node"},
          {"metadata",
           {{"name", name},
            {"uid", uid},
            {"resourceVersion", "5"},
            {"creationTimestamp", "2024-01-01T00:00:00Z"}}},
          {"status", {{"addresses", addrs}, {"images", json::array({{{"names", {"x"}}}})}}}};
}

inline ebpfc::kube::IpAddr ip(const char* text) {
  ebpfc::kube::IpAddr a{};
  if (!ebpfc::kube::parse_ip(text, &a)) throw std::runtime_error(text);
  return a;
}

}  // namespace kube_fixtures
