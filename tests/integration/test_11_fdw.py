"""deploy/README.md's cross-node queries (postgres_fdw), run as written: two
"node" databases with spans and their rollups, and a central database that
imports both through postgres_fdw and adds their service maps up. The SQL
blocks are read from the README, so a change there that breaks them fails
here; only the servers' addresses and the user mapping are replaced by this
cluster's."""

import json
import math
import re
import uuid
from datetime import timedelta

import pytest

from conftest import REPO

DOC = REPO / "deploy" / "README.md"
BUCKET_WIDTH = 2 ** 0.25


def doc_blocks():
    text = DOC.read_text()
    section = text[text.index("## Querying across nodes with postgres_fdw"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 2, blocks
    return blocks


def insert(cluster, dbname, rows, marker):
    conn = cluster.connect(dbname)
    try:
        with conn.cursor() as cur:
            for r in rows:
                cur.execute(
                    """INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time,
                           status, protocol, interface, src_addr, dst_addr, src_port, dst_port,
                           bytes_sent, bytes_received, attributes,
                           src_pod, src_namespace, src_workload, src_workload_kind,
                           dst_pod, dst_namespace, dst_workload, dst_workload_kind)
                       VALUES (%s, %s, 'GET', 'SERVER', %s, %s, %s, %s, 'test11',
                               '10.97.0.1', '10.97.0.2', 40000, 80, %s, %s, %s,
                               'a-1', %s, 'a', 'Deployment', 'b-1', %s, 'b', 'Deployment')""",
                    (uuid.uuid4().hex, uuid.uuid4().hex[:16], r["start"],
                     r["start"] + timedelta(microseconds=r["latency_us"]), r["status"],
                     r["protocol"], r["bytes"], r["bytes"], json.dumps({"test11": marker}),
                     marker, marker))
            cur.execute("SELECT service_map_refresh(%s, %s)",
                        (min(r["start"] for r in rows), max(r["start"] for r in rows)))
    finally:
        conn.close()


def make_rows(t, http, errors, tcp, base_us):
    rows = []
    for i in range(http):
        rows.append(dict(start=t + timedelta(seconds=i), latency_us=base_us * (i + 1),
                         status="ERROR" if i < errors else "UNSET", protocol="http", bytes=0))
    for i in range(tcp):
        rows.append(dict(start=t + timedelta(seconds=i), latency_us=5000,
                         status="UNSET", protocol="tcp", bytes=1000 * (i + 1)))
    return rows


@pytest.fixture
def nodes(cluster):
    suffix = uuid.uuid4().hex[:8]
    node_b, central = f"t11_node_b_{suffix}", f"t11_central_{suffix}"
    marker = "t11-" + suffix
    t = cluster.value("SELECT date_trunc('minute', now()) - interval '6 minutes'")
    for db in (node_b, central):
        cluster.sql(f"CREATE DATABASE {db}")
    try:
        cluster.sql("CREATE EXTENSION ebpf_capture", dbname=node_b)
        # whole minutes that end before now (t): the README's query reads
        # the last 15 whole minutes
        rows_a = make_rows(t, 30, 5, 3, 100)   # node 1: 30 requests, 5 failed
        rows_b = make_rows(t, 20, 2, 2, 700)   # node 2: 20 requests, 2 failed, slower
        insert(cluster, "postgres", rows_a, marker)
        insert(cluster, node_b, rows_b, marker)
        yield dict(node_b=node_b, central=central, marker=marker, rows=rows_a + rows_b, t=t)
    finally:
        cluster.sql("DELETE FROM spans WHERE attributes->>'test11' = %s", (marker,))
        cluster.sql("SELECT service_map_refresh(%s, %s)",
                    (t - timedelta(minutes=1), t + timedelta(minutes=2)))
        for db in (central, node_b):
            cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_cross_node_service_map_from_the_readme(cluster, nodes):
    setup, queries = doc_blocks()
    swaps = [("host '10.0.0.11', port '5432', dbname 'postgres'",
              f"host '{cluster.dir}', port '{cluster.port}', dbname 'postgres'"),
             ("host '10.0.0.12', port '5432', dbname 'postgres'",
              f"host '{cluster.dir}', port '{cluster.port}', dbname '{nodes['node_b']}'"),
             ("user 'grafana_reader', password '...'", "user 'postgres'")]
    for old, new in swaps:
        assert old in setup, old
        setup = setup.replace(old, new)
    conn = cluster.connect(nodes["central"])
    try:
        with conn.cursor() as cur:
            cur.execute(setup)
            cur.execute(queries)
            cols = [d[0] for d in cur.description]
            got = [dict(zip(cols, r)) for r in cur.fetchall()]
            cur.execute("SELECT capture_node, count(*) FROM cluster_spans "
                        "WHERE attributes->>'test11' = %s GROUP BY 1 ORDER BY 1",
                        (nodes["marker"],))
            per_node = cur.fetchall()
    finally:
        conn.close()
    assert per_node == [("worker-1", 33), ("worker-2", 22)], per_node
    edge = [g for g in got if g["source"] == f"{nodes['marker']}/a"]
    assert len(edge) == 1, got
    e = edge[0]
    assert e["target"] == f"{nodes['marker']}/b", e
    assert (e["requests"], e["errors"], e["connections"]) == (50, 7, 5), e
    assert (e["bytes_sent"], e["bytes_received"]) == (6000 + 3000, 6000 + 3000), e
    # the merged histogram: percentiles of all 50 latencies together
    lat = sorted(r["latency_us"] / 1000 for r in nodes["rows"] if r["protocol"] == "http")
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
        x = lat[max(1, math.ceil(q * len(lat))) - 1]
        assert x / BUCKET_WIDTH <= e[key] <= x * BUCKET_WIDTH, (key, e[key], x, lat)
