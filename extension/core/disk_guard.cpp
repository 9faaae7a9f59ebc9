#include "core/disk_guard.h"

#include <cctype>
#include <limits>

namespace ebpfc {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// "N[.D]" as hundredths (percent) or as a decimal number of units.
bool parse_number(std::string_view s, uint64_t scale, uint64_t* out) {
  uint64_t whole = 0, frac = 0, frac_scale = 1;
  size_t i = 0;
  bool digits = false;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); i++) {
    const uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (whole > (kMax - d) / 10) return false;
    whole = whole * 10 + d;
    digits = true;
  }
  if (i < s.size() && s[i] == '.') {
    for (i++; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); i++) {
      if (frac_scale < 1000000) {
        frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
        frac_scale *= 10;
      }
      digits = true;
    }
  }
  if (!digits || i != s.size()) return false;
  if (whole > kMax / scale || whole * scale > kMax - frac * scale / frac_scale) return false;
  *out = whole * scale + frac * scale / frac_scale;
  return true;
}

bool parse_term(std::string_view term, MinFreeDisk* out, std::string* error) {
  term = trim(term);
  if (term.empty()) {
    *error = "an empty term";
    return false;
  }
  if (term.back() == '%') {
    uint64_t hundredths = 0;
    if (!parse_number(trim(term.substr(0, term.size() - 1)), 100, &hundredths) ||
        hundredths > 10000) {
      *error = "\"" + std::string(term) + "\" is not a percentage between 0% and 100%";
      return false;
    }
    if (out->percent_x100 != 0) {
      *error = "a percentage is given twice";
      return false;
    }
    out->percent_x100 = static_cast<uint32_t>(hundredths);
    return true;
  }
  static const struct {
    const char* unit;
    uint64_t bytes;
  } kUnits[] = {
      {"TB", 1ull << 40}, {"GB", 1ull << 30}, {"MB", 1ull << 20}, {"kB", 1ull << 10}, {"B", 1}};
  size_t end = term.size();
  while (end > 0 && std::isalpha(static_cast<unsigned char>(term[end - 1]))) end--;
  std::string_view unit = term.substr(end);
  uint64_t scale = 0;
  for (const auto& u : kUnits)
    if (equals_nocase(unit, u.unit)) scale = u.bytes;
  if (unit.empty()) scale = 1;
  uint64_t bytes = 0;
  if (scale == 0 || !parse_number(trim(term.substr(0, end)), scale, &bytes)) {
    *error = "\"" + std::string(term) +
             "\" is neither a size (such as 2GB or 512MB) nor a percentage (such as 5%)";
    return false;
  }
  if (out->bytes != 0) {
    *error = "a size is given twice";
    return false;
  }
  out->bytes = bytes;
  return true;
}

}  // namespace

bool parse_min_free_disk(std::string_view text, MinFreeDisk* out, std::string* error) {
  MinFreeDisk rule;
  text = trim(text);
  if (text.empty()) {
    *error = "empty: use 0 to turn the disk guard off";
    return false;
  }
  while (true) {
    const size_t comma = text.find(',');
    if (!parse_term(text.substr(0, comma), &rule, error)) return false;
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  *out = rule;
  return true;
}

uint64_t min_free_bytes(const MinFreeDisk& rule, uint64_t total) {
  const uint64_t share =
      rule.percent_x100 == 0
          ? 0
          : static_cast<uint64_t>(static_cast<long double>(total) * rule.percent_x100 / 10000);
  if (rule.bytes == 0) return share;
  if (rule.percent_x100 == 0) return rule.bytes;
  return share < rule.bytes ? share : rule.bytes;
}

uint64_t DiskGuard::resume_at(uint64_t threshold) {
  constexpr uint64_t kMinMargin = 16ull << 20;
  const uint64_t margin = threshold / 10 > kMinMargin ? threshold / 10 : kMinMargin;
  return threshold + margin;
}

bool DiskGuard::update(uint64_t free_bytes, uint64_t threshold, bool can_drop_more) {
  if (threshold == 0) {
    paused_ = false;
  } else if (paused_) {
    paused_ = free_bytes < resume_at(threshold);
  } else {
    paused_ = low(free_bytes, threshold) && !can_drop_more;
  }
  return paused_;
}

}  // namespace ebpfc
