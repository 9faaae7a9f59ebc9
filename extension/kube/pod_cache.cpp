#include "kube/pod_cache.h"

#include <algorithm>
#include <map>

namespace ebpfc::kube {

// Something an address can belong to: a pod or a node.
struct PodCache::Owner {
  PeerIdentity id;
  StringPool::Handle names[5] = {};  // pod, ns, workload, kind, node
  uint32_t claims = 0;               // claims naming this owner
  uint32_t users = 0;                // entries whose held_owner this is
  bool is_node = false;
};

struct PodCache::PodEntry : Owner {
  std::string uid;
  std::string ctrl_kind;  // controller reference (empty: none)
  std::string ctrl_name;
  std::string ctrl_uid;
  std::string template_hash;  // pod-template-hash label
  std::string labels_json;
  std::string indexed_uid;      // key under which it sits in by_controller_ (empty: none)
  std::vector<IpAddr> ips;      // as the API last said
  std::vector<IpAddr> held;     // addresses whose claim by held_owner this pod holds
  Owner* held_owner = nullptr;  // itself, or its node (host network)
  PodPhase phase = PodPhase::Unset;
  bool host_network = false;
  bool dirty = false;
  uint32_t gen = 0;
  int64_t created_us = kNoTime;
  int64_t started_us = kNoTime;
  int64_t deletion_requested_us = kNoTime;
  int64_t first_seen_us = kNoTime;
  int64_t last_seen_us = kNoTime;
  int64_t deleted_us = kNoTime;
};

struct PodCache::NodeEntry : Owner {
  std::string name;
  bool listed = false;  // reported by the nodes API (else there for host-network pods)
  uint32_t gen = 0;
  int64_t created_us = kNoTime;
  std::vector<IpAddr> ips;  // InternalIP addresses
  std::vector<IpAddr> held;
  Owner* held_owner = nullptr;
};

namespace {

bool contains(const std::vector<IpAddr>& v, const IpAddr& a) {
  return std::find(v.begin(), v.end(), a) != v.end();
}

bool controller_indexed(std::string_view kind) { return kind == "ReplicaSet" || kind == "Job"; }

}  // namespace

PodCache::PodCache(const PodCacheOptions& options) : options_(options) {}

PodCache::~PodCache() = default;

const OwnerInfo* PodCache::find_owner(std::string_view uid) const {
  auto it = owners_.find(std::string(uid));
  return it == owners_.end() ? nullptr : &it->second.info;
}

void PodCache::set_identity(Owner& o, std::string_view pod, std::string_view ns,
                            std::string_view workload, std::string_view kind,
                            std::string_view node) {
  const std::string_view wanted[5] = {pod, ns, workload, kind, node};
  for (int i = 0; i < 5; i++) {
    if (StringPool::view(o.names[i]) == wanted[i]) continue;
    StringPool::Handle h = pool_.intern(wanted[i]);
    pool_.release(o.names[i]);
    o.names[i] = h;
  }
  o.id.pod = StringPool::view(o.names[0]);
  o.id.ns = StringPool::view(o.names[1]);
  o.id.workload = StringPool::view(o.names[2]);
  o.id.workload_kind = StringPool::view(o.names[3]);
  o.id.node = StringPool::view(o.names[4]);
}

void PodCache::apply_workload(PodEntry& e) {
  OwnerRef ref;
  const bool has_ctrl = !e.ctrl_kind.empty();
  if (has_ctrl) {
    ref.kind = e.ctrl_kind;
    ref.name = e.ctrl_name;
    ref.uid = e.ctrl_uid;
    ref.controller = true;
  }
  const Workload w = derive_workload(e.id.pod, has_ctrl ? &ref : nullptr,
                                     e.template_hash.empty() ? nullptr : &e.template_hash, this);
  set_identity(e, e.id.pod, e.id.ns, w.name, w.kind, e.id.node);
}

void PodCache::index_pod(PodEntry& e, bool add) {
  if (!e.indexed_uid.empty()) {
    auto it = by_controller_.find(e.indexed_uid);
    if (it != by_controller_.end()) {
      auto& v = it->second;
      v.erase(std::remove(v.begin(), v.end(), &e), v.end());
      if (v.empty()) by_controller_.erase(it);
    }
    e.indexed_uid.clear();
  }
  if (add && !e.ctrl_uid.empty() && controller_indexed(e.ctrl_kind)) {
    e.indexed_uid = e.ctrl_uid;
    by_controller_[e.indexed_uid].push_back(&e);
  }
}

void PodCache::mark_dirty(PodEntry& e) {
  if (!options_.track_changes || e.dirty) return;
  if (dirty_.size() >= options_.max_pending_changes) {
    counters_.changes_dropped++;
    return;
  }
  e.dirty = true;
  dirty_.push_back(&e);
}

PodCache::NodeEntry* PodCache::node_entry(std::string_view name, bool create) {
  auto it = nodes_.find(std::string(name));
  if (it != nodes_.end()) return it->second.get();
  if (!create) return nullptr;
  auto n = std::make_unique<NodeEntry>();
  n->is_node = true;
  n->name = std::string(name);
  NodeEntry* raw = n.get();
  set_identity(*raw, {}, {}, name, "Node", name);
  nodes_.emplace(raw->name, std::move(n));
  return raw;
}

void PodCache::maybe_erase_node(Owner* owner) {
  if (owner == nullptr || !owner->is_node) return;
  NodeEntry* n = static_cast<NodeEntry*>(owner);
  if (n->listed || n->claims != 0 || n->users != 0 || n->held_owner != nullptr) return;
  for (StringPool::Handle& h : n->names) pool_.release(h);
  nodes_.erase(n->name);
}

void PodCache::set_held_owner(Owner*& slot, Owner* next) {
  if (slot == next) return;
  Owner* old = slot;
  if (next != nullptr) next->users++;
  slot = next;
  if (old != nullptr) {
    old->users--;
    maybe_erase_node(old);
  }
}

bool PodCache::acquire(const IpAddr& addr, Owner* owner, int64_t start_us) {
  Claims& cs = by_addr_[addr];
  for (size_t i = 0; i < cs.size(); i++) {
    Claim& c = cs[i];
    if (c.owner != owner) continue;
    if (c.holders == 0) c.end_us = kForever;
    c.holders++;
    if (start_us < c.start_us) {
      Claim moved = c;
      moved.start_us = start_us;
      cs.erase(cs.begin() + static_cast<ptrdiff_t>(i));
      auto at = std::upper_bound(cs.begin(), cs.end(), moved.start_us,
                                 [](int64_t s, const Claim& x) { return s < x.start_us; });
      cs.insert(at, moved);
    }
    return true;
  }
  if (cs.size() >= options_.max_claims_per_address) {
    // Make room by forgetting the oldest released claim; a history of held
    // claims only (many pods claiming one address) takes no more.
    size_t victim = cs.size();
    for (size_t i = 0; i < cs.size(); i++)
      if (cs[i].holders == 0 && (victim == cs.size() || cs[i].start_us < cs[victim].start_us))
        victim = i;
    counters_.claims_dropped++;
    if (victim == cs.size()) return false;
    drop_claim(cs, victim);
  }
  auto at = std::upper_bound(cs.begin(), cs.end(), start_us,
                             [](int64_t s, const Claim& x) { return s < x.start_us; });
  cs.insert(at, Claim{owner, start_us, kForever, 1});
  owner->claims++;
  return true;
}

void PodCache::release(const IpAddr& addr, Owner* owner, int64_t now_us) {
  auto it = by_addr_.find(addr);
  if (it == by_addr_.end()) return;
  for (Claim& c : it->second) {
    if (c.owner != owner || c.holders == 0) continue;
    if (--c.holders == 0) {
      c.end_us = now_us;
      claim_expiry_.push_back(Due{now_us + options_.grace_us, addr});
    }
    return;
  }
}

void PodCache::drop_claim(Claims& cs, size_t i) {
  Owner* o = cs[i].owner;
  cs.erase(cs.begin() + static_cast<ptrdiff_t>(i));
  o->claims--;
  maybe_erase_node(o);
}

void PodCache::purge(const IpAddr& addr, int64_t now_us) {
  auto it = by_addr_.find(addr);
  if (it == by_addr_.end()) return;
  Claims& cs = it->second;
  for (size_t i = cs.size(); i-- > 0;)
    if (cs[i].holders == 0 && cs[i].end_us <= now_us - options_.grace_us) drop_claim(cs, i);
  if (cs.empty()) by_addr_.erase(it);
}

void PodCache::reconcile_claims(std::vector<IpAddr>& held, Owner*& held_owner, Owner* desired_owner,
                                const std::vector<IpAddr>& desired, int64_t start_us,
                                int64_t now_us) {
  static const std::vector<IpAddr> kNone;
  const std::vector<IpAddr>& want = desired_owner != nullptr ? desired : kNone;
  // `held` may live inside the entry held_owner points to (a node holds its
  // own addresses): pin that entry so releasing it cannot erase it while we
  // are still working on `held`; it is erased, if unused, at the end.
  Owner* const pin = held_owner;
  if (pin != nullptr) pin->users++;
  if (held_owner != desired_owner) {
    for (const IpAddr& a : held) release(a, held_owner, now_us);
    held.clear();
    set_held_owner(held_owner, desired_owner);
  }
  for (size_t i = held.size(); i-- > 0;) {
    if (contains(want, held[i])) continue;
    release(held[i], held_owner, now_us);
    held.erase(held.begin() + static_cast<ptrdiff_t>(i));
  }
  for (const IpAddr& a : want) {
    if (contains(held, a)) continue;
    if (acquire(a, desired_owner, start_us)) held.push_back(a);
  }
  if (pin != nullptr) {
    pin->users--;
    maybe_erase_node(pin);  // `held` must not be touched after this
  }
}

void PodCache::reconcile_pod_claims(PodEntry& e, int64_t now_us) {
  Owner* owner = nullptr;
  int64_t start = e.started_us != kNoTime   ? e.started_us
                  : e.created_us != kNoTime ? e.created_us
                                            : e.first_seen_us;
  if (e.deleted_us == kNoTime && e.phase != PodPhase::Succeeded && e.phase != PodPhase::Failed &&
      !e.ips.empty()) {
    if (!e.host_network) {
      owner = &e;
    } else if (!e.id.node.empty()) {
      NodeEntry* n = node_entry(e.id.node, true);
      owner = n;
      start = n->created_us;  // the node's address was the node's all along
    }
  }
  reconcile_claims(e.held, e.held_owner, owner, e.ips, start, now_us);
}

bool PodCache::upsert_pod(const Pod& pod, int64_t now_us) {
  if (pod.meta.uid.empty() || pod.meta.name.empty()) {
    counters_.rejected++;
    return false;
  }
  std::unique_ptr<PodEntry>& slot = pods_[pod.meta.uid];
  if (!slot) {
    slot = std::make_unique<PodEntry>();
    slot->uid = pod.meta.uid;
    slot->first_seen_us = now_us;
    live_pods_++;
  } else if (slot->deleted_us != kNoTime) {
    slot->deleted_us = kNoTime;  // listed again: it was not gone after all
    live_pods_++;
  }
  PodEntry& e = *slot;
  e.gen = gen_[static_cast<int>(ResourceKind::Pods)];
  e.last_seen_us = now_us;
  const OwnerRef* ctrl = pod.meta.controller();
  const bool ctrl_changed =
      ctrl == nullptr ? !e.ctrl_kind.empty() : ctrl->kind != e.ctrl_kind || ctrl->uid != e.ctrl_uid;
  if (ctrl != nullptr) {
    e.ctrl_kind = ctrl->kind;
    e.ctrl_name = ctrl->name;
    e.ctrl_uid = ctrl->uid;
  } else {
    e.ctrl_kind.clear();
    e.ctrl_name.clear();
    e.ctrl_uid.clear();
  }
  if (ctrl_changed || (e.indexed_uid.empty() && !e.ctrl_uid.empty())) index_pod(e, true);
  const std::string* hash = pod.meta.label("pod-template-hash");
  e.template_hash = hash != nullptr ? *hash : std::string();
  e.labels_json = labels_to_json(pod.meta.labels);
  e.ips = pod.ips;
  e.phase = pod.phase;
  e.host_network = pod.host_network;
  e.created_us = pod.meta.created_us;
  e.started_us = pod.start_us;
  e.deletion_requested_us = pod.meta.deletion_requested_us;
  set_identity(e, pod.meta.name, pod.meta.ns, e.id.workload, e.id.workload_kind, pod.node);
  apply_workload(e);
  reconcile_pod_claims(e, now_us);
  mark_dirty(e);
  counters_.pod_upserts++;
  return true;
}

void PodCache::delete_pod_entry(PodEntry& e, int64_t now_us) {
  e.deleted_us = now_us;
  live_pods_--;
  reconcile_pod_claims(e, now_us);
  mark_dirty(e);
  tombstones_.push_back(Tomb{now_us + options_.grace_us, e.uid});
  counters_.pod_deletes++;
}

void PodCache::delete_pod(std::string_view uid, int64_t now_us) {
  auto it = pods_.find(std::string(uid));
  if (it == pods_.end() || it->second->deleted_us != kNoTime) return;
  delete_pod_entry(*it->second, now_us);
}

void PodCache::erase_pod(PodEntry* e) {
  index_pod(*e, false);
  set_held_owner(e->held_owner, nullptr);
  for (StringPool::Handle& h : e->names) pool_.release(h);
  pods_.erase(e->uid);
}

bool PodCache::upsert_owner(const OwnerInfo& owner) {
  if (owner.uid.empty() || owner.name.empty()) {
    counters_.rejected++;
    return false;
  }
  auto [it, inserted] = owners_.try_emplace(owner.uid);
  OwnerInfo& old = it->second.info;
  const bool changed = inserted || old.name != owner.name || old.kind != owner.kind ||
                       old.controller_kind != owner.controller_kind ||
                       old.controller_name != owner.controller_name;
  old = owner;
  it->second.gen = gen_[static_cast<int>(ResourceKind::Owners)];
  if (!changed) return true;
  auto pods = by_controller_.find(owner.uid);
  if (pods == by_controller_.end()) return true;
  for (PodEntry* e : pods->second) {
    const std::string_view before = e->id.workload, before_kind = e->id.workload_kind;
    const StringPool::Handle keep[2] = {pool_.retain(e->names[2]), pool_.retain(e->names[3])};
    apply_workload(*e);
    if (before != e->id.workload || before_kind != e->id.workload_kind) {
      counters_.workload_updates++;
      mark_dirty(*e);
    }
    pool_.release(keep[0]);
    pool_.release(keep[1]);
  }
  return true;
}

void PodCache::delete_owner(std::string_view uid) {
  auto it = owners_.find(std::string(uid));
  if (it == owners_.end()) return;
  owners_.erase(it);
  auto pods = by_controller_.find(std::string(uid));
  if (pods == by_controller_.end()) return;
  for (PodEntry* e : pods->second) {
    const StringPool::Handle keep[2] = {pool_.retain(e->names[2]), pool_.retain(e->names[3])};
    const std::string_view before = e->id.workload, before_kind = e->id.workload_kind;
    apply_workload(*e);
    if (before != e->id.workload || before_kind != e->id.workload_kind) {
      counters_.workload_updates++;
      mark_dirty(*e);
    }
    pool_.release(keep[0]);
    pool_.release(keep[1]);
  }
}

bool PodCache::upsert_node(const Node& node, int64_t now_us) {
  if (node.name.empty()) {
    counters_.rejected++;
    return false;
  }
  NodeEntry* n = node_entry(node.name, true);
  n->listed = true;
  n->gen = gen_[static_cast<int>(ResourceKind::Nodes)];
  n->created_us = node.created_us;
  n->ips = node.internal_ips;
  reconcile_claims(n->held, n->held_owner, n, n->ips, n->created_us, now_us);
  return true;
}

void PodCache::delete_node(std::string_view name, int64_t now_us) {
  NodeEntry* n = node_entry(name, false);
  if (n == nullptr || !n->listed) return;
  n->listed = false;
  n->ips.clear();
  // erases n when nothing uses it any more: n must not be touched after this
  reconcile_claims(n->held, n->held_owner, nullptr, n->ips, kNoTime, now_us);
}

void PodCache::begin_resync(ResourceKind kind) { gen_[static_cast<int>(kind)]++; }

size_t PodCache::end_resync(ResourceKind kind, int64_t now_us) {
  const uint32_t gen = gen_[static_cast<int>(kind)];
  size_t n = 0;
  switch (kind) {
    case ResourceKind::Pods:
      for (auto& kv : pods_) {
        PodEntry& e = *kv.second;
        if (e.deleted_us != kNoTime || e.gen == gen) continue;
        delete_pod_entry(e, now_us);
        n++;
      }
      break;
    case ResourceKind::Owners: {
      std::vector<std::string> gone;
      for (const auto& kv : owners_)
        if (kv.second.gen != gen) gone.push_back(kv.first);
      for (const std::string& uid : gone) delete_owner(uid);
      n = gone.size();
      break;
    }
    case ResourceKind::Nodes: {
      std::vector<std::string> gone;
      for (const auto& kv : nodes_)
        if (kv.second->listed && kv.second->gen != gen) gone.push_back(kv.first);
      for (const std::string& name : gone) delete_node(name, now_us);
      n = gone.size();
      break;
    }
  }
  counters_.resync_deletes += n;
  return n;
}

void PodCache::expire(int64_t now_us) {
  while (!claim_expiry_.empty() && claim_expiry_.front().at_us <= now_us) {
    const IpAddr addr = claim_expiry_.front().addr;
    claim_expiry_.pop_front();
    purge(addr, now_us);
  }
  const int64_t retry = std::max<int64_t>(options_.grace_us, 1000000);
  // Tombstones pushed back below are due later than now: the loop ends.
  while (!tombstones_.empty() && tombstones_.front().at_us <= now_us) {
    std::string uid = std::move(tombstones_.front().uid);
    tombstones_.pop_front();
    auto it = pods_.find(uid);
    if (it == pods_.end() || it->second->deleted_us == kNoTime) continue;
    PodEntry* e = it->second.get();
    if (e->claims == 0 && !e->dirty)
      erase_pod(e);
    else
      tombstones_.push_back(Tomb{now_us + retry, std::move(uid)});
  }
}

const PeerIdentity* PodCache::lookup(const IpAddr& addr, int64_t at_us) const {
  auto it = by_addr_.find(addr);
  if (it == by_addr_.end()) return nullptr;
  const Claims& cs = it->second;
  const Claim* best = nullptr;
  for (const Claim& c : cs) {
    if (c.start_us > at_us) break;
    best = &c;
  }
  if (best == nullptr && !cs.empty()) {
    // at_us < first start: the first owner answers within the skew.
    const Claim& first = cs.front();
    if (first.start_us > kNoTime + options_.clock_skew_us &&
        at_us >= first.start_us - options_.clock_skew_us)
      best = &first;
  }
  return best != nullptr ? &best->owner->id : nullptr;
}

void PodCache::fill_record(const PodEntry& e, PodRecord* r) const {
  r->uid = e.uid;
  r->ns = std::string(e.id.ns);
  r->name = std::string(e.id.pod);
  r->node = std::string(e.id.node);
  r->workload = std::string(e.id.workload);
  r->workload_kind = std::string(e.id.workload_kind);
  r->phase = pod_phase_name(e.phase);
  r->labels_json = e.labels_json;
  r->ips.clear();
  for (const IpAddr& a : e.ips) {
    char buf[46];
    const size_t n = format_ip(a, buf);
    r->ips.emplace_back(buf, n);
  }
  r->host_network = e.host_network;
  r->created_us = e.created_us;
  r->started_us = e.started_us;
  r->deletion_requested_us = e.deletion_requested_us;
  r->first_seen_us = e.first_seen_us;
  r->last_seen_us = e.last_seen_us;
  r->deleted_us = e.deleted_us;
}

size_t PodCache::take_changes(std::vector<PodRecord>& out, size_t max) {
  size_t n = 0;
  while (n < max && !dirty_.empty()) {
    PodEntry* e = dirty_.front();
    dirty_.pop_front();
    e->dirty = false;
    out.emplace_back();
    fill_record(*e, &out.back());
    n++;
  }
  return n;
}

void PodCache::snapshot(std::vector<PodRecord>& out) const {
  out.reserve(out.size() + pods_.size());
  for (const auto& kv : pods_) {
    out.emplace_back();
    fill_record(*kv.second, &out.back());
  }
}

bool PodCache::find_pod(std::string_view uid, PodRecord* out) const {
  auto it = pods_.find(std::string(uid));
  if (it == pods_.end()) return false;
  fill_record(*it->second, out);
  return true;
}

size_t PodCache::nodes_known() const {
  size_t n = 0;
  for (const auto& kv : nodes_) n += kv.second->listed ? 1 : 0;
  return n;
}

bool PodCache::check(std::string* why) const {
  auto fail = [why](const std::string& m) {
    *why = m;
    return false;
  };
  std::map<const Owner*, uint32_t> claims_of;
  std::map<std::pair<const Owner*, std::string>, uint32_t> holders_of;
  for (const auto& kv : by_addr_) {
    const Claims& cs = kv.second;
    if (cs.empty()) return fail("an address without claims");
    if (cs.size() > options_.max_claims_per_address) return fail("too many claims");
    for (size_t i = 0; i < cs.size(); i++) {
      if (cs[i].owner == nullptr) return fail("claim without owner");
      if (i > 0 && cs[i - 1].start_us > cs[i].start_us) return fail("claims out of order");
      if ((cs[i].holders == 0) != (cs[i].end_us != kForever)) return fail("claim end vs holders");
      for (size_t j = 0; j < i; j++)
        if (cs[j].owner == cs[i].owner) return fail("two claims of one owner on an address");
      claims_of[cs[i].owner]++;
      holders_of[{cs[i].owner, std::string(reinterpret_cast<const char*>(kv.first.b), 16)}] =
          cs[i].holders;
    }
  }
  std::map<const Owner*, uint32_t> users_of;
  std::map<std::pair<const Owner*, std::string>, uint32_t> holds;
  auto count_holds = [&](const std::vector<IpAddr>& held, const Owner* owner) {
    if (owner == nullptr) return held.empty();
    users_of[owner]++;
    for (const IpAddr& a : held)
      holds[{owner, std::string(reinterpret_cast<const char*>(a.b), 16)}]++;
    return true;
  };
  size_t live = 0, dirty = 0;
  for (const auto& kv : pods_) {
    const PodEntry& e = *kv.second;
    if (kv.first != e.uid) return fail("pod under the wrong uid");
    if (e.deleted_us == kNoTime) live++;
    if (e.dirty) dirty++;
    if (e.deleted_us != kNoTime && e.held_owner != nullptr) return fail("deleted pod holds claims");
    if (!count_holds(e.held, e.held_owner)) return fail("pod holds without an owner");
    if (claims_of[&e] != e.claims) return fail("pod claim count");
    if (StringPool::view(e.names[0]) != e.id.pod) return fail("pod identity");
  }
  for (const auto& kv : nodes_) {
    const NodeEntry& n = *kv.second;
    if (!count_holds(n.held, n.held_owner)) return fail("node holds without an owner");
    if (claims_of[&n] != n.claims) return fail("node claim count");
    if (!n.listed && n.claims == 0 && n.users == 0) return fail("unused node kept");
  }
  for (const auto& kv : pods_)
    if (users_of[kv.second.get()] != kv.second->users) return fail("pod users");
  for (const auto& kv : nodes_)
    if (users_of[kv.second.get()] != kv.second->users) return fail("node users");
  if (counters_.claims_dropped == 0) {
    for (const auto& h : holds) {
      auto it = holders_of.find(h.first);
      if (it == holders_of.end() || it->second != h.second) return fail("holders do not add up");
    }
    for (const auto& h : holders_of)
      if (h.second != 0 && holds.find(h.first) == holds.end()) return fail("claim held by nobody");
  }
  if (live != live_pods_) return fail("live pod count");
  if (dirty != dirty_.size()) return fail("change feed out of step");
  return true;
}

}  // namespace ebpfc::kube
