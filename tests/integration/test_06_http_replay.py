"""HTTP after a loss: generated traces with frames removed (a lost first
request head, a lost first response segment, a lost whole response, losses
both ways, a connection joined mid-stream, an extension method first, and
1,000 requests whose first response's first segment is lost), replayed with
tcpreplay through a port of
cni0 and compared exchange by exchange with tshark's pairing of the same
pcap and with the truth the generator knows. No exchange may carry a status
that is not its own."""

import collections
import os
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IFACE, NS, node_ns, norm_ip, run, wait_for
from httpenv import brief, check_http_span, http_rows
from pcapgen import Conversation, write_pcap

REPLAY_POD = 8  # a namespace the topology does not create: the replaying "pod"
CLIENT, SERVER, SPORT = "10.213.0.201", "10.213.0.202", 8080
CPORT0 = 47100


def replay_ns():
    return f"{NS}-pod{REPLAY_POD}"


def remove_replay_port():
    run(["ip", "netns", "del", replay_ns()], check=False)
    wait_for(lambda: run(["ip", "-n", node_ns(), "link", "show", f"veth{REPLAY_POD}"],
                         check=False).returncode != 0, 10, desc="the replay port is gone")


@pytest.fixture
def replay_port(cluster, capture):
    """A veth pair: one end a port of cni0, the other in a namespace of its
    own, where tcpreplay writes frames that the bridge port receives as it
    would a pod's."""
    remove_replay_port()
    ports = cluster.status()["ports"]
    ns, node = replay_ns(), node_ns()
    run(["ip", "netns", "add", ns])
    try:
        run(["ip", "-n", node, "link", "add", f"veth{REPLAY_POD}", "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", node, "link", "set", f"veth{REPLAY_POD}", "master", IFACE])
        run(["ip", "-n", node, "link", "set", f"veth{REPLAY_POD}", "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        wait_for(lambda: cluster.status()["ports"] == ports + 1, 10,
                 desc="the capture at the replay port")
        yield ns
    finally:
        remove_replay_port()


# ----------------------------------------------------------------------------
# the traces


class Case:
    """One connection of the trace: its exchanges (target, status, method),
    the frames it loses, and what the capture must pair at least."""

    def __init__(self, name, cport, exchanges, drop=lambda tag: False, mid_stream_at=None,
                 must_pair=(), body=400):
        """exchanges: (method, target, status); drop(tag): whether the frame
        tagged ("req" or "resp", exchange, segment) is lost; mid_stream_at: the
        tag of the first frame the capture sees; body: response body bytes
        (3000 for the first response: three segments)."""
        self.name, self.cport, self.exchanges = name, cport, exchanges
        self.drop, self.mid_stream_at, self.must_pair = drop, mid_stream_at, must_pair
        self.conv = Conversation(CLIENT, cport, SERVER, SPORT, isn_c=1_000_000 + cport * 7919,
                                 isn_s=3_000_000_000 + cport * 104729)
        c = self.conv
        c.handshake()
        for i, (method, target, status) in enumerate(exchanges):
            if method == "POST" or method == "QUERY":
                req_body = b"q" * 2000
                head = f"{method} {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(req_body)}\r\n\r\n"
                c.send(True, head.encode() + req_body, ("req", i))
            else:
                c.send(True, f"{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), ("req", i))
            payload = b"" if status in (204, 304) else b"r" * (body if i else 3000)
            c.send(False, f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n\r\n"
                   .encode() + payload, ("resp", i))
        c.close()

    def frames(self):
        out = []
        seen = self.mid_stream_at is None
        for tag, frame in self.conv.frames:
            seen = seen or tag == self.mid_stream_at
            if seen and not (tag[0] in ("req", "resp") and self.drop(tag)):
                out.append(frame)
        return out

    def truth(self):
        return {target: (method, status) for method, target, status in self.exchanges}


def keepalive(prefix, n, status=lambda i: 200 + i, method=lambda i: "GET"):
    return [(method(i), f"/{prefix}{i}", status(i)) for i in range(n)]


def cases():
    lost = lambda kind, i, seg=None: (lambda t: t[0] == kind and t[1] == i and
                                      (seg is None or t[2] == seg))
    return [
        # the first request's head (its first segment) not seen: its response
        # has no request; the next exchange follows a lost request (not
        # paired); the rest are
        Case("lost first request head", CPORT0,
             keepalive("a", 8, method=lambda i: "POST" if i == 0 else "GET"),
             drop=lost("req", 0, 0), must_pair=range(2, 8)),
        # the first response's first segment not seen (its body's are)
        Case("lost first response segment", CPORT0 + 1, keepalive("b", 8),
             drop=lost("resp", 0, 0), must_pair=range(1, 8)),
        # the whole first response not seen
        Case("lost whole first response", CPORT0 + 2, keepalive("c", 8),
             drop=lost("resp", 0), must_pair=range(1, 8)),
        # a response and the next request not seen
        Case("loss both ways", CPORT0 + 3, keepalive("d", 9),
             drop=lambda t: lost("resp", 2)(t) or lost("req", 3)(t),
             must_pair=[0, 1, 5, 6, 7, 8]),
        # the capture joins at exchange 1's response: the first request it
        # sees (2) might have been sent behind one it did not see, the next
        # ones pair
        Case("mid-stream", CPORT0 + 4, keepalive("m", 8), mid_stream_at=("resp", 1, 0),
             must_pair=range(3, 8)),
        # methods outside RFC 9110's nine, the first one first
        Case("extension method first", CPORT0 + 5,
             [("QUERY", "/x0", 200), ("PROPFIND", "/x1", 207), ("MKCOL", "/x2", 201),
              ("VERSION-CONTROL", "/x3", 200), ("GET", "/x4", 200)],
             must_pair=range(0, 5)),
        # the trace: 1,000 keep-alive requests answered 200, 404 and
        # 500 in turn, the first response's first segment lost (and one in
        # the middle's)
        Case("1000 requests, first response segment lost", CPORT0 + 6,
             keepalive("k", 1000, status=lambda i: (200, 404, 500)[i % 3]),
             drop=lambda t: lost("resp", 0, 0)(t) or lost("resp", 500, 0)(t),
             must_pair=[i for i in range(1000) if i not in (0, 500)], body=2000),
    ]


def not_http_connections():
    """Three connections dropped as not HTTP after their first bytes: two the
    filter's classifier drops (SMTP, memcached), one the parser drops after
    the filter took it for HTTP (an HTTP/2 version in a request line)."""
    frames = []
    for k, (first, answer) in enumerate([
            (b"EHLO client.example\r\n", b"250 mail.example\r\n"),
            (b"get key\r\n", b"END\r\n"),
            (b"GET /h2 HTTP/2.0\r\nHost: h\r\n\r\n", b"HTTP/2.0 200 OK\r\n\r\n")]):
        c = Conversation(CLIENT, CPORT0 + 50 + k, SERVER, 25)
        c.handshake()
        c.send(True, first, ("req", 0))
        c.send(False, answer, ("resp", 0))
        c.close()
        frames += [f for _, f in c.frames]
    return frames


# ----------------------------------------------------------------------------
# tshark's pairing


def tshark_pairs(pcap):
    """{client port: [(method, target, status)]}: the exchanges tshark pairs
    in pcap (each response with the request it names in http.request_in).
    TCP reassembly off: a response whose first segment is missing would
    stop tshark's reassembly of everything after it; each message here
    starts a segment."""
    res = run(["tshark", "-n", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:FALSE",
               "-d", f"tcp.port=={SPORT},http", "-Y", "http", "-T", "fields",
               "-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.dstport",
               "-e", "http.request.method", "-e", "http.request.uri",
               "-e", "http.response.code", "-e", "http.request_in",
               "-E", "separator=\t", "-E", "occurrence=f"], timeout=300)
    requests, pairs = {}, collections.defaultdict(list)
    for line in res.stdout.splitlines():
        f = line.split("\t")
        if len(f) < 7:
            continue
        frame, sport, dport, method, uri, code, req_in = f[:7]
        if method:
            requests[frame] = (int(sport), method, uri)
        elif code and req_in in requests:
            cport, m, u = requests[req_in]
            pairs[cport].append((m, u, int(code)))
    return pairs


# ----------------------------------------------------------------------------
# the test


def test_losses_never_pair_wrongly_against_tshark(cluster, capture, replay_port, tmp_path):
    """Every exchange tshark pairs in the replayed pcap has, in the capture,
    the same method, target and status, or is marked incomplete; no span has
    a status that is not its exchange's (the generator's truth); each case
    pairs what it must; and the connections dropped as not HTTP are counted
    in capture_status().not_http_connections."""
    all_cases = cases()
    frames = []
    for case in all_cases:
        frames += case.frames()
    frames += not_http_connections()
    pcap = tmp_path / "lossy.pcap"
    write_pcap(pcap, frames)
    before = cluster.status()["not_http_connections"]

    run(["ip", "netns", "exec", replay_port, "tcpreplay", "-q", "--pps=4000", "-i", "eth0",
         str(pcap)], timeout=300)

    # every connection of the trace closed: its tcp row is there
    where_tcp = "protocol = 'tcp' AND src_addr = %s::inet AND dst_addr = %s::inet AND src_port = %s"
    for case in all_cases:
        wait_for(lambda c=case: cluster.spans(where_tcp, (CLIENT, SERVER, c.cport)), 60,
                 desc=f"the tcp span of {case.name}")
    wait_for(lambda: cluster.status()["not_http_connections"] - before >= 3, 15,
             desc="three connections counted as not HTTP")
    time.sleep(0.5)
    assert cluster.status()["not_http_connections"] - before == 3

    reference = tshark_pairs(pcap)
    problems = []
    for case in all_cases:
        rows = http_rows(cluster, "src_addr = %s::inet AND src_port = %s", (CLIENT, case.cport))
        truth = case.truth()
        by_target = collections.defaultdict(list)
        for r in rows:
            problems += [f"{case.name}: {m}" for m in check_http_span(r)]
            if r["http_target"] is None:
                continue
            by_target[r["http_target"]].append(r)
            method, status = truth.get(r["http_target"], (None, None))
            if method is None:
                problems.append(f"{case.name}: a target never sent: {r['http_target']}")
                continue
            if r["http_method"] != method:
                problems.append(f"{case.name}: {r['http_target']} method {r['http_method']}")
            if r["http_status"] is not None and r["http_status"] != status:
                problems.append(f"{case.name}: {r['http_target']} has status {r['http_status']}, "
                                f"its response's is {status} (wrong pairing)")
            if r["http_status"] is None and not r["attributes"].get("http.incomplete"):
                problems.append(f"{case.name}: {r['http_target']} without a status, not incomplete")
        for target, got in by_target.items():
            if len(got) != 1:
                problems.append(f"{case.name}: {target} in {len(got)} spans")
        # tshark's pairs: the same, or incomplete
        for method, uri, code in reference.get(case.cport, []):
            got = by_target.get(uri, [])
            if not got:
                continue  # (its request was not seen whole: see must_pair)
            r = got[0]
            if r["http_status"] is not None and (r["http_method"], r["http_status"]) != (method, code):
                problems.append(f"{case.name}: tshark pairs {method} {uri} with {code}, the "
                                f"capture with {r['http_method']} {r['http_status']}")
            elif r["http_status"] is None and not r["attributes"].get("http.incomplete"):
                problems.append(f"{case.name}: {uri} neither {code} nor incomplete")
        # what each case must pair
        for i in case.must_pair:
            method, target, status = case.exchanges[i]
            got = by_target.get(target, [])
            if not got or got[0]["http_status"] != status:
                problems.append(f"{case.name}: {target} not paired with {status}: "
                                f"{[(g['http_status'], g['attributes'].get('http.incomplete_reasons')) for g in got]}")
        if problems and len(rows) < 50:
            problems.append(brief(rows))
    assert not problems, "\n".join(problems[:60])

    # tshark pairs what the capture pairs, so the comparison compared something
    n_ref = sum(len(v) for v in reference.values())
    assert n_ref > 1000, reference.keys()
