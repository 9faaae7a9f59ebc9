// kube_status.h - what capture_status() shows about the Kubernetes client.
//
// Plain data (trivially copyable, no pointers): the worker can copy it into
// shared memory as it is.
#pragma once

#include <cstdint>

namespace ebpfc::kube {

enum class KubeState : uint8_t {
  Disabled,  // no API configured (or metadata turned off)
  Syncing,   // the first list of pods is under way
  Synced,    // every resource listed and watched, nothing failing
  Stale,     // pods were listed, but a request is failing now: names may be out of date
  Failing,   // pods were never listed, and the last attempt failed
};
const char* kube_state_name(KubeState state);

// Kinds of failed requests, indexes of KubeCounters::failures.
enum FailureKind : uint8_t {
  kFailNetwork,       // connect, reset, unexpected end of a response
  kFailTls,           // certificate that does not verify, bad CA file, handshake
  kFailTimeout,       // connect or transfer timeout
  kFailUnauthorized,  // 401
  kFailForbidden,     // 403
  kFailNotFound,      // 404
  kFailExpired,       // 410 on a list (continue token) or an ERROR 410 event: relisted
  kFailThrottled,     // 429
  kFailServer,        // 5xx
  kFailOtherHttp,     // any other status
  kFailDecode,        // a list that is not JSON, too big, or without resourceVersion
  kFailShortWatch,    // a watch that ended within a second with no event
  kFailToken,         // the token file could not be read (the old token is kept)
  kFailKinds
};
const char* failure_kind_name(int kind);

struct KubeCounters {
  uint64_t requests;        // list pages and watches started
  uint64_t lists;           // list pages requested
  uint64_t watches;         // watches started
  uint64_t relists;         // lists restarted on 410 (expired resourceVersion or continue)
  uint64_t events;          // ADDED/MODIFIED/DELETED applied
  uint64_t bookmarks;       // BOOKMARK events
  uint64_t bad_events;      // malformed lines, unknown event types, undecodable objects
  uint64_t oversize_lines;  // watch lines longer than the bound, skipped
  uint64_t token_reloads;   // times a new token was read
  uint64_t failures[kFailKinds];
};

constexpr int kKubeErrorLen = 256;

struct KubeStatus {
  KubeState state;
  uint64_t pods_known;  // live pods in the cache
  uint64_t nodes_known;
  uint64_t owners_known;           // ReplicaSets
  uint64_t addresses;              // addresses that resolve
  int64_t synced_at_us;            // when everything was last in sync (0: never)
  int64_t last_error_us;           // when last_error happened (0: never)
  char last_error[kKubeErrorLen];  // NUL-terminated, never holds the token
  KubeCounters counters;
};

}  // namespace ebpfc::kube
