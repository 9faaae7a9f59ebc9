// link_seeds.cpp - writes seed inputs for link_fuzz (length-prefixed
// rtnetlink datagrams: a dump, notifications, a repeated dump, errors).
#include <cstdio>
#include <string>
#include <vector>

#include "netlink_builder.h"
#include "seed_file.h"

using ebpfc::test::NetlinkBuilder;

namespace {

constexpr int kBridge = 3;
constexpr uint32_t kPortid = 4242;

void append(std::vector<uint8_t>& out, const NetlinkBuilder& b) {
  const auto& d = b.bytes();
  out.push_back(static_cast<uint8_t>(d.size() & 0xff));
  out.push_back(static_cast<uint8_t>(d.size() >> 8));
  out.insert(out.end(), d.begin(), d.end());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<uint8_t> a;
  append(a, NetlinkBuilder()
                .link(RTM_NEWLINK, kBridge, 0, "bridge", 1, kPortid)
                .new_link(10, kBridge, 1, kPortid)
                .new_link(11, kBridge, 1, kPortid)
                .done(1, kPortid));
  append(a, NetlinkBuilder().new_link(12, kBridge).del_link(10, kBridge).new_link(11, 0));
  std::vector<uint8_t> b;
  append(b, NetlinkBuilder().new_link(10, kBridge, 1, kPortid).done(1, kPortid));
  append(b, NetlinkBuilder().new_link(13, kBridge).new_link(10, kBridge, 2, kPortid));
  append(b, NetlinkBuilder().del_link(13, kBridge).error(2, kPortid, -16));
  // Routed pod interfaces (the fuzzer's pattern is "dev1*"): a dump with a
  // pod's veth, its peer-less twin, a tunnel and a bridge port; then a pod
  // plugged in the CNI way (made here, peer moved, renamed) and one removed.
  std::vector<uint8_t> c;
  NetlinkBuilder::Link tunnel;
  tunnel.ifindex = 15;
  tunnel.name = "dev15";
  tunnel.kind = "vxlan";
  NetlinkBuilder::Link pair;
  pair.ifindex = 16;
  pair.name = "dev16";
  append(c, NetlinkBuilder()
                .pod_link(10, "dev10", 1, kPortid)
                .named_link(RTM_NEWLINK, pair, 1, kPortid)
                .named_link(RTM_NEWLINK, tunnel, 1, kPortid)
                .new_link(17, kBridge, 1, kPortid)
                .done(1, kPortid));
  NetlinkBuilder::Link tmp;
  tmp.ifindex = 18;
  tmp.name = "tmp18";
  append(c, NetlinkBuilder()
                .named_link(RTM_NEWLINK, tmp)
                .pod_link(18, "tmp18")
                .pod_link(18, "dev18")
                .del_link(10, 0));
  return ebpfc_test::write_seed(dir, "dump_then_notify", a) &&
                 ebpfc_test::write_seed(dir, "redump", b) &&
                 ebpfc_test::write_seed(dir, "routed", c)
             ? 0
             : 1;
}
