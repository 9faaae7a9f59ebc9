-- bench/service_map_rollup.sql - PROPOSED (not in the extension yet): a
-- per-minute edge rollup that keeps the service map fast on a large spans
-- table. Written as extension SQL (@extschema@); bench/service_map_bench.sh
-- loads it with @extschema@ = public and measures it.
--
-- One row per (minute of start_time, caller, callee, latency bucket):
-- bucket 0 holds the edge's tcp rows (connections, failed connections,
-- payload bytes), buckets 1..112 the http rows whose latency falls in
-- [2^((b-1)/4), 2^(b/4)) microseconds (quarter octaves from 1 us to ~48 min,
-- the last bucket open-ended). Counts and bytes are exact; p50/p95 read
-- from the buckets are the bucket's geometric middle, within 9 % of the
-- exact value.
--
-- Maintained by a statement-level AFTER INSERT trigger on spans: the worker
-- writes each batch with one INSERT statement (span_store.cpp: INSERT ...
-- SELECT FROM unnest), so the trigger runs once per batch, in the batch's
-- transaction, and sees the batch as a transition table. Late rows (a
-- keep-alive connection's tcp row is written when it closes, with the
-- start_time of its first packet, possibly an hour back) land in their own
-- minute by upsert, which a watermark-driven "roll up the last minute" job
-- would miss. Retention: delete rollup minutes together with spans.

CREATE TABLE @extschema@.service_map_minutes (
    minute            timestamptz NOT NULL,
    src_id            text NOT NULL,
    dst_id            text NOT NULL,
    bucket            smallint NOT NULL,
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

CREATE FUNCTION @extschema@._service_map_bucket(latency interval)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- float8 arithmetic: numeric log() would cost more than the rest of the rollup
    SELECT least(112, greatest(1, 1 + pg_catalog.floor(4 * pg_catalog.ln(
               greatest(extract(epoch FROM latency)::float8 * 1000000, 1)) / 0.6931471805599453)))::smallint
$$;

-- The rows of a set of spans, rolled up: what the trigger upserts.
CREATE FUNCTION @extschema@._service_map_rollup_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO @extschema@.service_map_minutes AS m
    SELECT date_trunc('minute', s.start_time),
           @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod, s.src_node, s.src_addr),
           @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod, s.dst_node, s.dst_addr),
           CASE WHEN s.protocol = 'http' THEN @extschema@._service_map_bucket(s.end_time - s.start_time)
                ELSE 0 END,
           min(@extschema@._service_map_node_title(s.src_workload, s.src_pod, s.src_node, s.src_addr)),
           min(@extschema@._service_map_node_subtitle(s.src_namespace, s.src_workload, s.src_workload_kind, s.src_pod, s.src_node)),
           min(@extschema@._service_map_node_title(s.dst_workload, s.dst_pod, s.dst_node, s.dst_addr)),
           min(@extschema@._service_map_node_subtitle(s.dst_namespace, s.dst_workload, s.dst_workload_kind, s.dst_pod, s.dst_node)),
           count(*),
           count(*) FILTER (WHERE s.status = 'ERROR'),
           coalesce(sum(s.bytes_sent) FILTER (WHERE s.protocol = 'tcp'), 0),
           coalesce(sum(s.bytes_received) FILTER (WHERE s.protocol = 'tcp'), 0)
    FROM new_spans s
    WHERE s.protocol IN ('http', 'tcp')
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (minute, src_id, dst_id, bucket) DO UPDATE
        SET spans = m.spans + excluded.spans,
            errors = m.errors + excluded.errors,
            bytes_sent = m.bytes_sent + excluded.bytes_sent,
            bytes_received = m.bytes_received + excluded.bytes_received;
    RETURN NULL;
END
$$;

-- Once, when the rollup is added to a table that has spans already (an
-- ALTER EXTENSION UPDATE). Not while the worker writes the same range.
CREATE FUNCTION @extschema@._service_map_rollup_backfill(window_start timestamptz, window_end timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO @extschema@.service_map_minutes AS m
    SELECT date_trunc('minute', s.start_time),
           @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod, s.src_node, s.src_addr),
           @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod, s.dst_node, s.dst_addr),
           CASE WHEN s.protocol = 'http' THEN @extschema@._service_map_bucket(s.end_time - s.start_time)
                ELSE 0 END,
           min(@extschema@._service_map_node_title(s.src_workload, s.src_pod, s.src_node, s.src_addr)),
           min(@extschema@._service_map_node_subtitle(s.src_namespace, s.src_workload, s.src_workload_kind, s.src_pod, s.src_node)),
           min(@extschema@._service_map_node_title(s.dst_workload, s.dst_pod, s.dst_node, s.dst_addr)),
           min(@extschema@._service_map_node_subtitle(s.dst_namespace, s.dst_workload, s.dst_workload_kind, s.dst_pod, s.dst_node)),
           count(*),
           count(*) FILTER (WHERE s.status = 'ERROR'),
           coalesce(sum(s.bytes_sent) FILTER (WHERE s.protocol = 'tcp'), 0),
           coalesce(sum(s.bytes_received) FILTER (WHERE s.protocol = 'tcp'), 0)
    FROM @extschema@.spans s
    WHERE s.start_time >= window_start AND s.start_time < window_end
      AND s.protocol IN ('http', 'tcp')
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (minute, src_id, dst_id, bucket) DO UPDATE
        SET spans = m.spans + excluded.spans,
            errors = m.errors + excluded.errors,
            bytes_sent = m.bytes_sent + excluded.bytes_sent,
            bytes_received = m.bytes_received + excluded.bytes_received;
$$;

CREATE TRIGGER spans_service_map_rollup
    AFTER INSERT ON @extschema@.spans
    REFERENCING NEW TABLE AS new_spans
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._service_map_rollup_trigger();

-- Edges from the rollup over whole minutes [window_start, window_end)
-- (both rounded down to the minute): the same columns as
-- service_map_edges, p50/p95 approximate.
CREATE FUNCTION @extschema@.service_map_edges_rollup(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    id text, source text, target text, mainstat text, secondarystat text,
    "detail__requests" bigint, "detail__errors" bigint,
    "detail__requests_per_s" double precision, "detail__error_ratio" double precision,
    "detail__p50_ms" double precision, "detail__p95_ms" double precision,
    "detail__connections" bigint, "detail__connection_errors" bigint,
    "detail__bytes_sent" bigint, "detail__bytes_received" bigint)
LANGUAGE sql STABLE AS $$
    WITH b AS (
        SELECT m.src_id, m.dst_id, m.bucket, sum(m.spans) AS n, sum(m.errors) AS err,
               sum(m.bytes_sent) AS bs, sum(m.bytes_received) AS br
        FROM @extschema@.service_map_minutes m
        WHERE m.minute >= date_trunc('minute', window_start)
          AND m.minute < date_trunc('minute', window_end)
        GROUP BY 1, 2, 3
    ), c AS (
        SELECT b.*,
               sum(b.n) FILTER (WHERE b.bucket > 0)
                   OVER (PARTITION BY b.src_id, b.dst_id ORDER BY b.bucket) AS cum,
               sum(b.n) FILTER (WHERE b.bucket > 0)
                   OVER (PARTITION BY b.src_id, b.dst_id) AS total
        FROM b
    ), e AS (
        SELECT c.src_id, c.dst_id,
               coalesce(sum(c.n) FILTER (WHERE c.bucket > 0), 0)::bigint AS requests,
               coalesce(sum(c.err) FILTER (WHERE c.bucket > 0), 0)::bigint AS errors,
               -- geometric middle of the bucket holding the percentile, in ms
               min(pg_catalog.power(2, (c.bucket - 0.5) / 4.0) / 1000)
                   FILTER (WHERE c.bucket > 0 AND c.cum >= 0.5 * c.total) AS p50,
               min(pg_catalog.power(2, (c.bucket - 0.5) / 4.0) / 1000)
                   FILTER (WHERE c.bucket > 0 AND c.cum >= 0.95 * c.total) AS p95,
               coalesce(sum(c.n) FILTER (WHERE c.bucket = 0), 0)::bigint AS connections,
               coalesce(sum(c.err) FILTER (WHERE c.bucket = 0), 0)::bigint AS connection_errors,
               coalesce(sum(c.bs), 0)::bigint AS bytes_sent,
               coalesce(sum(c.br), 0)::bigint AS bytes_received
        FROM c GROUP BY 1, 2
    ), w AS (
        SELECT greatest(extract(epoch FROM date_trunc('minute', window_end)
                                          - date_trunc('minute', window_start))::float8, 1e-9) AS seconds
    )
    SELECT e.src_id || ' -> ' || e.dst_id, e.src_id, e.dst_id,
           CASE WHEN e.requests > 0
                THEN @extschema@._service_map_num(e.requests / w.seconds) || ' req/s, '
                     || @extschema@._service_map_num(100.0 * e.errors / e.requests) || '% errors'
                ELSE e.connections || ' conn'
                     || CASE WHEN e.connection_errors > 0
                             THEN ', ' || e.connection_errors || ' failed' ELSE '' END
           END,
           CASE WHEN e.requests > 0
                THEN 'p50 ~' || @extschema@._service_map_num(e.p50) || ' ms, p95 ~'
                     || @extschema@._service_map_num(e.p95) || ' ms'
                ELSE pg_catalog.pg_size_pretty(e.bytes_sent) || ' sent, '
                     || pg_catalog.pg_size_pretty(e.bytes_received) || ' received'
           END,
           e.requests, e.errors, e.requests / w.seconds,
           CASE WHEN e.requests > 0 THEN e.errors::float8 / e.requests END,
           e.p50, e.p95, e.connections, e.connection_errors, e.bytes_sent, e.bytes_received
    FROM e CROSS JOIN w
    ORDER BY e.src_id, e.dst_id
$$;

REVOKE ALL ON FUNCTION @extschema@._service_map_bucket(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_rollup_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._service_map_rollup_backfill(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.service_map_edges_rollup(timestamptz, timestamptz) FROM PUBLIC;
