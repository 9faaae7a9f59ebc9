-- ebpf_capture 0.1 -> 0.2
--
-- A new database gets 0.2 through this script too: CREATE EXTENSION runs
-- ebpf_capture--0.1.sql, then this. A fresh install and an upgraded one
-- therefore have the same objects, built by the same statements.
\echo Use "ALTER EXTENSION ebpf_capture UPDATE" to load this file. \quit

-- Everything below names its schema: nothing a user created in a schema on
-- the caller's search_path can stand in for a built-in function, operator
-- or type while this script runs. (CREATE EXTENSION restores the caller's
-- search_path afterwards.)
SET LOCAL search_path TO pg_catalog, pg_temp;

-- ============================================================================
-- Storage: time partitions, retention, a disk guard
-- ============================================================================
--
-- spans and service_map_minutes are partitioned by range of time (start_time,
-- minute). The launcher (a background process of the extension) keeps the
-- partitions: it creates them ahead of time, drops whole partitions older
-- than the retention or beyond the size cap, and drops the oldest first when
-- the data directory's file system runs short of space. No DELETE, no bloat,
-- no cron.
--
-- Each table also has a DEFAULT partition, *_late: rows whose time has no
-- partition. The worker writes there a span that starts before the oldest
-- time partition kept (a connection open longer than the retention, ending
-- now): it is kept until its end_time is older than the retention. Rows that
-- land there for a time that does have a place (written before the launcher
-- made the partition) are moved into the partition when it is made.

-- The partitions of a table of ours and their time ranges: [range_start,
-- range_end), -infinity/infinity for MINVALUE/MAXVALUE; the default partition
-- has both NULL. Read from the catalogs, so a partition a user attached or
-- dropped by hand is seen too.
CREATE FUNCTION @extschema@._storage_partitions_of(parent regclass)
RETURNS TABLE (partition regclass, range_start timestamptz, range_end timestamptz,
               is_default boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "DateStyle" = 'ISO, YMD'
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    r record;
    bound text;
    lo text;
    hi text;
BEGIN
    FOR r IN
        SELECT i.inhrelid::regclass AS rel, pg_get_expr(c.relpartbound, c.oid) AS expr
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent
    LOOP
        partition := r.rel;
        bound := r.expr;
        IF bound = 'DEFAULT' THEN
            range_start := NULL;
            range_end := NULL;
            is_default := true;
        ELSE
            -- FOR VALUES FROM ('2026-12-03 08:00:00+00') TO (MAXVALUE)
            lo := substring(bound FROM '^FOR VALUES FROM \((.*)\) TO \(');
            hi := substring(bound FROM '\) TO \((.*)\)$');
            range_start := CASE WHEN lo = 'MINVALUE' THEN '-infinity'::timestamptz
                                WHEN lo = 'MAXVALUE' THEN 'infinity'::timestamptz
                                ELSE btrim(lo, '''')::timestamptz END;
            range_end := CASE WHEN hi = 'MINVALUE' THEN '-infinity'::timestamptz
                              WHEN hi = 'MAXVALUE' THEN 'infinity'::timestamptz
                              ELSE btrim(hi, '''')::timestamptz END;
            is_default := false;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The time column a table of ours is partitioned by (its partition key).
CREATE FUNCTION @extschema@._storage_time_column(parent regclass) RETURNS text
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT a.attname::text
    FROM pg_catalog.pg_partitioned_table pt
    JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partrelid = parent;
END;

-- Makes the partition of `parent` that holds time t, if there is none:
-- [date_bin(step, t), + step), clipped to the neighbouring partitions so
-- that a change of step never makes ranges overlap. Rows the default
-- partition holds for that range are moved into it first. The new table is
-- attached, not created as a partition: ATTACH takes only a SHARE UPDATE
-- EXCLUSIVE lock on the parent, which inserts do not wait for. Returns the
-- new partition, or NULL if t had one already.
CREATE FUNCTION @extschema@._storage_make_partition(parent regclass, t timestamptz, step interval)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET "DateStyle" = 'ISO, YMD'
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    col text := @extschema@._storage_time_column(parent);
    lo timestamptz;
    hi timestamptz;
    nsp text;
    base text;
    name text;
    late regclass;
    part regclass;
BEGIN
    IF step IS NULL OR step <= interval '0' THEN
        RAISE EXCEPTION 'partition interval must be positive, not % seconds',
            extract(epoch FROM step)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(t) THEN
        RETURN NULL;
    END IF;
    lo := date_bin(step, t, '2000-01-01 00:00:00+00');
    hi := lo + step;
    IF EXISTS (SELECT 1 FROM @extschema@._storage_partitions_of(parent) p
               WHERE NOT p.is_default AND t >= p.range_start AND t < p.range_end) THEN
        RETURN NULL;
    END IF;
    SELECT greatest(lo, max(p.range_end)) INTO lo
    FROM @extschema@._storage_partitions_of(parent) p
    WHERE NOT p.is_default AND p.range_end <= t;
    SELECT least(hi, min(p.range_start)) INTO hi
    FROM @extschema@._storage_partitions_of(parent) p
    WHERE NOT p.is_default AND p.range_start > t;
    SELECT n.nspname, c.relname INTO nsp, base
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
    name := base || '_p' || to_char(lo, 'YYYYMMDD_HH24MISS');
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMMENTS)', nsp, name, nsp, base);
    part := format('%I.%I', nsp, name)::regclass;
    -- The partition constraint, stated: ATTACH then needs no scan to prove it.
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L)',
                   part, name || '_range', col, lo, col, hi);
    SELECT p.partition INTO late FROM @extschema@._storage_partitions_of(parent) p
    WHERE p.is_default;
    IF late IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING *) '
                       'INSERT INTO %s SELECT * FROM moved', late, col, lo, col, hi, part);
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                   parent, part, lo, hi);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', part, name || '_range');
    RETURN part;
END
$$;

-- Makes the partitions of `parent` for [now, now + ahead), and for the rows
-- its default partition holds that are not older than the oldest time
-- partition (written before their partition was made; older ones are the
-- late rows that stay there). Returns the partitions made.
CREATE FUNCTION @extschema@._storage_premake(parent regclass, step interval, ahead interval,
                                             at timestamptz DEFAULT now())
RETURNS SETOF regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col text := @extschema@._storage_time_column(parent);
    t timestamptz := at;
    oldest timestamptz;
    late regclass;
    part regclass;
    bin timestamptz;
BEGIN
    SELECT min(p.range_start) INTO oldest FROM @extschema@._storage_partitions_of(parent) p
    WHERE NOT p.is_default;
    SELECT p.partition INTO late FROM @extschema@._storage_partitions_of(parent) p
    WHERE p.is_default;
    IF late IS NOT NULL THEN
        FOR bin IN EXECUTE format(
            'SELECT DISTINCT date_bin($1, %I, ''2000-01-01 00:00:00+00'') FROM %s '
            'WHERE %I >= $2 ORDER BY 1', col, late, col)
            USING step, coalesce(oldest, '-infinity')
        LOOP
            part := @extschema@._storage_make_partition(parent, bin, step);
            IF part IS NOT NULL THEN
                RETURN NEXT part;
            END IF;
        END LOOP;
    END IF;
    WHILE t < at + ahead LOOP
        part := @extschema@._storage_make_partition(parent, t, step);
        IF part IS NOT NULL THEN
            RETURN NEXT part;
        END IF;
        SELECT p.range_end INTO t FROM @extschema@._storage_partitions_of(parent) p
        WHERE NOT p.is_default AND t >= p.range_start AND t < p.range_end;
    END LOOP;
END
$$;

-- Drops the oldest time partition of `parent` if it ends at or before
-- `cutoff` (retention), or, with cutoff NULL, if it ends at or before `at`
-- (the size cap and the disk guard: never the partition being written now,
-- nor one ahead). Returns what it dropped and its size, or no row. The
-- caller sets a short lock_timeout: the drop needs an ACCESS EXCLUSIVE lock
-- on the parent, and must not make the capture's inserts queue behind it.
CREATE FUNCTION @extschema@._storage_drop_oldest(parent regclass, cutoff timestamptz,
                                                 at timestamptz DEFAULT now())
RETURNS TABLE (dropped text, range_start timestamptz, range_end timestamptz, bytes bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    victim regclass;
BEGIN
    SELECT p.partition, p.range_start, p.range_end INTO victim, range_start, range_end
    FROM @extschema@._storage_partitions_of(parent) p
    WHERE NOT p.is_default AND p.range_end <= coalesce(cutoff, at)
    ORDER BY p.range_end
    LIMIT 1;
    IF victim IS NULL THEN
        RETURN;
    END IF;
    dropped := victim::text;
    bytes := pg_total_relation_size(victim);
    EXECUTE format('DROP TABLE %s', victim);
    RETURN NEXT;
END
$$;

-- Deletes, a bounded number at a time, the rows of the default partition
-- of `parent` that are past the retention: spans by end_time (a late span is
-- kept for the retention after it ended), rollup rows by minute. Returns
-- the number deleted.
CREATE FUNCTION @extschema@._storage_trim_late(parent regclass, cutoff timestamptz,
                                               max_rows int DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    late regclass;
    col text := CASE WHEN @extschema@._storage_time_column(parent) = 'minute' THEN 'minute'
                     ELSE 'end_time' END;
    n bigint;
BEGIN
    SELECT p.partition INTO late FROM @extschema@._storage_partitions_of(parent) p
    WHERE p.is_default;
    IF late IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format('DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s WHERE %I < $1 '
                   'LIMIT $2))', late, late, col)
        USING cutoff, max_rows;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Removes the history of pods deleted before the oldest span kept.
CREATE FUNCTION @extschema@._storage_prune_pods() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    oldest timestamptz;
    n bigint;
BEGIN
    SELECT min(s.start_time) INTO oldest FROM @extschema@.spans s;
    IF oldest IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM @extschema@.pods p WHERE p.deleted_at < oldest;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- ---- spans becomes partitioned -------------------------------------------
-- The 0.1 table is kept, with every row, as the partition of all times up to
-- just after its newest span (or dropped if it is empty). It is no longer a member of the extension: an ordinary
-- partition that retention drops like any other once it is old enough.
ALTER TABLE @extschema@.spans RENAME TO spans_0_1;
ALTER INDEX @extschema@.spans_start_time_idx RENAME TO spans_0_1_start_time_idx;
ALTER INDEX @extschema@.spans_trace_id_idx RENAME TO spans_0_1_trace_id_idx;
ALTER EXTENSION ebpf_capture DROP TABLE @extschema@.spans_0_1;

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
    packets_sent     bigint,
    packets_received bigint,
    attributes       jsonb NOT NULL DEFAULT '{}',
    http_method      text,
    http_target      text,
    http_status      int,
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
) PARTITION BY RANGE (start_time);
COMMENT ON TABLE @extschema@.spans IS
  'Observed network spans, partitioned by start_time (see storage_status()). tcp: one per connection, client = the side that sent the SYN, bytes_* are TCP payload bytes counted once each. http: one per request/response exchange, bytes_* are body bytes.';
CREATE INDEX spans_start_time_idx ON @extschema@.spans (start_time);
CREATE INDEX spans_trace_id_idx ON @extschema@.spans (trace_id);
CREATE TABLE @extschema@.spans_late PARTITION OF @extschema@.spans DEFAULT;
COMMENT ON TABLE @extschema@.spans_late IS
  'Spans that started before the oldest time partition kept (connections open longer than ebpf_capture.retention); kept until their end_time is older than the retention.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.spans_late', '');

-- ---- service_map_minutes becomes partitioned -----------------------------
ALTER TABLE @extschema@.service_map_minutes RENAME TO service_map_minutes_0_1;
ALTER INDEX @extschema@.service_map_minutes_pkey RENAME TO service_map_minutes_0_1_pkey;
ALTER EXTENSION ebpf_capture DROP TABLE @extschema@.service_map_minutes_0_1;
-- 0.1 rows have no client node: '' (the node that wrote them counts them).
-- The key gains the column; ATTACH below builds the partition's new index.
ALTER TABLE @extschema@.service_map_minutes_0_1
    ADD COLUMN client_node text NOT NULL DEFAULT '';
ALTER TABLE @extschema@.service_map_minutes_0_1 DROP CONSTRAINT service_map_minutes_0_1_pkey;

CREATE TABLE @extschema@.service_map_minutes (
    minute            timestamptz NOT NULL,
    src_id            text NOT NULL,
    dst_id            text NOT NULL,
    -- named as in 0.1: ATTACH matches a partition's CHECK constraints by name
    bucket            smallint NOT NULL
                      CONSTRAINT service_map_minutes_bucket_check CHECK (bucket BETWEEN 0 AND 112),
    src_title         text NOT NULL,
    src_subtitle      text NOT NULL,
    dst_title         text NOT NULL,
    dst_subtitle      text NOT NULL,
    spans             bigint NOT NULL,
    errors            bigint NOT NULL,
    bytes_sent        bigint NOT NULL,
    bytes_received    bigint NOT NULL,
    -- The Kubernetes node of the client when the client is a pod on the pod
    -- network (not on the host's network), '' otherwise. A request between
    -- pods on two nodes is seen by both nodes' captures; a hub reading every
    -- node counts the client node's record and skips the others (docs/hub.md).
    client_node       text NOT NULL DEFAULT '',
    PRIMARY KEY (minute, src_id, dst_id, bucket, client_node)
) PARTITION BY RANGE (minute);
COMMENT ON TABLE @extschema@.service_map_minutes IS
  'The per-minute service map rollup, partitioned by minute; kept for ebpf_capture.rollup_retention.';
CREATE TABLE @extschema@.service_map_minutes_late
    PARTITION OF @extschema@.service_map_minutes DEFAULT;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.service_map_minutes_late', '');

-- Attaches what 0.1 kept (or drops the empty tables), then makes the
-- partitions of the coming hours, so that the first spans after the update
-- have their place.
DO $$
DECLARE
    step interval := coalesce(
        nullif(current_setting('ebpf_capture.partition_interval', true), '')::interval,
        interval '1 hour');
    rollup_step interval := coalesce(
        nullif(current_setting('ebpf_capture.rollup_partition_interval', true), '')::interval,
        interval '1 day');
    newest timestamptz;
    part regclass;
BEGIN
    SELECT max(s.start_time) INTO newest FROM @extschema@.spans_0_1 s;
    IF newest IS NULL THEN
        DROP TABLE @extschema@.spans_0_1;
    ELSE
        -- up to just after its newest span: the first partition made after
        -- it starts there (partitions are clipped to their neighbours)
        EXECUTE format('ALTER TABLE @extschema@.spans ATTACH PARTITION @extschema@.spans_0_1 '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', newest + interval '1 microsecond');
    END IF;
    SELECT max(m.minute) INTO newest FROM @extschema@.service_map_minutes_0_1 m;
    IF newest IS NULL THEN
        DROP TABLE @extschema@.service_map_minutes_0_1;
    ELSE
        EXECUTE format('ALTER TABLE @extschema@.service_map_minutes '
                       'ATTACH PARTITION @extschema@.service_map_minutes_0_1 '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', newest + interval '1 microsecond');
    END IF;
    -- Tables made while this script runs would be members of the extension,
    -- which retention could then not drop: they are let go at once, as the
    -- launcher's partitions are never members.
    FOR part IN
        SELECT p FROM @extschema@._storage_premake('@extschema@.spans', step, 3 * step) p
        UNION ALL
        SELECT p FROM @extschema@._storage_premake('@extschema@.service_map_minutes',
                                                  rollup_step, 2 * rollup_step) p
    LOOP
        EXECUTE format('ALTER EXTENSION ebpf_capture DROP TABLE %s', part);
    END LOOP;
END
$$;

-- ---- the state of the store ----------------------------------------------
-- Every partition of spans and of the rollup, with its range and size.
CREATE VIEW @extschema@.storage_partitions AS
    SELECT 'spans'::text AS "table", p.partition, p.range_start, p.range_end, p.is_default,
           pg_total_relation_size(p.partition) AS bytes
    FROM @extschema@._storage_partitions_of('@extschema@.spans') p
    UNION ALL
    SELECT 'service_map_minutes', p.partition, p.range_start, p.range_end, p.is_default,
           pg_total_relation_size(p.partition)
    FROM @extschema@._storage_partitions_of('@extschema@.service_map_minutes') p;
REVOKE ALL ON @extschema@.storage_partitions FROM PUBLIC;

-- What the launcher's storage maintenance last did (shared memory).
CREATE FUNCTION @extschema@._storage_state(
    OUT last_run timestamptz, OUT last_error text, OUT last_error_at timestamptz,
    OUT partitions_made bigint, OUT partitions_dropped bigint, OUT bytes_dropped bigint,
    OUT late_rows_deleted bigint, OUT last_dropped text,
    OUT disk_free_bytes bigint, OUT disk_total_bytes bigint, OUT min_free_disk_bytes bigint,
    OUT disk_low boolean, OUT writes_paused boolean)
RETURNS record LANGUAGE c AS 'MODULE_PATHNAME', 'ebpf_capture_storage_state';
REVOKE ALL ON FUNCTION @extschema@._storage_state() FROM PUBLIC;

-- One row: what the store holds and what keeps it bounded.
CREATE FUNCTION @extschema@.storage_status(
    OUT oldest_span timestamptz, OUT newest_span timestamptz,
    OUT spans_partitions int, OUT spans_bytes bigint, OUT late_spans_bytes bigint,
    OUT rollup_partitions int, OUT rollup_bytes bigint,
    OUT retention interval, OUT max_spans_size bigint, OUT rollup_retention interval,
    OUT last_run timestamptz, OUT partitions_made bigint, OUT partitions_dropped bigint,
    OUT bytes_dropped bigint, OUT late_rows_deleted bigint, OUT last_dropped text,
    OUT disk_free_bytes bigint, OUT disk_total_bytes bigint, OUT min_free_disk_bytes bigint,
    OUT disk_low boolean, OUT writes_paused boolean,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS record LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT (SELECT min(s.start_time) FROM @extschema@.spans s),
           (SELECT max(s.start_time) FROM @extschema@.spans s),
           (SELECT count(*) FILTER (WHERE NOT p.is_default)::int
            FROM @extschema@.storage_partitions p WHERE p."table" = 'spans'),
           (SELECT coalesce(sum(p.bytes), 0)::bigint
            FROM @extschema@.storage_partitions p WHERE p."table" = 'spans'),
           (SELECT coalesce(sum(p.bytes) FILTER (WHERE p.is_default), 0)::bigint
            FROM @extschema@.storage_partitions p WHERE p."table" = 'spans'),
           (SELECT count(*) FILTER (WHERE NOT p.is_default)::int
            FROM @extschema@.storage_partitions p WHERE p."table" = 'service_map_minutes'),
           (SELECT coalesce(sum(p.bytes), 0)::bigint
            FROM @extschema@.storage_partitions p WHERE p."table" = 'service_map_minutes'),
           nullif(current_setting('ebpf_capture.retention', true), '0')::interval,
           nullif(pg_size_bytes(nullif(current_setting('ebpf_capture.max_spans_size', true),
                                       '')), 0),
           nullif(current_setting('ebpf_capture.rollup_retention', true), '0')::interval,
           st.last_run, st.partitions_made, st.partitions_dropped, st.bytes_dropped,
           st.late_rows_deleted, st.last_dropped, st.disk_free_bytes, st.disk_total_bytes,
           st.min_free_disk_bytes, st.disk_low, st.writes_paused, st.last_error,
           st.last_error_at
    FROM @extschema@._storage_state() st;
END;
REVOKE ALL ON FUNCTION @extschema@.storage_status() FROM PUBLIC;

REVOKE ALL ON FUNCTION @extschema@._storage_partitions_of(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_time_column(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_make_partition(regclass, timestamptz, interval)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_premake(regclass, interval, interval, timestamptz)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_drop_oldest(regclass, timestamptz, timestamptz)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_trim_late(regclass, timestamptz, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._storage_prune_pods() FROM PUBLIC;

-- ---- captures: not carried by a dump ------------------------------------
-- A dump restored onto another server must not start captures there by
-- itself: the table is a member of the extension but its rows are no longer
-- dumped (capture_start on the new server says what to capture).
ALTER EXTENSION ebpf_capture DROP TABLE @extschema@.captures;
ALTER EXTENSION ebpf_capture ADD TABLE @extschema@.captures;

-- ============================================================================
-- The worker's writes of pods and of the rollup, as functions: the worker
-- prepares one call of each, and pg_regress tests them on their own.
-- ============================================================================

-- The pods table mirrors the Kubernetes cache's change feed, one array per
-- column (addresses as 'a,b'). A pod may appear more than once in a batch:
-- its last record wins. Returns the rows written.
CREATE FUNCTION @extschema@._pods_upsert(
    a_uid text[], a_namespace text[], a_name text[], a_ips text[], a_node text[],
    a_workload text[], a_workload_kind text[], a_phase text[], a_host_network boolean[],
    a_labels text[], a_created_at timestamptz[], a_first_seen timestamptz[],
    a_last_seen timestamptz[], a_deleted_at timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO @extschema@.pods AS p (uid, namespace, name, ips, node, workload, workload_kind,
                                      phase, host_network, labels, created_at, first_seen,
                                      last_seen, deleted_at)
    SELECT DISTINCT ON (x.u) x.u, x.ns, x.n, string_to_array(x.ips, ',')::inet[], x.node, x.w,
           x.wk, x.ph, coalesce(x.hn, false), coalesce(x.l, '{}')::jsonb, x.ca,
           coalesce(x.fs, now()), coalesce(x.ls, now()), x.da
    FROM unnest(a_uid, a_namespace, a_name, a_ips, a_node, a_workload, a_workload_kind, a_phase,
                a_host_network, a_labels, a_created_at, a_first_seen, a_last_seen, a_deleted_at)
         WITH ORDINALITY AS x(u, ns, n, ips, node, w, wk, ph, hn, l, ca, fs, ls, da, ord)
    WHERE x.u IS NOT NULL
    ORDER BY x.u, x.ord DESC
    ON CONFLICT (uid) DO UPDATE SET namespace = EXCLUDED.namespace, name = EXCLUDED.name,
        ips = EXCLUDED.ips, node = EXCLUDED.node, workload = EXCLUDED.workload,
        workload_kind = EXCLUDED.workload_kind, phase = EXCLUDED.phase,
        host_network = EXCLUDED.host_network, labels = EXCLUDED.labels,
        created_at = EXCLUDED.created_at,
        first_seen = least(p.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(p.last_seen, EXCLUDED.last_seen),
        deleted_at = EXCLUDED.deleted_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The client node of a rollup row (see service_map_minutes.client_node):
-- the node of the client's pod, '' when the client is no pod (an address,
-- a node's own address, a pod on the host's network: those are seen by the
-- server's node alone).
CREATE FUNCTION @extschema@._service_map_client_node(src_pod text, src_node text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN src_pod IS NOT NULL THEN coalesce(src_node, '') ELSE '' END;
REVOKE ALL ON FUNCTION @extschema@._service_map_client_node(text, text) FROM PUBLIC;

-- A batch's share of the rollup as rollup rows: one input row per (minute,
-- bucket, caller, callee) with who is at each end (pod, namespace, workload,
-- workload kind, node; the address when no identity names the end) and the
-- totals. Node ids, titles and subtitles come from the same functions the
-- map reads raw spans with.
CREATE FUNCTION @extschema@._rollup_rows(
    a_minute timestamptz[], a_bucket smallint[],
    a_src_pod text[], a_src_namespace text[], a_src_workload text[], a_src_workload_kind text[],
    a_src_node text[], a_src_addr inet[],
    a_dst_pod text[], a_dst_namespace text[], a_dst_workload text[], a_dst_workload_kind text[],
    a_dst_node text[], a_dst_addr inet[],
    a_spans bigint[], a_errors bigint[], a_bytes_sent bigint[], a_bytes_received bigint[])
RETURNS TABLE (minute timestamptz, src_id text, dst_id text, bucket smallint,
               src_title text, src_subtitle text, dst_title text, dst_subtitle text,
               spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint,
               client_node text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT u.mi,
           @extschema@._service_map_node_id(u.sns, u.sw, u.sp, u.sn, u.sa),
           @extschema@._service_map_node_id(u.dns, u.dw, u.dp, u.dn, u.da),
           u.b,
           pg_catalog.min(@extschema@._service_map_node_title(u.sw, u.sp, u.sn, u.sa)),
           pg_catalog.min(@extschema@._service_map_node_subtitle(u.sns, u.sw, u.swk, u.sp, u.sn)),
           pg_catalog.min(@extschema@._service_map_node_title(u.dw, u.dp, u.dn, u.da)),
           pg_catalog.min(@extschema@._service_map_node_subtitle(u.dns, u.dw, u.dwk, u.dp, u.dn)),
           pg_catalog.sum(u.n)::bigint, pg_catalog.sum(u.e)::bigint,
           pg_catalog.sum(u.bs)::bigint, pg_catalog.sum(u.br)::bigint,
           @extschema@._service_map_client_node(u.sp, u.sn)
    -- (unnest of several arrays is syntax only when unqualified; this body is
    -- bound when the script runs, with pg_catalog alone on the search_path)
    FROM unnest(a_minute, a_bucket, a_src_pod, a_src_namespace, a_src_workload,
                           a_src_workload_kind, a_src_node, a_src_addr, a_dst_pod,
                           a_dst_namespace, a_dst_workload, a_dst_workload_kind, a_dst_node,
                           a_dst_addr, a_spans, a_errors, a_bytes_sent, a_bytes_received)
         AS u(mi, b, sp, sns, sw, swk, sn, sa, dp, dns, dw, dwk, dn, da, n, e, bs, br)
    GROUP BY 1, 2, 3, 4, 13;
END;

-- Rollup rows staged while service_map_minutes could not be written (a lock
-- held too long): written in the same transaction as their spans, so
-- nothing is lost or counted twice, and merged in as soon as the table is
-- free (_rollup_merge_staged). Until then the map lacks them.
CREATE TABLE @extschema@._service_map_staged (
    minute            timestamptz NOT NULL,
    src_id            text NOT NULL,
    dst_id            text NOT NULL,
    bucket            smallint NOT NULL,
    src_title         text NOT NULL,
    src_subtitle      text NOT NULL,
    dst_title         text NOT NULL,
    dst_subtitle      text NOT NULL,
    spans             bigint NOT NULL,
    errors            bigint NOT NULL,
    bytes_sent        bigint NOT NULL,
    bytes_received    bigint NOT NULL,
    client_node       text NOT NULL DEFAULT ''
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@._service_map_staged', '');

-- Adds a batch's rollup rows to service_map_minutes, in key order (two
-- workers never wait on each other's rows in opposite orders). Returns the
-- rows written.
CREATE FUNCTION @extschema@._rollup_add(
    a_minute timestamptz[], a_bucket smallint[],
    a_src_pod text[], a_src_namespace text[], a_src_workload text[], a_src_workload_kind text[],
    a_src_node text[], a_src_addr inet[],
    a_dst_pod text[], a_dst_namespace text[], a_dst_workload text[], a_dst_workload_kind text[],
    a_dst_node text[], a_dst_addr inet[],
    a_spans bigint[], a_errors bigint[], a_bytes_sent bigint[], a_bytes_received bigint[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO @extschema@.service_map_minutes AS m (minute, src_id, dst_id, bucket, src_title,
        src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, bytes_received,
        client_node)
    SELECT r.minute, r.src_id, r.dst_id, r.bucket, r.src_title, r.src_subtitle, r.dst_title,
           r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received, r.client_node
    FROM @extschema@._rollup_rows(a_minute, a_bucket, a_src_pod, a_src_namespace,
        a_src_workload, a_src_workload_kind, a_src_node, a_src_addr, a_dst_pod, a_dst_namespace,
        a_dst_workload, a_dst_workload_kind, a_dst_node, a_dst_addr, a_spans, a_errors,
        a_bytes_sent, a_bytes_received) r
    ORDER BY 1, 2, 3, 4, 13
    ON CONFLICT (minute, src_id, dst_id, bucket, client_node) DO UPDATE
    SET spans = m.spans + EXCLUDED.spans, errors = m.errors + EXCLUDED.errors,
        bytes_sent = m.bytes_sent + EXCLUDED.bytes_sent,
        bytes_received = m.bytes_received + EXCLUDED.bytes_received;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Stages a batch's rollup rows instead (see _service_map_staged).
CREATE FUNCTION @extschema@._rollup_stage(
    a_minute timestamptz[], a_bucket smallint[],
    a_src_pod text[], a_src_namespace text[], a_src_workload text[], a_src_workload_kind text[],
    a_src_node text[], a_src_addr inet[],
    a_dst_pod text[], a_dst_namespace text[], a_dst_workload text[], a_dst_workload_kind text[],
    a_dst_node text[], a_dst_addr inet[],
    a_spans bigint[], a_errors bigint[], a_bytes_sent bigint[], a_bytes_received bigint[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO @extschema@._service_map_staged (minute, src_id, dst_id, bucket, src_title,
        src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, bytes_received,
        client_node)
    SELECT r.minute, r.src_id, r.dst_id, r.bucket, r.src_title, r.src_subtitle, r.dst_title,
           r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received, r.client_node
    FROM @extschema@._rollup_rows(a_minute, a_bucket, a_src_pod, a_src_namespace,
        a_src_workload, a_src_workload_kind, a_src_node, a_src_addr, a_dst_pod, a_dst_namespace,
        a_dst_workload, a_dst_workload_kind, a_dst_node, a_dst_addr, a_spans, a_errors,
        a_bytes_sent, a_bytes_received) r;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Moves the staged rollup rows into service_map_minutes. Returns how many
-- staged rows it merged.
CREATE FUNCTION @extschema@._rollup_merge_staged() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM @extschema@._service_map_staged;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    WITH moved AS (DELETE FROM @extschema@._service_map_staged RETURNING *)
    INSERT INTO @extschema@.service_map_minutes AS m (minute, src_id, dst_id, bucket, src_title,
        src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, bytes_received,
        client_node)
    SELECT s.minute, s.src_id, s.dst_id, s.bucket, min(s.src_title), min(s.src_subtitle),
           min(s.dst_title), min(s.dst_subtitle), sum(s.spans)::bigint, sum(s.errors)::bigint,
           sum(s.bytes_sent)::bigint, sum(s.bytes_received)::bigint, s.client_node
    FROM moved s
    GROUP BY 1, 2, 3, 4, 13
    ORDER BY 1, 2, 3, 4, 13
    ON CONFLICT (minute, src_id, dst_id, bucket, client_node) DO UPDATE
    SET spans = m.spans + EXCLUDED.spans, errors = m.errors + EXCLUDED.errors,
        bytes_sent = m.bytes_sent + EXCLUDED.bytes_sent,
        bytes_received = m.bytes_received + EXCLUDED.bytes_received;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION @extschema@._pods_upsert(text[], text[], text[], text[], text[], text[],
    text[], text[], boolean[], text[], timestamptz[], timestamptz[], timestamptz[],
    timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._rollup_rows(timestamptz[], smallint[], text[], text[],
    text[], text[], text[], inet[], text[], text[], text[], text[], text[], inet[], bigint[],
    bigint[], bigint[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._rollup_add(timestamptz[], smallint[], text[], text[],
    text[], text[], text[], inet[], text[], text[], text[], text[], text[], inet[], bigint[],
    bigint[], bigint[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._rollup_stage(timestamptz[], smallint[], text[], text[],
    text[], text[], text[], inet[], text[], text[], text[], text[], text[], inet[], bigint[],
    bigint[], bigint[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._rollup_merge_staged() FROM PUBLIC;

-- The rollup rows of the spans that started in [window_start, window_end),
-- read from the spans table: 0.1's, with the client node.
DROP FUNCTION @extschema@._service_map_rollup_of_spans(timestamptz, timestamptz);
CREATE FUNCTION @extschema@._service_map_rollup_of_spans(
    window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    minute timestamptz, src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint, client_node text)
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
           coalesce(sum(s.bytes_received) FILTER (WHERE s.protocol = 'tcp'), 0)::bigint,
           @extschema@._service_map_client_node(s.src_pod, s.src_node)
    FROM @extschema@.spans s
    WHERE s.start_time >= window_start AND s.start_time < window_end
      AND s.protocol IN ('http', 'tcp')
    GROUP BY 1, 2, 3, 4, 13
$$;
REVOKE ALL ON FUNCTION @extschema@._service_map_rollup_of_spans(timestamptz, timestamptz)
    FROM PUBLIC;

-- Recomputes the rollup of the whole minutes that [window_start,
-- window_end) touches from the spans table; staged rows of those minutes are
-- dropped with the old rollup rows (their spans are counted from the table).
CREATE OR REPLACE FUNCTION @extschema@.service_map_refresh(window_start timestamptz,
                                                           window_end timestamptz)
RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_minute timestamptz;
    end_minute timestamptz;
    written bigint;
BEGIN
    IF window_start IS NULL OR window_end IS NULL OR window_end < window_start
       OR NOT isfinite(window_start) OR NOT isfinite(window_end) THEN
        RAISE EXCEPTION 'service_map_refresh needs a finite window with window_start <= window_end'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    first_minute := @extschema@._service_map_minute(window_start);
    end_minute := @extschema@._service_map_minute(window_end);
    IF end_minute < window_end THEN
        end_minute := end_minute + interval '1 minute';
    END IF;
    LOCK TABLE @extschema@.service_map_minutes IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE @extschema@._service_map_staged IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM @extschema@.service_map_minutes m
        WHERE m.minute >= first_minute AND m.minute < end_minute;
    DELETE FROM @extschema@._service_map_staged m
        WHERE m.minute >= first_minute AND m.minute < end_minute;
    INSERT INTO @extschema@.service_map_minutes (minute, src_id, dst_id, bucket, src_title,
        src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, bytes_received,
        client_node)
    SELECT r.minute, r.src_id, r.dst_id, r.bucket, r.src_title, r.src_subtitle, r.dst_title,
           r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received, r.client_node
    FROM @extschema@._service_map_rollup_of_spans(first_minute, end_minute) r;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;


-- ============================================================================
-- No function of the extension runs code found on its caller's search_path
-- ============================================================================
--
-- A function or operator that a database owner creates in a schema on the
-- search_path of a superuser (or of the capture worker) must never stand in
-- for a built-in one in the extension's SQL: it would run as that superuser.
-- The small functions the planner inlines into every row of the service map
-- get SQL-standard bodies, bound when this script runs (with pg_catalog alone
-- on the search_path) and still inlined; every other function gets its own
-- search_path.

CREATE OR REPLACE FUNCTION @extschema@._service_map_node_id(
    namespace text, workload text, pod text, node text, addr inet)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN workload IS NOT NULL THEN coalesce(namespace, '') || '/' || workload
    WHEN pod IS NOT NULL THEN coalesce(namespace, '') || '/' || pod
    WHEN node IS NOT NULL THEN 'node:' || node
    ELSE host(addr)
END;

CREATE OR REPLACE FUNCTION @extschema@._service_map_node_title(
    workload text, pod text, node text, addr inet)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(workload, pod, node, host(addr));

CREATE OR REPLACE FUNCTION @extschema@._service_map_node_subtitle(
    namespace text, workload text, workload_kind text, pod text, node text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN workload IS NOT NULL
        THEN coalesce(namespace, '') || ' · ' || coalesce(workload_kind, 'workload')
    WHEN pod IS NOT NULL THEN coalesce(namespace, '') || ' · Pod'
    WHEN node IS NOT NULL THEN 'Node'
    ELSE 'address'
END;

CREATE OR REPLACE FUNCTION @extschema@._service_map_num(x double precision)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN x IS NULL OR x = 'NaN'::float8 THEN NULL
    WHEN x = 0 THEN '0'
    ELSE trim_scale(round(x::numeric, greatest(0, 2 - floor(log(abs(x)::numeric))::int)))::text
END;

CREATE OR REPLACE FUNCTION @extschema@._service_map_minute(t timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin('1 minute', t, '2000-01-01 00:00:00+00'::timestamptz);

CREATE OR REPLACE FUNCTION @extschema@._service_map_bucket(latency interval)
RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN least(112::float8, greatest(1::float8, 1::float8 + floor(
           4::float8 * ln(greatest((extract(epoch FROM latency) * 1000000)::float8, 1::float8))
           / 0.6931471805599453::float8)))::smallint;

CREATE OR REPLACE FUNCTION @extschema@._service_map_dot_quote(s text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '"' || regexp_replace(
           replace(replace(replace(s, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n'),
           E'[\\r\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]', ' ', 'g') || '"';

ALTER FUNCTION @extschema@.capture_start(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.capture_stop(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._service_map_rollup_of_spans(timestamptz, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._service_map_window(timestamptz, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@._service_map_quantile(double precision, smallint[], bigint[])
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_edges(timestamptz, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_edges(interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_nodes(timestamptz, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_nodes(interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_dot(timestamptz, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.service_map_dot(interval) SET search_path = pg_catalog, pg_temp;

-- ============================================================================
-- OTLP export (docs/otlp.md)
-- ============================================================================
--
-- With ebpf_capture.otlp_endpoint set, the worker encodes each batch of spans
-- it writes as one OTLP request and stores it here, in the same transaction
-- as the spans: whatever is in spans is in the outbox too, and survives a
-- restart with it. The worker sends the rows in order and deletes each one
-- the endpoint accepted (or refused for good): delivery is at least once.
-- The table is bounded by ebpf_capture.otlp_max_queue_size; beyond it the
-- oldest rows go (counted in capture_status().otlp_dropped). Not dumped: a
-- restored database starts with an empty queue.
CREATE TABLE @extschema@._otlp_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    interface        text NOT NULL,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    spans            int NOT NULL,
    content_type     text NOT NULL,
    content_encoding text,
    body             bytea NOT NULL
);
-- the bodies are compressed already (gzip), or protobuf that TOAST would
-- compress poorly: stored as they are
ALTER TABLE @extschema@._otlp_outbox ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX _otlp_outbox_interface_idx ON @extschema@._otlp_outbox (interface, id);
REVOKE ALL ON @extschema@._otlp_outbox FROM PUBLIC;

-- The exporters' state in shared memory, one row per capture slot in use.
CREATE FUNCTION @extschema@._otlp_slots(
    OUT interface text, OUT otlp_state text, OUT otlp_exported bigint, OUT otlp_failed bigint,
    OUT otlp_dropped bigint, OUT otlp_queued bigint, OUT otlp_queued_bytes bigint,
    OUT otlp_requests bigint, OUT otlp_retries bigint, OUT otlp_cpu_us bigint,
    OUT otlp_last_error text)
RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'ebpf_capture_otlp_slots';
REVOKE ALL ON FUNCTION @extschema@._otlp_slots() FROM PUBLIC;


-- Every counter of the exporters, for the benchmark and for monitoring
-- (requests, retries, CPU time, bytes queued).
CREATE FUNCTION @extschema@.otlp_status(
    OUT interface text, OUT state text, OUT exported bigint, OUT failed bigint,
    OUT dropped bigint, OUT queued bigint, OUT queued_bytes bigint, OUT requests bigint,
    OUT retries bigint, OUT cpu_us bigint, OUT last_error text)
RETURNS SETOF record LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT o.interface, o.otlp_state, o.otlp_exported, o.otlp_failed, o.otlp_dropped,
           o.otlp_queued, o.otlp_queued_bytes, o.otlp_requests, o.otlp_retries, o.otlp_cpu_us,
           o.otlp_last_error
    FROM @extschema@._otlp_slots() o ORDER BY o.interface;
END;
REVOKE ALL ON FUNCTION @extschema@.otlp_status() FROM PUBLIC;

-- ============================================================================
-- The hub: one database that reads every node's (docs/hub.md)
-- ============================================================================
--
-- hub_start() in a database of a server with the extension preloaded makes
-- it a hub: a background worker (extension/pg/hub_worker.cpp) finds the node
-- databases through the Kubernetes API (the ebpf_capture DaemonSet's pods)
-- and keeps, for each, a postgres_fdw foreign server and two foreign tables
-- (its rollup and its spans) in the schema ebpf_capture_hub, and hub_nodes
-- in step with what the API says. The service map functions and
-- trace_spans() of a hub read the nodes through them, each node's share
-- aggregated on the node; nothing is copied. A node that does not answer is
-- left out and named (hub_status(), the map's title, a node of the map).
-- A request between pods on two nodes is seen by both nodes' captures: the
-- hub counts the client node's record (service_map_minutes.client_node;
-- spans: src_pod and src_node), and the server node's only while the
-- client node does not answer.

-- The switch: one row, written by hub_start() and hub_stop(); the worker
-- writes what its discovery says.
CREATE TABLE @extschema@.hub (
    one               boolean PRIMARY KEY DEFAULT true CHECK (one),
    enabled           boolean NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now(),
    discovery_state   text,         -- syncing, synced, stale, failing, disabled
    discovery_error   text,
    discovery_pods    int,          -- pods the selector matches
    worker_started_at timestamptz
);
COMMENT ON TABLE @extschema@.hub IS
  'Whether this database is a hub (hub_start/hub_stop) and what its discovery says.';
REVOKE ALL ON @extschema@.hub FROM PUBLIC;

-- The node databases the hub reads, one per Kubernetes node: written by the
-- hub worker only.
CREATE TABLE @extschema@.hub_nodes (
    pod_uid        text PRIMARY KEY,
    pod_namespace  text NOT NULL,
    pod_name       text NOT NULL,
    node           text NOT NULL UNIQUE,  -- the Kubernetes node: spans' src_node/dst_node
    host           text NOT NULL,
    port           int NOT NULL,
    database       text NOT NULL,
    server         name NOT NULL UNIQUE,  -- its foreign server (and its tables' prefix)
    state          text NOT NULL CHECK (state IN ('new', 'up', 'down')),
    state_since    timestamptz NOT NULL DEFAULT now(),
    last_contact   timestamptz,           -- the last probe that got an answer
    last_error     text,
    last_error_at  timestamptz,
    newest_minute  timestamptz,           -- the newest minute of its rollup, at the last probe
    probes         bigint NOT NULL DEFAULT 0,
    failed_probes  bigint NOT NULL DEFAULT 0,
    added_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.hub_nodes IS
  'The node databases a hub reads (its worker keeps this table in step with the Kubernetes API).';
REVOKE ALL ON @extschema@.hub_nodes FROM PUBLIC;

-- What the hub reads from each node: the rollup's columns by name (foreign
-- tables name their remote columns), and every column of spans.
CREATE TYPE @extschema@._hub_map_row AS (
    node text, src_id text, dst_id text, bucket smallint, client_node text,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint);
CREATE TYPE @extschema@._hub_span_row AS (node text, span @extschema@.spans);

-- Whether this database is a hub now (a definer's function: Grafana's role
-- reads the map, not the hub table).
CREATE FUNCTION @extschema@._hub_active() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce((SELECT h.enabled FROM @extschema@.hub h), false);
END;

CREATE FUNCTION @extschema@.hub_start() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('ebpf_capture.database', true) IS NULL THEN
        RAISE EXCEPTION 'ebpf_capture is not loaded via shared_preload_libraries'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add shared_preload_libraries = ''ebpf_capture'' to postgresql.conf '
                         '(keep any libraries already listed there) and restart the server.';
    END IF;
    IF current_database() <> current_setting('ebpf_capture.database') THEN
        RAISE EXCEPTION 'the hub runs in database "%" (ebpf_capture.database), not in "%"',
            current_setting('ebpf_capture.database'), current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF (SELECT count(*) FROM pg_available_extensions
        WHERE name IN ('postgres_fdw', 'dblink')) < 2 THEN
        RAISE EXCEPTION 'the hub needs postgres_fdw and dblink, which this server does not have'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Install PostgreSQL''s contrib modules (Debian: postgresql-15).';
    END IF;
    CREATE EXTENSION IF NOT EXISTS postgres_fdw SCHEMA @extschema@;
    CREATE EXTENSION IF NOT EXISTS dblink SCHEMA @extschema@;
    INSERT INTO @extschema@.hub AS h (enabled) VALUES (true)
        ON CONFLICT (one) DO UPDATE SET enabled = true, changed_at = now()
        WHERE NOT h.enabled;
    PERFORM @extschema@._capture_wake();
END
$$;

-- Ends the hub: its worker drops what it made for the nodes and exits.
-- Returns false if it was not running.
CREATE FUNCTION @extschema@.hub_stop() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.hub SET enabled = false, changed_at = now() WHERE enabled;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@._capture_wake();
    RETURN true;
END
$$;

-- One row per node database the hub reads.
CREATE FUNCTION @extschema@.hub_status(
    OUT node text, OUT pod text, OUT address text, OUT database text, OUT state text,
    OUT state_since timestamptz, OUT last_contact timestamptz, OUT last_error text,
    OUT last_error_at timestamptz, OUT newest_minute timestamptz, OUT probes bigint,
    OUT failed_probes bigint)
RETURNS SETOF record LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT n.node, n.pod_namespace || '/' || n.pod_name,
           CASE WHEN n.host LIKE '%:%' THEN '[' || n.host || ']' ELSE n.host END
               || ':' || n.port,
           n.database, n.state, n.state_since, n.last_contact, n.last_error,
           n.last_error_at, n.newest_minute, n.probes, n.failed_probes
    FROM @extschema@.hub_nodes n
    ORDER BY n.node;
END;

-- One row: the hub's switch, its worker and its discovery.
CREATE FUNCTION @extschema@.hub_summary(
    OUT enabled boolean, OUT worker_pid int, OUT worker_started_at timestamptz,
    OUT discovery_state text, OUT discovery_error text, OUT discovery_pods int,
    OUT nodes int, OUT nodes_up int, OUT nodes_missing text[])
RETURNS record LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT coalesce(h.enabled, false),
           (SELECT a.pid FROM pg_stat_activity a
            WHERE a.backend_type = 'ebpf_capture hub' AND a.datname = current_database()
            LIMIT 1),
           h.worker_started_at, h.discovery_state, h.discovery_error, h.discovery_pods,
           (SELECT count(*)::int FROM @extschema@.hub_nodes),
           (SELECT count(*)::int FROM @extschema@.hub_nodes n WHERE n.state = 'up'),
           ARRAY(SELECT n.node FROM @extschema@.hub_nodes n WHERE n.state <> 'up'
                 ORDER BY n.node)
    FROM (SELECT) AS one LEFT JOIN @extschema@.hub h ON true;
END;

-- ---- what the hub worker runs --------------------------------------------

-- postgres_fdw's options for a node's foreign server: where it is, and the
-- bounds that keep a node that is slow, gone or cut off from holding a hub
-- query (docs/hub.md, "Timeouts").
CREATE FUNCTION @extschema@._hub_server_options(host text, port int, database text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    query_ms bigint := (extract(epoch FROM coalesce(
                           nullif(current_setting('ebpf_capture.hub_query_timeout', true),
                                  '')::interval, interval '10 s')) * 1000)::bigint;
    connect_s int := greatest(2, ceil(extract(epoch FROM coalesce(
                        nullif(current_setting('ebpf_capture.hub_connect_timeout', true),
                               '')::interval, interval '3 s')))::int);
    keepidle int := greatest(1, (query_ms / 2000)::int);
    keepintvl int := greatest(1, (query_ms / 4000)::int);
BEGIN
    RETURN format('host %L, port %L, dbname %L, connect_timeout %L, keepalives %L, '
                  'keepalives_idle %L, keepalives_interval %L, keepalives_count %L, '
                  'tcp_user_timeout %L, sslmode %L, application_name %L, options %L, '
                  'async_capable %L, fetch_size %L, updatable %L',
                  host, port::text, database, connect_s::text, '1', keepidle::text,
                  keepintvl::text, '2', query_ms::text,
                  coalesce(nullif(current_setting('ebpf_capture.hub_sslmode', true), ''),
                           'prefer'),
                  'ebpf_capture hub',
                  format('-c statement_timeout=%s -c default_transaction_read_only=on',
                         query_ms),
                  'true', '10000', 'false');
END
$$;

-- Makes what the hub needs to read a node: its foreign server, a user
-- mapping for every local role with the hub role's password, its two
-- foreign tables, its row of hub_nodes (state 'new' until a probe answers).
-- The remote schema is where the extension is on the hub (the nodes run
-- the same image).
CREATE FUNCTION @extschema@._hub_add_node(
    a_uid text, a_namespace text, a_pod text, a_node text, a_host text, a_port int,
    a_database text, a_user text, a_password text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv name := 'ebpfc_node_' || substr(md5(a_uid), 1, 20);
BEGIN
    CREATE SCHEMA IF NOT EXISTS ebpf_capture_hub;
    REVOKE ALL ON SCHEMA ebpf_capture_hub FROM PUBLIC;
    EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER postgres_fdw OPTIONS (%s)', srv,
                   @extschema@._hub_server_options(a_host, a_port, a_database));
    PERFORM @extschema@._hub_map_user(srv, a_user, a_password);
    EXECUTE format('CREATE FOREIGN TABLE ebpf_capture_hub.%I (minute timestamptz, '
                   'src_id text, dst_id text, bucket smallint, src_title text, '
                   'src_subtitle text, dst_title text, dst_subtitle text, spans bigint, '
                   'errors bigint, bytes_sent bigint, bytes_received bigint, '
                   'client_node text) SERVER %I OPTIONS (schema_name %L, '
                   'table_name %L)', srv || '_minutes', srv, '@extschema@',
                   'service_map_minutes');
    EXECUTE format('CREATE FOREIGN TABLE ebpf_capture_hub.%I (%s) SERVER %I OPTIONS '
                   '(schema_name %L, table_name %L)', srv || '_spans',
                   (SELECT string_agg(format('%I %s', a.attname,
                                             format_type(a.atttypid, a.atttypmod)),
                                      ', ' ORDER BY a.attnum)
                    FROM pg_attribute a
                    WHERE a.attrelid = '@extschema@.spans'::regclass AND a.attnum > 0
                      AND NOT a.attisdropped),
                   srv, '@extschema@', 'spans');
    INSERT INTO @extschema@.hub_nodes (pod_uid, pod_namespace, pod_name, node, host, port,
                                      database, server, state)
    VALUES (a_uid, a_namespace, a_pod, a_node, a_host, a_port, a_database, srv, 'new');
END
$$;

-- Another address, port or database for a node (the same pod).
CREATE FUNCTION @extschema@._hub_move_node(a_uid text, a_host text, a_port int,
                                          a_database text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv name;
BEGIN
    SELECT n.server INTO srv FROM @extschema@.hub_nodes n WHERE n.pod_uid = a_uid;
    IF srv IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER SERVER %I OPTIONS (SET host %L, SET port %L, SET dbname %L)', srv,
                   a_host, a_port::text, a_database);
    UPDATE @extschema@.hub_nodes
    SET host = a_host, port = a_port, database = a_database, state = 'new',
        state_since = now()
    WHERE pod_uid = a_uid;
END
$$;

-- Closes this session's dblink connection to a node's server, if open.
CREATE FUNCTION @extschema@._hub_disconnect(srv name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text := @extschema@._hub_dblink();
    conns text[];
BEGIN
    IF d IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT %s.dblink_get_connections()', d) INTO conns;
    IF srv = ANY (coalesce(conns, '{}')) THEN
        EXECUTE format('SELECT %s.dblink_disconnect(%L)', d, srv);
    END IF;
END
$$;

-- Forgets a node: its server, mapping and tables go. This session's
-- connection to it closes now; another session's closes at its next hub
-- query (dblink) or as it sees the drop (postgres_fdw).
CREATE FUNCTION @extschema@._hub_drop_node(a_uid text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv name;
BEGIN
    DELETE FROM @extschema@.hub_nodes n WHERE n.pod_uid = a_uid RETURNING n.server INTO srv;
    IF srv IS NOT NULL THEN
        PERFORM @extschema@._hub_disconnect(srv);
        EXECUTE format('DROP SERVER IF EXISTS %I CASCADE', srv);
    END IF;
END
$$;

-- Everything the hub made: on hub_stop(), and at the start of a worker for
-- servers of nodes hub_nodes does not know (a crash between the two).
CREATE FUNCTION @extschema@._hub_drop_unknown(everything boolean) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv name;
    n int := 0;
BEGIN
    IF everything THEN
        DELETE FROM @extschema@.hub_nodes;
    END IF;
    FOR srv IN
        SELECT s.srvname FROM pg_foreign_server s
        WHERE s.srvname LIKE 'ebpfc\_node\_%'
          AND NOT EXISTS (SELECT FROM @extschema@.hub_nodes h WHERE h.server = s.srvname)
    LOOP
        PERFORM @extschema@._hub_disconnect(srv);
        EXECUTE format('DROP SERVER %I CASCADE', srv);
        n := n + 1;
    END LOOP;
    IF everything THEN
        DROP SCHEMA IF EXISTS ebpf_capture_hub CASCADE;
    END IF;
    RETURN n;
END
$$;

-- The user mapping of a node's server, for every local role: the hub's
-- role on the nodes and its password (none: no password option).
CREATE FUNCTION @extschema@._hub_map_user(srv name, a_user text, a_password text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP USER MAPPING IF EXISTS FOR PUBLIC SERVER %I', srv);
    IF a_password IS NULL OR a_password = '' THEN
        EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER %I OPTIONS (user %L)', srv, a_user);
    ELSE
        EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER %I OPTIONS (user %L, password %L)',
                       srv, a_user, a_password);
    END IF;
END
$$;

-- A new role or password (the Secret's file changed): every node's mapping.
CREATE FUNCTION @extschema@._hub_set_login(a_user text, a_password text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    srv name;
BEGIN
    FOR srv IN SELECT n.server FROM @extschema@.hub_nodes n LOOP
        PERFORM @extschema@._hub_map_user(srv, a_user, a_password);
    END LOOP;
END
$$;

-- Asks one node (through dblink, as the hub's queries do, on a connection
-- the worker keeps) for the newest minute of its rollup and whether the hub
-- may run _service_map_window_of there (which needs the connection, the
-- login, the grants and this version of the extension), and records the
-- answer, or the error, in hub_nodes. Returns the new state.
CREATE FUNCTION @extschema@._hub_probe(a_uid text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text := @extschema@._hub_dblink();
    srv name;
    conns text[];
    kept boolean;
    attempt int;
    newest timestamptz;
    allowed boolean;
    message text;
    detail text;
BEGIN
    SELECT n.server INTO srv FROM @extschema@.hub_nodes n WHERE n.pod_uid = a_uid;
    IF srv IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s.dblink_get_connections()', d) INTO conns;
    kept := srv = ANY (coalesce(conns, '{}'));
    FOR attempt IN 1 .. 2 LOOP
        BEGIN
            IF NOT kept THEN
                EXECUTE format('SELECT %s.dblink_connect(%L, %L)', d, srv, srv);
            END IF;
            EXECUTE format('SELECT t.newest, t.allowed FROM %s.dblink(%L, %L) '
                           'AS t(newest timestamptz, allowed boolean)', d, srv,
                           'SELECT (SELECT max(m.minute) FROM @extschema@.service_map_minutes m '
                           'WHERE m.client_node IS NOT NULL), has_function_privilege('
                           '''@extschema@._service_map_window_of(timestamptz, timestamptz)'', '
                           '''EXECUTE'')')
                INTO newest, allowed;
            IF NOT allowed THEN
                RAISE EXCEPTION 'the hub''s role may not run _service_map_window_of there '
                                '(is ebpf_capture.hub_access on?)';
            END IF;
            message := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            message := message || coalesce(': ' || nullif(detail, ''), '');
            PERFORM @extschema@._hub_disconnect(srv);
        END;
        -- a connection kept from an earlier probe may be dead (the node
        -- restarted since): once more, anew
        EXIT WHEN message IS NULL OR NOT kept;
        kept := false;
    END LOOP;
    IF message IS NOT NULL THEN
        UPDATE @extschema@.hub_nodes n
        SET state = 'down', state_since = CASE WHEN n.state = 'down' THEN n.state_since
                                               ELSE now() END,
            last_error = left(message, 1000), last_error_at = now(), probes = n.probes + 1,
            failed_probes = n.failed_probes + 1
        WHERE n.pod_uid = a_uid;
        RETURN 'down';
    END IF;
    UPDATE @extschema@.hub_nodes n
    SET state = 'up', state_since = CASE WHEN n.state = 'up' THEN n.state_since ELSE now() END,
        last_contact = now(), newest_minute = newest, probes = n.probes + 1
    WHERE n.pod_uid = a_uid;
    RETURN 'up';
END
$$;

-- The hub worker's view of its discovery.
CREATE FUNCTION @extschema@._hub_set_discovery(a_state text, a_error text, a_pods int,
                                              a_started timestamptz)
RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    UPDATE @extschema@.hub
    SET discovery_state = a_state, discovery_error = a_error, discovery_pods = a_pods,
        worker_started_at = coalesce(a_started, worker_started_at);
END;

-- ---- reading the nodes ---------------------------------------------------
--
-- The hub asks every node at once with dblink's asynchronous queries, over
-- the same foreign servers and user mappings (dblink connects by server
-- name, with the server's timeouts). Not through postgres_fdw scans: with
-- PostgreSQL 15's postgres_fdw a node whose connection dies during a query
-- leaves its connection in a state that fails the whole transaction at
-- commit ("cannot be used due to abort cleanup failure"), however the
-- error was caught; a dblink connection is no part of the local
-- transaction, so a node that dies costs only its own share (docs/hub.md).
-- Each session keeps one connection per node (named after its server).

-- dblink's schema, quoted (the hub creates it in the extension's; one made
-- before may be elsewhere).
CREATE FUNCTION @extschema@._hub_dblink() RETURNS text
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n
        ON n.oid = e.extnamespace WHERE e.extname = 'dblink';
END;

-- Asks every node its query at once and collects the answers: one row per
-- answer row, made by `rowexpr` from the columns `coldefs` (t.*), of the
-- element type of `got`. A node that cannot be reached, or fails, or whose
-- connection dies, is in `failed`; a connection kept from an earlier query
-- that turns out dead is opened anew once before the node counts as failed.
CREATE FUNCTION @extschema@._hub_gather(servers text[], nodes text[], queries text[],
                                       coldefs text, rowexpr text, sample anyelement,
                                       OUT got anyarray, OUT answered text[],
                                       OUT failed text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text := @extschema@._hub_dblink();
    open_conns text[];
    fresh boolean[] := '{}';
    sent boolean[] := '{}';
    one got%TYPE;
    message text;
    detail text;
    i int;
    attempt int;
    collect constant text := 'SELECT array_agg(%s) FROM %s.dblink_get_result(%L) AS t(%s)';
BEGIN
    answered := '{}';
    failed := '{}';
    IF d IS NULL THEN
        RAISE EXCEPTION 'the hub needs the dblink extension (hub_start() creates it)';
    END IF;
    EXECUTE format('SELECT %s.dblink_get_connections()', d) INTO open_conns;
    open_conns := coalesce(open_conns, '{}');
    -- connections to servers gone (nodes that left) are closed
    FOR i IN SELECT generate_subscripts(open_conns, 1) LOOP
        IF open_conns[i] LIKE 'ebpfc\_node\_%'
           AND NOT EXISTS (SELECT FROM @extschema@.hub_nodes h
                           WHERE h.server = open_conns[i]) THEN
            EXECUTE format('SELECT %s.dblink_disconnect(%L)', d, open_conns[i]);
        END IF;
    END LOOP;
    -- send every node its query
    FOR i IN 1 .. coalesce(cardinality(servers), 0) LOOP
        sent[i] := false;
        fresh[i] := NOT servers[i] = ANY (open_conns);
        FOR attempt IN 1 .. 2 LOOP
            BEGIN
                IF fresh[i] THEN
                    EXECUTE format('SELECT %s.dblink_connect(%L, %L)', d, servers[i], servers[i]);
                END IF;
                EXECUTE format('SELECT %s.dblink_send_query(%L, %L)', d, servers[i], queries[i]);
                sent[i] := true;
            EXCEPTION WHEN query_canceled THEN
                RAISE;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                message := message || coalesce(': ' || nullif(detail, ''), '');
                PERFORM @extschema@._hub_disconnect(servers[i]);
            END;
            EXIT WHEN sent[i] OR fresh[i];
            fresh[i] := true;  -- a dead kept connection: once more, anew
        END LOOP;
        IF NOT sent[i] THEN
            failed := failed || nodes[i];
            RAISE WARNING 'ebpf_capture hub: node "%" did not answer: %', nodes[i], message;
        END IF;
    END LOOP;
    -- collect the answers, in the order sent (they were computed meanwhile)
    FOR i IN 1 .. coalesce(cardinality(servers), 0) LOOP
        CONTINUE WHEN NOT sent[i];
        FOR attempt IN 1 .. 2 LOOP
            BEGIN
                IF attempt = 2 THEN
                    EXECUTE format('SELECT %s.dblink_connect(%L, %L)', d, servers[i], servers[i]);
                    EXECUTE format('SELECT %s.dblink_send_query(%L, %L)', d, servers[i],
                                   queries[i]);
                END IF;
                EXECUTE format(collect, rowexpr, d, servers[i], coldefs) INTO one;
                -- the empty result that frees the connection for the next query
                EXECUTE format(collect, rowexpr, d, servers[i], coldefs);
                got := got || one;
                answered := answered || nodes[i];
                message := NULL;
            EXCEPTION WHEN query_canceled THEN
                RAISE;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                message := message || coalesce(': ' || nullif(detail, ''), '');
                PERFORM @extschema@._hub_disconnect(servers[i]);
            END;
            EXIT WHEN message IS NULL OR fresh[i];
            fresh[i] := true;
        END LOOP;
        IF message IS NOT NULL THEN
            failed := failed || nodes[i];
            RAISE WARNING 'ebpf_capture hub: node "%" did not answer: %', nodes[i], message;
        END IF;
    END LOOP;
END
$$;

-- Says which nodes an answer left out, for the rest of the transaction
-- (the map's coverage node and the DOT title read it: _hub_coverage).
CREATE FUNCTION @extschema@._hub_note_coverage(answered text[], missing text[])
RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    SELECT set_config('ebpf_capture_hub.answered', cardinality(answered)::text, true),
           set_config('ebpf_capture_hub.missing', array_to_string(missing, ','), true);
END;

-- The nodes of the last hub answer in this transaction: how many answered,
-- and which did not. NULL outside a hub answer.
CREATE FUNCTION @extschema@._hub_coverage(OUT answered int, OUT missing text[])
RETURNS record
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT nullif(current_setting('ebpf_capture_hub.answered', true), '')::int,
           string_to_array(nullif(current_setting('ebpf_capture_hub.missing', true), ''),
                           ',');
END;

-- A time as text any server reads the same, whatever its DateStyle and
-- TimeZone (for the nodes' queries).
CREATE FUNCTION @extschema@._hub_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE
RETURN CASE WHEN isfinite(t)
            THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
            ELSE t::text END;

-- The nodes a hub asks now (those whose last probe answered) and the
-- others, read together: a probe that changes a node's state meanwhile
-- does not make it both answered and missing.
CREATE FUNCTION @extschema@._hub_asked(OUT servers text[], OUT nodes text[],
                                      OUT others text[])
RETURNS record
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT coalesce(array_agg(h.server::text ORDER BY h.node) FILTER (WHERE h.state = 'up'),
                    '{}'),
           coalesce(array_agg(h.node ORDER BY h.node) FILTER (WHERE h.state = 'up'), '{}'),
           coalesce(array_agg(h.node ORDER BY h.node) FILTER (WHERE h.state <> 'up'), '{}')
    FROM @extschema@.hub_nodes h;
END;

-- The nodes an answer left out: those not asked and those that failed.
CREATE FUNCTION @extschema@._hub_missing(others text[], failed text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT coalesce(array_agg(n ORDER BY n), '{}')
    FROM (SELECT unnest(others) UNION SELECT unnest(failed)) AS u(n);
END;

-- The cluster's rollup rows of the window [window_start, window_end),
-- summed over minutes, as _service_map_window gives a node's: every node
-- that answers computes its share (_service_map_window_of: whole minutes
-- from its rollup, the partial minutes at the ends from its spans); a
-- node's record of a request whose client is a pod on another node that
-- answered is left out (that node's record counts).
CREATE FUNCTION @extschema@._hub_window(window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked record;
    queries text[];
    r record;
BEGIN
    SELECT * INTO asked FROM @extschema@._hub_asked();
    queries := ARRAY(
        SELECT format('SELECT %L::text, w.src_id, w.dst_id, w.bucket, w.client_node, '
                      'w.src_title, w.src_subtitle, w.dst_title, w.dst_subtitle, w.spans, '
                      'w.errors, w.bytes_sent, w.bytes_received '
                      'FROM @extschema@._service_map_window_of(%L, %L) w',
                      n, @extschema@._hub_time(window_start), @extschema@._hub_time(window_end))
        FROM unnest(asked.nodes) WITH ORDINALITY AS u(n, o) ORDER BY o);
    SELECT * INTO r FROM @extschema@._hub_gather(
        asked.servers, asked.nodes, queries,
        'node text, src_id text, dst_id text, bucket smallint, client_node text, '
        'src_title text, src_subtitle text, dst_title text, dst_subtitle text, spans bigint, '
        'errors bigint, bytes_sent bigint, bytes_received bigint',
        'ROW(t.*)::@extschema@._hub_map_row', NULL::@extschema@._hub_map_row);
    PERFORM @extschema@._hub_note_coverage(r.answered,
                                            @extschema@._hub_missing(asked.others, r.failed));
    RETURN QUERY
        SELECT g.src_id, g.dst_id, g.bucket, min(g.src_title), min(g.src_subtitle),
               min(g.dst_title), min(g.dst_subtitle), sum(g.spans)::bigint,
               sum(g.errors)::bigint, sum(g.bytes_sent)::bigint, sum(g.bytes_received)::bigint
        FROM unnest(r.got) g
        WHERE g.client_node = '' OR g.client_node = g.node OR NOT g.client_node = ANY (r.answered)
        GROUP BY g.src_id, g.dst_id, g.bucket;
END
$$;

-- Spans from the nodes that answer, each request once (the rule of
-- _hub_window: a node's record counts when its client node is '', is the
-- node itself, or did not answer): queries[i] is what node nodes[i] (at
-- foreign server servers[i]) runs, and returns (node name, span as text)
-- rows. The nodes that did not answer are noted (_hub_note_coverage).
CREATE FUNCTION @extschema@._hub_spans(servers text[], nodes text[], others text[],
                                      queries text[])
RETURNS SETOF @extschema@.spans
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM @extschema@._hub_gather(
        servers, nodes, queries, 'node text, span text',
        'ROW(t.node, t.span::@extschema@.spans)::@extschema@._hub_span_row',
        NULL::@extschema@._hub_span_row);
    PERFORM @extschema@._hub_note_coverage(r.answered, @extschema@._hub_missing(others, r.failed));
    RETURN QUERY
        SELECT (g.span).*
        FROM unnest(r.got) g
        WHERE @extschema@._service_map_client_node((g.span).src_pod, (g.span).src_node)
                  IN ('', g.node)
           OR NOT @extschema@._service_map_client_node((g.span).src_pod, (g.span).src_node)
                  = ANY (r.answered);
END
$$;
REVOKE ALL ON FUNCTION @extschema@._hub_spans(text[], text[], text[], text[]) FROM PUBLIC;

-- The spans of one trace on every node that answers, each request once
-- (the rule of _hub_window).
CREATE FUNCTION @extschema@._hub_trace(a_trace_id text)
RETURNS SETOF @extschema@.spans
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked record;
BEGIN
    SELECT * INTO asked FROM @extschema@._hub_asked();
    RETURN QUERY
        SELECT * FROM @extschema@._hub_spans(asked.servers, asked.nodes, asked.others, ARRAY(
            SELECT format('SELECT %L::text, s::text FROM @extschema@.spans s '
                          'WHERE s.trace_id = %L', u.node, a_trace_id)
            FROM unnest(asked.nodes) WITH ORDINALITY AS u(node, o) ORDER BY o)) s
        ORDER BY s.start_time, s.span_id;
END
$$;

-- The spans of one trace: this database's, or on a hub every node's.
CREATE FUNCTION @extschema@.trace_spans(trace_id text)
RETURNS SETOF @extschema@.spans
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF @extschema@._hub_active() THEN
        RETURN QUERY SELECT * FROM @extschema@._hub_trace(trace_id);
    ELSE
        RETURN QUERY SELECT s.* FROM @extschema@.spans s WHERE s.trace_id = trace_spans.trace_id
                     ORDER BY s.start_time, s.span_id;
    END IF;
END
$$;

-- The slowest (or, newest, the latest) HTTP exchanges of [window_start,
-- window_end) on every node that answers, of one edge when source/target are
-- given, each request once (the rule of _hub_window): every node sends its n
-- first that it records as the client's node (or that no node's client
-- made) and its n first of the others, which count only when their client's
-- node did not answer. slowest_requests() and recent_requests() on a hub
-- read this.
CREATE FUNCTION @extschema@._hub_requests(window_start timestamptz, window_end timestamptz,
                                         source text, target text, n int, newest boolean)
RETURNS SETOF @extschema@.spans
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked record;
    queries text[];
    cond text;
    first text := CASE WHEN newest THEN 's.start_time DESC, s.span_id'
                       ELSE 's.end_time - s.start_time DESC, s.start_time' END;
BEGIN
    cond := format('s.protocol = %L AND s.start_time >= %L AND s.start_time < %L', 'http',
                   window_start, window_end);
    IF coalesce(source, '') <> '' THEN
        cond := cond || format(' AND @extschema@._service_map_node_id(s.src_namespace, '
                               's.src_workload, s.src_pod, s.src_node, s.src_addr) = %L', source);
    END IF;
    IF coalesce(target, '') <> '' THEN
        cond := cond || format(' AND @extschema@._service_map_node_id(s.dst_namespace, '
                               's.dst_workload, s.dst_pod, s.dst_node, s.dst_addr) = %L', target);
    END IF;
    SELECT * INTO asked FROM @extschema@._hub_asked();
    queries := ARRAY(
        SELECT format('SELECT %1$L::text, x.s::text FROM ('
                      '(SELECT s FROM @extschema@.spans s WHERE %2$s AND '
                      '@extschema@._service_map_client_node(s.src_pod, s.src_node) IN (%3$L, %1$L) '
                      'ORDER BY %5$s LIMIT %4$s) '
                      'UNION ALL '
                      '(SELECT s FROM @extschema@.spans s WHERE %2$s AND '
                      '@extschema@._service_map_client_node(s.src_pod, s.src_node) NOT IN (%3$L, %1$L) '
                      'ORDER BY %5$s LIMIT %4$s)) x',
                      u.node, cond, '', greatest(n, 0), first)
        FROM unnest(asked.nodes) WITH ORDINALITY AS u(node, o) ORDER BY o);
    RETURN QUERY
        SELECT * FROM @extschema@._hub_spans(asked.servers, asked.nodes, asked.others, queries);
END
$$;
REVOKE ALL ON FUNCTION @extschema@._hub_requests(timestamptz, timestamptz, text, text, int,
                                                boolean) FROM PUBLIC;


-- ============================================================================
-- Traces: span trees in SQL and for Grafana's trace view (docs/traces.md)
-- ============================================================================
--
-- An HTTP span that carried trace context (W3C traceparent, or B3) has the
-- caller's id for the request as its span_id and, as its parent, the
-- exchange that entered the calling pod in the same trace while it was
-- served (see docs/traces.md for the rules). Upgrade note: HTTP spans
-- written by 0.1 and by 0.2 before this change have a fresh span_id and the
-- caller's id as parent_span_id, and server.address holding Host as sent
-- ("host:port"); their trees are flat (each span a root, or a child of a
-- span nobody recorded).

-- The spans of a trace as a tree: roots first, each span followed by its
-- children (depth first, siblings by start time). depth is 1 for a root: a
-- span without parent_span_id, or whose parent is not among the trace's
-- spans (the capture did not see it). If a span id occurs twice in the
-- trace, a child hangs under the one that started last at or before it.
-- Every span of the trace is returned once; one caught in a cycle of ids
-- (which the capture never makes) comes last, as a root.
CREATE FUNCTION @extschema@.trace_tree(trace_id text)
RETURNS TABLE (
    depth int, trace_id text, span_id text, parent_span_id text, name text, kind text,
    start_time timestamptz, end_time timestamptz, status text, protocol text, interface text,
    src_addr inet, dst_addr inet, src_port int, dst_port int, bytes_sent bigint,
    bytes_received bigint, packets_sent bigint, packets_received bigint, attributes jsonb,
    http_method text, http_target text, http_status int,
    src_pod text, src_namespace text, src_workload text, src_workload_kind text, src_node text,
    dst_pod text, dst_namespace text, dst_workload text, dst_workload_kind text, dst_node text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH RECURSIVE s AS (
        SELECT sp.*, row_number() OVER (ORDER BY sp.start_time, sp.span_id) AS rn
        FROM @extschema@.trace_spans(trace_tree.trace_id) sp
    ), p AS (
        SELECT c.rn,
               (SELECT q.rn FROM s q
                WHERE q.span_id = c.parent_span_id AND q.rn <> c.rn
                ORDER BY q.start_time <= c.start_time DESC, q.start_time DESC, q.rn
                LIMIT 1) AS prn
        FROM s c
    ), t AS (
        SELECT p.rn, 1 AS depth, ARRAY[p.rn] AS path FROM p WHERE p.prn IS NULL
        UNION ALL
        SELECT p.rn, t.depth + 1, t.path || p.rn
        FROM t JOIN p ON p.prn = t.rn
        WHERE p.rn <> ALL (t.path)
    ), placed AS (
        SELECT t.rn, t.depth, t.path FROM t
        UNION ALL
        SELECT s.rn, 1, ARRAY[(SELECT pg_catalog.count(*) FROM s) + s.rn]
        FROM s WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.rn = s.rn)
    )
    SELECT placed.depth::int, s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind,
           s.start_time, s.end_time, s.status, s.protocol, s.interface, s.src_addr, s.dst_addr,
           s.src_port, s.dst_port, s.bytes_sent, s.bytes_received, s.packets_sent,
           s.packets_received, s.attributes, s.http_method, s.http_target, s.http_status,
           s.src_pod, s.src_namespace, s.src_workload, s.src_workload_kind, s.src_node,
           s.dst_pod, s.dst_namespace, s.dst_workload, s.dst_workload_kind, s.dst_node
    FROM placed JOIN s ON s.rn = placed.rn
    ORDER BY placed.path;
END;

-- Key/value pairs as Grafana's trace view reads them ([{"key": ..., "value":
-- ...}]), from a jsonb object, leaving out null values.
CREATE FUNCTION @extschema@._trace_tags(o jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('key', e.key, 'value', e.value)
                                  ORDER BY e.key)
                 FROM jsonb_each(o) e WHERE jsonb_typeof(e.value) <> 'null'), '[]'::jsonb);

-- A trace in the shape Grafana's trace visualization (the Traces panel, and
-- Explore) reads: one row per span, parents before children. The service of
-- an HTTP span is the server's workload (the span is the server's handling
-- of the request); of a connection span, the client's. startTime is in
-- milliseconds since the epoch, duration in milliseconds. parentSpanID is
-- empty for a span whose parent is not in the trace, so that the view draws
-- it as a root rather than as an orphan.
CREATE FUNCTION @extschema@.trace_view(trace_id text)
RETURNS TABLE ("traceID" text, "spanID" text, "parentSpanID" text, "operationName" text,
               "serviceName" text, "serviceTags" jsonb, "startTime" double precision,
               duration double precision, tags jsonb, kind text, "statusCode" int,
               "statusMessage" text, "traceState" text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT t.trace_id, t.span_id,
           CASE WHEN t.depth > 1 THEN t.parent_span_id END,
           CASE WHEN t.protocol = 'http'
                THEN t.name || coalesce(' ' || split_part(t.http_target, '?', 1), '')
                ELSE t.name END,
           @extschema@._service_map_node_title(v.workload, v.pod, v.node, v.addr),
           @extschema@._trace_tags(jsonb_build_object(
               'service.name', @extschema@._service_map_node_title(v.workload, v.pod, v.node,
                                                                  v.addr),
               'k8s.namespace.name', v.namespace, 'k8s.pod.name', v.pod,
               'k8s.node.name', v.node, 'host.ip', host(v.addr))
               -- k8s.deployment.name, k8s.statefulset.name, ...: the workload
               || CASE WHEN v.workload IS NOT NULL AND v.workload_kind NOT IN ('Pod', 'Node')
                       THEN jsonb_build_object('k8s.' || lower(v.workload_kind) || '.name',
                                               v.workload)
                       ELSE '{}'::jsonb END),
           extract(epoch FROM t.start_time)::double precision * 1000,
           extract(epoch FROM t.end_time - t.start_time)::double precision * 1000,
           @extschema@._trace_tags((t.attributes - 'tracestate') || jsonb_build_object(
               'http.request.method', t.http_method,
               'url.path', split_part(t.http_target, '?', 1),
               'url.query', nullif(substring(t.http_target FROM '\?(.*)$'), ''),
               'http.response.status_code', nullif(t.http_status, 0),
               'client.address', host(t.src_addr), 'client.port', t.src_port,
               'network.peer.address', CASE WHEN t.protocol = 'http' THEN host(t.src_addr)
                                            ELSE host(t.dst_addr) END,
               'network.peer.port', CASE WHEN t.protocol = 'http' THEN t.src_port
                                         ELSE t.dst_port END,
               'server.address', coalesce(t.attributes->>'server.address', host(t.dst_addr)),
               'server.port', coalesce((t.attributes->>'server.port')::int, t.dst_port),
               'peer.service', @extschema@._service_map_node_title(o.workload, o.pod, o.node,
                                                                   o.addr),
               CASE WHEN t.protocol = 'http' THEN 'http.request.body.size'
                    ELSE 'tcp.bytes_sent' END, t.bytes_sent,
               CASE WHEN t.protocol = 'http' THEN 'http.response.body.size'
                    ELSE 'tcp.bytes_received' END, t.bytes_received,
               'interface', t.interface)),
           lower(t.kind),
           CASE t.status WHEN 'ERROR' THEN 2 WHEN 'OK' THEN 1 ELSE 0 END,
           CASE WHEN t.status = 'ERROR' THEN
               CASE WHEN t.http_status >= 500 THEN 'HTTP ' || t.http_status
                    WHEN t.protocol = 'http' THEN 'no response'
                    WHEN t.attributes ? 'tcp.reset_by' THEN 'reset by ' || (t.attributes->>'tcp.reset_by')
                    ELSE 'connection failed' END
           END,
           t.attributes->>'tracestate'
    FROM @extschema@.trace_tree(trace_view.trace_id) t
    -- v: the span's service (the server of an exchange, the client of a
    -- connection); o: the other end
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.protocol = 'http' THEN t.dst_workload ELSE t.src_workload END AS workload,
               CASE WHEN t.protocol = 'http' THEN t.dst_workload_kind ELSE t.src_workload_kind END AS workload_kind,
               CASE WHEN t.protocol = 'http' THEN t.dst_pod ELSE t.src_pod END AS pod,
               CASE WHEN t.protocol = 'http' THEN t.dst_namespace ELSE t.src_namespace END AS namespace,
               CASE WHEN t.protocol = 'http' THEN t.dst_node ELSE t.src_node END AS node,
               CASE WHEN t.protocol = 'http' THEN t.dst_addr ELSE t.src_addr END AS addr) v
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.protocol = 'http' THEN t.src_workload ELSE t.dst_workload END AS workload,
               CASE WHEN t.protocol = 'http' THEN t.src_pod ELSE t.dst_pod END AS pod,
               CASE WHEN t.protocol = 'http' THEN t.src_node ELSE t.dst_node END AS node,
               CASE WHEN t.protocol = 'http' THEN t.src_addr ELSE t.dst_addr END AS addr) o;
END;

-- The slowest (or, newest, the latest) HTTP exchanges of [window_start,
-- window_end), optionally of one edge of the service map (source and target
-- as service_map_edges names them), with their traces: this database's, or
-- on a hub every node's (_hub_requests).
CREATE FUNCTION @extschema@._requests(window_start timestamptz, window_end timestamptz,
                                      source text, target text, n int, newest boolean)
RETURNS TABLE (trace_id text, start_time timestamptz, source text, target text,
               http_method text, http_target text, http_status int, status text,
               latency_ms double precision)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT x.trace_id, x.start_time, x.src, x.dst, x.http_method, x.http_target, x.http_status,
           x.status, x.latency_ms
    FROM (SELECT s.trace_id, s.start_time,
                 @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod,
                                                  s.src_node, s.src_addr) AS src,
                 @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod,
                                                  s.dst_node, s.dst_addr) AS dst,
                 s.http_method, s.http_target, s.http_status, s.status,
                 extract(epoch FROM s.end_time - s.start_time)::double precision * 1000
                     AS latency_ms,
                 s.span_id
          FROM @extschema@.spans s
          WHERE NOT @extschema@._hub_active() AND s.protocol = 'http'
            AND s.start_time >= window_start AND s.start_time < window_end
          UNION ALL
          SELECT s.trace_id, s.start_time,
                 @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod,
                                                  s.src_node, s.src_addr),
                 @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod,
                                                  s.dst_node, s.dst_addr),
                 s.http_method, s.http_target, s.http_status, s.status,
                 extract(epoch FROM s.end_time - s.start_time)::double precision * 1000,
                 s.span_id
          FROM @extschema@._hub_requests(window_start, window_end, _requests.source,
                                         _requests.target, n, newest) s
          WHERE @extschema@._hub_active()) x
    WHERE (_requests.source IS NULL OR _requests.source = '' OR x.src = _requests.source)
      AND (_requests.target IS NULL OR _requests.target = '' OR x.dst = _requests.target)
    ORDER BY CASE WHEN newest THEN NULL ELSE x.latency_ms END DESC,
             CASE WHEN newest THEN x.start_time END DESC,
             CASE WHEN newest THEN x.span_id END,
             x.start_time
    LIMIT greatest(n, 0);
END;

-- The slowest HTTP exchanges of a window, optionally of one edge: what the
-- dashboard's "slowest requests" table lists and its trace view opens.
CREATE FUNCTION @extschema@.slowest_requests(window_start timestamptz, window_end timestamptz,
                                             source text DEFAULT NULL, target text DEFAULT NULL,
                                             n int DEFAULT 50)
RETURNS TABLE (trace_id text, start_time timestamptz, source text, target text,
               http_method text, http_target text, http_status int, status text,
               latency_ms double precision)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM @extschema@._requests(window_start, window_end, source, target, n, false);
END;

-- The latest HTTP exchanges of a window, newest first, optionally of one
-- edge: the dashboard's "recent requests" table.
CREATE FUNCTION @extschema@.recent_requests(window_start timestamptz, window_end timestamptz,
                                            source text DEFAULT NULL, target text DEFAULT NULL,
                                            n int DEFAULT 100)
RETURNS TABLE (trace_id text, start_time timestamptz, source text, target text,
               http_method text, http_target text, http_status int, status text,
               latency_ms double precision)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM @extschema@._requests(window_start, window_end, source, target, n, true);
END;

REVOKE ALL ON FUNCTION @extschema@.trace_tree(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._trace_tags(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.trace_view(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._requests(timestamptz, timestamptz, text, text, int, boolean)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.slowest_requests(timestamptz, timestamptz, text, text, int)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.recent_requests(timestamptz, timestamptz, text, text, int)
    FROM PUBLIC;

-- ---- the service map and traces, on a node or on a hub -------------------

-- A node's own rollup rows of the window [window_start, window_end), summed
-- over minutes, per client node: the rollup for the whole minutes inside
-- the window, the spans table for the partial minutes at its ends (0.1's
-- _service_map_window, and the client node). A hub asks each node for this.
CREATE FUNCTION @extschema@._service_map_window_of(window_start timestamptz,
                                                   window_end timestamptz)
RETURNS TABLE (
    src_id text, dst_id text, bucket smallint, client_node text,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH bounds AS (
        -- [a, b): the whole minutes inside the window (empty when a >= b)
        SELECT @extschema@._service_map_minute(window_start - interval '1 microsecond')
                   + interval '1 minute' AS a,
               @extschema@._service_map_minute(window_end) AS b
    ), parts AS (
        SELECT m.src_id, m.dst_id, m.bucket, m.client_node, m.src_title, m.src_subtitle,
               m.dst_title, m.dst_subtitle, m.spans, m.errors, m.bytes_sent, m.bytes_received
        FROM bounds, @extschema@.service_map_minutes m
        WHERE bounds.a < bounds.b AND m.minute >= bounds.a AND m.minute < bounds.b
        UNION ALL
        SELECT r.src_id, r.dst_id, r.bucket, r.client_node, r.src_title, r.src_subtitle,
               r.dst_title, r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received
        FROM bounds, LATERAL @extschema@._service_map_rollup_of_spans(
                 window_start, least(bounds.a, window_end)) r
        UNION ALL
        SELECT r.src_id, r.dst_id, r.bucket, r.client_node, r.src_title, r.src_subtitle,
               r.dst_title, r.dst_subtitle, r.spans, r.errors, r.bytes_sent, r.bytes_received
        FROM bounds, LATERAL @extschema@._service_map_rollup_of_spans(
                 greatest(bounds.b, least(bounds.a, window_end)), window_end) r
    )
    SELECT p.src_id, p.dst_id, p.bucket, p.client_node, min(p.src_title), min(p.src_subtitle),
           min(p.dst_title), min(p.dst_subtitle), sum(p.spans)::bigint,
           sum(p.errors)::bigint, sum(p.bytes_sent)::bigint, sum(p.bytes_received)::bigint
    FROM parts p
    GROUP BY p.src_id, p.dst_id, p.bucket, p.client_node
$$;
REVOKE ALL ON FUNCTION @extschema@._service_map_window_of(timestamptz, timestamptz) FROM PUBLIC;

-- This database's own rollup rows of a window (all client nodes together).
CREATE FUNCTION @extschema@._service_map_window_local(window_start timestamptz,
                                                      window_end timestamptz)
RETURNS TABLE (
    src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.src_id, w.dst_id, w.bucket, min(w.src_title), min(w.src_subtitle),
           min(w.dst_title), min(w.dst_subtitle), sum(w.spans)::bigint,
           sum(w.errors)::bigint, sum(w.bytes_sent)::bigint, sum(w.bytes_received)::bigint
    FROM @extschema@._service_map_window_of(window_start, window_end) w
    GROUP BY w.src_id, w.dst_id, w.bucket
$$;
REVOKE ALL ON FUNCTION @extschema@._service_map_window_local(timestamptz, timestamptz)
    FROM PUBLIC;

-- The rollup rows of a window: this database's, or on a hub every node's
-- (_hub_window). Everything the map shows is read through here.
CREATE OR REPLACE FUNCTION @extschema@._service_map_window(window_start timestamptz,
                                                          window_end timestamptz)
RETURNS TABLE (
    src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF @extschema@._hub_active() THEN
        RETURN QUERY SELECT * FROM @extschema@._hub_window(window_start, window_end);
    ELSE
        RETURN QUERY SELECT * FROM @extschema@._service_map_window_local(window_start,
                                                                         window_end);
    END IF;
END
$$;

-- The id of the map node by which a hub says that nodes are missing.
CREATE FUNCTION @extschema@._hub_coverage_id() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'hub:missing-nodes';

-- On a hub whose last answer in this transaction left nodes out: one map
-- node that says how many answered and which did not (red arcs: the
-- missing share). Nothing otherwise.
CREATE FUNCTION @extschema@._hub_coverage_node() RETURNS SETOF @extschema@.service_map_node
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT @extschema@._hub_coverage_id(),
           c.answered || ' of ' || (c.answered + cardinality(c.missing)) || ' nodes answered',
           'missing: ' || array_to_string(c.missing, ', '),
           cardinality(c.missing) || ' nodes missing',
           'see hub_status()',
           c.answered::float8 / (c.answered + cardinality(c.missing)),
           cardinality(c.missing)::float8 / (c.answered + cardinality(c.missing)),
           NULL::bigint, NULL::bigint, NULL::float8, NULL::float8, NULL::float8, NULL::float8,
           NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
           NULL::bigint, NULL::bigint
    FROM @extschema@._hub_coverage() c
    WHERE @extschema@._hub_active() AND cardinality(c.missing) > 0;
END;

CREATE OR REPLACE FUNCTION @extschema@.service_map_nodes(window_start timestamptz,
                                                         window_end timestamptz)
RETURNS SETOF @extschema@.service_map_node
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    UNION ALL
    -- after the rows above, so after the window was read: on a hub that
    -- missed nodes, one node that says so (_hub_coverage_node)
    SELECT * FROM @extschema@._hub_coverage_node()
    ORDER BY 1
$$;


-- The same map as Graphviz DOT text (dot -Tpng draws it). On a hub the
-- title says how many nodes answered, and which did not.
CREATE OR REPLACE FUNCTION @extschema@.service_map_dot(window_start timestamptz,
                                                       window_end timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nodes_text text;
    edges_text text;
    title text;
    c record;
BEGIN
    SELECT string_agg('  ' || @extschema@._service_map_dot_quote(n.id)
                      || ' [label=' || @extschema@._service_map_dot_quote(
                             n.title || E'\n' || n.subtitle || E'\n' || n.mainstat
                             || ', ' || n.secondarystat)
                      || CASE WHEN n.arc__errors > 0
                              THEN ', color="#d62728", penwidth=2' ELSE '' END
                      || '];', E'\n' ORDER BY n.id) || E'\n'
    INTO nodes_text
    FROM @extschema@.service_map_nodes(window_start, window_end) n
    WHERE n.id <> @extschema@._hub_coverage_id();
    SELECT string_agg('  ' || @extschema@._service_map_dot_quote(e.source) || ' -> '
                      || @extschema@._service_map_dot_quote(e.target)
                      || ' [label=' || @extschema@._service_map_dot_quote(
                             e.mainstat || E'\n' || e.secondarystat)
                      || CASE WHEN coalesce(e.detail__error_ratio, 0) > 0
                                OR e.detail__connection_errors > 0
                              THEN ', color="#d62728", fontcolor="#d62728"' ELSE '' END
                      || '];', E'\n' ORDER BY e.source, e.target) || E'\n'
    INTO edges_text
    FROM @extschema@.service_map_edges(window_start, window_end) e;
    title := 'ebpf_capture service map, '
             || to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' to '
             || to_char(window_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC';
    IF @extschema@._hub_active() THEN
        SELECT * INTO c FROM @extschema@._hub_coverage();
        IF cardinality(c.missing) > 0 THEN
            title := title || E'\n' || c.answered || ' of '
                     || (c.answered + cardinality(c.missing))
                     || ' nodes answered; missing: ' || array_to_string(c.missing, ', ');
        ELSE
            title := title || E'\n' || 'all ' || coalesce(c.answered, 0) || ' nodes answered';
        END IF;
    END IF;
    RETURN 'digraph service_map {' || E'\n'
        || '  graph [rankdir=LR, fontname="Helvetica", label='
        || @extschema@._service_map_dot_quote(title) || ', labelloc=t];' || E'\n'
        || '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fa", fontname="Helvetica"];'
        || E'\n'
        || '  edge [fontname="Helvetica", fontsize=10];' || E'\n'
        || coalesce(nodes_text, '') || coalesce(edges_text, '') || '}' || E'\n';
END
$$;

REVOKE ALL ON FUNCTION @extschema@._hub_active() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.hub_start() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.hub_stop() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.hub_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.hub_summary() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_server_options(text, int, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_add_node(text, text, text, text, text, int, text, text,
    text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_move_node(text, text, int, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_drop_node(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_drop_unknown(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_set_login(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_map_user(name, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_probe(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_set_discovery(text, text, int, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_gather(text[], text[], text[], text, text, anyelement)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_dblink() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_disconnect(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_time(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_asked() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_missing(text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_note_coverage(text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_coverage() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_window(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_trace(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.trace_spans(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_coverage_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._hub_coverage_node() FROM PUBLIC;

-- ---- a node's side: the hub's role ---------------------------------------

-- With ebpf_capture.hub_access on, the launcher of a node keeps the hub's
-- role (ebpf_capture.hub_user) here: it may log in with the password of
-- ebpf_capture.hub_password_file (given as a SCRAM secret) and read spans
-- and the rollup, nothing else; its sessions are read-only, end when idle
-- for 15 minutes, and when the hub is gone (TCP keepalives: about 35 s). A role of that name this function did not make is
-- left alone ('foreign'). Off: the role it made can no longer log in.
-- Returns what it did: made, updated, disabled, foreign, none.
CREATE FUNCTION @extschema@._hub_node_access(a_role text, a_secret text, a_on boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    marker constant text := 'ebpf_capture: the hub''s role (ebpf_capture.hub_access)';
    r record;
    made boolean := false;
BEGIN
    SELECT a.oid, a.rolcanlogin, shobj_description(a.oid, 'pg_authid') AS note INTO r
    FROM pg_authid a WHERE a.rolname = a_role;
    IF NOT a_on THEN
        IF r.oid IS NOT NULL AND r.note = marker AND r.rolcanlogin THEN
            EXECUTE format('ALTER ROLE %I NOLOGIN', a_role);
            RETURN 'disabled';
        END IF;
        RETURN 'none';
    END IF;
    IF r.oid IS NULL THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT '
                       'NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 64', a_role);
        EXECUTE format('COMMENT ON ROLE %I IS %L', a_role, marker);
        made := true;
    ELSIF r.note IS DISTINCT FROM marker THEN
        RETURN 'foreign';
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', a_role, a_secret);
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', a_role);
    EXECUTE format('ALTER ROLE %I SET idle_session_timeout = %L', a_role, '15min');
    -- a hub that vanishes (a network cut) leaves no session behind for long
    EXECUTE format('ALTER ROLE %I SET tcp_keepalives_idle = 20', a_role);
    EXECUTE format('ALTER ROLE %I SET tcp_keepalives_interval = 5', a_role);
    EXECUTE format('ALTER ROLE %I SET tcp_keepalives_count = 3', a_role);
    EXECUTE format('ALTER ROLE %I SET client_connection_check_interval = %L', a_role, '10s');
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %I', a_role);
    EXECUTE format('GRANT SELECT ON @extschema@.spans, @extschema@.service_map_minutes, '
                   '@extschema@.open_connections TO %I', a_role);
    -- what a hub asks: _service_map_window_of, and what it calls
    EXECUTE format('GRANT EXECUTE ON FUNCTION '
                   '@extschema@._service_map_window_of(timestamptz, timestamptz), '
                   '@extschema@._request_series_of(timestamptz, timestamptz, interval), '
                   '@extschema@._open_connection_edges_of(), '
                   '@extschema@._service_map_rollup_of_spans(timestamptz, timestamptz), '
                   '@extschema@._service_map_minute(timestamptz), '
                   '@extschema@._service_map_bucket(interval), '
                   '@extschema@._service_map_client_node(text, text), '
                   '@extschema@._service_map_node_id(text, text, text, text, inet), '
                   '@extschema@._service_map_node_title(text, text, text, inet), '
                   '@extschema@._service_map_node_subtitle(text, text, text, text, text) TO %I',
                   a_role);
    RETURN CASE WHEN made THEN 'made' ELSE 'updated' END;
END
$$;
REVOKE ALL ON FUNCTION @extschema@._hub_node_access(text, text, boolean) FROM PUBLIC;

-- ---- the dashboard's time series and open connections, node or hub -------

-- What the hub reads from each node for them.
CREATE TYPE @extschema@._hub_series_row AS (
    node text, bin timestamptz, dst_id text, bucket smallint, client_node text,
    spans bigint, errors bigint);
CREATE TYPE @extschema@._hub_open_row AS (
    node text, caller text, callee text, dst_port int, client_node text, connections bigint,
    bytes_sent bigint, bytes_received bigint, oldest timestamptz, reported_at timestamptz);

-- A node's requests (the rollup's buckets 1 to 112: HTTP exchanges,
-- database calls) of the minutes that overlap [window_start, window_end),
-- summed per bin of bin_len (a whole number of minutes, bins aligned to
-- whole multiples of it since 2000-01-01 UTC), callee, latency bucket and
-- client node. A hub asks each node for this.
CREATE FUNCTION @extschema@._request_series_of(window_start timestamptz,
                                               window_end timestamptz, bin_len interval)
RETURNS TABLE (bin timestamptz, dst_id text, bucket smallint, client_node text, spans bigint,
               errors bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT date_bin(bin_len, m.minute, timestamptz '2000-01-01 00:00:00+00'), m.dst_id,
           m.bucket, m.client_node, sum(m.spans)::bigint, sum(m.errors)::bigint
    FROM @extschema@.service_map_minutes m
    WHERE m.bucket > 0 AND m.minute >= @extschema@._service_map_minute(window_start)
      AND m.minute < window_end
    GROUP BY 1, 2, 3, 4
$$;
REVOKE ALL ON FUNCTION @extschema@._request_series_of(timestamptz, timestamptz, interval)
    FROM PUBLIC;

-- The same from every node that answers, each request once (the rule of
-- _hub_window), the nodes missing noted (_hub_note_coverage).
CREATE FUNCTION @extschema@._hub_request_series(window_start timestamptz,
                                                window_end timestamptz, bin_len interval)
RETURNS TABLE (bin timestamptz, dst_id text, bucket smallint, spans bigint, errors bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked record;
    r record;
BEGIN
    SELECT * INTO asked FROM @extschema@._hub_asked();
    SELECT * INTO r FROM @extschema@._hub_gather(
        asked.servers, asked.nodes, ARRAY(
            SELECT format('SELECT %L::text, w.bin, w.dst_id, w.bucket, w.client_node, w.spans, '
                          'w.errors FROM @extschema@._request_series_of(%L, %L, %L) w', n,
                          @extschema@._hub_time(window_start), @extschema@._hub_time(window_end),
                          bin_len)
            FROM unnest(asked.nodes) WITH ORDINALITY AS u(n, o) ORDER BY o),
        'node text, bin timestamptz, dst_id text, bucket smallint, client_node text, '
        'spans bigint, errors bigint',
        'ROW(t.*)::@extschema@._hub_series_row', NULL::@extschema@._hub_series_row);
    PERFORM @extschema@._hub_note_coverage(r.answered,
                                            @extschema@._hub_missing(asked.others, r.failed));
    RETURN QUERY
        SELECT g.bin, g.dst_id, g.bucket, sum(g.spans)::bigint, sum(g.errors)::bigint
        FROM unnest(r.got) g
        WHERE g.client_node = '' OR g.client_node = g.node OR NOT g.client_node = ANY (r.answered)
        GROUP BY g.bin, g.dst_id, g.bucket;
END
$$;
REVOKE ALL ON FUNCTION @extschema@._hub_request_series(timestamptz, timestamptz, interval)
    FROM PUBLIC;

-- Requests served per workload (the callee, as the map names it) over time,
-- from the rollup: one row per bin of `step` (rounded up to whole minutes)
-- and callee, with the count, the rate, the errors and latency quantiles
-- estimated from the rollup's latency buckets, as the map's are. On a hub,
-- every node's. What the dashboard's time series show.
CREATE FUNCTION @extschema@.request_series(window_start timestamptz, window_end timestamptz,
                                           step interval DEFAULT interval '1 minute')
RETURNS TABLE ("time" timestamptz, workload text, requests bigint,
               requests_per_s double precision, errors bigint,
               error_ratio double precision, p50_ms double precision,
               p95_ms double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bin_len interval;
BEGIN
    IF window_start IS NULL OR window_end IS NULL OR NOT isfinite(window_start)
       OR NOT isfinite(window_end) THEN
        RAISE EXCEPTION 'request_series needs a finite window'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF step IS NULL OR extract(epoch FROM step) <= 0 THEN
        RAISE EXCEPTION 'request_series needs a positive step, not %', coalesce(step::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- at most a year per bin
    bin_len := make_interval(mins => least(ceil(extract(epoch FROM step) / 60), 527040)::int);
    RETURN QUERY
        WITH rows AS (
            SELECT l.bin, l.dst_id, l.bucket, sum(l.spans)::bigint AS spans,
                   sum(l.errors)::bigint AS errors
            FROM @extschema@._request_series_of(window_start, window_end, bin_len) l
            WHERE NOT @extschema@._hub_active()
            GROUP BY 1, 2, 3
            UNION ALL
            SELECT h.bin, h.dst_id, h.bucket, h.spans, h.errors
            FROM @extschema@._hub_request_series(window_start, window_end, bin_len) h
            WHERE @extschema@._hub_active()
        )
        SELECT r.bin, r.dst_id, sum(r.spans)::bigint,
               sum(r.spans)::float8 / extract(epoch FROM bin_len)::float8,
               sum(r.errors)::bigint,
               sum(r.errors)::float8 / nullif(sum(r.spans), 0)::float8,
               @extschema@._service_map_quantile(0.5, array_agg(r.bucket), array_agg(r.spans)),
               @extschema@._service_map_quantile(0.95, array_agg(r.bucket), array_agg(r.spans))
        FROM rows r
        GROUP BY r.bin, r.dst_id
        ORDER BY r.bin, r.dst_id;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.request_series(timestamptz, timestamptz, interval)
    FROM PUBLIC;

-- A node's open connections (the open_connections table), summed per
-- caller, callee, port and client node. A hub asks each node for this.
CREATE FUNCTION @extschema@._open_connection_edges_of()
RETURNS TABLE (caller text, callee text, dst_port int, client_node text, connections bigint,
               bytes_sent bigint, bytes_received bigint, oldest timestamptz,
               reported_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._service_map_node_id(o.src_namespace, o.src_workload, o.src_pod,
                                            o.src_node, o.src_addr),
           @extschema@._service_map_node_id(o.dst_namespace, o.dst_workload, o.dst_pod,
                                            o.dst_node, o.dst_addr),
           o.dst_port, @extschema@._service_map_client_node(o.src_pod, o.src_node),
           count(*), sum(o.bytes_sent)::bigint, sum(o.bytes_received)::bigint,
           min(o.start_time), max(o.reported_at)
    FROM @extschema@.open_connections o
    GROUP BY 1, 2, 3, 4
$$;
REVOKE ALL ON FUNCTION @extschema@._open_connection_edges_of() FROM PUBLIC;

-- The same from every node that answers, each connection once (the rule of
-- _hub_window), the nodes missing noted.
CREATE FUNCTION @extschema@._hub_open_connection_edges()
RETURNS SETOF @extschema@._hub_open_row
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked record;
    r record;
BEGIN
    SELECT * INTO asked FROM @extschema@._hub_asked();
    SELECT * INTO r FROM @extschema@._hub_gather(
        asked.servers, asked.nodes, ARRAY(
            SELECT format('SELECT %L::text, w.* FROM @extschema@._open_connection_edges_of() w', n)
            FROM unnest(asked.nodes) WITH ORDINALITY AS u(n, o) ORDER BY o),
        'node text, caller text, callee text, dst_port int, client_node text, '
        'connections bigint, bytes_sent bigint, bytes_received bigint, oldest timestamptz, '
        'reported_at timestamptz',
        'ROW(t.*)::@extschema@._hub_open_row', NULL::@extschema@._hub_open_row);
    PERFORM @extschema@._hub_note_coverage(r.answered,
                                            @extschema@._hub_missing(asked.others, r.failed));
    RETURN QUERY
        SELECT g.*
        FROM unnest(r.got) g
        WHERE g.client_node = '' OR g.client_node = g.node OR NOT g.client_node = ANY (r.answered);
END
$$;
REVOKE ALL ON FUNCTION @extschema@._hub_open_connection_edges() FROM PUBLIC;

-- The connections open now (their spans are written when they close), per
-- caller, callee and port, the most bytes first: how many, the bytes so far
-- each way, how long the oldest has been open (until the last report). On
-- a hub, every node's, each connection once.
CREATE FUNCTION @extschema@.open_connection_edges(n int DEFAULT 100)
RETURNS TABLE (caller text, callee text, dst_port int, connections bigint, bytes_sent bigint,
               bytes_received bigint, oldest_s double precision, reported_at timestamptz)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.caller, e.callee, e.dst_port, sum(e.connections)::bigint,
           sum(e.bytes_sent)::bigint, sum(e.bytes_received)::bigint,
           extract(epoch FROM max(e.reported_at) - min(e.oldest))::double precision,
           max(e.reported_at)
    FROM (SELECT l.caller, l.callee, l.dst_port, l.connections, l.bytes_sent,
                 l.bytes_received, l.oldest, l.reported_at
          FROM @extschema@._open_connection_edges_of() l
          WHERE NOT @extschema@._hub_active()
          UNION ALL
          SELECT h.caller, h.callee, h.dst_port, h.connections, h.bytes_sent,
                 h.bytes_received, h.oldest, h.reported_at
          FROM @extschema@._hub_open_connection_edges() h
          WHERE @extschema@._hub_active()) e
    GROUP BY e.caller, e.callee, e.dst_port
    ORDER BY sum(e.bytes_sent) + sum(e.bytes_received) DESC, e.caller, e.callee, e.dst_port
    LIMIT greatest(n, 0);
END;
REVOKE ALL ON FUNCTION @extschema@.open_connection_edges(int) FROM PUBLIC;

-- ============================================================================
-- PostgreSQL's wire protocol: spans of protocol 'postgresql'
-- ============================================================================
--
-- One span per simple Query and per Execute of the extended protocol
-- (docs/protocols.md); attributes follow OpenTelemetry's database
-- conventions. In the service map they are requests, as http spans are
-- (the worker's rollup counts them so; this recomputation from the spans
-- table does the same), except the span of a session that went encrypted.
-- Redis commands (protocol 'redis', one span per command and its reply)
-- are requests the same way.
CREATE OR REPLACE FUNCTION @extschema@._service_map_rollup_of_spans(
    window_start timestamptz, window_end timestamptz)
RETURNS TABLE (
    minute timestamptz, src_id text, dst_id text, bucket smallint,
    src_title text, src_subtitle text, dst_title text, dst_subtitle text,
    spans bigint, errors bigint, bytes_sent bigint, bytes_received bigint, client_node text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._service_map_minute(s.start_time),
           @extschema@._service_map_node_id(s.src_namespace, s.src_workload, s.src_pod,
                                            s.src_node, s.src_addr),
           @extschema@._service_map_node_id(s.dst_namespace, s.dst_workload, s.dst_pod,
                                            s.dst_node, s.dst_addr),
           CASE WHEN s.protocol IN ('http', 'postgresql', 'redis')
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
           coalesce(sum(s.bytes_received) FILTER (WHERE s.protocol = 'tcp'), 0)::bigint,
           @extschema@._service_map_client_node(s.src_pod, s.src_node)
    FROM @extschema@.spans s
    WHERE s.start_time >= window_start AND s.start_time < window_end
      AND (s.protocol IN ('http', 'tcp', 'redis')
           OR (s.protocol = 'postgresql' AND s.name NOT IN ('TLS', 'GSSENC')))
    GROUP BY 1, 2, 3, 4, 13
$$;
REVOKE ALL ON FUNCTION @extschema@._service_map_rollup_of_spans(timestamptz, timestamptz)
    FROM PUBLIC;

-- capture_status() and _capture_slots(), defined once for 0.2 (a new OUT
-- column is a new row type: 0.1's are dropped and made again, 0.1's columns
-- first and in their order). After 0.1's columns:
--
-- not_http_connections: connections dropped as not HTTP after their first
-- bytes (the filter's classifier, and the parser for those the filter took
-- for HTTP).
--
-- The OTLP exporter's state and counters (otlp_*, from _otlp_slots()).
--
-- PostgreSQL's counters (postgresql_*): connections the filter took for
-- PostgreSQL, spans made, sessions that went encrypted (TLS or GSS: not
-- parsed), connections first seen mid-stream, resynchronisations on message
-- boundaries, and requests or connections lost (unanswered at a capture gap,
-- not the protocol, over a bound).
--
-- Redis's counters (redis_*): connections, spans, connections first seen
-- mid-stream, resynchronisations, connections that went to push mode
-- (SUBSCRIBE, MONITOR) and commands or connections lost.
--
-- Then where each capture is attached (docs/cni.md): capture_start also takes
-- a shell-style pattern of routed pod interfaces ('cali*', 'lxc*', ...) or
-- 'auto'. The columns: its mode ('bridge_ports', 'device' or 'routed'), the
-- device or pattern it captures ('auto': what it chose), the interfaces it is
-- attached to now, the ones it could not attach to and the ones its pattern
-- matched that are not pod interfaces.
DROP FUNCTION @extschema@.capture_status();
DROP FUNCTION @extschema@._capture_slots();

CREATE FUNCTION @extschema@._capture_slots(
    OUT interface text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT packets bigint, OUT bytes bigint, OUT spans_written bigint, OUT spans_dropped bigint,
    OUT events_dropped bigint, OUT kernel_drops bigint, OUT flow_table_full bigint,
    OUT flows_tracked bigint, OUT payload_dropped bigint, OUT http_connections bigint,
    OUT http_bound_hits bigint, OUT pods_known bigint, OUT ports bigint,
    OUT port_errors bigint, OUT metadata_state text, OUT metadata_error text,
    OUT last_error text, OUT not_http_connections bigint,
    OUT postgresql_connections bigint, OUT postgresql_spans bigint,
    OUT postgresql_encrypted bigint, OUT postgresql_mid_stream bigint,
    OUT postgresql_resyncs bigint, OUT postgresql_lost bigint,
    OUT redis_connections bigint, OUT redis_spans bigint, OUT redis_mid_stream bigint,
    OUT redis_resyncs bigint, OUT redis_push_mode bigint, OUT redis_lost bigint,
    OUT mode text, OUT pattern text, OUT attached text[], OUT failed text[],
    OUT skipped text[])
    RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'ebpf_capture_slots';
REVOKE ALL ON FUNCTION @extschema@._capture_slots() FROM PUBLIC;

CREATE FUNCTION @extschema@.capture_status(
    OUT interface text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT packets bigint, OUT bytes bigint, OUT spans_written bigint, OUT spans_dropped bigint,
    OUT events_dropped bigint, OUT kernel_drops bigint, OUT flow_table_full bigint,
    OUT flows_tracked bigint, OUT payload_dropped bigint, OUT http_connections bigint,
    OUT http_bound_hits bigint, OUT pods_known bigint, OUT ports bigint,
    OUT port_errors bigint, OUT metadata_state text, OUT metadata_error text,
    OUT last_error text, OUT not_http_connections bigint,
    OUT otlp_state text, OUT otlp_exported bigint, OUT otlp_failed bigint,
    OUT otlp_dropped bigint, OUT otlp_queued bigint, OUT otlp_last_error text,
    OUT postgresql_connections bigint, OUT postgresql_spans bigint,
    OUT postgresql_encrypted bigint, OUT postgresql_mid_stream bigint,
    OUT postgresql_resyncs bigint, OUT postgresql_lost bigint,
    OUT redis_connections bigint, OUT redis_spans bigint, OUT redis_mid_stream bigint,
    OUT redis_resyncs bigint, OUT redis_push_mode bigint, OUT redis_lost bigint,
    OUT mode text, OUT pattern text, OUT attached text[], OUT failed text[],
    OUT skipped text[])
RETURNS SETOF record LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
           s.metadata_state, s.metadata_error, s.last_error,
           coalesce(s.not_http_connections, 0),
           coalesce(o.otlp_state, 'off'), coalesce(o.otlp_exported, 0),
           coalesce(o.otlp_failed, 0), coalesce(o.otlp_dropped, 0),
           coalesce(o.otlp_queued, 0), o.otlp_last_error,
           coalesce(s.postgresql_connections, 0), coalesce(s.postgresql_spans, 0),
           coalesce(s.postgresql_encrypted, 0), coalesce(s.postgresql_mid_stream, 0),
           coalesce(s.postgresql_resyncs, 0), coalesce(s.postgresql_lost, 0),
           coalesce(s.redis_connections, 0), coalesce(s.redis_spans, 0),
           coalesce(s.redis_mid_stream, 0), coalesce(s.redis_resyncs, 0),
           coalesce(s.redis_push_mode, 0), coalesce(s.redis_lost, 0),
           s.mode, s.pattern, coalesce(s.attached, '{}'), coalesce(s.failed, '{}'),
           coalesce(s.skipped, '{}')
    FROM @extschema@.captures c
    LEFT JOIN @extschema@._capture_slots() s ON s.interface = c.interface
    LEFT JOIN @extschema@._otlp_slots() o ON o.interface = c.interface
    ORDER BY c.interface
$$;
REVOKE ALL ON FUNCTION @extschema@.capture_status() FROM PUBLIC;
