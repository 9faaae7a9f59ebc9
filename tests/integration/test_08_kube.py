"""Kubernetes metadata: spans name the pods at both ends, from a fake API
server that speaks the real protocol (tests/kube/fake_kube_api.py: TLS with a
test CA, bearer tokens, list + watch). The server runs inside the node
namespace, where the PostgreSQL worker lives."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import (
    NETUTIL, REPO, node_ns, norm_ip, pod_ip4, set_guc, wait_for, wait_spans_for_port,
)
from test_13_span_store import log_lines_since, spans_trigger

FAKE = str(REPO / "tests" / "kube" / "fake_kube_api.py")


class FakeApi:
    """fake_kube_api.py as a program in a network namespace (the node's by
    default), driven through its JSON control endpoint (reachable only from
    inside that namespace). extra: more arguments (--host, --san-ip)."""

    def __init__(self, directory, netns=None, extra=()):
        self.netns = netns or node_ns()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "/usr/bin/python3", FAKE, "--dir", directory,
             "--bookmark-interval", "0.5", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fake API did not start: " + self.proc.stderr.read())
        self.info = json.loads(line)

    def call(self, op, **args):
        body = json.dumps({"op": op, "args": args})
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "curl", "-sS", "--max-time", "10",
             "-H", "Content-Type: application/json", "--data", body,
             self.info["control_url"] + "/control"],
            capture_output=True, text=True, check=True).stdout
        reply = json.loads(out)
        assert "error" not in reply, reply
        return reply["result"]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def fake_api():
    # the server process (postgres) must read the CA and the token: not under
    # pytest's tmp_path, whose parent is private to root
    d = tempfile.mkdtemp(prefix="ebpfc-kube-")
    os.chmod(d, 0o755)
    api = FakeApi(d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    yield api
    api.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def metadata(cluster, capture, fake_api):
    """The capture configured to use the fake API; restored afterwards."""
    info = fake_api.info
    for guc, value in (("kube_api_url", info["url"]), ("kube_token_file", info["token_file"]),
                       ("kube_ca_file", info["ca_file"])):
        cluster.sql(f"ALTER SYSTEM SET ebpf_capture.{guc} = %s", (value,))
    cluster.sql("SELECT pg_reload_conf()")
    yield fake_api
    for guc in ("kube_api_url", "kube_token_file", "kube_ca_file"):
        cluster.sql(f"ALTER SYSTEM RESET ebpf_capture.{guc}")
    cluster.sql("SELECT pg_reload_conf()")
    wait_for(lambda: cluster.status()["metadata_state"] == "disabled", 15,
             desc="metadata disabled again")


def wait_synced(cluster, pods_known):
    def ok():
        st = cluster.status()
        return st["metadata_state"] == "synced" and st["pods_known"] >= pods_known
    wait_for(ok, 20, desc=f"metadata synced with {pods_known} pods")


def test_metadata_disabled_without_api(cluster, capture):
    wait_for(lambda: cluster.status()["metadata_state"] is not None, 5, desc="metadata state")
    st = cluster.status()
    assert st["metadata_state"] == "disabled", st
    assert "kube_api_url" in (st["metadata_error"] or ""), st


def test_spans_name_both_ends(cluster, capture, pods, metadata):
    api = metadata
    api.call("add_replicaset", name="web-5d8f9c7b6", namespace="shop", deployment="web")
    api.call("add_pod", name="web-5d8f9c7b6-x2x9k", namespace="shop", ip=pod_ip4(2),
             node="node-a", owner=["ReplicaSet", "web-5d8f9c7b6"],
             labels={"app": "web", "pod-template-hash": "5d8f9c7b6"})
    api.call("add_pod", name="loadgen", namespace="tools", ip=pod_ip4(1), node="node-a")
    wait_synced(cluster, 2)

    _, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, [[10, 20]])
    rows = wait_spans_for_port(cluster, port, len(conns))
    assert len(rows) == 1, rows
    r = cluster.spans("span_id = %s", (rows[0]["span_id"],))[0]
    assert (r["src_pod"], r["src_namespace"], r["src_workload"], r["src_workload_kind"]) == \
        ("loadgen", "tools", "loadgen", "Pod"), r
    assert (r["dst_pod"], r["dst_namespace"], r["dst_workload"], r["dst_workload_kind"],
            r["dst_node"]) == ("web-5d8f9c7b6-x2x9k", "shop", "web", "Deployment", "node-a"), r

    # the pods table mirrors what the worker knows
    def mirrored():
        return cluster.sql("SELECT name, namespace, workload, workload_kind, "
                           "ARRAY(SELECT host(a) FROM unnest(ips) a) AS ips, "
                           "deleted_at FROM pods ORDER BY name")
    wait_for(lambda: len(mirrored()) >= 2, 10, desc="pods table")
    by_name = {p["name"]: p for p in mirrored()}
    web = by_name["web-5d8f9c7b6-x2x9k"]
    assert (web["namespace"], web["workload"], web["workload_kind"]) == \
        ("shop", "web", "Deployment"), web
    assert [norm_ip(a) for a in web["ips"]] == [pod_ip4(2)], web
    assert web["deleted_at"] is None, web


def test_open_connections_name_both_ends(cluster, capture, pods, metadata):
    api = metadata
    api.call("add_pod", name="db-0", namespace="data", ip=pod_ip4(2), node="node-b",
             owner=["StatefulSet", "db"])
    api.call("add_pod", name="app", namespace="shop", ip=pod_ip4(1), node="node-a")
    wait_synced(cluster, 2)
    set_guc(cluster, "ebpf_capture.open_connections_interval", "500ms")
    try:
        _, addr, port = pods.byte_server(2)
        client, info = pods.ctl_client(1, addr, port)
        client.command("round 1 1")
        row = wait_for(lambda: cluster.sql(
            "SELECT * FROM open_connections WHERE src_port = %s AND dst_port = %s",
            (info["lport"], port)), 10, desc="the open connection's row")[0]
        assert (row["src_pod"], row["src_namespace"], row["src_workload"],
                row["src_workload_kind"], row["src_node"]) == \
            ("app", "shop", "app", "Pod", "node-a"), row
        assert (row["dst_pod"], row["dst_namespace"], row["dst_workload"],
                row["dst_workload_kind"], row["dst_node"]) == \
            ("db-0", "data", "db", "StatefulSet", "node-b"), row
        client.command("close")
    finally:
        set_guc(cluster, "ebpf_capture.open_connections_interval", None)


def test_a_batch_of_pod_changes_alone_says_nothing_of_the_insert_path(cluster, capture, pods,
                                                                      metadata):
    """The worker logs when spans change path (straight into the table, or
    through INSERT because of a trigger). A batch that holds only pod changes
    writes no span and must not log that spans are written directly again."""
    api = metadata
    api.call("add_pod", name="first", namespace="batch", ip=pod_ip4(3), node="node-a")
    wait_synced(cluster, 1)
    _, addr, port = pods.byte_server(2)
    log_start = cluster.log_size()
    with spans_trigger(cluster):
        pods.batch(1, addr, port, [[1, 1]])
        wait_spans_for_port(cluster, port, 1)
        wait_for(lambda: log_lines_since(cluster, log_start, "because it has triggers"), 10,
                 desc="the log saying why spans go through INSERT")
    after_drop = cluster.log_size()
    spans_before = cluster.span_count()
    api.call("add_pod", name="second", namespace="batch", ip=pod_ip4(4), node="node-a")
    wait_for(lambda: cluster.sql("SELECT 1 FROM pods WHERE name = 'second'"), 10,
             desc="the pods-only batch")
    assert cluster.span_count() == spans_before, "a span was written: not a pods-only batch"
    assert not log_lines_since(cluster, after_drop, "spans are written directly again"), \
        cluster.log_text(after_drop)
    # the next spans go straight in again, and say so
    pods.batch(1, addr, port, [[2, 2]])
    wait_spans_for_port(cluster, port, 2)
    wait_for(lambda: log_lines_since(cluster, after_drop, "spans are written directly again"), 10,
             desc="the log saying spans are written directly again")


def test_capture_started_with_the_api_configured_syncs(cluster, capture, metadata):
    """A capture that starts with the API already configured (a server
    restart with the GUCs in postgresql.conf, as in the DaemonSet) syncs by
    itself. It once waited forever: the client's wake-up for its first list
    was never armed, and only a configuration change started it."""
    metadata.call("add_pod", name="early-bird", namespace="tools", ip=pod_ip4(1), node="node-a")
    wait_synced(cluster, 1)
    cluster.stop_capture()
    cluster.sql("SELECT capture_start('cni0')")
    cluster.wait_state("running")
    wait_synced(cluster, 1)
    assert cluster.status()["metadata_error"] in (None, ""), cluster.status()


def test_deleted_pod_and_address_reuse(cluster, capture, pods, metadata):
    api = metadata
    api.call("add_pod", name="old-api", namespace="shop", ip=pod_ip4(3), node="node-a")
    wait_synced(cluster, 1)
    api.call("delete_pod", name="old-api", namespace="shop")
    wait_for(lambda: cluster.value("SELECT deleted_at IS NOT NULL FROM pods WHERE name = "
                                   "'old-api'") is True, 15, desc="old-api marked deleted")
    # within the grace period the address still names the deleted pod
    _, addr, port = pods.byte_server(3)
    pods.batch(1, addr, port, [[1, 1]])
    row = wait_spans_for_port(cluster, port, 1)[0]
    assert cluster.spans("span_id = %s", (row["span_id"],))[0]["dst_pod"] == "old-api"

    # a new pod takes the address: new traffic is named after it
    api.call("add_pod", name="new-api", namespace="shop", ip=pod_ip4(3), node="node-a")
    wait_for(lambda: cluster.value("SELECT count(*) FROM pods WHERE name = 'new-api'") == 1, 15,
             desc="new-api mirrored")
    time.sleep(0.5)
    _, addr, port = pods.byte_server(3)
    pods.batch(1, addr, port, [[1, 1]])
    row = wait_spans_for_port(cluster, port, 1)[0]
    assert cluster.spans("span_id = %s", (row["span_id"],))[0]["dst_pod"] == "new-api"


def test_api_failure_keeps_capture_running(cluster, capture, pods, metadata):
    api = metadata
    api.call("add_pod", name="lonely", namespace="default", ip=pod_ip4(4), node="node-a")
    wait_synced(cluster, 1)
    pid = cluster.status()["pid"]
    api.call("inject", resource="pods", verb="any", kind="status", code=500, count=1000)
    api.call("reset_connections")
    wait_for(lambda: cluster.status()["metadata_state"] in ("stale", "failing"), 20,
             desc="metadata stale or failing")
    # spans keep flowing, named from the cache
    _, addr, port = pods.byte_server(4)
    pods.batch(1, addr, port, [[5, 5]])
    row = wait_spans_for_port(cluster, port, 1)[0]
    assert cluster.spans("span_id = %s", (row["span_id"],))[0]["dst_pod"] == "lonely"
    st = cluster.status()
    assert st["pid"] == pid and st["state"] == "running", st
    assert st["metadata_error"], st
    # and it recovers by itself
    api.call("clear_faults")
    wait_synced(cluster, 1)


def test_host_network_pod_resolves_to_its_node(cluster, capture, pods, metadata):
    """A host-network pod shares the node's address: traffic from that address
    is the node's, not one of the pods sharing it."""
    api = metadata
    node_ip = "10.213.0.1"  # cni0's address in the node namespace: the "host"
    api.call("add_node", name="node-a", internal_ips=[node_ip])
    api.call("add_pod", name="agent-7xk2p", namespace="kube-system", ip=node_ip, node="node-a",
             host_network=True, owner=["DaemonSet", "agent"])
    api.call("add_pod", name="db-0", namespace="data", ip=pod_ip4(2), node="node-a",
             owner=["StatefulSet", "db"])
    wait_synced(cluster, 2)
    _, addr, port = pods.byte_server(2)
    # a client in the node namespace (host network) -> the pod, across cni0
    out = subprocess.run(["ip", "netns", "exec", node_ns(), "/usr/bin/python3", str(NETUTIL),
                          "batch", "--host", addr, "--port", str(port), "--plan", "[[3, 4]]"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out.splitlines()[0])["laddr"] == node_ip, out
    row = wait_spans_for_port(cluster, port, 1)[0]
    r = cluster.spans("span_id = %s", (row["span_id"],))[0]
    assert norm_ip(r["src_addr"]) == node_ip, r
    assert r["src_pod"] is None and r["src_workload_kind"] == "Node", r
    assert (r["src_workload"], r["src_node"]) == ("node-a", "node-a"), r
    assert (r["dst_pod"], r["dst_workload"], r["dst_workload_kind"]) == \
        ("db-0", "db", "StatefulSet"), r
    # the pods table still lists the host-network pod under its DaemonSet
    agent = cluster.sql("SELECT workload, workload_kind, host_network FROM pods "
                        "WHERE name = 'agent-7xk2p'")
    assert agent and (agent[0]["workload"], agent[0]["workload_kind"],
                      agent[0]["host_network"]) == ("agent", "DaemonSet", True), agent
