# sources.mk - the extension's sources, by part: one list for the
# extension's build (Makefile), the unit tests' (tests/unit) and the
# fuzzers' (tests/fuzz). Follow the data: kernel (bpf/) -> capture -> core
# (flows, HTTP, spans, the pipeline) -> kube (who is behind an address) ->
# export (OTLP) -> pg (the PostgreSQL shell: worker loop, writes, SQL functions, settings).

# PostgreSQL-free, libbpf-free, libcurl-free: unit-tested.
CORE_NAMES := wall_clock span_ids flow_span span_attributes text_sanitize \
	http_exchange http_traceparent trace_links http_message http_reorder http_stream http_span http_tracker \
	pg_query pg_wire redis_wire \
	edge_rollup span_batch chunk_resolve disk_guard fault
CAPTURE_PLAIN_NAMES := link_messages capture_checks
KUBE_PLAIN_NAMES := line_splitter kube_time ip_addr kube_objects workload string_pool pod_cache \
	backoff kube_config token_file reflector kube_status hub_discovery
# The OTLP exporter: encoding and the endpoint's answers (plain), and its
# libcurl transport.
EXPORT_PLAIN_NAMES := otlp_writer otlp_encode otlp_policy
# Need libbpf, netlink sockets or libcurl: exercised by the integration tests.
CAPTURE_SYSTEM_NAMES := packet_capture link_watch
KUBE_CURL_NAMES := curl_driver api_client kube_client
EXPORT_CURL_NAMES := otlp_client
# The PostgreSQL shell.
PG_NAMES := module guc shmem supervisor launcher storage_maintenance worker span_store \
	direct_insert jsonb_attributes sql_api catalog otlp_export hub_worker hub_access slot_links
