// string_pool.h - reference-counted interning of the strings the pod cache
// hands out (namespaces, workload, node and pod names): each distinct string
// is stored once, at a stable address, while anything refers to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ebpfc::kube {

class StringPool {
 public:
  // A stored string; null stands for "" (never stored).
  using Handle = const std::string*;

  // The stored copy of s, with one more reference.
  Handle intern(std::string_view s);
  // One more reference to a stored string.
  Handle retain(Handle h);
  // One reference less; the string is freed with its last.
  void release(Handle h);

  static std::string_view view(Handle h) { return h ? std::string_view(*h) : std::string_view(); }
  size_t size() const { return map_.size(); }
  // References to `h` (0 for null or a string not stored): for tests.
  uint32_t refs(Handle h) const;

 private:
  std::unordered_map<std::string, uint32_t> map_;
};

}  // namespace ebpfc::kube
