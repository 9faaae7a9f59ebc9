#include "core/edge_rollup.h"

#include <cmath>

namespace ebpfc {

int latency_bucket(int64_t latency_us) {
  // The same operations, in the same order, as the SQL function
  // _service_map_bucket: 1 + floor(4 * ln(max(us, 1)) / ln 2), clamped.
  double us = latency_us < 1 ? 1.0 : static_cast<double>(latency_us);
  double b = 1.0 + std::floor(4.0 * std::log(us) / 0.6931471805599453);
  if (b < 1.0) return 1;
  if (b > kLatencyBuckets) return kLatencyBuckets;
  return static_cast<int>(b);
}

}  // namespace ebpfc
