// otlp_client.h - sends OTLP/HTTP requests, one batch at a time, on
// libcurl's multi interface driven by the worker's event loop (the same
// CurlDriver design as the Kubernetes client: one epoll fd with libcurl's
// sockets and a timerfd, added once to the worker's WaitEventSet).
//
//   Client c;                               // throws only if libcurl/epoll fail
//   AddWaitEventToSet(wes, WL_SOCKET_READABLE, c.fd(), ...);
//   c.configure(options);                   // endpoint, headers file, TLS, ...
//   loop:
//     if c.fd() was readable: c.on_ready(now)
//     Finished f; while (c.take_finished(&f)) -> the batch f.id is done with
//     if (c.wants_batch()) c.send(next batch)
//
// A batch stays with the client until it is delivered or refused for good
// (take_finished); a retryable failure (429, 502, 503, 504, no answer) waits
// for an exponential back-off (1 s doubling to 60 s, jittered) or what the
// endpoint's Retry-After asks (at most 10 minutes), then is sent again. An
// endpoint that hangs costs one request's timeout, never the loop's time:
// nothing here blocks. Memory: the batch held, and at most 64 KiB of an
// answer.
//
// PostgreSQL-free.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "export/otlp_encode.h"
#include "export/otlp_policy.h"
#include "kube/backoff.h"
#include "kube/curl_driver.h"

namespace ebpfc::otlp {

struct ClientOptions {
  std::string endpoint;      // "" : export is off
  std::string headers_file;  // "Name: value" lines, re-read every minute and after a 401/403
  std::string ca_file;       // "" : the system's CAs
  bool verify_tls = true;
  long timeout_ms = 10000;
  long connect_timeout_ms = 5000;
  kube::BackoffPolicy backoff{1000ull * 1000 * 1000, 60ull * 1000 * 1000 * 1000,
                              120ull * 1000 * 1000 * 1000, 0.25};
  uint64_t headers_reload_ns = 60ull * 1000 * 1000 * 1000;
};

struct Batch {
  int64_t id = 0;  // the outbox row
  uint32_t spans = 0;
  Format format = Format::Protobuf;
  Compression compression = Compression::None;
  std::vector<uint8_t> body;
};

struct Finished {
  int64_t id;
  uint32_t spans;
  bool delivered;          // accepted (rejected_spans of them excepted)
  int64_t rejected_spans;  // refused by the endpoint (all of them if !delivered)
};

struct ClientCounters {
  uint64_t requests;        // requests made
  uint64_t retries;         // ... that were retries
  uint64_t exported_spans;  // accepted by the endpoint
  uint64_t failed_spans;    // refused for good (a final error, a partial success's rejects)
};

class Client {
 public:
  explicit Client(uint64_t seed = 0);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int fd() const { return driver_.fd(); }
  // New settings; a request in flight to another endpoint is abandoned and
  // its batch sent again to the new one.
  void configure(const ClientOptions& options, uint64_t now_ns);
  bool enabled() const { return !options_.endpoint.empty(); }

  // No batch is held: send() may take one.
  bool wants_batch() const { return enabled() && state_ == State::Idle; }
  void send(Batch&& batch, uint64_t now_ns);
  // Serves sockets and timers; starts a retry that is due.
  void on_ready(uint64_t now_ns);
  bool take_finished(Finished* out);

  // The id of the batch held (in flight or waiting to be retried), 0 if none.
  int64_t held_id() const { return state_ == State::Idle ? 0 : batch_.id; }
  const char* state_name() const;
  const ClientCounters& counters() const { return counters_; }
  const std::string& last_error() const { return last_error_; }
  uint64_t retry_at_ns() const { return retry_at_ns_; }

  // libcurl callbacks (public for the C trampolines only).
  size_t on_body(const char* data, size_t n);
  void on_header(const char* data, size_t n);
  void on_done(CURLcode rc);

 private:
  enum class State : uint8_t { Idle, Sending, Waiting, Finished };
  class Transfer;

  void start(uint64_t now_ns);
  void reload_headers(uint64_t now_ns, bool force);
  void fail(const std::string& error, double retry_after_s, uint64_t now_ns);

  ClientOptions options_;
  std::string url_;
  kube::CurlDriver driver_;
  CURL* easy_ = nullptr;
  curl_slist* headers_ = nullptr;
  Transfer* transfer_ = nullptr;
  std::vector<std::string> extra_headers_;
  uint64_t headers_due_ns_ = 0;
  State state_ = State::Idle;
  Batch batch_;
  Finished finished_{};
  kube::Backoff backoff_;
  std::mt19937_64 rng_;
  uint64_t retry_at_ns_ = 0;
  bool retrying_ = false;
  std::vector<uint8_t> answer_;
  double retry_after_s_ = -1;
  long header_status_ = 0;
  char errbuf_[CURL_ERROR_SIZE];
  std::string last_error_;
  ClientCounters counters_{};
};

}  // namespace ebpfc::otlp
