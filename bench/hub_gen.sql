-- bench/hub_gen.sql - one simulated node database for bench/hub_bench.sh:
-- the rollup of 40 edges (20 HTTP edges with 8 latency buckets each, 20
-- plain TCP edges; half of them called by pods on other nodes, so their
-- rows carry a client node) every minute over [t - 3 h - 12 min, t + 12
-- min), and spans at 20 per second in the 24 minutes around each window
-- boundary the benchmark crosses (t - 3 h, t - 1 h, t - 15 min, and t):
-- what a hub reads for the partial minutes at a window's ends. psql
-- variable t: the time the windows are measured from.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;
SELECT setseed(0.17);

CREATE TEMP TABLE e AS
SELECT n AS edge, n <= 20 AS http,
       'team-' || (n % 4) AS src_ns, 'svc-' || n AS src_wl,
       'team-' || ((n + 1) % 4) AS dst_ns, 'svc-' || (n + 1 + n % 5) AS dst_wl,
       CASE WHEN n % 2 = 0 THEN 'node' || lpad((1 + n % 30)::text, 2, '0') ELSE '' END AS client,
       (30 + n * 3) AS base_bucket
FROM generate_series(1, 40) n;

INSERT INTO service_map_minutes (minute, src_id, dst_id, bucket, src_title, src_subtitle,
                                 dst_title, dst_subtitle, spans, errors, bytes_sent,
                                 bytes_received, client_node)
SELECT date_bin('1 minute', :'t'::timestamptz, '2000-01-01') + m * interval '1 minute',
       e.src_ns || '/' || e.src_wl, e.dst_ns || '/' || e.dst_wl, b.bucket,
       e.src_wl, e.src_ns || ' · Deployment', e.dst_wl, e.dst_ns || ' · Deployment',
       1 + (random() * 50)::int, (random() * 1.2)::int,
       CASE WHEN b.bucket = 0 THEN (random() * 1e6)::bigint ELSE 0 END,
       CASE WHEN b.bucket = 0 THEN (random() * 1e7)::bigint ELSE 0 END,
       e.client
FROM generate_series(-192, 11) m, e,
     LATERAL (SELECT 0 AS bucket UNION ALL
              SELECT e.base_bucket + k FROM generate_series(0, 7) k WHERE e.http) b;

INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, protocol,
                   interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, bytes_received,
                   src_pod, src_namespace, src_workload, src_workload_kind, src_node,
                   dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node)
SELECT md5(g::text || c::text), substr(md5(g::text || c::text || 's'), 1, 16),
       CASE WHEN e.http THEN 'GET' ELSE 'tcp.connection' END,
       CASE WHEN e.http THEN 'SERVER' ELSE 'CLIENT' END,
       st, st + (100 + random() * 20000) * interval '1 microsecond',
       CASE WHEN random() < 0.02 THEN 'ERROR' ELSE 'UNSET' END,
       CASE WHEN e.http THEN 'http' ELSE 'tcp' END, 'cni0',
       ('10.244.1.' || e.edge)::inet, ('10.244.2.' || e.edge)::inet, 40000 + g % 20000, 8080,
       (random() * 2000)::bigint, (random() * 20000)::bigint,
       e.src_wl || '-abc', e.src_ns, e.src_wl, 'Deployment',
       CASE WHEN e.client = '' THEN 'node01' ELSE e.client END,
       e.dst_wl || '-def', e.dst_ns, e.dst_wl, 'Deployment', 'node01'
FROM (VALUES (interval '3 hours'), (interval '1 hour'), (interval '15 minutes'),
             (interval '0 minutes')) AS around(c),
     generate_series(0, 24 * 60 * 20 - 1) g,
     LATERAL (SELECT :'t'::timestamptz - around.c - interval '12 minutes'
                     + g * interval '50 milliseconds' AS st) s,
     LATERAL (SELECT * FROM e WHERE e.edge = 1 + g % 40) e;
ANALYZE;
SELECT (SELECT count(*) FROM service_map_minutes) AS rollup_rows,
       (SELECT count(*) FROM spans) AS spans;
