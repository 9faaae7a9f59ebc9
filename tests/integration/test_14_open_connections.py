"""open_connections: the connections a capture sees open, rewritten every
ebpf_capture.open_connections_interval with their byte counts so far, and
gone once they closed (their span is then in spans)."""

import contextlib
import time
from datetime import timedelta

from conftest import (
    IFACE, now_utc, pod_ip4, set_guc, wait_for, wait_span_for,
)

INTERVAL = "500ms"


@contextlib.contextmanager
def report_every(cluster, value):
    set_guc(cluster, "ebpf_capture.open_connections_interval", value)
    try:
        wait_for(lambda: cluster.value("SHOW ebpf_capture.open_connections_interval") == value, 5,
                 desc="open_connections_interval reloaded")
        time.sleep(0.5)  # the worker reloads on its next loop
        yield
    finally:
        set_guc(cluster, "ebpf_capture.open_connections_interval", None)
        wait_for(lambda: cluster.value("SHOW ebpf_capture.open_connections_interval") == "10s",
                 5, desc="open_connections_interval restored")


def open_rows(cluster, info, port):
    return cluster.sql(
        "SELECT *, host(src_addr) AS src_host, host(dst_addr) AS dst_host "
        "FROM open_connections WHERE src_port = %s AND dst_port = %s",
        (info["lport"], port))


def wait_open_bytes(cluster, info, port, sent, received, timeout=10):
    """Waits until the connection's row shows these byte counts; returns it."""
    def find():
        rows = open_rows(cluster, info, port)
        assert len(rows) <= 1, rows
        if rows and (rows[0]["bytes_sent"], rows[0]["bytes_received"]) == (sent, received):
            return rows[0]
        return None
    return wait_for(find, timeout, desc=f"open connection with {sent}/{received} bytes")


def test_listed_with_its_bytes_until_it_closes(cluster, capture, pods):
    with report_every(cluster, INTERVAL):
        _, addr, port = pods.byte_server(2)
        t0 = now_utc()
        client, info = pods.ctl_client(1, addr, port)
        client.command("round 100 2000")  # 8 header bytes + 100 up, 2000 down
        row = wait_open_bytes(cluster, info, port, 108, 2000)
        assert row["interface"] == IFACE
        assert (row["src_host"], row["dst_host"]) == (pod_ip4(1), addr), row
        assert row["src_port"] == info["lport"] and row["dst_port"] == port
        assert row["packets_sent"] >= 2 and row["packets_received"] >= 2, row
        slack = timedelta(seconds=1)
        assert t0 - slack <= row["start_time"] <= row["last_seen"] <= now_utc() + slack, row
        assert row["last_seen"] <= row["reported_at"] + slack, row
        attrs = row["attributes"]
        assert attrs["tcp.handshake_completed"] is True and "tcp.mid_stream" not in attrs, attrs
        assert attrs["tcp.handshake_rtt_us"] >= 0, attrs
        # No pod is known without the Kubernetes API: the names are NULL.
        assert row["src_pod"] is None and row["dst_pod"] is None, row
        # Open: no span yet.
        assert cluster.spans("src_port = %s AND dst_port = %s", (info["lport"], port)) == []

        # The next reports carry the bytes sent since.
        first = row
        client.command("round 1000 10")
        row = wait_open_bytes(cluster, info, port, 108 + 1008, 2010)
        assert row["reported_at"] > first["reported_at"], (first, row)
        assert row["start_time"] == first["start_time"], (first, row)
        assert row["last_seen"] > first["last_seen"], (first, row)

        client.command("close")
        spans = wait_span_for(cluster, info["laddr"], info["lport"], addr, port)
        assert len(spans) == 1, spans
        assert (spans[0]["bytes_sent"], spans[0]["bytes_received"]) == (1116, 2010), spans[0]
        assert spans[0]["start_time"] == row["start_time"], (spans[0], row)
        wait_for(lambda: open_rows(cluster, info, port) == [], 5,
                 desc="the closed connection's row to go")


def test_rows_go_when_the_report_is_off_or_the_capture_stops(cluster, capture, pods):
    _, addr, port = pods.byte_server(2)
    with report_every(cluster, INTERVAL):
        client, info = pods.ctl_client(1, addr, port)
        client.command("round 5 7")
        wait_open_bytes(cluster, info, port, 13, 7)

        # Turned off: the capture's rows go, though the connection is open.
        set_guc(cluster, "ebpf_capture.open_connections_interval", "0")
        wait_for(lambda: cluster.value(
            "SELECT count(*) FROM open_connections WHERE interface = %s", (IFACE,)) == 0, 10,
            desc="open_connections emptied when the report is off")
        assert client.alive()

        # On again: back, with what was sent meanwhile.
        set_guc(cluster, "ebpf_capture.open_connections_interval", INTERVAL)
        client.command("round 1 1")
        wait_open_bytes(cluster, info, port, 22, 8)

        # capture_stop reports the connection as a span, and its row goes.
        try:
            cluster.stop_capture()
            assert cluster.value(
                "SELECT count(*) FROM open_connections WHERE interface = %s", (IFACE,)) == 0
            spans = wait_span_for(cluster, info["laddr"], info["lport"], addr, port)
            assert len(spans) == 1, spans
            assert spans[0]["attributes"]["tcp.close_reason"] == "capture_stopped", spans[0]
            assert (spans[0]["bytes_sent"], spans[0]["bytes_received"]) == (22, 8), spans[0]
        finally:
            cluster.ensure_capture()
        client.command("close")


def test_rows_left_behind_go_when_a_capture_starts(cluster, capture):
    """Rows of the interface that no running worker wrote (a worker that died
    without its final report, or a row written by hand) are gone by the time
    a capture of that interface is running."""
    cluster.stop_capture()
    try:
        cluster.sql(
            "INSERT INTO open_connections (interface, start_time, last_seen, src_addr, dst_addr, "
            "src_port, dst_port, bytes_sent, bytes_received, packets_sent, packets_received, "
            "attributes) VALUES (%s, now(), now(), '10.0.0.1', '10.0.0.2', 1, 2, 0, 0, 0, 0, '{}'), "
            "(%s, now(), now(), '10.0.0.1', '10.0.0.2', 1, 2, 0, 0, 0, 0, '{}')",
            (IFACE, "not-" + IFACE))
    finally:
        cluster.ensure_capture()
    assert cluster.value("SELECT count(*) FROM open_connections WHERE interface = %s",
                         (IFACE,)) == 0
    # another interface's rows are not this capture's to remove
    assert cluster.value("SELECT count(*) FROM open_connections WHERE interface = %s",
                         ("not-" + IFACE,)) == 1
    cluster.sql("DELETE FROM open_connections WHERE interface = %s", ("not-" + IFACE,))
