// kube_cache_bench.cpp - the pod cache's memory and lookup time for 10,000
// pods (the figures issue 4 asks for), built with -O2 and no sanitizer.
//
// Memory is what malloc holds for the cache (mallinfo2's in-use bytes
// before and after filling it); lookups are timed over hits and misses.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/kube_objects.h"
#include "kube/pod_cache.h"

using namespace ebpfc::kube;

int main() {
  const int kPods = 10000;
  const int64_t t0 = 1714564800ll * 1000000;
  std::vector<Pod> pods(kPods);
  for (int i = 0; i < kPods; i++) {
    Pod& p = pods[i];
    const std::string rs = "service-" + std::to_string(i / 10) + "-6b8f9c7d5f";
    p.meta.name = rs + "-" + std::to_string(10000 + i);
    p.meta.uid = "4c5a1f3e-8b2d-4e6f-9a0b-" + std::to_string(100000000000ll + i);
    p.meta.ns = "team-" + std::to_string(i % 20);
    p.meta.labels = {{"app", "service-" + std::to_string(i / 10)},
                     {"pod-template-hash", "6b8f9c7d5f"},
                     {"app.kubernetes.io/part-of", "shop"}};
    p.meta.owners.push_back(OwnerRef{"ReplicaSet", rs, "rs-" + std::to_string(i / 10), true});
    p.meta.created_us = t0;
    p.node = "ip-10-1-" + std::to_string(i % 100) + "-17.eu-west-1.compute.internal";
    p.phase = PodPhase::Running;
    p.start_us = t0 + 1000000;
    p.ips = {IpAddr::v4(10, static_cast<uint8_t>(100 + i / 65536),
                        static_cast<uint8_t>(i / 256 % 256), static_cast<uint8_t>(i % 256))};
    IpAddr v6{};
    v6.b[0] = 0xfd;
    v6.b[14] = static_cast<uint8_t>(i >> 8);
    v6.b[15] = static_cast<uint8_t>(i);
    v6.b[13] = 1;
    p.ips.push_back(v6);
  }
  std::vector<OwnerInfo> owners(kPods / 10);
  for (int i = 0; i < kPods / 10; i++) {
    owners[i].uid = "rs-" + std::to_string(i);
    owners[i].name = "service-" + std::to_string(i) + "-6b8f9c7d5f";
    owners[i].ns = "team-" + std::to_string(i % 20);
    owners[i].kind = "ReplicaSet";
    owners[i].controller_kind = "Deployment";
    owners[i].controller_name = "service-" + std::to_string(i);
  }

  for (bool feed : {false, true}) {
    malloc_trim(0);
    const size_t before = mallinfo2().uordblks;
    PodCacheOptions o;
    o.track_changes = feed;
    auto* cache = new PodCache(o);
    for (const OwnerInfo& rs : owners) cache->upsert_owner(rs);
    for (int n = 0; n < 100; n++) {
      Node node;
      node.name = "ip-10-1-" + std::to_string(n) + "-17.eu-west-1.compute.internal";
      node.internal_ips = {IpAddr::v4(192, 168, 0, static_cast<uint8_t>(n))};
      cache->upsert_node(node, t0);
    }
    const auto fill0 = std::chrono::steady_clock::now();
    for (const Pod& p : pods) cache->upsert_pod(p, t0);
    const auto fill1 = std::chrono::steady_clock::now();
    const size_t after = mallinfo2().uordblks;
    std::printf(
        "pod cache, %d pods (2 addresses each), %d ReplicaSets, 100 nodes, change feed %s:\n"
        "  memory %.2f MiB (%zu bytes per pod); filled in %.1f ms\n",
        kPods, kPods / 10, feed ? "pending" : "off",
        static_cast<double>(after - before) / (1 << 20), (after - before) / kPods,
        std::chrono::duration<double, std::milli>(fill1 - fill0).count());
    if (!feed) {
      std::mt19937 rng(1);
      std::vector<IpAddr> probes;
      for (int i = 0; i < 1 << 16; i++) {
        IpAddr a = pods[rng() % kPods].ips[rng() % 2];
        if (i % 4 == 0) a.b[15] ^= 0x5a, a.b[12] = 172;  // mostly misses
        probes.push_back(a);
      }
      size_t found = 0;
      const int rounds = 50;
      const auto l0 = std::chrono::steady_clock::now();
      for (int r = 0; r < rounds; r++)
        for (const IpAddr& a : probes) found += cache->lookup(a.b, t0 + 5000000) != nullptr;
      const auto l1 = std::chrono::steady_clock::now();
      std::printf("  lookup: %.1f ns each (%zu of %zu found)\n",
                  std::chrono::duration<double, std::nano>(l1 - l0).count() /
                      (static_cast<double>(rounds) * probes.size()),
                  found, static_cast<size_t>(rounds) * probes.size());
    }
    delete cache;
  }

  // What a list page costs the worker: a page of 500 pods as a real API
  // server writes them (managedFields, containers, conditions: ~5 KiB
  // each), parsed (dropping what is not read) and decoded.
  std::string page =
      R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[)";
  for (int i = 0; i < 500; i++) {
    if (i) page += ",";
    std::string mf;
    for (int k = 0; k < 12; k++)
      mf +=
          std::string(k ? "," : "") +
          R"({"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2024-05-01T12:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:status":{}}},"f:podIP":{}}}})";
    page +=
        R"({"kind":"Pod","metadata":{"name":"web-5d8f6c7b9-)" + std::to_string(i) +
        R"(","namespace":"shop","uid":"4c5a1f3e-8b2d-4e6f-9a0b-)" + std::to_string(100000 + i) +
        R"(","resourceVersion":"123","creationTimestamp":"2024-05-01T12:00:00Z","labels":{"app":"web","pod-template-hash":"5d8f6c7b9"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2024-05-01T12:00:00Z"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d8f6c7b9","uid":"r","controller":true,"blockOwnerDeletion":true}],"managedFields":[)" +
        mf +
        R"(]},"spec":{"nodeName":"node-1","containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"1"}},"volumeMounts":[{"name":"kube-api-access","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true}]}],"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2024-05-01T12:00:00Z"}],"hostIP":"192.168.0.1","podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"}],"startTime":"2024-05-01T12:00:00Z","containerStatuses":[{"name":"web","ready":true,"restartCount":0,"image":"nginx:1.25","imageID":"docker-pullable://nginx@sha256:0123456789abcdef","containerID":"containerd://0123456789abcdef","started":true,"state":{"running":{"startedAt":"2024-05-01T12:00:00Z"}}}]}})";
  }
  page += "]}";
  const int reps = 20;
  const auto p0 = std::chrono::steady_clock::now();
  size_t decoded = 0;
  for (int r = 0; r < reps; r++) {
    nlohmann::json doc;
    ListPage lp;
    std::string error;
    if (!decode_list(page, &doc, &lp, &error)) return 1;
    Pod pod;
    for (const auto& item : *lp.items) decoded += decode_pod(item, &pod, &error);
  }
  const auto p1 = std::chrono::steady_clock::now();
  std::printf(
      "list page of 500 pods (%.1f MiB of JSON): parsed and decoded in %.1f ms (%zu pods)\n",
      static_cast<double>(page.size()) / (1 << 20),
      std::chrono::duration<double, std::milli>(p1 - p0).count() / reps, decoded / reps);
  return 0;
}
