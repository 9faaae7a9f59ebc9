"""A full disk is survived: a cluster whose data directory is on a small
file system of its own (tmpfs), filled by a ballast file and by the capture's
own spans. The launcher first drops the oldest spans partitions, only as many
as it must; with nothing left to drop the capture stops writing (counted,
shown, logged once) while it keeps reading the kernel's ring buffer; it
resumes by itself when space returns; the server never PANICs and every
committed row stays intact."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import (IFACE, LIB, MAIN_PORT, Cluster, now_utc, run, wait_for, wait_spans_for_port)

PORT = MAIN_PORT - 3
FS_SIZE_MB = 320
MIN_FREE_MB = 96
MiB = 1 << 20


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def small_filesystem():
    mount = Path(tempfile.mkdtemp(prefix="ebpfc-disk-"))
    run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE_MB}m,mode=0755", "tmpfs", str(mount)])
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


@contextlib.contextmanager
def cluster_on(mount):
    directory = mount / "pg"
    env = dict(os.environ)
    env["EBPFC_PG_EXTRA_CONF"] = "\n".join([
        f"ebpf_capture.min_free_disk = '{MIN_FREE_MB}MB'",
        "max_wal_size = '48MB'",
        "min_wal_size = '32MB'",
        "checkpoint_timeout = '30s'",
        "ebpf_capture.flush_interval = '50ms'",
    ])
    run(["bash", str(LIB / "pgcluster.sh"), "start", str(directory), "--port", str(PORT)], env=env)
    c = Cluster(directory, PORT)
    try:
        yield c
    finally:
        run(["bash", str(LIB / "pgcluster.sh"), "stop", str(directory)], check=False)


def ballast(path, size):
    """Makes the file `path` exactly `size` bytes (allocated)."""
    with open(path, "wb") as fh:
        fh.truncate(0)
    if size > 0:
        run(["fallocate", "-l", str(size), str(path)])


def storage(c):
    return c.sql("SELECT * FROM storage_status()")[0]


def old_partition_with_rows(c, minutes_ago, megabytes):
    at = now_utc() - timedelta(minutes=minutes_ago)
    c.sql("SELECT _storage_make_partition('spans', %s, '1 minute')", (at,))
    c.sql(
        "INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, protocol, "
        "interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, bytes_received, attributes) "
        "SELECT md5(i::text), substr(md5(i::text), 1, 16), 'filler', 'CLIENT', %s, %s, 'UNSET', "
        "'tcp', 'test0', '10.1.1.1', '10.1.1.2', i, 9, 0, 0, "
        "jsonb_build_object('pad', repeat(md5(i::text), 30)) FROM generate_series(1, %s) i",
        (at, at, megabytes * 700))
    return c.value("SELECT partition::text FROM storage_partitions WHERE \"table\" = 'spans' "
                   "AND NOT is_default AND range_start <= %s AND %s < range_end", (at, at))


def partition_names(c):
    return [r["p"] for r in c.sql("SELECT partition::text AS p FROM storage_partitions")]


def traffic(pods, n):
    _server, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, [[i % 50, 1] for i in range(n)], timeout=300)
    assert len(conns) == n
    return port, conns


def test_a_full_disk_is_survived(topology, pods):
    with small_filesystem() as mount, cluster_on(mount) as c:
        c.sql("CREATE EXTENSION ebpf_capture")
        c.sql("SELECT capture_start(%s)", (IFACE,))
        c.wait_state("running")
        threshold = MIN_FREE_MB * MiB
        wait_for(lambda: storage(c)["min_free_disk_bytes"] == threshold, 10,
                 desc="the disk guard's threshold published")

        # Two old partitions of about 20 MB each, and spans of the capture.
        older = old_partition_with_rows(c, 30, 20)
        newer = old_partition_with_rows(c, 20, 20)
        port1, conns1 = traffic(pods, 200)
        wait_spans_for_port(c, port1, len(conns1))
        c.sql("CHECKPOINT")

        # Short of space by a few MB: the oldest partition goes, and only it.
        weight = mount / "ballast"
        ballast(weight, free_bytes(mount) - (threshold - 6 * MiB))
        wait_for(lambda: older not in partition_names(c), 15, desc=f"{older} dropped")
        time.sleep(3)
        assert newer in partition_names(c), "one partition freed enough"
        st = storage(c)
        assert not st["writes_paused"] and free_bytes(mount) >= threshold, st
        assert c.status()["state"] == "running"

        assert len(c.spans("dst_port = %s", (port1,))) == len(conns1)

        # Short of space with only the newest data left: after the last old
        # partition (and the minutes past) the capture stops writing, and the
        # server lives on.
        log_start = c.log_size()
        ballast(weight, os.path.getsize(weight) + free_bytes(mount) - (threshold - 40 * MiB))
        wait_for(lambda: newer not in partition_names(c), 15, desc=f"{newer} dropped")
        wait_for(lambda: storage(c)["writes_paused"], 15, desc="writes paused")
        wait_for(lambda: c.status()["state"] == "paused", 10, desc="the capture paused")
        assert "min_free_disk" in (c.status()["last_error"] or "")
        written = c.value("SELECT count(*) FROM spans")
        dropped0 = c.status()["spans_dropped"]
        port2, conns2 = traffic(pods, 300)
        wait_for(lambda: c.status()["spans_dropped"] >= dropped0 + len(conns2), 15,
                 desc="the spans of the paused time counted as dropped")
        st = c.status()
        assert st["events_dropped"] == 0 and st["kernel_drops"] == 0, st
        assert c.value("SELECT count(*) FROM spans WHERE dst_port = %s", (port2,)) == 0
        assert c.value("SELECT count(*) FROM spans") <= written
        log = c.log_text(log_start)
        assert log.count("stops writing spans") == 1, log
        assert "PANIC" not in c.log_text()

        # Space returns: writing resumes by itself.
        ballast(weight, 0)
        wait_for(lambda: c.status()["state"] == "running", 15, desc="the capture running again")
        port3, conns3 = traffic(pods, 50)
        wait_spans_for_port(c, port3, len(conns3))
        assert "writes spans again" in c.log_text(log_start)

        # Every committed row is intact: the indexes of every partition hold
        # every row of its heap.
        c.sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        c.sql("SELECT bt_index_check(i.indexrelid, true) FROM pg_inherits h "
              "JOIN pg_index i ON i.indrelid = h.inhrelid "
              "WHERE h.inhparent = 'spans'::regclass")
        assert "PANIC" not in c.log_text()
        assert not c.unexpected_crashes()
