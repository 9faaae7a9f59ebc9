#include "capture/capture_checks.h"

#include <net/if.h>

#include <cstdlib>
#include <fstream>

namespace ebpfc {

std::string interface_name_problem(const std::string& name) {
  if (name.empty()) return "invalid interface name \"\": it is empty";
  if (name.size() >= IFNAMSIZ)
    return "interface name \"" + name + "\" is too long (at most " + std::to_string(IFNAMSIZ - 1) +
           " bytes)";
  if (name == "." || name == "..") return "invalid interface name \"" + name + "\"";
  for (unsigned char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    if (!ok)
      return "invalid interface name \"" + name +
             "\": only letters, digits, '.', '_' and '-' are allowed";
  }
  return "";
}

std::vector<std::string> missing_capabilities() {
  // CapEff in /proc/self/status is a hex bit mask of capability numbers.
  std::ifstream status("/proc/self/status");
  std::string line;
  uint64_t eff = 0;
  bool found = false;
  while (std::getline(status, line)) {
    if (line.compare(0, 7, "CapEff:") == 0) {
      eff = std::strtoull(line.c_str() + 7, nullptr, 16);
      found = true;
      break;
    }
  }
  std::vector<std::string> missing;
  if (!found) return missing;  // cannot tell: let the syscalls decide
  constexpr int kCapNetRaw = 13, kCapSysAdmin = 21, kCapBpf = 39;
  const bool sys_admin = eff & (1ull << kCapSysAdmin);
  if (!(eff & (1ull << kCapBpf)) && !sys_admin) missing.emplace_back("CAP_BPF");
  if (!(eff & (1ull << kCapNetRaw))) missing.emplace_back("CAP_NET_RAW");
  return missing;
}

}  // namespace ebpfc
