#include "kube/curl_driver.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace ebpfc::kube {

namespace {

uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Every signal blocked for the scope (threads created meanwhile inherit it).
class SignalBlock {
 public:
  explicit SignalBlock(bool on) : on_(on) {
    if (!on_) return;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~SignalBlock() {
    if (on_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  bool on_;
  sigset_t old_;
};

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != prefix[i]) return false;
  }
  return true;
}

std::string_view trim_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  return line;
}

}  // namespace

int status_line_code(std::string_view line) {
  line = trim_line(line);
  if (line.rfind("HTTP/", 0) != 0) return -1;
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || line.size() < sp + 4) return 0;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; i++)
    code = code * 10 + (line[i] >= '0' && line[i] <= '9' ? line[i] - '0' : 0);
  return code;
}

double retry_after_seconds(std::string_view line, double now_unix_s) {
  line = trim_line(line);
  if (!iequals_prefix(line, "retry-after:")) return -1;
  std::string value(line.substr(12));
  const size_t b = value.find_first_not_of(" \t");
  value = b == std::string::npos ? std::string() : value.substr(b);
  if (value.empty()) return -1;
  if (value[0] >= '0' && value[0] <= '9') return std::strtod(value.c_str(), nullptr);
  const time_t at = curl_getdate(value.c_str(), nullptr);
  if (at <= 0) return -1;
  const double s = static_cast<double>(at) - now_unix_s;
  return s > 0 ? s : 0;
}

CurlDriver::CurlDriver() {
  static std::once_flag once;
  static CURLcode init_rc = CURLE_OK;
  std::call_once(once, [] { init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (init_rc != CURLE_OK)
    throw std::runtime_error(std::string("curl_global_init: ") + curl_easy_strerror(init_rc));
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd_ < 0) {
    const int e = errno;
    close(epfd_);
    throw std::runtime_error(std::string("timerfd_create: ") + std::strerror(e));
  }
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.fd = tfd_;
  multi_ = curl_multi_init();
  if (multi_ == nullptr || epoll_ctl(epfd_, EPOLL_CTL_ADD, tfd_, &ev) != 0) {
    if (multi_ != nullptr) curl_multi_cleanup(multi_);
    close(tfd_);
    close(epfd_);
    throw std::runtime_error("cannot set up the libcurl multi handle");
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlDriver::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlDriver::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

CurlDriver::~CurlDriver() {
  // Easy handles were removed by their owners; the multi handle may still
  // close cached connections and tell on_socket, so the fds go last.
  curl_multi_cleanup(multi_);
  close(tfd_);
  close(epfd_);
}

int CurlDriver::on_socket(CURL*, curl_socket_t s, int what, void* userp, void* socketp) noexcept {
  CurlDriver* d = static_cast<CurlDriver*>(userp);
  if (what == CURL_POLL_REMOVE) {
    // The socket may already be closed: nothing to do then.
    epoll_ctl(d->epfd_, EPOLL_CTL_DEL, s, nullptr);
    if (socketp != nullptr) {
      curl_multi_assign(d->multi_, s, nullptr);
      d->sockets_--;
    }
    return 0;
  }
  struct epoll_event ev {};
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  ev.data.fd = s;
  if (socketp == nullptr) {
    if (epoll_ctl(d->epfd_, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
      epoll_ctl(d->epfd_, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(d->multi_, s, d);  // any non-null marker: "registered"
    d->sockets_++;
  } else if (epoll_ctl(d->epfd_, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
    epoll_ctl(d->epfd_, EPOLL_CTL_ADD, s, &ev);
  }
  return 0;
}

int CurlDriver::on_timer(CURLM*, long timeout_ms, void* userp) noexcept {
  CurlDriver* d = static_cast<CurlDriver*>(userp);
  d->curl_deadline_ns_ =
      timeout_ms < 0 ? UINT64_MAX : mono_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  d->arm();
  return 0;
}

uint64_t CurlDriver::next_wakeup_ns() const {
  return curl_deadline_ns_ < wakeup_ns_ ? curl_deadline_ns_ : wakeup_ns_;
}

void CurlDriver::arm() {
  uint64_t at = next_wakeup_ns();
  if (at == armed_ns_) return;
  armed_ns_ = at;
  struct itimerspec its {};
  if (at != UINT64_MAX) {
    if (at == 0) at = 1;  // 0 would disarm; a time in the past fires at once
    its.it_value.tv_sec = static_cast<time_t>(at / 1000000000ull);
    its.it_value.tv_nsec = static_cast<long>(at % 1000000000ull);
  }
  timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void CurlDriver::set_wakeup(uint64_t deadline_ns) {
  wakeup_ns_ = deadline_ns;
  arm();
}

bool CurlDriver::add(CURL* easy, Transfer* transfer, std::string* error) {
  curl_easy_setopt(easy, CURLOPT_PRIVATE, static_cast<void*>(transfer));
  SignalBlock block(block_signals_);
  const CURLMcode rc = curl_multi_add_handle(multi_, easy);
  if (rc != CURLM_OK) {
    *error = std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc);
    return false;
  }
  return true;
}

void CurlDriver::remove(CURL* easy) { curl_multi_remove_handle(multi_, easy); }

void CurlDriver::socket_action(curl_socket_t s, int flags) {
  int running = 0;
  SignalBlock block(block_signals_);
  curl_multi_socket_action(multi_, s, flags, &running);
}

void CurlDriver::finish_done() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;
    void* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    curl_multi_remove_handle(multi_, easy);
    if (priv != nullptr) static_cast<Transfer*>(priv)->on_done(result);
  }
}

void CurlDriver::run() {
  struct epoll_event events[32];
  const int n = epoll_wait(epfd_, events, 32, 0);
  for (int i = 0; i < n; i++) {
    if (events[i].data.fd == tfd_) {
      uint64_t expirations;
      while (read(tfd_, &expirations, sizeof(expirations)) < 0 && errno == EINTR) {
      }
      armed_ns_ = UINT64_MAX;  // disarmed by expiring: arm() must set it again
      continue;
    }
    int flags = 0;
    if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
    if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
    socket_action(events[i].data.fd, flags);
  }
  if (curl_deadline_ns_ <= mono_ns()) {
    curl_deadline_ns_ = UINT64_MAX;
    socket_action(CURL_SOCKET_TIMEOUT, 0);
  }
  finish_done();
  arm();
}

}  // namespace ebpfc::kube
