// guc.h - the extension's configuration parameters (ebpf_capture.*).
#pragma once

namespace ebpfc::pg {

extern char* g_database;                    // postmaster: the database holding the tables
extern int g_max_captures;                  // postmaster: capture slots in shared memory
extern int g_idle_timeout_ms;               // sighup: an open connection silent this long ends
extern int g_flush_interval_ms;             // sighup: oldest span waits at most this long
extern int g_open_connections_interval_ms;  // sighup: open_connections rewritten this often; 0 off
extern int g_batch_size;                    // sighup: spans per insert transaction
extern int g_max_pending_memory_kb;         // sighup: backlog bound (spans waiting), in kB
extern bool g_direct_insert;              // sighup: write spans through the table AM when possible
extern bool g_bridge_ports;               // sighup (next start): on a bridge, capture at its ports
extern bool g_promiscuous;                // sighup (next start): join the interface promiscuously
extern int g_flow_table_size;             // sighup (next start): entries in the kernel flows map
extern int g_ring_buffer_kb;              // sighup (next start): ring buffer size
extern bool g_http;                       // sighup (next start): parse HTTP/1.x exchanges
extern int g_max_http_memory_kb;          // sighup (next start): HTTP connection pool, in kB
extern int g_http_query;                  // sighup: HttpQueryMode of targets' query strings
extern bool g_postgresql;                 // sighup (next start): parse PostgreSQL's wire protocol
extern int g_max_postgresql_connections;  // sighup (next start): PostgreSQL connections at once
extern bool g_postgresql_raw_queries;     // sighup: db.query.text as sent, literals and all
extern bool g_redis;                      // sighup (next start): parse Redis's protocol (RESP)
extern int g_max_redis_connections;       // sighup (next start): Redis connections at once
extern bool g_redis_key_names;            // sighup: db.query.text with the key's name

// Storage (the launcher keeps it; see sql/ebpf_capture--0.1--0.2.sql).
extern int g_partition_interval_min;         // sighup: time covered by one spans partition
extern int g_retention_min;                  // sighup: spans older than this are dropped; 0 keep
extern int g_max_spans_size_mb;              // sighup: spans partitions together at most; 0 no cap
extern int g_rollup_partition_interval_min;  // sighup: time covered by one rollup partition
extern int g_rollup_retention_min;           // sighup: rollup older than this is dropped; 0 keep
extern char* g_min_free_disk;                // sighup: free space the data directory keeps
extern bool g_synchronous_commit;            // sighup: worker commits wait for the WAL flush

// The Kubernetes API the pod cache lists and watches.
extern char* g_kube_api_url;             // sighup: Kubernetes API URL ("" = in-cluster)
extern char* g_kube_token_file;          // sighup: bearer token file ("" = in-cluster)
extern char* g_kube_ca_file;             // sighup: CA bundle ("" = in-cluster)
extern bool g_kube_allow_insecure_http;  // sighup: accept an http:// API URL

// The hub (hub_worker.cpp) and the node side of it (hub_access.cpp).
extern char* g_hub_selector;          // sighup: label selector of the node databases' pods
extern char* g_hub_namespace;         // sighup: their namespace ("" = the hub pod's own, else all)
extern char* g_hub_user;              // sighup: the role the hub logs in to nodes as
extern char* g_hub_password_file;     // sighup: that role's password (a mounted Secret)
extern char* g_hub_database;          // sighup: the node databases' name (a pod's annotation wins)
extern int g_hub_probe_interval_ms;   // sighup: how often each node is asked whether it answers
extern int g_hub_connect_timeout_ms;  // sighup (new servers): connecting to a node
extern int g_hub_query_timeout_ms;    // sighup (new servers): a node's part of a query
extern char* g_hub_sslmode;           // sighup (new servers): libpq sslmode to the nodes
extern bool g_hub_access;             // sighup: on a node: keep the hub's role

// Defines the ebpf_capture.* parameters; the postmaster-level ones only while
// shared_preload_libraries is being processed.
void define_gucs(bool preloading);

// The free bytes ebpf_capture.min_free_disk asks for on a file system of
// `total` bytes (0: the guard is off).
unsigned long long min_free_disk_bytes(unsigned long long total);

}  // namespace ebpfc::pg
