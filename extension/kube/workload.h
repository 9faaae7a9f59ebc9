// workload.h - the workload a pod belongs to: its controlling owner, seen
// through the ReplicaSet (or Job) to what controls that.
//
//   ReplicaSet  -> the ReplicaSet's own controller (a Deployment, or e.g. an
//                  Argo Rollout) when the ReplicaSet is known; else the
//                  ReplicaSet's name minus "-" + the pod's pod-template-hash
//                  label, as a Deployment; else the ReplicaSet itself
//   Job         -> the Job's controller (a CronJob) when the Job is known;
//                  else, if the Job's name is <name>-<minutes since the epoch>
//                  as the CronJob controller names its Jobs, the CronJob
//                  <name> (a guess from the name: Jobs are not watched);
//                  else the Job itself
//   anything else (StatefulSet, DaemonSet, Node for static pods, custom
//   controllers) -> that owner; no controller -> the pod itself ("Pod").
//
// A host-network pod's address resolves to its node (PodCache); its
// workload, as reported in the pods table, is still derived here.
//
// PostgreSQL-free.
#pragma once

#include <string>
#include <string_view>

#include "kube/kube_objects.h"

namespace ebpfc::kube {

// How the workload was found.
enum class WorkloadSource : uint8_t {
  Self,        // no controller: the pod
  Controller,  // the pod's controller itself (StatefulSet, DaemonSet, ...)
  Owner,       // through the known ReplicaSet/Job's own controller (or it has none)
  Heuristic,   // from names only (ReplicaSet/Job not known)
};

struct Workload {
  std::string name;
  std::string kind;
  WorkloadSource source = WorkloadSource::Self;
};

// Finds a controlling object (ReplicaSet, Job) by uid; null if not known.
class OwnerLookup {
 public:
  virtual ~OwnerLookup() = default;
  virtual const OwnerInfo* find_owner(std::string_view uid) const = 0;
};

// The workload of a pod with controller reference `controller` (null: none)
// and the given pod-template-hash label (null: none).
Workload derive_workload(std::string_view pod_name, const OwnerRef* controller,
                         const std::string* pod_template_hash, const OwnerLookup* owners);

inline Workload derive_workload(const Pod& pod, const OwnerLookup* owners) {
  return derive_workload(pod.meta.name, pod.meta.controller(), pod.meta.label("pod-template-hash"),
                         owners);
}

// "hello-28512345" -> "hello" when the suffix reads as the minutes since the
// epoch of a time between 2014 and 2160 (how the CronJob controller names
// its Jobs); empty otherwise.
std::string_view cronjob_from_job_name(std::string_view job_name);

}  // namespace ebpfc::kube
