"""The hub (docs/hub.md): one database that reads every node's, on real
clusters with real captures.

Three "nodes", each a network namespace with its own pod bridge cni0, two
pods on it and a PostgreSQL cluster capturing it, joined by a fabric
(a bridge in the hub's namespace, routes between the pod networks) so that
pods on different nodes talk to each other; a hub cluster in the fabric's
namespace; the fake Kubernetes API (tests/kube/fake_kube_api.py) announcing
the application pods (so the captures name them) and the node databases'
pods (so the hub finds them: label app.kubernetes.io/name=ebpf-capture in
namespace ebpf-capture, a container port named postgres). The nodes keep
the hub's role themselves (ebpf_capture.hub_access, scram-sha-256 over
TCP). Checked: the hub's edges equal the nodes' own summed with each
cross-node request once; the role reads spans and the rollup only; a fourth
node added at runtime shows up; a node stopped mid-query, and a node cut
off, leave the hub answering for the others within a bounded time and
saying which is missing; a node that comes back is counted again; a node
that leaves keeps no connection or slot of the hub; trace_spans across
nodes; Grafana's read-only role on the hub; hub_stop and a restart."""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from conftest import (LIB, MAIN_PORT, NETUTIL, NS, PG_BINDIR, PY, REPO, Cluster, run,
                      set_guc, wait_for)
from grafana import dashboard_targets, expand_macros
from test_08_kube import FakeApi

HUB_NS = f"{NS}-hb"
FABRIC_IP = "10.230.0.254"
HUB_ROLE = "ebpf_capture_hub"
DB_NAMESPACE = "ebpf-capture"
QUERY_TIMEOUT_S = 4
HTTP_PORT = 8080
TCP_PORT = 7000


def node_ns(k):
    return f"{NS}-n{k}"


def pod_ns(k, i):
    return f"{NS}-n{k}p{i}"


def fabric_ip(k):
    return f"10.230.0.{k}"


def pod_ip(k, i):
    return f"10.231.{k}.{10 + i}"


def node_name(k):
    return f"node-{k}"


def node_port(k):
    return MAIN_PORT - k


def sh(*cmd, check=True):
    return run(list(map(str, cmd)), check=check)


# ----------------------------------------------------------------------------
# the network


def make_fabric():
    delete_namespaces()
    sh("ip", "netns", "add", HUB_NS)
    sh("ip", "-n", HUB_NS, "link", "set", "lo", "up")
    sh("ip", "-n", HUB_NS, "link", "add", "fab0", "type", "bridge", "stp_state", "0",
       "forward_delay", "0")
    sh("ip", "-n", HUB_NS, "addr", "add", f"{FABRIC_IP}/24", "dev", "fab0")
    sh("ip", "-n", HUB_NS, "link", "set", "fab0", "up")


def plug(ns, bridge, port, peer_ns, addr):
    """A veth pair: `port` on `bridge` in ns, eth0 with addr in peer_ns."""
    sh("ip", "-n", ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
       "netns", peer_ns)
    sh("ip", "-n", ns, "link", "set", port, "master", bridge)
    sh("ip", "-n", ns, "link", "set", port, "up")
    sh("ip", "-n", peer_ns, "addr", "add", addr, "dev", "eth0")
    sh("ip", "-n", peer_ns, "link", "set", "eth0", "up")


def add_node_network(k, others):
    """Node k: cni0 with two pods, a leg on the fabric, routes to the other
    nodes' pod networks (and theirs to this one's)."""
    node = node_ns(k)
    sh("ip", "netns", "add", node)
    for knob in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                 "net.ipv4.conf.default.rp_filter=0"):
        sh("ip", "netns", "exec", node, "sysctl", "-q", "-w", knob)
    sh("ip", "-n", node, "link", "set", "lo", "up")
    sh("ip", "-n", node, "link", "add", "cni0", "type", "bridge", "stp_state", "0",
       "forward_delay", "0", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
       "nf_call_arptables", "0")
    sh("ip", "-n", node, "addr", "add", f"10.231.{k}.1/24", "dev", "cni0")
    sh("ip", "-n", node, "link", "set", "cni0", "up")
    plug(HUB_NS, "fab0", f"n{k}", node, f"{fabric_ip(k)}/24")
    for j in others:
        sh("ip", "-n", node, "route", "add", f"10.231.{j}.0/24", "via", fabric_ip(j))
        sh("ip", "-n", node_ns(j), "route", "add", f"10.231.{k}.0/24", "via", fabric_ip(k))
    for i in (1, 2):
        pod = pod_ns(k, i)
        sh("ip", "netns", "add", pod)
        sh("ip", "-n", pod, "link", "set", "lo", "up")
        plug(node, "cni0", f"v{i}", pod, f"{pod_ip(k, i)}/24")
        sh("ip", "-n", pod, "route", "add", "default", "via", f"10.231.{k}.1")


def delete_namespaces():
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name == HUB_NS or name.startswith(f"{NS}-n") and name[len(NS) + 2:][:1].isdigit():
            sh("ip", "netns", "del", name, check=False)


# ----------------------------------------------------------------------------
# the clusters


class HubEnv:
    def __init__(self, directory):
        self.dir = directory
        self.api = None
        self.nodes = {}  # k -> Cluster
        self.hub = None
        self.procs = []
        self.password = "hub-" + uuid.uuid4().hex
        self.password_file = os.path.join(directory, "hub-password")
        Path(self.password_file).write_text(self.password + "\n")
        os.chmod(self.password_file, 0o644)

    def kube_conf(self):
        info = self.api.info
        return [f"ebpf_capture.kube_api_url = '{info['url']}'",
                f"ebpf_capture.kube_token_file = '{info['token_file']}'",
                f"ebpf_capture.kube_ca_file = '{info['ca_file']}'",
                f"ebpf_capture.hub_password_file = '{self.password_file}'"]

    def start_cluster(self, netns, port, listen, extra):
        directory = tempfile.mkdtemp(prefix=f"ebpfc-{NS}-pg-")
        env = dict(os.environ, EBPFC_PG_EXTRA_CONF="\n".join(self.kube_conf() + extra))
        res = subprocess.run(["bash", str(LIB / "pgcluster.sh"), "start", directory, "--port",
                              str(port), "--netns", netns, "--listen", listen],
                             capture_output=True, text=True, env=env, timeout=120)
        if res.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise AssertionError(f"cluster in {netns} failed to start:\n{res.stderr}")
        return Cluster(directory, port)

    def add_node(self, k):
        add_node_network(k, sorted(self.nodes))
        c = self.start_cluster(node_ns(k), node_port(k), fabric_ip(k),
                               ["ebpf_capture.hub_access = on"])
        # the hub's role logs in over TCP with its password; nothing else does
        hba = Path(c.dir) / "data" / "pg_hba.conf"
        hba.write_text(f"host all {HUB_ROLE} 10.230.0.0/24 scram-sha-256\n" + hba.read_text())
        c.sql("SELECT pg_reload_conf()")
        c.sql("CREATE EXTENSION ebpf_capture")
        c.sql("SELECT capture_start('cni0')")
        self.nodes[k] = c
        wait_for(lambda: c.value("SELECT state FROM capture_status()") == "running", 20,
                 desc=f"capture on node {k}")
        return c

    def announce_database(self, k):
        self.api.call("add_pod", name=f"ebpf-capture-{node_name(k)}", namespace=DB_NAMESPACE,
                      ip=fabric_ip(k), node=node_name(k),
                      labels={"app.kubernetes.io/name": "ebpf-capture"},
                      ports={"postgres": node_port(k)})

    def serve(self, k, i, port, http):
        args = [PY, NETUTIL, "serve", "--bind", pod_ip(k, i), "--port", port]
        if http:
            args.append("--http")
        p = subprocess.Popen(["ip", "netns", "exec", pod_ns(k, i), *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        assert json.loads(line).get("ready"), line

    def batch(self, k, i, host, port, plan, http):
        args = ["batch", "--host", host, "--port", port, "--plan", json.dumps(plan)]
        if http:
            args.append("--http")
        out = sh("ip", "netns", "exec", pod_ns(k, i), PY, NETUTIL, *args).stdout
        return [json.loads(x) for x in out.splitlines() if x.strip()]

    def hub_sql(self, query, params=None):
        return self.hub.sql(query, params)

    def hub_nodes(self):
        return {r["node"]: r for r in self.hub.sql("SELECT * FROM hub_status()")}

    def wait_hub_nodes(self, states, timeout=30):
        def ok():
            got = {n: r["state"] for n, r in self.hub_nodes().items()}
            return got == states and (got or True)
        try:
            return wait_for(ok, timeout, 0.2, desc=f"hub nodes {states}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhub_status: {self.hub_nodes()}\n"
                                 f"summary: {self.hub.sql('SELECT * FROM hub_summary()')}\n"
                                 f"hub log:\n{self.hub.log_tail(30)}") from None

    def close(self):
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.kill()
                p.wait(5)
        for c in [self.hub, *self.nodes.values()]:
            if c is None:
                continue
            with contextlib.suppress(Exception):
                c.stop()
            crashes = c.unexpected_crashes() if c.log.exists() else []
            if not crashes:
                shutil.rmtree(c.dir, ignore_errors=True)
        if self.api is not None:
            self.api.close()
        delete_namespaces()


def app_pods(api):
    api.call("add_replicaset", name="web-6f7d8", namespace="shop", deployment="web")
    api.call("add_replicaset", name="api-5c9b4", namespace="shop", deployment="api")
    pods = [
        ("web-6f7d8-aaaa1", "shop", 1, 1, ["ReplicaSet", "web-6f7d8"], {"app": "web"}),
        ("cache-1", "shop", 1, 2, None, {"app": "cache"}),
        ("api-5c9b4-bbbb1", "shop", 2, 1, ["ReplicaSet", "api-5c9b4"], {"app": "api"}),
        ("web-6f7d8-aaaa2", "shop", 2, 2, ["ReplicaSet", "web-6f7d8"], {"app": "web"}),
        ("db-0", "data", 3, 1, ["StatefulSet", "db"], {"app": "db"}),
        ("loadgen", "tools", 3, 2, None, {"app": "loadgen"}),
        ("worker-1", "tools", 4, 1, None, {"app": "worker"}),
    ]
    for name, ns, k, i, owner, labels in pods:
        if owner and owner[0] == "ReplicaSet":
            labels = dict(labels, **{"pod-template-hash": owner[1].split("-")[-1]})
        api.call("add_pod", name=name, namespace=ns, ip=pod_ip(k, i), node=node_name(k),
                 owner=owner, labels=labels)
    # neither of these is a node database: another label, another namespace
    api.call("add_pod", name="ebpf-capture-hub-0", namespace=DB_NAMESPACE, ip=FABRIC_IP,
             node=node_name(1), labels={"app.kubernetes.io/name": "ebpf-capture-hub"},
             ports={"postgres": 5432})
    api.call("add_pod", name="ebpf-capture-elsewhere", namespace="other", ip="10.230.0.99",
             node=node_name(9), labels={"app.kubernetes.io/name": "ebpf-capture"})


@pytest.fixture(scope="module")
def env():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = tempfile.mkdtemp(prefix="ebpfc-hub-")
    os.chmod(d, 0o755)
    e = HubEnv(d)
    try:
        make_fabric()
        e.api = FakeApi(d, netns=HUB_NS, extra=["--host", "0.0.0.0", "--san-ip", FABRIC_IP])
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
        app_pods(e.api)
        for k in (1, 2, 3):
            e.add_node(k)
        e.hub = e.start_cluster(HUB_NS, MAIN_PORT - 6, "", [
            f"ebpf_capture.hub_namespace = '{DB_NAMESPACE}'",
            "ebpf_capture.hub_probe_interval = '500ms'",
            f"ebpf_capture.hub_query_timeout = '{QUERY_TIMEOUT_S}s'",
            "ebpf_capture.hub_connect_timeout = '2s'"])
        e.hub.sql("CREATE EXTENSION ebpf_capture")
        e.hub.sql("SELECT hub_start()")
        for k in (1, 2, 3):
            e.announce_database(k)
        # the servers: HTTP in web (node 1) and api (node 2), bytes in cache
        # (node 1) and db (node 3)
        e.serve(1, 1, HTTP_PORT, True)
        e.serve(2, 1, HTTP_PORT, True)
        e.serve(1, 2, TCP_PORT, False)
        e.serve(3, 1, TCP_PORT, False)
        yield e
    finally:
        e.close()
        shutil.rmtree(d, ignore_errors=True)


# What the traffic of make_traffic is, per edge: (HTTP requests,
# connections). Cross-node edges are seen by both nodes' captures.
TRUTH = {
    ("shop/web", "shop/api"): (9, 9),         # 5 from node 1, 4 from node 2's web
    ("shop/api", "data/db"): (0, 3),           # node 2 -> node 3
    ("tools/loadgen", "shop/web"): (2, 2),     # node 3 -> node 1
    ("shop/web", "shop/cache-1"): (0, 2),      # node 1 alone
}


@pytest.fixture(scope="module")
def traffic(env):
    t0 = env.hub.value("SELECT now()")
    env.batch(1, 1, pod_ip(2, 1), HTTP_PORT, [f"a{n}" for n in range(5)], True)
    env.batch(2, 2, pod_ip(2, 1), HTTP_PORT, [f"b{n}" for n in range(4)], True)
    env.batch(2, 1, pod_ip(3, 1), TCP_PORT, [[100, 200]] * 3, False)
    env.batch(3, 2, pod_ip(1, 1), HTTP_PORT, ["c0", "c1"], True)
    env.batch(1, 1, pod_ip(1, 2), TCP_PORT, [[10, 20]] * 2, False)
    # every node has written what it saw (its own view of each edge)
    per_node = {1: {("shop/web", "shop/api"): 5, ("tools/loadgen", "shop/web"): 2,
                    ("shop/web", "shop/cache-1"): 2},
                2: {("shop/web", "shop/api"): 9, ("shop/api", "data/db"): 3},
                3: {("shop/api", "data/db"): 3, ("tools/loadgen", "shop/web"): 2}}

    def written():
        for k, want in per_node.items():
            got = {(r["source"], r["target"]): r["detail__connections"]
                   for r in env.nodes[k].sql("SELECT * FROM service_map_edges(%s, now())", (t0,))}
            if any(got.get(e, 0) < n for e, n in want.items()):
                return None
        return True
    wait_for(written, 30, 0.3, desc="every node's spans of the traffic")
    time.sleep(0.5)
    t1 = env.hub.value("SELECT now()")
    return t0, t1


def edges(cluster, t0, t1, quiet=True):
    """The edges of a window; on a hub, quiet: no node failed to answer."""
    conn = cluster.connect()
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM service_map_edges(%s, %s)", (t0, t1))
            rows = {(r["source"], r["target"]): dict(r) for r in cur.fetchall()}
        assert not (quiet and conn.notices), conn.notices
        return rows
    finally:
        conn.close()


def counts(rows):
    return {e: (r["detail__requests"], r["detail__connections"]) for e, r in rows.items()}


def node_duplicates(cluster, k, t0, t1, answering):
    """The spans node k holds of requests whose client is a pod on another
    node that answers (the hub counts that node's record instead): per
    edge, (HTTP requests, connections)."""
    rows = cluster.sql(
        """SELECT _service_map_node_id(src_namespace, src_workload, src_pod, src_node, src_addr)
                      AS source,
                  _service_map_node_id(dst_namespace, dst_workload, dst_pod, dst_node, dst_addr)
                      AS target,
                  count(*) FILTER (WHERE protocol = 'http') AS http,
                  count(*) FILTER (WHERE protocol = 'tcp') AS tcp
           FROM spans
           WHERE start_time >= %s AND start_time < %s AND src_pod IS NOT NULL
             AND src_node <> %s AND src_node = ANY (%s)
           GROUP BY 1, 2""", (t0, t1, node_name(k), answering))
    return {(r["source"], r["target"]): (r["http"], r["tcp"]) for r in rows}


def sum_minus_duplicates(env, ks, t0, t1):
    total = {}
    answering = [node_name(k) for k in ks]
    for k in ks:
        for e, (req, conn) in counts(edges(env.nodes[k], t0, t1)).items():
            r0, c0 = total.get(e, (0, 0))
            total[e] = (r0 + req, c0 + conn)
        for e, (req, conn) in node_duplicates(env.nodes[k], k, t0, t1, answering).items():
            r0, c0 = total[e]
            total[e] = (r0 - req, c0 - conn)
    return {e: v for e, v in total.items() if v != (0, 0)}


def ask_hub(env, t0, t1):
    """In one new session of the hub: the edges of the window (per edge:
    requests, connections), the coverage node's title and subtitle, the
    warnings, how long it took (and the error, if any)."""
    result = {}
    started = time.monotonic()
    conn = env.hub.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT source, target, detail__requests, detail__connections "
                        "FROM service_map_edges(%s, %s)", (t0, t1))
            result["edges"] = {(s, t): (r, c) for s, t, r, c in cur.fetchall()}
            cur.execute("SELECT title, subtitle FROM service_map_nodes(%s, %s) "
                        "WHERE id = 'hub:missing-nodes'", (t0, t1))
            result["coverage"] = cur.fetchall()
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        result["error"] = exc
    finally:
        result["notices"] = list(conn.notices)
        conn.close()
        result["seconds"] = time.monotonic() - started
    return result


def coverage_node(cluster, t0, t1):
    """The map node that says which nodes are missing (None: none is), and
    the warnings of the nodes that did not answer."""
    conn = cluster.connect()
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM service_map_nodes(%s, %s) WHERE id = 'hub:missing-nodes'",
                        (t0, t1))
            rows = cur.fetchall()
        return (dict(rows[0]), conn.notices) if rows else None
    finally:
        conn.close()


# ----------------------------------------------------------------------------
# the tests, in order: each leaves the nodes as it found them


def test_hub_finds_the_node_databases(env):
    env.wait_hub_nodes({node_name(k): "up" for k in (1, 2, 3)})
    nodes = env.hub_nodes()
    for k in (1, 2, 3):
        r = nodes[node_name(k)]
        assert r["address"] == f"{fabric_ip(k)}:{node_port(k)}", r
        assert r["pod"] == f"{DB_NAMESPACE}/ebpf-capture-{node_name(k)}", r
        assert r["database"] == "postgres" and r["last_error"] is None, r
    s = env.hub.sql("SELECT * FROM hub_summary()")[0]
    assert s["enabled"] and s["worker_pid"] and s["discovery_state"] == "synced", s
    assert s["discovery_pods"] == 3, s  # the hub's own pod has another label
    assert (s["nodes"], s["nodes_up"], s["nodes_missing"]) == (3, 3, []), s


def test_the_hubs_role_reads_spans_and_the_rollup_only(env):
    n1 = env.nodes[1]
    role = n1.sql("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolcanlogin, "
                  "rolconfig FROM pg_roles WHERE rolname = %s", (HUB_ROLE,))[0]
    assert role["rolcanlogin"] and not (role["rolsuper"] or role["rolcreaterole"] or
                                        role["rolcreatedb"] or role["rolreplication"]), role
    assert "default_transaction_read_only=on" in role["rolconfig"], role

    def as_hub(sql, password=env.password):
        return subprocess.run(
            ["ip", "netns", "exec", HUB_NS, f"{PG_BINDIR}/psql", "-X", "-At", "-h", fabric_ip(1),
             "-p", str(node_port(1)), "-U", HUB_ROLE, "-d", "postgres", "-c", sql],
            capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=password),
            timeout=30)
    ok = as_hub("SELECT count(*) >= 0 FROM spans, (SELECT count(*) FROM service_map_minutes) m")
    assert ok.returncode == 0 and ok.stdout.strip() == "t", ok
    for sql in ("SELECT * FROM captures", "SELECT * FROM pods", "SELECT * FROM hub_nodes",
                "SELECT capture_stop('cni0')", "DELETE FROM spans"):
        res = as_hub(sql)
        assert res.returncode != 0 and ("permission denied" in res.stderr or
                                        "read-only" in res.stderr), (sql, res)
    bad = as_hub("SELECT 1", password="wrong")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr, bad


def test_hub_edges_are_the_nodes_edges_with_cross_node_requests_once(env, traffic):
    t0, t1 = traffic
    env.wait_hub_nodes({node_name(k): "up" for k in (1, 2, 3)})
    # both windows: within one or two minutes (the ends read from the nodes'
    # spans), and a wide one (whole minutes read from their rollups)
    for a, b in ((t0, t1), (t0 - timedelta(minutes=3), t1 + timedelta(minutes=2))):
        hub = counts(edges(env.hub, a, b))
        assert hub == TRUTH, (a, b, hub)
        assert hub == sum_minus_duplicates(env, (1, 2, 3), a, b), (a, b)
        assert coverage_node(env.hub, a, b) is None
    # the node graph's other numbers agree with a node's own for an edge
    # only one node sees
    hub_e = edges(env.hub, t0, t1)[("shop/web", "shop/cache-1")]
    own = edges(env.nodes[1], t0, t1)[("shop/web", "shop/cache-1")]
    for key in ("mainstat", "secondarystat", "detail__bytes_sent", "detail__bytes_received"):
        assert hub_e[key] == own[key], (key, hub_e, own)
    dot = env.hub.value("SELECT service_map_dot(%s, %s)", (t0, t1))
    assert "all 3 nodes answered" in dot and '"shop/web" -> "shop/api"' in dot, dot


def test_trace_spans_across_nodes_once(env):
    trace = uuid.uuid4().hex
    tp = f"00-{trace}-{uuid.uuid4().hex[:16]}-01"
    sh("ip", "netns", "exec", pod_ns(1, 1), "curl", "-sS", "-o", "/dev/null", "--max-time", "10",
       "-H", f"traceparent: {tp}", f"http://{pod_ip(2, 1)}:{HTTP_PORT}/traced")
    for k in (1, 2):
        wait_for(lambda k=k: env.nodes[k].sql("SELECT * FROM trace_spans(%s)", (trace,)), 15,
                 desc=f"the traced request on node {k}")
    on_nodes = [env.nodes[k].sql("SELECT span_id FROM trace_spans(%s)", (trace,)) for k in (1, 2)]
    assert [len(x) for x in on_nodes] == [1, 1], on_nodes
    got = env.hub.sql("SELECT * FROM trace_spans(%s)", (trace,))
    assert len(got) == 1, got
    # the client node's record (node 1's)
    assert got[0]["span_id"] == on_nodes[0][0]["span_id"], (got, on_nodes)
    assert got[0]["http_target"] == "/traced" and got[0]["src_node"] == node_name(1), got
    # the trace functions Grafana's trace panels read answer for the cluster too
    tree = env.hub.sql("SELECT depth, span_id FROM trace_tree(%s)", (trace,))
    assert [(r["depth"], r["span_id"]) for r in tree] == [(1, got[0]["span_id"])], tree
    view = env.hub.sql('SELECT "spanID", "operationName" FROM trace_view(%s)', (trace,))
    assert [(r["spanID"], r["operationName"]) for r in view] == \
        [(got[0]["span_id"], "GET /traced")], view
    a = got[0]["start_time"] - timedelta(seconds=2)
    b = got[0]["start_time"] + timedelta(seconds=2)
    ask = "SELECT * FROM slowest_requests(%s, %s, n => 1000) WHERE trace_id = %s"
    for k in (1, 2):
        assert len(env.nodes[k].sql(ask, (a, b, trace))) == 1, k
    slow = env.hub.sql(ask, (a, b, trace))
    assert len(slow) == 1 and slow[0]["http_target"] == "/traced", slow
    # of one edge (other tests' traffic may share it): that edge's only, this
    # request once
    edge = env.hub.sql("SELECT trace_id, source, target FROM slowest_requests(%s, %s, %s, %s, "
                       "1000)", (a, b, slow[0]["source"], slow[0]["target"]))
    assert [r["trace_id"] for r in edge].count(trace) == 1, edge
    assert {(r["source"], r["target"]) for r in edge} == \
        {(slow[0]["source"], slow[0]["target"])}, edge


def test_grafana_role_reads_the_cluster_map(env, traffic):
    t0, t1 = traffic
    grants = (REPO / "deploy" / "grafana" / "grants.sql").read_text()
    g = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/psql", "-X", "-q",
                        "-h", env.hub.dir, "-p", str(env.hub.port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1"],
                       input=grants, capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr
    conn = env.hub.connect(user="grafana_reader")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT source, target, detail__requests FROM service_map_edges(%s, %s)",
                        (t0, t1))
            got = {(s, t): n for s, t, n in cur.fetchall()}
            assert got[("shop/web", "shop/api")] == 9, got
            cur.execute("SELECT count(*) FROM service_map_nodes(%s, %s)", (t0, t1))
            assert cur.fetchone()[0] >= 5
            with pytest.raises(psycopg2.Error):
                cur.execute("SELECT * FROM hub_nodes")
    finally:
        conn.close()


def grafana_reader(cluster):
    """A connection as deploy/grafana/grants.sql's read-only role."""
    grants = (REPO / "deploy" / "grafana" / "grants.sql").read_text()
    g = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/psql", "-X", "-q",
                        "-h", cluster.dir, "-p", str(cluster.port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1"],
                       input=grants, capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr
    return cluster.connect(user="grafana_reader")


def test_the_dashboards_panels_read_every_node(env, traffic):
    """Every panel of the Grafana dashboard answers for the cluster on a
    hub: the request series and the recent requests count each request
    once, as the map does; the table of open connections counts a
    connection between two nodes once."""
    t0, t1 = traffic
    env.wait_hub_nodes({node_name(k): "up" for k in (1, 2, 3)})
    # a connection between two nodes, open: node 1's web to node 3's db
    for k in (1, 3):
        set_guc(env.nodes[k], "ebpf_capture.open_connections_interval", "300ms")
    held = subprocess.Popen(["ip", "netns", "exec", pod_ns(1, 1), PY, str(NETUTIL), "ctl",
                             "--host", pod_ip(3, 1), "--port", str(TCP_PORT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    conn = None
    try:
        assert "lport" in json.loads(held.stdout.readline())
        held.stdin.write("round 300 700\n")
        held.stdin.flush()
        assert json.loads(held.stdout.readline())["ok"]
        ask = ("SELECT connections, bytes_sent, bytes_received FROM open_connection_edges() "
               "WHERE caller = 'shop/web' AND callee = 'data/db' AND dst_port = %s")

        def on_both():
            got = [env.nodes[k].sql(ask, (TCP_PORT,)) for k in (1, 3)]
            return all(g and g[0]["bytes_received"] >= 700 for g in got) and got
        on_nodes = wait_for(on_both, 20, 0.2, desc="the open connection on nodes 1 and 3")
        assert [g[0]["connections"] for g in on_nodes] == [1, 1], on_nodes
        hub = env.hub.sql(ask, (TCP_PORT,))
        assert [(r["connections"], r["bytes_sent"], r["bytes_received"]) for r in hub] == \
            [(1, on_nodes[0][0]["bytes_sent"], on_nodes[0][0]["bytes_received"])], hub

        conn = grafana_reader(env.hub)
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            _, targets = dashboard_targets()
            for panel, target in targets:
                cur.execute(expand_macros(target["rawSql"], t0, t1, 60))
                assert cur.fetchall(), (panel["title"], target["rawSql"])
            assert not conn.notices, conn.notices
            # the traffic's requests, newest first, each once
            cur.execute("SELECT * FROM recent_requests(%s, %s, n => 1000)", (t0, t1))
            recent = cur.fetchall()
            per_edge = {}
            for r in recent:
                e = (r["source"], r["target"])
                per_edge[e] = per_edge.get(e, 0) + 1
            assert per_edge == {e: n for e, (n, _) in TRUTH.items() if n}, per_edge
            assert [r["start_time"] for r in recent] == \
                sorted((r["start_time"] for r in recent), reverse=True)
            # the series over the whole minutes around the traffic: what
            # recent_requests lists there, per callee
            cur.execute("SELECT date_trunc('minute', %s::timestamptz) AS m0, "
                        "date_trunc('minute', now()) + interval '1 minute' AS m1", (t0,))
            m0, m1 = cur.fetchone().values()
            cur.execute("SELECT workload, sum(requests) AS n FROM request_series(%s, %s) "
                        "GROUP BY 1", (m0, m1))
            series = {r["workload"]: r["n"] for r in cur.fetchall()}
            cur.execute("SELECT target, count(*) AS n FROM recent_requests(%s, %s, n => 100000) "
                        "GROUP BY 1", (m0, m1))
            listed = {r["target"]: r["n"] for r in cur.fetchall()}
            assert series == listed, (series, listed)
            assert series["shop/api"] >= 9 and series["shop/web"] >= 2, series
    finally:
        if conn is not None:
            conn.close()
        with contextlib.suppress(Exception):
            held.stdin.write("close\n")
            held.stdin.flush()
        held.wait(10)
        for k in (1, 3):
            set_guc(env.nodes[k], "ebpf_capture.open_connections_interval", None)


def test_a_fourth_node_joins_at_runtime(env, traffic):
    t0 = env.hub.value("SELECT now()")
    env.add_node(4)
    env.announce_database(4)
    env.wait_hub_nodes({node_name(k): "up" for k in (1, 2, 3, 4)})
    env.batch(4, 1, pod_ip(1, 1), HTTP_PORT, ["w0", "w1", "w2"], True)

    def seen():
        e = counts(edges(env.hub, t0, env.hub.value("SELECT now()")))
        return e.get(("tools/worker-1", "shop/web")) == (3, 3) and e
    got = wait_for(seen, 20, 0.3, desc="node 4's traffic in the hub's map")
    assert len(got) == 1, got  # only the new edge in this window


def test_a_node_stopped_mid_query(env, traffic):
    t0, t1 = traffic
    ks = sorted(env.nodes)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    n2 = env.nodes[2]
    # node 2 holds the hub's query: its spans and rollup are locked
    blocker = n2.connect()
    blocker.autocommit = False
    blocker.cursor().execute("LOCK TABLE service_map_minutes, spans IN ACCESS EXCLUSIVE MODE")
    result = {}
    thread = threading.Thread(target=lambda: result.update(ask_hub(env, t0, t1)))
    thread.start()
    try:
        wait_for(lambda: n2.sql("SELECT 1 FROM pg_stat_activity WHERE usename = %s AND "
                                "wait_event_type = 'Lock' AND query LIKE %s",
                                (HUB_ROLE, "%_service_map_window_of%")), 10, 0.05,
                 desc="the hub's query waiting on node 2")
        assert thread.is_alive(), result  # held by node 2
        stopped = time.monotonic()
        run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/pg_ctl", "-D", f"{n2.dir}/data",
             "-m", "immediate", "-w", "stop"])
        thread.join(3 * QUERY_TIMEOUT_S + 10)
        assert not thread.is_alive(), "the hub's query still runs"
        answered_after = time.monotonic() - stopped
    finally:
        with contextlib.suppress(Exception):
            blocker.close()
    assert "error" not in result, result
    assert answered_after < 2 * QUERY_TIMEOUT_S, result
    # node 2 missing: its own records are gone, but the requests its clients
    # made to other nodes are counted from those nodes (api -> db, by node 3)
    want = dict(TRUTH)
    want[("shop/web", "shop/api")] = (5, 5)  # node 1's web only
    assert result["edges"] == want, result
    n = len(ks)
    assert result["coverage"] == [(f"{n - 1} of {n} nodes answered", "missing: node-2")], result
    # the edges' answer came after node 2 was stopped, and said so
    assert any('node "node-2" did not answer' in x for x in result["notices"]), result
    env.wait_hub_nodes({**{node_name(k): "up" for k in ks}, node_name(2): "down"})
    assert "node-2" in env.hub.value("SELECT service_map_dot(%s, %s)", (t0, t1)).split("\n")[1]


def test_the_node_comes_back_and_is_counted_again(env, traffic):
    t0, t1 = traffic
    ks = sorted(env.nodes)
    env.nodes[2].script("restart", env.nodes[2].dir)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    # a session that asked the nodes before node 2 restarts again: the
    # connection it kept to node 2 is dead, and opened anew, not reported
    conn = env.hub.connect()
    try:
        with conn.cursor() as cur:
            query = ("SELECT source, target, detail__requests, detail__connections "
                     "FROM service_map_edges(%s, %s)")
            cur.execute(query, (t0, t1))
            assert {(s, t): (r, c) for s, t, r, c in cur.fetchall()} == TRUTH
            env.nodes[2].script("restart", env.nodes[2].dir)
            env.wait_hub_nodes({node_name(k): "up" for k in ks})
            conn.notices.clear()
            conn.autocommit = False  # the coverage is the transaction's
            cur.execute(query, (t0, t1))
            assert {(s, t): (r, c) for s, t, r, c in cur.fetchall()} == TRUTH
            assert not conn.notices, conn.notices
            cur.execute("SELECT * FROM _hub_coverage()")
            assert cur.fetchone() == (len(ks), None)
            conn.rollback()
    finally:
        conn.close()


def test_a_node_that_leaves_keeps_nothing_of_the_hub(env, traffic):
    t0, t1 = traffic
    n3 = env.nodes[3]
    ks = sorted(env.nodes)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    # the hub is connected to node 3 now (its probes, a query)
    edges(env.hub, t0, t1)
    assert n3.value("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (HUB_ROLE,)) >= 1
    env.api.call("delete_pod", name=f"ebpf-capture-{node_name(3)}", namespace=DB_NAMESPACE)
    env.wait_hub_nodes({node_name(k): "up" for k in ks if k != 3})
    wait_for(lambda: n3.value("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                              (HUB_ROLE,)) == 0, 10, 0.2,
             desc="no connection of the hub left on node 3")
    assert n3.value("SELECT count(*) FROM pg_replication_slots") == 0
    assert env.hub.value("SELECT count(*) FROM pg_foreign_server WHERE srvname LIKE "
                         "'ebpfc\\_node\\_%%'") == len(ks) - 1
    # without node 3: its server's records are gone, its clients' requests
    # are counted from the servers' nodes
    got = counts(edges(env.hub, t0, t1))
    want = dict(TRUTH)
    want[("shop/api", "data/db")] = (0, 3)        # node 2, the client's
    want[("tools/loadgen", "shop/web")] = (2, 2)  # node 1, the server's
    assert got == want, got
    assert coverage_node(env.hub, t0, t1) is None  # it left: nothing is missing
    env.announce_database(3)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})


def test_settings_follow_a_reload(env, traffic):
    """A new password (the Secret rotated: every server reloads) and another
    selector: the nodes' role and the hub's mappings follow the file, the
    hub forgets the nodes the selector no longer matches, and takes them
    back."""
    t0, t1 = traffic
    ks = sorted(env.nodes)
    old = env.password
    env.password = "hub-" + uuid.uuid4().hex
    Path(env.password_file).write_text(env.password + "\n")
    for c in [*env.nodes.values(), env.hub]:
        c.sql("SELECT pg_reload_conf()")

    def logs_in(password):
        return subprocess.run(
            ["ip", "netns", "exec", HUB_NS, f"{PG_BINDIR}/psql", "-X", "-At", "-h", fabric_ip(1),
             "-p", str(node_port(1)), "-U", HUB_ROLE, "-d", "postgres", "-c", "SELECT 1"],
            capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=password),
            timeout=30).returncode == 0
    wait_for(lambda: logs_in(env.password) and not logs_in(old), 15, 0.3,
             desc="node 1 takes the new password only")
    # a new session of the hub logs in with the new one
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    assert counts(edges(env.hub, t0, t1)) == TRUTH
    set_guc(env.hub, "ebpf_capture.hub_selector", "app.kubernetes.io/name=nothing")
    try:
        env.wait_hub_nodes({})
        assert env.hub.value("SELECT count(*) FROM pg_foreign_server") == 0
    finally:
        set_guc(env.hub, "ebpf_capture.hub_selector", None)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    assert counts(edges(env.hub, t0, t1)) == TRUTH


def test_hub_resumes_after_a_restart_and_stops(env, traffic):
    t0, t1 = traffic
    ks = sorted(env.nodes)
    env.hub.script("restart", env.hub.dir)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    assert counts(edges(env.hub, t0, t1)) == TRUTH
    assert env.hub.value("SELECT hub_stop()") is True
    wait_for(lambda: env.hub.value("SELECT count(*) FROM hub_nodes") == 0 and
             env.hub.value("SELECT count(*) FROM pg_foreign_server") == 0 and
             not env.hub.value("SELECT worker_pid FROM hub_summary()"), 15, 0.2,
             desc="the hub stopped and dropped its servers")
    assert env.hub.value("SELECT hub_stop()") is False
    # no longer a hub: the map is this database's own (empty)
    assert edges(env.hub, t0, t1) == {}
    for k in ks:
        wait_for(lambda k=k: env.nodes[k].value(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (HUB_ROLE,)) == 0, 10,
            0.2, desc=f"no hub connection on node {k}")
    env.hub.sql("SELECT hub_start()")
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    assert counts(edges(env.hub, t0, t1)) == TRUTH


def test_a_node_cut_off_from_the_network(env, traffic):
    t0, t1 = traffic
    ks = sorted(env.nodes)
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    n3 = env.nodes[3]
    before = {r["pid"] for r in n3.sql("SELECT pid FROM pg_stat_activity WHERE usename = %s",
                                       (HUB_ROLE,))}
    assert before  # the worker's connection
    sh("ip", "-n", node_ns(3), "link", "set", "eth0", "down")
    try:
        got = ask_hub(env, t0, t1)
        assert "error" not in got and got["seconds"] < 3 * QUERY_TIMEOUT_S, got
        n = len(ks)
        assert got["coverage"] == [(f"{n - 1} of {n} nodes answered", "missing: node-3")], got
        # node 3 missing: the requests its loadgen made are counted from
        # node 1's records, those node 2 made to it from node 2's
        assert got["edges"] == TRUTH, got
        env.wait_hub_nodes({**{node_name(k): "up" for k in ks}, node_name(3): "down"})
    finally:
        sh("ip", "-n", node_ns(3), "link", "set", "eth0", "up")
        for j in ks:
            if j != 3:
                sh("ip", "-n", node_ns(3), "route", "replace", f"10.231.{j}.0/24", "via",
                   fabric_ip(j))
    env.wait_hub_nodes({node_name(k): "up" for k in ks})
    # the sessions the hub dropped while the node was cut off end by
    # themselves (the role's TCP keepalives), not after hours
    wait_for(lambda: not before & {r["pid"] for r in n3.sql(
        "SELECT pid FROM pg_stat_activity WHERE usename = %s", (HUB_ROLE,))}, 60, 1,
        desc="the sessions left on node 3 by the cut")


# ----------------------------------------------------------------------------
# deploy/hub: what `kubectl kustomize` renders


def kustomize(path):
    import yaml
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: tests/install-deps.sh installs kubernetes-client"
    res = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"kubectl kustomize {path} failed:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def the(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [(o["kind"], o["metadata"]["name"]) for o in objects])
    return found[0]


def conf_settings(text):
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("'")
    return out


def test_deploy_hub_objects(cluster, tmp_path):
    hub = kustomize(REPO / "deploy" / "hub")
    nodes = kustomize(REPO / "deploy")
    sts = the(hub, "StatefulSet")
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    (ctr,) = spec["containers"]
    # its own volume, kept across restarts
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"], claim
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql/data", mounts
    assert ctr["env"][0] == {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}
    # no capture there: no capability added
    assert "add" not in ctr["securityContext"].get("capabilities", {}), ctr["securityContext"]
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    # the configuration: every hub setting exists, the password file is the
    # mounted Secret, the init script makes the database a hub
    cm = the(hub, "ConfigMap", "ebpf-capture-hub-config")
    conf = conf_settings(cm["data"]["postgresql.conf"])
    assert conf["shared_preload_libraries"] == "ebpf_capture", conf
    assert f"config_file={mounts['config']}/postgresql.conf" in " ".join(ctr["args"]), ctr
    defined = {r["name"] for r in cluster.sql(
        "SELECT name FROM pg_settings WHERE name LIKE 'ebpf_capture.%'")}
    ours = {k for k in conf if k.startswith("ebpf_capture.")}
    assert {"ebpf_capture.hub_selector", "ebpf_capture.hub_password_file"} <= ours <= defined, \
        sorted(ours - defined)
    assert mounts["hub-password"] == os.path.dirname(conf["ebpf_capture.hub_password_file"])
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["hub-password"]["secret"]["secretName"] == "ebpf-capture-hub"
    assert mounts["initdb"] == "/docker-entrypoint-initdb.d"
    script = cm["data"]["init-hub.sh"]
    assert "CREATE EXTENSION ebpf_capture" in script and "hub_start()" in script, script
    (tmp_path / "init-hub.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "init-hub.sh")]).returncode == 0
    # the pods it reads are the DaemonSet's, and it is not one of them
    key, value = conf["ebpf_capture.hub_selector"].split("=")
    ds = the(nodes, "DaemonSet")
    assert ds["spec"]["template"]["metadata"]["labels"].get(key) == value, ds["metadata"]
    assert pod["metadata"]["labels"].get(key) != value, pod["metadata"]
    (node_ctr,) = [c for c in ds["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "postgres"]
    assert "postgres" in {p.get("name") for p in node_ctr["ports"]}, node_ctr["ports"]
    # ... and may list and watch pods in its namespace, nothing more
    role = the(hub, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}], role
    assert not [o for o in hub if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = the(hub, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == spec["serviceAccountName"] == \
        the(hub, "ServiceAccount")["metadata"]["name"]
    # the nodes keep the role the hub logs in as, with the same Secret
    node_conf = conf_settings(the(nodes, "ConfigMap")["data"]["postgresql.conf"])
    assert node_conf["ebpf_capture.hub_access"] == "on", node_conf
    assert node_conf["ebpf_capture.hub_user"] == conf["ebpf_capture.hub_user"]
    node_mounts = {m["name"]: m["mountPath"] for m in node_ctr["volumeMounts"]}
    node_vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert node_mounts["hub-password"] == os.path.dirname(
        node_conf["ebpf_capture.hub_password_file"]), node_mounts
    secret = node_vols["hub-password"]["secret"]
    assert secret["secretName"] == "ebpf-capture-hub" and secret["optional"] is True, secret
    # the Service, and Grafana pointed at it
    svc = the(hub, "Service")
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "postgres"
    import yaml
    grafana = yaml.safe_load(the(hub, "ConfigMap", "ebpf-capture-grafana-hub")["data"][
        "ebpf-capture-hub.yaml"])
    (ds_conf,) = grafana["datasources"]
    namespace = svc["metadata"]["namespace"]
    assert ds_conf["url"] == f"{svc['metadata']['name']}.{namespace}.svc:5432", ds_conf
    assert ds_conf["user"] == "grafana_reader", ds_conf
