// link_messages.h - which network devices a capture attaches to, learnt from
// rtnetlink link messages (RTM_NEWLINK / RTM_DELLINK).
//
// Pure logic, no sockets: parse_link_messages decodes one datagram read from
// a NETLINK_ROUTE socket, and PortTracker turns the messages (a dump of every
// link, then change notifications) into "port added" / "port removed" calls
// for the devices a PortRule selects: the ports of a bridge, or the routed
// pod interfaces whose name matches a shell-style pattern.
// choose_capture_target picks one of the two for capture_start('auto').
// link_watch.h owns the socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
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
  bool peer_netns = false;   // IFLA_LINK_NETNSID present: the link's other end (a veth's
                             // peer) is in another network namespace
  uint16_t arphrd = 0;       // ifi_type (ARPHRD_*)
  uint32_t flags = 0;        // ifi_flags (IFF_*)
  char name[16] = {};        // IFLA_IFNAME, "" when absent
  char kind[16] = {};        // IFLA_INFO_KIND, "" when absent (a physical device)
  int error = 0;             // Error (and Done): a negative errno, or 0
  bool interrupted = false;  // NLM_F_DUMP_INTR: the links changed while the dump ran
};

// Decodes the netlink messages in one datagram (len bytes at data) and
// appends the link messages, dump ends, errors and overruns to out; other
// message types are skipped. Every length is checked against the datagram.
// Returns false if the datagram is malformed (what came before the damage is
// kept in out).
bool parse_link_messages(const uint8_t* data, size_t len, std::vector<LinkMessage>& out);

// Why a link is not a routed pod interface, or "" if it is one: a veth that
// is nobody's port (no master) and whose peer is in another network
// namespace (the pod's). Everything else a pattern may match is left alone:
// the loopback device, the node's uplink and tunnels (not veths: vxlan.calico,
// tunl0, ...), bridges and their ports (capture the bridge by name instead),
// veth pairs with both ends on the host (cilium_host / cilium_net).
std::string routed_skip_reason(const LinkMessage& m);

// What a capture attaches to.
struct PortRule {
  int bridge = 0;       // > 0: the ports of this bridge
  std::string pattern;  // otherwise: the routed pod interfaces whose name matches (fnmatch)
  static PortRule bridge_ports(int ifindex) { return PortRule{ifindex, ""}; }
  static PortRule routed(const std::string& glob) { return PortRule{0, glob}; }
};

// Told which devices become ports and which stop being ones.
class PortListener {
 public:
  virtual ~PortListener() = default;
  virtual void port_added(int ifindex) = 0;
  virtual void port_removed(int ifindex) = 0;
};

// The set of ports, kept from a dump and the notifications that follow it. A
// dump can be repeated at any time (after the socket lost notifications,
// ENOBUFS): notifications that arrive while it runs are newer than what the
// dump reports for the same device, so the dump does not overrule them, and
// ports the dump no longer reports are removed when it ends.
class PortTracker {
 public:
  explicit PortTracker(PortRule rule) : rule_(std::move(rule)) {}
  // The ports of a bridge.
  explicit PortTracker(int bridge_ifindex) : PortTracker(PortRule::bridge_ports(bridge_ifindex)) {}

  // A dump request went out with this sequence number from this socket.
  void dump_started(uint32_t seq, uint32_t portid);
  bool dumping() const { return dumping_; }
  // The last dump ended with an error (a negative errno; -EINTR when the
  // kernel marked it inconsistent), 0 if not. Repeat it then.
  int dump_error() const { return dump_error_; }

  void apply(const LinkMessage& m, PortListener& listener);

  // Whether a dump reported the bridge device itself (and as a bridge).
  bool bridge_seen() const { return bridge_seen_; }
  bool is_bridge() const { return is_bridge_; }
  const std::unordered_set<int>& ports() const { return ports_; }
  // A port's name as last reported ("" if unknown).
  std::string port_name(int ifindex) const;
  // Links whose name matched the pattern but that are not pod interfaces,
  // ifindex -> "name (why)". Always empty for a bridge.
  const std::map<int, std::string>& skipped() const { return skipped_; }
  // Changes whenever the ports, their names or the skipped links change.
  uint64_t generation() const { return generation_; }

 private:
  // Whether a NewLink message describes a port; else *skip says why a link
  // the pattern matched is not one ("" if the pattern did not match).
  bool selects(const LinkMessage& m, std::string* skip) const;
  void set_port(int ifindex, bool is_port, const char* name, PortListener& listener);
  void set_skipped(int ifindex, const std::string& entry);

  PortRule rule_;
  bool dumping_ = false;
  bool dump_interrupted_ = false;
  uint32_t dump_seq_ = 0;
  uint32_t dump_portid_ = 0;
  int dump_error_ = 0;
  bool bridge_seen_ = false;
  bool is_bridge_ = false;
  uint64_t generation_ = 0;
  std::unordered_set<int> ports_;
  std::unordered_map<int, std::string> names_;  // of the ports
  std::map<int, std::string> skipped_;
  std::unordered_set<int> dump_seen_;     // ports and skipped links the running dump reported
  std::unordered_set<int> dump_touched_;  // devices notified about while it runs
};

// What capture_start('auto') captures, chosen from a list of every link.
struct AutoChoice {
  std::string target;  // a bridge's name, or a pattern ("cali*"); "" when nothing fits
  bool bridge = false;
  std::string why;  // what was found, or why nothing fits
};

// The layout with the most pod interfaces: the bridge with the most veth
// ports, or the routed pod interfaces (routed_skip_reason) sharing the name
// prefix of a known CNI (cali, lxc, eni, azv, gke, veth), or failing those the
// longest prefix all routed pod interfaces share (3 characters at least). A
// tie goes to the bridge.
AutoChoice choose_capture_target(const std::vector<LinkMessage>& links);

}  // namespace ebpfc
