// bridge_watch.h - follows the ports of a Linux bridge through an rtnetlink
// socket: one dump of every link at start, then link notifications
// (RTMGRP_LINK), so ports that pods add and remove while a capture runs are
// picked up.
//
// Plain C++: no PostgreSQL headers. Errors are CaptureError exceptions.
#pragma once

#include <cstdint>
#include <vector>

#include "capture/link_messages.h"

namespace ebpfc {

class BridgeWatch {
 public:
  // Opens the socket, subscribes to link notifications and lists every link,
  // waiting up to timeout_ms for the list; the ports it reports are handed to
  // listener. Throws CaptureError if the socket cannot be opened or the list
  // does not arrive.
  BridgeWatch(int bridge_ifindex, PortListener& listener, int timeout_ms = 5000);
  ~BridgeWatch();
  BridgeWatch(const BridgeWatch&) = delete;
  BridgeWatch& operator=(const BridgeWatch&) = delete;

  // Whether the device is a bridge (from the initial list).
  bool is_bridge() const { return tracker_.is_bridge(); }
  const BridgePortTracker& tracker() const { return tracker_; }

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
  uint64_t resyncs_ = 0;
  BridgePortTracker tracker_;
  std::vector<uint8_t> buf_;
  std::vector<LinkMessage> messages_;
};

}  // namespace ebpfc
