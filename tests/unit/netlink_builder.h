// netlink_builder.h - builds rtnetlink datagrams the way the kernel sends
// them (RTM_NEWLINK / RTM_DELLINK with IFLA_IFNAME, IFLA_MASTER,
// IFLA_LINKINFO and IFLA_LINK_NETNSID, NLMSG_DONE, NLMSG_ERROR) for the link
// message tests.
#pragma once

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ebpfc::test {

class NetlinkBuilder {
 public:
  // Everything a link message says, for named_link().
  struct Link {
    int ifindex = 0;
    std::string name;          // "" = "dev<ifindex>"
    std::string kind = "veth";  // "" = no IFLA_LINKINFO
    int master = 0;            // 0 = no IFLA_MASTER
    int netnsid = -1;          // the peer's namespace id; -1 = no IFLA_LINK_NETNSID
    uint16_t arphrd = 1;       // ARPHRD_ETHER
    uint32_t ifi_flags = 0;    // IFF_*
  };

  // A link message; master 0 = no IFLA_MASTER; kind "" = no IFLA_LINKINFO.
  NetlinkBuilder& link(uint16_t type, int ifindex, int master, const std::string& kind = "",
                       uint32_t seq = 0, uint32_t portid = 0, uint16_t flags = 0) {
    Link l;
    l.ifindex = ifindex;
    l.master = master;
    l.kind = kind;
    return named_link(type, l, seq, portid, flags);
  }
  NetlinkBuilder& named_link(uint16_t type, const Link& l, uint32_t seq = 0, uint32_t portid = 0,
                             uint16_t flags = 0) {
    const size_t start = begin(type, seq, portid, flags);
    ifinfomsg ifi{};
    ifi.ifi_index = l.ifindex;
    ifi.ifi_type = l.arphrd;
    ifi.ifi_flags = l.ifi_flags;
    put(&ifi, sizeof(ifi));
    const std::string name = l.name.empty() ? "dev" + std::to_string(l.ifindex) : l.name;
    attr(IFLA_IFNAME, name.c_str(), name.size() + 1);
    if (l.master != 0) {
      const uint32_t m = static_cast<uint32_t>(l.master);
      attr(IFLA_MASTER, &m, sizeof(m));
    }
    if (!l.kind.empty()) {
      const size_t nest = open_attr(IFLA_LINKINFO);
      attr(IFLA_INFO_KIND, l.kind.c_str(), l.kind.size() + 1);
      close_attr(nest);
    }
    if (l.netnsid >= 0) {
      const int32_t id = l.netnsid;
      attr(IFLA_LINK_NETNSID, &id, sizeof(id));
    }
    return end(start);
  }
  // A routed pod's host end: a veth named `name`, its peer in namespace 3.
  NetlinkBuilder& pod_link(int ifindex, const std::string& name, uint32_t seq = 0,
                           uint32_t portid = 0) {
    Link l;
    l.ifindex = ifindex;
    l.name = name;
    l.netnsid = 3;
    return named_link(RTM_NEWLINK, l, seq, portid);
  }
  NetlinkBuilder& new_link(int ifindex, int master, uint32_t seq = 0, uint32_t portid = 0) {
    return link(RTM_NEWLINK, ifindex, master, "veth", seq, portid);
  }
  NetlinkBuilder& del_link(int ifindex, int master, uint32_t seq = 0, uint32_t portid = 0) {
    return link(RTM_DELLINK, ifindex, master, "veth", seq, portid);
  }
  NetlinkBuilder& done(uint32_t seq, uint32_t portid, int error = 0) {
    const size_t start = begin(NLMSG_DONE, seq, portid, NLM_F_MULTI);
    put(&error, sizeof(error));
    return end(start);
  }
  NetlinkBuilder& error(uint32_t seq, uint32_t portid, int error) {
    const size_t start = begin(NLMSG_ERROR, seq, portid, 0);
    nlmsgerr e{};
    e.error = error;
    put(&e, sizeof(e));
    return end(start);
  }
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  size_t begin(uint16_t type, uint32_t seq, uint32_t portid, uint16_t flags) {
    pad();
    const size_t start = buf_.size();
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    h.nlmsg_seq = seq;
    h.nlmsg_pid = portid;
    put(&h, sizeof(h));
    return start;
  }
  NetlinkBuilder& end(size_t start) {
    const uint32_t len = static_cast<uint32_t>(buf_.size() - start);
    std::memcpy(buf_.data() + start, &len, sizeof(len));  // nlmsg_len comes first
    pad();
    return *this;
  }
  size_t open_attr(uint16_t type) {
    pad();
    const size_t start = buf_.size();
    rtattr a{};
    a.rta_type = type;
    put(&a, sizeof(a));
    return start;
  }
  void close_attr(size_t start) {
    const uint16_t len = static_cast<uint16_t>(buf_.size() - start);
    std::memcpy(buf_.data() + start, &len, sizeof(len));  // rta_len comes first
    pad();
  }
  void attr(uint16_t type, const void* data, size_t len) {
    const size_t start = open_attr(type);
    put(data, len);
    close_attr(start);
  }
  void put(const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    buf_.insert(buf_.end(), p, p + len);
  }
  void pad() {
    while (buf_.size() % 4 != 0) buf_.push_back(0);
  }

  std::vector<uint8_t> buf_;
};

}  // namespace ebpfc::test
