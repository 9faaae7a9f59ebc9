"""The service map (issue 5): service_map_nodes, service_map_edges and
service_map_dot over a known traffic mix, the DOT text drawn by Graphviz, and
every SQL query of the Grafana dashboard run against the database.

The traffic mix is inserted into spans directly (no capture): known
workloads, pods, a host-network node and a bare address, N HTTP requests of
which K failed, plain TCP connections with known byte counts, rows just
outside the window. Rows written by anything but the worker reach the
per-minute rollup through service_map_refresh(), which the fixture calls.
The expected numbers are computed here, independently of the SQL, from the
same list of rows. (test_06_http.py checks the worker's own rollup against
service_map_refresh() on captured traffic.)
"""

import json
import math
import random
import re
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import REPO, Pods, now_utc, pod_ip4, pod_run, run, set_guc, wait_for
from grafana import DASHBOARD_VARIABLES, dashboard_targets, expand_macros
from httpenv import Nginx

GRANTS = REPO / "deploy" / "grafana" / "grants.sql"

NODE_FIELDS = ["id", "title", "subtitle", "mainstat", "secondarystat", "arc__success",
               "arc__errors"]
EDGE_FIELDS = ["id", "source", "target", "mainstat", "secondarystat"]

# A window far in the past: nothing a capture writes can fall into it.
T0 = datetime(2001, 2, 3, 4, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=10)
WINDOW_S = (T1 - T0).total_seconds()


# ----------------------------------------------------------------------------
# the traffic mix


class End:
    """One end of a span: what the Kubernetes metadata says, and the address."""

    def __init__(self, addr, namespace=None, workload=None, kind=None, pod=None, node=None):
        self.addr = addr
        self.namespace = namespace
        self.workload = workload
        self.kind = kind
        self.pod = pod
        self.node = node

    def node_id(self):
        if self.workload is not None:
            return f"{self.namespace or ''}/{self.workload}"
        if self.pod is not None:
            return f"{self.namespace or ''}/{self.pod}"
        if self.node is not None:
            return f"node:{self.node}"
        return self.addr

    def title(self):
        return self.workload or self.pod or self.node or self.addr

    def subtitle(self):
        if self.workload is not None:
            return f"{self.namespace or ''} · {self.kind or 'workload'}"
        if self.pod is not None:
            return f"{self.namespace or ''} · Pod"
        if self.node is not None:
            return "Node"
        return "address"


def make_mix(ns, t0, rng):
    """Returns (ends, rows): the rows to insert, each a dict of span columns
    plus the End objects at both sides."""
    fe1 = End("10.99.0.11", ns, "frontend", "Deployment", "frontend-6d4b9-aaaaa", "worker-1")
    fe2 = End("10.99.0.12", ns, "frontend", "Deployment", "frontend-6d4b9-bbbbb", "worker-2")
    co = End("10.99.0.21", ns, "checkout", "Deployment", "checkout-7c9f-ccccc", "worker-1")
    pay = End("10.99.0.31", ns, "payments", "StatefulSet", "payments-0", "worker-2")
    db = End("10.99.0.41", ns, "postgres", "StatefulSet", "postgres-0", "worker-1")
    debug = End("10.99.0.51", ns, None, None, "debug-shell", "worker-2")  # bare pod
    host = End("192.0.2.10", None, None, None, None, "worker-1")  # host network
    outside = End("198.51.100.7")  # no Kubernetes identity
    # Names from the network may hold anything: quotes, backslashes, a line
    # break. (Kubernetes would refuse them; the map must not break on them.)
    odd = End("10.99.0.61", ns + '"x\\', None, None, 'we"ird\\pod\nname', "worker-2")

    rows = []
    seq = [0]

    def at():
        seq[0] += 1
        return t0 + timedelta(seconds=1 + (seq[0] * 0.37) % 590)

    def http(src, dst, latency_ms, error, start=None):
        st = start or at()
        rows.append(dict(src=src, dst=dst, protocol="http", start=st,
                         end=st + timedelta(microseconds=round(latency_ms * 1000)),
                         latency_ms=round(latency_ms * 1000) / 1000,
                         status="ERROR" if error else "UNSET",
                         http_status=rng.choice([500, 502, 503]) if error else rng.choice([200, 204, 404]),
                         bytes_sent=rng.randrange(0, 500), bytes_received=rng.randrange(0, 5000)))

    def tcp(src, dst, sent, received, error=False, start=None):
        st = start or at()
        rows.append(dict(src=src, dst=dst, protocol="tcp", start=st,
                         end=st + timedelta(milliseconds=rng.randrange(1, 3000)),
                         latency_ms=None, status="ERROR" if error else "UNSET", http_status=None,
                         bytes_sent=sent, bytes_received=received))

    # frontend -> checkout: N = 40 requests, K = 6 of them failed, from both
    # frontend pods, on 8 keep-alive connections
    errors = set(rng.sample(range(40), 6))
    for i in range(40):
        http(fe1 if i % 2 else fe2, co, rng.uniform(0.2, 80.0), i in errors)
    for i in range(8):
        tcp(fe1 if i % 2 else fe2, co, rng.randrange(100, 10000), rng.randrange(1000, 100000))
    # checkout -> payments: 10 requests, no error, 2 connections
    for _ in range(10):
        http(co, pay, rng.uniform(1.0, 30.0), False)
    tcp(co, pay, 1234, 56789)
    tcp(co, pay, 4321, 98765)
    # checkout -> postgres: plain TCP, 5 connections, 1 reset
    for i in range(5):
        tcp(co, db, rng.randrange(100, 5000), rng.randrange(100, 50000), error=(i == 3))
    # a bare pod, a host-network process, an outside address
    for _ in range(3):
        http(debug, fe1, rng.uniform(0.5, 5.0), False)
    tcp(debug, fe1, 300, 9000)
    tcp(host, co, 10, 20)
    tcp(host, co, 30, 40, error=True)
    for i in range(4):
        http(outside, fe2, rng.uniform(0.5, 5.0), i == 0)
    tcp(outside, fe2, 700, 8000)
    http(odd, co, 3.25, False)
    tcp(odd, co, 11, 22)
    # At the window's edges: the first instant is in it, the end is not,
    # and neither is what came before.
    http(fe1, co, 5.0, False, start=t0)
    http(fe1, co, 5.0, True, start=t0 - timedelta(microseconds=1))
    http(fe1, co, 5.0, True, start=T1 - T0 + t0)
    tcp(fe1, co, 999999, 999999, start=t0 - timedelta(seconds=30))
    ends = [fe1, fe2, co, pay, db, debug, host, outside, odd]
    return ends, rows


def insert_rows(cluster, rows, marker):
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            for r in rows:
                s, d = r["src"], r["dst"]
                http = r["protocol"] == "http"
                cur.execute(
                    """INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status,
                           protocol, interface, src_addr, dst_addr, src_port, dst_port,
                           bytes_sent, bytes_received, attributes, http_method, http_target,
                           http_status,
                           src_pod, src_namespace, src_workload, src_workload_kind, src_node,
                           dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'test07', %s, %s, 40000, 8080,
                               %s, %s, %s, %s, %s, %s,
                               %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (uuid.uuid4().hex, uuid.uuid4().hex[:16], "GET" if http else "tcp.connection",
                     "SERVER" if http else "CLIENT", r["start"], r["end"], r["status"],
                     r["protocol"], s.addr, d.addr, r["bytes_sent"], r["bytes_received"],
                     json.dumps({"test07.marker": marker}), "GET" if http else None,
                     "/x" if http else None, r["http_status"],
                     s.pod, s.namespace, s.workload, s.kind, s.node,
                     d.pod, d.namespace, d.workload, d.kind, d.node))
    finally:
        conn.close()


def in_window(rows, t0, t1):
    return [r for r in rows if t0 <= r["start"] < t1]


# ----------------------------------------------------------------------------
# the expected numbers, computed independently of the SQL


def expected_edges(rows, seconds):
    edges = {}
    for r in rows:
        key = (r["src"].node_id(), r["dst"].node_id())
        e = edges.setdefault(key, dict(requests=0, errors=0, lat=[], connections=0,
                                       connection_errors=0, bytes_sent=0, bytes_received=0))
        if r["protocol"] == "http":
            e["requests"] += 1
            e["errors"] += r["status"] == "ERROR"
            e["lat"].append(r["latency_ms"])
        else:
            e["connections"] += 1
            e["connection_errors"] += r["status"] == "ERROR"
            e["bytes_sent"] += r["bytes_sent"]
            e["bytes_received"] += r["bytes_received"]
    for e in edges.values():
        e["requests_per_s"] = e["requests"] / seconds
        e["error_ratio"] = e["errors"] / e["requests"] if e["requests"] else None
    return edges


def expected_nodes(rows, seconds):
    nodes = {}

    def node(end):
        return nodes.setdefault(end.node_id(), dict(
            title=end.title(), subtitle=end.subtitle(), req_in=0, err_in=0, lat=[], conn_in=0,
            conn_err_in=0, req_out=0, err_out=0, conn_out=0, conn_err_out=0, rx=0, tx=0))

    for r in rows:
        src, dst = node(r["src"]), node(r["dst"])
        err = r["status"] == "ERROR"
        if r["protocol"] == "http":
            dst["req_in"] += 1
            dst["err_in"] += err
            dst["lat"].append(r["latency_ms"])
            src["req_out"] += 1
            src["err_out"] += err
        else:
            dst["conn_in"] += 1
            dst["conn_err_in"] += err
            src["conn_out"] += 1
            src["conn_err_out"] += err
            dst["rx"] += r["bytes_sent"]
            dst["tx"] += r["bytes_received"]
            src["tx"] += r["bytes_sent"]
            src["rx"] += r["bytes_received"]
    for n in nodes.values():
        if n["req_in"]:
            n["err_ratio"] = n["err_in"] / n["req_in"]
        elif n["conn_in"]:
            n["err_ratio"] = n["conn_err_in"] / n["conn_in"]
        elif n["req_out"]:
            n["err_ratio"] = n["err_out"] / n["req_out"]
        else:
            n["err_ratio"] = n["conn_err_out"] / n["conn_out"]
        n["rate_in"] = n["req_in"] / seconds
    return nodes


# One latency bucket of the rollup: a quarter octave.
BUCKET_WIDTH = 2 ** 0.25


def hist_quantile_ok(got, latencies, q):
    """A percentile read from the rollup's latency histogram: the estimate
    lies in the bucket that holds the sample of rank ceil(q * n), so within
    one bucket width of that sample."""
    if not latencies:
        return got is None
    v = sorted(latencies)
    x = v[max(1, math.ceil(q * len(v))) - 1]
    return got is not None and x / BUCKET_WIDTH * (1 - 1e-9) <= got <= x * BUCKET_WIDTH * (1 + 1e-9)


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def fmt_num(x):
    """_service_map_num: about three significant digits, no trailing zeros.
    PostgreSQL converts float8 to numeric through 15 significant digits."""
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    from decimal import ROUND_HALF_UP, Decimal
    d = Decimal(format(x, '.15g')).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


# ----------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def smdb(cluster):
    """The cluster, whose extension holds the service map functions."""
    return cluster


@pytest.fixture(scope="module")
def mix(smdb):
    """The known traffic mix in the past window [T0, T1), and a second, small
    one in the last few minutes (for the interval forms). Removed afterwards."""
    marker = uuid.uuid4().hex
    rng = random.Random(20260507)
    ns = "sm-" + marker[:8]
    ends, rows = make_mix(ns, T0, rng)
    # The mix is from 2001: in the default partitions, which the launcher's
    # maintenance pass (every minute here) would empty under the retention
    # settings. Kept for the module.
    for name in ("ebpf_capture.retention", "ebpf_capture.rollup_retention"):
        set_guc(smdb, name, "0")
    insert_rows(smdb, rows, marker)

    now_ns = "smnow-" + marker[:8]
    a = End("10.98.0.1", now_ns, "client", "Deployment", "client-1", "worker-1")
    b = End("10.98.0.2", now_ns, "server", "Deployment", "server-1", "worker-2")
    now = smdb.value("SELECT now()")
    recent = []
    for i in range(12):
        st = now - timedelta(minutes=3) + timedelta(seconds=i)
        recent.append(dict(src=a, dst=b, protocol="http", start=st,
                           end=st + timedelta(milliseconds=i + 1), latency_ms=float(i + 1),
                           status="ERROR" if i % 4 == 0 else "UNSET",
                           http_status=500 if i % 4 == 0 else 200, bytes_sent=0,
                           bytes_received=10))
    # 20 minutes ago: outside the default 15-minute window
    st = now - timedelta(minutes=20)
    recent.append(dict(src=a, dst=b, protocol="http", start=st, end=st + timedelta(milliseconds=1),
                       latency_ms=1.0, status="UNSET", http_status=200, bytes_sent=0,
                       bytes_received=10))
    insert_rows(smdb, recent, marker)
    refresh = [(T0 - timedelta(minutes=1), T1 + timedelta(minutes=1)),
               (now - timedelta(minutes=25), now + timedelta(minutes=1))]
    for window in refresh:
        smdb.sql("SELECT service_map_refresh(%s, %s)", window)
    # Two connections open now, as a capture's report on an interface of the
    # mix's own (no worker writes or removes those) lists them.
    open_iface = "sm" + marker[:10]
    for port in (5432, 6379):
        smdb.sql("INSERT INTO open_connections (interface, start_time, last_seen, src_addr, "
                 "dst_addr, src_port, dst_port, bytes_sent, bytes_received, packets_sent, "
                 "packets_received, attributes, src_namespace, src_workload, src_pod, dst_namespace, "
                 "dst_workload, dst_pod) VALUES (%s, now() - interval '2 hours', now(), %s, %s, "
                 "40000, %s, 1000, 2000, 10, 12, '{}', %s, %s, %s, %s, %s, %s)",
                 (open_iface, a.addr, b.addr, port, now_ns, a.workload, a.pod, now_ns, b.workload,
                  b.pod))
    try:
        yield dict(ends=ends, rows=rows, ns=ns, now_ns=now_ns, recent=recent, a=a, b=b)
    finally:
        smdb.sql("DELETE FROM open_connections WHERE interface = %s", (open_iface,))
        smdb.sql("DELETE FROM spans WHERE attributes->>'test07.marker' = %s", (marker,))
        for window in refresh:
            smdb.sql("SELECT service_map_refresh(%s, %s)", window)
        for name in ("ebpf_capture.retention", "ebpf_capture.rollup_retention"):
            set_guc(smdb, name, None)


def by_id(rows):
    out = {}
    for r in rows:
        assert r["id"] not in out, f"duplicate id {r['id']!r}"
        out[r["id"]] = r
    return out


# ----------------------------------------------------------------------------
# (a) the numbers


def test_edges_fields_and_numbers(smdb, mix):
    got_rows = smdb.sql("SELECT * FROM service_map_edges(%s, %s)", (T0, T1))
    assert got_rows, "no edges"
    cols = list(got_rows[0].keys())
    assert cols[:5] == EDGE_FIELDS, cols
    assert all(c in EDGE_FIELDS or c.startswith("detail__") for c in cols), cols
    got = by_id(got_rows)
    exp = expected_edges(in_window(mix["rows"], T0, T1), WINDOW_S)
    assert sorted((r["source"], r["target"]) for r in got_rows) == sorted(exp), \
        (sorted(got), sorted(exp))
    for (src, dst), e in exp.items():
        g = got[f"{src} -> {dst}"]
        assert (g["source"], g["target"]) == (src, dst)
        where = f"edge {src} -> {dst}: {g}"
        assert g["detail__requests"] == e["requests"], where
        assert g["detail__errors"] == e["errors"], where
        assert close(g["detail__requests_per_s"], e["requests_per_s"]), where
        assert close(g["detail__error_ratio"], e["error_ratio"]), where
        assert hist_quantile_ok(g["detail__p50_ms"], e["lat"], 0.5), (where, sorted(e["lat"]))
        assert hist_quantile_ok(g["detail__p95_ms"], e["lat"], 0.95), (where, sorted(e["lat"]))
        assert g["detail__connections"] == e["connections"], where
        assert g["detail__connection_errors"] == e["connection_errors"], where
        assert g["detail__bytes_sent"] == e["bytes_sent"], where
        assert g["detail__bytes_received"] == e["bytes_received"], where
        if e["requests"]:
            assert g["mainstat"] == (f"{fmt_num(e['requests_per_s'])} req/s, "
                                     f"{fmt_num(100.0 * e['errors'] / e['requests'])}% errors"), where
            assert g["secondarystat"] == (f"p50 {fmt_num(g['detail__p50_ms'])} ms, "
                                          f"p95 {fmt_num(g['detail__p95_ms'])} ms"), where
        else:
            failed = f", {e['connection_errors']} failed" if e["connection_errors"] else ""
            assert g["mainstat"] == f"{e['connections']} conn{failed}", where
            assert g["secondarystat"].endswith(" received") and " sent, " in g["secondarystat"], where

    # the headline edge, spelled out: N = 40 requests (+1 at the window's
    # first instant), K = 6 failed, both frontend pods on one edge
    fc = got[f"{mix['ns']}/frontend -> {mix['ns']}/checkout"]
    assert fc["detail__requests"] == 41 and fc["detail__errors"] == 6, fc
    assert fc["detail__connections"] == 8, fc
    assert close(fc["detail__requests_per_s"], 41 / 600), fc
    # the plain TCP edge to the database
    db = got[f"{mix['ns']}/checkout -> {mix['ns']}/postgres"]
    assert db["detail__requests"] == 0 and db["detail__p50_ms"] is None, db
    assert db["detail__connections"] == 5 and db["detail__connection_errors"] == 1, db
    assert db["mainstat"] == "5 conn, 1 failed", db


def test_nodes_fields_and_numbers(smdb, mix):
    got_rows = smdb.sql("SELECT * FROM service_map_nodes(%s, %s)", (T0, T1))
    cols = list(got_rows[0].keys())
    assert cols[:7] == NODE_FIELDS, cols
    assert all(c in NODE_FIELDS or c.startswith("detail__") for c in cols), cols
    got = by_id(got_rows)
    exp = expected_nodes(in_window(mix["rows"], T0, T1), WINDOW_S)
    assert sorted(got) == sorted(exp)
    ns = mix["ns"]
    # the fallbacks: workload, bare pod, host-network node, address
    assert {f"{ns}/frontend", f"{ns}/checkout", f"{ns}/debug-shell", "node:worker-1",
            "198.51.100.7"} <= set(got)
    for nid, e in exp.items():
        g = got[nid]
        where = f"node {nid}: {g}"
        assert g["title"] == e["title"] and g["subtitle"] == e["subtitle"], where
        assert close(g["arc__errors"], e["err_ratio"]), where
        assert close(g["arc__success"], 1 - e["err_ratio"]), where
        assert close(g["arc__success"] + g["arc__errors"], 1.0), where
        assert g["detail__requests_in"] == e["req_in"], where
        assert g["detail__errors_in"] == e["err_in"], where
        assert close(g["detail__requests_in_per_s"], e["rate_in"]), where
        assert hist_quantile_ok(g["detail__p50_ms_in"], e["lat"], 0.5), where
        assert hist_quantile_ok(g["detail__p95_ms_in"], e["lat"], 0.95), where
        assert g["detail__connections_in"] == e["conn_in"], where
        assert g["detail__connection_errors_in"] == e["conn_err_in"], where
        assert g["detail__requests_out"] == e["req_out"], where
        assert g["detail__errors_out"] == e["err_out"], where
        assert g["detail__connections_out"] == e["conn_out"], where
        assert g["detail__connection_errors_out"] == e["conn_err_out"], where
        assert g["detail__bytes_received"] == e["rx"], where
        assert g["detail__bytes_sent"] == e["tx"], where
        if e["req_in"]:
            assert g["mainstat"] == f"{fmt_num(e['rate_in'])} req/s", where
            assert g["secondarystat"] == f"p95 {fmt_num(g['detail__p95_ms_in'])} ms", where
        elif e["conn_in"]:
            assert g["mainstat"] == f"{e['conn_in']} conn", where
        elif e["req_out"]:
            assert g["mainstat"].endswith(" req/s out"), where
        else:
            assert g["mainstat"] == f"{e['conn_out']} conn out", where
    co = got[f"{ns}/checkout"]
    assert co["detail__requests_in"] == 41 + 1 and co["detail__errors_in"] == 6, co
    assert close(co["arc__errors"], 6 / 42), co


def test_interval_forms_default_to_15_minutes(smdb, mix):
    a, b = mix["a"].node_id(), mix["b"].node_id()
    for query in ("SELECT * FROM service_map_edges()",
                  "SELECT * FROM service_map_edges('15 minutes')"):
        rows = [r for r in smdb.sql(query) if r["source"] == a]
        assert len(rows) == 1, (query, rows)
        e = rows[0]
        assert e["target"] == b
        # 12 in the last 3 minutes, 3 failed; the one 20 minutes ago is out
        assert (e["detail__requests"], e["detail__errors"]) == (12, 3), e
        assert close(e["detail__requests_per_s"], 12 / 900), e
        assert hist_quantile_ok(e["detail__p50_ms"], [float(i + 1) for i in range(12)], 0.5), e
    rows = [r for r in smdb.sql("SELECT * FROM service_map_edges('30 minutes')") if r["source"] == a]
    assert rows[0]["detail__requests"] == 13, rows
    nodes = by_id(smdb.sql("SELECT * FROM service_map_nodes()"))
    assert nodes[b]["detail__requests_in"] == 12 and nodes[b]["detail__errors_in"] == 3
    assert close(nodes[b]["arc__errors"], 0.25)
    assert nodes[a]["detail__requests_out"] == 12
    assert mix["b"].node_id() in smdb.value("SELECT service_map_dot()")


def test_unaligned_window_counts_exactly(smdb, mix):
    """A window that starts and ends inside minutes: the whole minutes come
    from the rollup, the partial ones from spans, and the counts are exact."""
    t0 = T0 + timedelta(seconds=95, microseconds=250000)
    t1 = T1 - timedelta(seconds=17)
    got = by_id(smdb.sql("SELECT * FROM service_map_edges(%s, %s)", (t0, t1)))
    exp = expected_edges(in_window(mix["rows"], t0, t1), (t1 - t0).total_seconds())
    assert sorted(got) == sorted(f"{s} -> {d}" for s, d in exp)
    for (src, dst), e in exp.items():
        g = got[f"{src} -> {dst}"]
        assert (g["detail__requests"], g["detail__errors"], g["detail__connections"],
                g["detail__bytes_sent"]) == (e["requests"], e["errors"], e["connections"],
                                             e["bytes_sent"]), (g, e)
        assert close(g["detail__requests_per_s"], e["requests_per_s"]), (g, e)
        assert hist_quantile_ok(g["detail__p95_ms"], e["lat"], 0.95), (g, sorted(e["lat"]))
    # a window inside one minute reads spans only
    t0, t1 = T0 + timedelta(seconds=61), T0 + timedelta(seconds=119)
    got = smdb.sql("SELECT * FROM service_map_edges(%s, %s)", (t0, t1))
    exp = expected_edges(in_window(mix["rows"], t0, t1), 58)
    assert sum(g["detail__requests"] for g in got) == sum(e["requests"] for e in exp.values())
    assert sum(g["detail__connections"] for g in got) == sum(e["connections"] for e in exp.values())


def test_rollup_rows_hold_the_mix(smdb, mix):
    """service_map_minutes, read directly: one row per minute, edge, bucket
    and client node, whose counts add up to the mix's rows."""
    rows = smdb.sql("""SELECT * FROM service_map_minutes
                       WHERE minute >= %s AND minute < %s AND src_id LIKE %s""",
                    (T0 - timedelta(minutes=1), T1 + timedelta(minutes=1), f"{mix['ns']}%"))
    mine = [r for r in mix["rows"] if r["src"].node_id().startswith(mix["ns"])]
    assert sum(r["spans"] for r in rows) == len(mine)
    assert sum(r["errors"] for r in rows) == sum(r["status"] == "ERROR" for r in mine)
    assert sum(r["bytes_sent"] for r in rows) == sum(r["bytes_sent"] for r in mine
                                                     if r["protocol"] == "tcp")
    # one row per minute, edge, bucket and client node (the node of a client
    # pod, '' for any other client: a hub counts each request once by it)
    keys = [(r["minute"], r["src_id"], r["dst_id"], r["bucket"], r["client_node"]) for r in rows]
    assert len(keys) == len(set(keys))
    pod_nodes = {r["src"].node for r in mine if r["src"].pod}
    assert {r["client_node"] for r in rows} <= pod_nodes | {""}, rows
    for r in rows:
        assert r["minute"].second == 0 and r["minute"].microsecond == 0, r
        if r["bucket"] > 0:  # http rows: their bytes are counted on the tcp rows
            assert r["bytes_sent"] == 0 and r["bytes_received"] == 0, r


def test_latency_bucket_sql_matches_its_definition(smdb):
    """_service_map_bucket: quarter octaves of whole microseconds, the same
    float8 operations as the worker's C++ (whose unit tests check the same
    whole-octave boundaries)."""
    us = [0, 1, 2, 3, 5, 7, 100, 999, 1000, 1001, 1023, 1024, 1025, 65535, 65536, 10 ** 6,
          123456789, 2 ** 40]
    got = smdb.sql("SELECT u, _service_map_bucket(make_interval(secs => u / 1e6)) AS b "
                   "FROM unnest(%s::bigint[]) AS u", (us,))
    for r in got:
        u = max(r["u"], 1)
        want = min(112, max(1, 1 + math.floor(4 * math.log(u) / 0.6931471805599453)))
        assert r["b"] == want, r
    octaves = smdb.sql("SELECT k, _service_map_bucket(make_interval(secs => (2 ^ k) / 1e6)) AS b "
                       "FROM generate_series(1, 26) AS k")
    assert all(r["b"] == 4 * r["k"] + 1 for r in octaves), octaves


def test_quantile_of_a_histogram(smdb):
    q = lambda p, b, n: smdb.value(  # noqa: E731
        "SELECT _service_map_quantile(%s, %s::smallint[], %s::bigint[])", (p, b, n))
    assert q(0.5, [], []) is None
    assert q(0.5, [0], [10]) is None  # tcp rows carry no latency
    # all in bucket 41 = [1024, 1218) us: the estimate stays inside it
    for p in (0.01, 0.5, 0.95, 1.0):
        assert 1.024 <= q(p, [41], [100]) <= 1.024 * BUCKET_WIDTH
    # 90 fast, 10 slow: p50 is fast, p95 is slow
    assert q(0.5, [41, 81], [90, 10]) < 1.3
    assert q(0.95, [41, 81], [90, 10]) >= 2 ** 20 / 1000
    # bucket order does not matter, zero counts are skipped
    assert q(0.95, [81, 60, 41], [10, 0, 90]) == q(0.95, [41, 81], [90, 10])


def test_refresh_rejects_bad_windows(smdb):
    for args in [(None, T1), (T1, T0), ("-infinity", T1), (T0, "infinity")]:
        with pytest.raises(Exception) as exc:
            smdb.sql("SELECT service_map_refresh(%s::timestamptz, %s::timestamptz)", args)
        assert "finite window" in str(exc.value), args


def test_functions_are_not_public(smdb, mix):
    rows = smdb.sql("""SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args
                       FROM pg_proc p
                       WHERE p.proname LIKE '%service_map%'
                         AND has_function_privilege('public', p.oid, 'EXECUTE')""")
    assert rows == [], rows


# ----------------------------------------------------------------------------
# the worker's own rollup, on captured traffic

# The rollup as the worker wrote it, against the same rows recomputed from
# spans by SQL, over [lo, hi), in one statement (one snapshot: a batch's
# spans and its rollup commit together). Returns the rows each side has
# that the other has not.
ROLLUP_DIFF = """
    WITH w AS (
        SELECT m.minute, m.src_id, m.dst_id, m.bucket, m.src_title, m.src_subtitle,
               m.dst_title, m.dst_subtitle, m.spans, m.errors, m.bytes_sent, m.bytes_received,
               m.client_node
        FROM service_map_minutes m WHERE m.minute >= %(lo)s AND m.minute < %(hi)s
    ), s AS (
        SELECT * FROM _service_map_rollup_of_spans(%(lo)s, %(hi)s)
    )
    SELECT 'worker' AS side, * FROM (SELECT * FROM w EXCEPT ALL SELECT * FROM s) x
    UNION ALL
    SELECT 'spans' AS side, * FROM (SELECT * FROM s EXCEPT ALL SELECT * FROM w) y
"""


def test_worker_rollup_matches_spans(smdb, capture, topology):
    """Real HTTP traffic through the capture: the worker folds each batch
    into service_map_minutes (C++ aggregation, SQL node ids) in the batch's
    transaction. The map shows the traffic, and every rollup row equals what
    SQL recomputes from the spans table: same edges, buckets (the C++ and
    SQL latency buckets agree on real latencies), counts, bytes and client
    node."""
    port = Pods.new_port()
    backend = Nginx(3, port, "backend")
    client, server = pod_ip4(1), pod_ip4(3)
    t0 = now_utc()
    try:
        base = f"http://{server}:{port}"
        for i in range(4):  # 4 connections, 10 requests each, 2 of them 500
            urls = []
            for k in range(10):
                path = "/e500" if k in (3, 7) else ("/f/1k.bin" if k % 2 else "/ok")
                urls += ["-o", "/dev/null", f"{base}{path}?c={i}&k={k}"]
            pod_run(1, "curl", "-sS", "--max-time", "20", *urls, timeout=30)
        where = "src_addr = %s::inet AND dst_addr = %s::inet AND dst_port = %s AND start_time >= %s"
        params = (client, server, port, t0)

        def written():
            rows = smdb.sql(f"SELECT protocol, count(*) AS n FROM spans WHERE {where} "
                            "GROUP BY protocol", params)
            n = {r["protocol"]: r["n"] for r in rows}
            return n.get("http", 0) >= 40 and n.get("tcp", 0) >= 4

        wait_for(written, 30, desc="40 http and 4 tcp spans")
    finally:
        backend.stop()
    t1 = now_utc() + timedelta(seconds=1)
    edges = [e for e in smdb.sql("SELECT * FROM service_map_edges(%s, %s)", (t0, t1))
             if (e["source"], e["target"]) == (client, server)]
    assert len(edges) == 1, edges
    e = edges[0]
    assert (e["detail__requests"], e["detail__errors"], e["detail__connections"]) == (40, 8, 4), e
    assert e["detail__p95_ms"] is not None and e["detail__p95_ms"] > 0, e
    tcp = smdb.sql(f"SELECT sum(bytes_sent) AS s, sum(bytes_received) AS r FROM spans "
                   f"WHERE protocol = 'tcp' AND {where}", params)[0]
    assert (e["detail__bytes_sent"], e["detail__bytes_received"]) == (tcp["s"], tcp["r"]), e

    # the invariant, over everything the worker wrote in this test run
    lo = smdb.value("SELECT _service_map_minute(coalesce(min(start_time), now())) FROM spans")
    hi = now_utc() + timedelta(minutes=1)
    n = smdb.value("SELECT count(*) FROM service_map_minutes WHERE minute >= %s AND minute < %s",
                   (lo, hi))
    assert n > 0
    diff = smdb.sql(ROLLUP_DIFF, {"lo": lo, "hi": hi})
    assert diff == [], diff


# ----------------------------------------------------------------------------
# (b) DOT


def test_dot_output_draws(smdb, mix, tmp_path):
    dot_bin = shutil.which("dot")
    assert dot_bin, "dot not found: tests/install-deps.sh installs graphviz"
    text = smdb.value("SELECT service_map_dot(%s, %s)", (T0, T1))
    assert text.startswith("digraph service_map {") and text.rstrip().endswith("}"), text
    src = tmp_path / "map.dot"
    src.write_text(text)
    res = subprocess.run([dot_bin, "-Tsvg", str(src)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"dot failed:\n{res.stderr}\n--- input:\n{text}"
    assert "Warning" not in res.stderr and "Error" not in res.stderr, res.stderr
    svg = res.stdout
    nodes = smdb.sql("SELECT id, title FROM service_map_nodes(%s, %s)", (T0, T1))
    edges = smdb.sql("SELECT source, target FROM service_map_edges(%s, %s)", (T0, T1))
    # Graphviz drew exactly one shape per node and one arrow per edge: no name
    # split into several tokens or merged with another.
    assert svg.count('class="node"') == len(nodes), svg
    assert svg.count('class="edge"') == len(edges), svg
    # the odd name (quote, backslash, line break) survives as one node
    assert any('we"ird\\pod\nname' == n["title"] for n in nodes), nodes
    assert "we&quot;ird\\pod" in svg or 'we"ird\\pod' in svg, svg
    # an empty window is still a valid graph
    empty = smdb.value("SELECT service_map_dot(%s, %s)",
                       (T0 - timedelta(days=400), T0 - timedelta(days=399)))
    res = subprocess.run([dot_bin, "-Tsvg"], input=empty, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr


def test_dot_quoting(smdb):
    q = lambda s: smdb.value("SELECT _service_map_dot_quote(%s)", (s,))  # noqa: E731
    assert q("plain") == '"plain"'
    assert q('a"b') == '"a\\"b"'
    assert q("a\\") == '"a\\\\"'
    assert q("a\nb") == '"a\\nb"'
    assert q("a\rb\x01c") == '"a b c"'
    # different names stay different ids
    names = ['x"', 'x\\"', "x\\", "x\n", "x\\n", "x"]
    assert len({q(n) for n in names}) == len(names)


# ----------------------------------------------------------------------------
# (c) the Grafana dashboard's queries


TRACE_FIELDS = ["traceID", "spanID", "parentSpanID", "operationName", "serviceName",
                "serviceTags", "startTime", "duration"]


def test_dashboard_is_grafana_json():
    dash, targets = dashboard_targets()
    types = {p["type"] for p, _ in targets}
    assert {"nodeGraph", "table", "timeseries", "traces"} <= types, types
    # the variables the queries use are the dashboard's
    names = {v["name"] for v in dash["templating"]["list"]}
    assert set(DASHBOARD_VARIABLES) <= names, names
    for _, t in targets:
        for var in re.findall(r"\$(\w+)", t["rawSql"]):
            assert var.startswith("__") or var in names, (var, t["rawSql"])
    # data links: the map's edges to the slowest requests, trace ids to the trace view
    links = [(p["title"], o["matcher"], prop["value"][0]["url"])
             for p in dash["panels"] for o in p.get("fieldConfig", {}).get("overrides", [])
             for prop in o["properties"] if prop["id"] == "links"]
    assert any(m == {"id": "byFrameRefID", "options": "edges"} and "var-edge_source=" in u
               for _, m, u in links), links
    assert sum(1 for _, m, u in links if m.get("options") == "trace_id" and "var-trace_id="
               in u) >= 2, links
    graph = [p for p in dash["panels"] if p["type"] == "nodeGraph"]
    assert len(graph) == 1
    refs = {t["refId"] for t in graph[0]["targets"]}
    # Grafana's Node Graph recognises the frames by these refIds
    assert refs == {"nodes", "edges"}, refs
    for p, t in targets:
        assert t["format"] in ("table", "time_series"), t
        assert t.get("rawQuery") and t.get("editorMode") == "code", t


def test_dashboard_queries_run(smdb, mix):
    """Every query in the dashboard, its macros expanded to the mix's window,
    run as the read-only role of deploy/grafana/grants.sql."""
    res = smdb.script("psql", smdb.dir, "-q", "-f", str(GRANTS), check=False)
    assert res.returncode == 0, f"grants.sql failed:\n{res.stdout}\n{res.stderr}"
    conn = smdb.connect(user="grafana_reader")
    _, targets = dashboard_targets()
    assert len(targets) >= 6, targets
    try:
        for panel, target in targets:
            sql = expand_macros(target["rawSql"], T0, T1, 60)
            with conn.cursor() as cur:
                try:
                    cur.execute(sql)
                except Exception as exc:  # noqa: BLE001 - reported with the query
                    pytest.fail(f"panel {panel['title']!r} query {target['refId']} failed: "
                                f"{exc}\n{sql}")
                cols = [d[0] for d in cur.description]
                rows = cur.fetchall()
            where = f"panel {panel['title']!r} {target['refId']}: {cols}"
            assert rows, f"{where}: no rows for the mix's window\n{sql}"
            if target["refId"] == "nodes":
                assert cols[:7] == NODE_FIELDS, where
            elif target["refId"] == "edges":
                assert cols[:5] == EDGE_FIELDS, where
            if panel["type"] == "traces":
                # the fields Grafana's trace view reads
                assert cols[:8] == TRACE_FIELDS, where
                for row in rows:
                    r = dict(zip(cols, row))
                    assert r["spanID"] and r["traceID"] and r["duration"] >= 0, (where, r)
                    for tags in (r["serviceTags"], r["tags"]):
                        assert isinstance(tags, list) and all(set(t) == {"key", "value"}
                                                              for t in tags), (where, r)
            if target["format"] == "time_series":
                assert cols[0] == "time" and "metric" in cols, where
                for row in rows:
                    values = [v for c, v in zip(cols, row) if c not in ("time", "metric")]
                    assert all(isinstance(v, (int, float)) or v is None or hasattr(v, "as_tuple")
                               for v in values), (where, row)
    finally:
        conn.close()
        smdb.sql("DROP OWNED BY grafana_reader")
        smdb.sql("DROP ROLE grafana_reader")


def test_dashboard_rates_match_the_map(smdb, mix):
    """The per-workload request-rate series sums to the node's served
    requests: the time series and the map count the same thing."""
    _, targets = dashboard_targets()
    rate = [t for p, t in targets if p["type"] == "timeseries" and "requests/s" in t["rawSql"]]
    assert len(rate) == 1
    sql = expand_macros(rate[0]["rawSql"], T0, T1, 60)
    checkout = f"{mix['ns']}/checkout"
    rows = [r for r in smdb.sql(sql) if r["metric"] == checkout]
    total = sum(float(r["requests/s"]) * 60 for r in rows)
    # [T0, T1): the request that starts exactly at T1 is the next minute's
    assert round(total) == 42, rows
    edges = smdb.sql("SELECT sum(detail__requests) AS n FROM service_map_edges(%s, %s) "
                     "WHERE target = %s", (T0, T1, checkout))
    assert round(total) == edges[0]["n"], (rows, edges)


def test_request_series_bins(smdb, mix):
    """request_series: per bin of the step and callee, the requests, errors
    and latency quantiles of the spans that started in that bin, computed
    here from the mix itself."""
    rows = in_window(mix["rows"], T0, T1)
    for step_min in (1, 3, 10):
        got = {(r["time"], r["workload"]): r for r in smdb.sql(
            "SELECT * FROM request_series(%s, %s, %s)", (T0, T1, timedelta(minutes=step_min)))}
        want = {}
        for r in rows:
            if r["protocol"] != "http":
                continue
            # bins are whole multiples of the step since 2000-01-01 UTC
            origin = datetime(2000, 1, 1, tzinfo=timezone.utc)
            k = (r["start"] - origin) // timedelta(minutes=step_min)
            key = (origin + k * timedelta(minutes=step_min), r["dst"].node_id())
            w = want.setdefault(key, dict(n=0, err=0, lat=[]))
            w["n"] += 1
            w["err"] += r["status"] == "ERROR"
            w["lat"].append(r["latency_ms"])
        assert set(got) == set(want), (step_min, sorted(set(got) ^ set(want)))
        for key, w in want.items():
            g = got[key]
            assert (g["requests"], g["errors"]) == (w["n"], w["err"]), (step_min, key, g, w)
            assert close(g["requests_per_s"], w["n"] / (step_min * 60)), (key, g)
            assert close(g["error_ratio"], w["err"] / w["n"]), (key, g)
            assert hist_quantile_ok(g["p50_ms"], w["lat"], 0.5), (key, g, sorted(w["lat"]))
            assert hist_quantile_ok(g["p95_ms"], w["lat"], 0.95), (key, g, sorted(w["lat"]))
    # a step under a minute is a minute (the rollup's resolution)
    fine = smdb.sql("SELECT count(*) AS n FROM request_series(%s, %s, '10 seconds')", (T0, T1))
    per_minute = smdb.sql("SELECT count(*) AS n FROM request_series(%s, %s)", (T0, T1))
    assert fine == per_minute
    for bad in ("0", "-1 minute"):
        with pytest.raises(Exception, match="positive step"):
            smdb.sql("SELECT * FROM request_series(%s, %s, %s)", (T0, T1, bad))
    with pytest.raises(Exception, match="finite window"):
        smdb.sql("SELECT * FROM request_series('-infinity', %s)", (T1,))


def test_recent_requests_newest_first(smdb, mix):
    """recent_requests: the window's HTTP exchanges, newest first, of one
    edge when asked, at most n."""
    rows = sorted((r for r in in_window(mix["rows"], T0, T1) if r["protocol"] == "http"),
                  key=lambda r: r["start"], reverse=True)
    got = smdb.sql("SELECT * FROM recent_requests(%s, %s, n => 1000)", (T0, T1))
    assert [g["start_time"] for g in got] == [r["start"] for r in rows]
    assert [(g["source"], g["target"]) for g in got] == \
        [(r["src"].node_id(), r["dst"].node_id()) for r in rows]
    five = smdb.sql("SELECT start_time FROM recent_requests(%s, %s, n => 5)", (T0, T1))
    assert [g["start_time"] for g in five] == [r["start"] for r in rows[:5]]
    src, dst = f"{mix['ns']}/checkout", f"{mix['ns']}/payments"
    edge = smdb.sql("SELECT * FROM recent_requests(%s, %s, %s, %s)", (T0, T1, src, dst))
    assert len(edge) == 10 and {(g["source"], g["target"]) for g in edge} == {(src, dst)}, edge


def test_open_connection_edges(smdb, mix):
    """open_connection_edges: the open_connections table per caller, callee
    and port."""
    a, b = mix["a"], mix["b"]
    got = [r for r in smdb.sql("SELECT * FROM open_connection_edges()")
           if r["caller"] == a.node_id()]
    assert sorted((r["callee"], r["dst_port"], r["connections"], r["bytes_sent"],
                   r["bytes_received"]) for r in got) == \
        [(b.node_id(), 5432, 1, 1000, 2000), (b.node_id(), 6379, 1, 1000, 2000)], got
    assert all(7190 <= r["oldest_s"] <= 7300 for r in got), got
    assert smdb.sql("SELECT * FROM open_connection_edges(0)") == []