#include "export/otlp_client.h"

#include <time.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "core/c_boundary.h"

namespace ebpfc::otlp {

namespace {

constexpr size_t kAnswerMax = 64 * 1024;
constexpr size_t kHeadersFileMax = 64 * 1024;

uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double unix_s() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// libcurl's frames are C: an exception (bad_alloc) must stop here, and a
// zero return ends the transfer with a write error.
size_t write_cb(char* data, size_t size, size_t n, void* userp) {
  return c_callback(size_t{0}, nullptr,
                    [&] { return static_cast<Client*>(userp)->on_body(data, size * n); });
}

size_t header_cb(char* data, size_t size, size_t n, void* userp) {
  return c_callback(size_t{0}, nullptr, [&] {
    static_cast<Client*>(userp)->on_header(data, size * n);
    return size * n;
  });
}

}  // namespace

class Client::Transfer final : public kube::CurlDriver::Transfer {
 public:
  explicit Transfer(Client& c) : client_(c) {}
  void on_done(CURLcode rc) override { client_.on_done(rc); }

 private:
  Client& client_;
};

Client::Client(uint64_t seed) : rng_(seed != 0 ? seed : std::random_device{}()) {
  easy_ = curl_easy_init();
  if (easy_ == nullptr) throw std::runtime_error("curl_easy_init failed");
  transfer_ = new Transfer(*this);
  // The endpoint may be a name: libcurl then resolves it in a thread of its
  // own, which must not take PostgreSQL's signals.
  driver_.set_block_signals(true);
  backoff_.set_policy(options_.backoff);
}

Client::~Client() {
  if (state_ == State::Sending) driver_.remove(easy_);
  if (headers_ != nullptr) curl_slist_free_all(headers_);
  curl_easy_cleanup(easy_);
  delete transfer_;
}

const char* Client::state_name() const {
  if (!enabled()) return "off";
  switch (state_) {
    case State::Idle:
      return "idle";
    case State::Sending:
      return "sending";
    case State::Waiting:
      return "retrying";
    case State::Finished:
      break;
  }
  return "sending";
}

void Client::configure(const ClientOptions& options, uint64_t now_ns) {
  const bool moved = options.endpoint != options_.endpoint || options.ca_file != options_.ca_file ||
                     options.verify_tls != options_.verify_tls;
  const bool new_headers = options.headers_file != options_.headers_file;
  options_ = options;
  url_ = traces_url(options_.endpoint);
  backoff_.set_policy(options_.backoff);
  if (new_headers) {
    extra_headers_.clear();
    headers_due_ns_ = 0;
  }
  if (moved && state_ == State::Sending) {
    driver_.remove(easy_);
    state_ = State::Waiting;
  }
  if (moved && state_ == State::Waiting) {
    backoff_.reset();
    retry_at_ns_ = now_ns;  // to the new endpoint at once
  }
  // A batch waiting for a retry wakes the loop when it is due, and not at
  // all while export is off (the timer would fire again and again).
  if (state_ == State::Waiting) driver_.set_wakeup(enabled() ? retry_at_ns_ : UINT64_MAX);
}

void Client::reload_headers(uint64_t now_ns, bool force) {
  if (options_.headers_file.empty() || (!force && now_ns < headers_due_ns_)) return;
  headers_due_ns_ = now_ns + options_.headers_reload_ns;
  std::ifstream in(options_.headers_file, std::ios::binary);
  if (!in) {
    last_error_ = "cannot read the headers file " + options_.headers_file +
                  (extra_headers_.empty() ? "" : " (keeping the headers read before)");
    return;
  }
  std::string text(kHeadersFileMax + 1, '\0');
  in.read(&text[0], static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kHeadersFileMax) {
    last_error_ = "the headers file " + options_.headers_file + " is larger than 64 kB";
    return;
  }
  std::vector<std::string> parsed;
  std::string error;
  if (!parse_headers_file(text, &parsed, &error)) {
    last_error_ = "the headers file " + options_.headers_file + ": " + error;
    return;
  }
  extra_headers_.swap(parsed);
}

void Client::send(Batch&& batch, uint64_t now_ns) {
  batch_ = std::move(batch);
  retrying_ = false;
  start(now_ns);
}

void Client::start(uint64_t now_ns) {
  reload_headers(now_ns, false);
  if (headers_ != nullptr) curl_slist_free_all(headers_);
  headers_ = nullptr;
  headers_ = curl_slist_append(
      headers_, (std::string("Content-Type: ") + content_type(batch_.format)).c_str());
  if (const char* enc = content_encoding(batch_.compression))
    headers_ = curl_slist_append(headers_, (std::string("Content-Encoding: ") + enc).c_str());
  headers_ = curl_slist_append(headers_, "Expect:");  // no 100-continue round trip
  for (const std::string& h : extra_headers_) headers_ = curl_slist_append(headers_, h.c_str());

  answer_.clear();
  retry_after_s_ = -1;
  header_status_ = 0;
  errbuf_[0] = '\0';
  CURL* e = easy_;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, batch_.body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(batch_.body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "ebpf_capture/0.2");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf_);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  counters_.requests++;
  if (retrying_) counters_.retries++;
  std::string error;
  if (!driver_.add(e, transfer_, &error)) {
    fail(error, -1, now_ns);
    return;
  }
  state_ = State::Sending;
  driver_.set_wakeup(UINT64_MAX);
}

size_t Client::on_body(const char* data, size_t n) {
  const size_t take = std::min(n, kAnswerMax - std::min(kAnswerMax, answer_.size()));
  answer_.insert(answer_.end(), data, data + take);
  return n;
}

void Client::on_header(const char* data, size_t n) {
  const std::string_view line(data, n);
  const int code = kube::status_line_code(line);
  if (code >= 0) {
    header_status_ = code;
    retry_after_s_ = -1;  // a new response (after a 100 Continue, say)
    return;
  }
  const double after = kube::retry_after_seconds(line, unix_s());
  if (after >= 0) retry_after_s_ = after;
}

void Client::fail(const std::string& error, double retry_after_s, uint64_t now_ns) {
  last_error_ = error;
  const uint64_t delay = retry_after_s >= 0 ? kube::retry_after_delay_ns(retry_after_s, rng_)
                                            : backoff_.next(now_ns, rng_);
  retry_at_ns_ = now_ns + delay;
  state_ = State::Waiting;
  retrying_ = true;
  driver_.set_wakeup(retry_at_ns_);
}

void Client::on_done(CURLcode rc) {
  if (state_ != State::Sending) return;
  const uint64_t now = mono_ns();
  long status = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  const std::string snippet(reinterpret_cast<const char*>(answer_.data()),
                            std::min<size_t>(answer_.size(), 200));
  switch (classify(status)) {
    case Disposition::Delivered: {
      PartialSuccess partial;
      finished_ = Finished{batch_.id, batch_.spans, true, 0};
      if (parse_partial_success(answer_.data(), answer_.size(), batch_.format == Format::Json,
                                &partial)) {
        finished_.rejected_spans =
            std::min<int64_t>(std::max<int64_t>(partial.rejected_spans, 0), batch_.spans);
        last_error_ = "partial success: " + std::to_string(partial.rejected_spans) +
                      " spans rejected: " + partial.error_message;
      }
      counters_.exported_spans += batch_.spans - static_cast<uint64_t>(finished_.rejected_spans);
      counters_.failed_spans += static_cast<uint64_t>(finished_.rejected_spans);
      backoff_.reset();
      state_ = State::Finished;
      break;
    }
    case Disposition::Rejected:
      finished_ = Finished{batch_.id, batch_.spans, false, batch_.spans};
      counters_.failed_spans += batch_.spans;
      last_error_ = "HTTP " + std::to_string(status) + " from " + url_ +
                    (snippet.empty() ? "" : ": " + snippet) + " (" + std::to_string(batch_.spans) +
                    " spans dropped)";
      if (status == 401 || status == 403) reload_headers(now, true);
      backoff_.reset();
      state_ = State::Finished;
      break;
    case Disposition::Retry:
      if (rc != CURLE_OK)
        fail(std::string(errbuf_[0] != '\0' ? errbuf_ : curl_easy_strerror(rc)) + " (" + url_ + ")",
             -1, now);
      else
        fail("HTTP " + std::to_string(status) + " from " + url_ +
                 (snippet.empty() ? "" : ": " + snippet),
             retry_after_s_, now);
      break;
  }
}

void Client::on_ready(uint64_t now_ns) {
  driver_.run();
  if (state_ == State::Waiting && enabled() && now_ns >= retry_at_ns_) start(now_ns);
  if (state_ != State::Waiting || !enabled()) driver_.set_wakeup(UINT64_MAX);
}

bool Client::take_finished(Finished* out) {
  if (state_ != State::Finished) return false;
  *out = finished_;
  state_ = State::Idle;
  retrying_ = false;
  batch_.body.clear();
  return true;
}

}  // namespace ebpfc::otlp
