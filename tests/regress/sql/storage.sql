--
-- storage: the time partitions of spans and of the rollup, and the SQL the
-- launcher runs to keep them (made ahead, moved out of the default
-- partition, dropped oldest first, late rows trimmed). The functions are
-- exercised on a table of the test's own, at fixed times, so that the
-- output does not depend on the clock.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
CREATE EXTENSION ebpf_capture;
-- spans and service_map_minutes are partitioned by time, each with a
-- DEFAULT partition for rows that have no time partition
SELECT c.relname, c.relkind, pg_get_partkeydef(c.oid) AS key
FROM pg_class c
WHERE c.oid IN ('spans'::regclass, 'service_map_minutes'::regclass)
ORDER BY 1;
SELECT p.partition, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM storage_partitions p JOIN pg_class c ON c.oid = p.partition
WHERE p.is_default ORDER BY 1;
-- the partitions CREATE EXTENSION made: the one holding now and those ahead
SELECT "table", count(*) FILTER (WHERE range_start <= now() AND now() < range_end) AS holding_now,
       count(*) FILTER (WHERE range_start > now()) >= 1 AS ahead
FROM storage_partitions WHERE NOT is_default GROUP BY 1 ORDER BY 1;
-- the indexes of spans are partitioned indexes, in every partition
SELECT c.relname, c.relkind FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'spans'::regclass ORDER BY 1;
-- pg_dump leaves the rows of captures out; those of spans_late it keeps
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid)
JOIN pg_class c ON c.oid = t.oid WHERE e.extname = 'ebpf_capture' ORDER BY 1;

-- a table of the test's own, partitioned as spans is
CREATE TABLE regress_spans (start_time timestamptz NOT NULL, end_time timestamptz NOT NULL,
                            note text) PARTITION BY RANGE (start_time);
CREATE TABLE regress_spans_late PARTITION OF regress_spans DEFAULT;
CREATE INDEX ON regress_spans (start_time);
INSERT INTO regress_spans VALUES ('2100-01-01 00:30', '2100-01-01 00:31', 'early');
SELECT tableoid::regclass, note FROM regress_spans;
-- making its partition moves the row out of the default partition
SELECT _storage_make_partition('regress_spans', '2100-01-01 00:30', '1 hour');
SELECT tableoid::regclass, note FROM regress_spans;
-- ... and once is enough
SELECT _storage_make_partition('regress_spans', '2100-01-01 00:59', '1 hour');
-- another interval fits between the partitions already there
SELECT _storage_make_partition('regress_spans', '2100-01-01 01:10', '30 minutes');
SELECT _storage_make_partition('regress_spans', '2100-01-01 03:10', '1 hour');
SELECT _storage_make_partition('regress_spans', '2100-01-01 01:45', '4 hours');
SELECT partition, range_start, range_end FROM _storage_partitions_of('regress_spans')
ORDER BY range_start NULLS FIRST;
-- every partition has the parent's index
SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid
WHERE i.inhparent = 'regress_spans'::regclass;
-- made ahead from a time: the partitions for [at, at + ahead)
SELECT * FROM _storage_premake('regress_spans', '1 hour', '3 hours', '2100-01-01 04:30');
-- rows in the default partition for a time after the oldest partition are
-- given their partition; older ones (late rows) stay
INSERT INTO regress_spans VALUES ('2100-01-01 10:15', '2100-01-01 10:16', 'gap'),
                                 ('2099-12-31 23:00', '2100-01-01 09:00', 'late');
SELECT * FROM _storage_premake('regress_spans', '1 hour', '0', '2100-01-01 04:30');
SELECT tableoid::regclass, note FROM regress_spans ORDER BY start_time;
-- the oldest partition that ends by the cutoff goes, one per call
SELECT * FROM _storage_drop_oldest('regress_spans', '2100-01-01 00:59');
SELECT dropped, range_start, range_end FROM _storage_drop_oldest('regress_spans', '2100-01-01 01:00');
SELECT dropped, range_start, range_end FROM _storage_drop_oldest('regress_spans', '2100-01-01 01:30');
-- without a cutoff: the oldest that ends by `at` (never the one holding `at`)
SELECT dropped FROM _storage_drop_oldest('regress_spans', NULL, '2100-01-01 01:45');
SELECT dropped FROM _storage_drop_oldest('regress_spans', NULL, '2100-01-01 03:30');
SELECT dropped FROM _storage_drop_oldest('regress_spans', NULL, '2100-01-01 03:30');
-- late rows go once their end is past the cutoff
SELECT _storage_trim_late('regress_spans', '2100-01-01 08:00');
SELECT _storage_trim_late('regress_spans', '2100-01-01 09:30');
SELECT note FROM regress_spans ORDER BY start_time;
-- bad input
SELECT _storage_make_partition('regress_spans', '2100-01-02', '0');
SELECT _storage_make_partition('regress_spans', 'infinity', '1 hour');
DROP TABLE regress_spans;

-- storage_status() answers, and needs no capture
SELECT spans_partitions > 0 AS has_partitions, retention, rollup_retention
FROM storage_status();
-- only a superuser may look
CREATE ROLE regress_ebpfc_storage;
SELECT has_function_privilege('regress_ebpfc_storage', 'storage_status()', 'EXECUTE'),
       has_table_privilege('regress_ebpfc_storage', 'storage_partitions', 'SELECT');
DROP ROLE regress_ebpfc_storage;
DROP EXTENSION ebpf_capture;
