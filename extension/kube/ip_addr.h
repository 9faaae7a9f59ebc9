// ip_addr.h - the 16-byte address the cache is keyed on: IPv6, or IPv4 as
// an IPv4-mapped IPv6 address (::ffff:a.b.c.d), the form spans carry
// (Span::src_addr, Span::dst_addr).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace ebpfc::kube {

struct IpAddr {
  uint8_t b[16];

  static IpAddr from_bytes(const uint8_t bytes[16]) {
    IpAddr a;
    std::memcpy(a.b, bytes, 16);
    return a;
  }
  static IpAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    IpAddr x{};
    x.b[10] = x.b[11] = 0xff;
    x.b[12] = a;
    x.b[13] = b;
    x.b[14] = c;
    x.b[15] = d;
    return x;
  }
  bool is_v4() const;
  bool operator==(const IpAddr& o) const { return std::memcmp(b, o.b, 16) == 0; }
  bool operator!=(const IpAddr& o) const { return !(*this == o); }
};

struct IpAddrHash {
  size_t operator()(const IpAddr& a) const {
    uint64_t lo, hi;
    std::memcpy(&lo, a.b, 8);
    std::memcpy(&hi, a.b + 8, 8);
    // Pod addresses differ in their last bytes: mix them well.
    uint64_t h = (hi ^ (lo * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return static_cast<size_t>(h);
  }
};

// "10.1.2.3" or "fd00::1" (no brackets, no zone). False on anything else.
bool parse_ip(std::string_view text, IpAddr* out);

// Formats as inet_ntop does, IPv4-mapped addresses as dotted quads. out
// must hold 46 bytes; returns the length.
size_t format_ip(const IpAddr& addr, char out[46]);

}  // namespace ebpfc::kube
