-- deploy/grafana/grants.sql - a read-only login for Grafana (run as a
-- superuser in the database that holds the extension; psql -v
-- password=... to set its password). The service map functions are plain SQL
-- run with the caller's rights, so the role needs SELECT on spans and on
-- the rollup they read, and EXECUTE on them and on their helpers; the time
-- series read the rollup through request_series, the tables of recent and
-- slowest requests and the trace view read spans through recent_requests,
-- slowest_requests, trace_view and trace_tree, the table of connections
-- open now reads open_connections through open_connection_edges. On a hub
-- (docs/hub.md) the same grants read every node: the functions that read
-- the nodes run with their owner's rights, the role needs nothing more.
\set ON_ERROR_STOP 1
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') AS create_role \gset
\if :create_role
CREATE ROLE grafana_reader LOGIN;
\endif
\if :{?password}
ALTER ROLE grafana_reader PASSWORD :'password';
\endif
GRANT SELECT ON spans, service_map_minutes, open_connections TO grafana_reader;
GRANT EXECUTE ON FUNCTION
    _service_map_node_id(text, text, text, text, inet),
    _service_map_node_title(text, text, text, inet),
    _service_map_node_subtitle(text, text, text, text, text),
    _service_map_num(double precision),
    _service_map_minute(timestamptz),
    _service_map_bucket(interval),
    _service_map_rollup_of_spans(timestamptz, timestamptz),
    _service_map_window(timestamptz, timestamptz),
    _service_map_window_local(timestamptz, timestamptz),
    _service_map_window_of(timestamptz, timestamptz),
    _service_map_client_node(text, text),
    _hub_active(),
    _hub_window(timestamptz, timestamptz),
    _hub_coverage(),
    _hub_coverage_id(),
    _hub_coverage_node(),
    _hub_trace(text),
    _hub_requests(timestamptz, timestamptz, text, text, int, boolean),
    _hub_request_series(timestamptz, timestamptz, interval),
    _hub_open_connection_edges(),
    trace_spans(text),
    _service_map_quantile(double precision, smallint[], bigint[]),
    _service_map_dot_quote(text),
    service_map_nodes(timestamptz, timestamptz),
    service_map_nodes(interval),
    service_map_edges(timestamptz, timestamptz),
    service_map_edges(interval),
    service_map_dot(timestamptz, timestamptz),
    service_map_dot(interval),
    trace_tree(text),
    _trace_tags(jsonb),
    trace_view(text),
    _requests(timestamptz, timestamptz, text, text, int, boolean),
    slowest_requests(timestamptz, timestamptz, text, text, int),
    recent_requests(timestamptz, timestamptz, text, text, int),
    _request_series_of(timestamptz, timestamptz, interval),
    request_series(timestamptz, timestamptz, interval),
    _open_connection_edges_of(),
    open_connection_edges(int)
TO grafana_reader;
