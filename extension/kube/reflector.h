// reflector.h - list then watch one resource, the way client-go's
// reflector does it. Pure protocol logic, no I/O: the client starts the
// requests it asks for and feeds it the responses, so every path (paging,
// 410, bookmarks, back-off, Retry-After) is unit-tested without a network.
//
//  - List: GET path?limit=N, then &continue=TOKEN while the page has a
//    continue token (a page may be short or empty; only `continue` means
//    more). A 410 on a continue token restarts the list. The objects of a
//    list replace what the handler held (begin_list/end_list).
//  - Watch: GET path?watch=1&resourceVersion=RV&allowWatchBookmarks=true&
//    timeoutSeconds=T (T random in [300, 600]); each line is an event:
//    ADDED/MODIFIED/DELETED go to the handler, BOOKMARK moves RV, ERROR 410
//    (Expired/Gone) ends the watch and lists again. A watch that ends cleanly
//    is resumed from the last RV at once; one that ended within a second
//    without any event backs off.
//  - Failures (transport, HTTP status, undecodable list) back off
//    exponentially with jitter (backoff.h); a 429 (or 503) with Retry-After
//    waits as long as asked. A failed watch is resumed from the last RV (a
//    too old RV gets 410 and a relist).
//
// resourceVersion is an opaque string: it is only ever echoed back.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "kube/backoff.h"
#include "kube/kube_objects.h"
#include "kube/kube_status.h"
#include "kube/kube_time.h"
#include "kube/line_splitter.h"

namespace ebpfc::kube {

struct ReflectorOptions {
  size_t page_limit = 500;
  int watch_timeout_min_s = 300;
  int watch_timeout_max_s = 600;
  long list_timeout_s = 120;  // a list page must arrive within this
  size_t max_line = LineSplitter::kDefaultMaxLine;
  size_t max_list_body = 64u << 20;  // a bigger page halves the page size
  uint64_t short_watch_ns = 1000ull * 1000 * 1000;
  BackoffPolicy backoff;
};

// Where a reflector's objects go.
class ResourceHandler {
 public:
  virtual ~ResourceHandler() = default;
  // A (re)list starts: what the following list pages do not name is gone.
  virtual void begin_list() = 0;
  // A list item (type Added) or an ADDED/MODIFIED/DELETED event's object.
  // False with a message if the object cannot be used.
  virtual bool apply(EventType type, const nlohmann::json& object, const Instant& now,
                     std::string* error) = 0;
  // The last page of a list was applied.
  virtual void end_list(const Instant& now) = 0;
};

struct ResourceSpec {
  const char* name;    // "pods": in messages
  std::string path;    // "/api/v1/pods", "/api/v1/namespaces/ebpf-capture/pods"
  const char* accept;  // Accept header; null: application/json
  // More parameters for every list and watch, escaped, without the leading
  // '&': "labelSelector=app%3Dweb" ("": none).
  std::string query = {};
  ParseProfile profile = ParseProfile::Capture;
};

struct HttpRequest {
  std::string path_and_query;
  bool watch = false;
  long timeout_s = 0;  // whole transfer
  const char* accept = nullptr;
};

// How a transfer ended, as far as the transport is concerned.
struct TransferResult {
  enum class Kind : uint8_t { Ok, Network, Tls, Timeout, Aborted } kind = Kind::Ok;
  std::string message;
};

class Reflector {
 public:
  Reflector(const ResourceSpec& spec, const ReflectorOptions& options, ResourceHandler& handler,
            KubeCounters& counters, std::mt19937_64& rng);

  // Idle (no request in flight) and its next request is due.
  bool due(uint64_t now_ns) const { return !busy_ && now_ns >= due_ns_; }
  bool busy() const { return busy_; }
  uint64_t due_ns() const { return due_ns_; }

  // Starts the next request (call only when due).
  HttpRequest begin(const Instant& now);
  // The response's status line and headers arrived. retry_after_s < 0: no
  // Retry-After header.
  void on_status(int http_code, double retry_after_s);
  // Body bytes. False: stop the transfer (the watch has to end), then call
  // on_done with Kind::Aborted.
  bool on_body(const char* data, size_t size, const Instant& now);
  void on_done(const TransferResult& result, const Instant& now);

  // A new token was read after a 401: retry now rather than after back-off.
  void retry_now(const Instant& now);

  const ResourceSpec& spec() const { return spec_; }
  bool synced() const { return synced_; }               // listed at least once
  bool watching() const { return busy_ && !listing_; }  // a watch is open
  bool failing() const { return failures_in_row_ > 0; }
  bool last_unauthorized() const { return last_unauthorized_; }
  unsigned failures_in_row() const { return failures_in_row_; }
  const std::string& resource_version() const { return rv_; }
  size_t page_limit() const { return page_limit_; }
  const std::string& last_error() const { return last_error_; }
  int64_t last_error_us() const { return last_error_us_; }
  void set_options(const ReflectorOptions& options);

 private:
  void handle_line(std::string_view line, const Instant& now);
  void fail(FailureKind kind, const std::string& message, const Instant& now,
            double retry_after_s = -1);
  void http_failure(const Instant& now);
  void relist(const Instant& now, const char* why);
  void finish_list_page(const Instant& now);
  void note_error(const std::string& message, const Instant& now);
  std::string what() const;  // "pods list" / "pods watch"

  ResourceSpec spec_;
  ReflectorOptions options_;
  ResourceHandler& handler_;
  KubeCounters& counters_;
  std::mt19937_64& rng_;
  Backoff backoff_;

  bool need_list_ = true;
  std::string rv_;
  std::string continue_;
  size_t page_limit_;
  uint64_t due_ns_ = 0;
  bool synced_ = false;
  unsigned failures_in_row_ = 0;
  unsigned expired_in_row_ = 0;
  bool last_unauthorized_ = false;
  std::string last_error_;
  int64_t last_error_us_ = 0;

  // The request in flight.
  bool busy_ = false;
  bool listing_ = false;
  int code_ = 0;
  double retry_after_s_ = -1;
  uint64_t started_ns_ = 0;
  uint64_t watch_events_ = 0;
  std::string body_;  // list page, or an error response's body (bounded)
  bool body_too_big_ = false;
  bool stop_ = false;     // the watch must end (ERROR event)
  bool expired_ = false;  // ... because of a 410
  ApiStatus error_status_;
  LineSplitter splitter_;
  uint64_t oversize_seen_ = 0;
  nlohmann::json doc_;  // reused for every event
};

// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
std::string url_escape(std::string_view value);

}  // namespace ebpfc::kube
