"""Malformed frames on the bridge must not hurt the capture."""

from conftest import (
    check_span_common, dump_spans, netutil_json, norm_ip, now_utc, pid_alive, pod_ip4,
    pod_ip6, pod_mac, wait_for, wait_spans_for_port,
)


def test_hostile_frames(cluster, capture, pods):
    pid = capture["pid"]
    log_start = cluster.log_size()
    before = cluster.status()

    out = netutil_json(1, "hostile", "--iface", "eth0", "--dst-mac", pod_mac(2),
                       "--src-ip4", pod_ip4(1), "--dst-ip4", pod_ip4(2),
                       "--src-ip6", pod_ip6(1), "--dst-ip6", pod_ip6(2),
                       "--count", 4000, "--seed", 7)
    report = out[-1]
    assert report["sent"] >= 3900, report
    assert len(report["by_category"]) >= 17, report

    # The filter saw them (frames go to pod2's MAC through cni0).
    wait_for(lambda: cluster.status()["packets"] > before["packets"], 10,
             desc="packets counter to grow")

    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid and pid_alive(pid), (before, st)

    # A normal connection afterwards is recorded exactly once, bytes right.
    _, addr, port = pods.byte_server(2)
    t0 = now_utc()
    conns = pods.batch(1, addr, port, [[12_345, 54_321]])
    rows = wait_spans_for_port(cluster, port, 1)
    assert len(rows) == 1, dump_spans(rows)
    span = rows[0]
    check_span_common(span, t0, now_utc())
    c = conns[0]
    assert (norm_ip(span["src_host"]), span["src_port"]) == (norm_ip(c["laddr"]), c["lport"])
    assert (span["bytes_sent"], span["bytes_received"]) == (12_353, 54_321), span
    assert span["attributes"].get("tcp.close_reason") == "fin", span["attributes"]

    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid, st
    log = cluster.log_text(log_start)
    assert "terminated by signal" not in log, log
