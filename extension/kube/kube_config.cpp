#include "kube/kube_config.h"

#include <cstdlib>

namespace ebpfc::kube {

namespace {

bool valid_port(const std::string& p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p)
    if (c < '0' || c > '9') return false;
  const long v = std::strtol(p.c_str(), nullptr, 10);
  return v > 0 && v < 65536;
}

bool valid_host(const std::string& h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '%';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

KubeConfig resolve_kube_config(const KubeSettings& settings, const EnvLookup& env,
                               const std::string& sa_dir) {
  KubeConfig c;
  const char* host_env = env ? env("KUBERNETES_SERVICE_HOST") : nullptr;
  const char* port_env = env ? env("KUBERNETES_SERVICE_PORT") : nullptr;
  const std::string host = host_env ? host_env : "";
  const std::string port = port_env ? port_env : "";
  const bool in_cluster = !host.empty() && !port.empty();

  std::string url = settings.api_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  bool from_settings = !url.empty();
  if (url.empty() && in_cluster) {
    if (!valid_host(host) || !valid_port(port)) {
      c.disabled_reason = "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not a host and port";
      return c;
    }
    const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
    url = "https://" + (v6 ? "[" + host + "]" : host) + ":" + port;
  }
  if (url.empty()) {
    c.disabled_reason =
        "no Kubernetes API: ebpf_capture.kube_api_url is not set and KUBERNETES_SERVICE_HOST is "
        "not in the environment";
    return c;
  }
  if (url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0) {
    c.disabled_reason = "ebpf_capture.kube_api_url must start with https:// or http://";
    return c;
  }
  if (url.rfind("http://", 0) == 0 && !settings.allow_http) {
    c.disabled_reason =
        "ebpf_capture.kube_api_url is http://: the bearer token would cross the network in clear "
        "text; use https://, or set ebpf_capture.kube_allow_insecure_http = on";
    return c;
  }
  c.api_url = url;
  c.token_file = settings.token_file;
  c.ca_file = settings.ca_file;
  bool used_cluster = !from_settings;
  if (in_cluster) {
    if (c.token_file.empty()) {
      c.token_file = sa_dir + "/token";
      used_cluster = true;
    }
    if (c.ca_file.empty()) {
      c.ca_file = sa_dir + "/ca.crt";
      used_cluster = true;
    }
  }
  c.source = from_settings ? (used_cluster ? "settings+in-cluster" : "settings") : "in-cluster";
  c.enabled = true;
  return c;
}

KubeConfig resolve_kube_config(const KubeSettings& settings) {
  return resolve_kube_config(settings,
                             [](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace ebpfc::kube
