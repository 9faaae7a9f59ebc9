#include "capture/capture_checks.h"

#include <net/if.h>

#include <cstdlib>
#include <fstream>

namespace ebpfc {

namespace {

bool name_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '.' || ch == '_' || ch == '-';
}

}  // namespace

std::string interface_name_problem(const std::string& name) {
  if (name.empty()) return "invalid interface name \"\": it is empty";
  if (name.size() >= IFNAMSIZ)
    return "interface name \"" + name + "\" is too long (at most " + std::to_string(IFNAMSIZ - 1) +
           " bytes)";
  if (name == "." || name == "..") return "invalid interface name \"" + name + "\"";
  for (unsigned char ch : name) {
    if (!name_char(ch))
      return "invalid interface name \"" + name +
             "\": only letters, digits, '.', '_' and '-' are allowed";
  }
  return "";
}

bool is_interface_pattern(const std::string& target) {
  return target.find_first_of("*?[") != std::string::npos;
}

std::string interface_pattern_problem(const std::string& pattern) {
  const std::string quoted = "\"" + pattern + "\"";
  if (pattern.size() >= IFNAMSIZ)
    return "interface pattern " + quoted + " is too long (at most " + std::to_string(IFNAMSIZ - 1) +
           " bytes)";
  for (size_t i = 0; i < pattern.size(); i++) {
    const unsigned char ch = static_cast<unsigned char>(pattern[i]);
    if (ch == '*' || ch == '?' || name_char(ch)) continue;
    if (ch == ']') return "invalid interface pattern " + quoted + ": ']' without '['";
    if (ch != '[')
      return "invalid interface pattern " + quoted +
             ": only letters, digits, '.', '_', '-' and the wildcards '*', '?' and "
             "'[...]' are allowed";
    // A bracket expression: [set], [!set] or [^set]; the set holds name
    // characters and ranges, at least one of them.
    size_t j = i + 1;
    if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) j++;
    const size_t first = j;
    while (j < pattern.size() && pattern[j] != ']') {
      if (!name_char(static_cast<unsigned char>(pattern[j])))
        return "invalid interface pattern " + quoted + ": '" + pattern[j] +
               "' inside '[...]' (letters, digits, '.', '_', '-' and ranges like 0-9)";
      j++;
    }
    if (j == pattern.size()) return "invalid interface pattern " + quoted + ": '[' without ']'";
    if (j == first) return "invalid interface pattern " + quoted + ": empty '[]'";
    i = j;
  }
  return "";
}

std::string capture_target_problem(const std::string& target) {
  if (target == kAutoTarget) return "";
  if (is_interface_pattern(target)) return interface_pattern_problem(target);
  return interface_name_problem(target);
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
