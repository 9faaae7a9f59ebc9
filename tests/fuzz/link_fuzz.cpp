// link_fuzz.cpp - libFuzzer target for the bridge port tracker's input: the
// rtnetlink datagrams the capture reads (capture/link_messages.h).
//
// The input is a sequence of datagrams, each prefixed with its length (2
// bytes, little-endian; a length past the end takes what is left). A dump
// from seq 1 is in progress when the first one arrives; a datagram starting
// with a dump's end starts the next dump (seq + 1), as BridgeWatch does.
//
// Checked (CHECK aborts: libFuzzer reports a crash): the decoder never reads
// past a datagram (ASan) and never yields more messages than the datagram
// has room for; the listener is never told of a port twice or of the removal
// of a port it was not told of; its view always equals the tracker's.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

#include <linux/netlink.h>

#include "capture/link_messages.h"

#include "fuzz_check.h"

namespace {

constexpr int kBridge = 3;
constexpr uint32_t kPortid = 4242;

class Checker : public ebpfc::PortListener {
 public:
  void port_added(int ifindex) override { CHECK(ports.insert(ifindex).second); }
  void port_removed(int ifindex) override { CHECK(ports.erase(ifindex) == 1); }
  std::set<int> ports;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ebpfc::BridgePortTracker tracker(kBridge);
  Checker checker;
  uint32_t seq = 1;
  tracker.dump_started(seq, kPortid);
  std::vector<ebpfc::LinkMessage> messages;
  size_t off = 0;
  while (off + 2 <= size) {
    size_t len = static_cast<size_t>(data[off]) | static_cast<size_t>(data[off + 1]) << 8;
    off += 2;
    if (len > size - off) len = size - off;
    // A copy of exactly len bytes, so ASan sees any read past the datagram.
    std::vector<uint8_t> datagram(data + off, data + off + len);
    off += len;
    messages.clear();
    (void)ebpfc::parse_link_messages(datagram.data(), datagram.size(), messages);
    CHECK(messages.size() <= datagram.size() / sizeof(nlmsghdr));
    for (const auto& m : messages) tracker.apply(m, checker);
    if (!tracker.dumping()) tracker.dump_started(++seq, kPortid);
    CHECK(checker.ports.size() == tracker.ports().size());
    for (int p : tracker.ports()) CHECK(checker.ports.count(p) == 1);
  }
  return 0;
}
