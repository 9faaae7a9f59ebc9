// api_client.h - lists and watches Kubernetes resources on libcurl's multi
// interface, driven by a PostgreSQL background worker's event loop: the
// transport, the bearer token and one Reflector per resource, feeding the
// ResourceHandler the caller gives for it. What the objects mean is the
// handlers' business: the capture's KubeClient (kube_client.h) feeds its
// pod cache, the hub's discovery (hub_discovery.h) the set of node
// databases.
//
//   ApiClient api(config, options, {{spec, &handler}, ...});
//   AddWaitEventToSet(wes, WL_SOCKET_READABLE, api.fd(), ...);
//   loop: if api.fd() was readable: api.run(); api.tick(now, my_deadline_ns);
//
// It never blocks (apart from reading the token file, a small local file)
// and starts no thread of its own (see curl_driver.h about libcurl's
// resolver).
//
// PostgreSQL-free.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kube/curl_driver.h"
#include "kube/kube_config.h"
#include "kube/kube_status.h"
#include "kube/reflector.h"
#include "kube/token_file.h"

namespace ebpfc::kube {

struct ApiClientOptions {
  ReflectorOptions reflector;
  uint64_t token_reload_ns = 60ull * 1000 * 1000 * 1000;
  long connect_timeout_s = 10;
  uint64_t seed = 0;  // jitter and watch timeouts; 0: random
  const char* user_agent = "ebpf_capture";
};

// One resource to list and watch, and where its objects go (the handler
// outlives the client).
struct WatchedResource {
  ResourceSpec spec;
  ResourceHandler* handler = nullptr;
  bool enabled = true;  // false: never requested, left out of the state
};

class ApiClient {
 public:
  // Throws std::runtime_error if libcurl, epoll or timerfd cannot be set up.
  // A disabled config makes an idle client (status: Disabled, with
  // config.disabled_reason).
  ApiClient(const KubeConfig& config, const ApiClientOptions& options,
            std::vector<WatchedResource> resources);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Readable (level-triggered) when a socket has data or a timer is due.
  int fd() const { return driver_.fd(); }

  // Serves ready sockets and finishes transfers (call when fd() was
  // readable, before tick()).
  void run(const Instant& now);
  // Token reload, due requests, and the timer: fd() becomes readable at the
  // earliest of the client's deadlines and `extra_deadline_ns` (the
  // caller's own, CLOCK_MONOTONIC; UINT64_MAX: none).
  void tick(const Instant& now, uint64_t extra_deadline_ns = UINT64_MAX);

  // The state of the listed resources (the first one decides between
  // Syncing/Failing and the rest: it is the one that matters), the last
  // error, the counters. The caller fills in what its handlers know.
  void status(KubeStatus* out) const;

  size_t resources() const { return resources_.size(); }
  const Reflector* reflector(size_t i) const { return reflectors_[i].get(); }
  const KubeConfig& config() const { return config_; }
  const Instant& now() const { return now_; }

  // Changes timings (tests); takes effect for the next requests.
  void set_options(const ApiClientOptions& options);
  // Another API server, token or CA file: open requests are dropped and
  // every resource is listed again. No-op if nothing changed.
  void reconfigure(const KubeConfig& config);
  // Other resources to watch (a new label selector, say): requests in flight
  // are dropped and each is listed anew. No-op if the specs are the same.
  void set_resources(std::vector<WatchedResource> resources);

 private:
  struct Transfer;

  void reset_reflectors();
  void drop_transfers();
  void start(size_t i, const Instant& now);
  void reload_token(const Instant& now, bool force);
  void note_error(const std::string& message, int64_t unix_us);
  void transfer_done(Transfer& t, CURLcode rc);
  static size_t on_write(char* data, size_t size, size_t n, void* userp);
  static size_t on_header(char* data, size_t size, size_t n, void* userp);
  uint64_t next_deadline_ns() const;

  KubeConfig config_;
  ApiClientOptions options_;
  std::vector<WatchedResource> resources_;
  std::mt19937_64 rng_;
  CurlDriver driver_;
  TokenFile token_;
  KubeCounters counters_{};
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::vector<std::unique_ptr<Transfer>> transfers_;
  Instant now_{};  // the time of the run/tick in progress
  std::string last_error_;
  int64_t last_error_us_ = 0;
};

}  // namespace ebpfc::kube
