// Bridge ports and routed pod interfaces from rtnetlink link messages: the decoder (bounded, robust
// to damage) and the tracker that turns a dump plus notifications into port added / removed calls
// (capture/link_messages.h). <net/if.h> before the kernel's headers (netlink_builder.h): they then
// leave its definitions alone.
#include <net/if.h>
// clang-format off
#include <linux/if_arp.h>
// clang-format on

#include "capture/link_messages.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "netlink_builder.h"

using ebpfc::LinkMessage;
using ebpfc::parse_link_messages;
using ebpfc::PortListener;
using ebpfc::PortTracker;
using ebpfc::test::NetlinkBuilder;

namespace {

constexpr int kBridge = 3;
constexpr uint32_t kPortid = 4242;

// Records the calls and checks they are never repeated or contradictory.
class Recorder : public PortListener {
 public:
  void port_added(int ifindex) override {
    EXPECT_TRUE(ports.insert(ifindex).second) << "added twice: " << ifindex;
    log += "+" + std::to_string(ifindex) + " ";
  }
  void port_removed(int ifindex) override {
    EXPECT_EQ(ports.erase(ifindex), 1u) << "removed but never added: " << ifindex;
    log += "-" + std::to_string(ifindex) + " ";
  }
  std::set<int> ports;
  std::string log;
};

std::vector<LinkMessage> parse(const NetlinkBuilder& b) {
  std::vector<LinkMessage> out;
  EXPECT_TRUE(parse_link_messages(b.bytes().data(), b.bytes().size(), out));
  return out;
}

void feed(PortTracker& t, Recorder& r, const NetlinkBuilder& b) {
  for (const LinkMessage& m : parse(b)) t.apply(m, r);
}

}  // namespace

TEST(LinkMessages, DecodesLinksMasterKindDoneAndError) {
  NetlinkBuilder b;
  b.link(RTM_NEWLINK, kBridge, 0, "bridge", 7, kPortid)
      .new_link(10, kBridge, 7, kPortid)
      .del_link(11, 0)
      .done(7, kPortid)
      .error(8, kPortid, -EBUSY);
  const auto m = parse(b);
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].type, LinkMessage::Type::NewLink);
  EXPECT_EQ(m[0].ifindex, kBridge);
  EXPECT_TRUE(m[0].is_bridge);
  EXPECT_EQ(m[0].master, 0);
  EXPECT_EQ(m[0].seq, 7u);
  EXPECT_EQ(m[0].portid, kPortid);
  EXPECT_EQ(m[1].ifindex, 10);
  EXPECT_EQ(m[1].master, kBridge);
  EXPECT_FALSE(m[1].is_bridge);
  EXPECT_EQ(m[2].type, LinkMessage::Type::DelLink);
  EXPECT_EQ(m[2].ifindex, 11);
  EXPECT_EQ(m[3].type, LinkMessage::Type::Done);
  EXPECT_EQ(m[3].error, 0);
  EXPECT_EQ(m[4].type, LinkMessage::Type::Error);
  EXPECT_EQ(m[4].error, -EBUSY);
}

TEST(LinkMessages, KindMustBeExactlyBridge) {
  NetlinkBuilder b;
  b.link(RTM_NEWLINK, 5, 0, "bridgex").link(RTM_NEWLINK, 6, 0, "bridg").link(RTM_NEWLINK, 7, 0, "");
  for (const auto& m : parse(b)) EXPECT_FALSE(m.is_bridge) << m.ifindex;
}

TEST(LinkMessages, DamageStopsTheWalkWithoutReadingPastTheEnd) {
  NetlinkBuilder b;
  b.new_link(10, kBridge).new_link(11, kBridge);
  const std::vector<uint8_t> whole = b.bytes();
  // Every truncation: what parsed before the cut is kept, nothing else.
  for (size_t len = 0; len < whole.size(); len++) {
    std::vector<uint8_t> cut(whole.begin(), whole.begin() + static_cast<long>(len));
    std::vector<LinkMessage> out;
    const bool ok = parse_link_messages(cut.data(), cut.size(), out);
    EXPECT_LE(out.size(), 1u) << len;
    if (len == 0) {
      EXPECT_TRUE(ok);
    }
    if (!out.empty()) {
      EXPECT_EQ(out[0].ifindex, 10);
    }
  }
  // A message claiming more than the datagram holds, or less than a header.
  for (uint32_t bad : {0u, 8u, 15u, 100000u}) {
    std::vector<uint8_t> d = whole;
    std::memcpy(d.data(), &bad, sizeof(bad));
    std::vector<LinkMessage> out;
    EXPECT_FALSE(parse_link_messages(d.data(), d.size(), out)) << bad;
    EXPECT_TRUE(out.empty());
  }
  // An attribute longer than its message.
  std::vector<uint8_t> d = whole;
  const size_t first_attr = sizeof(nlmsghdr) + sizeof(ifinfomsg);
  const uint16_t huge = 4000;
  std::memcpy(d.data() + first_attr, &huge, sizeof(huge));
  std::vector<LinkMessage> out;
  EXPECT_FALSE(parse_link_messages(d.data(), d.size(), out));
}

TEST(PortTracker, DumpFindsTheBridgeAndItsPorts) {
  PortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  NetlinkBuilder b;
  b.link(RTM_NEWLINK, 1, 0, "", 1, kPortid)  // lo
      .link(RTM_NEWLINK, kBridge, 0, "bridge", 1, kPortid)
      .new_link(10, kBridge, 1, kPortid)
      .new_link(11, kBridge, 1, kPortid)
      .new_link(12, 99, 1, kPortid)  // a port of another bridge
      .done(1, kPortid);
  feed(t, r, b);
  EXPECT_FALSE(t.dumping());
  EXPECT_EQ(t.dump_error(), 0);
  EXPECT_TRUE(t.bridge_seen());
  EXPECT_TRUE(t.is_bridge());
  EXPECT_EQ(r.ports, (std::set<int>{10, 11}));
  EXPECT_EQ(t.ports().size(), 2u);
}

TEST(PortTracker, NotABridge) {
  PortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  NetlinkBuilder b;
  b.link(RTM_NEWLINK, kBridge, 0, "veth", 1, kPortid).done(1, kPortid);
  feed(t, r, b);
  EXPECT_TRUE(t.bridge_seen());
  EXPECT_FALSE(t.is_bridge());
}

TEST(PortTracker, NotificationsAddMoveAndRemovePorts) {
  PortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  feed(t, r, NetlinkBuilder().new_link(10, kBridge, 1, kPortid).done(1, kPortid));
  // A pod starts (its veth joins), another's veth changes state (same
  // master: nothing to do), one leaves the bridge without being deleted
  // (nomaster), one is deleted.
  NetlinkBuilder b;
  b.new_link(20, kBridge, 55, 777)  // a notification: someone else's seq and portid
      .new_link(20, kBridge)
      .new_link(21, kBridge)
      .new_link(10, 0)
      .del_link(21, kBridge)
      .del_link(30, 0);  // never a port
  feed(t, r, b);
  EXPECT_EQ(r.log, "+10 +20 +21 -10 -21 ");
  EXPECT_EQ(r.ports, (std::set<int>{20}));
  // Messages about the bridge itself never make it a port.
  feed(t, r, NetlinkBuilder().link(RTM_NEWLINK, kBridge, kBridge, "bridge"));
  EXPECT_EQ(r.ports, (std::set<int>{20}));
}

TEST(PortTracker, RepeatedDumpRemovesWhatIsGoneButNotWhatChangedMeanwhile) {
  PortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  feed(t, r,
       NetlinkBuilder()
           .new_link(10, kBridge, 1, kPortid)
           .new_link(11, kBridge, 1, kPortid)
           .new_link(12, kBridge, 1, kPortid)
           .done(1, kPortid));
  // Notifications were lost: dump again. While it runs, port 13 joins and
  // port 12 leaves (notifications), and the dump, a snapshot taken earlier,
  // still reports 12 and not 13. Port 11 vanished unnoticed: only the dump's
  // end tells.
  t.dump_started(2, kPortid);
  feed(t, r,
       NetlinkBuilder()
           .new_link(13, kBridge)
           .del_link(12, kBridge)
           .new_link(10, kBridge, 2, kPortid)
           .new_link(12, kBridge, 2, kPortid));
  EXPECT_TRUE(t.dumping());
  EXPECT_EQ(r.ports, (std::set<int>{10, 11, 13}));
  feed(t, r, NetlinkBuilder().done(2, kPortid));
  EXPECT_EQ(r.ports, (std::set<int>{10, 13}));
  EXPECT_EQ(r.log, "+10 +11 +12 +13 -12 -11 ");
}

TEST(PortTracker, FailedOrInterruptedDumpRemovesNothing) {
  PortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  feed(t, r, NetlinkBuilder().new_link(10, kBridge, 1, kPortid).done(1, kPortid));

  t.dump_started(2, kPortid);
  feed(t, r, NetlinkBuilder().error(2, kPortid, -EBUSY));
  EXPECT_FALSE(t.dumping());
  EXPECT_EQ(t.dump_error(), -EBUSY);
  EXPECT_EQ(r.ports, (std::set<int>{10}));

  // The kernel flags a dump whose list changed under it (NLM_F_DUMP_INTR).
  t.dump_started(3, kPortid);
  feed(t, r,
       NetlinkBuilder()
           .link(RTM_NEWLINK, 11, kBridge, "veth", 3, kPortid, NLM_F_MULTI | NLM_F_DUMP_INTR)
           .done(3, kPortid));
  EXPECT_EQ(t.dump_error(), -EINTR);
  EXPECT_EQ(r.ports, (std::set<int>{10, 11}));

  // An acknowledgement of something else does not end a dump.
  t.dump_started(4, kPortid);
  feed(t, r, NetlinkBuilder().done(3, kPortid).error(4, 999, -EPERM));
  EXPECT_TRUE(t.dumping());
}

// ---------------------------------------------------------------------------
// Routed pod interfaces (capture_start('cali*')): names, peers, kinds.

namespace {

using Link = NetlinkBuilder::Link;

LinkMessage one(const Link& l) {
  const auto m = parse(NetlinkBuilder().named_link(RTM_NEWLINK, l));
  EXPECT_EQ(m.size(), 1u);
  return m.empty() ? LinkMessage{} : m[0];
}

Link veth(int ifindex, const std::string& name, int netnsid = 3, int master = 0) {
  Link l;
  l.ifindex = ifindex;
  l.name = name;
  l.netnsid = netnsid;
  l.master = master;
  return l;
}

std::vector<std::string> skipped_names(const ebpfc::PortTracker& t) {
  std::vector<std::string> out;
  for (const auto& s : t.skipped()) out.push_back(s.second);
  return out;
}

}  // namespace

TEST(LinkMessages, DecodesNameKindPeerNamespaceTypeAndFlags) {
  Link l = veth(21, "calia1b2c3d4e5f");
  l.ifi_flags = IFF_UP;
  const LinkMessage m = one(l);
  EXPECT_STREQ(m.name, "calia1b2c3d4e5f");
  EXPECT_STREQ(m.kind, "veth");
  EXPECT_TRUE(m.peer_netns);
  EXPECT_EQ(m.arphrd, ARPHRD_ETHER);
  EXPECT_EQ(m.flags, static_cast<uint32_t>(IFF_UP));
  EXPECT_FALSE(m.is_bridge);

  // No IFLA_LINK_NETNSID: the peer is in the same namespace.
  EXPECT_FALSE(one(veth(22, "cilium_host", -1)).peer_netns);
  // A name longer than IFNAMSIZ is cut, and always terminated.
  const LinkMessage longer = one(veth(23, std::string(40, 'x')));
  EXPECT_EQ(std::string(longer.name), std::string(15, 'x'));
  Link nokind = veth(24, "eth0", -1);
  nokind.kind = "";
  EXPECT_STREQ(one(nokind).kind, "");
}

TEST(LinkMessages, OnlyVethsWithTheirPeerInAnotherNamespaceAreRoutedPodInterfaces) {
  EXPECT_EQ(ebpfc::routed_skip_reason(one(veth(10, "cali0123456789a"))), "");
  EXPECT_EQ(ebpfc::routed_skip_reason(one(veth(11, "lxc_health"))), "");

  Link lo = veth(1, "lo", -1);
  lo.kind = "";
  lo.ifi_flags = IFF_LOOPBACK | IFF_UP;
  lo.arphrd = ARPHRD_LOOPBACK;
  EXPECT_EQ(ebpfc::routed_skip_reason(one(lo)), "loopback");

  Link uplink = veth(2, "eth0", -1);
  uplink.kind = "";
  EXPECT_EQ(ebpfc::routed_skip_reason(one(uplink)), "not a veth: a physical device");

  Link tunnel = veth(3, "vxlan.calico", -1);
  tunnel.kind = "vxlan";
  EXPECT_EQ(ebpfc::routed_skip_reason(one(tunnel)), "not a veth: vxlan");

  Link bridge = veth(4, "cni0", -1);
  bridge.kind = "bridge";
  EXPECT_EQ(ebpfc::routed_skip_reason(one(bridge)), "a bridge: capture it by its name");

  EXPECT_EQ(ebpfc::routed_skip_reason(one(veth(5, "veth1", 3, 4))),
            "a port of a bridge or bond: capture the bridge by its name");
  EXPECT_EQ(ebpfc::routed_skip_reason(one(veth(6, "cilium_net", -1))),
            "its peer is in this network namespace, not a pod's");

  Link odd = veth(7, "cali7", 3);
  odd.arphrd = 65534;  // ARPHRD_NONE
  EXPECT_EQ(ebpfc::routed_skip_reason(one(odd)), "not Ethernet");
}

TEST(PortTracker, APatternSelectsThePodInterfacesItMatches) {
  PortTracker t(ebpfc::PortRule::routed("cali*"));
  Recorder r;
  t.dump_started(1, kPortid);
  Link tunnel = veth(12, "vxlan.calico", -1);
  tunnel.kind = "vxlan";
  Link bogus = veth(13, "cali_host", -1);  // matches, but its peer is here
  NetlinkBuilder b;
  b.pod_link(10, "cali0000000000a", 1, kPortid)
      .pod_link(11, "cali0000000000b", 1, kPortid)
      .named_link(RTM_NEWLINK, tunnel, 1, kPortid)  // does not match
      .named_link(RTM_NEWLINK, bogus, 1, kPortid)
      .pod_link(14, "lxc0000000000a", 1, kPortid)  // another CNI's
      .done(1, kPortid);
  feed(t, r, b);
  EXPECT_EQ(r.ports, (std::set<int>{10, 11}));
  EXPECT_EQ(t.port_name(10), "cali0000000000a");
  EXPECT_EQ(t.port_name(99), "");
  EXPECT_EQ(
      skipped_names(t),
      (std::vector<std::string>{"cali_host (its peer is in this network namespace, not a pod's)"}));
  EXPECT_FALSE(t.is_bridge());
}

TEST(PortTracker, PodInterfacesFollowRenamesMovesAndDeletions) {
  PortTracker t(ebpfc::PortRule::routed("lxc[0-9a-f]*"));
  Recorder r;
  t.dump_started(1, kPortid);
  feed(t, r, NetlinkBuilder().pod_link(10, "lxc0a", 1, kPortid).done(1, kPortid));
  uint64_t gen = t.generation();

  // A CNI plugin: a pair with temporary names on the node (its peer still
  // here), the peer moved into the pod's namespace, the host end renamed.
  feed(t, r, NetlinkBuilder().named_link(RTM_NEWLINK, veth(20, "tmp20", -1)));
  EXPECT_EQ(r.ports, (std::set<int>{10}));
  feed(t, r, NetlinkBuilder().pod_link(20, "tmp20"));
  EXPECT_EQ(r.ports, (std::set<int>{10}));
  feed(t, r, NetlinkBuilder().pod_link(20, "lxc1b"));
  EXPECT_EQ(r.ports, (std::set<int>{10, 20}));
  EXPECT_EQ(t.port_name(20), "lxc1b");
  EXPECT_NE(t.generation(), gen);
  gen = t.generation();

  // A state change that changes nothing we keep.
  feed(t, r, NetlinkBuilder().pod_link(20, "lxc1b"));
  EXPECT_EQ(t.generation(), gen);

  // Renamed within the pattern: the same port, its new name.
  feed(t, r, NetlinkBuilder().pod_link(20, "lxc2c"));
  EXPECT_EQ(t.port_name(20), "lxc2c");
  EXPECT_NE(t.generation(), gen);
  // Renamed out of it; a matching link that becomes a bridge port.
  feed(t, r, NetlinkBuilder().pod_link(20, "gone20"));
  feed(t, r, NetlinkBuilder().named_link(RTM_NEWLINK, veth(10, "lxc0a", 3, 7)));
  EXPECT_TRUE(r.ports.empty());
  EXPECT_EQ(skipped_names(t),
            (std::vector<std::string>{
                "lxc0a (a port of a bridge or bond: capture the bridge by its name)"}));
  // Deleted: neither a port nor skipped any more.
  feed(t, r, NetlinkBuilder().named_link(RTM_DELLINK, veth(10, "lxc0a", 3, 7)));
  EXPECT_TRUE(t.skipped().empty());
  EXPECT_EQ(r.log, "+10 +20 -20 -10 ");
}

TEST(PortTracker, RepeatedDumpForgetsSkippedLinksThatAreGone) {
  PortTracker t(ebpfc::PortRule::routed("*"));
  Recorder r;
  t.dump_started(1, kPortid);
  feed(t, r,
       NetlinkBuilder()
           .named_link(RTM_NEWLINK, veth(5, "cilium_host", -1), 1, kPortid)
           .named_link(RTM_NEWLINK, veth(6, "cilium_net", -1), 1, kPortid)
           .pod_link(7, "lxcaaaa", 1, kPortid)
           .done(1, kPortid));
  EXPECT_EQ(t.skipped().size(), 2u);
  EXPECT_EQ(r.ports, (std::set<int>{7}));
  // Both ends of the pair vanished unnoticed; the dump's end tells.
  t.dump_started(2, kPortid);
  feed(t, r, NetlinkBuilder().pod_link(7, "lxcaaaa", 2, kPortid).done(2, kPortid));
  EXPECT_TRUE(t.skipped().empty());
  EXPECT_EQ(r.ports, (std::set<int>{7}));
}

// ---------------------------------------------------------------------------
// capture_start('auto')

namespace {

std::vector<LinkMessage> links_of(const NetlinkBuilder& b) { return parse(b); }

Link bridge_dev(int ifindex, const std::string& name) {
  Link l = veth(ifindex, name, -1);
  l.kind = "bridge";
  return l;
}

}  // namespace

TEST(AutoChoice, TheLayoutWithTheMostPodInterfaces) {
  NetlinkBuilder flannel;
  flannel.named_link(RTM_NEWLINK, bridge_dev(3, "cni0"))
      .named_link(RTM_NEWLINK, bridge_dev(4, "docker0"))
      .named_link(RTM_NEWLINK, veth(10, "veth1", 3, 3))
      .named_link(RTM_NEWLINK, veth(11, "veth2", 3, 3))
      .named_link(RTM_NEWLINK, veth(12, "veth3", 3, 4));
  auto c = ebpfc::choose_capture_target(links_of(flannel));
  EXPECT_EQ(c.target, "cni0");
  EXPECT_TRUE(c.bridge);
  EXPECT_EQ(c.why, "bridge cni0 with 2 veth ports");

  NetlinkBuilder calico;
  Link tunnel = veth(5, "vxlan.calico", -1);
  tunnel.kind = "vxlan";
  calico.named_link(RTM_NEWLINK, bridge_dev(4, "docker0"))
      .named_link(RTM_NEWLINK, tunnel)
      .pod_link(10, "cali0000000000a")
      .pod_link(11, "cali0000000000b")
      .pod_link(12, "uplink0");  // a veth to somewhere else, not named like a CNI's
  c = ebpfc::choose_capture_target(links_of(calico));
  EXPECT_EQ(c.target, "cali*");
  EXPECT_FALSE(c.bridge);
  EXPECT_EQ(c.why, "2 routed pod interfaces named cali*");

  NetlinkBuilder cilium;
  cilium.named_link(RTM_NEWLINK, veth(5, "cilium_host", -1))
      .named_link(RTM_NEWLINK, veth(6, "cilium_net", -1))
      .pod_link(10, "lxc_health")
      .pod_link(11, "lxc0a1b2c3d4e5f");
  EXPECT_EQ(ebpfc::choose_capture_target(links_of(cilium)).target, "lxc*");

  // A tie goes to the bridge, and says what else there was.
  NetlinkBuilder tie;
  tie.named_link(RTM_NEWLINK, bridge_dev(3, "cni0"))
      .named_link(RTM_NEWLINK, veth(10, "veth1", 3, 3))
      .pod_link(11, "eni0123456789a");
  c = ebpfc::choose_capture_target(links_of(tie));
  EXPECT_EQ(c.target, "cni0");
  EXPECT_EQ(c.why, "bridge cni0 with 1 veth port (and 1 routed pod interfaces named eni*)");
}

TEST(AutoChoice, UnknownNamesShareAPrefixOrNothingFits) {
  NetlinkBuilder other;
  other.pod_link(10, "podif0001").pod_link(11, "podif0002").pod_link(12, "podif1003");
  auto c = ebpfc::choose_capture_target(links_of(other));
  EXPECT_EQ(c.target, "podif*");
  EXPECT_EQ(c.why, "3 routed pod interfaces named podif*");

  // One of them: its whole name, cut to leave room for the '*'.
  NetlinkBuilder single;
  single.pod_link(10, "abcdefghijklmno");
  EXPECT_EQ(ebpfc::choose_capture_target(links_of(single)).target, "abcdefghijklmn*");

  NetlinkBuilder mixed;
  mixed.pod_link(10, "ab1").pod_link(11, "cd2");
  c = ebpfc::choose_capture_target(links_of(mixed));
  EXPECT_EQ(c.target, "");
  EXPECT_NE(c.why.find("share a prefix"), std::string::npos) << c.why;

  NetlinkBuilder empty;
  empty.named_link(RTM_NEWLINK, bridge_dev(3, "cni0"));  // a bridge without ports
  c = ebpfc::choose_capture_target(links_of(empty));
  EXPECT_EQ(c.target, "");
  EXPECT_NE(c.why.find("found no bridge with veth ports"), std::string::npos) << c.why;
}
