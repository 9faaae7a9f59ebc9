// hub_discovery.h - which node databases a hub reads: the pods of the
// ebpf_capture DaemonSet, found through the Kubernetes API (list + watch
// of the pods matching a label selector in one namespace, ApiClient).
//
// A pod becomes a target when it is Running, not being deleted, and has an
// address: its pod IP, its container port named "postgres" (5432 when no
// container names one), the database in its annotation
// "ebpf-capture.io/database" (else the hub's default) and the node it runs
// on, which names the node in the map (the dedup of requests seen on two
// nodes relies on it). Of two such pods on one node (a pod being replaced),
// the newer wins.
//
// PostgreSQL-free: unit-tested (tests/unit/test_hub_discovery.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kube/kube_objects.h"
#include "kube/reflector.h"

namespace ebpfc::kube {

constexpr int kDefaultPostgresPort = 5432;
constexpr const char* kPostgresPortName = "postgres";
constexpr const char* kDatabaseAnnotation = "ebpf-capture.io/database";

// What the hub needs of a node database's pod.
struct DatabasePod {
  std::string uid;
  std::string ns;
  std::string name;
  std::string node;     // spec.nodeName
  std::string address;  // the first pod IP, as text ("" while it has none)
  int port = kDefaultPostgresPort;
  std::string database;  // the annotation; "" = the hub's default
  PodPhase phase = PodPhase::Unset;
  bool terminating = false;
  int64_t created_us = kNoTime;
};

// Decodes a pod (parsed with ParseProfile::DatabasePods). False with a
// message when it is unusable (no uid, name, ...); a pod without an address
// or a port is usable (not a target yet).
bool decode_database_pod(const nlohmann::json& object, DatabasePod* out, std::string* error);

// A node database the hub reads.
struct HubTarget {
  std::string uid;  // the pod's: names the hub's objects for it
  std::string pod_namespace;
  std::string pod_name;
  std::string node;
  std::string host;
  int port = kDefaultPostgresPort;
  std::string database;
  bool operator==(const HubTarget& o) const {
    return uid == o.uid && pod_namespace == o.pod_namespace && pod_name == o.pod_name &&
           node == o.node && host == o.host && port == o.port && database == o.database;
  }
};

// The path and query of the pods to watch: pods in `ns` ("" = every
// namespace) matching `label_selector` (Kubernetes syntax, "" = all).
ResourceSpec database_pods_spec(std::string_view ns, std::string_view label_selector);

// Keeps the database pods the reflector reports; targets() says which are
// node databases to read now.
class DatabasePodSet final : public ResourceHandler {
 public:
  explicit DatabasePodSet(std::string default_database = "postgres")
      : default_database_(std::move(default_database)) {}

  void begin_list() override;
  bool apply(EventType type, const nlohmann::json& object, const Instant& now,
             std::string* error) override;
  void end_list(const Instant& now) override;

  // Listed at least once: until then targets() says nothing about what is
  // gone, and the hub keeps what it had.
  bool synced() const { return synced_; }
  // Grows whenever the pods changed in a way targets() may show.
  uint64_t generation() const { return generation_; }
  // The targets, by node name (one per node), sorted by node.
  std::vector<HubTarget> targets() const;
  size_t pods() const { return pods_.size(); }
  void set_default_database(std::string name);
  // Forgets everything (a new selector or API server): not synced.
  void clear();

 private:
  std::string default_database_;
  std::map<std::string, DatabasePod> pods_;  // by uid
  std::map<std::string, bool> listed_;       // uids a list in progress named
  bool listing_ = false;
  bool synced_ = false;
  uint64_t generation_ = 0;
  DatabasePod pod_;  // reused
};

}  // namespace ebpfc::kube
