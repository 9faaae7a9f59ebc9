#include "kube/kube_status.h"

namespace ebpfc::kube {

const char* kube_state_name(KubeState state) {
  switch (state) {
    case KubeState::Disabled:
      return "disabled";
    case KubeState::Syncing:
      return "syncing";
    case KubeState::Synced:
      return "synced";
    case KubeState::Stale:
      return "stale";
    case KubeState::Failing:
      return "failing";
  }
  return "unknown";
}

const char* failure_kind_name(int kind) {
  static const char* const names[kFailKinds] = {
      "network",   "tls",         "timeout",   "unauthorized", "forbidden",
      "not_found", "expired",     "throttled", "server_error", "other_http",
      "decode",    "short_watch", "token"};
  return kind >= 0 && kind < kFailKinds ? names[kind] : "unknown";
}

}  // namespace ebpfc::kube
