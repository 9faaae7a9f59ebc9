-- ebpf_capture: the service map (issue 5). Extension SQL, meant to be appended
-- to the extension script; every object lives in @extschema@.
--
-- A node is who is at one end of a span:
--   namespace/workload      when the Kubernetes metadata names a workload
--   namespace/pod           else when it names a pod
--   node:<name>             else when the address is a node's (host network)
--   the address (host())    else: traffic with no Kubernetes identity
-- An edge is caller -> callee: src -> dst of the span (the client of a tcp
-- connection is the side that sent the SYN; of an http exchange, the side
-- that sent the request).
--
-- Edge and node statistics over a time window [window_start, window_end)
-- (spans by start_time; the interval forms end at now()):
--   http rows:  requests, errors (status ERROR: 5xx or no response), requests
--               per second over the whole window, error ratio, p50 and p95 of
--               end_time - start_time in milliseconds (linear interpolation,
--               percentile_cont);
--   tcp rows:   connections, connections that failed (status ERROR: reset or
--               unanswered SYN), payload bytes each way. An HTTP connection
--               has both its tcp row and its http rows, so an edge that
--               carries HTTP also shows the connections and bytes under it.
--
-- The functions return exactly the fields Grafana's Node Graph panel reads
-- (id, title, subtitle, mainstat, secondarystat, arc__*, and for edges
-- source/target), plus numeric detail__* fields whose names carry their
-- units; Grafana shows detail__* fields in the context menu of a node or an
-- edge. mainstat and secondarystat are text with their units in the value
-- (for example "12.5 req/s" and "p95 8.21 ms"), because one map holds both
-- HTTP and plain TCP edges whose headline numbers have different units.

-- The node id, title and subtitle of one end of a span. Plain SQL
-- expressions: the planner inlines them into the queries below.
CREATE FUNCTION @extschema@._service_map_node_id(
    namespace text, workload text, pod text, node text, addr inet)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN workload IS NOT NULL THEN coalesce(namespace, '') || '/' || workload
        WHEN pod IS NOT NULL THEN coalesce(namespace, '') || '/' || pod
        WHEN node IS NOT NULL THEN 'node:' || node
        ELSE pg_catalog.host(addr)
    END
$$;

CREATE FUNCTION @extschema@._service_map_node_title(
    workload text, pod text, node text, addr inet)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(workload, pod, node, pg_catalog.host(addr))
$$;

CREATE FUNCTION @extschema@._service_map_node_subtitle(
    namespace text, workload text, workload_kind text, pod text, node text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN workload IS NOT NULL
            THEN coalesce(namespace, '') || ' · ' || coalesce(workload_kind, 'workload')
        WHEN pod IS NOT NULL THEN coalesce(namespace, '') || ' · Pod'
        WHEN node IS NOT NULL THEN 'Node'
        ELSE 'address'
    END
$$;

-- A number for a label: about three significant digits, no trailing zeros.
CREATE FUNCTION @extschema@._service_map_num(x double precision)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN x IS NULL OR x = 'NaN'::float8 THEN NULL
        WHEN x = 0 THEN '0'
        ELSE pg_catalog.trim_scale(pg_catalog.round(x::numeric,
                 greatest(0, 2 - pg_catalog.floor(pg_catalog.log(abs(x)::numeric))::int)))::text
    END
$$;

-- The spans of a window, each with both ends' node identities and the
-- latency of http exchanges. Everything the map shows is an aggregate of this.
CREATE FUNCTION @extschema@._service_map_spans(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    src_id text, src_title text, src_subtitle text,
    dst_id text, dst_title text, dst_subtitle text,
    is_http boolean, is_error boolean, latency_ms double precision,
    bytes_sent bigint, bytes_received bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod,
                                            s.src_node, s.src_addr),
           @extschema@._service_map_node_title(s.src_workload, s.src_pod, s.src_node, s.src_addr),
           @extschema@._service_map_node_subtitle(s.src_namespace, s.src_workload,
                                                  s.src_workload_kind, s.src_pod, s.src_node),
           @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod,
                                            s.dst_node, s.dst_addr),
           @extschema@._service_map_node_title(s.dst_workload, s.dst_pod, s.dst_node, s.dst_addr),
           @extschema@._service_map_node_subtitle(s.dst_namespace, s.dst_workload,
                                                  s.dst_workload_kind, s.dst_pod, s.dst_node),
           s.protocol = 'http',
           s.status = 'ERROR',
           CASE WHEN s.protocol = 'http'
                THEN extract(epoch FROM s.end_time - s.start_time)::float8 * 1000 END,
           s.bytes_sent,
           s.bytes_received
    FROM @extschema@.spans s
    WHERE s.start_time >= window_start AND s.start_time < window_end
      AND s.protocol IN ('http', 'tcp')
$$;

-- Edges (caller -> callee) of the window [window_start, window_end).
CREATE FUNCTION @extschema@.service_map_edges(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    id text, source text, target text, mainstat text, secondarystat text,
    "detail__requests" bigint,
    "detail__errors" bigint,
    "detail__requests_per_s" double precision,
    "detail__error_ratio" double precision,
    "detail__p50_ms" double precision,
    "detail__p95_ms" double precision,
    "detail__connections" bigint,
    "detail__connection_errors" bigint,
    "detail__bytes_sent" bigint,
    "detail__bytes_received" bigint)
LANGUAGE sql STABLE AS $$
    WITH e AS (
        SELECT m.src_id, m.dst_id,
               count(*) FILTER (WHERE m.is_http) AS requests,
               count(*) FILTER (WHERE m.is_http AND m.is_error) AS errors,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY m.latency_ms)
                   FILTER (WHERE m.is_http) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m.latency_ms)
                   FILTER (WHERE m.is_http) AS p95,
               count(*) FILTER (WHERE NOT m.is_http) AS connections,
               count(*) FILTER (WHERE NOT m.is_http AND m.is_error) AS connection_errors,
               coalesce(sum(m.bytes_sent) FILTER (WHERE NOT m.is_http), 0)::bigint AS bytes_sent,
               coalesce(sum(m.bytes_received) FILTER (WHERE NOT m.is_http), 0)::bigint
                   AS bytes_received
        FROM @extschema@._service_map_spans(window_start, window_end) m
        GROUP BY m.src_id, m.dst_id
    ), w AS (
        SELECT greatest(extract(epoch FROM window_end - window_start)::float8, 1e-9) AS seconds
    )
    SELECT e.src_id || ' -> ' || e.dst_id,
           e.src_id,
           e.dst_id,
           CASE WHEN e.requests > 0
                THEN @extschema@._service_map_num(e.requests / w.seconds) || ' req/s, '
                     || @extschema@._service_map_num(100.0 * e.errors / e.requests) || '% errors'
                ELSE e.connections || ' conn'
                     || CASE WHEN e.connection_errors > 0
                             THEN ', ' || e.connection_errors || ' failed' ELSE '' END
           END,
           CASE WHEN e.requests > 0
                THEN 'p50 ' || @extschema@._service_map_num(e.p50) || ' ms, p95 '
                     || @extschema@._service_map_num(e.p95) || ' ms'
                ELSE pg_catalog.pg_size_pretty(e.bytes_sent) || ' sent, '
                     || pg_catalog.pg_size_pretty(e.bytes_received) || ' received'
           END,
           e.requests,
           e.errors,
           e.requests / w.seconds,
           CASE WHEN e.requests > 0 THEN e.errors::float8 / e.requests END,
           e.p50,
           e.p95,
           e.connections,
           e.connection_errors,
           e.bytes_sent,
           e.bytes_received
    FROM e CROSS JOIN w
    ORDER BY e.src_id, e.dst_id
$$;

CREATE FUNCTION @extschema@.service_map_edges(since interval DEFAULT '15 minutes')
RETURNS TABLE (
    id text, source text, target text, mainstat text, secondarystat text,
    "detail__requests" bigint,
    "detail__errors" bigint,
    "detail__requests_per_s" double precision,
    "detail__error_ratio" double precision,
    "detail__p50_ms" double precision,
    "detail__p95_ms" double precision,
    "detail__connections" bigint,
    "detail__connection_errors" bigint,
    "detail__bytes_sent" bigint,
    "detail__bytes_received" bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM @extschema@.service_map_edges(now() - since, now())
$$;

-- Nodes of the window [window_start, window_end). A node's statistics are
-- those of the traffic it serves (it is the callee): HTTP requests when it
-- served any, else TCP connections. A node that only calls others (a client)
-- shows its outgoing traffic instead, marked "out". The arcs are the
-- fractions of that traffic that succeeded and failed (they sum to 1).
CREATE FUNCTION @extschema@.service_map_nodes(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    id text, title text, subtitle text, mainstat text, secondarystat text,
    arc__success double precision, arc__errors double precision,
    "detail__requests_in" bigint,
    "detail__errors_in" bigint,
    "detail__requests_in_per_s" double precision,
    "detail__error_ratio_in" double precision,
    "detail__p50_ms_in" double precision,
    "detail__p95_ms_in" double precision,
    "detail__connections_in" bigint,
    "detail__connection_errors_in" bigint,
    "detail__requests_out" bigint,
    "detail__errors_out" bigint,
    "detail__connections_out" bigint,
    "detail__connection_errors_out" bigint,
    "detail__bytes_received" bigint,
    "detail__bytes_sent" bigint)
LANGUAGE sql STABLE AS $$
    WITH m AS MATERIALIZED (
        SELECT * FROM @extschema@._service_map_spans(window_start, window_end)
    ), i AS (
        SELECT m.dst_id AS id, min(m.dst_title) AS title, min(m.dst_subtitle) AS subtitle,
               count(*) FILTER (WHERE m.is_http) AS requests,
               count(*) FILTER (WHERE m.is_http AND m.is_error) AS errors,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY m.latency_ms)
                   FILTER (WHERE m.is_http) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY m.latency_ms)
                   FILTER (WHERE m.is_http) AS p95,
               count(*) FILTER (WHERE NOT m.is_http) AS connections,
               count(*) FILTER (WHERE NOT m.is_http AND m.is_error) AS connection_errors,
               -- payload bytes of the connections it served: received, sent
               coalesce(sum(m.bytes_sent) FILTER (WHERE NOT m.is_http), 0)::bigint AS bytes_rx,
               coalesce(sum(m.bytes_received) FILTER (WHERE NOT m.is_http), 0)::bigint AS bytes_tx
        FROM m GROUP BY m.dst_id
    ), o AS (
        SELECT m.src_id AS id, min(m.src_title) AS title, min(m.src_subtitle) AS subtitle,
               count(*) FILTER (WHERE m.is_http) AS requests,
               count(*) FILTER (WHERE m.is_http AND m.is_error) AS errors,
               count(*) FILTER (WHERE NOT m.is_http) AS connections,
               count(*) FILTER (WHERE NOT m.is_http AND m.is_error) AS connection_errors,
               -- payload bytes of the connections it opened: received, sent
               coalesce(sum(m.bytes_received) FILTER (WHERE NOT m.is_http), 0)::bigint AS bytes_rx,
               coalesce(sum(m.bytes_sent) FILTER (WHERE NOT m.is_http), 0)::bigint AS bytes_tx
        FROM m GROUP BY m.src_id
    ), w AS (
        SELECT greatest(extract(epoch FROM window_end - window_start)::float8, 1e-9) AS seconds
    ), n AS (
        SELECT coalesce(i.id, o.id) AS id,
               coalesce(i.title, o.title) AS title,
               coalesce(i.subtitle, o.subtitle) AS subtitle,
               coalesce(i.requests, 0) AS req_in, coalesce(i.errors, 0) AS err_in,
               i.p50, i.p95,
               coalesce(i.connections, 0) AS conn_in,
               coalesce(i.connection_errors, 0) AS conn_err_in,
               coalesce(i.bytes_rx, 0) + coalesce(o.bytes_rx, 0) AS bytes_rx,
               coalesce(i.bytes_tx, 0) + coalesce(o.bytes_tx, 0) AS bytes_tx,
               coalesce(o.requests, 0) AS req_out, coalesce(o.errors, 0) AS err_out,
               coalesce(o.connections, 0) AS conn_out,
               coalesce(o.connection_errors, 0) AS conn_err_out
        FROM i FULL JOIN o ON o.id = i.id
    ), r AS (
        -- the error ratio the arcs show: served HTTP, else served TCP, else
        -- outgoing HTTP, else outgoing TCP
        SELECT n.*,
               CASE WHEN n.req_in > 0 THEN n.err_in::float8 / n.req_in
                    WHEN n.conn_in > 0 THEN n.conn_err_in::float8 / n.conn_in
                    WHEN n.req_out > 0 THEN n.err_out::float8 / n.req_out
                    WHEN n.conn_out > 0 THEN n.conn_err_out::float8 / n.conn_out
                    ELSE 0 END AS err_ratio
        FROM n
    )
    SELECT r.id, r.title, r.subtitle,
           CASE WHEN r.req_in > 0
                    THEN @extschema@._service_map_num(r.req_in / w.seconds) || ' req/s'
                WHEN r.conn_in > 0 THEN r.conn_in || ' conn'
                WHEN r.req_out > 0
                    THEN @extschema@._service_map_num(r.req_out / w.seconds) || ' req/s out'
                ELSE r.conn_out || ' conn out'
           END,
           CASE WHEN r.req_in > 0
                    THEN 'p95 ' || @extschema@._service_map_num(r.p95) || ' ms'
                WHEN r.conn_in > 0 THEN pg_catalog.pg_size_pretty(r.bytes_rx) || ' received'
                WHEN r.req_out > 0
                    THEN @extschema@._service_map_num(100.0 * r.err_out / r.req_out) || '% errors'
                ELSE pg_catalog.pg_size_pretty(r.bytes_tx) || ' sent'
           END,
           1 - r.err_ratio,
           r.err_ratio,
           r.req_in, r.err_in, r.req_in / w.seconds,
           CASE WHEN r.req_in > 0 THEN r.err_in::float8 / r.req_in END,
           r.p50, r.p95,
           r.conn_in, r.conn_err_in,
           r.req_out, r.err_out, r.conn_out, r.conn_err_out,
           r.bytes_rx, r.bytes_tx
    FROM r CROSS JOIN w
    ORDER BY r.id
$$;

CREATE FUNCTION @extschema@.service_map_nodes(since interval DEFAULT '15 minutes')
RETURNS TABLE (
    id text, title text, subtitle text, mainstat text, secondarystat text,
    arc__success double precision, arc__errors double precision,
    "detail__requests_in" bigint,
    "detail__errors_in" bigint,
    "detail__requests_in_per_s" double precision,
    "detail__error_ratio_in" double precision,
    "detail__p50_ms_in" double precision,
    "detail__p95_ms_in" double precision,
    "detail__connections_in" bigint,
    "detail__connection_errors_in" bigint,
    "detail__requests_out" bigint,
    "detail__errors_out" bigint,
    "detail__connections_out" bigint,
    "detail__connection_errors_out" bigint,
    "detail__bytes_received" bigint,
    "detail__bytes_sent" bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM @extschema@.service_map_nodes(now() - since, now())
$$;

-- A DOT string literal: "..." with backslashes and double quotes escaped and
-- line breaks written as \n, so any name from the network stays one token
-- and two different names stay two different ids.
CREATE FUNCTION @extschema@._service_map_dot_quote(s text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '"' || pg_catalog.regexp_replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
                   s, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n'),
               E'[\\r\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]', ' ', 'g') || '"'
$$;

-- The same map as Graphviz DOT text: `dot -Tpng` draws it.
CREATE FUNCTION @extschema@.service_map_dot(window_start timestamptz, window_end timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'digraph service_map {' || E'\n'
        || '  graph [rankdir=LR, fontname="Helvetica", label='
        || @extschema@._service_map_dot_quote(
               'ebpf_capture service map, ' || pg_catalog.to_char(window_start AT TIME ZONE 'UTC',
                   'YYYY-MM-DD HH24:MI:SS') || ' to '
               || pg_catalog.to_char(window_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               || ' UTC')
        || ', labelloc=t];' || E'\n'
        || '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fa", fontname="Helvetica"];'
        || E'\n'
        || '  edge [fontname="Helvetica", fontsize=10];' || E'\n'
        || coalesce((
               SELECT string_agg('  ' || @extschema@._service_map_dot_quote(n.id)
                                 || ' [label=' || @extschema@._service_map_dot_quote(
                                        n.title || E'\n' || n.subtitle || E'\n' || n.mainstat
                                        || ', ' || n.secondarystat)
                                 || CASE WHEN n.arc__errors > 0
                                         THEN ', color="#d62728", penwidth=2' ELSE '' END
                                 || '];', E'\n' ORDER BY n.id) || E'\n'
               FROM @extschema@.service_map_nodes(window_start, window_end) n), '')
        || coalesce((
               SELECT string_agg('  ' || @extschema@._service_map_dot_quote(e.source) || ' -> '
                                 || @extschema@._service_map_dot_quote(e.target)
                                 || ' [label=' || @extschema@._service_map_dot_quote(
                                        e.mainstat || E'\n' || e.secondarystat)
                                 || CASE WHEN coalesce(e.detail__error_ratio, 0) > 0
                                           OR e.detail__connection_errors > 0
                                         THEN ', color="#d62728", fontcolor="#d62728"' ELSE '' END
                                 || '];', E'\n' ORDER BY e.source, e.target) || E'\n'
               FROM @extschema@.service_map_edges(window_start, window_end) e), '')
        || '}' || E'\n'
$$;

CREATE FUNCTION @extschema@.service_map_dot(since interval DEFAULT '15 minutes')
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT @extschema@.service_map_dot(now() - since, now())
$$;

REVOKE ALL ON FUNCTION @extschema@._service_map_node_id(text, text, text, text, inet) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_node_title(text, text, text, inet) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_node_subtitle(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_num(double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_spans(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_dot_quote(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_edges(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_edges(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_nodes(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_nodes(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_dot(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_dot(interval) FROM PUBLIC;
