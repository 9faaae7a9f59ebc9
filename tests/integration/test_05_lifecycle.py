"""The capture and the server's life: DROP DATABASE, restarts, crashes."""

import os
import signal
import time

from conftest import (
    check_span_common, dump_spans, norm_ip, now_utc, pid_alive, wait_for,
    wait_spans_for_port,
)


def connections_recorded(cluster, pods, plan=([100, 200], [300, 400], None)):
    _, addr, port = pods.byte_server(2)
    t0 = now_utc()
    conns = pods.batch(1, addr, port, list(plan))
    rows = wait_spans_for_port(cluster, port, len(conns))
    got = sorted((norm_ip(r["src_host"]), r["src_port"], r["bytes_sent"], r["bytes_received"])
                 for r in rows)
    want = sorted((norm_ip(c["laddr"]), c["lport"], c["sent"], c["received"]) for c in conns)
    assert got == want, dump_spans(rows)
    for r in rows:
        check_span_common(r, t0, now_utc())


def test_drop_database_not_blocked(cluster, capture):
    cluster.sql("DROP DATABASE IF EXISTS ebpfc_dropme")
    cluster.sql("CREATE DATABASE ebpfc_dropme")
    cluster.sql("CREATE EXTENSION ebpf_capture", dbname="ebpfc_dropme")
    started = time.monotonic()
    cluster.sql("DROP DATABASE ebpfc_dropme")
    took = time.monotonic() - started
    assert took < 10, f"DROP DATABASE took {took:.1f}s"
    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == capture["pid"], st


def test_fast_shutdown_and_restart_resume(cluster, capture, pods):
    old_pid = capture["pid"]
    started = time.monotonic()
    cluster.stop()
    took = time.monotonic() - started
    assert took < 10, f"fast shutdown took {took:.1f}s"
    assert not pid_alive(old_pid)
    cluster.restart()
    # No capture_start: the capture comes back by itself.
    st = cluster.wait_state("running", other_than_pid=old_pid, timeout=20)
    assert pid_alive(st["pid"]), st
    connections_recorded(cluster, pods)


def test_worker_kill9_crash_recovery_resume(cluster, capture, pods):
    old_pid = capture["pid"]
    postmaster = cluster.postmaster_pid()
    log_start = cluster.log_size()
    os.kill(old_pid, signal.SIGKILL)
    try:
        st = cluster.wait_state("running", other_than_pid=old_pid, timeout=30)
        wait_for(lambda: "database system is ready to accept connections" in
                 cluster.log_text(log_start), 30, desc="crash recovery to finish")
    finally:
        # the crash report of this test is expected; allow it in the log check
        cluster.allowed_crash_ranges.append((log_start, cluster.log_size()))
    log = cluster.log_text(log_start)
    assert f"(PID {old_pid}) was terminated by signal 9" in log, log
    assert "all server processes terminated; reinitializing" in log, log
    assert cluster.postmaster_pid() == postmaster
    assert pid_alive(st["pid"]), st
    connections_recorded(cluster, pods)


def test_launcher_restart_keeps_one_worker(cluster, capture, pods):
    """A launcher that dies alone (the server does not) must not leave the
    interface with two workers: it stops the orphan and starts afresh."""
    launcher = cluster.value(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ebpf_capture launcher'")
    assert launcher, "no launcher in pg_stat_activity"
    old_pid = capture["pid"]
    cluster.sql("SELECT pg_terminate_backend(%s)", (launcher,))
    st = cluster.wait_state("running", other_than_pid=old_pid, timeout=30)
    wait_for(lambda: not pid_alive(old_pid), 15, desc="the orphaned worker to exit")
    workers = cluster.value(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ebpf_capture worker'")
    assert workers == 1, workers
    assert pid_alive(st["pid"]), st
    connections_recorded(cluster, pods)
