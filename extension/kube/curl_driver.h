// curl_driver.h - libcurl's multi interface on an event loop that is not
// ours: one CURLM for the driver's whole life, a private epoll fd holding
// libcurl's sockets and a timerfd, and that one epoll fd for the caller to
// wait on (the worker's WaitEventSet).
//
// CURLMOPT_SOCKETFUNCTION registers libcurl's sockets in the epoll set,
// CURLMOPT_TIMERFUNCTION arms the timerfd (together with the caller's own
// next deadline, set_wakeup); run() takes what is ready without waiting,
// calls curl_multi_socket_action for it, and hands every finished transfer
// to its Transfer::on_done. Nothing here blocks or starts a thread.
//
// libcurl resolves host names (not IP literals) in a short-lived thread of
// its own (Debian's libcurl uses the threaded resolver); calls that may
// start one run with every signal blocked, so that thread never takes a
// signal meant for the process (PostgreSQL's handlers must run on the main
// thread).
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ebpfc::kube {

// A response header line (CR LF trimmed or not): the status code of a
// status line ("HTTP/1.1 429 Too Many Requests"), or -1 if it is not one.
int status_line_code(std::string_view line);
// The delay a Retry-After header line asks for, in seconds ("Retry-After:
// 120", or an HTTP date, against now_unix_s; 0 for a date past), or -1 if
// the line is not a valid Retry-After.
double retry_after_seconds(std::string_view line, double now_unix_s);

class CurlDriver {
 public:
  // CURLOPT_PRIVATE of every easy handle added is its Transfer.
  class Transfer {
   public:
    virtual ~Transfer() = default;
    // The transfer ended (it was removed from the multi handle first).
    virtual void on_done(CURLcode result) = 0;
  };

  // Throws std::runtime_error if libcurl, epoll or the timerfd cannot be
  // set up.
  CurlDriver();
  ~CurlDriver();
  CurlDriver(const CurlDriver&) = delete;
  CurlDriver& operator=(const CurlDriver&) = delete;

  // Readable when a socket or the timer needs attention.
  int fd() const { return epfd_; }

  bool add(CURL* easy, Transfer* transfer, std::string* error);
  // Stops a transfer without calling on_done.
  void remove(CURL* easy);

  // Serves ready sockets and expired timers; finished transfers get on_done.
  void run();

  // The caller's own next deadline (CLOCK_MONOTONIC ns; UINT64_MAX: none):
  // the timerfd fires at the earlier of it and libcurl's.
  void set_wakeup(uint64_t deadline_ns);
  uint64_t next_wakeup_ns() const;

  // Block every signal during libcurl calls that may start a resolver
  // thread (on when the API's host is a name).
  void set_block_signals(bool on) { block_signals_ = on; }

  size_t sockets() const { return sockets_; }

 private:
  // libcurl callbacks: system calls only, nothing that throws.
  static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp) noexcept;
  static int on_timer(CURLM* multi, long timeout_ms, void* userp) noexcept;
  void socket_action(curl_socket_t s, int flags);
  void arm();
  void finish_done();

  CURLM* multi_ = nullptr;
  int epfd_ = -1;
  int tfd_ = -1;
  uint64_t curl_deadline_ns_ = UINT64_MAX;
  uint64_t wakeup_ns_ = UINT64_MAX;
  uint64_t armed_ns_ = UINT64_MAX;  // UINT64_MAX: the timer is disarmed
  bool block_signals_ = false;
  size_t sockets_ = 0;
};

}  // namespace ebpfc::kube
