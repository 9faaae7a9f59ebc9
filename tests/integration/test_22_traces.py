"""Traces (issue 19): span trees from the trace context the requests carry,
and their export over OTLP/HTTP.

The bookinfo chain runs in the pods (productpage, deploy/bookinfo/
productpage.py, in pod1; details, nginx, in pod2; reviews, an nginx proxy that
forwards the header unchanged, in pod3; ratings, nginx, in pod4), named
through the fake Kubernetes API, with the node namespace as the load
generator. The OTLP receiver (tests/otlp/receiver.js) runs on the node
namespace's loopback and decodes every request with the OpenTelemetry
JavaScript packages' protobuf code; it can answer 429, 503, 400, a partial
success, or hang."""

import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    PY, REPO, Pods, in_pod, node_ns, pod_ip4, set_guc, wait_for,
)
from httpenv import CLIENT_TRACE_IDS, Nginx
from test_08_kube import fake_api, metadata, wait_synced  # noqa: F401 (fixtures)

RECEIVER = REPO / "tests" / "otlp" / "receiver.js"
PRODUCTPAGE = REPO / "deploy" / "bookinfo" / "productpage.py"
OTLP_PORT = 4318
ENDPOINT = f"http://127.0.0.1:{OTLP_PORT}"

# The Python client run in the node namespace: COUNT page requests, each in
# its own trace, on one keep-alive connection; prints the trace ids.
LOADGEN = r"""
import http.client, json, secrets, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=20)
traces = []
for i in range(count):
    t = secrets.token_hex(16)
    p = secrets.token_hex(8)
    conn.request("GET", f"/productpage?id={i}", headers={"traceparent": f"00-{t}-{p}-01"})
    r = conn.getresponse()
    r.read()
    traces.append([t, p, r.status])
conn.close()
print(json.dumps(traces))
"""


class Receiver:
    """receiver.js in the node namespace, on 127.0.0.1:4318."""

    def __init__(self):
        self.out = Path(tempfile.mkdtemp(prefix="ebpfc-otlp-")) / "spans.jsonl"
        self.out.touch()
        self.proc = subprocess.Popen(
            in_pod("node", "node", str(RECEIVER), "--port", str(OTLP_PORT), "--out", str(self.out)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1)
        ready = json.loads(self.proc.stdout.readline() or "{}")
        assert ready.get("ready"), self.proc.stderr.read()

    def command(self, **c):
        self.proc.stdin.write(json.dumps(c) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert reply.get("ok"), reply
        return reply

    def stats(self):
        return self.command(cmd="stats")

    def spans(self):
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def by_span_id(self):
        out = {}
        for s in self.spans():
            out.setdefault(s["spanId"], []).append(s)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def export(cluster, capture):
    """Export on, to the receiver's address; every otlp setting reset after."""
    names = []

    def setting(name, value):
        names.append(name)
        set_guc(cluster, f"ebpf_capture.{name}", value)

    setting("otlp_endpoint", ENDPOINT)
    wait_for(lambda: cluster.status()["otlp_state"] != "off", 10, desc="exporter configured")
    yield setting
    for name in set(names):
        set_guc(cluster, f"ebpf_capture.{name}", None)


@pytest.fixture
def bookinfo(cluster, capture, metadata, pods):  # noqa: F811 (pytest fixture)
    """The bookinfo chain in the four pods, named through the fake API."""
    api = metadata
    for name, pod in (("productpage-v1", 1), ("details-v1", 2), ("reviews-v1", 3),
                      ("ratings-v1", 4)):
        api.call("add_replicaset", name=f"{name}-6b746f74", namespace="bookinfo",
                 deployment=name)
        api.call("add_pod", name=f"{name}-6b746f74-x{pod}", namespace="bookinfo",
                 ip=pod_ip4(pod), node="node-a", owner=["ReplicaSet", f"{name}-6b746f74"],
                 labels={"pod-template-hash": "6b746f74"})
    wait_synced(cluster, 4)
    port = Pods.new_port()
    ratings = Nginx(4, port, "backend")
    reviews = Nginx(3, port, "proxy", upstream=f"{pod_ip4(4)}:{port}")
    details = Nginx(2, port, "backend")
    page = pods.popen(1, [PY, PRODUCTPAGE, pod_ip4(1), port, f"http://{pod_ip4(2)}:{port}",
                          f"http://{pod_ip4(3)}:{port}"])

    def listening():
        res = subprocess.run(in_pod(1, "ss", "-Hltn", f"sport = :{port}"), capture_output=True,
                             text=True)
        return bool(res.stdout.strip())

    wait_for(listening, 10, desc="productpage listening")
    try:
        yield port
    finally:
        page.stop()
        for n in (details, reviews, ratings):
            n.stop()


def load(port, count):
    """COUNT page requests from the node namespace; returns [(trace, caller id, status)]."""
    res = subprocess.run(in_pod("node", PY, "-c", LOADGEN, pod_ip4(1), str(port), str(count)),
                         capture_output=True, text=True, timeout=300, check=True)
    traces = [tuple(t) for t in json.loads(res.stdout)]
    CLIENT_TRACE_IDS.update(t for t, _, _ in traces)
    assert all(s == 200 for _, _, s in traces), traces
    return traces


def trees(cluster, traces):
    """trace_tree() of every trace once its four hops are in spans."""
    ids = [t for t, _, _ in traces]
    wait_for(lambda: cluster.value(
        "SELECT count(*) FROM spans WHERE protocol = 'http' AND trace_id = ANY(%s)",
        (ids,)) >= 4 * len(ids), 30, desc=f"{4 * len(ids)} http spans")
    time.sleep(0.5)
    out = {}
    for t in ids:
        out[t] = cluster.sql("SELECT * FROM trace_tree(%s)", (t,))
    return out


def check_tree(rows, caller_id):
    """The problems of one page's tree: loadgen -> productpage (root, the
    loadgen's id), productpage -> details and -> reviews (its children),
    reviews -> ratings (reviews' child, an id of its own: nginx copies the
    header)."""
    p = []
    shape = [(r["depth"], r["src_workload"], r["dst_workload"]) for r in rows]
    want = [(1, None, "productpage-v1"), (2, "productpage-v1", "details-v1"),
            (2, "productpage-v1", "reviews-v1"), (3, "reviews-v1", "ratings-v1")]
    if shape != want:
        return [f"shape {shape}, expected {want}"]
    root, details, reviews, ratings = rows
    if root["span_id"] != caller_id or root["parent_span_id"] is not None:
        p.append(f"root {root['span_id']}/{root['parent_span_id']}, expected {caller_id}/None")
    for child in (details, reviews):
        if child["parent_span_id"] != root["span_id"]:
            p.append(f"{child['dst_workload']} parent {child['parent_span_id']}")
    if ratings["parent_span_id"] != reviews["span_id"] or ratings["span_id"] == reviews["span_id"]:
        p.append(f"ratings {ratings['span_id']}/{ratings['parent_span_id']}, reviews "
                 f"{reviews['span_id']}")
    return p


def nesting_us(rows):
    """For each parent-child pair: how far (microseconds) the child starts
    before its parent and ends after it, on the capture's clock."""
    by_id = {r["span_id"]: r for r in rows}
    out = []
    for r in rows:
        parent = by_id.get(r["parent_span_id"])
        if parent is None:
            continue
        early = (parent["start_time"] - r["start_time"]).total_seconds() * 1e6
        late = (r["end_time"] - parent["end_time"]).total_seconds() * 1e6
        out.append((early, late))
    return out


def test_bookinfo_traces_are_trees_on_a_busy_machine(cluster, capture, bookinfo):
    """Every page request makes one tree of depth three, also while both CPUs
    are busy with other work: parents come from the order in which the
    capture saw the requests, not from clocks. The timestamps' own jitter is
    measured and reported (a child may end microseconds after its parent on
    a busy node: nothing depends on it)."""
    burners = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(2)]
    try:
        traces = load(bookinfo, 60)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    got = trees(cluster, traces)
    problems, pairs = [], []
    for trace, caller, _ in traces:
        problems += [f"{trace}: {x}" for x in check_tree(got[trace], caller)]
        pairs += nesting_us(got[trace])
    assert not problems, "\n".join(problems[:20])
    early = max(e for e, _ in pairs)
    late = max(x for _, x in pairs)
    print(f"\nnesting on the capture's clock over {len(pairs)} parent-child pairs: a child "
          f"started at most {early:.1f} us before its parent and ended at most {late:.1f} us "
          f"after it (negative: inside)")


def test_trace_span_ids_own_keeps_the_callers_id_as_parent(cluster, capture, bookinfo):
    """ebpf_capture.trace_span_ids = own (callers that export their own
    client spans): every hop has a fresh id and the id its request carried as
    parent."""
    set_guc(cluster, "ebpf_capture.trace_span_ids", "own")
    try:
        wait_for(lambda: cluster.value("SHOW ebpf_capture.trace_span_ids") == "own", 5)
        time.sleep(0.5)  # the worker reloads at its next wake-up
        traces = load(bookinfo, 3)
        got = trees(cluster, traces)
    finally:
        set_guc(cluster, "ebpf_capture.trace_span_ids", None)
    for trace, caller, _ in traces:
        rows = got[trace]
        root = next(r for r in rows if r["dst_workload"] == "productpage-v1")
        assert root["parent_span_id"] == caller and root["span_id"] != caller, rows


def wait_exported(receiver, span_ids, timeout=60):
    def done():
        have = receiver.by_span_id()
        return all(s in have for s in span_ids)
    wait_for(done, timeout, interval=0.3, desc=f"{len(span_ids)} spans at the receiver")
    return receiver.by_span_id()


def test_export_bookinfo_decoded_by_the_opentelemetry_definitions(
        cluster, capture, bookinfo, receiver, export):
    """What the receiver decodes (with the OpenTelemetry JS protobuf code) is
    the table's trees: ids, parents, names, kinds, times, the semantic
    conventions' attributes and resources; connection spans too."""
    t0 = cluster.value("SELECT now()")
    traces = load(bookinfo, 5)
    got = trees(cluster, traces)
    rows = [r for t, _, _ in traces for r in got[t]]
    tcp = cluster.sql("SELECT * FROM spans WHERE protocol = 'tcp' AND start_time >= %s "
                      "AND dst_port = %s AND src_workload = 'productpage-v1'", (t0, bookinfo))
    assert len(tcp) >= 10, tcp  # productpage opens a connection per call
    have = wait_exported(receiver, [r["span_id"] for r in rows + tcp])
    problems = []
    for r in rows:
        [s] = [x for x in have[r["span_id"]] if x["traceId"] == r["trace_id"]][:1] or [None]
        if s is None:
            problems.append(f"{r['span_id']}: not exported in its trace")
            continue
        a, res = s["attributes"], s["resource"]
        want = {
            "parent": r["parent_span_id"] or "", "name": "GET", "kind": 2,
            "start": str(int(r["start_time"].timestamp() * 1e6) * 1000),
            "service.name": r["dst_workload"], "k8s.namespace.name": "bookinfo",
            "k8s.pod.name": r["dst_pod"], "k8s.deployment.name": r["dst_workload"],
            "k8s.node.name": "node-a",
            "http.request.method": "GET", "url.path": r["http_target"].split("?")[0],
            "http.response.status_code": r["http_status"],
            "server.address": r["attributes"].get("server.address"),
            "server.port": r["attributes"].get("server.port"),
            "client.address": str(r["src_addr"]).split("/")[0],
            "network.peer.port": r["src_port"], "network.protocol.version": "1.1",
        }
        seen = {
            "parent": s["parentSpanId"], "name": s["name"], "kind": s["kind"], "start": s["start"],
            **{k: res.get(k) for k in ("service.name", "k8s.namespace.name", "k8s.pod.name",
                                       "k8s.deployment.name", "k8s.node.name")},
            **{k: a.get(k) for k in ("http.request.method", "url.path",
                                     "http.response.status_code", "server.address",
                                     "server.port", "client.address", "network.peer.port",
                                     "network.protocol.version")},
        }
        if seen != want:
            problems.append(f"{r['span_id']}: " + ", ".join(
                f"{k}={seen[k]!r} (table {want[k]!r})" for k in want if seen[k] != want[k]))
        if any(k.startswith("__duplicate__") for k in a) or "tracestate" in a:
            problems.append(f"{r['span_id']}: attributes {a}")
        if s["scope"]["name"] != "ebpf_capture":
            problems.append(f"scope {s['scope']}")
    for r in tcp:
        s = have[r["span_id"]][0]
        want = ("tcp.connection", 3, r["trace_id"], "productpage-v1", r["bytes_sent"],
                r["dst_port"])
        seen = (s["name"], s["kind"], s["traceId"], s["resource"].get("service.name"),
                s["attributes"].get("tcp.bytes_sent"), s["attributes"].get("server.port"))
        if seen != want:
            problems.append(f"tcp {r['span_id']}: {seen}, expected {want}")
    assert not problems, "\n".join(problems[:30])
    st = receiver.stats()
    assert st["bad"] == 0 and st["encodings"].get("gzip", 0) == st["requests"], st
    assert set(st["content_types"]) == {"application/x-protobuf"}, st


def otlp(cluster):
    return cluster.sql("SELECT * FROM otlp_status() WHERE interface = 'cni0'")[0]


def test_export_json_without_compression(cluster, capture, bookinfo, receiver, export):
    """http/json, compression none: the same spans, hex ids."""
    export("otlp_protocol", "http/json")
    export("otlp_compression", "none")
    time.sleep(0.5)
    traces = load(bookinfo, 2)
    got = trees(cluster, traces)
    rows = [r for t, _, _ in traces for r in got[t]]
    have = wait_exported(receiver, [r["span_id"] for r in rows])
    for r in rows:
        s = have[r["span_id"]][-1]
        assert (s["traceId"], s["parentSpanId"]) == (r["trace_id"], r["parent_span_id"] or ""), s
    st = receiver.stats()
    assert "application/json" in st["content_types"] and st["encodings"].get("none"), st


def test_export_retries_429_and_503_and_honours_retry_after(
        cluster, capture, bookinfo, receiver, export):
    """429 and 503 are retried (after Retry-After when given), 400 is final
    (counted as failed), a partial success counts its rejected spans."""
    before = otlp(cluster)
    receiver.command(mode="status", status=503, retry_after="2", times=2)
    traces = load(bookinfo, 1)
    got = trees(cluster, traces)
    ids = [r["span_id"] for t, _, _ in traces for r in got[t]]
    wait_exported(receiver, ids, 30)
    # each 503 asked for 2 s (the back-off alone would wait 1 to 1.25 s)
    log = receiver.stats()["log"]
    for (t, status), (t_next, _) in zip(log, log[1:]):
        if status == 503:
            assert t_next - t >= 2000, log
    receiver.command(mode="status", status=429, times=1)
    traces = load(bookinfo, 1)
    got = trees(cluster, traces)
    wait_exported(receiver, [r["span_id"] for t, _, _ in traces for r in got[t]], 30)
    # two 503s and a 429: three retries (the 429 may have hit a later batch)
    after = wait_for(lambda: (lambda a: a if a["retries"] - before["retries"] >= 3 else None)(
        otlp(cluster)), 30, desc="three retries")
    st = receiver.stats()
    assert st["by_status"].get("503", 0) >= 2 and st["by_status"].get("429", 0) >= 1, st

    # a final error: dropped from the outbox, counted, said
    receiver.command(mode="status", status=400, times=1)
    load(bookinfo, 1)
    wait_for(lambda: otlp(cluster)["failed"] > after["failed"], 30, desc="a failed request")
    st = otlp(cluster)
    assert "HTTP 400" in (st["last_error"] or ""), st
    wait_for(lambda: otlp(cluster)["queued"] == 0, 30, desc="the outbox empty")

    # a partial success: the rejected spans are failed, the rest exported
    receiver.command(mode="partial", rejected=2)
    failed = otlp(cluster)["failed"]
    load(bookinfo, 1)
    wait_for(lambda: otlp(cluster)["failed"] >= failed + 2, 30, desc="partial success counted")
    receiver.command(mode="ok")


def test_export_to_a_hanging_endpoint_is_bounded_and_costs_the_capture_nothing(
        cluster, capture, pods, receiver, export):
    """A receiver that accepts requests and never answers: requests time out
    and are retried, the outbox stays within otlp_max_queue_size (the oldest
    requests go, counted), the capture writes every span meanwhile; once the
    receiver answers again the outbox drains."""
    export("otlp_timeout", "1s")
    export("otlp_max_queue_size", "1MB")
    export("otlp_compression", "none")
    receiver.command(mode="hang")
    port = Pods.new_port()
    backend = Nginx(2, port, "backend")
    try:
        status0 = cluster.status()
        res = subprocess.run(in_pod(1, "wrk", "-t1", "-c4", "-d3s",
                                    f"http://{pod_ip4(2)}:{port}/ok"),
                             capture_output=True, text=True, timeout=60, check=True)
        requests = int(res.stdout.split(" requests in")[0].split()[-1])
        wait_for(lambda: cluster.value(
            "SELECT count(*) FROM spans WHERE protocol = 'http' AND dst_port = %s",
            (port,)) >= requests, 30, desc=f"{requests} http spans")
        st = wait_for(lambda: (lambda s: s if s["dropped"] > 0 else None)(otlp(cluster)), 30,
                      desc="the outbox bound reached")
        assert st["queued_bytes"] <= 1024 * 1024, st
        assert cluster.value("SELECT coalesce(sum(octet_length(body)), 0) FROM _otlp_outbox "
                             "WHERE interface = 'cni0'") <= 1024 * 1024
        # a request in flight until it times out, or waiting to be sent again
        assert st["retries"] >= 1 and st["state"] in ("sending", "retrying"), st
        status1 = cluster.status()
        assert status1["spans_dropped"] == status0["spans_dropped"], status1
        assert status1["pid"] == status0["pid"], status1
        print(f"\nhanging endpoint: {requests} requests captured, {st['dropped']} spans dropped "
              f"from the outbox, {st['queued_bytes']} bytes queued")
    finally:
        backend.stop()
    # export turned off while a request waits to be retried: the worker idles
    # (its timer must not fire again and again), and resumes when it is on
    export("otlp_endpoint", "")
    wait_for(lambda: otlp(cluster)["state"] == "off", 10, desc="export off")
    pid = cluster.status()["pid"]
    ticks = lambda: sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[11:13])  # noqa: E731
    t0 = ticks()
    time.sleep(2)
    assert ticks() - t0 < 40, "the worker spun while export was off"
    receiver.command(mode="ok")
    export("otlp_endpoint", ENDPOINT)
    wait_for(lambda: otlp(cluster)["queued"] == 0, 90, desc="the outbox drained")
    assert otlp(cluster)["exported"] > 0


def test_export_survives_a_restart_with_the_endpoint_down(cluster, capture, bookinfo, export):
    """At least once: spans written while the endpoint is down wait in the
    outbox, survive a restart of the server, and reach the endpoint once it
    is up."""
    traces = load(bookinfo, 5)
    got = trees(cluster, traces)
    ids = [r["span_id"] for t, _, _ in traces for r in got[t]]
    wait_for(lambda: otlp(cluster)["queued"] >= len(ids), 30, desc="spans queued")
    assert "127.0.0.1" in (otlp(cluster)["last_error"] or ""), otlp(cluster)
    cluster.restart()
    cluster.wait_state("running", timeout=60)
    assert cluster.value("SELECT count(*) FROM _otlp_outbox") > 0
    r = Receiver()
    try:
        have = wait_exported(r, ids, 120)
        assert all(have[i] for i in ids)
        wait_for(lambda: otlp(cluster)["queued"] == 0, 60, desc="the outbox drained")
    finally:
        r.stop()
