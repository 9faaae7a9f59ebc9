#include "kube/api_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/c_boundary.h"

namespace ebpfc::kube {

namespace {

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

bool same_text(const char* a, const char* b) {
  return (a == nullptr || b == nullptr) ? a == b : std::strcmp(a, b) == 0;
}

bool same_resources(const std::vector<WatchedResource>& a, const std::vector<WatchedResource>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    const ResourceSpec &x = a[i].spec, &y = b[i].spec;
    if (!same_text(x.name, y.name) || x.path != y.path || !same_text(x.accept, y.accept) ||
        x.query != y.query || x.profile != y.profile || a[i].handler != b[i].handler ||
        a[i].enabled != b[i].enabled)
      return false;
  }
  return true;
}

}  // namespace

// The easy handle of one resource, reused for each of its requests.
struct ApiClient::Transfer final : CurlDriver::Transfer {
  explicit Transfer(ApiClient& c, size_t i) : client(c), index(i) {
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

  ApiClient& client;
  size_t index;
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

ApiClient::ApiClient(const KubeConfig& config, const ApiClientOptions& options,
                     std::vector<WatchedResource> resources)
    : config_(config),
      options_(options),
      resources_(std::move(resources)),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()),
      token_(config.token_file, options.token_reload_ns) {
  driver_.set_block_signals(config_.enabled && host_is_name(config_.api_url));
  reset_reflectors();
  // The first run/tick starts the lists: make fd() readable at once.
  driver_.set_wakeup(config_.enabled ? 0 : UINT64_MAX);
}

void ApiClient::reset_reflectors() {
  reflectors_.clear();
  transfers_.clear();
  for (size_t i = 0; i < resources_.size(); i++) {
    reflectors_.push_back(std::make_unique<Reflector>(resources_[i].spec, options_.reflector,
                                                      *resources_[i].handler, counters_, rng_));
    transfers_.push_back(std::make_unique<Transfer>(*this, i));
  }
}

void ApiClient::drop_transfers() {
  for (auto& t : transfers_) {
    if (!t->active) continue;
    driver_.remove(t->easy);
    t->active = false;
  }
}

void ApiClient::reconfigure(const KubeConfig& config) {
  if (config.enabled == config_.enabled && config.api_url == config_.api_url &&
      config.token_file == config_.token_file && config.ca_file == config_.ca_file)
    return;
  drop_transfers();
  config_ = config;
  token_ = TokenFile(config_.token_file, options_.token_reload_ns);
  driver_.set_block_signals(config_.enabled && host_is_name(config_.api_url));
  reset_reflectors();
  driver_.set_wakeup(config_.enabled ? 0 : UINT64_MAX);
}

void ApiClient::set_resources(std::vector<WatchedResource> resources) {
  if (same_resources(resources, resources_)) return;
  drop_transfers();
  resources_ = std::move(resources);
  reset_reflectors();
  driver_.set_wakeup(config_.enabled ? 0 : UINT64_MAX);
}

ApiClient::~ApiClient() { drop_transfers(); }

void ApiClient::set_options(const ApiClientOptions& options) {
  options_ = options;
  for (auto& r : reflectors_) r->set_options(options.reflector);
  token_ = TokenFile(config_.token_file, options.token_reload_ns);
}

void ApiClient::note_error(const std::string& message, int64_t unix_us) {
  last_error_ = message;
  last_error_us_ = unix_us;
}

void ApiClient::reload_token(const Instant& now, bool force) {
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

size_t ApiClient::on_header(char* data, size_t size, size_t n, void* userp) {
  Transfer* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  // libcurl's frames are C: an exception ends the transfer here instead.
  return c_callback(size_t{0}, nullptr, [&] {
    t->parse_header(std::string_view(data, len));
    return len;
  });
}

void ApiClient::Transfer::parse_header(std::string_view line) {
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

size_t ApiClient::on_write(char* data, size_t size, size_t n, void* userp) {
  Transfer* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  // libcurl's frames are C: an exception ends the transfer here instead
  // (a zero return: libcurl ends it with CURLE_WRITE_ERROR).
  CallbackError caught;
  const size_t taken = c_callback(size_t{0}, &caught, [&] {
    t->deliver_status();
    return t->client.reflectors_[t->index]->on_body(data, len, t->client.now_) ? len : 0;
  });
  if (taken == len) return len;
  t->aborted = true;
  if (caught.caught) {
    c_callback(0, nullptr, [&] {
      t->client.note_error(std::string(t->client.resources_[t->index].spec.name) +
                               ": stopped a transfer: " + caught.message,
                           t->client.now_.unix_us);
      return 0;
    });
  }
  return 0;
}

void ApiClient::start(size_t i, const Instant& now) {
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
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &ApiClient::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &ApiClient::on_header);
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

void ApiClient::transfer_done(Transfer& t, CURLcode rc) {
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

uint64_t ApiClient::next_deadline_ns() const {
  uint64_t at = UINT64_MAX;
  if (!config_.enabled) return at;
  if (token_.enabled()) at = std::min(at, token_.next_due_ns());
  for (size_t i = 0; i < resources_.size(); i++) {
    if (!resources_[i].enabled) continue;
    if (!reflectors_[i]->busy()) at = std::min(at, reflectors_[i]->due_ns());
  }
  return at;
}

void ApiClient::run(const Instant& now) {
  now_ = now;
  driver_.run();
}

void ApiClient::tick(const Instant& now, uint64_t extra_deadline_ns) {
  now_ = now;
  if (config_.enabled) {
    reload_token(now, false);
    for (size_t i = 0; i < resources_.size(); i++)
      if (resources_[i].enabled && reflectors_[i]->due(now.mono_ns)) start(i, now);
  }
  // A request that could not even be added fails at once: its back-off
  // deadline is in the future, so this does not loop.
  driver_.set_wakeup(std::min(next_deadline_ns(), extra_deadline_ns));
}

void ApiClient::status(KubeStatus* s) const {
  std::memset(s, 0, sizeof(*s));
  bool any_failing = false, all_synced = true;
  for (size_t i = 0; i < resources_.size(); i++) {
    if (!resources_[i].enabled) continue;
    any_failing = any_failing || reflectors_[i]->failing();
    all_synced = all_synced && reflectors_[i]->synced();
  }
  const Reflector* first = reflectors_.empty() ? nullptr : reflectors_.front().get();
  if (!config_.enabled || first == nullptr)
    s->state = KubeState::Disabled;
  else if (!first->synced())
    s->state = first->failing() ? KubeState::Failing : KubeState::Syncing;
  else if (any_failing)
    s->state = KubeState::Stale;
  else if (!all_synced)
    s->state = KubeState::Syncing;
  else
    s->state = KubeState::Synced;
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
