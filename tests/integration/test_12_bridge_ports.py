"""Capturing at the bridge's ports (ebpf_capture.bridge_ports, the default).

On a bridge the capture opens one packet socket per port, which sees the
frames a pod sends, and keeps from the socket on the bridge device only the
frames the host sends out; the bridge is never made promiscuous. These tests
check what that design must keep true: every connection exactly once whichever
way it crosses the bridge (pod to pod, host to pod, pod to host), ports that
appear and disappear while the capture runs, and the old promiscuous mode
when the setting is off.
"""

import json
import os
import pathlib
import re
import signal
import time

import pytest

from conftest import (
    IFACE, NETUTIL, NS, PY, check_span_common, dump_spans, netutil_json, node_ns, now_utc,
    capture_restarted_with, pod_ip4, pod_ip6, pod_run, run, spans_by_connection, wait_for,
    wait_spans_for_port,
)

NODE_IP4 = "10.213.0.1"
NODE_IP6 = "fd00:ebc::1"
LATE_POD = 9  # a pod the topology does not create: it comes while a capture runs

PLAN = [None, [0, 0], [1, 0], [0, 1], [1459, 1460], [65_535, 65_536], [100_001, 3],
        [5, 150_003]]


def promiscuity(dev=IFACE):
    out = run(["ip", "-n", node_ns(), "-d", "link", "show", dev]).stdout
    m = re.search(r"promiscuity (\d+)", out)
    assert m, out
    return int(m.group(1))


def check_exactly_once(cluster, conns, port):
    """Every connection of a netutil batch has exactly one span, with both
    byte counts right."""
    assert conns, "the batch made no connection"
    rows = wait_spans_for_port(cluster, port, len(conns))
    pairs, unmade = spans_by_connection(conns, rows)
    problems = []
    for key, c, got in pairs:
        if len(got) != 1:
            problems.append(f"{key} plan={c['plan']}: {len(got)} spans")
        elif (got[0]["bytes_sent"], got[0]["bytes_received"]) != (c["sent"], c["received"]):
            problems.append(f"{key} plan={c['plan']}: bytes {got[0]['bytes_sent']}/"
                            f"{got[0]['bytes_received']}, expected {c['sent']}/{c['received']}")
        else:
            # Bytes are counted once per sequence number, so a segment seen
            # at two places would not change them: it shows as a
            # retransmission instead (there are none on this bridge).
            attrs = got[0]["attributes"]
            again = (attrs.get("tcp.retransmits_sent", 0), attrs.get("tcp.retransmits_received", 0))
            if again != (0, 0):
                problems.append(f"{key} plan={c['plan']}: segments seen twice "
                                f"(retransmits sent/received {again})")
    if unmade:
        problems.append(f"spans of connections nobody made: {unmade}")
    assert not problems, "\n".join(problems) + "\n" + dump_spans(rows[:4])
    return rows


def node_server(pods, addr):
    port = pods.new_port()
    proc = pods.popen("node", [PY, NETUTIL, "serve", "--bind", addr, "--port", port])
    assert proc.readline().get("ready")
    return port


def add_late_pod():
    """Plugs a new pod into cni0 the way a CNI plugin does: a veth pair, one
    end in the pod's namespace, the other enslaved to the bridge."""
    pod, node = f"{NS}-pod{LATE_POD}", node_ns()
    run(["ip", "netns", "add", pod])
    run(["ip", "-n", pod, "link", "set", "lo", "up"])
    for knob in ("all", "default"):
        run(["ip", "netns", "exec", pod, "sysctl", "-q", "-w",
             f"net.ipv6.conf.{knob}.accept_dad=0"])
    run(["ip", "-n", node, "link", "add", f"veth{LATE_POD}", "type", "veth", "peer", "name",
         "eth0", "netns", pod])
    run(["ip", "-n", node, "link", "set", f"veth{LATE_POD}", "master", IFACE])
    run(["ip", "-n", node, "link", "set", f"veth{LATE_POD}", "up"])
    run(["ip", "-n", pod, "addr", "add", f"{pod_ip4(LATE_POD)}/24", "dev", "eth0"])
    run(["ip", "-n", pod, "addr", "add", f"{pod_ip6(LATE_POD)}/64", "dev", "eth0", "nodad"])
    run(["ip", "-n", pod, "link", "set", "eth0", "up"])
    wait_for(lambda: pod_run(LATE_POD, "ping", "-c", "1", "-W", "1", "-q", pod_ip4(2),
                             check=False).returncode == 0, 10, desc="the late pod reaches pod2")


def remove_late_pod():
    # Deleting the namespace deletes its veth end, and with it the bridge port.
    run(["ip", "netns", "del", f"{NS}-pod{LATE_POD}"], check=False)
    wait_for(lambda: run(["ip", "-n", node_ns(), "link", "show", f"veth{LATE_POD}"],
                         check=False).returncode != 0, 10, desc="the late pod's port is gone")


@pytest.fixture
def late_pod():
    remove_late_pod()
    try:
        yield LATE_POD
    finally:
        remove_late_pod()


def bridge_ports():
    out = run(["ip", "-n", node_ns(), "-o", "link", "show", "master", IFACE]).stdout
    return len(out.strip().splitlines())


def wait_ports(cluster, n):
    """capture_status().ports is published every sweep (a quarter second)."""
    wait_for(lambda: cluster.status()["ports"] == n, 5, desc=f"capture_status().ports = {n}")


def test_bridge_is_not_promiscuous(cluster, capture):
    assert promiscuity() == 0, "a capture at the bridge's ports must not need promiscuous mode"
    log = cluster.log_text()
    m = re.findall(r'capturing on bridge "cni0" at its (\d+) ports', log)
    assert m, cluster.log_tail()
    assert int(m[-1]) == bridge_ports(), m
    wait_ports(cluster, bridge_ports())
    assert cluster.status()["port_errors"] == 0


@pytest.mark.parametrize("direction", ["host_to_pod", "pod_to_host", "host_to_pod_v6"])
def test_host_and_pod_exactly_once(cluster, capture, pods, direction):
    """Frames between the host and a pod cross the bridge device itself: the
    host's are seen on the bridge socket (outgoing), the pod's at its port,
    and neither twice."""
    if direction == "pod_to_host":
        port = node_server(pods, NODE_IP4)
        conns = pods.batch(1, NODE_IP4, port, PLAN)
    else:
        v6 = direction.endswith("v6")
        _, addr, port = pods.byte_server(2, v6=v6)
        conns = netutil_json("node", "batch", "--host", addr, "--port", port, "--plan",
                             json.dumps(PLAN))
    assert len(conns) == len(PLAN), conns
    check_exactly_once(cluster, conns, port)


def test_port_added_and_removed_while_capturing(cluster, capture, pods, late_pod):
    t0 = now_utc()
    before = bridge_ports()
    wait_ports(cluster, before)
    add_late_pod()
    # The port's notification reaches the worker within one of its wake-ups.
    wait_ports(cluster, before + 1)
    _, addr, port = pods.byte_server(2)
    conns = pods.batch(late_pod, addr, port, PLAN)
    rows = check_exactly_once(cluster, conns, port)
    for r in rows:
        check_span_common(r, t0, now_utc())

    # ...and the other way: a server in the new pod.
    _, addr, port = pods.byte_server(late_pod)
    conns = pods.batch(3, addr, port, PLAN)
    check_exactly_once(cluster, conns, port)

    pods.stop_all()
    remove_late_pod()
    wait_ports(cluster, before)
    # The capture goes on, on the remaining ports, and did not fail.
    _, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, PLAN[:4])
    check_exactly_once(cluster, conns, port)
    st = cluster.status()
    assert st["state"] == "running" and not st["last_error"] and st["port_errors"] == 0, st


def test_promiscuous_mode_when_off(cluster, pods):
    """bridge_ports = off: one socket on the bridge, made promiscuous, sees
    the same connections exactly once."""
    log_from = cluster.log_size()
    with capture_restarted_with(cluster, "ebpf_capture.bridge_ports", "off"):
        assert promiscuity() == 1
        time.sleep(0.5)  # a sweep publishes the counters
        assert cluster.status()["ports"] == 0
        assert 'capturing on "cni0" (promiscuous)' in cluster.log_text(log_from), \
            cluster.log_tail()
        _, addr, port = pods.byte_server(2)
        check_exactly_once(cluster, pods.batch(1, addr, port, PLAN), port)
        port = node_server(pods, NODE_IP4)
        check_exactly_once(cluster, pods.batch(3, NODE_IP4, port, PLAN), port)
    assert promiscuity() == 0


def worker_fds(cluster):
    pid = cluster.status()["pid"]
    return len(list(pathlib.Path(f"/proc/{pid}/fd").iterdir()))


def test_port_churn_is_followed_without_leaks(cluster, capture, pods, tmp_path):
    """A node starting and stopping many pods at once: 300 ports join the
    bridge in one burst while the worker is stopped (SIGSTOP), so more link
    notifications arrive than its netlink socket can hold; they leave in
    another burst with the worker running. The capture must notice the loss
    and list the links again, end up with exactly the ports that are left,
    hold no socket of a port that is gone, and still record connections.

    The socket asks for 4 MiB, which the kernel caps at net.core.rmem_max:
    the capture is restarted with that cap lowered to 64 KiB (a host-wide
    setting, restored at once), so 300 x 4 notifications cannot fit."""
    rmem_max = pathlib.Path("/proc/sys/net/core/rmem_max")
    saved = rmem_max.read_text()
    cluster.stop_capture()
    try:
        rmem_max.write_text("65536\n")
        cluster.ensure_capture()
    finally:
        rmem_max.write_text(saved)
    base_ports = bridge_ports()
    wait_ports(cluster, base_ports)
    base_fds = worker_fds(cluster)
    pid = cluster.status()["pid"]
    log_from = cluster.log_size()
    n = 300
    add = tmp_path / "add"
    add.write_text("".join(
        f"link add ebc{i}a type veth peer name ebc{i}b\n"
        f"link set ebc{i}a master {IFACE}\n"
        f"link set ebc{i}a up\n" for i in range(n)))
    delete = tmp_path / "del"
    delete.write_text("".join(f"link del ebc{i}a\n" for i in range(n)))
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            run(["ip", "-n", node_ns(), "-batch", str(add)])
        finally:
            os.kill(pid, signal.SIGCONT)
        assert bridge_ports() == base_ports + n
        wait_ports(cluster, base_ports + n)
        assert worker_fds(cluster) == base_fds + n
        assert "link notifications on \"cni0\" were lost" in cluster.log_text(log_from), \
            cluster.log_tail()
    finally:
        run(["ip", "-n", node_ns(), "-force", "-batch", str(delete)], check=False)
    assert bridge_ports() == base_ports
    wait_ports(cluster, base_ports)
    assert worker_fds(cluster) == base_fds
    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid, st
    assert st["port_errors"] == 0 and not st["last_error"], st
    _, addr, port = pods.byte_server(2)
    check_exactly_once(cluster, pods.batch(1, addr, port, PLAN[:4]), port)
