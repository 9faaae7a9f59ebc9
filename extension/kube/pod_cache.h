// pod_cache.h - who an address belonged to, and when: the pods, their
// controllers and the nodes the Kubernetes API reports, indexed by address
// for the span path, with a change feed for the pods table.
//
// Addresses are reused, so resolution is over time. Every address keeps a
// short, ordered history of claims; a claim is an owner (a pod, or a node)
// with the time it began (the pod's status.startTime, else its
// creationTimestamp, else when it was first seen) and, once released, the
// time it ended. lookup(addr, t) returns the owner of the latest claim that
// began at or before t:
//  - between two pods with the same address the newer one wins, from its
//    start on;
//  - a pod releases its addresses when it is deleted or reaches phase
//    Succeeded/Failed; a released claim still resolves for `grace_us` (late
//    spans are named), unless a newer claim began before the time asked;
//  - a host-network pod's addresses are claimed by its node; a node claims
//    its InternalIP addresses: both resolve to the node;
//  - before the first claim of an address (clock skew between the API
//    server and this node) the first claim answers for up to clock_skew_us.
//
// lookup() is a hash lookup plus a walk of a few claims: no allocation. The
// identity it returns points into the cache and stays valid until the next
// call that changes the cache (upsert/delete/resync/expire).
//
// PostgreSQL-free, single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kube/ip_addr.h"
#include "kube/kube_objects.h"
#include "kube/kube_time.h"
#include "kube/string_pool.h"
#include "kube/workload.h"

namespace ebpfc::kube {

// The identity of one end of a span. Empty views are unknown (NULL). For a
// node's address: pod and ns empty, workload = node = the node's name,
// workload_kind = "Node".
struct PeerIdentity {
  std::string_view pod;
  std::string_view ns;
  std::string_view workload;
  std::string_view workload_kind;
  std::string_view node;
};

// One row of the pods table.
struct PodRecord {
  std::string uid;
  std::string ns;
  std::string name;
  std::string node;
  std::string workload;
  std::string workload_kind;
  std::string phase;        // "" when the API did not say
  std::string labels_json;  // {"app":"web",...}
  std::vector<std::string> ips;
  bool host_network = false;
  int64_t created_us = kNoTime;             // metadata.creationTimestamp
  int64_t started_us = kNoTime;             // status.startTime
  int64_t deletion_requested_us = kNoTime;  // metadata.deletionTimestamp (terminating)
  int64_t first_seen_us = kNoTime;          // first reported by the API to this cache
  int64_t last_seen_us = kNoTime;           // last reported (list or event)
  int64_t deleted_us = kNoTime;             // DELETED seen (or gone from a relist); kNoTime: live
};

// The resources a relist replaces (see begin_resync).
enum class ResourceKind : uint8_t { Pods, Owners, Nodes };

struct PodCacheOptions {
  int64_t grace_us = 120 * 1000000ll;      // a released address resolves this long
  int64_t clock_skew_us = 10 * 1000000ll;  // see lookup()
  size_t max_claims_per_address = 8;       // history kept per address
  bool track_changes = true;               // keep the change feed (take_changes)
  size_t max_pending_changes = 1u << 20;   // pods waiting in the feed, beyond: counted, dropped
};

struct PodCacheCounters {
  uint64_t pod_upserts;
  uint64_t pod_deletes;       // DELETED events and relist sweeps
  uint64_t resync_deletes;    // objects a relist no longer listed (included above for pods)
  uint64_t rejected;          // objects without a uid/name
  uint64_t claims_dropped;    // claims pushed out of an address's full history
  uint64_t changes_dropped;   // pods not queued for the pods table (max_pending_changes)
  uint64_t workload_updates;  // pods whose workload changed when their ReplicaSet became known
};

class PodCache final : private OwnerLookup {
 public:
  explicit PodCache(const PodCacheOptions& options = PodCacheOptions());
  ~PodCache() override;
  PodCache(const PodCache&) = delete;
  PodCache& operator=(const PodCache&) = delete;

  // ADDED/MODIFIED events and list items. False (and counted) for a pod
  // without uid or name.
  bool upsert_pod(const Pod& pod, int64_t now_us);
  // A DELETED event: the pod releases its addresses now.
  void delete_pod(std::string_view uid, int64_t now_us);

  // ReplicaSets (and Jobs, if ever watched): their controller names the
  // workload of their pods. Pods already known are re-derived.
  bool upsert_owner(const OwnerInfo& owner);
  void delete_owner(std::string_view uid);

  bool upsert_node(const Node& node, int64_t now_us);
  void delete_node(std::string_view name, int64_t now_us);

  // A relist of `kind` begins: objects of that kind not upserted again
  // before end_resync() are deleted by it (they went away while the watch
  // was not looking). Returns how many end_resync deleted.
  void begin_resync(ResourceKind kind);
  size_t end_resync(ResourceKind kind, int64_t now_us);

  // Forgets claims and deleted pods whose grace period ended. Cheap when
  // there is nothing to do; call it about once a second.
  void expire(int64_t now_us);

  const PeerIdentity* lookup(const IpAddr& addr, int64_t at_us) const;
  const PeerIdentity* lookup(const uint8_t addr[16], int64_t at_us) const {
    return lookup(IpAddr::from_bytes(addr), at_us);
  }

  // Moves the pods that changed since the last call (at most max) to `out`
  // (appended), oldest change first; returns how many. A pod appears once
  // however often it changed, with its latest state.
  size_t take_changes(std::vector<PodRecord>& out, size_t max = SIZE_MAX);
  size_t pending_changes() const { return dirty_.size(); }

  // Every pod held (deleted ones still in their grace period too).
  void snapshot(std::vector<PodRecord>& out) const;
  // The record of one pod, if held.
  bool find_pod(std::string_view uid, PodRecord* out) const;

  size_t pods_known() const { return live_pods_; }   // not deleted
  size_t pods_held() const { return pods_.size(); }  // deleted ones in grace too
  size_t addresses() const { return by_addr_.size(); }
  size_t owners_known() const { return owners_.size(); }
  size_t nodes_known() const;
  const PodCacheCounters& counters() const { return counters_; }
  const PodCacheOptions& options() const { return options_; }
  void set_grace_us(int64_t grace_us) { options_.grace_us = grace_us; }

  // Checks every internal invariant; false with a reason if one is broken.
  // For tests and the fuzzer.
  bool check(std::string* why) const;

 private:
  struct Owner;
  struct PodEntry;
  struct NodeEntry;
  struct Claim {
    Owner* owner;
    int64_t start_us;
    int64_t end_us;    // kForever while held
    uint32_t holders;  // pods/nodes holding it (several host-network pods share a node's)
  };
  using Claims = std::vector<Claim>;

  const OwnerInfo* find_owner(std::string_view uid) const override;

  PodEntry* make_pod(const std::string& uid, int64_t now_us);
  void set_identity(Owner& owner, std::string_view pod, std::string_view ns,
                    std::string_view workload, std::string_view kind, std::string_view node);
  void apply_workload(PodEntry& e);
  void reconcile_pod_claims(PodEntry& e, int64_t now_us);
  void reconcile_claims(std::vector<IpAddr>& held, Owner*& held_owner, Owner* desired_owner,
                        const std::vector<IpAddr>& desired, int64_t start_us, int64_t now_us);
  void set_held_owner(Owner*& slot, Owner* next);
  bool acquire(const IpAddr& addr, Owner* owner, int64_t start_us);
  void release(const IpAddr& addr, Owner* owner, int64_t now_us);
  void drop_claim(Claims& claims, size_t i);
  void purge(const IpAddr& addr, int64_t now_us);
  NodeEntry* node_entry(std::string_view name, bool create);
  void maybe_erase_node(Owner* owner);
  void erase_pod(PodEntry* e);
  void mark_dirty(PodEntry& e);
  void fill_record(const PodEntry& e, PodRecord* r) const;
  void index_pod(PodEntry& e, bool add);
  void delete_pod_entry(PodEntry& e, int64_t now_us);

  PodCacheOptions options_;
  StringPool pool_;
  std::unordered_map<std::string, std::unique_ptr<PodEntry>> pods_;    // by uid
  std::unordered_map<std::string, std::unique_ptr<NodeEntry>> nodes_;  // by name
  struct OwnerEntry {
    OwnerInfo info;
    uint32_t gen;
  };
  std::unordered_map<std::string, OwnerEntry> owners_;  // ReplicaSets by uid
  // Pods by the uid of their ReplicaSet/Job controller: re-derived when it
  // becomes known or changes.
  std::unordered_map<std::string, std::vector<PodEntry*>> by_controller_;
  std::unordered_map<IpAddr, Claims, IpAddrHash> by_addr_;
  struct Due {
    int64_t at_us;
    IpAddr addr;
  };
  std::deque<Due> claim_expiry_;  // released claims, in release order
  struct Tomb {
    int64_t at_us;
    std::string uid;
  };
  std::deque<Tomb> tombstones_;  // deleted pods, in deletion order
  std::deque<PodEntry*> dirty_;  // the change feed
  uint32_t gen_[3] = {0, 0, 0};
  size_t live_pods_ = 0;
  PodCacheCounters counters_{};
};

}  // namespace ebpfc::kube
