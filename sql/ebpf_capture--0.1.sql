-- ebpf_capture 0.1
\echo Use "CREATE EXTENSION ebpf_capture" to load this file. \quit

-- One row per interface ever captured: the desired state. The launcher makes
-- the running workers match it, and resumes enabled captures after a restart.
CREATE TABLE @extschema@.captures (
    interface    text PRIMARY KEY,
    enabled      boolean NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);

-- One row per observed connection (protocol 'tcp'); later protocols add rows
-- of their own. Column names are a contract. Ids are lowercase hex: the "C"
-- collation compares them bytewise, which is both right and cheapest for the
-- trace_id index.
CREATE TABLE @extschema@.spans (
    trace_id         text COLLATE "C" NOT NULL,
    span_id          text COLLATE "C" NOT NULL,
    parent_span_id   text COLLATE "C",
    name             text NOT NULL,
    kind             text NOT NULL,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    status           text NOT NULL,
    protocol         text NOT NULL,
    interface        text NOT NULL,
    src_addr         inet NOT NULL,
    dst_addr         inet NOT NULL,
    src_port         int NOT NULL,
    dst_port         int NOT NULL,
    bytes_sent       bigint NOT NULL,
    bytes_received   bigint NOT NULL,
    packets_sent     bigint,          -- tcp only
    packets_received bigint,          -- tcp only
    attributes       jsonb NOT NULL DEFAULT '{}',
    -- protocol 'http': one row per request/response exchange
    http_method      text,
    http_target      text,
    http_status      int,
    -- who is at each end, from the Kubernetes API (NULL: no known pod)
    src_pod           text,
    src_namespace     text,
    src_workload      text,
    src_workload_kind text,
    src_node          text,
    dst_pod           text,
    dst_namespace     text,
    dst_workload      text,
    dst_workload_kind text,
    dst_node          text
);
COMMENT ON TABLE @extschema@.spans IS
  'Observed network spans. tcp: one per connection, client = the side that sent the SYN, bytes_* are TCP payload bytes counted once each. http: one per request/response exchange, bytes_* are body bytes.';

-- Users ask for recent spans ("last 15 minutes") and for whole traces
-- (trace_id = '...'). The trace ids the capture makes start with the span's
-- start in milliseconds (then 80 random bits), so this b-tree takes each new
-- span at its right edge: about 1 us per row whether the table is empty or
-- holds 4 million rows (bench/insert_growth.sh). Ids taken from a request's
-- traceparent are the caller's and land anywhere.
CREATE INDEX spans_start_time_idx ON @extschema@.spans (start_time);
CREATE INDEX spans_trace_id_idx ON @extschema@.spans (trace_id);

-- The connections each capture sees open, as they stood at its last report
-- (every ebpf_capture.open_connections_interval, 10 s by default; reported_at
-- says when): what is talking to what right now, with the bytes and packets
-- so far. A connection's row in spans is written when it closes; until then
-- it is only here, so a pooled connection that lives for hours shows here
-- long before it has a span. Each worker replaces its interface's rows in
-- one transaction, and removes them when its capture stops; the table is
-- unlogged (after a crash it starts empty and the worker fills it again).
-- Columns mean what they mean in spans; last_seen is the newest packet.
CREATE UNLOGGED TABLE @extschema@.open_connections (
    interface         text NOT NULL,
    start_time        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    reported_at       timestamptz NOT NULL DEFAULT now(),
    src_addr          inet NOT NULL,
    dst_addr          inet NOT NULL,
    src_port          int NOT NULL,
    dst_port          int NOT NULL,
    bytes_sent        bigint NOT NULL,
    bytes_received    bigint NOT NULL,
    packets_sent      bigint NOT NULL,
    packets_received  bigint NOT NULL,
    attributes        jsonb NOT NULL,
    src_pod           text,
    src_namespace     text,
    src_workload      text,
    src_workload_kind text,
    src_node          text,
    dst_pod           text,
    dst_namespace     text,
    dst_workload      text,
    dst_workload_kind text,
    dst_node          text
);
CREATE INDEX open_connections_interface_idx ON @extschema@.open_connections (interface);

-- The pods the capture knows of, mirrored from its Kubernetes cache: join
-- spans to pod history by address and time, e.g.
--   SELECT ... FROM spans s JOIN pods p ON p.ips @> ARRAY[s.dst_addr]
--     AND s.start_time >= p.first_seen AND s.start_time < coalesce(p.deleted_at, 'infinity')
CREATE TABLE @extschema@.pods (
    uid           text PRIMARY KEY,
    namespace     text NOT NULL,
    name          text NOT NULL,
    ips           inet[] NOT NULL DEFAULT '{}',
    node          text,
    workload      text,
    workload_kind text,
    phase         text,
    host_network  boolean NOT NULL DEFAULT false,
    labels        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE INDEX pods_ips_idx ON @extschema@.pods USING gin (ips);
CREATE INDEX pods_workload_idx ON @extschema@.pods (namespace, workload);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.pods', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.captures', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.spans', '');

CREATE FUNCTION @extschema@._capture_check_start(interface text) RETURNS void
    LANGUAGE c CALLED ON NULL INPUT AS 'MODULE_PATHNAME', 'ebpf_capture_check_start';

CREATE FUNCTION @extschema@._capture_wake() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'ebpf_capture_wake';

CREATE FUNCTION @extschema@._capture_slots(
    OUT interface text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT packets bigint, OUT bytes bigint, OUT spans_written bigint, OUT spans_dropped bigint,
    OUT events_dropped bigint, OUT kernel_drops bigint, OUT flow_table_full bigint,
    OUT flows_tracked bigint, OUT payload_dropped bigint, OUT http_connections bigint,
    OUT http_bound_hits bigint, OUT pods_known bigint, OUT ports bigint,
    OUT port_errors bigint, OUT metadata_state text, OUT metadata_error text,
    OUT last_error text)
    RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'ebpf_capture_slots';

-- Starts capturing on an interface of the server's network namespace. Returns
-- at once; the capture runs in a background worker once this commits.
CREATE FUNCTION @extschema@.capture_start(interface text) RETURNS void
LANGUAGE plpgsql CALLED ON NULL INPUT AS $$
DECLARE
    running int;
    max_captures int := current_setting('ebpf_capture.max_captures', true)::int;
BEGIN
    PERFORM @extschema@._capture_check_start(interface);
    -- serialise starts and stops
    LOCK TABLE @extschema@.captures IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM @extschema@.captures c
               WHERE c.interface = capture_start.interface AND c.enabled) THEN
        RAISE EXCEPTION 'capture already running on interface "%"', interface
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Stop it first with SELECT capture_stop(%L).', interface);
    END IF;
    SELECT count(*) INTO running FROM @extschema@.captures c WHERE c.enabled;
    IF running >= max_captures THEN
        RAISE EXCEPTION 'too many captures: % are running (ebpf_capture.max_captures = %)',
            running, max_captures
            USING ERRCODE = 'configuration_limit_exceeded';
    END IF;
    INSERT INTO @extschema@.captures AS c (interface, enabled, requested_at)
    VALUES (interface, true, now())
    ON CONFLICT ON CONSTRAINT captures_pkey
    DO UPDATE SET enabled = true, requested_at = now(), stopped_at = NULL;
    PERFORM @extschema@._capture_wake();
END
$$;

-- Stops the capture on an interface for good (it is not resumed after a
-- restart). Returns false if no capture was running there.
CREATE FUNCTION @extschema@.capture_stop(interface text) RETURNS boolean
LANGUAGE plpgsql CALLED ON NULL INPUT AS $$
BEGIN
    LOCK TABLE @extschema@.captures IN SHARE ROW EXCLUSIVE MODE;
    UPDATE @extschema@.captures c SET enabled = false, stopped_at = now()
    WHERE c.interface = capture_stop.interface AND c.enabled;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@._capture_wake();
    RETURN true;
END
$$;

-- One row per capture: what is asked (captures) joined with what runs
-- (shared memory).
CREATE FUNCTION @extschema@.capture_status(
    OUT interface text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT packets bigint, OUT bytes bigint, OUT spans_written bigint, OUT spans_dropped bigint,
    OUT events_dropped bigint, OUT kernel_drops bigint, OUT flow_table_full bigint,
    OUT flows_tracked bigint, OUT payload_dropped bigint, OUT http_connections bigint,
    OUT http_bound_hits bigint, OUT pods_known bigint, OUT ports bigint,
    OUT port_errors bigint, OUT metadata_state text, OUT metadata_error text,
    OUT last_error text)
RETURNS SETOF record LANGUAGE sql STABLE AS $$
    SELECT c.interface, s.pid,
           CASE
             WHEN c.enabled AND (s.state IS NULL OR s.state IN ('stopped', 'stopping')) THEN 'starting'
             WHEN c.enabled THEN s.state
             WHEN s.state IN ('starting', 'running', 'stopping') THEN 'stopping'
             ELSE 'stopped'
           END,
           s.started_at,
           coalesce(s.packets, 0), coalesce(s.bytes, 0), coalesce(s.spans_written, 0),
           coalesce(s.spans_dropped, 0), coalesce(s.events_dropped, 0),
           coalesce(s.kernel_drops, 0), coalesce(s.flow_table_full, 0),
           coalesce(s.flows_tracked, 0), coalesce(s.payload_dropped, 0),
           coalesce(s.http_connections, 0), coalesce(s.http_bound_hits, 0),
           coalesce(s.pods_known, 0), coalesce(s.ports, 0), coalesce(s.port_errors, 0),
           s.metadata_state, s.metadata_error, s.last_error
    FROM @extschema@.captures c
    LEFT JOIN @extschema@._capture_slots() s ON s.interface = c.interface
    ORDER BY c.interface
$$;

REVOKE ALL ON FUNCTION @extschema@._capture_check_start(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._capture_wake() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._capture_slots() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.capture_start(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.capture_stop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.capture_status() FROM PUBLIC;

-- ----------------------------------------------------------------------------
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
--               end_time - start_time in milliseconds (from the rollup's
--               quarter-octave latency histogram: within 19 % of the exact
--               value);
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

-- ---- the per-minute rollup ----
--
-- Reading the map from raw spans costs seconds on a large table (bench/
-- service_map_bench.sh), so the worker keeps this rollup in the transaction
-- that writes each batch of spans: one row per (minute of start_time,
-- caller, callee, bucket). Bucket 0 holds the edge's tcp rows (connections,
-- failed connections, payload bytes); buckets 1..112 the http rows whose
-- latency (end_time - start_time) falls in [2^((b-1)/4), 2^(b/4))
-- microseconds: quarter octaves from 1 us to ~48 min, the last bucket
-- open-ended. Counts and bytes are exact; percentiles read from the buckets
-- are within one bucket (19 %) of the exact value.
--
-- A late row (a keep-alive connection's tcp row is written when it closes,
-- with the start_time of its first packet, maybe an hour back) lands in its
-- own minute. Rows written into spans by anything but the worker are not in
-- the rollup until service_map_refresh() covers their minutes; so are rows
-- deleted from spans (delete the rollup's minutes with them, or refresh).
CREATE TABLE @extschema@.service_map_minutes (
    minute            timestamptz NOT NULL,
    src_id            text NOT NULL,
    dst_id            text NOT NULL,
    bucket            smallint NOT NULL CHECK (bucket BETWEEN 0 AND 112),
    src_title         text NOT NULL,
    src_subtitle      text NOT NULL,
    dst_title         text NOT NULL,
    dst_subtitle      text NOT NULL,
    spans             bigint NOT NULL,   -- http rows (bucket > 0) or tcp rows (bucket 0)
    errors            bigint NOT NULL,   -- of those, status ERROR
    bytes_sent        bigint NOT NULL,   -- tcp payload client -> server (bucket 0 only)
    bytes_received    bigint NOT NULL,
    PRIMARY KEY (minute, src_id, dst_id, bucket)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.service_map_minutes', '');

-- The minute a time falls in, independent of the session's time zone.
CREATE FUNCTION @extschema@._service_map_minute(t timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.date_bin('1 minute', t, '2000-01-01 00:00:00+00'::timestamptz)
$$;

-- The latency bucket of an http row. The worker computes the same in C++
-- (extension/core/edge_rollup.cpp) with the same float8 operations on the
-- exact number of microseconds.
CREATE FUNCTION @extschema@._service_map_bucket(latency interval)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(112::float8, greatest(1::float8, 1::float8 + pg_catalog.floor(
               4::float8 * pg_catalog.ln(greatest(
                   (extract(epoch FROM latency) * 1000000)::float8, 1::float8))
               / 0.6931471805599453::float8)))::smallint
$$;

-- Rollup rows of the spans that started in [window_start, window_end), read
-- from the spans table.
CREATE FUNCTION @extschema@._service_map_rollup_of_spans(
    window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    minute timestamptz, src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT @extschema@._service_map_minute(s.start_time),
           @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod,
                                            s.src_node, s.src_addr),
           @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod,
                                            s.dst_node, s.dst_addr),
           CASE WHEN s.protocol = 'http'
                THEN @extschema@._service_map_bucket(s.end_time - s.start_time)
                ELSE 0::smallint END,
           min(@extschema@._service_map_node_title(s.src_workload, s.src_pod, s.src_node,
                                                   s.src_addr)),
           min(@extschema@._service_map_node_subtitle(s.src_namespace, s.src_workload,
                                                      s.src_workload_kind, s.src_pod,
                                                      s.src_node)),
           min(@extschema@._service_map_node_title(s.dst_workload, s.dst_pod, s.dst_node,
                                                   s.dst_addr)),
           min(@extschema@._service_map_node_subtitle(s.dst_namespace, s.dst_workload,
                                                      s.dst_workload_kind, s.dst_pod,
                                                      s.dst_node)),
           count(*),
           count(*) FILTER (WHERE s.status = 'ERROR'),
           coalesce(sum(s.bytes_sent) FILTER (WHERE s.protocol = 'tcp'), 0)::bigint,
           coalesce(sum(s.bytes_received) FILTER (WHERE s.protocol = 'tcp'), 0)::bigint
    FROM @extschema@.spans s
    WHERE s.start_time >= window_start AND s.start_time < window_end
      AND s.protocol IN ('http', 'tcp')
    GROUP BY 1, 2, 3, 4
$$;

-- Recomputes the rollup of the whole minutes that [window_start, window_end)
-- touches from the spans table: after rows were written into spans by
-- anything but the worker, or deleted. Returns the number of rollup rows
-- written. Holds a lock that makes the worker's next batch wait until it
-- commits, so no batch is counted twice or lost.
CREATE FUNCTION @extschema@.service_map_refresh(window_start timestamptz, window_end timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first_minute timestamptz;
    end_minute timestamptz;
    written bigint;
BEGIN
    IF window_start IS NULL OR window_end IS NULL OR window_end < window_start
       OR NOT pg_catalog.isfinite(window_start) OR NOT pg_catalog.isfinite(window_end) THEN
        RAISE EXCEPTION 'service_map_refresh needs a finite window with window_start <= window_end'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    first_minute := @extschema@._service_map_minute(window_start);
    end_minute := @extschema@._service_map_minute(window_end);
    IF end_minute < window_end THEN
        end_minute := end_minute + interval '1 minute';
    END IF;
    LOCK TABLE @extschema@.service_map_minutes IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM @extschema@.service_map_minutes m
        WHERE m.minute >= first_minute AND m.minute < end_minute;
    INSERT INTO @extschema@.service_map_minutes
        SELECT * FROM @extschema@._service_map_rollup_of_spans(first_minute, end_minute);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- The rollup rows of the window [window_start, window_end), summed over
-- minutes: the rollup table for the whole minutes inside the window, the
-- spans table for the partial minutes at its ends. Counts are exact for
-- any window.
CREATE FUNCTION @extschema@._service_map_window(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        -- [a, b): the whole minutes inside the window (empty when a >= b)
        SELECT @extschema@._service_map_minute(window_start - interval '1 microsecond')
                   + interval '1 minute' AS a,
               @extschema@._service_map_minute(window_end) AS b
    ), parts AS (
        SELECT m.src_id, m.dst_id, m.bucket, m.src_title, m.src_subtitle, m.dst_title,
               m.dst_subtitle, m.spans, m.errors, m.bytes_sent, m.bytes_received
        FROM bounds, @extschema@.service_map_minutes m
        WHERE bounds.a < bounds.b AND m.minute >= bounds.a AND m.minute < bounds.b
        UNION ALL
        SELECT r.src_id, r.dst_id, r.bucket, r.src_title, r.src_subtitle, r.dst_title,
               r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received
        FROM bounds, LATERAL @extschema@._service_map_rollup_of_spans(
                 window_start, least(bounds.a, window_end)) r
        UNION ALL
        SELECT r.src_id, r.dst_id, r.bucket, r.src_title, r.src_subtitle, r.dst_title,
               r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received
        FROM bounds, LATERAL @extschema@._service_map_rollup_of_spans(
                 greatest(bounds.b, least(bounds.a, window_end)), window_end) r
    )
    SELECT p.src_id, p.dst_id, p.bucket, min(p.src_title), min(p.src_subtitle),
           min(p.dst_title), min(p.dst_subtitle), sum(p.spans)::bigint,
           sum(p.errors)::bigint, sum(p.bytes_sent)::bigint, sum(p.bytes_received)::bigint
    FROM parts p
    GROUP BY p.src_id, p.dst_id, p.bucket
$$;

-- The q-quantile, in milliseconds, of a latency histogram (buckets 1..112
-- and their counts; bucket 0 is ignored): the bucket where the cumulative
-- count first reaches q * total, and within it log-linear interpolation
-- (the bucket's lower bound times its width raised to the fraction of its
-- count below the rank). NULL when there are no http rows.
CREATE FUNCTION @extschema@._service_map_quantile(q double precision, buckets smallint[],
                                                  counts bigint[])
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH h AS (
        SELECT u.b, u.n, sum(u.n) OVER (ORDER BY u.b) AS cum, sum(u.n) OVER () AS total
        FROM unnest(buckets, counts) AS u(b, n)
        WHERE u.b > 0 AND u.n > 0
    )
    SELECT pg_catalog.power(2::float8, (h.b - 1 + greatest(0::float8, least(1::float8,
               ((q * h.total) - (h.cum - h.n))::float8 / h.n))) / 4) / 1000
    FROM h
    WHERE h.cum >= q * h.total
    ORDER BY h.b
    LIMIT 1
$$;

-- The rows Grafana's Node Graph panel reads (the field names are its
-- contract; see above), one type for both forms of each function.
CREATE TYPE @extschema@.service_map_edge AS (
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
    "detail__bytes_received" bigint);

CREATE TYPE @extschema@.service_map_node AS (
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
    "detail__bytes_sent" bigint);

-- Edges (caller -> callee) of the window [window_start, window_end).
CREATE FUNCTION @extschema@.service_map_edges(window_start timestamptz, window_end timestamptz)
RETURNS SETOF @extschema@.service_map_edge
LANGUAGE sql STABLE AS $$
    WITH e AS (
        SELECT m.src_id, m.dst_id,
               coalesce(sum(m.spans) FILTER (WHERE m.bucket > 0), 0)::bigint AS requests,
               coalesce(sum(m.errors) FILTER (WHERE m.bucket > 0), 0)::bigint AS errors,
               @extschema@._service_map_quantile(0.5, array_agg(m.bucket), array_agg(m.spans))
                   AS p50,
               @extschema@._service_map_quantile(0.95, array_agg(m.bucket), array_agg(m.spans))
                   AS p95,
               coalesce(sum(m.spans) FILTER (WHERE m.bucket = 0), 0)::bigint AS connections,
               coalesce(sum(m.errors) FILTER (WHERE m.bucket = 0), 0)::bigint
                   AS connection_errors,
               coalesce(sum(m.bytes_sent), 0)::bigint AS bytes_sent,
               coalesce(sum(m.bytes_received), 0)::bigint AS bytes_received
        FROM @extschema@._service_map_window(window_start, window_end) m
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
RETURNS SETOF @extschema@.service_map_edge
LANGUAGE sql STABLE AS $$
    SELECT * FROM @extschema@.service_map_edges(now() - since, now())
$$;

-- Nodes of the window [window_start, window_end). A node's statistics are
-- those of the traffic it serves (it is the callee): HTTP requests when it
-- served any, else TCP connections. A node that only calls others (a client)
-- shows its outgoing traffic instead, marked "out". The arcs are the
-- fractions of that traffic that succeeded and failed (they sum to 1).
CREATE FUNCTION @extschema@.service_map_nodes(window_start timestamptz, window_end timestamptz)
RETURNS SETOF @extschema@.service_map_node
LANGUAGE sql STABLE AS $$
    WITH m AS MATERIALIZED (
        SELECT * FROM @extschema@._service_map_window(window_start, window_end)
    ), hist AS (
        -- the latency histogram of the requests each node served
        SELECT m.dst_id AS id, m.bucket, sum(m.spans)::bigint AS n
        FROM m WHERE m.bucket > 0 GROUP BY m.dst_id, m.bucket
    ), lat AS (
        SELECT hist.id,
               @extschema@._service_map_quantile(0.5, array_agg(hist.bucket), array_agg(hist.n))
                   AS p50,
               @extschema@._service_map_quantile(0.95, array_agg(hist.bucket), array_agg(hist.n))
                   AS p95
        FROM hist GROUP BY hist.id
    ), sides AS (
        -- each row once for the node that served it (received what the
        -- client sent) and once for the node that called (the other way)
        SELECT m.dst_id AS id, m.dst_title AS title, m.dst_subtitle AS subtitle, true AS served,
               m.bucket, m.spans, m.errors, m.bytes_sent AS rx, m.bytes_received AS tx
        FROM m
        UNION ALL
        SELECT m.src_id, m.src_title, m.src_subtitle, false, m.bucket, m.spans, m.errors,
               m.bytes_received, m.bytes_sent
        FROM m
    ), agg AS (
        SELECT s.id, s.served, min(s.title) AS title, min(s.subtitle) AS subtitle,
               coalesce(sum(s.spans) FILTER (WHERE s.bucket > 0), 0)::bigint AS requests,
               coalesce(sum(s.errors) FILTER (WHERE s.bucket > 0), 0)::bigint AS errors,
               coalesce(sum(s.spans) FILTER (WHERE s.bucket = 0), 0)::bigint AS connections,
               coalesce(sum(s.errors) FILTER (WHERE s.bucket = 0), 0)::bigint
                   AS connection_errors,
               coalesce(sum(s.rx), 0)::bigint AS bytes_rx,
               coalesce(sum(s.tx), 0)::bigint AS bytes_tx
        FROM sides s GROUP BY s.id, s.served
    ), i AS (
        SELECT * FROM agg WHERE served
    ), o AS (
        SELECT * FROM agg WHERE NOT served
    ), w AS (
        SELECT greatest(extract(epoch FROM window_end - window_start)::float8, 1e-9) AS seconds
    ), n AS (
        SELECT coalesce(i.id, o.id) AS id,
               coalesce(i.title, o.title) AS title,
               coalesce(i.subtitle, o.subtitle) AS subtitle,
               coalesce(i.requests, 0) AS req_in, coalesce(i.errors, 0) AS err_in,
               lat.p50, lat.p95,
               coalesce(i.connections, 0) AS conn_in,
               coalesce(i.connection_errors, 0) AS conn_err_in,
               coalesce(i.bytes_rx, 0) + coalesce(o.bytes_rx, 0) AS bytes_rx,
               coalesce(i.bytes_tx, 0) + coalesce(o.bytes_tx, 0) AS bytes_tx,
               coalesce(o.requests, 0) AS req_out, coalesce(o.errors, 0) AS err_out,
               coalesce(o.connections, 0) AS conn_out,
               coalesce(o.connection_errors, 0) AS conn_err_out
        FROM i FULL JOIN o ON o.id = i.id
        LEFT JOIN lat ON lat.id = coalesce(i.id, o.id)
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
RETURNS SETOF @extschema@.service_map_node
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
REVOKE ALL ON FUNCTION @extschema@._service_map_minute(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_bucket(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_rollup_of_spans(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_window(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_quantile(double precision, smallint[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_refresh(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_dot_quote(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_edges(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_edges(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_nodes(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_nodes(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_dot(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_dot(interval) FROM PUBLIC;
