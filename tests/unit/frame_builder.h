// frame_builder.h - builds Ethernet frames byte by byte for the parser tests
// and the fuzzer's seed corpus: Ethernet, 802.1Q/802.1ad tags, IPv4 with
// options, IPv6 with extension header chains, TCP with options and payload.
//
// Every length field is computed from what was built unless a test overrides
// it to make the frame inconsistent on purpose. Checksums are left zero: the
// decoder does not look at them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ebpfc_test {

using Bytes = std::vector<uint8_t>;
using Ip4 = std::array<uint8_t, 4>;
using Ip6 = std::array<uint8_t, 16>;

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

inline void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

inline void set16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

inline Bytes payload_of(size_t n, uint8_t first = 'a') {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>(first + i % 26);
  return b;
}

// ---- TCP --------------------------------------------------------------

struct TcpSpec {
  uint16_t sport = 40000;
  uint16_t dport = 5432;
  uint32_t seq = 1000;
  uint32_t ack = 0;
  uint8_t flags = 0x10;  // ACK
  uint16_t window = 65535;
  Bytes options;  // padded with NOPs to a multiple of 4
  Bytes payload;
  int data_offset = -1;  // 32-bit words; -1: computed
};

inline Bytes build_tcp(const TcpSpec& t) {
  Bytes opts = t.options;
  while (opts.size() % 4 != 0) opts.push_back(1);  // NOP
  const int doff = t.data_offset >= 0 ? t.data_offset : static_cast<int>(5 + opts.size() / 4);
  Bytes b;
  put16(b, t.sport);
  put16(b, t.dport);
  put32(b, t.seq);
  put32(b, t.ack);
  b.push_back(static_cast<uint8_t>((doff & 0x0f) << 4));
  b.push_back(t.flags);
  put16(b, t.window);
  put16(b, 0);  // checksum
  put16(b, 0);  // urgent pointer
  b.insert(b.end(), opts.begin(), opts.end());
  b.insert(b.end(), t.payload.begin(), t.payload.end());
  return b;
}

// Typical SYN options: MSS 1460, SACK permitted, timestamps, window scale 7.
inline Bytes syn_options() {
  return {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7};
}

// ---- IPv4 -------------------------------------------------------------

struct Ipv4Spec {
  Ip4 src{10, 0, 0, 2};
  Ip4 dst{10, 0, 0, 1};
  uint8_t protocol = 6;
  uint8_t version = 4;
  uint8_t ttl = 64;
  uint16_t frag = 0x4000;  // flags + fragment offset field; default DF
  Bytes options;           // padded with zeros (end of options) to a multiple of 4
  int ihl = -1;            // 32-bit words; -1: computed
  int total_length = -1;   // -1: header + l4
};

inline Bytes build_ipv4(const Ipv4Spec& ip, const Bytes& l4) {
  Bytes opts = ip.options;
  while (opts.size() % 4 != 0) opts.push_back(0);
  const int ihl = ip.ihl >= 0 ? ip.ihl : static_cast<int>(5 + opts.size() / 4);
  const size_t tot =
      ip.total_length >= 0 ? static_cast<size_t>(ip.total_length) : 20 + opts.size() + l4.size();
  Bytes b;
  b.push_back(static_cast<uint8_t>(ip.version << 4 | (ihl & 0x0f)));
  b.push_back(0);  // DSCP/ECN
  put16(b, static_cast<uint16_t>(tot));
  put16(b, 0x1234);  // identification
  put16(b, ip.frag);
  b.push_back(ip.ttl);
  b.push_back(ip.protocol);
  put16(b, 0);  // checksum
  b.insert(b.end(), ip.src.begin(), ip.src.end());
  b.insert(b.end(), ip.dst.begin(), ip.dst.end());
  b.insert(b.end(), opts.begin(), opts.end());
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

// ---- IPv6 -------------------------------------------------------------

// One extension header. `size` is its whole length in bytes: a multiple of 8
// (at least 8) for hop-by-hop (0), routing (43), fragment (44, always 8) and
// destination options (60); a multiple of 4 (at least 8) for AH (51).
struct Ipv6Ext {
  uint8_t type;
  size_t size = 8;
};

struct Ipv6Spec {
  Ip6 src{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
  Ip6 dst{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  uint8_t upper = 6;  // protocol after the extension headers
  uint8_t version = 6;
  std::vector<Ipv6Ext> ext;
  long payload_length = -1;  // -1: computed
};

inline Bytes build_ipv6(const Ipv6Spec& ip, const Bytes& l4) {
  Bytes chain;
  for (size_t i = 0; i < ip.ext.size(); i++) {
    const Ipv6Ext& e = ip.ext[i];
    const uint8_t next = i + 1 < ip.ext.size() ? ip.ext[i + 1].type : ip.upper;
    const size_t start = chain.size();
    chain.push_back(next);
    if (e.type == 51)
      chain.push_back(static_cast<uint8_t>(e.size / 4 - 2));
    else if (e.type == 44)
      chain.push_back(0);  // reserved; a fragment header is always 8 bytes
    else
      chain.push_back(static_cast<uint8_t>(e.size / 8 - 1));
    while (chain.size() - start < e.size) chain.push_back(e.type == 0 || e.type == 60 ? 1 : 0);
    if (e.type == 0 || e.type == 60) {
      // options area: PadN covering everything after the first two bytes
      chain[start + 2] = 1;
      chain[start + 3] = static_cast<uint8_t>(e.size - 4);
      for (size_t k = start + 4; k < start + e.size; k++) chain[k] = 0;
    }
  }
  const size_t plen =
      ip.payload_length >= 0 ? static_cast<size_t>(ip.payload_length) : chain.size() + l4.size();
  Bytes b;
  b.push_back(static_cast<uint8_t>(ip.version << 4));
  b.push_back(0);
  put16(b, 0x1234);  // flow label (low 16 bits)
  put16(b, static_cast<uint16_t>(plen));
  b.push_back(ip.ext.empty() ? ip.upper : ip.ext[0].type);
  b.push_back(64);  // hop limit
  b.insert(b.end(), ip.src.begin(), ip.src.end());
  b.insert(b.end(), ip.dst.begin(), ip.dst.end());
  b.insert(b.end(), chain.begin(), chain.end());
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

// ---- Ethernet ---------------------------------------------------------

constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint16_t kEthIpv6 = 0x86DD;
constexpr uint16_t kEthArp = 0x0806;
constexpr uint16_t kTpid8021Q = 0x8100;
constexpr uint16_t kTpid8021AD = 0x88A8;

struct VlanTag {
  uint16_t tpid;
  uint16_t tci;
};

// The frame is padded with zeros to min_len (60: the Ethernet minimum without
// the FCS) the way a NIC pads a short frame.
inline Bytes build_eth(uint16_t ethertype, const Bytes& l3, const std::vector<VlanTag>& tags = {},
                       size_t min_len = 0) {
  Bytes b{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};  // dst, src MAC
  for (const VlanTag& t : tags) {
    put16(b, t.tpid);
    put16(b, t.tci);
  }
  put16(b, ethertype);
  b.insert(b.end(), l3.begin(), l3.end());
  while (b.size() < min_len) b.push_back(0);
  return b;
}

inline Bytes tcp4_frame(const Ipv4Spec& ip, const TcpSpec& t, const std::vector<VlanTag>& tags = {},
                        size_t min_len = 0) {
  return build_eth(kEthIpv4, build_ipv4(ip, build_tcp(t)), tags, min_len);
}

inline Bytes tcp6_frame(const Ipv6Spec& ip, const TcpSpec& t, const std::vector<VlanTag>& tags = {},
                        size_t min_len = 0) {
  return build_eth(kEthIpv6, build_ipv6(ip, build_tcp(t)), tags, min_len);
}

}  // namespace ebpfc_test
