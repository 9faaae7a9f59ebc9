#include "capture/link_watch.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "capture/packet_capture.h"
#include "core/wall_clock.h"

namespace ebpfc {

namespace {

// Link messages are a few KiB; the kernel fills dump datagrams up to 32 KiB.
constexpr size_t kBufferBytes = 64 * 1024;
// Room for a burst of notifications (a node starting many pods at once).
constexpr int kReceiveBufferBytes = 4 << 20;
// Dumps the kernel marked inconsistent are repeated at most this often at start.
constexpr int kInitialDumpTries = 5;

[[noreturn]] void fail(const std::string& what, int err) {
  throw CaptureError(what + ": " + strerror(err));
}

}  // namespace

LinkWatch::LinkWatch(const PortRule& rule, PortListener& listener, int timeout_ms, bool keep_dump)
    : keep_dump_(keep_dump), tracker_(rule), buf_(kBufferBytes) {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd_ < 0) fail("cannot open a netlink socket to follow the network links", errno);
  try {
    const int rcvbuf = kReceiveBufferBytes;
    // Best effort: the kernel caps it at net.core.rmem_max.
    (void)setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
      fail("cannot subscribe to link notifications", errno);
    socklen_t len = sizeof(sa);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
      fail("cannot read the netlink socket's address", errno);
    portid_ = sa.nl_pid;

    const uint64_t deadline =
        WallClock::monotonic_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
    for (int attempt = 0;; attempt++) {
      request_dump();
      while (tracker_.dumping()) {
        const uint64_t now = WallClock::monotonic_ns();
        if (now >= deadline) throw CaptureError("the list of network links did not arrive in time");
        pollfd p{fd_, POLLIN, 0};
        const int wait_ms = static_cast<int>((deadline - now) / 1000000ull) + 1;
        if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) fail("cannot wait for netlink", errno);
        while (read_one(listener)) {
        }
      }
      if (tracker_.dump_error() == 0) break;
      dump_links_.clear();  // an inconsistent list: keep the next one
      if (attempt + 1 >= kInitialDumpTries)
        fail("cannot list the network links", -tracker_.dump_error());
    }
    keep_dump_ = false;
  } catch (...) {
    close(fd_);
    fd_ = -1;
    throw;
  }
}

LinkWatch::~LinkWatch() {
  if (fd_ >= 0) close(fd_);
}

void LinkWatch::request_dump() {
  struct {
    nlmsghdr h;
    ifinfomsg ifi;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = ++seq_;
  req.ifi.ifi_family = AF_UNSPEC;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_, &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    fail("cannot ask for the list of network links", errno);
  tracker_.dump_started(seq_, portid_);
}

bool LinkWatch::read_one(PortListener& listener) {
  sockaddr_nl from{};
  socklen_t from_len = sizeof(from);
  const ssize_t n = recvfrom(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    if (errno == ENOBUFS) {
      // Notifications were dropped: what we know may be stale.
      resync_pending_ = true;
      return true;
    }
    fail("cannot read link notifications", errno);
  }
  if (static_cast<size_t>(n) > buf_.size()) {
    resync_pending_ = true;  // a datagram larger than the buffer: cut, so lost
    return true;
  }
  if (from.nl_pid != 0) return true;  // only the kernel speaks here
  messages_.clear();
  // A damaged datagram keeps what parsed before the damage.
  (void)parse_link_messages(buf_.data(), static_cast<size_t>(n), messages_);
  for (const LinkMessage& m : messages_) {
    if (m.type == LinkMessage::Type::Overrun) resync_pending_ = true;
    if (keep_dump_ && m.type == LinkMessage::Type::NewLink && tracker_.dumping() && m.seq == seq_ &&
        m.portid == portid_)
      dump_links_.push_back(m);
    tracker_.apply(m, listener);
  }
  return true;
}

size_t LinkWatch::poll(PortListener& listener) {
  size_t datagrams = 0;
  while (read_one(listener)) datagrams++;
  if (!tracker_.dumping() && (resync_pending_ || tracker_.dump_error() != 0)) {
    resync_pending_ = false;
    resyncs_++;
    request_dump();
  }
  return datagrams;
}

}  // namespace ebpfc
