#include "capture/link_messages.h"

// <net/if.h> before the kernel's headers: they then leave its definitions alone.
#include <net/if.h>
// clang-format off
#include <fnmatch.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
// clang-format on

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ebpfc {

namespace {

constexpr size_t kAlign = 4;  // NLMSG_ALIGNTO and RTA_ALIGNTO

size_t align4(size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Walks the rtattrs in [p, p + len) and calls f(type, payload, payload_len)
// for each well-formed one. Returns false on a malformed attribute.
template <typename F>
bool for_each_attr(const uint8_t* p, size_t len, F f) {
  size_t off = 0;
  while (off + sizeof(rtattr) <= len) {
    const auto a = load<rtattr>(p + off);
    if (a.rta_len < sizeof(rtattr) || a.rta_len > len - off) return false;
    f(static_cast<unsigned>(a.rta_type & NLA_TYPE_MASK), p + off + sizeof(rtattr),
      static_cast<size_t>(a.rta_len - sizeof(rtattr)));
    off += align4(a.rta_len);
  }
  return true;
}

// Copies a NUL-terminated string attribute into a fixed buffer (cut, and
// always terminated).
template <size_t N>
void copy_string(char (&dst)[N], const uint8_t* v, size_t n) {
  size_t len = 0;
  while (len < n && len < N - 1 && v[len] != 0) len++;
  std::memcpy(dst, v, len);
  dst[len] = '\0';
}

// IFLA_LINKINFO holds IFLA_INFO_KIND, a NUL-terminated string.
void parse_link_info(const uint8_t* p, size_t len, LinkMessage& m) {
  for_each_attr(p, len, [&](unsigned type, const uint8_t* v, size_t n) {
    if (type != IFLA_INFO_KIND) return;
    static const char kBridge[] = "bridge";
    m.is_bridge = n >= sizeof(kBridge) - 1 && std::memcmp(v, kBridge, sizeof(kBridge) - 1) == 0 &&
                  (n == sizeof(kBridge) - 1 || v[sizeof(kBridge) - 1] == '\0');
    copy_string(m.kind, v, n);
  });
}

bool parse_link(const uint8_t* body, size_t len, LinkMessage& m) {
  if (len < sizeof(ifinfomsg)) return false;
  const auto ifi = load<ifinfomsg>(body);
  m.ifindex = ifi.ifi_index;
  m.arphrd = ifi.ifi_type;
  m.flags = ifi.ifi_flags;
  const size_t attrs = align4(sizeof(ifinfomsg));
  if (attrs > len) return true;  // no attributes
  return for_each_attr(body + attrs, len - attrs, [&](unsigned type, const uint8_t* v, size_t n) {
    if (type == IFLA_MASTER && n >= sizeof(uint32_t))
      m.master = static_cast<int>(load<uint32_t>(v));
    else if (type == IFLA_LINKINFO)
      parse_link_info(v, n, m);
    else if (type == IFLA_IFNAME)
      copy_string(m.name, v, n);
    else if (type == IFLA_LINK_NETNSID && n >= sizeof(int32_t))
      m.peer_netns = true;
  });
}

}  // namespace

bool parse_link_messages(const uint8_t* data, size_t len, std::vector<LinkMessage>& out) {
  size_t off = 0;
  while (off < len) {
    if (len - off < sizeof(nlmsghdr)) return false;
    const auto h = load<nlmsghdr>(data + off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > len - off) return false;
    const uint8_t* body = data + off + sizeof(nlmsghdr);
    const size_t body_len = h.nlmsg_len - sizeof(nlmsghdr);
    LinkMessage m;
    m.seq = h.nlmsg_seq;
    m.portid = h.nlmsg_pid;
    m.interrupted = (h.nlmsg_flags & NLM_F_DUMP_INTR) != 0;
    switch (h.nlmsg_type) {
      case RTM_NEWLINK:
      case RTM_DELLINK:
        m.type =
            h.nlmsg_type == RTM_NEWLINK ? LinkMessage::Type::NewLink : LinkMessage::Type::DelLink;
        if (!parse_link(body, body_len, m)) return false;
        out.push_back(m);
        break;
      case NLMSG_DONE:
        m.type = LinkMessage::Type::Done;
        if (body_len >= sizeof(int)) m.error = load<int>(body);
        out.push_back(m);
        break;
      case NLMSG_ERROR:
        m.type = LinkMessage::Type::Error;
        if (body_len < sizeof(int)) return false;
        m.error = load<int>(body);
        out.push_back(m);
        break;
      case NLMSG_OVERRUN:
        m.type = LinkMessage::Type::Overrun;
        out.push_back(m);
        break;
      default:
        break;  // NLMSG_NOOP and anything else: not ours
    }
    off += align4(h.nlmsg_len);
  }
  return true;
}

std::string routed_skip_reason(const LinkMessage& m) {
  if (m.flags & IFF_LOOPBACK) return "loopback";
  if (m.is_bridge) return "a bridge: capture it by its name";
  if (std::strcmp(m.kind, "veth") != 0)
    return m.kind[0] ? std::string("not a veth: ") + m.kind : "not a veth: a physical device";
  if (m.master != 0) return "a port of a bridge or bond: capture the bridge by its name";
  if (!m.peer_netns) return "its peer is in this network namespace, not a pod's";
  if (m.arphrd != ARPHRD_ETHER) return "not Ethernet";
  return "";
}

void PortTracker::dump_started(uint32_t seq, uint32_t portid) {
  dumping_ = true;
  dump_seq_ = seq;
  dump_portid_ = portid;
  dump_error_ = 0;
  dump_interrupted_ = false;
  dump_seen_.clear();
  dump_touched_.clear();
}

std::string PortTracker::port_name(int ifindex) const {
  auto it = names_.find(ifindex);
  return it == names_.end() ? std::string() : it->second;
}

bool PortTracker::selects(const LinkMessage& m, std::string* skip) const {
  if (rule_.bridge > 0) return m.master == rule_.bridge;
  if (rule_.pattern.empty() || fnmatch(rule_.pattern.c_str(), m.name, 0) != 0) return false;
  *skip = routed_skip_reason(m);
  return skip->empty();
}

void PortTracker::set_port(int ifindex, bool is_port, const char* name, PortListener& listener) {
  if (is_port) {
    auto named = names_.find(ifindex);
    if (named == names_.end() || named->second != name) {
      names_[ifindex] = name;  // before port_added: the listener may ask for it
      generation_++;
    }
    if (ports_.insert(ifindex).second) listener.port_added(ifindex);
  } else if (ports_.erase(ifindex) > 0) {
    names_.erase(ifindex);
    generation_++;
    listener.port_removed(ifindex);
  }
}

void PortTracker::set_skipped(int ifindex, const std::string& entry) {
  if (entry.empty()) {
    if (skipped_.erase(ifindex) > 0) generation_++;
    return;
  }
  auto it = skipped_.find(ifindex);
  if (it != skipped_.end() && it->second == entry) return;
  skipped_[ifindex] = entry;
  generation_++;
}

void PortTracker::apply(const LinkMessage& m, PortListener& listener) {
  const bool from_dump = dumping_ && m.seq == dump_seq_ && m.portid == dump_portid_;
  if (from_dump && m.interrupted) dump_interrupted_ = true;
  switch (m.type) {
    case LinkMessage::Type::NewLink:
    case LinkMessage::Type::DelLink: {
      if (m.ifindex <= 0) return;
      if (rule_.bridge > 0 && m.ifindex == rule_.bridge) {
        if (m.type == LinkMessage::Type::NewLink && from_dump) {
          bridge_seen_ = true;
          is_bridge_ = m.is_bridge;
        }
        return;
      }
      std::string skip;
      const bool is_port = m.type == LinkMessage::Type::NewLink && selects(m, &skip);
      const bool skipped = m.type == LinkMessage::Type::NewLink && !skip.empty();
      if (from_dump) {
        if (dump_touched_.count(m.ifindex)) return;  // a newer notification said otherwise
        if (is_port || skipped) dump_seen_.insert(m.ifindex);
      } else if (dumping_) {
        dump_touched_.insert(m.ifindex);
      }
      set_skipped(m.ifindex, skipped ? std::string(m.name) + " (" + skip + ")" : std::string());
      set_port(m.ifindex, is_port, m.name, listener);
      return;
    }
    case LinkMessage::Type::Done:
    case LinkMessage::Type::Error:
      if (!from_dump) return;  // an acknowledgement of something else
      dumping_ = false;
      dump_error_ = m.error != 0 ? m.error : dump_interrupted_ ? -EINTR : 0;
      if (dump_error_ != 0) return;  // incomplete: keep what we have
      {
        auto gone = [this](int p) { return !dump_seen_.count(p) && !dump_touched_.count(p); };
        std::vector<int> stale;
        for (int p : ports_)
          if (gone(p)) stale.push_back(p);
        for (int p : stale) set_port(p, false, "", listener);
        stale.clear();
        for (const auto& s : skipped_)
          if (gone(s.first)) stale.push_back(s.first);
        for (int p : stale) set_skipped(p, "");
      }
      return;
    case LinkMessage::Type::Overrun:
      return;
  }
}

namespace {

bool starts_with(const char* s, const std::string& prefix) {
  return std::strncmp(s, prefix.c_str(), prefix.size()) == 0;
}

}  // namespace

AutoChoice choose_capture_target(const std::vector<LinkMessage>& links) {
  // Bridges and their veth ports.
  std::map<int, std::string> bridges;  // ifindex -> name
  for (const LinkMessage& m : links)
    if (m.type == LinkMessage::Type::NewLink && m.is_bridge) bridges[m.ifindex] = m.name;
  std::map<int, size_t> bridge_ports;
  for (const LinkMessage& m : links)
    if (m.type == LinkMessage::Type::NewLink && bridges.count(m.master) &&
        std::strcmp(m.kind, "veth") == 0)
      bridge_ports[m.master]++;
  int best_bridge = 0;
  size_t best_bridge_ports = 0;
  for (const auto& b : bridge_ports)
    if (b.second > best_bridge_ports) {
      best_bridge = b.first;
      best_bridge_ports = b.second;
    }

  // Routed pod interfaces, by the name prefixes of known CNIs.
  std::vector<const LinkMessage*> pods;
  for (const LinkMessage& m : links)
    if (m.type == LinkMessage::Type::NewLink && routed_skip_reason(m).empty()) pods.push_back(&m);
  static const char* const kKnown[] = {"cali", "lxc", "eni", "azv", "gke", "veth"};
  std::string prefix;
  size_t routed = 0;
  for (const char* known : kKnown) {
    const size_t n =
        static_cast<size_t>(std::count_if(pods.begin(), pods.end(), [&](const LinkMessage* m) {
          return starts_with(m->name, known);
        }));
    if (n > routed) {
      routed = n;
      prefix = known;
    }
  }
  if (routed == 0 && !pods.empty()) {
    std::string common = pods[0]->name;
    for (const LinkMessage* m : pods) {
      size_t k = 0;
      while (k < common.size() && m->name[k] == common[k]) k++;
      common.resize(k);
    }
    if (common.size() > IFNAMSIZ - 2) common.resize(IFNAMSIZ - 2);  // and '*': a name's length
    if (common.size() >= 3) {
      prefix = common;
      routed = pods.size();
    }
  }

  AutoChoice out;
  if (best_bridge_ports > 0 && best_bridge_ports >= routed) {
    out.target = bridges[best_bridge];
    out.bridge = true;
    out.why = "bridge " + out.target + " with " + std::to_string(best_bridge_ports) + " veth port" +
              (best_bridge_ports == 1 ? "" : "s");
    if (routed > 0)
      out.why +=
          " (and " + std::to_string(routed) + " routed pod interfaces named " + prefix + "*)";
  } else if (routed > 0) {
    out.target = prefix + "*";
    out.why = std::to_string(routed) + " routed pod interface" + (routed == 1 ? "" : "s") +
              " named " + out.target;
  } else {
    out.why =
        "found no bridge with veth ports and no routed pod interfaces (veths with their peer "
        "in another network namespace";
    out.why += pods.empty() ? ")" : ", whose names share a prefix)";
  }
  return out;
}

}  // namespace ebpfc
