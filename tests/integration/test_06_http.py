"""HTTP/1.x exchange spans (protocol 'http') for real traffic between pods:
nginx as a reverse proxy chain, curl, python's http.server, and raw sockets
(httputil.py) where the test needs exact control of the bytes and of their
segmentation. tshark on the bridge is the independent reference."""

import json
import os
import signal
import secrets
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from conftest import (
    NETUTIL, PY, capture_restarted_with, set_guc,
    Pods, dump_spans, in_pod, netutil_json, norm_ip, now_utc, pid_alive, pod_ip4, pod_ip6,
    pod_run, run, wait_for, wait_span_for,
)
from httpenv import (
    Nginx, Tshark, assert_http_spans_ok, brief, check_http_span, http_rows, raw_client,
    new_traceparent, raw_server, request, secrets_in_spans, send_step, traceparent_ids, wait_http,
    wait_listening, worker_rss_kb,
)

COOKIE_SECRET = "setck" + secrets.token_hex(8)
# How far a child exchange's timestamps may stray outside its parent's: the
# filter's clock lags the wire by tens of microseconds on a loaded node, by
# bridge port (35 us seen); ten times that and more.
NESTING_SLACK = timedelta(microseconds=500)


# ----------------------------------------------------------------------------
# fixtures and small helpers


@pytest.fixture(scope="module")
def chain(topology):
    """nginx chain: client (pod1) -> proxy (pod2) -> backend (pod3)."""
    bport = Pods.new_port()
    pport = Pods.new_port()
    backend = Nginx(3, bport, "backend", cookie=COOKIE_SECRET)
    try:
        proxy = Nginx(2, pport, "proxy", upstream=f"{pod_ip4(3)}:{bport}")
    except Exception:
        backend.stop()
        raise
    try:
        yield SimpleNamespace(backend=backend, proxy=proxy, bport=bport, pport=pport,
                              proxy_addr=pod_ip4(2), backend_addr=pod_ip4(3))
    finally:
        proxy.stop()
        backend.stop()


CURL_W = "%{local_ip} %{local_port} %{http_code} %{size_download} %{num_connects}\\n"


def curl(pod, *args, timeout=30):
    """Runs curl in pod; returns the -w lines as dicts (one per URL)."""
    res = pod_run(pod, "curl", "-sS", "-g", "--max-time", "20", "-w", CURL_W, *args,
                  timeout=timeout)
    out = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5:
            out.append({"laddr": parts[0], "lport": int(parts[1]), "code": int(parts[2]),
                        "size": int(parts[3]), "connects": int(parts[4])})
    return out


def by_target(rows):
    out = {}
    for r in rows:
        out.setdefault(r["http_target"], []).append(r)
    return out


def tcp_row_for(cluster, src, sport, dst, dport):
    rows = wait_span_for(cluster, src, sport, dst, dport,
                         predicate=lambda r: r["protocol"] == "tcp")
    assert len(rows) == 1, dump_spans(rows)
    return rows[0]


def conn_where(laddr, lport, raddr, rport):
    return ("src_addr = %s::inet AND src_port = %s AND dst_addr = %s::inet AND dst_port = %s",
            (laddr, lport, raddr, rport))


def conn_http(cluster, info, count, timeout=15.0, settle=0.7):
    """The http spans of the connection a client result describes: waits
    until count of them are there, or (fewer) once the connection's tcp row
    is (it is written when the connection ends, with its last exchanges)."""
    where, params = conn_where(info["laddr"], info["lport"], info["raddr"], info["rport"])

    def ready():
        if len(http_rows(cluster, where, params)) >= count:
            return True
        return bool(cluster.spans(f"protocol = 'tcp' AND {where}", params))

    wait_for(ready, timeout, desc=f"{count} http spans of {info['laddr']}:{info['lport']}")
    time.sleep(settle)
    return http_rows(cluster, where, params)


# ----------------------------------------------------------------------------
# nginx reverse proxy chain


def test_proxy_chain_trace_context(cluster, capture, chain):
    """One span per hop; both hops join the client's trace; 5xx is an error
    and 4xx is not; requests without (or with an invalid) traceparent get
    fresh trace ids."""
    tp = {k: new_traceparent() for k in ("ok", "e500", "e404", "v6", "big")}
    run_id = secrets.token_hex(4)
    cases = [
        # key, path, traceparent, tracestate, via IPv6, status, body bytes
        ("ok", "/ok", tp["ok"], "vendor=abc,other=x:y", False, 200, 6),
        ("e500", "/e500", tp["e500"], None, False, 500, 5),
        ("e404", "/e404", tp["e404"], None, False, 404, 5),
        ("e401", "/e401", None, None, False, 401, 4),
        ("e503", "/e503", None, None, False, 503, 5),
        ("notp1", "/ok", None, None, False, 200, 6),
        ("notp2", "/f/1k.bin", None, None, False, 200, 1000),
        ("badtp", "/ok", "00-" + "0" * 32 + "-1234567890abcdef-01", None, False, 200, 6),
        ("v6", "/ok", tp["v6"], None, True, 200, 6),
        ("big", "/f/big.bin", tp["big"], None, False, 200, 150_000),
    ]
    t0 = now_utc()
    clients = {}
    for key, path, traceparent, tracestate, v6, code, size in cases:
        target = f"{path}?case={key}&run={run_id}"
        host = f"[{pod_ip6(2)}]" if v6 else pod_ip4(2)
        args = ["-o", "/dev/null"]
        if traceparent:
            args += ["-H", f"traceparent: {traceparent}"]
        if tracestate:
            args += ["-H", f"tracestate: {tracestate}"]
        out = curl(1, *args, f"http://{host}:{chain.pport}{target}")
        assert len(out) == 1 and out[0]["code"] == code and out[0]["size"] == size, out
        clients[target] = out[0]

    rows = wait_http(cluster, 2 * len(cases), "http_target LIKE %s", (f"%run={run_id}",))
    t1 = now_utc()
    assert_http_spans_ok(rows, t0, t1)
    got = by_target(rows)
    problems = []
    fresh_ids = []
    for key, path, traceparent, tracestate, v6, code, size in cases:
        target = f"{path}?case={key}&run={run_id}"
        spans = got.pop(target, [])
        hop1 = [s for s in spans if s["dst_port"] == chain.pport]
        hop2 = [s for s in spans if s["dst_port"] == chain.bport]
        if len(hop1) != 1 or len(hop2) != 1 or len(spans) != 2:
            problems.append(f"{key}: {len(hop1)} client->proxy and {len(hop2)} proxy->backend "
                            f"spans of {len(spans)}, expected 1 and 1")
            continue
        h1, h2 = hop1[0], hop2[0]
        c = clients[target]
        if (norm_ip(h1["src_host"]), h1["src_port"]) != (norm_ip(c["laddr"]), c["lport"]):
            problems.append(f"{key}: client side {h1['src_host']}:{h1['src_port']}, curl used "
                            f"{c['laddr']}:{c['lport']}")
        want_proxy = pod_ip6(2) if v6 else pod_ip4(2)
        if norm_ip(h1["dst_host"]) != norm_ip(want_proxy):
            problems.append(f"{key}: hop 1 server {h1['dst_host']}")
        if norm_ip(h2["src_host"]) != pod_ip4(2) or norm_ip(h2["dst_host"]) != pod_ip4(3):
            problems.append(f"{key}: hop 2 {h2['src_host']} -> {h2['dst_host']}")
        for name, h in (("hop 1", h1), ("hop 2", h2)):
            want = ("GET", code, "ERROR" if code >= 500 else "UNSET", 0, size)
            have = (h["http_method"], h["http_status"], h["status"], h["bytes_sent"],
                    h["bytes_received"])
            if have != want:
                problems.append(f"{key} {name}: method/status/span status/sent/received "
                                f"{have}, expected {want}")
            if h["attributes"].get("http.incomplete") is not False:
                problems.append(f"{key} {name}: incomplete {h['attributes']}")
        # server.address is Host without its port (and an IPv6 address
        # without brackets), server.port the port
        want_host = pod_ip6(2) if v6 else pod_ip4(2)
        for name, h, want in (("hop 1", h1, (want_host, chain.pport)),
                              ("hop 2", h2, (pod_ip4(3), chain.bport))):
            have = (h["attributes"].get("server.address"), h["attributes"].get("server.port"))
            if have != want:
                problems.append(f"{key} {name}: server.address/port {have}, expected {want}")
        if traceparent and key != "badtp":
            # hop 1 is the request curl made: it takes curl's id for it and
            # has no parent (nothing entered pod1). The proxy copies the
            # header: hop 2 is hop 1's child with an id of its own.
            trace, parent = traceparent_ids(traceparent)
            want1 = (trace, parent, None)
            want2 = (trace, h1["span_id"])
            if (h1["trace_id"], h1["span_id"], h1["parent_span_id"]) != want1:
                problems.append(f"{key} hop 1: trace/span/parent {h1['trace_id']}/"
                                f"{h1['span_id']}/{h1['parent_span_id']}, expected {want1}")
            if (h2["trace_id"], h2["parent_span_id"]) != want2 or h2["span_id"] == parent:
                problems.append(f"{key} hop 2: trace/span/parent {h2['trace_id']}/"
                                f"{h2['span_id']}/{h2['parent_span_id']}, expected "
                                f"{want2} and an id of its own")
            for name, h in (("hop 1", h1), ("hop 2", h2)):
                if tracestate and h["attributes"].get("tracestate") != tracestate:
                    problems.append(f"{key} {name}: tracestate "
                                    f"{h['attributes'].get('tracestate')!r}")
                if "http.traceparent_invalid" in h["attributes"]:
                    problems.append(f"{key} {name}: traceparent_invalid set")
        else:
            for name, h in (("hop 1", h1), ("hop 2", h2)):
                if h["parent_span_id"] is not None:
                    problems.append(f"{key} {name}: parent {h['parent_span_id']} without a "
                                    f"valid traceparent")
                fresh_ids.append(h["trace_id"])
                invalid = h["attributes"].get("http.traceparent_invalid")
                if (key == "badtp") != (invalid is True):
                    problems.append(f"{key} {name}: http.traceparent_invalid = {invalid!r}")
                if "tracestate" in h["attributes"]:
                    problems.append(f"{key} {name}: tracestate without a valid traceparent")
        # The proxy forwards the request after it arrived and answers after
        # the backend did: hop 2 lies within hop 1. The parent link above does
        # not depend on it (docs/traces.md); the timestamps do: each is taken
        # when the filter runs at its bridge port, which on a busy node lags
        # the wire by tens of microseconds and differs between ports (hop 2
        # was once seen to end 35 us after hop 1). Allowed: NESTING_SLACK.
        if not (h1["start_time"] - NESTING_SLACK <= h2["start_time"] <= h2["end_time"]
                <= h1["end_time"] + NESTING_SLACK):
            problems.append(f"{key}: hop 2 [{h2['start_time']}, {h2['end_time']}] not within "
                            f"hop 1 [{h1['start_time']}, {h1['end_time']}]")
        # Each exchange names its connection's tcp span.
        tcp1 = tcp_row_for(cluster, h1["src_host"], h1["src_port"], h1["dst_host"], h1["dst_port"])
        tcp2 = tcp_row_for(cluster, h2["src_host"], h2["src_port"], h2["dst_host"], h2["dst_port"])
        for name, h, t in (("hop 1", h1, tcp1), ("hop 2", h2, tcp2)):
            if h["attributes"]["tcp.span_id"] != t["span_id"]:
                problems.append(f"{key} {name}: tcp.span_id {h['attributes']['tcp.span_id']} "
                                f"!= the tcp row's {t['span_id']}")
            if not (t["start_time"] <= h["start_time"] <= h["end_time"] <= t["end_time"]):
                problems.append(f"{key} {name}: not within its tcp span")
    if got:
        problems.append(f"spans of requests nobody made: {list(got)}")
    if len(set(fresh_ids)) != len(fresh_ids):
        problems.append(f"fresh trace ids repeat: {fresh_ids}")
    if set(fresh_ids) & {traceparent_ids(t)[0] for t in tp.values()}:
        problems.append("a fresh trace id equals a client's")
    assert not problems, "\n".join(problems) + "\n" + brief(rows)


def test_keepalive_twenty_exchanges_curl(cluster, capture, chain):
    """curl with 20 URLs reuses one connection: 20 spans, one tcp.span_id,
    that of the connection's tcp row."""
    run_id = secrets.token_hex(4)
    kinds = [("/ok", 200, 6), ("/f/1k.bin", 200, 1000), ("/e404", 404, 5),
             ("/f/small.txt", 200, 17), ("/e500", 500, 5)]
    urls, expect = [], []
    for i in range(20):
        path, code, size = kinds[i % len(kinds)]
        target = f"{path}?ka={i}&run={run_id}"
        urls += ["-o", "/dev/null", f"http://{chain.backend_addr}:{chain.bport}{target}"]
        expect.append((target, code, size))
    t0 = now_utc()
    out = curl(1, *urls)
    assert [(o["code"], o["size"]) for o in out] == [(c, s) for _, c, s in expect], out
    assert len({o["lport"] for o in out}) == 1 and sum(o["connects"] for o in out) == 1, out
    lport = out[0]["lport"]

    tcp = tcp_row_for(cluster, pod_ip4(1), lport, chain.backend_addr, chain.bport)
    where, params = conn_where(pod_ip4(1), lport, chain.backend_addr, chain.bport)
    rows = wait_http(cluster, 20, where, params)
    assert_http_spans_ok(rows, t0, now_utc())
    assert len(rows) == 20, brief(rows)
    have = [(r["http_target"], r["http_status"], r["bytes_received"]) for r in rows]
    assert have == expect, brief(rows)
    ids = {r["attributes"]["tcp.span_id"] for r in rows}
    assert ids == {tcp["span_id"]}, (ids, tcp["span_id"])
    for prev, cur in zip(rows, rows[1:]):
        assert prev["end_time"] <= cur["start_time"], brief([prev, cur])
    assert tcp["start_time"] <= rows[0]["start_time"] and rows[-1]["end_time"] <= tcp["end_time"]
    assert all(r["attributes"]["http.incomplete"] is False for r in rows), brief(rows)
    assert all(r["attributes"].get("network.protocol.version") == "1.1" for r in rows), brief(rows)


def nginx_etag(chain, name):
    st = (chain.backend.dir / "www" / name).stat()
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def test_keepalive_message_kinds_nginx(cluster, capture, chain):
    """One connection to nginx: HEAD, 304, 204, Content-Length and chunked
    request bodies, other methods, a large file; exact body sizes."""
    etag = nginx_etag(chain, "f/1k.bin")
    chunks = [b"a" * 100, b"b" * 3000, b"c"]
    steps = [
        # method, target, request kwargs, head?, status, request body, response body
        ("GET", "/f/1k.bin?m=1", {}, False, 200, 0, 1000),
        ("HEAD", "/f/1k.bin?m=2", {}, True, 200, 0, 0),
        ("GET", "/f/1k.bin?m=3", {"headers": [f"If-None-Match: {etag}"]}, False, 304, 0, 0),
        ("GET", "/nocontent?m=4", {}, False, 204, 0, 0),
        ("POST", "/ok?m=5", {"body": b"p" * 5000}, False, 200, 5000, 6),
        ("POST", "/ok?m=6", {"chunks": chunks, "trailer": b"X-T: 1\r\n"}, False, 200, None, 6),
        ("OPTIONS", "/ok?m=7", {}, False, 200, 0, 6),
        ("DELETE", "/e404?m=8", {}, False, 404, 0, 5),
        ("GET", "/f/big.bin?m=9", {}, False, 200, 0, 150_000),
        ("GET", "/ok?m=10", {}, False, 200, 0, 6),
    ]
    plan, expect = [], []
    for method, target, kw, head, code, req_body, resp_body in steps:
        data, wire = request(method, target, host="backend.test", **kw)
        plan += [send_step(data), {"read": [{"head": head}]}]
        expect.append((method, target, code, wire if req_body is None else req_body, resp_body))
    t0 = now_utc()
    info = raw_client(1, chain.backend_addr, chain.bport, plan)
    assert info["error"] is None, info
    seen = [(r["status"], r["body_wire"]) for r in info["responses"]]
    assert seen == [(e[2], e[4]) for e in expect], seen  # what nginx really sent

    rows = conn_http(cluster, info, len(steps))
    assert_http_spans_ok(rows, t0, now_utc())
    have = [(r["http_method"], r["http_target"], r["http_status"], r["bytes_sent"],
             r["bytes_received"]) for r in rows]
    assert have == expect, brief(rows)
    assert len({r["attributes"]["tcp.span_id"] for r in rows}) == 1, brief(rows)
    chunked = [r["attributes"].get("http.request.chunked", False) for r in rows]
    assert chunked == [e[1] == "/ok?m=6" for e in expect], brief(rows)
    assert all(r["attributes"]["http.incomplete"] is False for r in rows), brief(rows)
    assert all(r["attributes"].get("server.address") == "backend.test" for r in rows), brief(rows)


# ----------------------------------------------------------------------------
# pipelining, segmentation, bodies (raw sockets)


def test_pipelined_requests_nginx(cluster, capture, chain):
    reqs = [("GET", "/ok?p=1", {}, False, 200, 0, 6),
            ("HEAD", "/f/1k.bin?p=2", {}, True, 200, 0, 0),
            ("POST", "/ok?p=3", {"body": b"x" * 300}, False, 200, 300, 6),
            ("GET", "/f/1k.bin?p=4", {}, False, 200, 0, 1000),
            ("GET", "/e404?p=5", {}, False, 404, 0, 5)]
    data = b"".join(request(m, t, **kw)[0] for m, t, kw, *_ in reqs)
    t0 = now_utc()
    info = raw_client(1, chain.backend_addr, chain.bport,
                      [send_step(data), {"read": [{"head": r[3]} for r in reqs]}])
    assert info["error"] is None, info
    assert [r["status"] for r in info["responses"]] == [r[4] for r in reqs], info
    rows = conn_http(cluster, info, len(reqs))
    assert_http_spans_ok(rows, t0, now_utc())
    assert len(rows) == len(reqs), brief(rows)
    # All requests went in one segment: same start; pair them by target.
    got = by_target(rows)
    for method, target, _, _, code, sent, received in reqs:
        spans = got.get(target, [])
        assert len(spans) == 1, (target, brief(rows))
        s = spans[0]
        assert (s["http_method"], s["http_status"], s["bytes_sent"], s["bytes_received"]) == \
            (method, code, sent, received), brief([s])
    ends = [got[r[1]][0]["end_time"] for r in reqs]
    assert ends == sorted(ends), brief(rows)


def test_pipelined_requests_in_order(cluster, capture, pods):
    """Five requests in one write; the server answers them one by one, 40 ms
    apart: five spans, ends in request order, each with its own target."""
    server, addr, port = raw_server(pods, 3)
    lens = [11, 0, 2222, 33, 70_000]
    targets = [f"/pipe/{i}?len={n}&delay=0.04" for i, n in enumerate(lens)]
    data = b"".join(request("GET", t)[0] for t in targets)
    t0 = now_utc()
    info = raw_client(1, addr, port, [send_step(data), {"read": [{}] * len(targets)}])
    assert info["error"] is None, info
    assert [r["body_wire"] for r in info["responses"]] == lens, info
    rows = conn_http(cluster, info, len(targets))
    assert_http_spans_ok(rows, t0, now_utc())
    assert len(rows) == len(targets), brief(rows)
    rows.sort(key=lambda r: r["end_time"])
    assert [r["http_target"] for r in rows] == targets, brief(rows)
    assert [r["bytes_received"] for r in rows] == lens, brief(rows)
    for a, b in zip(rows, rows[1:]):
        assert a["end_time"] < b["end_time"], brief(rows)
    # one segment carried all five requests: they started together
    assert len({r["start_time"] for r in rows}) == 1, brief(rows)


def test_small_segments_and_long_header_blocks(cluster, capture, pods):
    """Requests and responses written a few bytes at a time (TCP_NODELAY),
    with header blocks of 6 KB (several segments even at full size)."""
    server, addr, port = raw_server(pods, 3)
    pad = [f"X-Pad-{i}: {'h' * 190}" for i in range(30)]  # ~6.2 KB of headers
    t1_target = "/seg/1?len=3000&piece=5&pause=0.0003&hpad=6000"
    t2_target = "/seg/2?len=5000&te=chunked&chunk=333&trailer=1&piece=9&pause=0.0002"
    req1, _ = request("GET", t1_target, headers=pad)
    req2, wire2 = request("POST", t2_target, headers=pad,
                          chunks=[b"q" * 100 for _ in range(20)], trailer=b"X-Sum: 1\r\n")
    assert len(req1) > 6000
    t0 = now_utc()
    info = raw_client(1, addr, port, [
        send_step(req1, piece=7, pause=0.0003), {"read": [{}]},
        send_step(req2, piece=11, pause=0.0003), {"read": [{}]},
    ], nodelay=True)
    assert info["error"] is None, info
    lines = [server.readline(), server.readline()]
    assert [(ln["req_body"], ln["resp_body"]) for ln in lines] == \
        [(0, 3000), (wire2, info["responses"][1]["body_wire"])], lines
    rows = conn_http(cluster, info, 2)
    tcp = tcp_row_for(cluster, info["laddr"], info["lport"], addr, port)
    assert_http_spans_ok(rows, t0, now_utc())
    # The segmentation really happened (the capture counted the segments).
    assert tcp["packets_sent"] > 1000 and tcp["packets_received"] > 1000, dump_spans([tcp])
    have = [(r["http_method"], r["http_target"], r["http_status"], r["bytes_sent"],
             r["bytes_received"], r["attributes"]["http.incomplete"]) for r in rows]
    assert have == [("GET", t1_target, 200, 0, 3000, False),
                    ("POST", t2_target, 200, wire2, lines[1]["resp_body"], False)], brief(rows)
    assert rows[1]["attributes"].get("http.request.chunked") is True, brief(rows)
    assert rows[1]["attributes"].get("http.response.chunked") is True, brief(rows)
    assert all(r["attributes"].get("server.address") == "h" for r in rows), brief(rows)


def test_header_blocks_larger_than_a_payload_head(cluster, capture, pods):
    """6 KB and 12 KB header blocks each written at once (one segment as the
    filter sees it on a veth, which hands it segments of up to 64 KB): the
    exchanges are complete, sizes exact, Host and traceparent (placed after
    the padding) kept."""
    server, addr, port = raw_server(pods, 3)
    tp = new_traceparent()
    plan, targets = [], []
    for n, hpad in ((30, 6000), (60, 12000)):
        pad = [f"X-Pad-{i}: {'h' * 190}" for i in range(n)]
        target = f"/hb/{n}?len=500&hpad={hpad}"
        req, _ = request("GET", target, host=None,
                         headers=pad + [f"Host: late.example:{n}", f"traceparent: {tp}"])
        assert len(req) > 4096 * (n // 30)
        plan += [send_step(req), {"read": [{}]}]
        targets.append(target)
    t0 = now_utc()
    info = raw_client(1, addr, port, plan)
    assert info["error"] is None, info
    assert [r["body_wire"] for r in info["responses"]] == [500, 500], info
    rows = conn_http(cluster, info, 2)
    assert_http_spans_ok(rows, t0, now_utc())
    trace, parent = traceparent_ids(tp)
    have = [(r["http_target"], r["http_status"], r["bytes_received"],
             r["attributes"]["http.incomplete"], r["attributes"].get("server.address"),
             r["trace_id"], r["parent_span_id"]) for r in rows]
    # the second request reuses the first one's traceparent: a resend, with
    # an id of its own
    assert have == [(targets[0], 200, 500, False, "late.example", trace, None),
                    (targets[1], 200, 500, False, "late.example", trace, None)], brief(rows)
    assert [r["attributes"].get("server.port") for r in rows] == [30, 60], brief(rows)
    assert rows[0]["span_id"] == parent and rows[1]["span_id"] != parent, brief(rows)
    assert [r["attributes"].get("http.request.resend_count") for r in rows] == [None, 1], \
        brief(rows)


def test_chunked_bodies_beyond_a_payload_head(cluster, capture, pods):
    """Chunked bodies of many 1000-byte chunks, each body written at once:
    the chunk-size lines past the first 4 KiB of a segment still count."""
    server, addr, port = raw_server(pods, 3)
    chunks = [bytes([65 + i % 26]) * 1000 for i in range(40)]
    req, wire = request("POST", "/cb/1?len=40000&te=chunked&chunk=1000", chunks=chunks)
    t0 = now_utc()
    info = raw_client(1, addr, port, [send_step(req), {"read": [{}]}])
    assert info["error"] is None, info
    line = server.readline()
    assert line["req_body"] == wire and line["resp_body"] == info["responses"][0]["body_wire"]
    rows = conn_http(cluster, info, 1)
    assert_http_spans_ok(rows, t0, now_utc())
    have = [(r["bytes_sent"], r["bytes_received"], r["attributes"]["http.incomplete"])
            for r in rows]
    assert have == [(wire, line["resp_body"], False)], brief(rows)


def test_pipelined_messages_beyond_a_payload_head(cluster, capture, pods):
    """Five pipelined requests of 1.5 KB each in one write, and the server's
    five responses of 3000 bytes in one write: every message after the
    first 4 KiB of a segment is still an exchange of its own."""
    reqs = [request("GET", f"/pb/{i}?n={i}", headers=[f"X-Fill: {'f' * 1400}"])[0]
            for i in range(5)]
    resp = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"r" * 3000
                    for _ in range(5))
    script = [[{"recv": 5.0}, {"sleep": 0.2}, {"send": send_step(resp)["send"]}]]
    server, addr, port = raw_server(pods, 3, mode="script", script=script)
    t0 = now_utc()
    info = raw_client(1, addr, port, [send_step(b"".join(reqs)), {"read": [{}] * 5}])
    assert info["error"] is None and len(info["responses"]) == 5, info
    assert server.readline()["received"] == sum(map(len, reqs))  # one recv got them all
    rows = conn_http(cluster, info, 5)
    assert_http_spans_ok(rows, t0, now_utc())
    have = sorted((r["http_target"], r["http_status"], r["bytes_received"],
                   r["attributes"]["http.incomplete"]) for r in rows)
    assert have == [(f"/pb/{i}?n={i}", 200, 3000, False) for i in range(5)], brief(rows)


def test_large_bodies_exact(cluster, capture, pods):
    """Bodies much larger than a segment, whose middle the filter skips:
    sizes exact, exchanges complete, and on a keep-alive connection the
    span of a large response ends before the next request starts."""
    server, addr, port = raw_server(pods, 3)
    t0 = now_utc()
    singles = []
    for n in (70_000, 150_000, 1_000_000):
        req, _ = request("GET", f"/large/{n}?len={n}")
        singles.append(raw_client(1, addr, port, [send_step(req), {"read": [{}]}]))
    up = raw_client(1, addr, port, [send_step(request("POST", "/large/up?len=5",
                                                      body=b"u" * 1_000_000)[0]),
                                    {"read": [{}]}])
    ka = raw_client(1, addr, port, [
        send_step(request("GET", "/large/ka1?len=1000000")[0]), {"read": [{}]},
        {"sleep": 0.5},
        send_step(request("GET", "/large/ka2?len=10")[0]), {"read": [{}]},
    ])
    for info in singles + [up, ka]:
        assert info["error"] is None, info
    problems, rows = [], []
    for info, n in zip(singles, (70_000, 150_000, 1_000_000)):
        got = conn_http(cluster, info, 1, settle=0.3)
        rows += got
        have = [(r["bytes_received"], r["attributes"]["http.incomplete"]) for r in got]
        if have != [(n, False)]:
            problems.append(f"GET of {n} bytes: (bytes_received, incomplete) {have}")
    got = conn_http(cluster, up, 1, settle=0.3)
    rows += got
    if [(r["bytes_sent"], r["attributes"]["http.incomplete"]) for r in got] != [(1_000_000, False)]:
        problems.append(f"POST of 1,000,000 bytes: {brief(got)}")
    got = conn_http(cluster, ka, 2)
    rows += got
    if [(r["http_target"], r["bytes_received"], r["attributes"]["http.incomplete"])
            for r in got] != [("/large/ka1?len=1000000", 1_000_000, False),
                              ("/large/ka2?len=10", 10, False)]:
        problems.append(f"keep-alive: {brief(got)}")
    elif got[0]["end_time"] > got[1]["start_time"]:
        problems.append(f"keep-alive: the 1 MB response's span ends at {got[0]['end_time']}, "
                        f"after the next request started at {got[1]['start_time']} (0.5 s "
                        f"after the response)")
    assert_http_spans_ok(rows, t0, now_utc())
    assert not problems, "\n".join(problems) + "\n" + brief(rows)


def test_bodies_interim_and_bodyless_responses(cluster, capture, pods):
    """Content-Length and chunked bodies both ways, 100-continue and 103,
    204/304 and HEAD whose headers announce a body, and a response ended by
    the connection's close, all on one connection: exact body sizes. (Both
    sides write at most 1400 bytes at a time: segments with more than the
    filter's 4 KiB payload head are test_*_beyond_a_payload_head's, bodies
    over several segments test_large_bodies_exact's.)"""
    server, addr, port = raw_server(pods, 3)
    plan, expect = [], []

    def add(method, target, head=False, interim=0, continue_body=None, piece=0, **kw):
        data, wire = request(method, target, **kw)
        if continue_body is not None:
            hdr, _ = request(method, target, headers=["Expect: 100-continue"],
                             body=None)
            hdr = hdr[:-2] + f"Content-Length: {len(continue_body)}\r\n\r\n".encode()
            plan.extend([send_step(hdr), {"interim": 1}, send_step(continue_body),
                         {"read": [{"head": head}]}])
            wire = len(continue_body)
        else:
            plan.extend([send_step(data, piece=piece, pause=0.0002), {"read": [{"head": head}]}])
        expect.append((method, target, wire, interim))

    add("POST", "/b/1?len=0", body=b"")
    add("POST", "/b/2?len=1", body=b"1")
    add("PUT", "/b/3?len=10000", body=b"u" * 10_000)
    add("POST", "/b/4?te=chunked&len=7777&chunk=1000&trailer=1&piece=1400&pause=0.0002",
        chunks=[b"x", b"y" * 4096, b"z" * 10], trailer=b"X-T: 1\r\n", piece=1400)
    add("PATCH", "/b/5?len=20", interim=1, continue_body=b"c" * 2000)
    add("GET", "/b/6?interim=2&len=10", interim=2)
    add("GET", "/b/7?status=204&clh=500")
    add("GET", "/b/8?status=304&clh=1234")
    add("HEAD", "/b/9?len=4321", head=True)
    add("HEAD", "/b/10?te=chunked&len=99", head=True)
    add("GET", "/b/11?te=chunked&len=65536&chunk=65536&piece=1400&pause=0.0002")
    add("GET", "/b/12?len=0&te=chunked")
    add("GET", "/b/13?len=12345&eof=1")  # HTTP/1.0 style: ends with the close
    t0 = now_utc()
    info = raw_client(1, addr, port, plan, nodelay=True)
    assert info["error"] is None, info
    assert len(info["responses"]) == len(expect), info
    lines = [server.readline() for _ in expect]
    assert [ln["req_body"] for ln in lines] == [e[2] for e in expect], lines
    assert [ln["resp_body"] for ln in lines] == [r["body_wire"] for r in info["responses"]], \
        (lines, info)
    assert [r["interim"] for r in info["responses"]] == [e[3] for e in expect], info

    rows = conn_http(cluster, info, len(expect))
    assert_http_spans_ok(rows, t0, now_utc())
    have = [(r["http_method"], r["http_target"], r["bytes_sent"],
             r["attributes"].get("http.interim_responses", 0)) for r in rows]
    assert have == expect, brief(rows)
    assert [r["bytes_received"] for r in rows] == [ln["resp_body"] for ln in lines], brief(rows)
    assert [r["http_status"] for r in rows] == [ln["status"] for ln in lines], brief(rows)
    assert all(r["attributes"]["http.incomplete"] is False for r in rows), brief(rows)
    assert rows[-1]["attributes"].get("network.protocol.version") == "1.0", brief(rows[-1:])
    assert rows[-1]["bytes_received"] == 12345, brief(rows[-1:])
    want_resp_chunked = ["te=chunked" in e[1] and "HEAD" != e[0] for e in expect]
    assert [r["attributes"].get("http.response.chunked", False) for r in rows] == \
        want_resp_chunked, brief(rows)


def test_expect_100_continue_curl_through_proxy(cluster, capture, chain, tmp_path):
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(2000))
    body.chmod(0o644)
    tmp_path.chmod(0o755)
    run_id = secrets.token_hex(4)
    target = f"/ok?expect=1&run={run_id}"
    t0 = now_utc()
    res = pod_run(1, "curl", "-sS", "-v", "-o", "/dev/null", "--max-time", "20", "-w",
                  CURL_W, "-H", "Expect: 100-continue", "--data-binary", f"@{body}",
                  f"http://{chain.proxy_addr}:{chain.pport}{target}")
    assert "HTTP/1.1 100 Continue" in res.stderr, res.stderr  # nginx did send it
    lport = int(res.stdout.split()[1])
    # chunked upload through the proxy, too (nginx forwards it with a length)
    target2 = f"/ok?chunked=1&run={run_id}"
    res2 = pod_run(1, "curl", "-sS", "-v", "-o", "/dev/null", "--max-time", "20", "-w",
                   CURL_W, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body}",
                   f"http://{chain.proxy_addr}:{chain.pport}{target2}")
    assert "Transfer-Encoding: chunked" in res2.stderr, res2.stderr
    rows = wait_http(cluster, 4, "http_target LIKE %s", (f"%run={run_id}",))
    assert_http_spans_ok(rows, t0, now_utc())
    got = by_target(rows)
    assert sorted(got) == sorted([target, target2]), brief(rows)
    hop1 = [r for r in got[target] if r["dst_port"] == chain.pport]
    hop2 = [r for r in got[target] if r["dst_port"] == chain.bport]
    assert len(hop1) == 1 and len(hop2) == 1, brief(rows)
    h1, h2 = hop1[0], hop2[0]
    assert h1["src_port"] == lport, brief(rows)
    assert (h1["http_method"], h1["http_status"], h1["bytes_sent"], h1["bytes_received"]) == \
        ("POST", 200, 2000, 6), brief([h1])
    assert h1["attributes"].get("http.interim_responses") == 1, brief([h1])
    assert (h2["http_method"], h2["http_status"], h2["bytes_sent"], h2["bytes_received"]) == \
        ("POST", 200, 2000, 6), brief([h2])
    assert "http.interim_responses" not in h2["attributes"], brief([h2])
    c1 = [r for r in got[target2] if r["dst_port"] == chain.pport]
    c2 = [r for r in got[target2] if r["dst_port"] == chain.bport]
    assert len(c1) == 1 and len(c2) == 1, brief(rows)
    # curl sends a 2000-byte file as one chunk: "7d0\r\n" 2000 "\r\n" "0\r\n\r\n"
    assert c1[0]["attributes"].get("http.request.chunked") is True, brief(c1)
    assert c1[0]["bytes_sent"] == 5 + 2000 + 2 + 5, brief(c1)
    assert c2[0]["bytes_sent"] == 2000 and "http.request.chunked" not in c2[0]["attributes"], \
        brief(c2)


def test_response_ended_by_close_and_python_server_on_9999(cluster, capture, pods, tmp_path):
    server, addr, port = raw_server(pods, 3)
    t0 = now_utc()
    req, _ = request("GET", "/close?len=70000&eof=1", version="HTTP/1.0")
    a = raw_client(1, addr, port, [send_step(req), {"read": [{}]}])
    req, _ = request("GET", "/close?len=0&eof=1")
    b = raw_client(1, addr, port, [send_step(req), {"read": [{}]}])
    assert a["error"] is None and b["error"] is None, (a, b)
    assert a["responses"][0]["body_wire"] == 70000 and b["responses"][0]["body_wire"] == 0

    # python's http.server on port 9999 (HTTP/1.0, Content-Length)
    www = tmp_path / "www"
    www.mkdir()
    (www / "file.bin").write_bytes(b"z" * 5555)
    for p in (tmp_path, www):
        p.chmod(0o755)
    pods.popen(4, ["/usr/bin/python3", "-m", "http.server", 9999, "--bind", pod_ip4(4),
                   "--directory", www])
    wait_listening(4, 9999)
    out = curl(1, "-o", "/dev/null", f"http://{pod_ip4(4)}:9999/file.bin?x=1")
    assert out[0]["code"] == 200 and out[0]["size"] == 5555, out

    ra = conn_http(cluster, a, 1, settle=0.3)
    rb = conn_http(cluster, b, 1, settle=0.3)
    where, params = conn_where(out[0]["laddr"], out[0]["lport"], pod_ip4(4), 9999)
    rc = wait_http(cluster, 1, where, params)
    rows = ra + rb + rc
    assert_http_spans_ok(rows, t0, now_utc())
    assert len(ra) == len(rb) == len(rc) == 1, brief(rows)
    assert (ra[0]["bytes_received"], ra[0]["attributes"]["http.incomplete"],
            ra[0]["attributes"].get("network.protocol.version")) == (70000, False, "1.0"), brief(ra)
    assert (rb[0]["bytes_received"], rb[0]["attributes"]["http.incomplete"]) == (0, False), \
        brief(rb)
    assert (rc[0]["http_method"], rc[0]["http_target"], rc[0]["http_status"],
            rc[0]["bytes_received"]) == ("GET", "/file.bin?x=1", 200, 5555), brief(rc)
    assert rc[0]["attributes"]["http.incomplete"] is False, brief(rc)


def test_client_port_reused_at_once_every_exchange_has_its_span(cluster, capture, pods):
    """One client port for 30 HTTP exchanges in a row: the server closes each
    connection, and the client opens the next from the same port at once.
    Many connections then end and start on one four-tuple within a single
    drain of the ring buffer, and the kernel may still hold the previous
    connection's "stop sending its payload" entry. Every exchange must have
    its span, child of its own connection's span."""
    port = Pods.new_port()
    server = pods.popen(2, [PY, NETUTIL, "serve", "--bind", pod_ip4(2), "--port", port, "--http"])
    assert server.readline().get("ready")
    lport = 41000 + port % 1000
    t0 = now_utc()
    conns = netutil_json(1, "batch", "--host", pod_ip4(2), "--port", port, "--plan",
                         json.dumps([f"n{i}" for i in range(30)]), "--lport", lport, "--http")
    assert len(conns) == 30 and all(c["lport"] == lport and c["received"] > 0 for c in conns), \
        conns

    where, params = conn_where(pod_ip4(1), lport, pod_ip4(2), port)
    rows = wait_http(cluster, 30, where, params)
    assert_http_spans_ok(rows, t0, now_utc())
    targets = sorted(r["http_target"] for r in rows)
    assert targets == sorted(f"/n{i}" for i in range(30)), brief(rows)

    def all_tcp():
        t = cluster.spans(f"protocol = 'tcp' AND ({where})", params)
        return t if len(t) >= 30 else None

    tcp = wait_for(all_tcp, desc="the 30 connections' tcp spans")
    tcp_ids = {r["span_id"] for r in tcp}
    assert len(tcp) == 30 and len(tcp_ids) == 30, dump_spans(tcp[:4])
    parents = [r["attributes"].get("tcp.span_id") for r in rows]
    assert len(set(parents)) == 30 and set(parents) == tcp_ids, brief(rows)


def drop_every_nth(pod, rule_match, nth, table="ebpfc_httploss"):
    ruleset = (f"table inet {table} {{\n chain input {{\n"
               f"  type filter hook input priority 0; policy accept;\n"
               f"  {rule_match} tcp flags & (fin | syn | rst) == 0 meta length > 200 "
               f"numgen inc mod {nth} == 0 counter drop\n }}\n}}\n")
    pod_run(pod, "nft", "delete", "table", "inet", table, check=False)
    run(in_pod(pod, "nft", "-f", "-"), input=ruleset)


def test_retransmitted_segments_counted_once(cluster, capture, pods):
    """Segments the capture saw but the receiver dropped come again (every
    third segment over 200 bytes, headers included, both ways): on one
    keep-alive connection 30 exchanges, each counted once with exact sizes,
    complete, in order."""
    server, addr, port = raw_server(pods, 2)
    reqs = []
    for i in range(30):
        m = ["POST", "PUT", "GET"][i % 3]
        body = None if m == "GET" else bytes([97 + i % 26]) * (500 + 97 * i)
        reqs.append((m, f"/rt/{i}?len={300 + 131 * i}",
                     {"body": body, "headers": [f"X-Pad: {'p' * (300 + 11 * i)}"]}))
    plan, wires = [], []
    for m, t, kw in reqs:
        data, wire = request(m, t, **kw)
        plan += [send_step(data), {"read": [{}]}]
        wires.append(wire)
    try:
        drop_every_nth(2, f"tcp dport {port}", 3)
        drop_every_nth(1, f"tcp sport {port}", 3)
        t0 = now_utc()
        info = raw_client(1, addr, port, plan, timeout=120)
        dropped = [int(pod_run(p, "nft", "list", "table", "inet", "ebpfc_httploss").stdout
                       .split("counter packets ")[1].split()[0]) for p in (1, 2)]
    finally:
        for p in (1, 2):
            pod_run(p, "nft", "delete", "table", "inet", "ebpfc_httploss", check=False)
    assert info["error"] is None, info
    assert all(d >= 5 for d in dropped), dropped
    lines = [server.readline() for _ in reqs]
    rows = conn_http(cluster, info, len(reqs))
    tcp = tcp_row_for(cluster, info["laddr"], info["lport"], addr, port)
    assert tcp["attributes"].get("tcp.retransmits_sent", 0) > 0, dump_spans([tcp])
    assert tcp["attributes"].get("tcp.retransmits_received", 0) > 0, dump_spans([tcp])
    assert_http_spans_ok(rows, t0, now_utc())
    have = [(r["http_method"], r["http_target"], r["bytes_sent"], r["bytes_received"],
             r["attributes"]["http.incomplete"]) for r in rows]
    want = [(m, t, w, ln["resp_body"], False)
            for (m, t, kw), w, ln in zip(reqs, wires, lines)]
    assert have == want, brief(rows)


# ----------------------------------------------------------------------------
# detection by content


def test_non_http_traffic_is_not_http(cluster, capture, pods):
    """TLS, random bytes, Redis (RESP and inline commands), memcached, SSH
    and the HTTP/2 preface on port 80: tcp spans, no http span. HTTP on
    port 80 elsewhere: an http span."""
    rnd = os.urandom
    hello = (bytes.fromhex("160301") + (200).to_bytes(2, "big") + b"\x01\x00\x00\xc4\x03\x03"
             + rnd(194))
    cases = [
        # client steps, server steps (bytes each way)
        ([hello], [bytes.fromhex("160303") + (90).to_bytes(2, "big") + rnd(90)]),
        ([rnd(3000)], [rnd(3000)]),
        ([b"*1\r\n$4\r\nPING\r\n", b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"],
         [b"+PONG\r\n", b"$5\r\nvalue\r\n"]),
        ([b"GET key\r\n", b"SET key value\r\n", b"GET key\r\n"],
         [b"$5\r\nvalue\r\n", b"+OK\r\n", b"$5\r\nvalue\r\n"]),
        ([b"get foo\r\n"], [b"END\r\n"]),
        ([b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")],
         [bytes.fromhex("000000040000000000")]),
    ]
    script, plans = [], []
    for client_msgs, server_msgs in cases:
        steps, plan = [], []
        for cm, sm in zip(client_msgs, server_msgs):
            plan += [send_step(cm), {"recv_some": 2.0}]
            steps += [{"recv": 5.0}, {"send": send_step(sm)["send"]}]
        script.append(steps)
        plans.append(plan)
    # server speaks first (SSH)
    script.append([{"send": send_step(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")["send"]},
                   {"recv": 5.0}])
    plans.append([{"recv_some": 2.0}, send_step(b"SSH-2.0-client\r\n"), {"recv_some": 0.3}])
    server, addr, _ = raw_server(pods, 2, port=80, mode="script", script=script)
    t0 = now_utc()
    infos = []
    for plan in plans:
        infos.append(raw_client(1, addr, 80, plan))
        assert infos[-1]["error"] is None, infos[-1]
        server.readline()  # the server is done with it (sequential: the script order holds)
    for info in infos:
        assert info["received"] > 0, info  # each exchange really happened
    # positive control: HTTP on port 80 is http
    _, addr4, _ = raw_server(pods, 4, port=80)
    good = raw_client(1, addr4, 80, [send_step(request("GET", "/yes?len=3")[0]),
                                     {"read": [{}]}])
    assert good["error"] is None, good
    rows_good = conn_http(cluster, good, 1, settle=0.3)
    for info in infos:
        tcp_row_for(cluster, info["laddr"], info["lport"], addr, 80)
    time.sleep(0.7)
    rows = http_rows(cluster, "dst_addr = %s::inet AND dst_port = 80 AND start_time >= %s",
                     (addr, t0))
    assert rows == [], "non-HTTP traffic reported as http:\n" + brief(rows)
    assert len(rows_good) == 1 and rows_good[0]["http_target"] == "/yes?len=3", brief(rows_good)


# ----------------------------------------------------------------------------
# privacy


def test_secrets_never_stored(cluster, capture, chain, pods):
    auth = "authsecret" + secrets.token_hex(8)
    cookie = "cookiesecret" + secrets.token_hex(8)
    apikey = "apikeysecret" + secrets.token_hex(8)
    body = "bodysecret" + secrets.token_hex(8)
    setck = "rawsetcookie" + secrets.token_hex(8)
    run_id = secrets.token_hex(4)
    t0 = now_utc()
    target = f"/cookie?priv=1&run={run_id}"
    curl(1, "-o", "/dev/null", "-H", f"Authorization: Bearer {auth}",
         "-H", f"Cookie: sid={cookie}; other=1", "-H", f"X-Api-Key: {apikey}",
         "-H", f"Proxy-Authorization: Basic {auth}",
         "--data-binary", body, f"http://{chain.proxy_addr}:{chain.pport}{target}")
    # raw: the secrets split over small segments, and a Set-Cookie back
    server, addr, port = raw_server(pods, 3, cookie=f"s={setck}; Path=/")
    req, _ = request("POST", f"/raw?len=10&run={run_id}",
                     headers=[f"Authorization: Basic {auth}", f"Cookie: a={cookie}",
                              f"authorization: {auth}2", f"COOKIE: {cookie}3"],
                     body=body.encode())
    info = raw_client(1, addr, port, [send_step(req, piece=5, pause=0.0005),
                                       {"read": [{}]}], nodelay=True)
    assert info["error"] is None, info
    assert info["responses"][0]["headers"]["set-cookie"].startswith(f"s={setck}"), info
    rows = wait_http(cluster, 3, "http_target LIKE %s", (f"%run={run_id}",))
    assert_http_spans_ok(rows, t0, now_utc())
    assert len(rows) == 3, brief(rows)
    found = secrets_in_spans(cluster, [auth, cookie, apikey, body, setck, COOKIE_SECRET])
    assert not found, f"secrets stored in spans (value: rows): {found}\n" + brief(rows)
    # Host is what may be kept
    assert {(r["attributes"].get("server.address"), r["attributes"].get("server.port"))
            for r in rows} == \
        {(chain.proxy_addr, chain.pport), (chain.backend_addr, chain.bport), ("h", None)}, \
        brief(rows)


def test_query_strings_redacted_kept_or_dropped(cluster, capture, chain):
    """ebpf_capture.http_query: by default (redact) a query keeps its keys
    and loses its values; drop removes it; keep stores it as sent. (The
    suite's clusters keep queries, to compare targets byte for byte.)"""
    assert cluster.value("SELECT boot_val FROM pg_settings "
                         "WHERE name = 'ebpf_capture.http_query'") == "redact"
    secret = "querysecret" + secrets.token_hex(8)
    url = f"http://{chain.backend_addr}:{chain.bport}"
    want = {
        "redact": [f"/ok/q?token=REDACTED&x=REDACTED&flag", "/ok/empty?", "/ok/plain"],
        "drop": ["/ok/q", "/ok/empty", "/ok/plain"],
        "keep": [f"/ok/q?token={secret}&x=1&flag", "/ok/empty?", "/ok/plain"],
    }
    try:
        for mode in ("redact", "drop", "keep"):
            set_guc(cluster, "ebpf_capture.http_query", mode)
            wait_for(lambda m=mode: cluster.value("SHOW ebpf_capture.http_query") == m, 5)

            def probe():
                tag = secrets.token_hex(4)
                out = curl(1, "-o", "/dev/null", f"{url}/ok/probe?q={tag}")
                where, params = conn_where(out[0]["laddr"], out[0]["lport"], chain.backend_addr,
                                           chain.bport)
                target = wait_http(cluster, 1, where, params, settle=0.3)[0]["http_target"]
                return target == {"redact": "/ok/probe?q=REDACTED", "drop": "/ok/probe",
                                  "keep": f"/ok/probe?q={tag}"}[mode]

            wait_for(probe, 15, interval=0.2, desc=f"the worker in mode {mode}")
            out = curl(1, "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                       f"{url}/ok/q?token={secret}&x=1&flag", f"{url}/ok/empty?",
                       f"{url}/ok/plain")
            where, params = conn_where(out[0]["laddr"], out[0]["lport"], chain.backend_addr,
                                       chain.bport)
            rows = wait_http(cluster, 3, where, params)
            assert [r["http_target"] for r in rows] == want[mode], (mode, brief(rows))
            if mode != "keep":
                assert not secrets_in_spans(cluster, [secret]), brief(rows)
    finally:
        set_guc(cluster, "ebpf_capture.http_query", None)


# ----------------------------------------------------------------------------
# bounds and hostile input


def test_bounds_are_incomplete_and_counted(cluster, capture, pods):
    """A header block over the parser's bound, and more pipelined requests
    than it keeps open: each request is still one span, marked incomplete
    with its reason, and capture_status().http_bound_hits counts them."""
    server, addr, port = raw_server(pods, 3)
    before = cluster.status()["http_bound_hits"]
    big = [f"X-Big-{i}: {'b' * 200}" for i in range(100)]  # ~21 KB > 16 KiB
    req1, _ = request("GET", "/bound/big?len=7", headers=big)
    req2, _ = request("GET", "/bound/after?len=9")
    t0 = now_utc()
    # In pieces of one MSS, each segment within the filter's payload head.
    a = raw_client(1, addr, port, [send_step(req1, piece=1400, pause=0.001), {"read": [{}]},
                                   send_step(req2), {"read": [{}]}], nodelay=True)
    assert a["error"] is None, a
    n = 40
    targets = [f"/bound/q{i}?len={i}" for i in range(n)]
    b = raw_client(1, addr, port, [send_step(b"".join(request("GET", t)[0] for t in targets)),
                                   {"read": [{}] * n}])
    assert b["error"] is None and len(b["responses"]) == n, b

    ra = conn_http(cluster, a, 2)
    rb = conn_http(cluster, b, n)
    assert_http_spans_ok(ra + rb, t0, now_utc())
    assert [r["http_target"] for r in ra] == ["/bound/big?len=7", "/bound/after?len=9"], brief(ra)
    big_span, after = ra
    assert big_span["attributes"]["http.incomplete"] is True and \
        "header_bound" in big_span["attributes"]["http.incomplete_reasons"], brief(ra)
    assert (after["http_status"], after["bytes_received"], after["attributes"]["http.incomplete"]) \
        == (200, 9, False), brief(ra)
    got = by_target(rb)
    assert sorted(got) == sorted(targets) and all(len(v) == 1 for v in got.values()), brief(rb)
    early = [r for r in rb if "queue_bound" in r["attributes"].get("http.incomplete_reasons", [])]
    assert early, "no exchange marked queue_bound:\n" + brief(rb)
    for r in rb:
        if r["attributes"]["http.incomplete"] is False:
            want = int(r["http_target"].split("len=")[1])
            assert (r["http_status"], r["bytes_received"]) == (200, want), brief([r])
    wait_for(lambda: cluster.status()["http_bound_hits"] >= before + 1 + len(early), 5,
             desc="http_bound_hits to count the bounds hit")


HOSTILE_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 6000 + b"\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\nabc",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcdefg",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffffffffff\r\nabc\r\n",
    b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    b"0\r\n\r\n",
    b"GET /\x00\x00 HTTP/1.1\r\nHost: \x00\x01\x02\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET  HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\n\n",
    b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8,
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",  # a response sent as a request
    b"DELETE" + b"E" * 40 + b" / HTTP/1.1\r\n\r\n",
    b"GET /\xff\xfe\"\\ HTTP/1.1\r\nHost: \"\\\xff\xc3(" + b"\"" * 300 + b"\r\n"
    b"traceparent: 00-zz-zz-01\r\n\r\n",
    b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(100)),
]

HOSTILE_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc",
    b"HTTP/1.1 2\x0000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" * 300 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 6000 + b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 50,
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n" + os.urandom(3000),
    b"\x00" * 100,
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" + os.urandom(2000),
]


def test_hostile_http(cluster, capture, chain, pods):
    """Hostile requests (to nginx and to a raw server) and hostile responses:
    the worker survives, keeps its pid and memory bounded, every row it
    writes is well-formed and claims no more body than was on the wire, and
    a normal request afterwards is recorded."""
    st = cluster.status()
    pid = st["pid"]
    log_start = cluster.log_size()
    rss_before = worker_rss_kb(pid)
    t0 = now_utc()
    conns = []  # (client info, bytes the server sent, bytes the client sent)

    for data in HOSTILE_REQUESTS:
        info = raw_client(1, chain.backend_addr, chain.bport,
                          [send_step(data), {"eof": True}], client_timeout=1.0)
        conns.append((info, info["received"], info["sent"]))
    # the same bytes to a server that reads them as a stream of headers and bodies
    script = [[{"recv": 0.5}, {"send": send_step(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n"
                                                  b"Connection: close\r\n\r\n")["send"]},
               {"close": True}]]
    _, saddr, sport = raw_server(pods, 3, mode="script", script=script)
    for data in HOSTILE_REQUESTS:
        info = raw_client(1, saddr, sport, [send_step(data), {"eof": True}], client_timeout=2.0)
        conns.append((info, info["received"], info["sent"]))
    # hostile responses to a valid request
    script = [[{"recv": 2.0}, {"send": send_step(r)["send"]}, {"close": True}]
              for r in HOSTILE_RESPONSES]
    # and responses without requests: the server speaks first
    script.append([{"send": send_step(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" * 3)
                    ["send"]}, {"recv": 0.5}, {"close": True}])
    _, raddr, rport = raw_server(pods, 3, mode="script", script=script)
    for data in HOSTILE_RESPONSES:
        info = raw_client(1, raddr, rport, [send_step(request("GET", "/h")[0]), {"eof": True}],
                          client_timeout=2.0)
        conns.append((info, info["received"], info["sent"]))
    info = raw_client(1, raddr, rport, [{"recv_some": 0.3}, {"eof": True}], client_timeout=1.0)
    conns.append((info, info["received"], info["sent"]))
    # a Host of quotes, backslashes and invalid UTF-8, answered normally
    server, haddr, hport = raw_server(pods, 3)
    weird_host = b"\"\\\xff\xc3(\xe2\x82" + b"\"\\" * 100
    hinfo = raw_client(1, haddr, hport, [send_step(
        b"GET /weird\xff?\"q\\ HTTP/1.1\r\nHost: " + weird_host + b"\r\n"
        b"traceparent: " + new_traceparent().encode() + b"\r\n"
        b"tracestate: k=\"\\\xff,a=b\r\n\r\n"), {"read": [{}]}])
    assert hinfo["error"] is None, hinfo

    # A normal request afterwards is recorded, by the same worker.
    ok = raw_client(1, chain.backend_addr, chain.bport,
                    [send_step(request("GET", "/ok?after=hostile")[0]), {"read": [{}]}])
    rows_ok = conn_http(cluster, ok, 1)
    assert [(r["http_target"], r["http_status"], r["bytes_received"]) for r in rows_ok] == \
        [("/ok?after=hostile", 200, 6)], brief(rows_ok)
    rows_weird = conn_http(cluster, hinfo, 1)
    assert len(rows_weird) == 1 and rows_weird[0]["http_status"] == 200, brief(rows_weird)
    assert rows_weird[0]["attributes"].get("server.address"), brief(rows_weird)

    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid and pid_alive(pid), st
    log = cluster.log_text(log_start)
    assert "terminated by signal" not in log, log[-3000:]
    rss_after = worker_rss_kb(pid)
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)

    # Every row written for these connections is well-formed and claims no
    # more body than the connection carried.
    problems = []
    t1 = now_utc()
    for info, server_sent, client_sent in conns:
        where, params = conn_where(info["laddr"], info["lport"], info["raddr"], info["rport"])
        for r in http_rows(cluster, where, params):
            for msg in check_http_span(r, t0, t1):
                problems.append(f"{msg}: {brief([r])}")
            if r["bytes_sent"] > client_sent or r["bytes_received"] > server_sent:
                problems.append(f"body sizes beyond the wire ({client_sent} up, {server_sent} "
                                f"down): {brief([r])}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------
# tshark as the reference


def test_tshark_reference(cluster, capture, pods, tmp_path):
    """Every HTTP exchange tshark decodes on the bridge is exactly one span
    with the same client, server, method, target and status, and no span
    is left over."""
    port = Pods.new_port()
    nginx = Nginx(2, port, "backend")
    tshark = None
    try:
        tshark = Tshark(port)
        base = f"http://{pod_ip4(2)}:{port}"
        t0 = now_utc()
        procs = []
        # keep-alive: 12 URLs on one connection (pod1), and over IPv6 (pod4)
        urls = []
        for i in range(12):
            path = ["/ok", "/f/small.txt", "/e404", "/f/1k.bin"][i % 4]
            urls += ["-o", "/dev/null", f"{base}{path}?ka={i}"]
        procs.append(pods.popen(1, ["curl", "-sS", "--max-time", "20", *urls]))
        v6urls = []
        for i in range(5):
            v6urls += ["-o", "/dev/null", f"http://[{pod_ip6(2)}]:{port}/ok?v6={i}"]
        procs.append(pods.popen(4, ["curl", "-sS", "-g", "--max-time", "20", *v6urls]))
        # several clients at once, one request each (pod4), some POSTs
        for i in range(6):
            args = ["curl", "-sS", "--max-time", "20", "-o", "/dev/null"]
            if i % 2:
                args += ["--data-binary", "x" * (100 * i)]
            procs.append(pods.popen(4, args + [f"{base}/e500?par={i}" if i == 3
                                               else f"{base}/ok?par={i}"]))
        # pipelining (pod3): 6 requests in one write
        pipe = [("GET", f"/ok?pipe={i}") for i in range(3)] + \
               [("POST", "/ok?pipe=3"), ("GET", "/f/1k.bin?pipe=4"), ("GET", "/e404?pipe=5")]
        data = b"".join(request(m, t, body=b"y" * 50 if m == "POST" else None)[0]
                        for m, t in pipe)
        pinfo = raw_client(3, pod_ip4(2), port, [send_step(data),
                                                 {"read": [{}] * len(pipe)}])
        assert pinfo["error"] is None, pinfo
        for p in procs:
            assert p.proc.wait(30) == 0, p.stderr_now()
        time.sleep(1.0)  # the last segments reach tshark's file
        tshark.stop()
        req_rows = tshark.fields("http.request", [
            "frame.number", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
            "tcp.dstport", "http.request.method", "http.request.uri"])
        resp_rows = tshark.fields("http.response", [
            "frame.number", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
            "tcp.dstport", "http.response.code", "http.response_for.uri"])
    finally:
        if tshark is not None:
            tshark.cleanup()
        nginx.stop()

    # Requests and responses per connection, in order; paired first in, first out.
    reqs, resps = {}, {}
    for row in req_rows:
        _, s4, s6, sp, d4, d6, dp, methods, uris = row
        key = (norm_ip(s4 or s6), int(sp), norm_ip(d4 or d6), int(dp))
        for m, u in zip(methods.split("|"), uris.split("|")):
            reqs.setdefault(key, []).append((m, u))
    for row in resp_rows:
        _, s4, s6, sp, d4, d6, dp, codes, fors = row
        key = (norm_ip(d4 or d6), int(dp), norm_ip(s4 or s6), int(sp))
        for c, f in zip(codes.split("|"), fors.split("|")):
            resps.setdefault(key, []).append((int(c), f))
    expected = []
    for key, rq in reqs.items():
        rs = resps.get(key, [])
        assert len(rs) == len(rq), (key, rq, rs)
        # tshark names the request a response answers (response_for.uri);
        # for requests pipelined in one segment it names the last of them,
        # so pairing is first in, first out as HTTP/1.1 says.
        assert all(f.endswith(u) for (_, u), (_, f) in zip(rq, rs)) or \
            len({f for _, f in rs}) < len(rs), (key, rq, rs)
        for (m, u), (c, f) in zip(rq, rs):
            expected.append((*key, m, u, c))
    n_expected = 12 + 5 + 6 + len(pipe)
    assert len(expected) == n_expected, sorted(expected)

    rows = wait_http(cluster, n_expected, "dst_port = %s AND start_time >= %s", (port, t0))
    assert_http_spans_ok(rows, t0, now_utc())
    have = sorted((norm_ip(r["src_host"]), r["src_port"], norm_ip(r["dst_host"]), r["dst_port"],
                   r["http_method"], r["http_target"], r["http_status"]) for r in rows)
    missing = sorted(set(expected) - set(have))
    extra = sorted(set(have) - set(expected))
    assert sorted(expected) == have, (f"tshark saw {len(expected)} exchanges, spans "
                                      f"{len(have)}\nmissing: {missing}\nextra: {extra}\n"
                                      + brief(rows))


def test_connections_that_come_and_go_within_one_drain(cluster, capture, chain):
    """More short connections than ebpf_capture.max_http_memory allows (512kB,
    the smallest: 16 connections) open, exchange and close while the worker is stopped
    (SIGSTOP), so that one drain reads the whole life of every one of them.
    Each connection gives its parser back when it ends: every exchange has
    its span and no bound is hit. (A worker busy inserting a batch under load
    is in the same position; before, a fifth of the HTTP spans of a
    short-connection benchmark were missing this way.)"""
    n = 120
    with capture_restarted_with(cluster, "ebpf_capture.max_http_memory", "512kB"):
        before = cluster.status()["http_bound_hits"]
        pid = cluster.status()["pid"]
        url = f"http://{chain.backend_addr}:{chain.bport}/ok"
        t0 = now_utc()
        os.kill(pid, signal.SIGSTOP)
        try:
            got = curl(1, "-H", "Connection: close", *[f"{url}?c={i}" for i in range(n)])
        finally:
            os.kill(pid, signal.SIGCONT)
        assert len(got) == n and all(g["code"] == 200 and g["connects"] == 1 for g in got), got
        assert len({g["lport"] for g in got}) == n, "one connection per request"
        where = "dst_addr = %s::inet AND dst_port = %s AND start_time >= %s"
        rows = wait_http(cluster, n, where, (chain.backend_addr, chain.bport, t0))
        assert_http_spans_ok(rows, t0, now_utc())
        assert sorted(r["http_target"] for r in rows) == sorted(f"/ok?c={i}" for i in range(n)), \
            brief(rows)
        assert all(r["http_status"] == 200 for r in rows), brief(rows)
        assert cluster.status()["http_bound_hits"] == before
