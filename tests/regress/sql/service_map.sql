--
-- service_map: the map's SQL (nodes, edges, DOT) on a fixed mix of rows at
-- fixed times, read from the rollup for whole minutes and from spans at the
-- window's ends. Needs no capture and no privilege beyond the extension.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
CREATE EXTENSION ebpf_capture;
-- rows far from now: shop/web calls shop/api (http: 6 requests, 2 of them
-- 5xx, and their tcp connection), shop/api calls a bare address over tcp,
-- and one request before the window
INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, protocol,
                   interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, bytes_received,
                   http_method, http_target, http_status, src_pod, src_namespace, src_workload,
                   src_workload_kind, dst_pod, dst_namespace, dst_workload, dst_workload_kind)
SELECT md5(i::text), substr(md5(i::text), 1, 16),
       CASE WHEN p = 'http' THEN 'GET' ELSE 'tcp.connection' END,
       CASE WHEN p = 'http' THEN 'SERVER' ELSE 'CLIENT' END,
       t, t + lat, CASE WHEN err THEN 'ERROR' ELSE 'UNSET' END, p, 'cni0',
       src::inet, dst::inet, 40000 + i, dport, sent, recv,
       CASE WHEN p = 'http' THEN 'GET' END, CASE WHEN p = 'http' THEN '/x' END,
       CASE WHEN p = 'http' THEN (CASE WHEN err THEN 503 ELSE 200 END) END,
       spod, 'shop', swl, 'Deployment', dpod, dns, dwl, CASE WHEN dwl IS NOT NULL THEN 'Deployment' END
FROM (VALUES
  (1, 'http', '2100-01-01 10:01:10'::timestamptz, interval '2 ms', false, '10.1.0.1', '10.1.0.2', 8080, 10, 100, 'web-1', 'web', 'api-1', 'shop', 'api'),
  (2, 'http', '2100-01-01 10:01:20', interval '4 ms', false, '10.1.0.1', '10.1.0.2', 8080, 10, 100, 'web-1', 'web', 'api-1', 'shop', 'api'),
  (3, 'http', '2100-01-01 10:02:10', interval '8 ms', true, '10.1.0.3', '10.1.0.2', 8080, 10, 0, 'web-2', 'web', 'api-1', 'shop', 'api'),
  (4, 'http', '2100-01-01 10:02:40', interval '16 ms', true, '10.1.0.3', '10.1.0.2', 8080, 10, 0, 'web-2', 'web', 'api-1', 'shop', 'api'),
  (5, 'http', '2100-01-01 10:03:05', interval '1 ms', false, '10.1.0.1', '10.1.0.2', 8080, 10, 100, 'web-1', 'web', 'api-1', 'shop', 'api'),
  (6, 'http', '2100-01-01 10:04:59', interval '1 ms', false, '10.1.0.1', '10.1.0.2', 8080, 10, 100, 'web-1', 'web', 'api-1', 'shop', 'api'),
  (7, 'tcp', '2100-01-01 10:01:00', interval '4 min', false, '10.1.0.1', '10.1.0.2', 8080, 1000, 9000, 'web-1', 'web', 'api-1', 'shop', 'api'),
  (8, 'tcp', '2100-01-01 10:03:30', interval '1 s', true, '10.1.0.2', '192.0.2.9', 5432, 300, 0, 'api-1', 'api', NULL, NULL, NULL),
  (9, 'http', '2100-01-01 09:59:59', interval '1 ms', false, '10.1.0.1', '10.1.0.2', 8080, 10, 100, 'web-1', 'web', 'api-1', 'shop', 'api')
) AS v(i, p, t, lat, err, src, dst, dport, sent, recv, spod, swl, dpod, dns, dwl);
-- the rollup of whole minutes, as the worker would have written it
SELECT service_map_refresh('2100-01-01 09:59', '2100-01-01 10:06');
SELECT minute, src_id, dst_id, bucket, spans, errors, bytes_sent, bytes_received
FROM service_map_minutes ORDER BY 1, 2, 3, 4;
-- a window with partial minutes at both ends: [10:01:15, 10:04:30)
SELECT id, source, target, mainstat, secondarystat, detail__requests, detail__errors,
       detail__connections, detail__connection_errors, detail__bytes_sent
FROM service_map_edges('2100-01-01 10:01:15', '2100-01-01 10:04:30');
SELECT id, title, subtitle, mainstat, secondarystat, arc__success, arc__errors
FROM service_map_nodes('2100-01-01 10:01:15', '2100-01-01 10:04:30');
SELECT service_map_dot('2100-01-01 10:00', '2100-01-01 10:05');
DROP EXTENSION ebpf_capture;
