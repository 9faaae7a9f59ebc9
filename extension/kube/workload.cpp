#include "kube/workload.h"

namespace ebpfc::kube {

namespace {

// Minutes since the epoch of 2014-01-01 and 2160-01-01.
constexpr uint64_t kCronMinutesFrom = 23142240;
constexpr uint64_t kCronMinutesTo = 99930240;

bool ends_with_dash_suffix(std::string_view name, std::string_view suffix) {
  return !suffix.empty() && name.size() > suffix.size() + 1 &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         name[name.size() - suffix.size() - 1] == '-';
}

}  // namespace

std::string_view cronjob_from_job_name(std::string_view job_name) {
  const size_t dash = job_name.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return {};
  const std::string_view digits = job_name.substr(dash + 1);
  if (digits.size() < 8 || digits.size() > 9) return {};
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return {};
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v < kCronMinutesFrom || v >= kCronMinutesTo) return {};
  return job_name.substr(0, dash);
}

Workload derive_workload(std::string_view pod_name, const OwnerRef* controller,
                         const std::string* pod_template_hash, const OwnerLookup* owners) {
  Workload w;
  if (controller == nullptr) {
    w.name = std::string(pod_name);
    w.kind = "Pod";
    w.source = WorkloadSource::Self;
    return w;
  }
  const bool is_rs = controller->kind == "ReplicaSet";
  const bool is_job = controller->kind == "Job";
  if (is_rs || is_job) {
    const OwnerInfo* owner = owners != nullptr && !controller->uid.empty()
                                 ? owners->find_owner(controller->uid)
                                 : nullptr;
    if (owner != nullptr) {
      w.source = WorkloadSource::Owner;
      if (!owner->controller_kind.empty() && !owner->controller_name.empty()) {
        w.name = owner->controller_name;
        w.kind = owner->controller_kind;
      } else {
        w.name = controller->name;
        w.kind = controller->kind;
      }
      return w;
    }
    if (is_rs && pod_template_hash != nullptr &&
        ends_with_dash_suffix(controller->name, *pod_template_hash)) {
      w.name = controller->name.substr(0, controller->name.size() - pod_template_hash->size() - 1);
      w.kind = "Deployment";
      w.source = WorkloadSource::Heuristic;
      return w;
    }
    if (is_job) {
      const std::string_view cron = cronjob_from_job_name(controller->name);
      if (!cron.empty()) {
        w.name = std::string(cron);
        w.kind = "CronJob";
        w.source = WorkloadSource::Heuristic;
        return w;
      }
    }
  }
  w.name = controller->name;
  w.kind = controller->kind;
  w.source = WorkloadSource::Controller;
  return w;
}

}  // namespace ebpfc::kube
