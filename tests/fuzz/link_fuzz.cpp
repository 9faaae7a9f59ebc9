// link_fuzz.cpp - libFuzzer target for the port trackers' input: the
// rtnetlink datagrams the capture reads (capture/link_messages.h), fed to a
// tracker of a bridge's ports and to one of routed pod interfaces matching a
// pattern, and to the choice capture_start('auto') makes from them.
//
// The input is a sequence of datagrams, each prefixed with its length (2
// bytes, little-endian; a length past the end takes what is left). A dump
// from seq 1 is in progress when the first one arrives; a datagram starting
// with a dump's end starts the next dump (seq + 1), as LinkWatch does.
//
// Checked (CHECK aborts: libFuzzer reports a crash): the decoder never reads
// past a datagram (ASan) and never yields more messages than the datagram
// has room for; the listener is never told of a port twice or of the removal
// of a port it was not told of; its view always equals the tracker's; every
// port has a name the pattern matches, and no
// link is both a port and skipped; the auto choice fits in an interface name.
#include <fnmatch.h>

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
constexpr const char* kPattern = "dev1*";

class Checker : public ebpfc::PortListener {
 public:
  void port_added(int ifindex) override { CHECK(ports.insert(ifindex).second); }
  void port_removed(int ifindex) override { CHECK(ports.erase(ifindex) == 1); }
  std::set<int> ports;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ebpfc::PortTracker tracker(kBridge);
  ebpfc::PortTracker routed(ebpfc::PortRule::routed(kPattern));
  Checker checker, routed_checker;
  uint32_t seq = 1;
  tracker.dump_started(seq, kPortid);
  routed.dump_started(seq, kPortid);
  std::vector<ebpfc::LinkMessage> messages, all;
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
    for (const auto& m : messages) {
      tracker.apply(m, checker);
      routed.apply(m, routed_checker);
      if (m.type == ebpfc::LinkMessage::Type::NewLink && all.size() < 256) all.push_back(m);
    }
    if (!tracker.dumping()) tracker.dump_started(++seq, kPortid);
    if (!routed.dumping()) routed.dump_started(seq, kPortid);
    CHECK(checker.ports.size() == tracker.ports().size());
    for (int p : tracker.ports()) CHECK(checker.ports.count(p) == 1);
    CHECK(routed_checker.ports.size() == routed.ports().size());
    for (int p : routed.ports()) {
      CHECK(routed_checker.ports.count(p) == 1);
      CHECK(routed.skipped().count(p) == 0);
      CHECK(fnmatch(kPattern, routed.port_name(p).c_str(), 0) == 0);
    }
  }
  const ebpfc::AutoChoice choice = ebpfc::choose_capture_target(all);
  CHECK(choice.target.size() < 16);
  CHECK(!choice.why.empty());
  return 0;
}
