"""How spans reach the table: straight through the access method of their
time partition (DirectInsert, routed by the worker), through INSERT when a
partition has something only the executor honours (a trigger, a column
added with a default), and either way with whole indexes and the right
rows."""

import contextlib

from conftest import now_utc, spans_by_connection, wait_for, wait_spans_for_port

# Connections per test: more than one buffer of rows is not needed here (the
# benchmark writes thousands per batch), but several batches are.
N = 24


def make_traffic(pods, n=N):
    """n connections through pod2's byte server; returns (port, connections)."""
    _server, addr, port = pods.byte_server(2)
    plan = [[i, 2 * i + 1] for i in range(n)]
    conns = pods.batch(1, addr, port, plan)
    assert len(conns) == n, conns
    return port, conns


def check_rows(cluster, port, conns):
    """Every connection has exactly one span with its byte counts."""
    rows = wait_spans_for_port(cluster, port, len(conns))
    pairs, unmade = spans_by_connection(conns, rows)
    assert not unmade, unmade
    for key, c, got in pairs:
        assert len(got) == 1, (key, got)
        assert (got[0]["bytes_sent"], got[0]["bytes_received"]) == (c["sent"], c["received"]), key
    return rows


def wal_position(cluster):
    return cluster.value("SELECT pg_current_wal_flush_lsn()::text")


def spans_heap_records(cluster, since):
    """WAL records since `since` that write heap pages of the spans table's
    partitions: {record type: count}. One row at a time is Heap INSERT,
    COPY-style buffers are Heap2 MULTI_INSERT."""
    cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    rows = cluster.sql(
        "WITH leaves AS (SELECT '%%/' || pg_relation_filenode(relid) || ' %%' AS pattern "
        "FROM pg_partition_tree('spans') WHERE isleaf) "
        "SELECT resource_manager || ' ' || split_part(record_type, '+', 1) AS kind, count(*) AS n "
        "FROM pg_get_wal_records_info(%s::pg_lsn, pg_current_wal_flush_lsn()) "
        "WHERE resource_manager IN ('Heap', 'Heap2') "
        "AND block_ref LIKE ANY (SELECT pattern FROM leaves) GROUP BY 1",
        (since,))
    return {r["kind"]: r["n"] for r in rows}


def log_lines_since(cluster, start, text):
    return [line for line in cluster.log_text(start).splitlines() if text in line]


def check_btrees(cluster, index):
    """amcheck on the index of every partition of the partitioned index."""
    cluster.sql("CREATE EXTENSION IF NOT EXISTS amcheck")
    checked = cluster.value("SELECT count(bt_index_check(relid, true)) "
                            "FROM pg_partition_tree(%s::regclass) WHERE isleaf", (index,))
    assert checked >= 2, f"{index}: {checked} partitions"


def check_indexes_whole(cluster, rows):
    """Both b-trees hold every heap row (amcheck), and the trace id index
    finds every span by its trace id."""
    check_btrees(cluster, "spans_start_time_idx")
    check_btrees(cluster, "spans_trace_id_idx")
    with cluster.connect() as conn, conn.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute("SET enable_bitmapscan = off")
        cur.execute("EXPLAIN SELECT span_id FROM spans WHERE trace_id = 'x'")
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "spans_p" in plan and "trace_id_idx" in plan, plan
        for r in rows:
            cur.execute("SELECT span_id FROM spans WHERE trace_id = %s", (r["trace_id"],))
            assert [x[0] for x in cur.fetchall()] == [r["span_id"]], r["trace_id"]


def test_spans_go_straight_into_the_table_with_whole_indexes(cluster, capture, pods):
    since = wal_position(cluster)
    port, conns = make_traffic(pods)
    rows = check_rows(cluster, port, conns)
    records = spans_heap_records(cluster, since)
    assert records.get("Heap2 MULTI_INSERT", 0) > 0, records
    assert records.get("Heap INSERT", 0) == 0, records
    check_indexes_whole(cluster, rows)


@contextlib.contextmanager
def spans_trigger(cluster):
    """An AFTER INSERT row trigger on spans that copies each span id into
    spans_seen; removed on exit."""
    cluster.sql("CREATE TABLE spans_seen (span_id text)")
    cluster.sql("CREATE FUNCTION note_span() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO spans_seen VALUES (NEW.span_id); RETURN NULL; END $$")
    cluster.sql("CREATE TRIGGER note_span AFTER INSERT ON spans "
                "FOR EACH ROW EXECUTE FUNCTION note_span()")
    try:
        yield
    finally:
        cluster.sql("DROP TRIGGER IF EXISTS note_span ON spans")
        cluster.sql("DROP FUNCTION IF EXISTS note_span()")
        cluster.sql("DROP TABLE IF EXISTS spans_seen")


def test_a_trigger_on_spans_sends_them_through_insert(cluster, capture, pods):
    log_start = cluster.log_size()
    with spans_trigger(cluster):
        since = wal_position(cluster)
        port, conns = make_traffic(pods)
        rows = check_rows(cluster, port, conns)
        seen = {r["span_id"] for r in cluster.sql("SELECT span_id FROM spans_seen")}
        assert {r["span_id"] for r in rows} <= seen
        records = spans_heap_records(cluster, since)
        assert records.get("Heap INSERT", 0) >= len(conns), records
        assert records.get("Heap2 MULTI_INSERT", 0) == 0, records
        wait_for(lambda: log_lines_since(cluster, log_start, "because it has triggers"), 10,
                 desc="the log saying why spans go through INSERT")
    port, conns = make_traffic(pods)
    check_rows(cluster, port, conns)
    wait_for(lambda: log_lines_since(cluster, log_start, "spans are written directly again"), 10,
             desc="the log saying spans are written directly again")


def test_a_column_added_with_a_default_gets_it(cluster, capture, pods):
    cluster.sql("ALTER TABLE spans ADD COLUMN node_label text NOT NULL DEFAULT 'node-a'")
    try:
        port, conns = make_traffic(pods)
        rows = check_rows(cluster, port, conns)
        assert {r["node_label"] for r in rows} == {"node-a"}
    finally:
        cluster.sql("ALTER TABLE spans DROP COLUMN IF EXISTS node_label")
    # a dropped column stays in the table's row type: rows still go in directly
    since = wal_position(cluster)
    port, conns = make_traffic(pods)
    rows = check_rows(cluster, port, conns)
    assert spans_heap_records(cluster, since).get("Heap2 MULTI_INSERT", 0) > 0
    check_indexes_whole(cluster, rows)
    # and so does a plain nullable column: a new row type, new slots, NULL in it
    cluster.sql("ALTER TABLE spans ADD COLUMN note text")
    try:
        since = wal_position(cluster)
        port, conns = make_traffic(pods)
        rows = check_rows(cluster, port, conns)
        assert {r["note"] for r in rows} == {None}
        assert spans_heap_records(cluster, since).get("Heap2 MULTI_INSERT", 0) > 0
    finally:
        cluster.sql("ALTER TABLE spans DROP COLUMN IF EXISTS note")


def test_an_index_a_user_adds_is_kept_whole(cluster, capture, pods):
    """An expression index with a predicate, added by a user, gets its
    entries from the direct path too (evaluated per row)."""
    cluster.sql("CREATE INDEX spans_user_idx ON spans ((dst_port + src_port)) "
                "WHERE protocol = 'tcp' AND bytes_sent > 3")
    try:
        since = wal_position(cluster)
        port, conns = make_traffic(pods)
        check_rows(cluster, port, conns)
        assert spans_heap_records(cluster, since).get("Heap2 MULTI_INSERT", 0) > 0
        check_btrees(cluster, "spans_user_idx")
        with cluster.connect() as conn, conn.cursor() as cur:
            cur.execute("SET enable_seqscan = off")
            cur.execute("SET enable_bitmapscan = off")
            # other tests' spans may share a port sum: count this test's only
            q = ("SELECT count(*) FROM spans WHERE dst_port + src_port = ANY(%s) "
                 "AND protocol = 'tcp' AND bytes_sent > 3 AND dst_port = %s")
            sums = [c["rport"] + c["lport"] for c in conns]
            cur.execute("EXPLAIN " + q, (sums, port))
            plan = "\n".join(r[0] for r in cur.fetchall())
            assert "dst_port + src_port" in plan and "Index" in plan, plan
            cur.execute(q, (sums, port))
            assert cur.fetchone()[0] == sum(1 for c in conns if c["sent"] > 3)
    finally:
        cluster.sql("DROP INDEX IF EXISTS spans_user_idx")


def test_a_batch_the_table_refuses_is_counted_and_the_worker_goes_on(cluster, capture, pods):
    """A unique index a user adds, then violates: the direct path's batch
    fails inside the transaction, is logged and counted in spans_dropped,
    and the next batches go in; the worker neither dies nor restarts."""
    before = cluster.status()
    log_start = cluster.log_size()
    t0 = now_utc()
    _server, addr, port = pods.byte_server(2)
    # A unique index on a partitioned table must hold its partition key: the
    # index goes on each partition these spans may land in.
    leaves = [r["p"] for r in cluster.sql(
        "SELECT partition::text AS p FROM storage_partitions WHERE \"table\" = 'spans' "
        "AND NOT is_default AND range_end > now() - interval '1 minute' "
        "AND range_start < now() + interval '2 minutes'")]
    for i, leaf in enumerate(leaves):
        cluster.sql(f"CREATE UNIQUE INDEX spans_one_per_port_{i} ON {leaf} (dst_port) "
                    f"WHERE dst_port = {port}")
    try:
        conns = pods.batch(1, addr, port, [[1, 1]] * 6)
        assert len(conns) == 6, conns
        wait_for(lambda: cluster.status()["spans_dropped"] > before["spans_dropped"], 15,
                 desc="spans_dropped to count the refused batch")
        wait_for(lambda: log_lines_since(cluster, log_start, "spans_one_per_port"), 10,
                 desc="the log naming the violated index")
    finally:
        for i in range(len(leaves)):
            cluster.sql(f"DROP INDEX IF EXISTS spans_one_per_port_{i}")
    port2, conns2 = make_traffic(pods)
    rows = check_rows(cluster, port2, conns2)
    check_indexes_whole(cluster, rows)
    # Nothing of the refused batch came back with a later one: at most one of
    # the six got in (a first batch may have held just one), and no span twice.
    assert cluster.value("SELECT count(*) FROM spans WHERE dst_port = %s", (port,)) <= 1
    assert cluster.value("SELECT count(*) - count(DISTINCT span_id) FROM spans "
                         "WHERE start_time >= %s", (t0,)) == 0
    after = cluster.status()
    assert after["pid"] == before["pid"] and after["state"] == "running", (before, after)
    assert not cluster.unexpected_crashes()


def test_no_captured_span_id_repeats(cluster, capture):
    """Span ids are unique among the spans the capture wrote. This runs last
    in the suite, so it sees every test's spans: a port reused within one
    drain once gave its new connection the old connection's id (found by
    the full suite: seven ids, each on two or three reset connections of one
    four-tuple opened within 40 microseconds)."""
    rows = cluster.sql("SELECT span_id, count(*) AS n, array_agg(attributes->>'tcp.close_reason') AS why "
                       "FROM spans WHERE interface = 'cni0' GROUP BY span_id HAVING count(*) > 1 LIMIT 5")
    assert not rows, rows
