#include "capture/link_messages.h"

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

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

// IFLA_LINKINFO holds IFLA_INFO_KIND, a NUL-terminated string.
bool kind_is_bridge(const uint8_t* p, size_t len) {
  bool bridge = false;
  for_each_attr(p, len, [&](unsigned type, const uint8_t* v, size_t n) {
    static const char kBridge[] = "bridge";
    if (type == IFLA_INFO_KIND && n >= sizeof(kBridge) - 1 &&
        std::memcmp(v, kBridge, sizeof(kBridge) - 1) == 0 &&
        (n == sizeof(kBridge) - 1 || v[sizeof(kBridge) - 1] == '\0'))
      bridge = true;
  });
  return bridge;
}

bool parse_link(const uint8_t* body, size_t len, LinkMessage& m) {
  if (len < sizeof(ifinfomsg)) return false;
  const auto ifi = load<ifinfomsg>(body);
  m.ifindex = ifi.ifi_index;
  const size_t attrs = align4(sizeof(ifinfomsg));
  if (attrs > len) return true;  // no attributes
  return for_each_attr(body + attrs, len - attrs, [&](unsigned type, const uint8_t* v, size_t n) {
    if (type == IFLA_MASTER && n >= sizeof(uint32_t))
      m.master = static_cast<int>(load<uint32_t>(v));
    else if (type == IFLA_LINKINFO)
      m.is_bridge = kind_is_bridge(v, n);
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

void BridgePortTracker::dump_started(uint32_t seq, uint32_t portid) {
  dumping_ = true;
  dump_seq_ = seq;
  dump_portid_ = portid;
  dump_error_ = 0;
  dump_interrupted_ = false;
  dump_seen_.clear();
  dump_touched_.clear();
}

void BridgePortTracker::set_port(int ifindex, bool is_port, PortListener& listener) {
  if (is_port) {
    if (ports_.insert(ifindex).second) listener.port_added(ifindex);
  } else if (ports_.erase(ifindex) > 0) {
    listener.port_removed(ifindex);
  }
}

void BridgePortTracker::apply(const LinkMessage& m, PortListener& listener) {
  const bool from_dump = dumping_ && m.seq == dump_seq_ && m.portid == dump_portid_;
  if (from_dump && m.interrupted) dump_interrupted_ = true;
  switch (m.type) {
    case LinkMessage::Type::NewLink:
    case LinkMessage::Type::DelLink: {
      if (m.ifindex <= 0) return;
      if (m.ifindex == bridge_) {
        if (m.type == LinkMessage::Type::NewLink && from_dump) {
          bridge_seen_ = true;
          is_bridge_ = m.is_bridge;
        }
        return;
      }
      const bool is_port = m.type == LinkMessage::Type::NewLink && m.master == bridge_;
      if (from_dump) {
        if (dump_touched_.count(m.ifindex)) return;  // a newer notification said otherwise
        if (is_port) dump_seen_.insert(m.ifindex);
      } else if (dumping_) {
        dump_touched_.insert(m.ifindex);
      }
      set_port(m.ifindex, is_port, listener);
      return;
    }
    case LinkMessage::Type::Done:
    case LinkMessage::Type::Error:
      if (!from_dump) return;  // an acknowledgement of something else
      dumping_ = false;
      dump_error_ = m.error != 0 ? m.error : dump_interrupted_ ? -EINTR : 0;
      if (dump_error_ != 0) return;  // incomplete: keep what we have
      {
        std::vector<int> gone;
        for (int p : ports_)
          if (!dump_seen_.count(p) && !dump_touched_.count(p)) gone.push_back(p);
        for (int p : gone) set_port(p, false, listener);
      }
      return;
    case LinkMessage::Type::Overrun:
      return;
  }
}

}  // namespace ebpfc
