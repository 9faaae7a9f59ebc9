#include "core/chunk_resolve.h"

#include <cstring>
#include <new>

namespace ebpfc {

void ResolvedChunk::clear() {
  peers_.clear();
  rollup_.clear();
}

const kube::PeerIdentity* ResolvedChunk::who(const kube::PodCache* pods, const uint8_t addr[16],
                                             int64_t at_us) {
  const kube::PeerIdentity* id = pods != nullptr ? pods->lookup(addr, at_us) : nullptr;
  peers_.push_back(id);
  return id;
}

void ResolvedChunk::resolve(const SpanBatch::Chunk& chunk, const kube::PodCache* pods) {
  clear();
  try {
    peers_.reserve(2 * chunk.size());
    for (size_t i = 0; i < chunk.ntcp; i++) {
      const Span& s = chunk.tcp[i];
      const auto* src = who(pods, s.src_addr, s.start_unix_us);
      const auto* dst = who(pods, s.dst_addr, s.start_unix_us);
      rollup_.add_connection(s.start_unix_us, Rollup::end(src, s.family, s.src_addr),
                             Rollup::end(dst, s.family, s.dst_addr), s.status == SpanStatus::Error,
                             s.bytes_sent, s.bytes_received);
    }
    for (size_t i = 0; i < chunk.nhttp; i++) {
      const HttpSpan& s = chunk.http[i];
      const auto* src = who(pods, s.src_addr, s.start_unix_us);
      const auto* dst = who(pods, s.dst_addr, s.start_unix_us);
      rollup_.add_request(s.start_unix_us, s.end_unix_us, Rollup::end(src, s.family, s.src_addr),
                          Rollup::end(dst, s.family, s.dst_addr), s.status == SpanStatus::Error);
    }
    for (size_t i = 0; i < chunk.npg; i++) {
      const PgSpan& s = chunk.pg[i];
      const auto* src = who(pods, s.src_addr, s.start_unix_us);
      const auto* dst = who(pods, s.dst_addr, s.start_unix_us);
      // A session span (it went encrypted) is no request. (Redis spans,
      // system Redis, have flags of their own.)
      if (s.system == DbSystem::Postgresql && (s.flags & (kPgTls | kPgGssEncrypted))) continue;
      rollup_.add_request(s.start_unix_us, s.end_unix_us, Rollup::end(src, s.family, s.src_addr),
                          Rollup::end(dst, s.family, s.dst_addr), s.status == SpanStatus::Error);
    }
  } catch (const std::bad_alloc&) {
    clear();
    throw;
  }
}

void ResolvedChunk::resolve_open(const Span* open, size_t n, const kube::PodCache* pods) {
  clear();
  try {
    peers_.reserve(2 * n);
    for (size_t i = 0; i < n; i++) {
      who(pods, open[i].src_addr, open[i].start_unix_us);
      who(pods, open[i].dst_addr, open[i].start_unix_us);
    }
  } catch (const std::bad_alloc&) {
    clear();
    throw;
  }
}

void PodPeerKeys::key(const uint8_t addr[16], int64_t at_unix_us, uint8_t out[16]) const {
  const kube::PeerIdentity* id = pods_.lookup(addr, at_unix_us);
  if (id == nullptr || id->pod.empty()) {
    std::memcpy(out, addr, 16);
    return;
  }
  // Two FNV-1a hashes of "namespace/pod" (different offsets); the first byte
  // marks a pod key (0xfe begins no unicast address).
  uint64_t h[2] = {1469598103934665603ull, 14695981039346656037ull ^ 0x9e3779b97f4a7c15ull};
  auto mix = [&](std::string_view s) {
    for (const char c : s)
      for (uint64_t& x : h) {
        x ^= static_cast<unsigned char>(c);
        x *= 1099511628211ull;
      }
  };
  mix(id->ns);
  mix("/");
  mix(id->pod);
  std::memcpy(out, h, 16);
  out[0] = 0xfe;
}

}  // namespace ebpfc
