#include "kube/ip_addr.h"

#include <arpa/inet.h>

namespace ebpfc::kube {

bool IpAddr::is_v4() const {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(b, prefix, 12) == 0;
}

bool parse_ip(std::string_view text, IpAddr* out) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof(buf)) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (std::memchr(buf, '\0', text.size()) != nullptr) return false;
  uint8_t v4[4];
  if (inet_pton(AF_INET, buf, v4) == 1) {
    *out = IpAddr::v4(v4[0], v4[1], v4[2], v4[3]);
    return true;
  }
  return inet_pton(AF_INET6, buf, out->b) == 1;
}

size_t format_ip(const IpAddr& addr, char out[46]) {
  const char* r = addr.is_v4() ? inet_ntop(AF_INET, addr.b + 12, out, 46)
                               : inet_ntop(AF_INET6, addr.b, out, 46);
  if (r == nullptr) {
    out[0] = '\0';
    return 0;
  }
  return std::strlen(out);
}

}  // namespace ebpfc::kube
