// kube_config.h - where the Kubernetes API is and how to authenticate to
// it.
//
// The settings (the GUCs ebpf_capture.kube_api_url, kube_token_file,
// kube_ca_file) win, each on its own; what they leave empty comes from the
// in-cluster configuration when the process runs in a pod:
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (an IPv6 host is
// bracketed), the service account's token and ca.crt under
// /var/run/secrets/kubernetes.io/serviceaccount/. With neither there is no
// API: metadata is disabled, and `disabled_reason` says why. An http:// URL
// would send the bearer token in clear text: it is refused unless the
// settings allow it explicitly.
#pragma once

#include <functional>
#include <string>

namespace ebpfc::kube {

constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubeSettings {
  std::string api_url;      // "" = not set
  std::string token_file;   // "" = not set
  std::string ca_file;      // "" = not set
  bool allow_http = false;  // an http:// URL is refused unless this is set
};

struct KubeConfig {
  bool enabled = false;
  std::string api_url;      // "https://10.96.0.1:443", no trailing "/"
  std::string token_file;   // "" = send no token
  std::string ca_file;      // "" = the system's CA certificates
  const char* source = "";  // "settings", "in-cluster" or "settings+in-cluster"
  std::string disabled_reason;
};

using EnvLookup = std::function<const char*(const char*)>;

KubeConfig resolve_kube_config(const KubeSettings& settings, const EnvLookup& env,
                               const std::string& service_account_dir = kServiceAccountDir);
// With the process environment.
KubeConfig resolve_kube_config(const KubeSettings& settings);

}  // namespace ebpfc::kube
