#include "kube/reflector.h"

#include <algorithm>

namespace ebpfc::kube {

namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;
constexpr size_t kMinPageLimit = 10;

FailureKind kind_of_status(int code) {
  switch (code) {
    case 401:
      return kFailUnauthorized;
    case 403:
      return kFailForbidden;
    case 404:
      return kFailNotFound;
    case 410:
      return kFailExpired;
    case 429:
      return kFailThrottled;
    default:
      return code >= 500 && code <= 599 ? kFailServer : kFailOtherHttp;
  }
}

FailureKind kind_of_transfer(TransferResult::Kind k) {
  switch (k) {
    case TransferResult::Kind::Tls:
      return kFailTls;
    case TransferResult::Kind::Timeout:
      return kFailTimeout;
    default:
      return kFailNetwork;
  }
}

}  // namespace

std::string url_escape(std::string_view value) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 15]);
    }
  }
  return out;
}

Reflector::Reflector(const ResourceSpec& spec, const ReflectorOptions& options,
                     ResourceHandler& handler, KubeCounters& counters, std::mt19937_64& rng)
    : spec_(spec),
      options_(options),
      handler_(handler),
      counters_(counters),
      rng_(rng),
      backoff_(options.backoff),
      page_limit_(options.page_limit),
      splitter_(options.max_line) {}

void Reflector::set_options(const ReflectorOptions& options) {
  options_ = options;
  backoff_.set_policy(options.backoff);
  page_limit_ = options.page_limit;
  if (!busy_) {
    splitter_ = LineSplitter(options.max_line);
    oversize_seen_ = 0;
  }
}

std::string Reflector::what() const {
  return std::string(spec_.name) + (listing_ ? " list" : " watch");
}

HttpRequest Reflector::begin(const Instant& now) {
  HttpRequest r;
  busy_ = true;
  listing_ = need_list_;
  code_ = 0;
  retry_after_s_ = -1;
  started_ns_ = now.mono_ns;
  watch_events_ = 0;
  body_.clear();
  body_too_big_ = false;
  stop_ = false;
  expired_ = false;
  error_status_ = ApiStatus{};
  splitter_.reset();
  r.accept = spec_.accept;
  counters_.requests++;
  if (listing_) {
    counters_.lists++;
    if (continue_.empty()) handler_.begin_list();
    r.path_and_query = spec_.path + "?limit=" + std::to_string(page_limit_);
    if (!spec_.query.empty()) r.path_and_query += "&" + spec_.query;
    if (!continue_.empty()) r.path_and_query += "&continue=" + url_escape(continue_);
    r.watch = false;
    r.timeout_s = options_.list_timeout_s;
  } else {
    counters_.watches++;
    const int lo = std::max(1, options_.watch_timeout_min_s);
    const int hi = std::max(lo, options_.watch_timeout_max_s);
    const int timeout = lo + static_cast<int>(rng_() % static_cast<uint64_t>(hi - lo + 1));
    r.path_and_query = spec_.path + "?watch=1&resourceVersion=" + url_escape(rv_) +
                       "&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout);
    if (!spec_.query.empty()) r.path_and_query += "&" + spec_.query;
    r.watch = true;
    // The server ends the watch at `timeout`; a client-side limit guards
    // against a server that never does.
    r.timeout_s = timeout + 60;
  }
  return r;
}

void Reflector::on_status(int http_code, double retry_after_s) {
  code_ = http_code;
  retry_after_s_ = retry_after_s;
  if (http_code == 200 && !listing_) {
    // Watching again: whatever failed before has recovered.
    failures_in_row_ = 0;
    last_unauthorized_ = false;
  }
}

bool Reflector::on_body(const char* data, size_t size, const Instant& now) {
  if (code_ != 200) {
    if (body_.size() < kMaxErrorBody)
      body_.append(data, std::min(size, kMaxErrorBody - body_.size()));
    return true;
  }
  if (listing_) {
    if (body_.size() + size > options_.max_list_body) {
      body_too_big_ = true;
      std::string().swap(body_);
      return false;
    }
    body_.append(data, size);
    return true;
  }
  if (stop_) return false;
  splitter_.feed(data, size, [&](std::string_view line) { handle_line(line, now); });
  const uint64_t oversize = splitter_.counters().oversize_lines;
  if (oversize != oversize_seen_) {
    counters_.oversize_lines += oversize - oversize_seen_;
    oversize_seen_ = oversize;
    note_error(what() + ": skipped an event line longer than " + std::to_string(options_.max_line) +
                   " bytes",
               now);
  }
  return !stop_;
}

void Reflector::handle_line(std::string_view line, const Instant& now) {
  if (stop_) return;
  WatchEvent ev;
  std::string error;
  if (!decode_watch_event(line, &doc_, &ev, &error, spec_.profile)) {
    counters_.bad_events++;
    note_error(what() + ": bad event: " + error, now);
    return;
  }
  watch_events_++;
  switch (ev.type) {
    case EventType::Added:
    case EventType::Modified:
    case EventType::Deleted:
      if (handler_.apply(ev.type, *ev.object, now, &error)) {
        counters_.events++;
      } else {
        counters_.bad_events++;
        note_error(what() + ": bad " + event_type_name(ev.type) + " object: " + error, now);
      }
      if (!ev.resource_version.empty()) rv_ = ev.resource_version;
      break;
    case EventType::Bookmark:
      counters_.bookmarks++;
      rv_ = ev.resource_version;
      break;
    case EventType::Error:
      stop_ = true;
      error_status_ = ev.status;
      expired_ = ev.status.expired();
      break;
    case EventType::Unknown:
      counters_.bad_events++;
      note_error(what() + ": unknown event type \"" + ev.type_text + "\"", now);
      break;
  }
}

void Reflector::note_error(const std::string& message, const Instant& now) {
  last_error_ = message;
  last_error_us_ = now.unix_us;
}

void Reflector::fail(FailureKind kind, const std::string& message, const Instant& now,
                     double retry_after_s) {
  counters_.failures[kind]++;
  failures_in_row_++;
  note_error(message, now);
  const uint64_t delay = retry_after_s >= 0 ? retry_after_delay_ns(retry_after_s, rng_)
                                            : backoff_.next(now.mono_ns, rng_);
  due_ns_ = now.mono_ns + delay;
}

void Reflector::relist(const Instant& now, const char* why) {
  counters_.relists++;
  need_list_ = true;
  continue_.clear();
  expired_in_row_++;
  note_error(what() + ": " + why + ", listing again", now);
  if (expired_in_row_ > 2) {
    // 410 after 410: something is wrong; do not hammer the server.
    counters_.failures[kFailExpired]++;
    failures_in_row_++;
    due_ns_ = now.mono_ns + backoff_.next(now.mono_ns, rng_);
  } else {
    due_ns_ = now.mono_ns;
  }
}

void Reflector::http_failure(const Instant& now) {
  const ApiStatus st = status_from_body(code_, body_);
  std::string message = what() + ": HTTP " + std::to_string(code_);
  if (!st.reason.empty()) message += " " + st.reason;
  if (!st.message.empty()) message += ": " + st.message;
  last_unauthorized_ = code_ == 401;
  const bool honour = (code_ == 429 || code_ == 503) && retry_after_s_ >= 0;
  fail(kind_of_status(code_), message, now, honour ? retry_after_s_ : -1);
}

void Reflector::finish_list_page(const Instant& now) {
  ListPage page;
  std::string error;
  nlohmann::json doc;
  const bool ok = decode_list(body_, &doc, &page, &error, spec_.profile);
  std::string().swap(body_);
  if (!ok) {
    fail(kFailDecode, what() + ": " + error, now);
    return;
  }
  if (page.items != nullptr) {
    for (const nlohmann::json& item : *page.items) {
      if (!handler_.apply(EventType::Added, item, now, &error)) {
        counters_.bad_events++;
        note_error(what() + ": bad item: " + error, now);
      }
    }
  }
  if (!page.continue_token.empty()) {
    continue_ = page.continue_token;
    due_ns_ = now.mono_ns;  // the next page, at once
    return;
  }
  if (page.resource_version.empty()) {
    continue_.clear();
    fail(kFailDecode, what() + ": list without a resourceVersion", now);
    return;
  }
  rv_ = page.resource_version;
  continue_.clear();
  handler_.end_list(now);
  need_list_ = false;
  synced_ = true;
  failures_in_row_ = 0;
  expired_in_row_ = 0;
  last_unauthorized_ = false;
  due_ns_ = now.mono_ns;  // watch from here, at once
}

void Reflector::on_done(const TransferResult& result, const Instant& now) {
  busy_ = false;
  const bool transport_failed =
      result.kind != TransferResult::Kind::Ok && result.kind != TransferResult::Kind::Aborted;
  if (listing_) {
    if (body_too_big_) {
      std::string().swap(body_);
      page_limit_ = std::max(kMinPageLimit, page_limit_ / 2);
      fail(kFailDecode,
           what() + ": a page was larger than " + std::to_string(options_.max_list_body >> 20) +
               " MiB; asking for " + std::to_string(page_limit_) + " objects per page",
           now);
    } else if (transport_failed) {
      fail(kind_of_transfer(result.kind), what() + ": " + result.message, now);
    } else if (code_ == 410) {
      // The continue token expired (the snapshot was compacted): start over.
      relist(now, "continue token expired (410)");
    } else if (code_ != 200) {
      http_failure(now);
    } else if (result.kind == TransferResult::Kind::Aborted) {
      fail(kFailNetwork, what() + ": transfer stopped", now);
    } else {
      finish_list_page(now);
    }
    std::string().swap(body_);
    return;
  }

  // A watch ended.
  const std::string_view rest = splitter_.finish();
  if (!rest.empty() && !transport_failed && code_ == 200 && !stop_) {
    counters_.bad_events++;
    note_error(what() + ": the stream ended inside an event", now);
  }
  if (code_ == 200 && stop_) {
    if (expired_) {
      relist(now, "resourceVersion expired (ERROR 410)");
    } else {
      std::string message = what() + ": ERROR event";
      if (error_status_.code) message += " " + std::to_string(error_status_.code);
      if (!error_status_.reason.empty()) message += " " + error_status_.reason;
      if (!error_status_.message.empty()) message += ": " + error_status_.message;
      fail(error_status_.code ? kind_of_status(error_status_.code) : kFailOtherHttp, message, now);
    }
  } else if (transport_failed) {
    fail(kind_of_transfer(result.kind), what() + ": " + result.message, now);
  } else if (code_ == 410) {
    relist(now, "resourceVersion expired (410)");
  } else if (code_ != 200) {
    http_failure(now);
  } else if (now.mono_ns - started_ns_ < options_.short_watch_ns && watch_events_ == 0) {
    fail(kFailShortWatch, what() + ": ended within a second without an event", now);
  } else {
    // A clean end (timeoutSeconds): resume from the last resourceVersion.
    failures_in_row_ = 0;
    expired_in_row_ = 0;
    last_unauthorized_ = false;
    due_ns_ = now.mono_ns;
  }
  body_.clear();
  if (body_.capacity() > kMaxErrorBody) std::string().swap(body_);
}

void Reflector::retry_now(const Instant& now) {
  if (!busy_ && last_unauthorized_ && due_ns_ > now.mono_ns) due_ns_ = now.mono_ns;
}

}  // namespace ebpfc::kube
