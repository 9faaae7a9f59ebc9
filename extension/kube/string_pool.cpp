#include "kube/string_pool.h"

namespace ebpfc::kube {

StringPool::Handle StringPool::intern(std::string_view s) {
  if (s.empty()) return nullptr;
  auto it = map_.try_emplace(std::string(s), 0).first;
  it->second++;
  return &it->first;
}

StringPool::Handle StringPool::retain(Handle h) {
  if (h == nullptr) return nullptr;
  auto it = map_.find(*h);
  if (it != map_.end()) it->second++;
  return h;
}

void StringPool::release(Handle h) {
  if (h == nullptr) return;
  auto it = map_.find(*h);
  if (it == map_.end()) return;
  if (--it->second == 0) map_.erase(it);
}

uint32_t StringPool::refs(Handle h) const {
  if (h == nullptr) return 0;
  auto it = map_.find(*h);
  return it == map_.end() || &it->first != h ? 0 : it->second;
}

}  // namespace ebpfc::kube
