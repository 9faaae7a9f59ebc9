// Tests of bpf/frame_parse.h: Ethernet frames built byte by byte, decoded with
// a bounds-checked EBPFC_LOAD and heads of every length.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "bpf_user.h"
#include "frame_builder.h"

namespace ebpfc_test {
namespace {

constexpr uint8_t kSyn = EBPFC_TCP_SYN;
constexpr uint8_t kAck = EBPFC_TCP_ACK;
constexpr uint8_t kPsh = EBPFC_TCP_PSH;

Ip6 mapped(const Ip4& a) {
  Ip6 m{};
  m[10] = 0xff;
  m[11] = 0xff;
  std::copy(a.begin(), a.end(), m.begin() + 12);
  return m;
}

Ip6 key_addr(const ebpfc_flow_key& k, int i) {
  Ip6 a;
  std::copy(std::begin(k.addr[i]), std::end(k.addr[i]), a.begin());
  return a;
}

std::string describe(int r) {
  switch (r) {
    case EBPFC_PARSE_TCP:
      return "TCP";
    case EBPFC_PARSE_NOT_TCP:
      return "NOT_TCP";
    case EBPFC_PARSE_FRAGMENT:
      return "FRAGMENT";
    case EBPFC_PARSE_MALFORMED:
      return "MALFORMED";
  }
  return "result " + std::to_string(r);
}

// The filter decodes the headers that lie in a frame's head (its first bytes,
// read at once) from there and reads the rest with EBPFC_LOAD. Every head
// length must decode a frame the same way: each frame is parsed with the
// filter's head and again with heads that end inside each header.
int parse_every_head(const Bytes& frame, ebpfc_packet* p) {
  std::memset(p, 0xa5, sizeof(*p));  // nothing may be left unwritten
  const int r = parse(frame, p);
  for (size_t limit : {0, 12, 14, 16, 18, 22, 30, 34, 40, 54, 58, 62, 74, 80, 94, 100}) {
    ebpfc_packet q;
    std::memset(&q, 0xa5, sizeof(q));
    EXPECT_EQ(describe(parse(frame, &q, limit)), describe(r)) << "with a head of " << limit;
    if (r == EBPFC_PARSE_TCP) {
      EXPECT_EQ(std::memcmp(p, &q, sizeof(q)), 0) << "with a head of " << limit;
    }
  }
  return r;
}

int parse_result(const Bytes& frame) {
  ebpfc_packet p;
  return parse_every_head(frame, &p);
}

// Parses a frame that must be TCP.
ebpfc_packet parse_tcp(const Bytes& frame) {
  ebpfc_packet p;
  const int r = parse_every_head(frame, &p);
  EXPECT_EQ(describe(r), "TCP");
  return p;
}

bool keys_equal(const ebpfc_flow_key& a, const ebpfc_flow_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;  // the BPF map compares all bytes
}

void expect_clean_padding(const ebpfc_packet& p) {
  EXPECT_EQ(p.key.pad[0], 0);
  EXPECT_EQ(p.key.pad[1], 0);
  EXPECT_EQ(p.key.pad[2], 0);
  EXPECT_EQ(p.pad[0], 0);
  EXPECT_EQ(p.pad[1], 0);
}

const Ip4 kClient4{10, 0, 0, 2};
const Ip4 kServer4{10, 0, 0, 1};

// ---- IPv4 --------------------------------------------------------------

TEST(FrameParse, Ipv4SegmentFields) {
  TcpSpec t;
  t.seq = 0x01020304;
  t.ack = 0xa0b0c0d0;
  t.flags = kPsh | kAck;
  t.payload = payload_of(100);
  const Bytes f = tcp4_frame(Ipv4Spec{}, t);
  ASSERT_EQ(f.size(), 14u + 20 + 20 + 100);

  const ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.key.family, 4);
  // 10.0.0.1:5432 (the server) is the smaller endpoint; the client sent this.
  EXPECT_EQ(key_addr(p.key, 0), mapped(kServer4));
  EXPECT_EQ(key_addr(p.key, 1), mapped(kClient4));
  EXPECT_EQ(p.key.port[0], 5432);
  EXPECT_EQ(p.key.port[1], 40000);
  EXPECT_EQ(p.sender, 1);
  EXPECT_EQ(p.seq, 0x01020304u);
  EXPECT_EQ(p.ack, 0xa0b0c0d0u);
  EXPECT_EQ(p.flags, kPsh | kAck);
  EXPECT_EQ(p.payload_off, 54u);
  EXPECT_EQ(p.payload_len, 100u);
  ASSERT_LE(p.payload_off + p.payload_len, f.size());
  EXPECT_TRUE(std::equal(t.payload.begin(), t.payload.end(), f.begin() + p.payload_off));
  expect_clean_padding(p);
}

TEST(FrameParse, Ipv4AddressesAreStoredIpv4Mapped) {
  Ipv4Spec ip;
  ip.src = {192, 168, 200, 17};
  ip.dst = {203, 0, 113, 9};
  const ebpfc_packet p = parse_tcp(tcp4_frame(ip, TcpSpec{}));
  const uint8_t want0[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 200, 17};
  const uint8_t want1[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9};
  EXPECT_EQ(std::memcmp(p.key.addr[0], want0, 16), 0);
  EXPECT_EQ(std::memcmp(p.key.addr[1], want1, 16), 0);
  EXPECT_EQ(p.sender, 0);
}

TEST(FrameParse, BothDirectionsGiveTheSameKey) {
  TcpSpec out;
  out.flags = kSyn;
  TcpSpec back;
  back.sport = 5432;
  back.dport = 40000;
  back.flags = kSyn | kAck;
  Ipv4Spec ip_back;
  ip_back.src = kServer4;
  ip_back.dst = kClient4;

  const ebpfc_packet a = parse_tcp(tcp4_frame(Ipv4Spec{}, out));
  const ebpfc_packet b = parse_tcp(tcp4_frame(ip_back, back));
  EXPECT_TRUE(keys_equal(a.key, b.key));
  EXPECT_EQ(a.sender, 1);
  EXPECT_EQ(b.sender, 0);
}

TEST(FrameParse, SameAddressOrdersByPort) {
  Ipv4Spec ip;
  ip.src = {127, 0, 0, 1};
  ip.dst = {127, 0, 0, 1};
  TcpSpec t;  // 40000 -> 5432
  ebpfc_packet p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.key.port[0], 5432);
  EXPECT_EQ(p.key.port[1], 40000);
  EXPECT_EQ(p.sender, 1);

  // Ports compare as numbers: 255 < 256 (a byte-swapped compare says otherwise).
  t.sport = 256;
  t.dport = 255;
  p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.key.port[0], 255);
  EXPECT_EQ(p.key.port[1], 256);
  EXPECT_EQ(p.sender, 1);
  std::swap(t.sport, t.dport);
  p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.key.port[0], 255);
  EXPECT_EQ(p.sender, 0);
}

TEST(FrameParse, AddressOrdersBeforePortInNetworkByteOrder) {
  Ipv4Spec ip;
  TcpSpec t;
  // 10.0.0.255:1 -> 10.0.1.0:60000: the address decides, byte by byte
  // (a little-endian 32-bit compare would put 10.0.1.0 first).
  ip.src = {10, 0, 0, 255};
  ip.dst = {10, 0, 1, 0};
  t.sport = 1;
  t.dport = 60000;
  ebpfc_packet p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.sender, 0);
  EXPECT_EQ(key_addr(p.key, 0), mapped(ip.src));
  EXPECT_EQ(p.key.port[0], 1);

  std::swap(ip.src, ip.dst);
  std::swap(t.sport, t.dport);
  p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.sender, 1);
  EXPECT_EQ(key_addr(p.key, 0), mapped(ip.dst));
  EXPECT_EQ(p.key.port[0], 1);
}

TEST(FrameParse, IdenticalEndpointsKeepSenderZero) {
  Ipv4Spec ip;
  ip.src = ip.dst = {127, 0, 0, 1};
  TcpSpec t;
  t.sport = t.dport = 7000;
  const ebpfc_packet p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.sender, 0);
  EXPECT_EQ(p.key.port[0], 7000);
  EXPECT_EQ(p.key.port[1], 7000);
}

TEST(FrameParse, FieldExtremes) {
  TcpSpec t;
  t.sport = 65535;
  t.dport = 1;
  t.seq = 0xffffffff;
  t.ack = 0;
  t.flags = 0xff;
  const ebpfc_packet p = parse_tcp(tcp4_frame(Ipv4Spec{}, t));
  EXPECT_EQ(p.seq, 0xffffffffu);
  EXPECT_EQ(p.ack, 0u);
  EXPECT_EQ(p.flags, 0xff);
  // 10.0.0.1 (the receiver) is the smaller address: endpoint 0 whatever the ports
  EXPECT_EQ(p.key.port[0], 1);
  EXPECT_EQ(p.key.port[1], 65535);
  EXPECT_EQ(p.sender, 1);
}

TEST(FrameParse, Ipv4OptionsMoveTheTcpHeader) {
  Ipv4Spec ip;
  ip.options = {7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0};  // record route, padded to 12
  TcpSpec t;
  t.seq = 77;
  t.payload = payload_of(9);
  Bytes f = tcp4_frame(ip, t);
  ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.payload_off, 14u + 32 + 20);
  EXPECT_EQ(p.payload_len, 9u);
  EXPECT_EQ(p.seq, 77u);
  EXPECT_EQ(p.key.port[1], 40000);

  // the largest header: IHL 15, 40 bytes of options
  ip.options.assign(40, 1);
  f = tcp4_frame(ip, t);
  p = parse_tcp(f);
  EXPECT_EQ(p.payload_off, 14u + 60 + 20);
  EXPECT_EQ(p.payload_len, 9u);
  EXPECT_EQ(p.seq, 77u);
}

TEST(FrameParse, TcpOptionsMoveThePayload) {
  TcpSpec t;
  t.flags = kSyn;
  t.options = syn_options();  // 20 bytes
  ebpfc_packet p = parse_tcp(tcp4_frame(Ipv4Spec{}, t));
  EXPECT_EQ(p.payload_off, 14u + 20 + 40);
  EXPECT_EQ(p.payload_len, 0u);
  EXPECT_EQ(p.flags, kSyn);

  t.options.assign(40, 1);  // data offset 15
  t.payload = payload_of(5);
  p = parse_tcp(tcp4_frame(Ipv4Spec{}, t));
  EXPECT_EQ(p.payload_off, 14u + 20 + 60);
  EXPECT_EQ(p.payload_len, 5u);
}

TEST(FrameParse, EthernetPaddingIsNotPayload) {
  TcpSpec t;
  t.flags = kSyn;
  Bytes f = tcp4_frame(Ipv4Spec{}, t, {}, 60);
  ASSERT_EQ(f.size(), 60u);
  f[54] = 0xee;  // padding bytes need not be zero
  ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.payload_off, 54u);
  EXPECT_EQ(p.payload_len, 0u);

  t.flags = kPsh | kAck;
  t.payload = payload_of(2);
  f = tcp4_frame(Ipv4Spec{}, t, {}, 60);
  ASSERT_EQ(f.size(), 60u);
  p = parse_tcp(f);
  EXPECT_EQ(p.payload_len, 2u);

  // the IPv4 total length says 40 even though the frame carries 10 more bytes
  Ipv4Spec ip;
  ip.total_length = 40;
  t.payload = payload_of(10);
  p = parse_tcp(tcp4_frame(ip, t));
  EXPECT_EQ(p.payload_off, 54u);
  EXPECT_EQ(p.payload_len, 0u);
}

TEST(FrameParse, DontFragmentIsNotAFragment) {
  Ipv4Spec ip;
  ip.frag = 0x4000;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, TcpSpec{}))), "TCP");
  ip.frag = 0;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, TcpSpec{}))), "TCP");
}

TEST(FrameParse, Ipv4FragmentsAreRejected) {
  for (uint16_t frag : {0x2000, 0x0001, 0x00b9, 0x1fff, 0x20b9, 0x6000, 0x4001}) {
    SCOPED_TRACE(frag);
    Ipv4Spec ip;
    ip.frag = frag;
    TcpSpec t;
    t.payload = payload_of(30);
    EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "FRAGMENT");
  }
}

TEST(FrameParse, Ipv4HeaderLengthBelowFiveIsMalformed) {
  // 0x50 everywhere a misplaced TCP header could take its data offset from:
  // wherever a decoder that trusted the IHL looked, it would find a "valid"
  // TCP header
  Ipv4Spec ip;
  ip.src = {0x50, 0x50, 0x50, 0x50};
  ip.dst = {0x50, 0x50, 0x50, 0x51};
  TcpSpec t;
  t.seq = t.ack = 0x50505050;
  t.payload.assign(40, 0x50);
  ASSERT_EQ(describe(parse_result(tcp4_frame(ip, t))), "TCP");
  for (int ihl = 0; ihl < 5; ihl++) {
    SCOPED_TRACE(ihl);
    ip.ihl = ihl;
    EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "MALFORMED");
  }
}

TEST(FrameParse, Ipv4TotalLengthBelowHeaderLengthIsMalformed) {
  Ipv4Spec ip;
  ip.options = {1, 1, 1, 1};  // IHL 6: 24 bytes
  for (int tot : {0, 1, 19, 20, 23}) {
    SCOPED_TRACE(tot);
    ip.total_length = tot;
    EXPECT_EQ(describe(parse_result(tcp4_frame(ip, TcpSpec{}))), "MALFORMED");
  }
}

TEST(FrameParse, Ipv4TotalLengthBeyondFrameIsMalformed) {
  TcpSpec t;
  t.payload = payload_of(10);
  Ipv4Spec ip;
  ip.total_length = 20 + 20 + 10 + 1;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "MALFORMED");
  ip.total_length = 65535;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "MALFORMED");
  ip.total_length = 20 + 20 + 10;  // exact: fine
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "TCP");
}

TEST(FrameParse, Ipv4TotalLengthTooShortForTcpHeaderIsMalformed) {
  TcpSpec t;
  t.payload = payload_of(10);
  Ipv4Spec ip;
  ip.total_length = 20 + 19;  // the frame has the bytes, the IP packet does not
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "MALFORMED");
}

TEST(FrameParse, IpVersionMustMatchEthertype) {
  Ipv4Spec ip;
  ip.version = 6;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, TcpSpec{}))), "MALFORMED");
  Ipv6Spec ip6;
  ip6.version = 4;
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip6, TcpSpec{}))), "MALFORMED");
}

TEST(FrameParse, NonTcpIsRejected) {
  Bytes udp(8 + 12, 0);  // a UDP header and some data
  Ipv4Spec ip;
  ip.protocol = 17;
  EXPECT_EQ(describe(parse_result(build_eth(kEthIpv4, build_ipv4(ip, udp)))), "NOT_TCP");
  ip.protocol = 1;  // ICMP
  EXPECT_EQ(describe(parse_result(build_eth(kEthIpv4, build_ipv4(ip, udp), {}, 60))), "NOT_TCP");

  // an ARP request (padded to 60 bytes)
  Bytes arp = {0, 1, 8, 0, 6, 4, 0, 1};
  arp.resize(28, 0);
  EXPECT_EQ(describe(parse_result(build_eth(kEthArp, arp, {}, 60))), "NOT_TCP");
  // LLDP, and an 802.3 length field
  EXPECT_EQ(describe(parse_result(build_eth(0x88cc, Bytes(46, 0)))), "NOT_TCP");
  EXPECT_EQ(describe(parse_result(build_eth(0x002e, Bytes(46, 0)))), "NOT_TCP");

  for (uint8_t next : {17, 58, 59, 50}) {  // UDP, ICMPv6, no next header, ESP
    SCOPED_TRACE(next);
    Ipv6Spec ip6;
    ip6.upper = next;
    EXPECT_EQ(describe(parse_result(build_eth(kEthIpv6, build_ipv6(ip6, udp)))), "NOT_TCP");
  }
  // UDP after an extension header
  Ipv6Spec ip6;
  ip6.upper = 17;
  ip6.ext = {{0, 8}};
  EXPECT_EQ(describe(parse_result(build_eth(kEthIpv6, build_ipv6(ip6, udp)))), "NOT_TCP");
}

TEST(FrameParse, ShortEthernetIsMalformed) {
  const Bytes f = tcp4_frame(Ipv4Spec{}, TcpSpec{});
  for (size_t n : {0, 1, 12, 13}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(describe(parse_result(Bytes(f.begin(), f.begin() + n))), "MALFORMED");
  }
  // just the Ethernet header of an IPv4 frame
  EXPECT_EQ(describe(parse_result(Bytes(f.begin(), f.begin() + 14))), "MALFORMED");
}

// ---- VLAN --------------------------------------------------------------

TEST(FrameParse, VlanTags) {
  TcpSpec t;
  t.payload = payload_of(3);
  ebpfc_packet p = parse_tcp(tcp4_frame(Ipv4Spec{}, t, {{kTpid8021Q, 100}}));
  EXPECT_EQ(p.payload_off, 14u + 4 + 40);
  EXPECT_EQ(p.payload_len, 3u);
  EXPECT_EQ(p.key.port[1], 40000);

  p = parse_tcp(tcp4_frame(Ipv4Spec{}, t, {{kTpid8021AD, 200}, {kTpid8021Q, 100}}));
  EXPECT_EQ(p.payload_off, 14u + 8 + 40);
  EXPECT_EQ(p.payload_len, 3u);

  p = parse_tcp(tcp4_frame(Ipv4Spec{}, t, {{kTpid8021Q, 1}, {kTpid8021Q, 2}}));
  EXPECT_EQ(p.payload_off, 14u + 8 + 40);

  p = parse_tcp(tcp6_frame(Ipv6Spec{}, t, {{kTpid8021Q, 4094}}));
  EXPECT_EQ(p.key.family, 6);
  EXPECT_EQ(p.payload_off, 14u + 4 + 60);
  EXPECT_EQ(p.payload_len, 3u);

  // the same segment with and without a tag is the same connection
  const ebpfc_packet untagged = parse_tcp(tcp4_frame(Ipv4Spec{}, t));
  const ebpfc_packet tagged = parse_tcp(tcp4_frame(Ipv4Spec{}, t, {{kTpid8021Q, 100}}));
  EXPECT_TRUE(keys_equal(untagged.key, tagged.key));
}

TEST(FrameParse, VlanStackDeeperThanTwoIsRejected) {
  const std::vector<VlanTag> three = {{kTpid8021AD, 1}, {kTpid8021Q, 2}, {kTpid8021Q, 3}};
  EXPECT_EQ(describe(parse_result(tcp4_frame(Ipv4Spec{}, TcpSpec{}, three))), "NOT_TCP");
  EXPECT_EQ(describe(parse_result(tcp6_frame(Ipv6Spec{}, TcpSpec{}, three))), "NOT_TCP");
}

TEST(FrameParse, VlanTaggedNonIpIsRejected) {
  Bytes arp(28, 0);
  EXPECT_EQ(describe(parse_result(build_eth(kEthArp, arp, {{kTpid8021Q, 5}}, 64))), "NOT_TCP");
}

// ---- IPv6 --------------------------------------------------------------

TEST(FrameParse, Ipv6SegmentFields) {
  TcpSpec t;
  t.seq = 0xdeadbeef;
  t.ack = 0x00c0ffee;
  t.flags = kAck;
  t.payload = payload_of(33);
  Ipv6Spec ip;
  const Bytes f = tcp6_frame(ip, t);
  const ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.key.family, 6);
  EXPECT_EQ(key_addr(p.key, 0), ip.dst);  // ...::1 < ...::2
  EXPECT_EQ(key_addr(p.key, 1), ip.src);
  EXPECT_EQ(p.key.port[0], 5432);
  EXPECT_EQ(p.key.port[1], 40000);
  EXPECT_EQ(p.sender, 1);
  EXPECT_EQ(p.seq, 0xdeadbeefu);
  EXPECT_EQ(p.ack, 0x00c0ffeeu);
  EXPECT_EQ(p.flags, kAck);
  EXPECT_EQ(p.payload_off, 14u + 40 + 20);
  EXPECT_EQ(p.payload_len, 33u);
  EXPECT_TRUE(std::equal(t.payload.begin(), t.payload.end(), f.begin() + p.payload_off));
  expect_clean_padding(p);

  // and back
  Ipv6Spec rev;
  rev.src = ip.dst;
  rev.dst = ip.src;
  TcpSpec rt;
  rt.sport = 5432;
  rt.dport = 40000;
  const ebpfc_packet q = parse_tcp(tcp6_frame(rev, rt));
  EXPECT_TRUE(keys_equal(p.key, q.key));
  EXPECT_EQ(q.sender, 0);
}

TEST(FrameParse, Ipv6AddressesCompareFromTheFirstByte) {
  Ipv6Spec ip;
  ip.src = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  ip.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff};
  const ebpfc_packet p = parse_tcp(tcp6_frame(ip, TcpSpec{}));
  EXPECT_EQ(key_addr(p.key, 0), ip.dst);
  EXPECT_EQ(p.sender, 1);
}

TEST(FrameParse, Ipv6PaddingIsNotPayload) {
  TcpSpec t;
  t.payload = payload_of(4);
  const Bytes f = tcp6_frame(Ipv6Spec{}, t, {}, 120);
  ASSERT_EQ(f.size(), 120u);
  const ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.payload_len, 4u);
}

TEST(FrameParse, Ipv6ExtensionHeaderChain) {
  Ipv6Spec ip;
  // hop-by-hop, destination options, routing, AH (12 bytes: 4-byte units), destination options
  ip.ext = {{0, 8}, {60, 16}, {43, 24}, {51, 12}, {60, 8}};
  TcpSpec t;
  t.options = syn_options();
  t.flags = kSyn;
  t.payload = payload_of(7);
  const Bytes f = tcp6_frame(ip, t);
  const ebpfc_packet p = parse_tcp(f);
  EXPECT_EQ(p.payload_off, 14u + 40 + 8 + 16 + 24 + 12 + 8 + 40);
  EXPECT_EQ(p.payload_len, 7u);
  EXPECT_EQ(p.flags, kSyn);
  EXPECT_EQ(p.seq, 1000u);
  EXPECT_EQ(p.key.port[1], 40000);
  EXPECT_TRUE(std::equal(t.payload.begin(), t.payload.end(), f.begin() + p.payload_off));

  // a large AH: (len + 2) * 4 bytes
  ip.ext = {{51, 4 * 40}};
  EXPECT_EQ(parse_tcp(tcp6_frame(ip, t)).payload_off, 14u + 40 + 160 + 40);
}

TEST(FrameParse, Ipv6ExtensionHeaderLimit) {
  Ipv6Spec ip;
  ip.ext.assign(EBPFC_MAX_IPV6_EXT_HEADERS, Ipv6Ext{60, 8});
  const ebpfc_packet p = parse_tcp(tcp6_frame(ip, TcpSpec{}));
  EXPECT_EQ(p.payload_off, 14u + 40 + 8 * EBPFC_MAX_IPV6_EXT_HEADERS + 20);

  ip.ext.assign(EBPFC_MAX_IPV6_EXT_HEADERS + 1, Ipv6Ext{60, 8});
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "NOT_TCP");
  // the documented limit is six (each one costs the verifier an unrolled iteration)
  ip.ext.assign(7, Ipv6Ext{0, 8});
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "NOT_TCP");
  ip.ext.assign(20, Ipv6Ext{60, 8});
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "NOT_TCP");
}

TEST(FrameParse, Ipv6FragmentHeaderIsAFragment) {
  Ipv6Spec ip;
  ip.ext = {{44, 8}};
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "FRAGMENT");
  ip.ext = {{0, 8}, {44, 8}};
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "FRAGMENT");
}

TEST(FrameParse, Ipv6ExtensionHeaderBeyondPayloadIsMalformed) {
  Ipv6Spec ip;
  ip.ext = {{43, 24}};
  ip.payload_length = 16;  // the routing header alone needs 24
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
  ip.payload_length = 24;  // the header fits, the TCP header does not
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
  ip.payload_length = 24 + 19;
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
  ip.payload_length = 24 + 20;
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "TCP");
}

TEST(FrameParse, Ipv6JumbogramIsMalformed) {
  Ipv6Spec ip;
  ip.payload_length = 0;
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
  ip.ext = {{0, 8}};  // even with the hop-by-hop header that would carry the length
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
}

TEST(FrameParse, Ipv6PayloadLengthBeyondFrameIsMalformed) {
  Ipv6Spec ip;
  ip.payload_length = 21;
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
  ip.payload_length = 19;  // inside the frame, too short for TCP
  EXPECT_EQ(describe(parse_result(tcp6_frame(ip, TcpSpec{}))), "MALFORMED");
}

// ---- TCP header --------------------------------------------------------

TEST(FrameParse, TcpDataOffsetBelowFiveIsMalformed) {
  for (int doff = 0; doff < 5; doff++) {
    SCOPED_TRACE(doff);
    TcpSpec t;
    t.data_offset = doff;
    t.payload = payload_of(40);
    EXPECT_EQ(describe(parse_result(tcp4_frame(Ipv4Spec{}, t))), "MALFORMED");
    EXPECT_EQ(describe(parse_result(tcp6_frame(Ipv6Spec{}, t))), "MALFORMED");
  }
}

TEST(FrameParse, TcpDataOffsetBeyondPacketIsMalformed) {
  TcpSpec t;
  t.data_offset = 6;  // 24 bytes claimed, 20 present
  EXPECT_EQ(describe(parse_result(tcp4_frame(Ipv4Spec{}, t))), "MALFORMED");
  EXPECT_EQ(describe(parse_result(tcp6_frame(Ipv6Spec{}, t))), "MALFORMED");

  t.data_offset = 15;  // 60 bytes claimed
  t.payload = payload_of(39);
  EXPECT_EQ(describe(parse_result(tcp4_frame(Ipv4Spec{}, t))), "MALFORMED");
  t.payload = payload_of(40);  // exactly the header: no payload
  ebpfc_packet p = parse_tcp(tcp4_frame(Ipv4Spec{}, t));
  EXPECT_EQ(p.payload_off, 14u + 20 + 60);
  EXPECT_EQ(p.payload_len, 0u);

  // the bytes beyond the IP packet (Ethernet padding) do not count
  t.payload = payload_of(10);
  t.data_offset = 7;
  Ipv4Spec ip;
  ip.total_length = 20 + 20;
  EXPECT_EQ(describe(parse_result(tcp4_frame(ip, t))), "MALFORMED");
}

// ---- truncation ----------------------------------------------------------

void expect_every_prefix_malformed(const Bytes& f) {
  ASSERT_EQ(describe(parse_result(f)), "TCP");
  for (size_t n = 0; n < f.size(); n++) {
    SCOPED_TRACE("prefix of " + std::to_string(n) + " of " + std::to_string(f.size()) + " bytes");
    EXPECT_EQ(describe(parse_result(Bytes(f.begin(), f.begin() + n))), "MALFORMED");
  }
}

TEST(FrameParse, TruncatedAtEveryLayerIpv4) {
  Ipv4Spec ip;
  ip.options = {7, 7, 4, 0, 0, 0, 0, 0};
  TcpSpec t;
  t.options = syn_options();
  t.payload = payload_of(10);
  expect_every_prefix_malformed(tcp4_frame(ip, t));
  expect_every_prefix_malformed(tcp4_frame(ip, t, {{kTpid8021AD, 1}, {kTpid8021Q, 2}}));
}

TEST(FrameParse, TruncatedAtEveryLayerIpv6) {
  Ipv6Spec ip;
  ip.ext = {{0, 8}, {43, 24}, {51, 12}};
  TcpSpec t;
  t.options = syn_options();
  t.payload = payload_of(10);
  expect_every_prefix_malformed(tcp6_frame(ip, t));
  expect_every_prefix_malformed(tcp6_frame(ip, t, {{kTpid8021Q, 9}}));
}

TEST(FrameParse, TruncatedVlanTag) {
  const Bytes f = tcp4_frame(Ipv4Spec{}, TcpSpec{}, {{kTpid8021AD, 1}, {kTpid8021Q, 2}});
  for (size_t n : {14, 16, 17, 18, 20, 21}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(describe(parse_result(Bytes(f.begin(), f.begin() + n))), "MALFORMED");
  }
}

}  // namespace
}  // namespace ebpfc_test
