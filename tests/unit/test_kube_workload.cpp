// Tests of extension/kube/workload.*: which workload a pod belongs to.
#include <gtest/gtest.h>

#include <map>

#include "kube/workload.h"
#include "test_kube_fixtures.h"

namespace {

using namespace ebpfc::kube;
using kube_fixtures::PodSpec;

struct Owners : OwnerLookup {
  std::map<std::string, OwnerInfo, std::less<>> by_uid;
  const OwnerInfo* find_owner(std::string_view uid) const override {
    auto it = by_uid.find(uid);
    return it == by_uid.end() ? nullptr : &it->second;
  }
  void add(const std::string& uid, const std::string& name, const std::string& kind,
           const std::string& ctrl_kind, const std::string& ctrl_name) {
    OwnerInfo o;
    o.uid = uid;
    o.name = name;
    o.kind = kind;
    o.controller_kind = ctrl_kind;
    o.controller_name = ctrl_name;
    by_uid[uid] = o;
  }
};

Workload of(const PodSpec& spec, const OwnerLookup* owners = nullptr) {
  return derive_workload(kube_fixtures::pod(spec), owners);
}

TEST(KubeWorkload, ReplicaSetThroughItsOwner) {
  Owners owners;
  owners.add("rs-uid-1", "web-7d4b9c6f5d", "ReplicaSet", "Deployment", "web-frontend");
  const Workload w = of(PodSpec(), &owners);
  EXPECT_EQ(w.name, "web-frontend");  // the owner's word, not the name's
  EXPECT_EQ(w.kind, "Deployment");
  EXPECT_EQ(w.source, WorkloadSource::Owner);
}

TEST(KubeWorkload, ReplicaSetByStrippingTheTemplateHash) {
  Workload w = of(PodSpec());
  EXPECT_EQ(w.name, "web");
  EXPECT_EQ(w.kind, "Deployment");
  EXPECT_EQ(w.source, WorkloadSource::Heuristic);
  // the hash is 1-10 characters, not always 10
  PodSpec s;
  s.owner_name = "api-server-5f";
  s.template_hash = "5f";
  w = of(s);
  EXPECT_EQ(w.name, "api-server");
  // no hash label, or a name that does not end in it: the ReplicaSet itself
  s.template_hash = "";
  w = of(s);
  EXPECT_EQ(w.name, "api-server-5f");
  EXPECT_EQ(w.kind, "ReplicaSet");
  s.template_hash = "zzz";
  EXPECT_EQ(of(s).kind, "ReplicaSet");
  s.owner_name = "5f";
  s.template_hash = "5f";
  EXPECT_EQ(of(s).name, "5f");  // nothing left to strip
}

TEST(KubeWorkload, BareReplicaSetKnownToHaveNoOwner) {
  Owners owners;
  owners.add("rs-uid-1", "web-7d4b9c6f5d", "ReplicaSet", "", "");
  const Workload w = of(PodSpec(), &owners);
  EXPECT_EQ(w.name, "web-7d4b9c6f5d");
  EXPECT_EQ(w.kind, "ReplicaSet");
}

TEST(KubeWorkload, JobsAndCronJobs) {
  PodSpec s;
  s.owner_kind = "Job";
  s.owner_name = "backup-28512345";
  s.template_hash = "";
  Workload w = of(s);
  EXPECT_EQ(w.name, "backup");
  EXPECT_EQ(w.kind, "CronJob");
  EXPECT_EQ(w.source, WorkloadSource::Heuristic);
  // a Job named like a date, a version or with a short number: itself
  for (const char* name :
       {"migrate-20240101", "load-12345678", "run-1", "x-999999999999", "nodash"}) {
    s.owner_name = name;
    w = of(s);
    EXPECT_EQ(w.name, name);
    EXPECT_EQ(w.kind, "Job");
  }
  // a known Job says whether a CronJob owns it
  Owners owners;
  owners.add(s.owner_uid, "nightly-28512345", "Job", "CronJob", "nightly");
  s.owner_name = "nightly-28512345";
  w = of(s, &owners);
  EXPECT_EQ(w.name, "nightly");
  EXPECT_EQ(w.source, WorkloadSource::Owner);
  owners.add(s.owner_uid, "nightly-28512345", "Job", "", "");
  EXPECT_EQ(of(s, &owners).kind, "Job");
  EXPECT_EQ(cronjob_from_job_name("hello-28512345"), "hello");
  EXPECT_EQ(cronjob_from_job_name("-28512345"), "");
}

TEST(KubeWorkload, OtherControllersAndBarePods) {
  PodSpec s;
  s.template_hash = "";
  for (const char* kind : {"StatefulSet", "DaemonSet", "Node", "Rollout"}) {
    s.owner_kind = kind;
    s.owner_name = "thing";
    const Workload w = of(s);
    EXPECT_EQ(w.kind, kind);
    EXPECT_EQ(w.name, "thing");
    EXPECT_EQ(w.source, WorkloadSource::Controller);
  }
  s.owner_kind = "";
  s.name = "debug-pod";
  const Workload w = of(s);
  EXPECT_EQ(w.name, "debug-pod");
  EXPECT_EQ(w.kind, "Pod");
  EXPECT_EQ(w.source, WorkloadSource::Self);
}

TEST(KubeWorkload, NonControllerOwnersAreIgnored) {
  auto j = kube_fixtures::pod_json(PodSpec());
  j["metadata"]["ownerReferences"][0]["controller"] = false;
  Pod pod;
  std::string error;
  ASSERT_TRUE(decode_pod(j, &pod, &error));
  EXPECT_EQ(derive_workload(pod, nullptr).kind, "Pod");
}

}  // namespace
