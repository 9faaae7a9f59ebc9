// edge_rollup.h - the per-minute service map rollup of a batch of spans.
//
// The service map (sql: service_map_nodes/edges/dot) counts requests,
// errors, latency and bytes per edge (caller -> callee). Reading that from
// millions of span rows takes seconds, so the worker keeps a rollup table,
// service_map_minutes, in the same transaction as each batch of spans: one
// row per (minute of the span's start, caller, callee, latency bucket).
//
// This class does the batch's share of that work in C++, before the
// transaction: it folds the batch's spans into one entry per (minute,
// bucket, caller identity, callee identity), so the upsert statement sees a
// few rows per edge instead of one per span. The SQL side turns identities
// into node ids (_service_map_node_id), so the node naming rules live in one
// place; spans of different pods of one workload fold into one rollup row
// there.
//
// Identity is what the pod cache returned for an address (a pointer that
// stays valid for the batch), or null: then the address itself names the end.
//
// Bucket 0 holds tcp spans; buckets 1..kLatencyBuckets hold http spans by
// latency (latency_bucket). The SQL function _service_map_bucket computes
// the same bucket with the same floating-point operations, for spans the
// rollup reads from the spans table directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace ebpfc {

// Quarter-octave latency buckets: bucket b holds [2^((b-1)/4), 2^(b/4))
// microseconds, b = 1..kLatencyBuckets; latencies under 1 us go to bucket 1,
// the last bucket is open-ended (~48 minutes and longer).
constexpr int kLatencyBuckets = 112;
int latency_bucket(int64_t latency_us);

// The minute a time falls into, as Unix microseconds.
constexpr int64_t kMinuteUs = 60 * 1000000ll;
inline int64_t minute_of(int64_t unix_us) {
  int64_t m = unix_us / kMinuteUs;
  if (unix_us % kMinuteUs < 0) m--;  // floor for times before 1970
  return m * kMinuteUs;
}

template <class Identity>
class EdgeRollup {
 public:
  // One end of an edge: an identity, or (with none) an address.
  struct End {
    const Identity* who;
    uint8_t family;  // 4 or 6 when who is null, else 0
    uint8_t addr[16];
  };
  struct Key {
    int64_t minute_unix_us;
    int32_t bucket;  // 0: tcp; 1..kLatencyBuckets: http
    End src;
    End dst;
  };
  struct Totals {
    uint64_t spans = 0;
    uint64_t errors = 0;
    uint64_t bytes_sent = 0;  // tcp payload bytes client -> server (bucket 0 only)
    uint64_t bytes_received = 0;
  };
  struct Entry {
    Key key;
    Totals totals;
  };

  static End end(const Identity* who, uint8_t family, const uint8_t addr[16]) {
    End e;
    std::memset(&e, 0, sizeof(e));
    e.who = who;
    if (who == nullptr) {
      e.family = family;
      std::memcpy(e.addr, addr, 16);
    }
    return e;
  }

  // A connection span: bucket 0, with its payload bytes.
  void add_connection(int64_t start_unix_us, End src, End dst, bool error, uint64_t bytes_sent,
                      uint64_t bytes_received) {
    Totals& t = slot(make_key(start_unix_us, 0, src, dst));
    t.spans++;
    t.errors += error ? 1 : 0;
    t.bytes_sent += bytes_sent;
    t.bytes_received += bytes_received;
  }

  // An HTTP exchange: its latency bucket.
  void add_request(int64_t start_unix_us, int64_t end_unix_us, End src, End dst, bool error) {
    Totals& t =
        slot(make_key(start_unix_us, latency_bucket(end_unix_us - start_unix_us), src, dst));
    t.spans++;
    t.errors += error ? 1 : 0;
  }

  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  // Forgets the entries; keeps the memory for the next batch.
  void clear() {
    index_.clear();
    entries_.clear();
  }

 private:
  static Key make_key(int64_t start_unix_us, int bucket, const End& src, const End& dst) {
    Key k;
    std::memset(&k, 0, sizeof(k));  // padding too: keys are hashed and compared as bytes
    k.minute_unix_us = minute_of(start_unix_us);
    k.bucket = bucket;
    k.src = src;
    k.dst = dst;
    return k;
  }
  struct KeyHash {
    size_t operator()(const Key& k) const {
      // the key's bytes (padding zeroed by make_key) as 64-bit words, each
      // mixed in with a multiply and a shift
      static_assert(sizeof(Key) % sizeof(uint64_t) == 0, "Key is a whole number of words");
      uint64_t h = 0;
      for (size_t i = 0; i < sizeof(Key); i += sizeof(uint64_t)) {
        uint64_t w;
        std::memcpy(&w, reinterpret_cast<const unsigned char*>(&k) + i, sizeof(w));
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
      }
      return static_cast<size_t>(h);
    }
  };
  struct KeyEq {
    bool operator()(const Key& a, const Key& b) const {
      return std::memcmp(&a, &b, sizeof(Key)) == 0;
    }
  };
  Totals& slot(const Key& k) {
    // try_emplace: no node is built (and freed) for a key already there
    auto [it, inserted] = index_.try_emplace(k, entries_.size());
    if (inserted) entries_.push_back(Entry{k, Totals{}});
    return entries_[it->second].totals;
  }

  std::unordered_map<Key, size_t, KeyHash, KeyEq> index_;
  std::vector<Entry> entries_;  // in first-seen order
};

}  // namespace ebpfc
