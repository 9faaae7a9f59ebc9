// kube_settings.h - where the Kubernetes API is, from the settings
// (ebpf_capture.kube_*), for the capture worker's client and the hub's.
#pragma once

#include "kube/kube_config.h"
#include "pg/guc.h"

namespace ebpfc::pg {

inline kube::KubeConfig kube_config() {
  kube::KubeSettings settings;
  settings.api_url = g_kube_api_url ? g_kube_api_url : "";
  settings.token_file = g_kube_token_file ? g_kube_token_file : "";
  settings.ca_file = g_kube_ca_file ? g_kube_ca_file : "";
  settings.allow_http = g_kube_allow_insecure_http;
  return kube::resolve_kube_config(settings);
}

}  // namespace ebpfc::pg
