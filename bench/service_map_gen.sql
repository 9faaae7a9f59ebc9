-- bench/service_map_gen.sql - fills spans with a synthetic cluster's traffic
-- for bench/service_map_bench.sh. psql variables: nspans (rows), hours
-- (the rows' start_time span [now() - hours, now()), in insertion order as the
-- worker writes them).
--
-- The cluster: 6 namespaces, 48 Deployments/StatefulSets with 3 pods each,
-- each calling up to three others over HTTP/1.1 (keep-alive: about 5
-- exchanges per connection, so one tcp row per 5 http rows on those edges),
-- a postgres and a redis reached over plain TCP, 4 addresses with no
-- Kubernetes identity (load balancer, outside callers), 2 bare pods.
-- Edge volumes are skewed (a few edges carry most traffic), latencies are
-- log-normal-ish per edge, 0.1-5 % of exchanges are 5xx.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;

SELECT setseed(0.42);

CREATE TEMP TABLE bench_nodes AS
SELECT n AS node_no,
       CASE WHEN n <= 48 THEN 'team-' || (n % 6) END AS namespace,
       CASE WHEN n <= 46 THEN 'svc-' || n
            WHEN n = 47 THEN 'postgres'
            WHEN n = 48 THEN 'redis' END AS workload,
       CASE WHEN n <= 46 THEN 'Deployment' WHEN n <= 48 THEN 'StatefulSet' END AS workload_kind,
       n <= 48 AS has_pods,
       n > 48 AND n <= 52 AS address_only,
       n > 52 AS bare_pod
FROM generate_series(1, 54) n;

-- Each workload node calls up to 3 higher-numbered ones (a DAG, like a real
-- call graph), the outside addresses call the first few services, every 7th
-- service talks to postgres, every 5th to redis, the bare pods call svc-1.
CREATE TEMP TABLE bench_edges AS
WITH raw AS (
    SELECT a.node_no AS src, b AS dst, true AS http
    FROM bench_nodes a, LATERAL (
        SELECT DISTINCT (a.node_no + 1 + floor(random() * 12))::int AS b
        FROM generate_series(1, 3)) c
    WHERE a.node_no <= 46 AND b <= 46
    UNION ALL SELECT x, y, true FROM generate_series(49, 52) x, generate_series(1, 3) y
    UNION ALL SELECT s, 47, false FROM generate_series(7, 46, 7) s
    UNION ALL SELECT s, 48, false FROM generate_series(5, 46, 5) s
    UNION ALL SELECT p, 1, true FROM generate_series(53, 54) p
)
SELECT row_number() OVER (ORDER BY src, dst) - 1 AS edge_no, src, dst, http,
       0.3 + random() * 20 AS base_ms,
       CASE WHEN random() < 0.3 THEN 0.05 * random() ELSE 0.001 END AS err_rate
FROM raw;

SELECT count(*) AS edges, count(*) FILTER (WHERE http) AS http_edges FROM bench_edges;

-- Endpoint details per (node, replica 0..2): names and addresses.
CREATE TEMP TABLE bench_ends AS
SELECT n.node_no, r AS replica,
       n.namespace,
       CASE WHEN n.has_pods THEN n.workload END AS workload,
       CASE WHEN n.has_pods THEN n.workload_kind END AS workload_kind,
       CASE WHEN n.has_pods THEN n.workload || '-7d9f8c6b5-' || substr(md5(n.node_no || '/' || r), 1, 5)
            WHEN n.bare_pod THEN 'debug-' || n.node_no END AS pod,
       CASE WHEN n.has_pods OR n.bare_pod THEN 'node-' || ((n.node_no + r) % 4) END AS node,
       CASE WHEN n.address_only THEN ('203.0.113.' || n.node_no)::inet
            ELSE ('10.244.' || ((n.node_no + r) % 4) || '.' || (n.node_no * 3 + r))::inet END AS addr
FROM bench_nodes n, generate_series(0, 2) r;
CREATE INDEX ON bench_ends (node_no, replica);
-- A bare pod in the default namespace, no workload.
UPDATE bench_ends SET namespace = 'default' WHERE pod LIKE 'debug-%';
ANALYZE bench_ends; ANALYZE bench_edges;

-- Row g: edge chosen with a skewed distribution; on HTTP edges rows with
-- g % 6 = 0 are the connection (tcp) rows, the others exchanges.
INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_time, end_time, status,
                   protocol, interface, src_addr, dst_addr, src_port, dst_port, bytes_sent,
                   bytes_received, packets_sent, packets_received, attributes, http_method,
                   http_target, http_status,
                   src_pod, src_namespace, src_workload, src_workload_kind, src_node,
                   dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node)
SELECT md5(g::text || 't'), substr(md5(g::text || 's'), 1, 16), NULL,
       CASE WHEN is_http THEN 'GET' ELSE 'tcp.connection' END,
       CASE WHEN is_http THEN 'SERVER' ELSE 'CLIENT' END,
       st, st + make_interval(secs => lat_ms / 1000.0),
       CASE WHEN is_err THEN 'ERROR' ELSE 'UNSET' END,
       CASE WHEN is_http THEN 'http' ELSE 'tcp' END,
       'cni0', s.addr, d.addr, 30000 + (g % 30000)::int,
       CASE WHEN e.dst = 47 THEN 5432 WHEN e.dst = 48 THEN 6379 ELSE 8080 END,
       CASE WHEN is_http THEN 0 ELSE 200 + (g % 5000) END,
       CASE WHEN is_http THEN 100 + (g % 3000) ELSE 1000 + (g % 50000) END,
       CASE WHEN is_http THEN NULL ELSE 10 + g % 20 END,
       CASE WHEN is_http THEN NULL ELSE 12 + g % 30 END,
       CASE WHEN is_http THEN '{"network.protocol.version": "1.1"}'::jsonb
            ELSE '{"tcp.close_reason": "fin", "tcp.handshake_completed": true}'::jsonb END,
       CASE WHEN is_http THEN 'GET' END,
       CASE WHEN is_http THEN '/api/v1/items/' || (g % 1000) END,
       CASE WHEN is_http THEN CASE WHEN is_err THEN 503 ELSE 200 END END,
       s.pod, s.namespace, s.workload, s.workload_kind, s.node,
       d.pod, d.namespace, d.workload, d.workload_kind, d.node
FROM (
    SELECT g,
           now() - make_interval(hours => :hours)
               + make_interval(secs => (g - 1)::float8 / :nspans * 3600 * :hours) AS st,
           (floor(power(random(), 2.5) * (SELECT count(*) FROM bench_edges)))::int AS edge_no,
           random() AS r1, random() AS r2
    FROM generate_series(1, :nspans) g
) x
JOIN bench_edges e USING (edge_no)
CROSS JOIN LATERAL (SELECT e.http AND x.g % 6 <> 0 AS is_http) h
CROSS JOIN LATERAL (SELECT e.base_ms * (0.5 + x.r1 * x.r1 * 4) AS lat_ms,
                           x.r2 < CASE WHEN h.is_http THEN e.err_rate ELSE 0.002 END AS is_err) l
JOIN bench_ends s ON s.node_no = e.src AND s.replica = x.g % 3
JOIN bench_ends d ON d.node_no = e.dst AND d.replica = (x.g / 3) % 3;
