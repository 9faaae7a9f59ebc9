// kube_client.h - the Kubernetes API client of the capture worker: lists
// and watches pods, ReplicaSets (metadata only) and nodes into a PodCache,
// on libcurl's multi interface, driven by the worker's event loop.
//
//   KubeClient client(config, cache);          // throws on setup failure only
//   AddWaitEventToSet(wes, WL_SOCKET_READABLE, client.fd(), ...);
//   loop:
//     wait (timeout: whatever the worker needs; the client's own timers are
//           in client.fd())
//     if client.fd() was readable: client.on_ready(Instant::now());
//     (optionally, every iteration: client.tick(Instant::now()))
//     spans: cache.lookup(addr, span.start_unix_us)
//     pods table: cache.take_changes(records)
//     capture_status(): client.status()
//
// It never blocks (apart from reading the token file, a small local file)
// and starts no thread of its own (see curl_driver.h about libcurl's
// resolver). All cache updates happen inside on_ready()/tick().
//
// PostgreSQL-free.
#pragma once

#include <cstdint>
#include <memory>

#include "kube/api_client.h"
#include "kube/kube_config.h"
#include "kube/kube_status.h"
#include "kube/pod_cache.h"
#include "kube/reflector.h"

namespace ebpfc::kube {

enum class Resource : uint8_t { Pods, ReplicaSets, Nodes };
constexpr int kResources = 3;
const char* resource_name(Resource r);

struct KubeClientOptions {
  ReflectorOptions reflector;
  uint64_t token_reload_ns = 60ull * 1000 * 1000 * 1000;
  long connect_timeout_s = 10;
  bool watch_replicasets = true;
  bool watch_nodes = true;
  uint64_t expire_interval_ns = 1000ull * 1000 * 1000;  // PodCache::expire
  uint64_t seed = 0;                                    // jitter and watch timeouts; 0: random
  const char* user_agent = "ebpf_capture";
};

class KubeClient {
 public:
  // Throws std::runtime_error if libcurl, epoll or timerfd cannot be set up
  // (nothing about the API server is checked here: that is the first
  // on_ready()'s business). A disabled config makes an idle client whose
  // status() is Disabled with config.disabled_reason as last_error: the
  // worker can create one client for its whole life, add fd() to its
  // WaitEventSet once (there is no removing it) and reconfigure() it when
  // the settings change.
  KubeClient(const KubeConfig& config, PodCache& cache,
             const KubeClientOptions& options = KubeClientOptions());
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  // One descriptor for the worker's WaitEventSet (level-triggered):
  // readable when a socket has data or a timer (libcurl's, back-off, token
  // reload, cache expiry) is due.
  int fd() const { return api_->fd(); }

  // fd() was readable: serve sockets, finish transfers, then tick().
  void on_ready(const Instant& now);
  // Timers only: token reload, cache expiry, starting due requests. Cheap;
  // calling it on every loop iteration is fine.
  void tick(const Instant& now);

  KubeStatus status() const;
  void status(KubeStatus* out) const;

  const Reflector* reflector(Resource r) const { return api_->reflector(static_cast<int>(r)); }
  const KubeConfig& config() const { return api_->config(); }
  // Changes timings (tests); takes effect for the next requests.
  void set_options(const KubeClientOptions& options);
  // Another API server, token or CA file (the GUCs changed): open requests
  // are dropped and every resource is listed again from the new server
  // (what the cache held and the new lists do not name is deleted by their
  // resync). fd() stays the same. No-op if nothing changed.
  void reconfigure(const KubeConfig& config);

 private:
  struct Handler;

  static ApiClientOptions api_options(const KubeClientOptions& options);
  std::vector<WatchedResource> watched();

  PodCache& cache_;
  KubeClientOptions options_;
  std::unique_ptr<Handler> handlers_[kResources];
  std::unique_ptr<ApiClient> api_;
  uint64_t next_expire_ns_ = 0;
  int64_t synced_at_us_ = 0;
};

}  // namespace ebpfc::kube
