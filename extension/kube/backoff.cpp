#include "kube/backoff.h"

#include <algorithm>

namespace ebpfc::kube {

namespace {
double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}
}  // namespace

uint64_t Backoff::current(uint64_t now_ns) const {
  if (!has_last_ || now_ns - last_ns_ > policy_.reset_after_ns) return policy_.initial_ns;
  return step_ns_;
}

uint64_t Backoff::next(uint64_t now_ns, std::mt19937_64& rng) {
  const uint64_t base = current(now_ns);
  step_ns_ = std::min<uint64_t>(base * 2, policy_.max_ns);
  if (step_ns_ < base) step_ns_ = base;  // max below initial: stay at initial
  last_ns_ = now_ns;
  has_last_ = true;
  return base + static_cast<uint64_t>(static_cast<double>(base) * policy_.jitter * unit(rng));
}

uint64_t retry_after_delay_ns(double seconds, std::mt19937_64& rng) {
  if (!(seconds >= 0)) seconds = 0;
  seconds = std::min(seconds, 600.0);
  const double extra = std::min(1.0, seconds * 0.1) * unit(rng);
  return static_cast<uint64_t>((seconds + extra) * 1e9);
}

}  // namespace ebpfc::kube
