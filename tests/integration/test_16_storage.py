"""The store over time: spans written straight into time partitions, the
launcher making partitions ahead and dropping whole ones for the retention
and the size cap, late spans, a drop that must not make inserts wait, and
spans under a parent table of the user's."""

import contextlib
import time
from datetime import timedelta

import pytest

from conftest import (IFACE, check_span_common, now_utc, set_guc, spans_by_connection, wait_for,
                      wait_spans_for_port)

MINUTE = "1min"


@contextlib.contextmanager
def settings(cluster, **values):
    """Sets ebpf_capture.<name> = value for the block (then resets them)."""
    names = [f"ebpf_capture.{k}" for k in values]
    try:
        for name, v in zip(names, values.values()):
            set_guc(cluster, name, v)
        for name, v in zip(names, values.values()):
            wait_for(lambda n=name: cluster.value(f"SHOW {n}") != "", 5, desc=f"{name} set")
        yield
    finally:
        for name in names:
            set_guc(cluster, name, None)


def status(cluster):
    return cluster.sql("SELECT * FROM storage_status()")[0]


def wait_maintenance(cluster, timeout=30):
    """Waits for a full maintenance pass that started after now."""
    t0 = cluster.value("SELECT now()")
    return wait_for(lambda: (status(cluster)["last_run"] or t0) > t0 and status(cluster),
                    timeout, desc="a storage maintenance pass")


def partitions(cluster, table="spans"):
    return cluster.sql(
        "SELECT partition::text AS name, range_start, range_end, is_default, bytes "
        "FROM storage_partitions WHERE \"table\" = %s ORDER BY range_start NULLS LAST", (table,))


def make_partition(cluster, at, step="1 minute", table="spans"):
    """The partition of `table` holding time `at`, made if there is none."""
    cluster.sql(f"SELECT _storage_make_partition('{table}', %s, %s::interval)", (at, step))
    return cluster.value(
        "SELECT partition::text FROM storage_partitions WHERE \"table\" = %s AND NOT is_default "
        "AND range_start <= %s AND %s < range_end", (table, at, at))


def insert_span(cluster, start, end=None, port=1):
    """A span written with plain SQL (routed by PostgreSQL)."""
    end = end or start
    cluster.sql(
        "INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, "
        "protocol, interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, "
        "bytes_received) VALUES (md5(random()::text), substr(md5(random()::text), 1, 16), "
        "'test', 'CLIENT', %s, %s, 'UNSET', 'tcp', 'test0', '10.1.1.1', '10.1.1.2', %s, 80, 0, 0)",
        (start, end, port))


def make_traffic(pods, n=12):
    _server, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, [[i, i + 1] for i in range(n)])
    assert len(conns) == n
    return port, conns


@pytest.fixture
def minute_partitions(cluster):
    """One-minute spans partitions (tests/lib/pgcluster.sh sets the interval),
    made ahead by the launcher."""
    assert cluster.value("SHOW ebpf_capture.partition_interval") == MINUTE
    wait_for(lambda: sum(1 for p in partitions(cluster)
                         if not p["is_default"] and p["range_end"] - p["range_start"]
                         == timedelta(minutes=1) and p["range_start"] > now_utc()) >= 2,
             30, desc="one-minute partitions made ahead")


def test_spans_go_straight_into_their_time_partition(cluster, capture, pods, minute_partitions):
    log_start = cluster.log_size()
    t0 = now_utc()
    port, conns = make_traffic(pods)
    rows = wait_spans_for_port(cluster, port, len(conns))
    t1 = now_utc()
    pairs, unmade = spans_by_connection(conns, rows)
    assert not unmade
    for span in rows:
        check_span_common(span, t0, t1)
    placed = cluster.sql(
        "SELECT s.start_time, p.partition::text AS part, p.range_start, p.range_end, p.is_default "
        "FROM spans s JOIN storage_partitions p ON p.partition = s.tableoid "
        "WHERE s.dst_port = %s", (port,))
    assert len(placed) == len(conns)
    for r in placed:
        assert not r["is_default"], r
        assert r["range_start"] <= r["start_time"] < r["range_end"], r
    assert "written through INSERT" not in cluster.log_text(log_start)


def test_retention_drops_whole_old_partitions(cluster, minute_partitions):
    before = status(cluster)
    old = make_partition(cluster, now_utc() - timedelta(minutes=40))
    kept = make_partition(cluster, now_utc() - timedelta(minutes=5))
    insert_span(cluster, now_utc() - timedelta(minutes=40))
    insert_span(cluster, now_utc() - timedelta(minutes=5))
    old_rollup = make_partition(cluster, now_utc() - timedelta(days=3), "1 day",
                                "service_map_minutes")
    log_start = cluster.log_size()
    with settings(cluster, retention="20min", rollup_retention="2d"):
        wait_for(lambda: old not in [p["name"] for p in partitions(cluster)], 30,
                 desc=f"{old} dropped")
        wait_for(lambda: old_rollup not in [p["name"] for p in
                                            partitions(cluster, "service_map_minutes")], 30,
                 desc=f"{old_rollup} dropped")
        names = [p["name"] for p in partitions(cluster)]
        assert kept in names
        assert cluster.value("SELECT count(*) FROM spans WHERE start_time < now() - "
                             "interval '20 minutes'") == 0
        after = status(cluster)
    assert after["partitions_dropped"] >= before["partitions_dropped"] + 2
    log = cluster.log_text(log_start)
    assert f"dropped partition {old} " in log.replace('"', "") or f"dropped partition public.{old}" in log
    assert "older than ebpf_capture.retention" in log
    assert "older than ebpf_capture.rollup_retention" in log
    # The current partition and those ahead are never dropped.
    now = now_utc()
    assert any(p["range_start"] <= now < p["range_end"] for p in partitions(cluster)
               if not p["is_default"])
    cluster.sql(f"DROP TABLE IF EXISTS {kept}")


def test_late_spans_are_kept_for_the_retention_after_they_end(cluster, minute_partitions):
    oldest = min(p["range_start"] for p in partitions(cluster) if not p["is_default"])
    # Older than every time partition: they belong in spans_late.
    insert_span(cluster, oldest - timedelta(hours=30), oldest - timedelta(hours=29), port=7001)
    insert_span(cluster, oldest - timedelta(hours=30), now_utc(), port=7002)
    where = cluster.sql("SELECT src_port, tableoid::regclass::text AS t FROM spans "
                        "WHERE src_port IN (7001, 7002) ORDER BY 1")
    assert [r["t"] for r in where] == ["spans_late", "spans_late"], where
    with settings(cluster, retention="2h"):
        wait_for(lambda: cluster.value("SELECT count(*) FROM spans WHERE src_port = 7001") == 0,
                 30, desc="the late span that ended 29 h ago deleted")
        wait_maintenance(cluster)
        assert cluster.value("SELECT count(*) FROM spans WHERE src_port = 7002") == 1
    assert status(cluster)["late_rows_deleted"] >= 1
    cluster.sql("DELETE FROM spans WHERE src_port = 7002")


def test_size_cap_drops_the_oldest_partitions_first(cluster, minute_partitions):
    made = [make_partition(cluster, now_utc() - timedelta(minutes=m)) for m in (50, 40, 30)]
    for m in (50, 40, 30):
        cluster.sql(
            "INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, "
            "protocol, interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, "
            "bytes_received, attributes) "
            "SELECT md5(i::text), substr(md5(i::text), 1, 16), 'filler', 'CLIENT', t, t, "
            "'UNSET', 'tcp', 'test0', '10.1.1.1', '10.1.1.2', i, 80, 0, 0, "
            "jsonb_build_object('pad', repeat('x', 400)) "
            "FROM generate_series(1, 6000) i, (SELECT now() - %s * interval '1 minute' AS t) x",
            (m,))
    sizes = {p["name"]: p["bytes"] for p in partitions(cluster)}
    others = sum(b for n, b in sizes.items() if n not in made)
    # Room for everything but the two oldest of the three, and for the empty
    # partitions the launcher makes ahead meanwhile.
    cap_kb = (others + sizes[made[2]] + sizes[made[2]] // 2) // 1024
    with settings(cluster, max_spans_size=f"{cap_kb}kB"):
        wait_for(lambda: made[1] not in [p["name"] for p in partitions(cluster)], 30,
                 desc="the two oldest partitions dropped")
        names = [p["name"] for p in partitions(cluster)]
        assert made[0] not in names and made[1] not in names
        assert made[2] in names, "the newest of the three fits under the cap"
    cluster.sql(f"DROP TABLE IF EXISTS {made[2]}")


def test_a_waiting_drop_never_holds_up_the_inserts(cluster, capture, pods, minute_partitions):
    old = make_partition(cluster, now_utc() - timedelta(minutes=45))
    reader = cluster.connect()
    reader.autocommit = False
    try:
        with reader.cursor() as cur:
            # An open transaction that has read spans: the drop cannot get its lock.
            cur.execute("SELECT count(*) FROM spans")
            with settings(cluster, retention="30min"):
                wait_for(lambda: "lock timeout" in (status(cluster)["last_error"] or ""), 30,
                         desc="the drop giving up on its lock")
                # Inserts go on meanwhile, as fast as ever.
                for _ in range(3):
                    t0 = time.monotonic()
                    port, conns = make_traffic(pods, 4)
                    wait_spans_for_port(cluster, port, len(conns), timeout=5)
                    assert time.monotonic() - t0 < 5
                assert old in [p["name"] for p in partitions(cluster)]
                reader.rollback()
                wait_for(lambda: old not in [p["name"] for p in partitions(cluster)], 30,
                         desc="the drop done once the reader is gone")
    finally:
        reader.close()


def test_spans_under_a_parent_of_the_users_keep_its_constraint(cluster, capture, pods):
    """Attached under a user's partitioned table, spans must honour that
    parent's range: written directly, rows would land outside it."""
    cutoff = cluster.value("SELECT now()")
    cluster.sql("CREATE TABLE user_spans (LIKE spans) PARTITION BY RANGE (start_time)")
    cluster.sql("ALTER TABLE user_spans ATTACH PARTITION spans "
                "FOR VALUES FROM (MINVALUE) TO (%s)", (cutoff,))
    log_start = cluster.log_size()
    dropped0 = cluster.status()["spans_dropped"]
    try:
        port, conns = make_traffic(pods, 6)
        wait_for(lambda: cluster.status()["spans_dropped"] >= dropped0 + len(conns), 15,
                 desc="the refused spans counted as dropped")
        assert cluster.value("SELECT count(*) FROM spans WHERE dst_port = %s", (port,)) == 0
        assert cluster.value("SELECT count(*) FROM spans WHERE start_time >= %s", (cutoff,)) == 0
        assert "violates partition constraint" in cluster.log_text(log_start)
    finally:
        cluster.sql("ALTER TABLE user_spans DETACH PARTITION spans")
        cluster.sql("DROP TABLE user_spans")
    port, conns = make_traffic(pods, 4)
    wait_spans_for_port(cluster, port, len(conns))
