#include "kube/hub_discovery.h"

#include <nlohmann/json.hpp>

namespace ebpfc::kube {

using nlohmann::json;

namespace {

// Longest database name PostgreSQL accepts (NAMEDATALEN - 1).
constexpr size_t kMaxDatabaseName = 63;

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// The container port named "postgres" (the first one, in container order),
// or 0.
int postgres_port(const json& object) {
  const json* spec = member(object, "spec");
  const json* containers = spec ? member(*spec, "containers") : nullptr;
  if (containers == nullptr || !containers->is_array()) return 0;
  for (const json& c : *containers) {
    const json* ports = member(c, "ports");
    if (ports == nullptr || !ports->is_array()) continue;
    for (const json& p : *ports) {
      const json* name = member(p, "name");
      const json* number = member(p, "containerPort");
      if (name == nullptr || !name->is_string() || number == nullptr ||
          !number->is_number_integer())
        continue;
      if (name->get_ref<const std::string&>() != kPostgresPortName) continue;
      const int64_t n = number->get<int64_t>();
      if (n >= 1 && n <= 65535) return static_cast<int>(n);
    }
  }
  return 0;
}

std::string database_annotation(const json& object) {
  const json* meta = member(object, "metadata");
  const json* annotations = meta ? member(*meta, "annotations") : nullptr;
  const json* db = annotations ? member(*annotations, kDatabaseAnnotation) : nullptr;
  if (db == nullptr || !db->is_string()) return "";
  const std::string& s = db->get_ref<const std::string&>();
  if (s.empty() || s.size() > kMaxDatabaseName || s.find('\0') != std::string::npos) return "";
  return s;
}

}  // namespace

bool decode_database_pod(const json& object, DatabasePod* out, std::string* error) {
  Pod pod;
  if (!decode_pod(object, &pod, error)) return false;
  try {
    *out = DatabasePod{};
    out->uid = std::move(pod.meta.uid);
    out->ns = std::move(pod.meta.ns);
    out->name = std::move(pod.meta.name);
    out->node = std::move(pod.node);
    out->phase = pod.phase;
    out->terminating = pod.meta.deletion_requested_us != kNoTime;
    out->created_us = pod.meta.created_us;
    if (!pod.ips.empty()) {
      char text[46];
      out->address.assign(text, format_ip(pod.ips.front(), text));
    }
    const int port = postgres_port(object);
    out->port = port != 0 ? port : kDefaultPostgresPort;
    out->database = database_annotation(object);
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad pod: ") + e.what();
    return false;
  }
}

ResourceSpec database_pods_spec(std::string_view ns, std::string_view label_selector) {
  ResourceSpec spec{"database pods", "/api/v1/pods", nullptr};
  if (!ns.empty()) spec.path = "/api/v1/namespaces/" + url_escape(ns) + "/pods";
  if (!label_selector.empty()) spec.query = "labelSelector=" + url_escape(label_selector);
  spec.profile = ParseProfile::DatabasePods;
  return spec;
}

void DatabasePodSet::begin_list() {
  listing_ = true;
  listed_.clear();
}

bool DatabasePodSet::apply(EventType type, const json& object, const Instant& now,
                           std::string* error) {
  (void)now;
  if (!decode_database_pod(object, &pod_, error)) return false;
  if (listing_) listed_[pod_.uid] = true;
  if (type == EventType::Deleted) {
    if (pods_.erase(pod_.uid) > 0) generation_++;
    return true;
  }
  auto it = pods_.find(pod_.uid);
  if (it == pods_.end()) {
    pods_.emplace(pod_.uid, pod_);
    generation_++;
    return true;
  }
  const DatabasePod& old = it->second;
  if (old.node != pod_.node || old.address != pod_.address || old.port != pod_.port ||
      old.database != pod_.database || old.phase != pod_.phase ||
      old.terminating != pod_.terminating || old.ns != pod_.ns || old.name != pod_.name ||
      old.created_us != pod_.created_us) {
    it->second = pod_;
    generation_++;
  }
  return true;
}

void DatabasePodSet::end_list(const Instant& now) {
  (void)now;
  for (auto it = pods_.begin(); it != pods_.end();) {
    if (listed_.count(it->first) == 0) {
      it = pods_.erase(it);
      generation_++;
    } else {
      ++it;
    }
  }
  listed_.clear();
  listing_ = false;
  if (!synced_) generation_++;
  synced_ = true;
}

void DatabasePodSet::set_default_database(std::string name) {
  if (name == default_database_) return;
  default_database_ = std::move(name);
  generation_++;
}

void DatabasePodSet::clear() {
  pods_.clear();
  listed_.clear();
  listing_ = false;
  synced_ = false;
  generation_++;
}

std::vector<HubTarget> DatabasePodSet::targets() const {
  std::map<std::string, const DatabasePod*> by_node;
  for (const auto& [uid, p] : pods_) {
    if (p.phase != PodPhase::Running || p.terminating || p.address.empty() || p.node.empty())
      continue;
    const DatabasePod*& best = by_node[p.node];
    // the newer pod of a node wins; the uid breaks a tie, so the choice is stable
    if (best == nullptr || p.created_us > best->created_us ||
        (p.created_us == best->created_us && p.uid > best->uid))
      best = &p;
  }
  std::vector<HubTarget> out;
  out.reserve(by_node.size());
  for (const auto& [node, p] : by_node) {
    HubTarget t;
    t.uid = p->uid;
    t.pod_namespace = p->ns;
    t.pod_name = p->name;
    t.node = node;
    t.host = p->address;
    t.port = p->port;
    t.database = p->database.empty() ? default_database_ : p->database;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace ebpfc::kube
