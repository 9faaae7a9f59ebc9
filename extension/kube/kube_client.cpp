#include "kube/kube_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ebpfc::kube {

namespace {

const ResourceSpec kSpecs[kResources] = {
    {"pods", "/api/v1/pods", nullptr},
    // Only metadata is needed: the server then leaves out the pod template.
    {"replicasets", "/apis/apps/v1/replicasets",
     "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"},
    {"nodes", "/api/v1/nodes", nullptr},
};

bool is_tls_error(CURLcode rc) {
  switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_USE_SSL_FAILED:
      return true;
    default:
      return false;
  }
}

// The host of a URL is a name (not an IP literal): libcurl will resolve it.
bool host_is_name(const std::string& url) {
  size_t b = url.find("://");
  b = b == std::string::npos ? 0 : b + 3;
  size_t e = url.find_first_of("/?#", b);
  std::string host = url.substr(b, e == std::string::npos ? std::string::npos : e - b);
  const size_t at = host.rfind('@');
  if (at != std::string::npos) host = host.substr(at + 1);
  if (!host.empty() && host.front() == '[') return false;
  const size_t colon = host.find(':');
  if (colon != std::string::npos) host = host.substr(0, colon);
  unsigned char buf[4];
  return inet_pton(AF_INET, host.c_str(), buf) != 1;
}

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

// The easy handle of one resource, reused for each of its requests.
struct KubeClient::Transfer final : CurlDriver::Transfer {
  explicit Transfer(KubeClient& c, int i) : client(c), index(i) {
    easy = curl_easy_init();
    if (easy == nullptr) throw std::runtime_error("curl_easy_init failed");
  }
  ~Transfer() override {
    if (headers != nullptr) curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
  }
  void on_done(CURLcode result) override { client.transfer_done(*this, result); }
  void parse_header(std::string_view line);

  // Passes the status line to the reflector, once per response.
  void deliver_status() {
    if (status_sent) return;
    status_sent = true;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    if (code == 0) code = header_code;
    client.reflectors_[index]->on_status(static_cast<int>(code), retry_after_s);
  }

  KubeClient& client;
  int index;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  bool active = false;
  bool status_sent = false;
  bool aborted = false;  // the reflector asked to stop
  int header_code = 0;
  double retry_after_s = -1;
  std::string url;
  char errbuf[CURL_ERROR_SIZE];
};

KubeClient::KubeClient(const KubeConfig& config, PodCache& cache, const KubeClientOptions& options)
    : config_(config),
      cache_(cache),
      options_(options),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()),
      token_(config.token_file, options.token_reload_ns) {
  driver_.set_block_signals(config_.enabled && host_is_name(config_.api_url));
  for (int i = 0; i < kResources; i++) {
    handlers_[i] = std::make_unique<Handler>(static_cast<Resource>(i), cache_);
    transfers_[i] = std::make_unique<Transfer>(*this, i);
  }
  reset_reflectors();
  // The first on_ready/tick starts the lists: make fd() readable at once.
  driver_.set_wakeup(config_.enabled ? 0 : UINT64_MAX);
}

void KubeClient::reset_reflectors() {
  for (int i = 0; i < kResources; i++)
    reflectors_[i] =
        std::make_unique<Reflector>(kSpecs[i], options_.reflector, *handlers_[i], counters_, rng_);
}

void KubeClient::reconfigure(const KubeConfig& config) {
  if (config.enabled == config_.enabled && config.api_url == config_.api_url &&
      config.token_file == config_.token_file && config.ca_file == config_.ca_file)
    return;
  for (auto& t : transfers_) {
    if (!t->active) continue;
    driver_.remove(t->easy);
    t->active = false;
  }
  config_ = config;
  token_ = TokenFile(config_.token_file, options_.token_reload_ns);
  driver_.set_block_signals(config_.enabled && host_is_name(config_.api_url));
  reset_reflectors();
  synced_at_us_ = 0;
  driver_.set_wakeup(config_.enabled ? 0 : UINT64_MAX);
}

KubeClient::~KubeClient() {
  for (auto& t : transfers_)
    if (t && t->active) driver_.remove(t->easy);
}

void KubeClient::set_options(const KubeClientOptions& options) {
  options_ = options;
  for (auto& r : reflectors_) r->set_options(options.reflector);
  token_ = TokenFile(config_.token_file, options.token_reload_ns);
}

void KubeClient::note_error(const std::string& message, int64_t unix_us) {
  last_error_ = message;
  last_error_us_ = unix_us;
}

void KubeClient::reload_token(const Instant& now, bool force) {
  if (!token_.enabled()) return;
  std::string error;
  const TokenFile::Result r = token_.reload(now.mono_ns, force, &error);
  if (r == TokenFile::Result::Failed) {
    counters_.failures[kFailToken]++;
    note_error(error + (token_.token().empty() ? "" : " (keeping the token read before)"),
               now.unix_us);
  } else if (r == TokenFile::Result::Changed) {
    counters_.token_reloads++;
    for (auto& refl : reflectors_) refl->retry_now(now);
  }
}

size_t KubeClient::on_header(char* data, size_t size, size_t n, void* userp) {
  Transfer* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  try {
    t->parse_header(std::string_view(data, len));
  } catch (...) {
    return 0;  // no exception may cross libcurl's C frames
  }
  return len;
}

void KubeClient::Transfer::parse_header(std::string_view line) {
  const int code = status_line_code(line);
  if (code >= 0) {
    // A new response (after a 100 Continue, say): forget the last one's.
    header_code = code;
    retry_after_s = -1;
    return;
  }
  const double after = retry_after_seconds(line, static_cast<double>(client.now_.unix_us) / 1e6);
  if (after >= 0) retry_after_s = after;
}

size_t KubeClient::on_write(char* data, size_t size, size_t n, void* userp) {
  Transfer* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  // No exception may cross libcurl's C frames.
  try {
    t->deliver_status();
    if (!t->client.reflectors_[t->index]->on_body(data, len, t->client.now_)) {
      t->aborted = true;
      return 0;  // libcurl ends the transfer with CURLE_WRITE_ERROR
    }
    return len;
  } catch (const std::exception& e) {
    t->client.note_error(std::string(resource_name(static_cast<Resource>(t->index))) +
                             ": stopped a transfer: " + e.what(),
                         t->client.now_.unix_us);
  } catch (...) {
  }
  t->aborted = true;
  return 0;
}

void KubeClient::start(int i, const Instant& now) {
  Transfer& t = *transfers_[i];
  Reflector& r = *reflectors_[i];
  const HttpRequest req = r.begin(now);
  t.status_sent = false;
  t.aborted = false;
  t.header_code = 0;
  t.retry_after_s = -1;
  t.errbuf[0] = '\0';
  t.url = config_.api_url + req.path_and_query;
  if (t.headers != nullptr) {
    curl_slist_free_all(t.headers);
    t.headers = nullptr;
  }
  t.headers = curl_slist_append(
      t.headers,
      (std::string("Accept: ") + (req.accept ? req.accept : "application/json")).c_str());
  if (!token_.token().empty())
    t.headers = curl_slist_append(t.headers, ("Authorization: Bearer " + token_.token()).c_str());

  CURL* e = t.easy;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, t.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);
  curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &KubeClient::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &KubeClient::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, req.timeout_s);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  if (!req.watch) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
  if (!config_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_file.c_str());
  std::string error;
  if (!driver_.add(e, &t, &error)) {
    TransferResult res{TransferResult::Kind::Network, error};
    r.on_done(res, now);
    note_error(r.last_error(), now.unix_us);
    return;
  }
  t.active = true;
}

void KubeClient::transfer_done(Transfer& t, CURLcode rc) {
  t.active = false;
  t.deliver_status();
  TransferResult res;
  if (rc == CURLE_OK) {
    res.kind = TransferResult::Kind::Ok;
  } else if (rc == CURLE_WRITE_ERROR && t.aborted) {
    res.kind = TransferResult::Kind::Aborted;
  } else {
    res.kind = rc == CURLE_OPERATION_TIMEDOUT ? TransferResult::Kind::Timeout
               : is_tls_error(rc)             ? TransferResult::Kind::Tls
                                              : TransferResult::Kind::Network;
    res.message = t.errbuf[0] != '\0' ? std::string(t.errbuf) : curl_easy_strerror(rc);
  }
  Reflector& r = *reflectors_[t.index];
  r.on_done(res, now_);
  if (r.last_unauthorized() && r.failing()) reload_token(now_, true);
}

void KubeClient::start_due(const Instant& now) {
  if (!config_.enabled) return;
  for (int i = 0; i < kResources; i++) {
    if (i == static_cast<int>(Resource::ReplicaSets) && !options_.watch_replicasets) continue;
    if (i == static_cast<int>(Resource::Nodes) && !options_.watch_nodes) continue;
    if (reflectors_[i]->due(now.mono_ns)) start(i, now);
  }
}

uint64_t KubeClient::next_deadline_ns() const {
  uint64_t at = next_expire_ns_;
  if (!config_.enabled) return at;
  if (token_.enabled()) at = std::min(at, token_.next_due_ns());
  for (int i = 0; i < kResources; i++) {
    if (i == static_cast<int>(Resource::ReplicaSets) && !options_.watch_replicasets) continue;
    if (i == static_cast<int>(Resource::Nodes) && !options_.watch_nodes) continue;
    if (!reflectors_[i]->busy()) at = std::min(at, reflectors_[i]->due_ns());
  }
  return at;
}

void KubeClient::on_ready(const Instant& now) {
  now_ = now;
  driver_.run();
  tick(now);
}

void KubeClient::tick(const Instant& now) {
  now_ = now;
  if (config_.enabled) reload_token(now, false);
  if (now.mono_ns >= next_expire_ns_) {
    cache_.expire(now.unix_us);
    next_expire_ns_ = now.mono_ns + options_.expire_interval_ns;
  }
  start_due(now);
  // A request that could not even be added fails at once: its back-off
  // deadline is in the future, so this does not loop.
  driver_.set_wakeup(next_deadline_ns());
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
  std::memset(s, 0, sizeof(*s));
  const Reflector& pods = *reflectors_[static_cast<int>(Resource::Pods)];
  bool any_failing = false, all_synced = true;
  for (int i = 0; i < kResources; i++) {
    if (i == static_cast<int>(Resource::ReplicaSets) && !options_.watch_replicasets) continue;
    if (i == static_cast<int>(Resource::Nodes) && !options_.watch_nodes) continue;
    any_failing = any_failing || reflectors_[i]->failing();
    all_synced = all_synced && reflectors_[i]->synced();
  }
  if (!config_.enabled)
    s->state = KubeState::Disabled;
  else if (!pods.synced())
    s->state = pods.failing() ? KubeState::Failing : KubeState::Syncing;
  else if (any_failing)
    s->state = KubeState::Stale;
  else if (!all_synced)
    s->state = KubeState::Syncing;
  else
    s->state = KubeState::Synced;
  s->pods_known = cache_.pods_known();
  s->nodes_known = cache_.nodes_known();
  s->owners_known = cache_.owners_known();
  s->addresses = cache_.addresses();
  s->synced_at_us = synced_at_us_;
  // The most recent error of the client and its reflectors.
  const std::string* msg = config_.enabled ? &last_error_ : &config_.disabled_reason;
  int64_t at = config_.enabled ? last_error_us_ : 0;
  for (const auto& r : reflectors_) {
    if (config_.enabled && r->last_error_us() > at) {
      at = r->last_error_us();
      msg = &r->last_error();
    }
  }
  s->last_error_us = at;
  const size_t n = std::min(msg->size(), static_cast<size_t>(kKubeErrorLen - 1));
  std::memcpy(s->last_error, msg->data(), n);
  // Do not cut a UTF-8 character in two.
  size_t end = n;
  while (end > 0 && end < msg->size() && (static_cast<unsigned char>((*msg)[end]) & 0xc0) == 0x80)
    end--;
  s->last_error[end] = '\0';
  s->counters = counters_;
}

}  // namespace ebpfc::kube
