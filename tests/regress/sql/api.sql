--
-- api: the SQL interface of ebpf_capture, checked against the catalogs.
-- Runs in the regression database (not ebpf_capture.database), so nothing
-- here starts a capture; errors.sql does that in database postgres.
--
CREATE EXTENSION ebpf_capture;
-- the spans table: its column names and types are a contract
SELECT ordinal_position, column_name, data_type
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'spans'
ORDER BY ordinal_position;
-- open_connections: a connection so far, in the column names of spans; unlogged
SELECT ordinal_position, column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'open_connections'
ORDER BY ordinal_position;
SELECT relpersistence FROM pg_class WHERE oid = 'open_connections'::regclass;
-- the functions users call
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'capture\_%'
ORDER BY p.proname;
-- capture_status() has (at least) these columns, in this order
SELECT a.name, format_type(a.type, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes, p.proargmodes::text[])
       WITH ORDINALITY AS a(name, type, mode, n)
WHERE p.oid = 'capture_status()'::regprocedure AND a.mode IN ('o', 't')
  AND a.name IN ('interface', 'pid', 'state', 'started_at', 'packets', 'bytes',
                 'spans_written', 'events_dropped', 'kernel_drops',
                 'flow_table_full', 'last_error', 'not_http_connections',
                 'postgresql_connections', 'postgresql_spans', 'postgresql_encrypted',
                 'postgresql_mid_stream', 'postgresql_resyncs', 'postgresql_lost',
                 'redis_connections', 'redis_spans', 'redis_mid_stream', 'redis_resyncs',
                 'redis_push_mode', 'redis_lost', 'mode', 'pattern', 'attached', 'failed',
                 'skipped')
ORDER BY a.n;
-- nobody but a superuser may call them: no EXECUTE for PUBLIC
CREATE ROLE regress_ebpfc_nobody;
SELECT p.proname,
       has_function_privilege('regress_ebpfc_nobody', p.oid, 'EXECUTE') AS can_execute
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'capture\_%'
ORDER BY p.proname;
DROP ROLE regress_ebpfc_nobody;
-- the settings
SELECT name, setting, unit, context
FROM pg_settings
WHERE name IN ('ebpf_capture.database', 'ebpf_capture.idle_timeout',
               'ebpf_capture.flush_interval', 'ebpf_capture.open_connections_interval')
ORDER BY name;
-- nothing has been captured in this database
SELECT count(*) AS captures FROM capture_status();
SELECT count(*) AS spans FROM spans;
SELECT count(*) AS open_connections FROM open_connections;
DROP EXTENSION ebpf_capture;
-- in ebpf_capture.database no capture runs yet either
\c postgres
CREATE EXTENSION ebpf_capture;
SELECT count(*) AS captures FROM capture_status();
DROP EXTENSION ebpf_capture;
