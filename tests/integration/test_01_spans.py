"""Spans written for real TCP connections between pods across cni0."""

import json
import random
import time

import pytest

from conftest import (
    NETUTIL, PY, check_span_common, dump_spans, in_pod, key_of, netutil_json, norm_ip,
    spans_by_connection,
    now_utc, pod_ip4, pod_run, run, wait_for, wait_span_for, wait_spans_for_port,
)


def make_plan(n, seed):
    """n distinct connections: None (connect and close, no byte either way)
    and (UP, DOWN) byte-protocol rounds, with small, MSS-edge and >100 KB
    transfers."""
    fixed = [None, (0, 0), (0, 1), (1, 0), (1, 1), (1459, 1460), (1460, 1459),
             (2920, 2921), (65535, 65536), (100_001, 3), (5, 150_003), (262_144, 131_073)]
    plan = fixed[:n]
    rng = random.Random(seed)
    seen = set(plan)
    while len(plan) < n:
        pick = [rng.randrange(0, 100), rng.randrange(100, 5000), rng.randrange(5000, 120_000)]
        entry = (rng.choice(pick), rng.choice(pick))
        if entry not in seen:
            seen.add(entry)
            plan.append(entry)
    rng.shuffle(plan)
    return [list(e) if e else None for e in plan]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_every_connection_exactly_once(cluster, capture, pods, family):
    v6 = family == "ipv6"
    n = 30 if not v6 else 14
    server, addr, port = pods.byte_server(2, v6=v6)
    plan = make_plan(n, seed=port)

    t0 = now_utc()
    conns = pods.batch(1, addr, port, plan)
    assert len(conns) == n, conns

    # The server's own account must agree with the client's (guards the
    # helpers themselves).
    server_view = {}
    for _ in range(n):
        line = server.readline()
        server_view[(norm_ip(line["peer"][0]), line["peer"][1])] = line
    for c in conns:
        sv = server_view[(norm_ip(c["laddr"]), c["lport"])]
        assert (sv["received"], sv["sent"]) == (c["sent"], c["received"]), (c, sv)

    rows = wait_spans_for_port(cluster, port, n)
    t1 = now_utc()
    pairs, unmade = spans_by_connection(conns, rows)

    problems = []
    for key, c, got in pairs:
        if len(got) != 1:
            problems.append(f"{key} plan={c['plan']}: {len(got)} spans")
            continue
        span = got[0]
        if (span["bytes_sent"], span["bytes_received"]) != (c["sent"], c["received"]):
            problems.append(f"{key} plan={c['plan']}: bytes_sent/received "
                            f"{span['bytes_sent']}/{span['bytes_received']}, "
                            f"expected {c['sent']}/{c['received']}")
        attrs = span["attributes"]
        if attrs.get("tcp.close_reason") != "fin":
            problems.append(f"{key}: close_reason {attrs.get('tcp.close_reason')!r}")
        rtt = attrs.get("tcp.handshake_rtt_us")
        if not isinstance(rtt, (int, float)) or isinstance(rtt, bool) or rtt < 0 or rtt > 5_000_000:
            problems.append(f"{key}: tcp.handshake_rtt_us = {rtt!r}")
        if attrs.get("tcp.reset") not in (False, None) or attrs.get("tcp.mid_stream") not in (False, None):
            problems.append(f"{key}: reset/mid_stream set: {attrs}")
        # SYN, ACK, FIN at least from the client; SYN-ACK and FIN from the server
        if span["packets_sent"] < 3 or span["packets_received"] < 2:
            problems.append(f"{key}: packets {span['packets_sent']}/{span['packets_received']}")
        try:
            check_span_common(span, t0, t1)
        except AssertionError as exc:
            problems.append(f"{key}: {exc}")
    if unmade:
        problems.append(f"spans of connections nobody made: {unmade}")
    assert not problems, "\n".join(problems) + "\n" + dump_spans(rows[:3])


def test_http_curl(cluster, capture, pods, tmp_path):
    port = pods.new_port()
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "blob.bin").write_bytes(bytes(range(256)) * 200)  # 51,200 bytes
    docroot.chmod(0o755)
    pods.popen(3, ["/usr/bin/python3", "-m", "http.server", port, "--bind", pod_ip4(3),
                   "--directory", docroot])
    wait_for(lambda: pod_run(3, "ss", "-Hltn", f"sport = :{port}").stdout.strip(), 10,
             desc="http.server listening")

    t0 = now_utc()
    res = pod_run(1, "curl", "-sS", "-o", "/dev/null", "--max-time", "10", "-w",
                  "%{local_ip} %{local_port} %{size_request} %{size_header} %{size_download} "
                  "%{http_code}", f"http://{pod_ip4(3)}:{port}/blob.bin")
    lip, lport, req, hdr, body, code = res.stdout.split()
    assert code == "200" and int(body) == 51_200, res.stdout

    spans = wait_span_for(cluster, lip, int(lport), pod_ip4(3), port,
                          predicate=lambda r: r["protocol"] == "tcp")
    assert len(spans) == 1, dump_spans(spans)
    span = spans[0]
    check_span_common(span, t0, now_utc())

    # The exchange on it is an http span of its own, linked to the connection.
    http = wait_span_for(cluster, lip, int(lport), pod_ip4(3), port,
                         predicate=lambda r: r["protocol"] == "http")
    assert len(http) == 1, dump_spans(http)
    ex = http[0]
    assert (ex["http_method"], ex["http_target"], ex["http_status"]) == \
        ("GET", "/blob.bin", 200), ex
    assert ex["bytes_received"] == 51_200 and ex["bytes_sent"] == 0, ex
    assert ex["attributes"]["tcp.span_id"] == span["span_id"], (ex, span)
    assert ex["attributes"]["http.incomplete"] is False, ex
    assert span["start_time"] <= ex["start_time"] <= ex["end_time"] <= span["end_time"], (ex, span)
    assert span["bytes_received"] > span["bytes_sent"] > 0, span
    assert span["bytes_sent"] == int(req), (span["bytes_sent"], req)
    assert span["bytes_received"] == int(hdr) + int(body), (span["bytes_received"], hdr, body)
    assert span["attributes"].get("tcp.close_reason") == "fin", span["attributes"]


def test_reset_by_client(cluster, capture, pods):
    _, addr, port = pods.byte_server(2)
    client, info = pods.ctl_client(1, addr, port)
    t0 = now_utc()
    client.command("round 100 200")
    client.command("reset")  # SO_LINGER 0: close() sends a RST

    spans = wait_span_for(cluster, info["laddr"], info["lport"], addr, port)
    time.sleep(0.5)
    spans = cluster.spans("src_port = %s AND dst_port = %s", (info["lport"], port))
    assert len(spans) == 1, dump_spans(spans)
    span = spans[0]
    check_span_common(span, t0, now_utc())
    attrs = span["attributes"]
    assert attrs.get("tcp.reset") is True, attrs
    assert attrs.get("tcp.close_reason") == "rst", attrs
    assert (span["bytes_sent"], span["bytes_received"]) == (108, 200), span


def test_syn_to_closed_port_is_error(cluster, capture, pods):
    port = pods.new_port()  # nobody listens there
    t0 = now_utc()
    out = pods_refused(1, pod_ip4(2), port)
    assert out["refused"], out

    spans = wait_span_for(cluster, pod_ip4(1), out["lport"], pod_ip4(2), port)
    time.sleep(0.5)
    spans = cluster.spans_touching_port(port)
    assert len(spans) == 1, dump_spans(spans)
    span = spans[0]
    check_span_common(span, t0, now_utc())
    assert span["status"] == "ERROR", span
    assert span["bytes_sent"] == 0 and span["bytes_received"] == 0, span
    assert span["attributes"].get("tcp.close_reason") == "rst", span["attributes"]


def pods_refused(pod, host, port):
    out = netutil_json(pod, "refused", "--host", host, "--port", port)
    assert len(out) == 1, out
    return out[0]


def test_idle_timeout(cluster, capture, pods):
    _, addr, port = pods.byte_server(2)
    cluster.sql("ALTER SYSTEM SET ebpf_capture.idle_timeout = '2s'")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: cluster.value("SHOW ebpf_capture.idle_timeout") == "2s", 5,
                 desc="idle_timeout reloaded")
        time.sleep(0.5)  # the worker reloads on its next loop
        client, info = pods.ctl_client(1, addr, port)
        t0 = now_utc()
        client.command("round 5 5")
        opened = time.monotonic()
        spans = wait_span_for(cluster, info["laddr"], info["lport"], addr, port, timeout=15)
        waited = time.monotonic() - opened
        assert client.alive(), "the client must still hold the connection"
        span = spans[0]
        assert len(spans) == 1, dump_spans(spans)
        assert span["attributes"].get("tcp.close_reason") == "idle", span["attributes"]
        assert waited >= 1.5, f"idle span after {waited:.2f}s, before the 2s idle timeout"
        assert (span["bytes_sent"], span["bytes_received"]) == (13, 5), span
        check_span_common(span, t0, now_utc())
        # The connection itself is still open and usable.
        client.command("round 1 1")
        client.command("close")
    finally:
        cluster.sql("ALTER SYSTEM RESET ebpf_capture.idle_timeout")
        cluster.sql("SELECT pg_reload_conf()")
    wait_for(lambda: cluster.value("SHOW ebpf_capture.idle_timeout") == "1min", 5,
             desc="idle_timeout restored")


def test_mid_stream(cluster, capture, pods):
    # A: the client's port (ephemeral, >= 32768) is the higher one.
    _, addr, port_a = pods.byte_server(2)
    # B: the server's port is the higher one, so a capture that did not see
    #    the SYN must take the server for the client.
    port_b = 61_000 + pods.new_port() % 1000
    lport_b = 20_000 + pods.new_port() % 1000
    _, _, _ = pods.byte_server(2, port=port_b)

    was, _ = cluster.stop_capture()
    assert was is True
    try:
        client_a, info_a = pods.ctl_client(1, addr, port_a)
        client_b, info_b = pods.ctl_client(1, addr, port_b, lport=lport_b)
        assert info_a["lport"] > port_a and info_b["lport"] == lport_b < port_b
        client_a.command("round 100 100")
        client_b.command("round 100 100")
    finally:
        cluster.sql("SELECT capture_start('cni0')")
        cluster.wait_state("running")
    t0 = now_utc()
    client_a.command("round 1000 2000")
    client_a.command("round 3 5")
    client_b.command("round 700 300")
    client_a.command("close")
    client_b.command("close")

    span_a = wait_span_for(cluster, pod_ip4(1), info_a["lport"], addr, port_a)
    span_b = wait_span_for(cluster, addr, port_b, pod_ip4(1), lport_b)
    time.sleep(0.5)
    all_a = cluster.spans_touching_port(port_a)
    all_b = cluster.spans_touching_port(port_b)
    assert len(all_a) == 1 and len(all_b) == 1, dump_spans(all_a + all_b)
    t1 = now_utc()

    span = span_a[0]
    check_span_common(span, t0, t1)
    assert span["attributes"].get("tcp.mid_stream") is True, span["attributes"]
    assert span["attributes"].get("tcp.handshake_rtt_us") is None, span["attributes"]
    assert (span["bytes_sent"], span["bytes_received"]) == (1008 + 11, 2000 + 5), span

    span = span_b[0]
    check_span_common(span, t0, t1)
    assert span["attributes"].get("tcp.mid_stream") is True, span["attributes"]
    # the "client" is the server here: what it sent is what pod1 received
    assert (span["bytes_sent"], span["bytes_received"]) == (300, 708), span


def test_spans_while_many_connections_overlap(cluster, capture, pods):
    """Several clients at once in different pods, to the same server."""
    _, addr, port = pods.byte_server(2)
    procs = []
    plans = {1: [[10, 20]] * 5, 3: [[30, 40]] * 5, 4: [[50, 60]] * 5}
    t0 = now_utc()
    for pod, plan in plans.items():
        procs.append((pod, pods.popen(pod, [PY, NETUTIL, "batch", "--host", addr, "--port", port,
                                            "--plan", json.dumps(plan)])))
    conns = []
    for pod, proc in procs:
        for _ in plans[pod]:
            conns.append(proc.readline())
    rows = wait_spans_for_port(cluster, port, len(conns))
    keys = sorted(key_of(r) for r in rows)
    expect = sorted((norm_ip(c["laddr"]), c["lport"], norm_ip(c["raddr"]), c["rport"]) for c in conns)
    assert keys == expect, dump_spans(rows)
    for r in rows:
        check_span_common(r, t0, now_utc())
        src_pod = int(r["src_host"].rsplit(".", 1)[1]) - 10
        up, down = plans[src_pod][0]
        assert (r["bytes_sent"], r["bytes_received"]) == (up + 8, down), r


def drop_every_nth(pod, rule_match, nth, table="ebpfc_loss"):
    """In pod's input hook, drops every nth data segment matching rule_match
    (never SYN, FIN or RST). The capture on cni0 has seen the segment already,
    so the sender retransmits what the capture counted."""
    ruleset = (f"table inet {table} {{\n chain input {{\n"
               f"  type filter hook input priority 0; policy accept;\n"
               f"  {rule_match} tcp flags & (fin | syn | rst) == 0 meta length > 200 "
               f"numgen inc mod {nth} == 0 counter drop\n }}\n}}\n")
    pod_run(pod, "nft", "delete", "table", "inet", table, check=False)
    run(in_pod(pod, "nft", "-f", "-"), input=ruleset)


def dropped(pod, table="ebpfc_loss"):
    out = pod_run(pod, "nft", "list", "table", "inet", table).stdout
    return int(out.split("counter packets ")[1].split()[0])


def test_retransmissions_counted_once(cluster, capture, pods):
    _, addr, port = pods.byte_server(2)
    try:
        drop_every_nth(2, f"tcp dport {port}", 5)   # client -> server data
        drop_every_nth(1, f"tcp sport {port}", 5)   # server -> client data
        t0 = now_utc()
        conns = pods.batch(1, addr, port, [[400_000, 300_000], [5, 800_000]])
        assert dropped(1) > 0 and dropped(2) > 0, "nothing was dropped, nothing retransmitted"
    finally:
        for pod in (1, 2):
            pod_run(pod, "nft", "delete", "table", "inet", "ebpfc_loss", check=False)
    rows = wait_spans_for_port(cluster, port, 2)
    assert len(rows) == 2, dump_spans(rows)
    by_port = {r["src_port"]: r for r in rows}
    for c in conns:
        span = by_port[c["lport"]]
        check_span_common(span, t0, now_utc())
        assert (span["bytes_sent"], span["bytes_received"]) == (c["sent"], c["received"]), \
            (c, dump_spans([span]))
        assert span["attributes"].get("tcp.close_reason") == "fin", span["attributes"]
    big = by_port[conns[0]["lport"]]["attributes"]
    assert big.get("tcp.retransmits_sent", 0) > 0, big
    assert big.get("tcp.retransmits_received", 0) > 0, big
    down = by_port[conns[1]["lport"]]["attributes"]
    assert down.get("tcp.retransmits_received", 0) > 0, down


def test_zero_windows_of_a_receiver_that_does_not_read(cluster, capture, pods):
    """A server that never reads: its receive window closes, and the kernel's
    answers to the client's window probes advertise a zero window. They are
    counted for the server (the client's tcp.zero_windows_received); the
    client's reset carries a zero window too and is not counted."""
    port = pods.new_port()
    sink = pods.popen(2, [PY, NETUTIL, "sink", "--bind", pod_ip4(2), "--port", port])
    assert sink.readline().get("ready")
    t0 = now_utc()
    res = netutil_json(1, "fill", "--host", pod_ip4(2), "--port", port, "--hold", "1.5")[0]
    assert res["sent"] > 0, res
    span = wait_span_for(cluster, res["laddr"], res["lport"], pod_ip4(2), port)[0]
    check_span_common(span, t0, now_utc())
    attrs = span["attributes"]
    assert attrs["tcp.close_reason"] == "rst" and attrs["tcp.reset_by"] == "client", attrs
    assert attrs["tcp.zero_windows_received"] >= 2, attrs  # the close, and the probes' answers
    assert "tcp.zero_windows_sent" not in attrs, attrs  # none: not written
    assert 0 < span["bytes_sent"] <= res["sent"], (span, res)
    # a few kilobytes each way never fill a window: none (a 200 KB transfer to
    # this Python server can: its buffer fills for a moment, and that is a
    # zero window too)
    _, addr, bport = pods.byte_server(2)
    conn = pods.batch(1, addr, bport, [[3000, 3000]])[0]
    normal = wait_span_for(cluster, conn["laddr"], conn["lport"], addr, bport)[0]["attributes"]
    assert "tcp.zero_windows_sent" not in normal, normal
    assert "tcp.zero_windows_received" not in normal, normal


def test_four_tuple_reused_at_once(cluster, capture, pods):
    """The same client port, to the same server, again and again, each new
    connection opened within a millisecond or two of the previous one's close
    (the server closes first, so the client side keeps no TIME_WAIT; the
    server's TIME_WAIT accepts the next SYN) and lasting 50 ms, longer than
    the worker takes to read the previous close. Every connection must still
    be its own span with its own bytes, none seen mid-stream."""
    port = pods.new_port()
    server = pods.popen(2, [PY, NETUTIL, "serve", "--bind", pod_ip4(2), "--port", port,
                            "--close-first"])
    assert server.readline().get("ready")
    lport = 40000 + port % 1000
    plan = [[10 + i, 100 + i] for i in range(30)]
    conns = netutil_json(1, "batch", "--host", pod_ip4(2), "--port", port, "--plan",
                         json.dumps(plan), "--lport", lport, "--wait-eof", "--hold", 0.05)
    assert len(conns) == len(plan) and all(c["lport"] == lport for c in conns), conns
    rows = wait_spans_for_port(cluster, port, len(plan))
    reused = sorted((r for r in rows if r["src_port"] == lport), key=lambda r: r["start_time"])
    if len(rows) != len(reused):
        problems_other = [r for r in rows if r["src_port"] != lport]
        raise AssertionError("spans from other ports: " + dump_spans(problems_other[:4]))
    problems = []
    if len(reused) != len(plan):
        problems.append(f"{len(reused)} spans from port {lport}, expected {len(plan)}")
    for c, r in zip(conns, reused):
        if (r["bytes_sent"], r["bytes_received"]) != (c["sent"], c["received"]):
            problems.append(f"bytes {r['bytes_sent']}/{r['bytes_received']}, "
                            f"expected {c['sent']}/{c['received']}")
        if r["attributes"].get("tcp.mid_stream") or r["attributes"].get("tcp.close_reason") != "fin":
            problems.append(f"attributes {r['attributes']}")
    assert not problems, "\n".join(problems) + "\n" + dump_spans(reused[:6])
