--
-- writes: the functions the capture worker calls to write pods and the
-- service map rollup (_pods_upsert, _rollup_rows, _rollup_add,
-- _rollup_stage, _rollup_merge_staged), on their own.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
CREATE EXTENSION ebpf_capture;
-- pods: one array per column; the last record of a uid in a batch wins
SELECT _pods_upsert(
    ARRAY['u1', 'u2', 'u1'], ARRAY['shop', 'shop', 'shop'], ARRAY['web-1', 'db-0', 'web-1'],
    ARRAY['10.1.0.5', '10.1.0.6', '10.1.0.5,fd00::5'], ARRAY['node-a', 'node-a', 'node-b'],
    ARRAY['web', 'db', 'web'], ARRAY['Deployment', 'StatefulSet', 'Deployment'],
    ARRAY['Pending', 'Running', 'Running'], ARRAY[false, false, false],
    ARRAY['{"app":"web"}', NULL, '{"app":"web","v":"2"}'],
    ARRAY['2026-01-01 10:00', '2026-01-01 10:00', '2026-01-01 10:00']::timestamptz[],
    ARRAY['2026-01-01 10:00:01', '2026-01-01 10:00:02', '2026-01-01 10:00:03']::timestamptz[],
    ARRAY['2026-01-01 10:00:01', '2026-01-01 10:00:02', '2026-01-01 10:00:03']::timestamptz[],
    ARRAY[NULL, NULL, NULL]::timestamptz[]);
SELECT uid, namespace, name, ips, node, workload, workload_kind, phase, host_network, labels,
       first_seen, last_seen, deleted_at FROM pods ORDER BY uid;
-- a later record: first_seen stays the earliest, last_seen moves on
SELECT _pods_upsert(ARRAY['u1'], ARRAY['shop'], ARRAY['web-1'], ARRAY['10.1.0.5'],
    ARRAY['node-b'], ARRAY['web'], ARRAY['Deployment'], ARRAY['Succeeded'], ARRAY[false],
    ARRAY['{}'], ARRAY['2026-01-01 10:00']::timestamptz[],
    ARRAY['2026-01-01 11:00']::timestamptz[], ARRAY['2026-01-01 11:00']::timestamptz[],
    ARRAY['2026-01-01 11:00']::timestamptz[]);
SELECT uid, phase, first_seen, last_seen, deleted_at FROM pods WHERE uid = 'u1';

-- the rollup: identities name the ends (workload, else pod, else node),
-- the address where there is none; rows of one key are summed
SELECT * FROM _rollup_rows(
    ARRAY['2026-01-01 10:00', '2026-01-01 10:00', '2026-01-01 10:01']::timestamptz[],
    ARRAY[0, 0, 9]::smallint[],
    ARRAY['web-1', 'web-2', NULL], ARRAY['shop', 'shop', NULL], ARRAY['web', 'web', NULL],
    ARRAY['Deployment', 'Deployment', NULL], ARRAY['node-a', 'node-a', NULL],
    ARRAY[NULL, NULL, '10.9.0.1']::inet[],
    ARRAY['db-0', 'db-0', NULL], ARRAY['shop', 'shop', NULL], ARRAY[NULL, NULL, NULL],
    ARRAY[NULL, NULL, NULL], ARRAY['node-a', 'node-a', 'node-c'],
    ARRAY[NULL, NULL, NULL]::inet[],
    ARRAY[3, 2, 1]::bigint[], ARRAY[1, 0, 1]::bigint[], ARRAY[100, 50, 0]::bigint[],
    ARRAY[10, 5, 0]::bigint[])
ORDER BY minute, src_id, dst_id, bucket;
-- added twice: the counts add up
SELECT _rollup_add(ARRAY['2026-01-01 10:00']::timestamptz[], ARRAY[0]::smallint[],
    ARRAY['web-1'], ARRAY['shop'], ARRAY['web'], ARRAY['Deployment'], ARRAY['node-a'],
    ARRAY[NULL]::inet[], ARRAY['db-0'], ARRAY['shop'], ARRAY[NULL], ARRAY[NULL],
    ARRAY['node-a'], ARRAY[NULL]::inet[], ARRAY[3]::bigint[], ARRAY[1]::bigint[],
    ARRAY[100]::bigint[], ARRAY[10]::bigint[]) AS written
FROM generate_series(1, 2);
SELECT minute, src_id, dst_id, bucket, spans, errors, bytes_sent, bytes_received
FROM service_map_minutes ORDER BY 1, 2, 3, 4;
-- staged rows (the rollup table was held) are merged in later, once
SELECT _rollup_stage(ARRAY['2026-01-01 10:00', '2026-01-01 10:02']::timestamptz[],
    ARRAY[0, 0]::smallint[], ARRAY['web-1', 'web-1'], ARRAY['shop', 'shop'],
    ARRAY['web', 'web'], ARRAY['Deployment', 'Deployment'], ARRAY['node-a', 'node-a'],
    ARRAY[NULL, NULL]::inet[], ARRAY['db-0', 'db-0'], ARRAY['shop', 'shop'],
    ARRAY[NULL, NULL], ARRAY[NULL, NULL], ARRAY['node-a', 'node-a'],
    ARRAY[NULL, NULL]::inet[], ARRAY[4, 5]::bigint[], ARRAY[0, 0]::bigint[],
    ARRAY[1, 1]::bigint[], ARRAY[1, 1]::bigint[]);
SELECT count(*) AS staged FROM _service_map_staged;
SELECT minute, spans FROM service_map_minutes ORDER BY 1;
SELECT _rollup_merge_staged();
SELECT _rollup_merge_staged();
SELECT count(*) AS staged FROM _service_map_staged;
SELECT minute, src_id, dst_id, spans, errors, bytes_sent FROM service_map_minutes ORDER BY 1;
-- a refresh recomputes its minutes from spans, staged rows of them too
SELECT _rollup_stage(ARRAY['2026-01-01 10:02']::timestamptz[], ARRAY[0]::smallint[],
    ARRAY['web-1'], ARRAY['shop'], ARRAY['web'], ARRAY['Deployment'], ARRAY['node-a'],
    ARRAY[NULL]::inet[], ARRAY['db-0'], ARRAY['shop'], ARRAY[NULL], ARRAY[NULL],
    ARRAY['node-a'], ARRAY[NULL]::inet[], ARRAY[7]::bigint[], ARRAY[0]::bigint[],
    ARRAY[0]::bigint[], ARRAY[0]::bigint[]);
SELECT service_map_refresh('2026-01-01 10:02', '2026-01-01 10:03');
SELECT count(*) AS staged FROM _service_map_staged;
SELECT minute, spans FROM service_map_minutes ORDER BY 1;
DROP EXTENSION ebpf_capture;
