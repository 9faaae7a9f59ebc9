#include "kube/kube_client.h"

#include <cstring>

namespace ebpfc::kube {

namespace {

const ResourceSpec kSpecs[kResources] = {
    {"pods", "/api/v1/pods", nullptr},
    // Only metadata is needed: the server then leaves out the pod template.
    {"replicasets", "/apis/apps/v1/replicasets",
     "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"},
    {"nodes", "/api/v1/nodes", nullptr},
};

}  // namespace

const char* resource_name(Resource r) { return kSpecs[static_cast<int>(r)].name; }

// Applies one resource's objects to the cache.
struct KubeClient::Handler final : ResourceHandler {
  Handler(Resource r, PodCache& c) : resource(r), cache(c) {}

  void begin_list() override { cache.begin_resync(kind()); }
  void end_list(const Instant& now) override { cache.end_resync(kind(), now.unix_us); }

  bool apply(EventType type, const nlohmann::json& object, const Instant& now,
             std::string* error) override {
    switch (resource) {
      case Resource::Pods: {
        if (!decode_pod(object, &pod, error)) return false;
        if (type == EventType::Deleted) {
          cache.delete_pod(pod.meta.uid, now.unix_us);
          return true;
        }
        return cache.upsert_pod(pod, now.unix_us);
      }
      case Resource::ReplicaSets: {
        if (!decode_owner(object, "ReplicaSet", &owner, error)) return false;
        if (type == EventType::Deleted) {
          cache.delete_owner(owner.uid);
          return true;
        }
        return cache.upsert_owner(owner);
      }
      case Resource::Nodes: {
        if (!decode_node(object, &node, error)) return false;
        if (type == EventType::Deleted) {
          cache.delete_node(node.name, now.unix_us);
          return true;
        }
        return cache.upsert_node(node, now.unix_us);
      }
    }
    return false;
  }

  ResourceKind kind() const {
    return resource == Resource::Pods          ? ResourceKind::Pods
           : resource == Resource::ReplicaSets ? ResourceKind::Owners
                                               : ResourceKind::Nodes;
  }

  Resource resource;
  PodCache& cache;
  // Reused between objects: their vectors and strings keep their capacity.
  Pod pod;
  OwnerInfo owner;
  Node node;
};

ApiClientOptions KubeClient::api_options(const KubeClientOptions& options) {
  ApiClientOptions o;
  o.reflector = options.reflector;
  o.token_reload_ns = options.token_reload_ns;
  o.connect_timeout_s = options.connect_timeout_s;
  o.seed = options.seed;
  o.user_agent = options.user_agent;
  return o;
}

std::vector<WatchedResource> KubeClient::watched() {
  std::vector<WatchedResource> out;
  for (int i = 0; i < kResources; i++) {
    WatchedResource w{kSpecs[i], handlers_[i].get(), true};
    if (i == static_cast<int>(Resource::ReplicaSets)) w.enabled = options_.watch_replicasets;
    if (i == static_cast<int>(Resource::Nodes)) w.enabled = options_.watch_nodes;
    out.push_back(std::move(w));
  }
  return out;
}

KubeClient::KubeClient(const KubeConfig& config, PodCache& cache, const KubeClientOptions& options)
    : cache_(cache), options_(options) {
  for (int i = 0; i < kResources; i++)
    handlers_[i] = std::make_unique<Handler>(static_cast<Resource>(i), cache_);
  api_ = std::make_unique<ApiClient>(config, api_options(options_), watched());
}

KubeClient::~KubeClient() = default;

void KubeClient::reconfigure(const KubeConfig& config) {
  const bool same =
      config.enabled == api_->config().enabled && config.api_url == api_->config().api_url &&
      config.token_file == api_->config().token_file && config.ca_file == api_->config().ca_file;
  if (same) return;
  api_->reconfigure(config);
  synced_at_us_ = 0;
}

void KubeClient::set_options(const KubeClientOptions& options) {
  options_ = options;
  api_->set_options(api_options(options_));
  api_->set_resources(watched());
}

void KubeClient::on_ready(const Instant& now) {
  api_->run(now);
  tick(now);
}

void KubeClient::tick(const Instant& now) {
  if (now.mono_ns >= next_expire_ns_) {
    cache_.expire(now.unix_us);
    next_expire_ns_ = now.mono_ns + options_.expire_interval_ns;
  }
  api_->tick(now, next_expire_ns_);
  KubeStatus s;
  status(&s);
  if (s.state == KubeState::Synced) synced_at_us_ = now.unix_us;
}

KubeStatus KubeClient::status() const {
  KubeStatus s;
  status(&s);
  return s;
}

void KubeClient::status(KubeStatus* s) const {
  api_->status(s);
  s->pods_known = cache_.pods_known();
  s->nodes_known = cache_.nodes_known();
  s->owners_known = cache_.owners_known();
  s->addresses = cache_.addresses();
  s->synced_at_us = synced_at_us_;
}

}  // namespace ebpfc::kube
