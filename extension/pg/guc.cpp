#include "pg/guc.h"

#include "pg/pg_headers.h"

namespace ebpfc::pg {

char* g_database = nullptr;
int g_max_captures = 4;
int g_idle_timeout_ms = 60000;
int g_flush_interval_ms = 200;
int g_open_connections_interval_ms = 10000;
int g_batch_size = 2000;
int g_max_pending_spans = 200000;
bool g_direct_insert = true;
bool g_bridge_ports = true;
bool g_promiscuous = true;
int g_flow_table_size = 65536;
int g_ring_buffer_kb = 16384;
bool g_http = true;
int g_max_http_connections = 2048;
bool g_http_strip_query = false;
char* g_kube_api_url = nullptr;
char* g_kube_token_file = nullptr;
char* g_kube_ca_file = nullptr;

static bool check_ring_buffer_kb(int* newval, void** extra, GucSource source) {
  (void)extra;
  (void)source;
  const int v = *newval;
  if ((v & (v - 1)) != 0) {
    GUC_check_errdetail("ebpf_capture.ring_buffer_size must be a power of two.");
    return false;
  }
  return true;
}

// PostgreSQL refuses to define PGC_POSTMASTER variables after startup (a FATAL
// error): loaded by CREATE EXTENSION alone, only the reloadable ones exist.
static void define_postmaster_gucs() {
  DefineCustomStringVariable(
      "ebpf_capture.database", "Database that holds the ebpf_capture tables and runs its workers.",
      nullptr, &g_database, "postgres", PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.max_captures",
                          "Maximum number of interfaces captured at once.", nullptr,
                          &g_max_captures, 4, 1, 64, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
}

static void define_reloadable_gucs() {
  DefineCustomIntVariable("ebpf_capture.idle_timeout",
                          "An open connection with no packet for this long is written as a span.",
                          nullptr, &g_idle_timeout_ms, 60000, 1000, 24 * 3600 * 1000, PGC_SIGHUP,
                          GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.flush_interval",
                          "Longest time a finished span waits before it is inserted.", nullptr,
                          &g_flush_interval_ms, 200, 10, 60000, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.open_connections_interval",
      "How often the open_connections table is rewritten with the connections open now.",
      "0 turns the report off (and empties the capture's rows).", &g_open_connections_interval_ms,
      10000, 0, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.batch_size", "Spans inserted per transaction.", nullptr,
                          &g_batch_size, 2000, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.max_pending_spans",
      "Spans kept in memory while inserts fail; beyond this they are dropped and counted.", nullptr,
      &g_max_pending_spans, 200000, 1000, 10000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.direct_insert",
      "Write spans straight into the spans table, as COPY does, while it has no triggers, rules, "
      "partitions or other features that need a full INSERT.",
      nullptr, &g_direct_insert, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.bridge_ports",
      "On a bridge, capture where frames enter it: at each of its ports, followed as they come "
      "and go.",
      "Off: one socket on the bridge device, which must then be promiscuous to see the frames "
      "it forwards between its ports.",
      &g_bridge_ports, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.promiscuous",
      "Put the captured interface in promiscuous mode (when not capturing at bridge ports).",
      nullptr, &g_promiscuous, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.flow_table_size", "Connections the kernel tracks at once per capture.", nullptr,
      &g_flow_table_size, 65536, 1024, 4194304, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("ebpf_capture.http",
                           "Parse HTTP/1.x exchanges and write one span per exchange.", nullptr,
                           &g_http, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.max_http_connections",
                          "HTTP connections followed at once per capture (about 31 kB each).",
                          nullptr, &g_max_http_connections, 2048, 16, 1000000, PGC_SIGHUP, 0,
                          nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("ebpf_capture.http_strip_query",
                           "Store http_target without its query string.", nullptr,
                           &g_http_strip_query, false, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_api_url",
      "Kubernetes API server URL; empty: KUBERNETES_SERVICE_HOST/PORT (in a pod).", nullptr,
      &g_kube_api_url, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_token_file",
      "Bearer token file for the Kubernetes API; empty: the service account's.", nullptr,
      &g_kube_token_file, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_ca_file",
      "CA bundle that signs the Kubernetes API's certificate; empty: the service account's.",
      nullptr, &g_kube_ca_file, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.ring_buffer_size",
                          "Size of the kernel-to-worker ring buffer (power of two).", nullptr,
                          &g_ring_buffer_kb, 16384, 64, 1048576, PGC_SIGHUP, GUC_UNIT_KB,
                          check_ring_buffer_kb, nullptr, nullptr);
}

void define_gucs(bool preloading) {
  if (preloading) define_postmaster_gucs();
  define_reloadable_gucs();
  MarkGUCPrefixReserved("ebpf_capture");
}

}  // namespace ebpfc::pg
