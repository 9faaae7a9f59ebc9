#include "pg/guc.h"

#include <cstring>
#include <string>

#include "core/disk_guard.h"
#include "core/fault.h"
#include "core/http_span.h"
#include "pg/otlp_export.h"
#include "pg/pg_headers.h"
#include "pg/shmem.h"

namespace ebpfc::pg {

char* g_database = nullptr;
int g_max_captures = 4;
int g_idle_timeout_ms = 60000;
int g_flush_interval_ms = 200;
int g_open_connections_interval_ms = 10000;
int g_batch_size = 2000;
int g_max_pending_memory_kb = 64 * 1024;
bool g_direct_insert = true;
bool g_bridge_ports = true;
bool g_promiscuous = true;
int g_flow_table_size = 65536;
int g_ring_buffer_kb = 16384;
bool g_http = true;
int g_max_http_memory_kb = 64 * 1024;
int g_http_query = static_cast<int>(HttpQueryMode::Redact);
bool g_postgresql = true;
int g_max_postgresql_connections = 1024;
bool g_postgresql_raw_queries = false;
bool g_redis = true;
int g_max_redis_connections = 1024;
bool g_redis_key_names = false;

static const struct config_enum_entry kHttpQueryModes[] = {
    {"keep", static_cast<int>(HttpQueryMode::Keep), false},
    {"redact", static_cast<int>(HttpQueryMode::Redact), false},
    {"drop", static_cast<int>(HttpQueryMode::Drop), false},
    {nullptr, 0, false}};
char* g_kube_api_url = nullptr;
char* g_kube_token_file = nullptr;
char* g_kube_ca_file = nullptr;
bool g_kube_allow_insecure_http = false;
int g_partition_interval_min = 60;
int g_retention_min = 24 * 60;
int g_max_spans_size_mb = 10 * 1024;
int g_rollup_partition_interval_min = 24 * 60;
int g_rollup_retention_min = 30 * 24 * 60;
char* g_min_free_disk = nullptr;
bool g_synchronous_commit = false;
char* g_fault_injection = nullptr;
char* g_hub_selector = nullptr;
char* g_hub_namespace = nullptr;
char* g_hub_user = nullptr;
char* g_hub_password_file = nullptr;
char* g_hub_database = nullptr;
int g_hub_probe_interval_ms = 5000;
int g_hub_connect_timeout_ms = 3000;
int g_hub_query_timeout_ms = 10000;
char* g_hub_sslmode = nullptr;
bool g_hub_access = false;

static void assign_fault_injection(const char* newval, void* extra) {
  (void)extra;
  fault::arm(newval);
}

static bool check_min_free_disk(char** newval, void** extra, GucSource source) {
  (void)extra;
  (void)source;
  MinFreeDisk rule;
  std::string error;
  bool ok = false;
  try {
    ok = parse_min_free_disk(*newval ? *newval : "", &rule, &error);
  } catch (const std::exception&) {
    error = "out of memory";
  }
  if (!ok) GUC_check_errdetail("ebpf_capture.min_free_disk: %s.", error.c_str());
  return ok;
}

unsigned long long min_free_disk_bytes(unsigned long long total) {
  MinFreeDisk rule;
  std::string error;
  try {
    if (!parse_min_free_disk(g_min_free_disk ? g_min_free_disk : "", &rule, &error)) return 0;
  } catch (const std::exception&) {
    return 0;
  }
  return min_free_bytes(rule, total);
}

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
  DefineCustomIntVariable(
      "ebpf_capture.max_captures", "Maximum number of interfaces captured at once.", nullptr,
      &g_max_captures, 4, 1, kMaxCaptures, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
}

static void define_storage_gucs() {
  DefineCustomIntVariable(
      "ebpf_capture.partition_interval", "Time covered by one partition of the spans table.",
      "New partitions get the new interval; existing ones keep theirs.", &g_partition_interval_min,
      60, 1, 7 * 24 * 60, PGC_SIGHUP, GUC_UNIT_MIN, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.retention", "Spans are kept this long after they start; older partitions go.",
      "0 keeps them until ebpf_capture.max_spans_size or the disk guard removes them.",
      &g_retention_min, 24 * 60, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MIN, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.max_spans_size",
      "Largest size of the spans partitions together; the oldest partitions go beyond it.",
      "0: no cap.", &g_max_spans_size_mb, 10 * 1024, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MB, nullptr,
      nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.rollup_partition_interval",
                          "Time covered by one partition of the service map rollup.", nullptr,
                          &g_rollup_partition_interval_min, 24 * 60, 1, 31 * 24 * 60, PGC_SIGHUP,
                          GUC_UNIT_MIN, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.rollup_retention",
                          "The service map rollup is kept this long; older partitions go.",
                          "0 keeps it.", &g_rollup_retention_min, 30 * 24 * 60, 0, INT_MAX,
                          PGC_SIGHUP, GUC_UNIT_MIN, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.min_free_disk",
      "Free space the data directory's file system keeps: below it the oldest spans partitions "
      "are dropped, then spans are no longer written until space returns.",
      "A size (2GB), a share of the file system (5%), or both (5%,2GB: the smaller); 0 turns "
      "the guard off.",
      &g_min_free_disk, "5%,2GB", PGC_SIGHUP, 0, check_min_free_disk, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.synchronous_commit",
      "Make the capture worker's commits wait for their WAL to reach the disk.",
      "Off (the default): an operating system crash may lose the last few hundred milliseconds "
      "of spans, never corrupt them.",
      &g_synchronous_commit, false, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
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
      "ebpf_capture.max_pending_memory",
      "Memory the spans waiting to be written may take; beyond it they are dropped and counted.",
      nullptr, &g_max_pending_memory_kb, 64 * 1024, 1024, 4 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_KB,
      nullptr, nullptr, nullptr);
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
  DefineCustomIntVariable(
      "ebpf_capture.max_http_memory",
      "Memory for the HTTP connections a capture follows at once (about 31 kB each).",
      "A connection beyond it is not parsed, and counted in http_bound_hits.",
      &g_max_http_memory_kb, 64 * 1024, 512, 4 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_KB, nullptr,
      nullptr, nullptr);
  DefineCustomEnumVariable(
      "ebpf_capture.http_query",
      "What http_target keeps of a request's query string: keep, redact (each value "
      "replaced by REDACTED, the keys kept) or drop.",
      "Query strings carry tokens and signatures.", &g_http_query,
      static_cast<int>(HttpQueryMode::Redact), kHttpQueryModes, PGC_SIGHUP, 0, nullptr, nullptr,
      nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.postgresql",
      "Parse PostgreSQL's wire protocol and write one span per query or Execute.", nullptr,
      &g_postgresql, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.max_postgresql_connections",
                          "PostgreSQL connections followed at once per capture.", nullptr,
                          &g_max_postgresql_connections, 1024, 16, 1000000, PGC_SIGHUP, 0, nullptr,
                          nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.postgresql_raw_queries",
      "Store db.query.text as sent, literals included (off: literals become ?).",
      "Literals in SQL carry personal data and secrets.", &g_postgresql_raw_queries, false,
      PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("ebpf_capture.redis",
                           "Parse Redis's protocol (RESP) and write one span per command.", nullptr,
                           &g_redis, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.max_redis_connections",
                          "Redis connections followed at once per capture.", nullptr,
                          &g_max_redis_connections, 1024, 16, 1000000, PGC_SIGHUP, 0, nullptr,
                          nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.redis_key_names",
      "Store the key's name in db.query.text of Redis spans (off: the command name only).",
      "Key names can carry user ids and other personal data; values are never stored.",
      &g_redis_key_names, false, PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_api_url",
      "Kubernetes API server URL; empty: KUBERNETES_SERVICE_HOST/PORT (in a pod).", nullptr,
      &g_kube_api_url, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_token_file",
      "Bearer token file for the Kubernetes API; empty: the service account's.", nullptr,
      &g_kube_token_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.kube_ca_file",
      "CA bundle that signs the Kubernetes API's certificate; empty: the service account's.",
      nullptr, &g_kube_ca_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.kube_allow_insecure_http",
      "Accept an http:// Kubernetes API URL (the bearer token then crosses the network in "
      "clear text).",
      nullptr, &g_kube_allow_insecure_http, false, PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr,
      nullptr);
  DefineCustomIntVariable("ebpf_capture.ring_buffer_size",
                          "Size of the kernel-to-worker ring buffer (power of two).", nullptr,
                          &g_ring_buffer_kb, 16384, 64, 1048576, PGC_SIGHUP, GUC_UNIT_KB,
                          check_ring_buffer_kb, nullptr, nullptr);
}

static bool check_hub_sslmode(char** newval, void** extra, GucSource source) {
  (void)extra;
  (void)source;
  static const char* const kModes[] = {"disable", "allow",     "prefer",
                                       "require", "verify-ca", "verify-full"};
  for (const char* m : kModes)
    if (*newval != nullptr && strcmp(*newval, m) == 0) return true;
  GUC_check_errdetail(
      "ebpf_capture.hub_sslmode must be one of disable, allow, prefer, require, "
      "verify-ca, verify-full.");
  return false;
}

// A hub: where the node databases are and how to reach them (docs/hub.md).
static void define_hub_gucs() {
  DefineCustomStringVariable(
      "ebpf_capture.hub_selector",
      "Label selector of the node databases' pods a hub reads (Kubernetes syntax).", nullptr,
      &g_hub_selector, "app.kubernetes.io/name=ebpf-capture", PGC_SIGHUP, 0, nullptr, nullptr,
      nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.hub_namespace", "Namespace of the node databases' pods a hub reads.",
      "Empty: the hub pod's own namespace (from its service account), or every namespace "
      "outside a pod.",
      &g_hub_namespace, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.hub_user",
      "The role a hub logs in to the node databases as (on a node: the role kept for it).", nullptr,
      &g_hub_user, "ebpf_capture_hub", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.hub_password_file",
      "File holding the password of ebpf_capture.hub_user (a mounted Kubernetes Secret).",
      "Re-read every minute and on reload.", &g_hub_password_file, "", PGC_SIGHUP,
      GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.hub_database",
      "Database a hub reads on each node (a pod's annotation ebpf-capture.io/database wins).",
      nullptr, &g_hub_database, "postgres", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.hub_probe_interval",
                          "How often a hub asks each node database whether it answers.", nullptr,
                          &g_hub_probe_interval_ms, 5000, 100, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
                          nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.hub_connect_timeout",
                          "Longest a hub waits to connect to a node database (at least 2 s).",
                          "Applies to nodes found after a change.", &g_hub_connect_timeout_ms, 3000,
                          1000, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.hub_query_timeout",
      "Longest a node database's part of a hub query may take; a node silent this long is "
      "left out of the answer.",
      "Applies to nodes found after a change.", &g_hub_query_timeout_ms, 10000, 500, 3600 * 1000,
      PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomStringVariable("ebpf_capture.hub_sslmode",
                             "libpq sslmode of a hub's connections to the node databases.",
                             "Applies to nodes found after a change.", &g_hub_sslmode, "prefer",
                             PGC_SIGHUP, 0, check_hub_sslmode, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.hub_access",
      "On a node: keep the role ebpf_capture.hub_user able to log in with the password in "
      "ebpf_capture.hub_password_file and read the spans and the service map rollup.",
      "Off: the role, if this server made it, can no longer log in.", &g_hub_access, false,
      PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
}

// For the tests only: names a fault point (core/fault.h) that then throws
// std::bad_alloc whenever it is reached. Hidden from SHOW ALL and the sample
// configuration.
static void define_test_gucs() {
  DefineCustomStringVariable("ebpf_capture.fault_injection",
                             "Test only: the fault point that throws std::bad_alloc.", nullptr,
                             &g_fault_injection, "", PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
                             nullptr, assign_fault_injection, nullptr);
}

void define_gucs(bool preloading) {
  if (preloading) define_postmaster_gucs();
  define_test_gucs();
  define_reloadable_gucs();
  define_storage_gucs();
  define_trace_gucs();
  define_hub_gucs();
  MarkGUCPrefixReserved("ebpf_capture");
}

}  // namespace ebpfc::pg
