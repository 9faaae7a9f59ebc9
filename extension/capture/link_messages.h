// link_messages.h - which network devices are ports of the captured bridge,
// learnt from rtnetlink link messages (RTM_NEWLINK / RTM_DELLINK).
//
// Pure logic, no sockets: parse_link_messages decodes one datagram read from
// a NETLINK_ROUTE socket, and BridgePortTracker turns the messages (a dump
// of every link, then change notifications) into "port added" / "port
// removed" calls. bridge_watch.h owns the socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace ebpfc {

struct LinkMessage {
  enum class Type { NewLink, DelLink, Done, Error, Overrun };
  Type type = Type::NewLink;
  uint32_t seq = 0;          // nlmsg_seq
  uint32_t portid = 0;       // nlmsg_pid: the requester for dump replies
  int ifindex = 0;           // NewLink / DelLink
  int master = 0;            // IFLA_MASTER, 0 when the link has none
  bool is_bridge = false;    // IFLA_LINKINFO / IFLA_INFO_KIND is "bridge"
  int error = 0;             // Error (and Done): a negative errno, or 0
  bool interrupted = false;  // NLM_F_DUMP_INTR: the links changed while the dump ran
};

// Decodes the netlink messages in one datagram (len bytes at data) and
// appends the link messages, dump ends, errors and overruns to out; other
// message types are skipped. Every length is checked against the datagram.
// Returns false if the datagram is malformed (what came before the damage is
// kept in out).
bool parse_link_messages(const uint8_t* data, size_t len, std::vector<LinkMessage>& out);

// Told which devices join and leave the bridge.
class PortListener {
 public:
  virtual ~PortListener() = default;
  virtual void port_added(int ifindex) = 0;
  virtual void port_removed(int ifindex) = 0;
};

// The set of the bridge's ports, kept from a dump and the notifications that
// follow it. A dump can be repeated at any time (after the socket lost
// notifications, ENOBUFS): notifications that arrive while it runs are newer
// than what the dump reports for the same device, so the dump does not
// overrule them, and ports the dump no longer reports are removed when it
// ends.
class BridgePortTracker {
 public:
  explicit BridgePortTracker(int bridge_ifindex) : bridge_(bridge_ifindex) {}

  // A dump request went out with this sequence number from this socket.
  void dump_started(uint32_t seq, uint32_t portid);
  bool dumping() const { return dumping_; }
  // The last dump ended with an error (a negative errno; -EINTR when the
  // kernel marked it inconsistent), 0 if not. Repeat it then.
  int dump_error() const { return dump_error_; }

  void apply(const LinkMessage& m, PortListener& listener);

  // Whether a dump reported the bridge device itself as a bridge.
  bool bridge_seen() const { return bridge_seen_; }
  bool is_bridge() const { return is_bridge_; }
  const std::unordered_set<int>& ports() const { return ports_; }

 private:
  void set_port(int ifindex, bool is_port, PortListener& listener);

  int bridge_;
  bool dumping_ = false;
  bool dump_interrupted_ = false;
  uint32_t dump_seq_ = 0;
  uint32_t dump_portid_ = 0;
  int dump_error_ = 0;
  bool bridge_seen_ = false;
  bool is_bridge_ = false;
  std::unordered_set<int> ports_;
  std::unordered_set<int> dump_seen_;     // ports the running dump reported
  std::unordered_set<int> dump_touched_;  // devices notified about while it runs
};

}  // namespace ebpfc
