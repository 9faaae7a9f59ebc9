// Bridge ports from rtnetlink link messages: the decoder (bounded, robust to
// damage) and the tracker that turns a dump plus notifications into port
// added / removed calls (capture/link_messages.h).
#include "capture/link_messages.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "netlink_builder.h"

using ebpfc::BridgePortTracker;
using ebpfc::LinkMessage;
using ebpfc::parse_link_messages;
using ebpfc::PortListener;
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

void feed(BridgePortTracker& t, Recorder& r, const NetlinkBuilder& b) {
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

TEST(BridgePortTracker, DumpFindsTheBridgeAndItsPorts) {
  BridgePortTracker t(kBridge);
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

TEST(BridgePortTracker, NotABridge) {
  BridgePortTracker t(kBridge);
  Recorder r;
  t.dump_started(1, kPortid);
  NetlinkBuilder b;
  b.link(RTM_NEWLINK, kBridge, 0, "veth", 1, kPortid).done(1, kPortid);
  feed(t, r, b);
  EXPECT_TRUE(t.bridge_seen());
  EXPECT_FALSE(t.is_bridge());
}

TEST(BridgePortTracker, NotificationsAddMoveAndRemovePorts) {
  BridgePortTracker t(kBridge);
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

TEST(BridgePortTracker, RepeatedDumpRemovesWhatIsGoneButNotWhatChangedMeanwhile) {
  BridgePortTracker t(kBridge);
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

TEST(BridgePortTracker, FailedOrInterruptedDumpRemovesNothing) {
  BridgePortTracker t(kBridge);
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
