// kube_fuzz.cpp - libFuzzer target for what the Kubernetes client does
// with bytes from the API server (extension/kube): the watch stream
// splitter, JSON decoding, the reflector's list/watch handling and the pod
// cache fed by it.
//
// The input is
//
//   config (1 byte) | body...
//
// config bits 0-1: what the body is (0, 1: a watch stream; 2: a list page;
// 3: an error response body); bits 2-7 seed the chunk sizes the body is cut
// into, as libcurl's write callback would.
//
// Checked (CHECK aborts: libFuzzer reports a crash): nothing throws out of
// the decoders; the splitter reports the same lines however the body is cut
// (and exactly the reference split of the body when no line is oversize);
// the cache's invariants hold after every event; every lookup result is a
// well-formed identity. The same body, as pods a hub watches (the
// DatabasePods profile, hub_discovery.h), gives targets that are complete,
// one per node.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kube/hub_discovery.h"
#include "kube/line_splitter.h"
#include "kube/pod_cache.h"
#include "kube/reflector.h"

#include "fuzz_check.h"

using namespace ebpfc::kube;

namespace {

constexpr size_t kMaxLine = 256;  // small, so the fuzzer reaches oversize lines

// Applies objects to a cache as the client does, for all three kinds
// (a pod list, then the same bytes as ReplicaSets and nodes).
struct CacheHandler final : ResourceHandler {
  explicit CacheHandler(PodCache& c) : cache(c) {}
  void begin_list() override { cache.begin_resync(ResourceKind::Pods); }
  void end_list(const Instant& now) override { cache.end_resync(ResourceKind::Pods, now.unix_us); }
  bool apply(EventType type, const nlohmann::json& object, const Instant& now,
             std::string* error) override {
    Pod pod;
    OwnerInfo owner;
    Node node;
    bool any = false;
    if (decode_pod(object, &pod, error)) {
      any = true;
      if (type == EventType::Deleted)
        cache.delete_pod(pod.meta.uid, now.unix_us);
      else
        cache.upsert_pod(pod, now.unix_us);
    }
    if (decode_owner(object, "ReplicaSet", &owner, error)) {
      any = true;
      if (type == EventType::Deleted)
        cache.delete_owner(owner.uid);
      else
        cache.upsert_owner(owner);
    }
    if (decode_node(object, &node, error)) {
      any = true;
      if (type == EventType::Deleted)
        cache.delete_node(node.name, now.unix_us);
      else
        cache.upsert_node(node, now.unix_us);
    }
    std::string why;
    CHECK(cache.check(&why));
    for (const IpAddr& a : pod.ips) {
      const PeerIdentity* id = cache.lookup(a, now.unix_us);
      if (id != nullptr) CHECK(!id->workload.empty() && !id->workload_kind.empty());
    }
    return any;
  }
  PodCache& cache;
};

// The reflector's first request: an empty list, so the next is a watch.
void list_empty(Reflector& r, Instant& now) {
  r.begin(now);
  r.on_status(200, -1);
  const std::string list = R"({"metadata":{"resourceVersion":"1"},"items":[]})";
  r.on_body(list.data(), list.size(), now);
  r.on_done(TransferResult{}, now);
  CHECK(r.synced());
}

// The next request's response: body, in pieces `cuts` long, each followed
// by after_piece(); then its end.
template <class AfterPiece>
void respond(Reflector& r, const std::string& body, const std::vector<size_t>& cuts, Instant& now,
             AfterPiece after_piece) {
  CHECK(r.due(now.mono_ns));
  r.begin(now);
  r.on_status(200, -1);
  size_t pos = 0, k = 0;
  bool go = true;
  while (go && pos < body.size()) {
    const size_t n = std::min(cuts[k++ % cuts.size()], body.size() - pos);
    go = r.on_body(body.data() + pos, n, now);
    pos += n;
    after_piece();
  }
  r.on_done(TransferResult{go ? TransferResult::Kind::Ok : TransferResult::Kind::Aborted, ""}, now);
}

// The body as the hub's discovery sees it (a list first for a watch).
void check_database_pods(const std::string& body, const std::vector<size_t>& cuts, bool list) {
  DatabasePodSet set("postgres");
  KubeCounters counters{};
  std::mt19937_64 rng(2);
  ReflectorOptions ro;
  ro.max_line = kMaxLine;
  ro.max_list_body = 1 << 16;
  Reflector r(database_pods_spec("ns", "app=db"), ro, set, counters, rng);
  Instant now{1000000000ull, 1714564800000000ll};
  if (!list) {
    list_empty(r, now);
    CHECK(set.synced());
  }
  respond(r, body, cuts, now, [] {});
  std::string last_node;
  for (const HubTarget& t : set.targets()) {
    CHECK(!t.uid.empty() && !t.node.empty() && !t.host.empty() && !t.database.empty());
    CHECK(t.port >= 1 && t.port <= 65535);
    CHECK(t.node > last_node);  // one per node, sorted
    last_node = t.node;
  }
}

std::vector<std::string> split_all(const std::string& body, const std::vector<size_t>& cuts,
                                   uint64_t* oversize) {
  LineSplitter s(kMaxLine);
  std::vector<std::string> lines;
  size_t pos = 0, k = 0;
  while (pos < body.size()) {
    size_t n = cuts.empty() ? body.size() : cuts[k++ % cuts.size()];
    if (n > body.size() - pos) n = body.size() - pos;
    s.feed(body.data() + pos, n, [&](std::string_view l) {
      CHECK(l.size() <= kMaxLine && !l.empty());
      lines.emplace_back(l);
    });
    pos += n;
  }
  *oversize = s.counters().oversize_lines;
  const std::string_view rest = s.finish();
  if (!rest.empty()) lines.emplace_back("<tail>" + std::string(rest));
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t config = data[0];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  std::mt19937 rng(config >> 2);
  std::vector<size_t> cuts;
  for (int i = 0; i < 8; i++) cuts.push_back(1 + rng() % 64);

  // The splitter: the same lines whole or cut up; the reference split when
  // nothing was oversize.
  uint64_t o1 = 0, o2 = 0;
  const auto whole = split_all(body, {}, &o1);
  const auto cut = split_all(body, cuts, &o2);
  CHECK(whole == cut);
  CHECK(o1 == o2);
  if (o1 == 0) {
    std::vector<std::string> ref;
    size_t b = 0;
    for (size_t i = 0; i <= body.size(); i++) {
      if (i < body.size() && body[i] != '\n') continue;
      std::string line = body.substr(b, i - b);
      const bool tail = i == body.size();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) ref.push_back(tail ? "<tail>" + line : line);
      b = i + 1;
    }
    CHECK(ref == whole);
  }

  // The reflector and the cache.
  PodCacheOptions options;
  options.max_claims_per_address = 3;
  options.grace_us = 1000000;
  PodCache cache(options);
  CacheHandler handler(cache);
  KubeCounters counters{};
  std::mt19937_64 rrng(1);
  ReflectorOptions ro;
  ro.max_line = kMaxLine;
  ro.max_list_body = 1 << 16;
  const ResourceSpec spec{"pods", "/api/v1/pods", nullptr};
  Reflector r(spec, ro, handler, counters, rrng);
  Instant now{1000000000ull, 1714564800000000ll};
  const int mode = config & 3;
  if (mode == 3) {
    const ApiStatus st = status_from_body(500, body);
    CHECK(st.message.size() <= 512);
    return 0;
  }
  check_database_pods(body, cuts, mode == 2);
  if (mode <= 1) {
    // A list first (an empty one), then the body as a watch stream.
    list_empty(r, now);
  }
  respond(r, body, cuts, now, [&] {
    now.unix_us += 400000;
    now.mono_ns += 400000000ull;
    cache.expire(now.unix_us);
  });
  std::vector<PodRecord> changes;
  cache.take_changes(changes);
  for (const PodRecord& rec : changes) CHECK(!rec.uid.empty() && !rec.name.empty());
  now.unix_us += 10000000;
  cache.expire(now.unix_us);
  std::string why;
  CHECK(cache.check(&why));
  CHECK(counters.bad_events + counters.events + counters.bookmarks <= body.size());
  return 0;
}
