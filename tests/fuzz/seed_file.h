// seed_file.h - writes one seed file for a fuzz target's corpus (the seed
// generators make_seeds.cpp and link_seeds.cpp).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ebpfc_test {

// Writes bytes to dir/name; says why on stderr and returns false if it can't.
inline bool write_seed(const std::string& dir, const std::string& name,
                       const std::vector<uint8_t>& bytes) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    return false;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace ebpfc_test
