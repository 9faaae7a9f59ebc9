"""ALTER EXTENSION ebpf_capture UPDATE from 0.1, with a capture enabled and
captured spans in the 0.1 tables: every row stays (the 0.1 table becomes the
oldest partition of the new spans, its indexes part of the new ones), the
rollup keeps its rows, and the capture - whose worker, of the newer library,
waited for the update - starts writing into time partitions.

The 0.1 library is not at hand, so the spans of the 0.1 tables are spans
this library captured, copied there."""

import contextlib

from conftest import IFACE, wait_for, wait_spans_for_port


def traffic(pods, n=20):
    _server, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, [[i, i + 3] for i in range(n)])
    assert len(conns) == n
    return port, conns


def test_update_from_0_1_keeps_every_row_and_the_capture(cluster, pods):
    cluster.ensure_capture()
    port1, conns1 = traffic(pods)
    wait_spans_for_port(cluster, port1, len(conns1))
    cluster.stop_capture()
    cluster.sql("DROP TABLE IF EXISTS upgrade_spans")
    cluster.sql("CREATE TABLE upgrade_spans AS SELECT * FROM spans")
    cluster.sql("DROP EXTENSION ebpf_capture")
    log_start = cluster.log_size()
    try:
        cluster.sql("CREATE EXTENSION ebpf_capture VERSION '0.1'")
        assert cluster.value("SELECT relkind FROM pg_class WHERE oid = 'spans'::regclass") == "r"
        cluster.sql("INSERT INTO spans SELECT * FROM upgrade_spans")
        cluster.sql("SELECT service_map_refresh(min(start_time), max(start_time) + "
                    "interval '1 minute') FROM spans")
        # A capture enabled on 0.1: the newer library's worker waits for the update.
        cluster.sql("SELECT capture_start(%s)", (IFACE,))
        wait_for(lambda: "waiting for ALTER EXTENSION ebpf_capture UPDATE"
                 in (cluster.status()["last_error"] or ""), 15,
                 desc="the worker waiting for the update")
        wait_for(lambda: "storage maintenance waits for ALTER EXTENSION"
                 in cluster.log_text(log_start), 15, desc="the launcher waiting for the update")
        before = cluster.sql("SELECT count(*) AS n, sum(bytes_sent) AS sent FROM spans")[0]
        # every row copied, and the capture on 0.1 writes nothing
        assert before["n"] == cluster.value("SELECT count(*) FROM upgrade_spans") >= len(conns1)
        rollup = cluster.value("SELECT sum(spans) FROM service_map_minutes")
        assert rollup > 0

        cluster.sql("ALTER EXTENSION ebpf_capture UPDATE")

        assert cluster.value("SELECT extversion FROM pg_extension "
                             "WHERE extname = 'ebpf_capture'") == "0.2"
        assert cluster.value("SELECT relkind FROM pg_class WHERE oid = 'spans'::regclass") == "p"
        assert cluster.sql("SELECT count(*) AS n, sum(bytes_sent) AS sent FROM spans")[0] == before
        assert cluster.value("SELECT sum(spans) FROM service_map_minutes") == rollup
        # The 0.1 table is the oldest partition, from MINVALUE, no longer a
        # member of the extension (retention drops it like any other).
        legacy = cluster.sql("SELECT partition::text AS p, range_start = '-infinity' AS from_min, "
                             "range_end FROM storage_partitions "
                             "WHERE partition = 'spans_0_1'::regclass")
        assert len(legacy) == 1 and legacy[0]["from_min"], legacy
        assert cluster.value("SELECT count(*) FROM spans_0_1") == before["n"]
        assert cluster.value("SELECT count(*) FROM pg_depend d JOIN pg_extension e "
                             "ON d.refobjid = e.oid WHERE e.extname = 'ebpf_capture' "
                             "AND d.objid = 'spans_0_1'::regclass") == 0
        # Its indexes became partitions of the new indexes, and hold every row.
        attached = cluster.sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent IN ('spans_start_time_idx'::regclass, "
            "'spans_trace_id_idx'::regclass) AND c.relname LIKE 'spans_0_1%' ORDER BY 1")
        assert [r["relname"] for r in attached] == ["spans_0_1_start_time_idx",
                                                   "spans_0_1_trace_id_idx"]
        cluster.sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        cluster.sql("SELECT bt_index_check(c.oid, true) FROM pg_class c "
                    "WHERE c.relname IN ('spans_0_1_start_time_idx', 'spans_0_1_trace_id_idx')")
        for r in cluster.sql("SELECT trace_id FROM spans WHERE dst_port = %s LIMIT 3", (port1,)):
            assert cluster.value("SELECT count(*) FROM spans WHERE trace_id = %s",
                                 (r["trace_id"],)) == 1

        # The capture that waited runs now, and its spans go into time partitions.
        cluster.wait_state("running")
        port2, conns2 = traffic(pods)
        rows = wait_spans_for_port(cluster, port2, len(conns2))
        assert len(rows) == len(conns2)
        parts = cluster.sql("SELECT DISTINCT tableoid::regclass::text AS t FROM spans "
                            "WHERE dst_port = %s", (port2,))
        assert all(p["t"].startswith("spans_p") for p in parts), parts
        assert cluster.value("SELECT count(*) FROM spans WHERE dst_port IN (%s, %s)",
                             (port1, port2)) == len(conns1) + len(conns2)
        # The service map reads both.
        assert cluster.sql("SELECT * FROM service_map_edges('1 hour')")
        assert cluster.sql("SELECT * FROM storage_status()")
    finally:
        # Leave a current extension behind for the tests after this one.
        cluster.sql("DROP TABLE IF EXISTS upgrade_spans")
        with contextlib.suppress(Exception):
            cluster.sql("SELECT capture_stop(%s)", (IFACE,))
            cluster.wait_state("stopped")
        cluster.sql("DROP EXTENSION IF EXISTS ebpf_capture")
        cluster.sql("CREATE EXTENSION ebpf_capture")
