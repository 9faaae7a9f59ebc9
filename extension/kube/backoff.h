// backoff.h - exponential back-off with jitter, as client-go's reflector
// does it: 0.8 s doubling to 30 s, each delay stretched by up to 25 %
// at random, back to 0.8 s once no failure happened for 2 minutes.
#pragma once

#include <cstdint>
#include <random>

namespace ebpfc::kube {

struct BackoffPolicy {
  uint64_t initial_ns = 800ull * 1000 * 1000;
  uint64_t max_ns = 30ull * 1000 * 1000 * 1000;
  uint64_t reset_after_ns = 120ull * 1000 * 1000 * 1000;
  double jitter = 0.25;  // a delay d becomes d * (1 + jitter * U[0,1))
};

class Backoff {
 public:
  explicit Backoff(const BackoffPolicy& policy = BackoffPolicy()) : policy_(policy) {}

  // The delay before retrying after a failure at now_ns.
  uint64_t next(uint64_t now_ns, std::mt19937_64& rng);
  // The un-jittered delay the next failure would get (for tests).
  uint64_t current(uint64_t now_ns) const;
  void reset() { has_last_ = false; }
  void set_policy(const BackoffPolicy& policy) { policy_ = policy; }

 private:
  BackoffPolicy policy_;
  uint64_t step_ns_ = 0;
  uint64_t last_ns_ = 0;
  bool has_last_ = false;
};

// A delay the server asked for (Retry-After, in seconds, at most 10
// minutes), plus up to 10 % (at most 1 s) of jitter so that clients told the
// same do not come back together.
uint64_t retry_after_delay_ns(double seconds, std::mt19937_64& rng);

}  // namespace ebpfc::kube
