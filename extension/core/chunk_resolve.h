// chunk_resolve.h - who is at both ends of each span of a chunk, from the
// pod cache, and the chunk's share of the service map rollup: the C++ half
// of writing a chunk, done before the transaction (which then only turns
// these into rows).
#pragma once

#include <cstddef>
#include <vector>

#include "core/edge_rollup.h"
#include "core/span_batch.h"
#include "core/trace_links.h"
#include "kube/pod_cache.h"

namespace ebpfc {

using Rollup = EdgeRollup<kube::PeerIdentity>;

class ResolvedChunk {
 public:
  // Looks up both ends of every span of the chunk (tcp, http, then postgresql) and folds
  // the spans into the rollup. `pods` may be null (no identities). Throws
  // std::bad_alloc, leaving the object empty.
  void resolve(const SpanBatch::Chunk& chunk, const kube::PodCache* pods);
  // Looks up both ends of open connections (no rollup).
  void resolve_open(const Span* open, size_t n, const kube::PodCache* pods);

  // Source and destination identity of span i of the chunk (tcp first),
  // null where no pod is known: peers()[2 * i], peers()[2 * i + 1].
  const kube::PeerIdentity* const* peers() const { return peers_.data(); }
  const Rollup& rollup() const { return rollup_; }
  void clear();

 private:
  const kube::PeerIdentity* who(const kube::PodCache* pods, const uint8_t addr[16], int64_t at_us);

  std::vector<const kube::PeerIdentity*> peers_;
  Rollup rollup_;
};

// The peers of the trace parent rules (core/trace_links.h) by pod: an
// address the cache knows stands for its pod (a key made from the pod's
// namespace and name), so a pod's IPv4 and IPv6 addresses are one peer;
// any other address stands for itself.
class PodPeerKeys final : public PeerKeys {
 public:
  explicit PodPeerKeys(const kube::PodCache& pods) : pods_(pods) {}
  void key(const uint8_t addr[16], int64_t at_unix_us, uint8_t out[16]) const override;

 private:
  const kube::PodCache& pods_;
};

}  // namespace ebpfc
