// make_seeds.cpp - writes the seed corpus of frame_fuzz into the directory
// given as argv[1]: a few raw frames (the whole input is one frame) and a few
// captures in frame_fuzz's record format (ctl | length | frame ...), built
// with the unit tests' frame builder.
#include <cstdio>
#include <string>

#include "frame_builder.h"
#include "seed_file.h"

namespace {

using namespace ebpfc_test;

constexpr uint8_t kSyn = 0x02, kAck = 0x10, kFin = 0x01, kRst = 0x04, kPsh = 0x08;
constexpr uint8_t kDrain = 0x80, kSweep = 0x40;

struct Side4 {
  Ip4 addr;
  uint16_t port;
};

class Capture {
 public:
  // Appends one record: the clock advances `ms` milliseconds (< 64).
  Capture& add(const Bytes& frame, uint8_t ms = 1, uint8_t extra = 0) {
    bytes_.push_back(static_cast<uint8_t>((ms & 0x3f) | extra));
    put16(bytes_, static_cast<uint16_t>(frame.size()));
    bytes_.insert(bytes_.end(), frame.begin(), frame.end());
    return *this;
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

TcpSpec seg(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq, uint32_t ack, size_t len) {
  TcpSpec t;
  t.sport = sport;
  t.dport = dport;
  t.flags = flags;
  t.seq = seq;
  t.ack = ack;
  t.payload = payload_of(len);
  if (flags & kSyn) t.options = syn_options();
  return t;
}

Bytes v4(const Side4& from, const Side4& to, uint8_t flags, uint32_t seq, uint32_t ack, size_t len,
         const std::vector<VlanTag>& tags = {}) {
  Ipv4Spec ip;
  ip.src = from.addr;
  ip.dst = to.addr;
  return tcp4_frame(ip, seg(from.port, to.port, flags, seq, ack, len), tags, 60);
}

Bytes v6(bool from_client, uint8_t flags, uint32_t seq, uint32_t ack, size_t len,
         const std::vector<Ipv6Ext>& ext = {}) {
  Ipv6Spec ip;
  if (!from_client) std::swap(ip.src, ip.dst);
  ip.ext = ext;
  const uint16_t cp = 51000, sp = 443;
  return tcp6_frame(
      ip, from_client ? seg(cp, sp, flags, seq, ack, len) : seg(sp, cp, flags, seq, ack, len));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const Side4 c{{10, 0, 0, 2}, 40000};
  const Side4 s{{10, 0, 0, 1}, 5432};
  const Side4 c2{{10, 0, 0, 3}, 40001};
  bool ok = true;

  // raw frames
  ok &= write_seed(dir, "raw_ipv4_syn", v4(c, s, kSyn, 1000, 0, 0));
  ok &= write_seed(dir, "raw_ipv4_data", v4(s, c, kPsh | kAck, 5001, 1001, 200));
  ok &= write_seed(dir, "raw_ipv6_ext_chain",
                   v6(true, kPsh | kAck, 7, 9, 40, {{0, 8}, {60, 16}, {43, 24}, {51, 12}}));
  ok &= write_seed(dir, "raw_vlan_qinq",
                   v4(c, s, kAck, 1, 1, 10, {{kTpid8021AD, 100}, {kTpid8021Q, 200}}));
  {
    Ipv4Spec ip;
    ip.options = {7, 7, 4, 0, 0, 0, 0, 0};
    ok &= write_seed(dir, "raw_ipv4_options", tcp4_frame(ip, seg(40000, 5432, kAck, 1, 1, 3)));
  }

  // a whole connection closed by FINs, then reused for a second one
  {
    Capture cap;
    cap.add(v4(c, s, kSyn, 1000, 0, 0))
        .add(v4(s, c, kSyn | kAck, 5000, 1001, 0))
        .add(v4(c, s, kAck, 1001, 5001, 0))
        .add(v4(c, s, kPsh | kAck, 1001, 5001, 100))
        .add(v4(s, c, kPsh | kAck, 5001, 1101, 300))
        .add(v4(c, s, kFin | kAck, 1101, 5301, 0))
        .add(v4(s, c, kAck, 5301, 1102, 0))
        .add(v4(s, c, kFin | kAck, 5301, 1102, 0))
        .add(v4(c, s, kAck, 1102, 5302, 0))
        .add(v4(c, s, kAck, 1102, 5302, 0), 1)  // late
        .add(v4(c, s, kSyn, 90000, 0, 0), 1)    // the same four-tuple again
        .add(v4(s, c, kSyn | kAck, 7, 90001, 0))
        .add(v4(c, s, kAck, 90001, 8, 0), 1, kDrain)
        .add(v4(c, s, kAck, 90001, 8, 0), 63, kSweep)
        .add(v4(c, s, kAck, 90001, 8, 0), 63, kSweep)
        .add(v4(c, s, kAck, 90001, 8, 0), 63, kSweep)
        .add(v4(c, s, kAck, 90001, 8, 0), 63, kSweep);
    ok &= write_seed(dir, "cap_ipv4_fin_reuse", cap.bytes());
  }

  // IPv6 with extension headers, reset by the server
  {
    Capture cap;
    cap.add(v6(true, kSyn, 1, 0, 0, {{0, 8}}))
        .add(v6(false, kSyn | kAck, 100, 2, 0))
        .add(v6(true, kAck, 2, 101, 0))
        .add(v6(true, kPsh | kAck, 2, 101, 500, {{60, 16}}))
        .add(v6(false, kRst | kAck, 101, 502, 0), 2, kDrain);
    ok &= write_seed(dir, "cap_ipv6_rst", cap.bytes());
  }

  // VLAN, mid-stream, retransmission, overlap, a gap and its filler, a resync
  {
    const std::vector<VlanTag> tag = {{kTpid8021Q, 42}};
    Capture cap;
    cap.add(v4(c, s, kAck, 1000, 1, 100, tag))
        .add(v4(c, s, kAck, 1000, 1, 100, tag))
        .add(v4(c, s, kAck, 1050, 1, 100, tag))
        .add(v4(c, s, kAck, 1250, 1, 100, tag))
        .add(v4(c, s, kAck, 1150, 1, 100, tag))
        .add(v4(c, s, kAck, 1350 + (32u << 20), 1, 100, tag))
        .add(v4(s, c, kAck, 0xffffff00u, 1, 0x200, tag))
        .add(v4(c2, s, kSyn, 5, 0, 0, tag))
        .add(v4(s, c2, kRst | kAck, 0, 6, 0, tag), 1, kDrain);
    ok &= write_seed(dir, "cap_vlan_midstream", cap.bytes());
  }

  // a SYN that is never answered, swept as idle
  {
    Capture cap;
    cap.add(v4(c2, s, kSyn, 1, 0, 0))
        .add(v4(c2, s, kSyn, 1, 0, 0), 63)
        .add(v4(c, s, kSyn | kAck, 1, 2, 0), 63, kSweep)
        .add(v4(c, s, kAck, 2, 2, 0), 63, kSweep)
        .add(v4(c, s, kAck, 2, 2, 0), 63, kSweep)
        .add(v4(c, s, kAck, 2, 2, 0), 63, kSweep);
    ok &= write_seed(dir, "cap_unanswered_syn", cap.bytes());
  }
  return ok ? 0 : 1;
}
