"""capture_status(), capture_stop() and starting again."""

import os
import time

from conftest import (
    check_span_common, dump_spans, norm_ip, now_utc, parent_pid, pid_alive, pod_ip4,
    wait_for, wait_span_for, wait_spans_for_port,
)

STATUS_COLUMNS = ["interface", "pid", "state", "started_at", "packets", "bytes",
                  "spans_written", "events_dropped", "kernel_drops", "flow_table_full",
                  "last_error"]


def test_status_running_and_counters(cluster, capture, pods):
    st = cluster.status()
    # the contract's columns, in this order (more may follow or sit between)
    cols = [c for c in st.keys() if c in STATUS_COLUMNS]
    assert cols == STATUS_COLUMNS, list(st.keys())
    assert st["interface"] == "cni0" and st["state"] == "running", st
    pid = st["pid"]
    assert isinstance(pid, int) and pid > 0 and pid_alive(pid), st
    # the worker is a child of this cluster's postmaster
    assert parent_pid(pid) == cluster.postmaster_pid(), (pid, cluster.postmaster_pid())
    # a batch consumer: its wake-ups must not preempt the traffic it observes
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH, os.sched_getscheduler(pid)
    assert st["started_at"] is not None and st["started_at"] <= now_utc(), st
    for col in ("packets", "bytes", "spans_written", "events_dropped", "kernel_drops",
                "flow_table_full"):
        assert st[col] is not None and st[col] >= 0, (col, st)

    _, addr, port = pods.byte_server(2)
    plan = [[10_000, 20_000]] * 5
    before = cluster.status()
    pods.batch(1, addr, port, plan)
    wait_spans_for_port(cluster, port, len(plan))

    def grown():
        now = cluster.status()
        if (now["packets"] > before["packets"]
                and now["bytes"] >= before["bytes"] + 5 * (30_008)
                and now["spans_written"] >= before["spans_written"] + 5):
            return now
        return None

    after = wait_for(grown, 5, desc=f"counters to grow from {before}")
    assert after["pid"] == pid and after["state"] == "running", after
    assert after["started_at"] == st["started_at"], (st, after)


def test_stop_writes_nothing_then_start_again(cluster, capture, pods):
    old_pid = capture["pid"]
    _, addr, port = pods.byte_server(2)

    # A connection still open when the capture stops.
    client, info = pods.ctl_client(1, addr, port)
    t0 = now_utc()
    client.command("round 40 50")

    was = cluster.value("SELECT capture_stop('cni0')")
    assert was is True
    st = cluster.wait_state("stopped")
    wait_for(lambda: not pid_alive(old_pid), 10, desc=f"worker {old_pid} to exit")

    open_spans = wait_span_for(cluster, info["laddr"], info["lport"], addr, port, timeout=5)
    assert len(open_spans) == 1, dump_spans(open_spans)
    span = open_spans[0]
    check_span_common(span, t0, now_utc())
    assert span["attributes"].get("tcp.close_reason") == "capture_stopped", span["attributes"]
    assert (span["bytes_sent"], span["bytes_received"]) == (48, 50), span

    # Stopped: nothing new, neither for new connections nor for the one that
    # closes now.
    count = cluster.span_count()
    client.command("round 1 1")
    client.command("close")
    pods.batch(1, addr, port, [[1, 2], [3, 4], None, [5, 6], [7, 8]])
    time.sleep(2)
    assert cluster.span_count() == count
    assert len(cluster.spans_touching_port(port)) == 1
    st = cluster.status()
    assert st["state"] == "stopped", st

    # Stopping again: nothing was running.
    assert cluster.value("SELECT capture_stop('cni0')") is False
    assert cluster.value("SELECT capture_stop('veth1')") is False

    # And it starts again, with a new worker.
    cluster.sql("SELECT capture_start('cni0')")
    st = cluster.wait_state("running")
    assert st["pid"] != old_pid and pid_alive(st["pid"]), st
    t0 = now_utc()
    conns = pods.batch(1, addr, port, [[11, 12], [13, 14], [15, 16]])
    rows = wait_spans_for_port(cluster, port, 1 + 3)
    new = [r for r in rows if r["src_port"] != info["lport"]]
    assert sorted((norm_ip(r["src_host"]), r["src_port"], r["bytes_sent"], r["bytes_received"])
                  for r in new) == \
        sorted((norm_ip(c["laddr"]), c["lport"], c["sent"], c["received"]) for c in conns), \
        dump_spans(rows)
    for r in new:
        check_span_common(r, t0, now_utc())
        assert norm_ip(r["dst_host"]) == norm_ip(addr) and r["dst_port"] == port
        assert r["src_host"] == pod_ip4(1)
