// link_watch.h - follows the devices a capture attaches to through an
// rtnetlink socket: one dump of every link at start, then link notifications
// (RTMGRP_LINK), so the ports of a bridge, or the routed pod interfaces
// matching a pattern, are picked up as pods come and go.
//
// Plain C++: no PostgreSQL headers. Errors are CaptureError exceptions.
#pragma once

#include <cstdint>
#include <vector>

#include "capture/link_messages.h"

namespace ebpfc {

class LinkWatch {
 public:
  // Opens the socket, subscribes to link notifications and lists every link,
  // waiting up to timeout_ms for the list; the ports it reports are handed to
  // listener. With keep_dump, every link of that first list is kept
  // (dump_links()). Throws CaptureError if the socket cannot be opened or the
  // list does not arrive.
  LinkWatch(const PortRule& rule, PortListener& listener, int timeout_ms = 5000,
            bool keep_dump = false);
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

  // Whether the device of a bridge rule is a bridge (from the initial list).
  bool is_bridge() const { return tracker_.is_bridge(); }
  const PortTracker& tracker() const { return tracker_; }
  // The links of the first list (keep_dump), as NewLink messages.
  const std::vector<LinkMessage>& dump_links() const { return dump_links_; }

  // Readable when notifications are waiting.
  int fd() const { return fd_; }

  // Reads every waiting notification without blocking and reports ports that
  // joined or left. If the socket overflowed (notifications were lost), lists
  // every link again. Returns the number of datagrams read.
  size_t poll(PortListener& listener);

  // Times the socket overflowed and the links were listed again.
  uint64_t resyncs() const { return resyncs_; }

 private:
  void request_dump();
  // Reads one datagram; false when none is waiting.
  bool read_one(PortListener& listener);

  int fd_ = -1;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  bool resync_pending_ = false;
  bool keep_dump_ = false;
  uint64_t resyncs_ = 0;
  PortTracker tracker_;
  std::vector<uint8_t> buf_;
  std::vector<LinkMessage> messages_;
  std::vector<LinkMessage> dump_links_;
};

}  // namespace ebpfc
