"""Captures on nodes without a bridge (issue 18): capture_start('cali*'),
capture_start('lxc*'), '*' and 'auto'.

The layouts of Calico and Cilium are built in the node namespace next to
cni0 (tests/lib/topology.sh routed-up): pods whose host-side veths are
routed by the node's IP stack, /32 routes to them, Calico's link-local
gateway answered by proxy ARP, Cilium's by a permanent neighbour entry, and
another node behind the uplink0 veth, reached natively and through VXLAN
(vxlan.calico). In each layout every kind of connection must be recorded
exactly once with both byte counts exact: a frame between two pods crosses two
captured interfaces, and a frame counted twice would show as a
retransmission (bytes are counted by sequence number).
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import (
    LIB, NETUTIL, NS, PY, REPO, SPAN_TIMEOUT, check_span_common, dump_spans, in_pod, netutil_json,
    node_ns, now_utc, run, spans_by_connection, wait_for,
)

NODE_IP = "10.214.0.1"  # the node's uplink address
PLAN = [None, [0, 0], [1, 0], [0, 1], [1459, 1460], [65_535, 65_536], [100_001, 3],
        [5, 150_003]]
LATE = 9  # a pod the topology does not create: it comes while a capture runs

FLAVOURS = {
    "calico": {"pattern": "cali*", "prefix": "cali", "ip4": "10.213.1.{}",
               "ip6": "fd00:ebd:1::{}", "remote_pod": "10.214.9.1"},   # through VXLAN
    "cilium": {"pattern": "lxc*", "prefix": "lxc", "ip4": "10.213.2.{}", "ip6": None,
               "remote_pod": "10.214.8.1"},  # routed natively
}


def topology_sh(*args):
    return run(["bash", str(LIB / "topology.sh"), *map(str, args)])


def pod(flavour, i):
    return f"{NS}-{FLAVOURS[flavour]['prefix']}{i}"


def pod_ip(flavour, i, v6=False):
    return FLAVOURS[flavour]["ip6" if v6 else "ip4"].format(i)


def remote():
    return f"{NS}-remote"


def node_links():
    """Every link of the node namespace, by name."""
    out = run(["ip", "-n", node_ns(), "-o", "link", "show"]).stdout
    return [re.match(r"\d+: ([^:@]+)", line).group(1) for line in out.splitlines()]


def host_ends(flavour):
    return sorted(n for n in node_links() if n.startswith(FLAVOURS[flavour]["prefix"]))


@pytest.fixture(scope="module")
def routed(topology, cluster):
    topology_sh("routed-up", "both", 3)
    try:
        yield
    finally:
        for target in ("cali*", "lxc*", "*", "auto"):
            cluster.sql("SELECT capture_stop(%s)", (target,))
        for target in ("cali*", "lxc*", "*", "auto"):
            if cluster.status(target):
                cluster.wait_state("stopped", target)
        topology_sh("routed-down")


def capture(cluster, target):
    """A running capture on target; its status row (the worker says where it
    is attached before it says it runs)."""
    st = cluster.ensure_capture(target)
    assert st["pattern"], st
    return st


def spans_of(cluster, target, port):
    return cluster.spans("interface = %s AND (src_port = %s OR dst_port = %s)",
                         (target, port, port))


def retransmitted(where):
    """Segments the TCP stack of a namespace has retransmitted so far
    (RetransSegs): what the capture may rightly count as retransmissions."""
    snmp = run(in_pod(where, "cat", "/proc/net/snmp")).stdout.splitlines()
    names, values = [line.split() for line in snmp if line.startswith("Tcp:")][:2]
    return int(values[names.index("RetransSegs")])


def traffic(where, host, port, plan, server_ns, src=None, http=False):
    """batch(), and what the client's and the server's namespaces
    retransmitted meanwhile (both 0 on a quiet machine; a busy one makes a
    stack send a tail loss probe or a retransmission now and then)."""
    before = (retransmitted(where), retransmitted(server_ns))
    conns = batch(where, host, port, plan, src=src, http=http)
    after = (retransmitted(where), retransmitted(server_ns))
    return conns, (after[0] - before[0], after[1] - before[1])


def check_exactly_once(cluster, target, conns, port, protocol="tcp", resent=(0, 0)):
    """Every connection of a netutil batch has exactly one span of `target`'s
    capture, both byte counts right, no segment counted twice: the spans'
    retransmissions are those the client and the server really sent
    (`resent`, from traffic())."""
    assert conns, "the batch made no connection"
    wait_for(lambda: len([r for r in spans_of(cluster, target, port)
                          if r["protocol"] == protocol]) >= len(conns),
             SPAN_TIMEOUT, desc=f"{len(conns)} {protocol} spans of {target} on port {port}")
    time.sleep(0.6)  # more than a flush interval: duplicates would show too
    rows = [r for r in spans_of(cluster, target, port) if r["protocol"] == "tcp"]
    pairs, unmade = spans_by_connection(conns, rows)
    problems = []
    again = [0, 0]
    for key, c, got in pairs:
        if len(got) != 1:
            problems.append(f"{key} plan={c['plan']}: {len(got)} spans")
            continue
        span = got[0]
        attrs = span["attributes"]
        again[0] += attrs.get("tcp.retransmits_sent", 0)
        again[1] += attrs.get("tcp.retransmits_received", 0)
        if (span["bytes_sent"], span["bytes_received"]) != (c["sent"], c["received"]):
            problems.append(f"{key} plan={c['plan']}: bytes {span['bytes_sent']}/"
                            f"{span['bytes_received']}, expected {c['sent']}/{c['received']}")
        elif attrs.get("tcp.mid_stream") or attrs.get("tcp.close_reason") != "fin":
            problems.append(f"{key}: not seen from SYN to the final ACK: {attrs}")
    if tuple(again) != tuple(resent):
        problems.append(f"segments counted twice: retransmissions sent/received {tuple(again)}, "
                        f"the client's and the server's stacks resent {tuple(resent)}")
    if unmade:
        problems.append(f"spans of connections nobody made: {unmade}")
    assert not problems, "\n".join(problems) + "\n" + dump_spans(rows[:4])
    return rows


def server(pods, where, addr, http=False):
    port = pods.new_port()
    args = [PY, NETUTIL, "serve", "--bind", addr, "--port", port] + (["--http"] if http else [])
    proc = pods.popen(where, args)
    assert proc.readline().get("ready")
    return port


def batch(where, host, port, plan, src=None, http=False):
    args = ["batch", "--host", host, "--port", port, "--plan", json.dumps(plan)]
    if src:
        args += ["--src", src]
    if http:
        args.append("--http")
    return netutil_json(where, *args)


def once(cluster, pods, target, client, server_ns, addr, plan=PLAN, src=None):
    """A byte server at addr in server_ns, a batch from client (bound to
    src): every connection exactly once in `target`'s capture."""
    port = server(pods, server_ns, addr)
    conns, resent = traffic(client, addr, port, plan, server_ns, src=src)
    assert len(conns) == len(plan), conns
    return check_exactly_once(cluster, target, conns, port, resent=resent)


# Who talks to whom: (client, server address, server namespace, client source).
def endpoints(flavour, direction):
    f = FLAVOURS[flavour]
    v6 = direction.endswith("_v6")
    if direction.startswith("pod_to_pod"):
        return pod(flavour, 1), pod_ip(flavour, 2, v6), pod(flavour, 2), None
    if direction.startswith("host_to_pod"):
        return "node", pod_ip(flavour, 2, v6), pod(flavour, 2), None
    if direction == "pod_to_host":
        return pod(flavour, 3), NODE_IP, "node", None
    if direction == "pod_to_remote":
        return pod(flavour, 1), f["remote_pod"], remote(), None
    if direction == "remote_to_pod":
        return remote(), pod_ip(flavour, 3), pod(flavour, 3), f["remote_pod"]
    raise AssertionError(direction)


DIRECTIONS = [(f, d) for f in FLAVOURS
              for d in ("pod_to_pod", "host_to_pod", "pod_to_host", "pod_to_remote",
                        "remote_to_pod")]
DIRECTIONS += [("calico", "pod_to_pod_v6"), ("calico", "host_to_pod_v6")]


def test_routed_status(cluster, routed):
    for flavour, f in FLAVOURS.items():
        log_from = cluster.log_size()
        cluster.sql("SELECT capture_stop(%s)", (f["pattern"],))
        if cluster.status(f["pattern"]):
            cluster.wait_state("stopped", f["pattern"])
        st = capture(cluster, f["pattern"])
        assert st["mode"] == "routed" and st["pattern"] == f["pattern"], st
        assert st["attached"] == host_ends(flavour) and len(st["attached"]) == 3, st
        assert st["failed"] == [] and st["skipped"] == [], st
        assert st["ports"] == 3 and st["port_errors"] == 0 and not st["last_error"], st
        line = (f'capturing on "{f["pattern"]}" at 3 routed pod interfaces matching '
                f'"{f["pattern"]}"')
        wait_for(lambda: line in cluster.log_text(log_from), 5, desc=line)


@pytest.mark.parametrize("flavour,direction", DIRECTIONS,
                         ids=[f"{f}-{d}" for f, d in DIRECTIONS])
def test_routed_exactly_once(cluster, routed, pods, flavour, direction):
    """Pod to pod (two captured interfaces), the host to a pod (a
    kubelet-style probe), a pod to the host, a pod to a pod of another node
    and back: each connection once, bytes exact, no segment twice."""
    target = FLAVOURS[flavour]["pattern"]
    capture(cluster, target)
    t0 = now_utc()
    client, addr, server_ns, src = endpoints(flavour, direction)
    rows = once(cluster, pods, target, client, server_ns, addr, src=src)
    for r in rows:
        check_span_common(r, t0, now_utc(), iface=target)


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_routed_http(cluster, routed, pods, flavour):
    """HTTP exchanges from a pod, the host and the other node: one HTTP span
    per exchange, with its connection's span exactly once."""
    target = FLAVOURS[flavour]["pattern"]
    capture(cluster, target)
    addr = pod_ip(flavour, 2)
    port = server(pods, pod(flavour, 2), addr, http=True)
    conns, resent = [], [0, 0]
    for client, src in ((pod(flavour, 1), None), ("node", None),
                        (remote(), FLAVOURS[flavour]["remote_pod"])):
        got, again = traffic(client, addr, port,
                             [f"{flavour}/{client[-6:]}/{k}" for k in range(3)], pod(flavour, 2),
                             src=src, http=True)
        conns += got
        resent = [resent[0] + again[0], resent[1] + again[1]]
    check_exactly_once(cluster, target, conns, port, resent=resent)
    wait_for(lambda: len([r for r in spans_of(cluster, target, port)
                          if r["protocol"] == "http"]) >= len(conns), SPAN_TIMEOUT,
             desc="the HTTP spans")
    http = [r for r in spans_of(cluster, target, port) if r["protocol"] == "http"]
    pairs, unmade = spans_by_connection(conns, http)
    assert not unmade, unmade
    for key, c, got in pairs:
        assert len(got) == 1, (key, dump_spans(got))
        h = got[0]
        assert (h["http_method"], h["http_target"], h["http_status"]) == \
            ("GET", f"/{c['plan']}", 200), dump_spans([h])
        assert h["status"] == "UNSET" and not h["attributes"].get("http.incomplete"), h


def plug_in_late_pod(flavour):
    topology_sh("routed-pod-add", flavour, LATE)
    wait_for(lambda: run(["ip", "netns", "exec", pod(flavour, LATE), "ping", "-c", "1", "-W",
                          "1", "-q", pod_ip(flavour, 2)], check=False).returncode == 0, 10,
             desc="the late pod reaches pod 2")


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_pods_plugged_in_and_out_while_capturing(cluster, routed, pods, flavour):
    """A pod plugged in the way CNI plugins do it (a veth pair made on the
    node with temporary names, one end moved into the pod, both renamed) is
    captured from its notification on; one unplugged is let go."""
    target = FLAVOURS[flavour]["pattern"]
    before = capture(cluster, target)["attached"]
    topology_sh("routed-pod-del", flavour, LATE)
    try:
        plug_in_late_pod(flavour)
        (new_end,) = set(host_ends(flavour)) - set(before)
        wait_for(lambda: cluster.status(target)["attached"] == sorted(before + [new_end]), 5,
                 desc=f"{new_end} attached")
        # to it, from it, and from the other node
        once(cluster, pods, target, pod(flavour, 1), pod(flavour, LATE), pod_ip(flavour, LATE))
        once(cluster, pods, target, pod(flavour, LATE), pod(flavour, 2), pod_ip(flavour, 2))
        once(cluster, pods, target, remote(), pod(flavour, LATE), pod_ip(flavour, LATE),
             plan=PLAN[:4], src=FLAVOURS[flavour]["remote_pod"])
    finally:
        pods.stop_all()
        topology_sh("routed-pod-del", flavour, LATE)
    wait_for(lambda: cluster.status(target)["attached"] == before, 5, desc="the late pod let go")
    once(cluster, pods, target, pod(flavour, 1), pod(flavour, 2), pod_ip(flavour, 2),
         plan=PLAN[:4])
    st = cluster.status(target)
    assert st["state"] == "running" and not st["last_error"], st
    assert st["failed"] == [] and st["port_errors"] == 0, st


def test_interfaces_that_are_not_pods_are_left_alone(cluster, routed, pods):
    """'*' matches everything: the loopback, the bridge and its ports, the
    VXLAN device, Cilium's host pair are skipped and say why; the uplink, a
    veth to the other node, is attached like a pod's. Connections through all
    of them are still recorded exactly once."""
    target = "*"
    st = capture(cluster, target)
    try:
        expected = sorted(host_ends("calico") + host_ends("cilium") + ["uplink0"])
        assert st["attached"] == expected, st
        skipped = dict(s.split(" ", 1) for s in st["skipped"])
        assert skipped == {
            "lo": "(loopback)",
            "cni0": "(a bridge: capture it by its name)",
            **{f"veth{i}": "(a port of a bridge or bond: capture the bridge by its name)"
               for i in range(1, 5)},
            "vxlan.calico": "(not a veth: vxlan)",
            "cilium_host": "(its peer is in this network namespace, not a pod's)",
            "cilium_net": "(its peer is in this network namespace, not a pod's)",
        }, st["skipped"]
        assert st["failed"] == [], st
        # through the VXLAN tunnel (and the captured uplink under it)
        once(cluster, pods, target, pod("calico", 1), remote(), "10.214.9.1")
        # in through the captured uplink, out to a pod
        once(cluster, pods, target, remote(), pod("cilium", 2), pod_ip("cilium", 2),
             src="10.214.8.1")
        # from a pod of one layout to one of the other, and the host to a pod
        once(cluster, pods, target, pod("calico", 2), pod("cilium", 1), pod_ip("cilium", 1))
        once(cluster, pods, target, "node", pod("calico", 3), pod_ip("calico", 3))
    finally:
        cluster.stop_capture(target)


def test_auto_chooses_the_layout_with_the_most_pods(cluster, routed, pods):
    """cni0 has four veth ports and each routed layout three: 'auto' takes
    the bridge. With two more Calico pods it takes 'cali*', and says so."""
    target = "auto"
    log_from = cluster.log_size()
    st = capture(cluster, target)
    try:
        assert (st["mode"], st["pattern"]) == ("bridge_ports", "cni0"), st
        assert st["attached"] == ["cni0", "veth1", "veth2", "veth3", "veth4"], st
        assert ('"auto" found bridge cni0 with 4 veth ports (and 3 routed pod interfaces '
                'named cali*)') in cluster.log_text(log_from), cluster.log_tail()
        cluster.stop_capture(target)
        for i in (4, 5):
            topology_sh("routed-pod-add", "calico", i)
        st = capture(cluster, target)
        assert (st["mode"], st["pattern"]) == ("routed", "cali*"), st
        assert st["attached"] == host_ends("calico") and len(st["attached"]) == 5, st
        assert '"auto" found 5 routed pod interfaces named cali*' in cluster.log_text(log_from)
        rows = once(cluster, pods, target, pod("calico", 4), pod("calico", 5),
                    pod_ip("calico", 5))
        assert {r["interface"] for r in rows} == {"auto"}
    finally:
        cluster.stop_capture(target)
        for i in (4, 5):
            topology_sh("routed-pod-del", "calico", i)


def test_deploy_init_script_starts_a_pattern(cluster, routed):
    """The DaemonSet's init script (deploy/configmap.yaml) passes a pattern in
    the ConfigMap's `interface` through to capture_start. The script creates
    the extension and starts the capture only on a node without the extension
    (test_15_image.py runs that whole path with cni0); here its SQL for that
    step, run by psql with the same variable as in the script, without the
    CREATE EXTENSION this cluster has done already."""
    docs = list(yaml.safe_load_all((REPO / "deploy" / "configmap.yaml").read_text()))
    (cm,) = [d for d in docs if d and d.get("kind") == "ConfigMap"]
    script = cm["data"]["init-capture.sh"]
    blocks = re.findall(r"<<'SQL'\n(.*?)\n\s*SQL\n", script, re.S)
    (start,) = [b for b in blocks if "capture_start" in b]
    assert "CREATE EXTENSION ebpf_capture;" in start, start
    start = start.replace("CREATE EXTENSION ebpf_capture;", "")
    assert 'sql -v iface="$iface"' in script, "the script no longer passes iface to psql"
    target = "lxc[0-9a-f]*"
    fd, name = tempfile.mkstemp(prefix="ebpfc-init-", suffix=".sql")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(start + "\n")
        path.chmod(0o644)  # postgres reads it
        run(["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", str(cluster.dir), "-p", str(cluster.port), "-d", "postgres",
             "-v", f"iface={target}", "-f", str(path)])
        st = cluster.wait_state("running", target)
        assert st["mode"] == "routed" and st["attached"] == host_ends("cilium"), st
    finally:
        path.unlink(missing_ok=True)
        if cluster.status(target):
            cluster.stop_capture(target)


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_a_service_is_the_clients_view_and_the_servers_view(cluster, routed, pods, flavour):
    """A Service reached through kube-proxy-style DNAT on the node (an
    nftables rule: 10.96.0.10:80 to pod 2's server): its frames are rewritten
    between the two pods' interfaces, so the capture records two connections
    for each, pod 1 to the Service address and pod 1 to pod 2, each complete,
    bytes exact, no segment counted twice."""
    target = FLAVOURS[flavour]["pattern"]
    capture(cluster, target)
    vip, vport = "10.96.0.10", 80
    port = server(pods, pod(flavour, 2), pod_ip(flavour, 2))
    table = "ebpfc_svc"
    ruleset = (f"table ip {table} {{\n"
               f"  chain pre {{ type nat hook prerouting priority -100; policy accept;\n"
               f"    ip daddr {vip} tcp dport {vport} dnat to {pod_ip(flavour, 2)}:{port}\n"
               f"  }}\n}}\n")
    run(in_pod("node", "nft", "delete", "table", "ip", table), check=False)
    run(in_pod("node", "nft", "-f", "-"), input=ruleset)
    try:
        conns, resent = traffic(pod(flavour, 1), vip, vport, PLAN, pod(flavour, 2))
    finally:
        run(in_pod("node", "nft", "delete", "table", "ip", table), check=False)
    assert len(conns) == len(PLAN) and all(c["raddr"] == vip for c in conns), conns
    # the client's view: what pod 1 sent and read
    check_exactly_once(cluster, target, conns, vport, resent=resent)
    # the server's view: the same connections, to pod 2's port
    server_view = [dict(c, raddr=pod_ip(flavour, 2), rport=port) for c in conns]
    check_exactly_once(cluster, target, server_view, port, resent=resent)
