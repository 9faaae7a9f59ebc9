"""Hardening: the worker never runs a database owner's code as a superuser,
no C++ exception reaches C code, a stop writes everything, a lock held on
pods or the rollup never holds up the spans, and dropping what the capture
writes into (spans, the extension, the database) is logged clearly, without
a restart loop."""

import contextlib
import time

import pytest

from conftest import (IFACE, MAIN_PORT, extra_cluster, set_guc, wait_for, wait_spans_for_port)


def traffic(pods, n=10, plan=None):
    _server, addr, port = pods.byte_server(2)
    conns = pods.batch(1, addr, port, plan or [[i, i + 1] for i in range(n)])
    return port, conns


# ----------------------------------------------------------------------------
# 1. search_path


@contextlib.contextmanager
def database_owner(cluster):
    """Makes a non-superuser the owner of the capture database (postgres):
    it may then create objects in schema public, which is on every default
    search_path."""
    cluster.sql("CREATE ROLE regress_owner LOGIN")
    cluster.sql("ALTER DATABASE postgres OWNER TO regress_owner")
    try:
        yield "regress_owner"
    finally:
        cluster.sql("ALTER DATABASE postgres OWNER TO postgres")
        cluster.sql("DROP OWNED BY regress_owner CASCADE")
        cluster.sql("DROP ROLE regress_owner")


def as_owner(cluster, statement):
    conn = cluster.connect(user="regress_owner")
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


NOTE = ("INSERT INTO public.pwned VALUES (current_user, current_setting('is_superuser'), "
        "'{what}')")


def test_a_database_owners_functions_never_run_as_superuser(cluster, capture, pods):
    with database_owner(cluster):
        as_owner(cluster, "CREATE TABLE public.pwned (who text, su text, via text)")
        # A better match than pg_catalog.unnest(anyarray) for the worker's
        # arrays, and than the built-in ones the service map's SQL calls.
        for arg in ("text[]", "smallint[]", "bigint[]", "inet[]", "timestamptz[]"):
            as_owner(cluster, f"""
                CREATE FUNCTION public.unnest(a {arg}) RETURNS SETOF {arg[:-2]}
                LANGUAGE plpgsql AS $$ BEGIN {NOTE.format(what='unnest')};
                RETURN QUERY SELECT x FROM pg_catalog.unnest(a::anyarray) x; END $$""")
        # An operator that is an exact match where the built-in one needs a
        # cast: bigint / double precision (the map's rates).
        as_owner(cluster, f"""
            CREATE FUNCTION public.evil_div(a bigint, b double precision) RETURNS double precision
            LANGUAGE plpgsql AS $$ BEGIN {NOTE.format(what='operator')};
            RETURN a::float8 / b; END $$""")
        as_owner(cluster, "CREATE OPERATOR public./ (LEFTARG = bigint, "
                          "RIGHTARG = double precision, FUNCTION = public.evil_div)")
        as_owner(cluster, f"""
            CREATE FUNCTION public.array_agg(x smallint) RETURNS smallint[]
            LANGUAGE plpgsql AS $$ BEGIN {NOTE.format(what='array_agg')};
            RETURN ARRAY[x]; END $$""")
        # The capture writes spans, pods, the rollup; a superuser reads the map.
        for _ in range(2):
            port, conns = traffic(pods, 12)
            wait_spans_for_port(cluster, port, len(conns))
        time.sleep(1.5)
        cluster.sql("SELECT * FROM service_map_edges('1 hour')")
        cluster.sql("SELECT * FROM service_map_nodes('1 hour')")
        cluster.sql("SELECT service_map_dot('1 hour')")
        cluster.sql("SELECT * FROM capture_status()")
        cluster.sql("SELECT * FROM storage_status()")
        pwned = cluster.sql("SELECT * FROM public.pwned")
        assert pwned == [], pwned


# ----------------------------------------------------------------------------
# 2. C++ exceptions


@pytest.mark.parametrize("point,trigger", [
    ("worker_start", "restart"),
    ("flush", "traffic"),
    ("sighup", "reload"),
    ("ring_buffer_callback", "traffic"),
    ("libbpf_print", "restart"),
])
def test_a_cpp_exception_ends_the_worker_with_an_error_not_an_abort(cluster, pods, point,
                                                                    trigger):
    cluster.ensure_capture()
    log_start = cluster.log_size()
    try:
        if trigger == "restart":
            cluster.stop_capture()
        set_guc(cluster, "ebpf_capture.fault_injection", point)
        if trigger == "restart":
            cluster.sql("SELECT capture_start(%s)", (IFACE,))
        elif trigger == "traffic":
            traffic(pods, 4)
        if point == "libbpf_print":
            # Nothing to report from there: the line is lost, the load goes on.
            cluster.wait_state("running")
        else:
            wait_for(lambda: "out of memory" in cluster.log_text(log_start), 20,
                     desc=f"the worker's error at {point}")
            log = cluster.log_text(log_start)
            assert "FATAL:  ebpf_capture: capture on \"cni0\" failed" in log, log
    finally:
        set_guc(cluster, "ebpf_capture.fault_injection", None)
    st = cluster.wait_state("running", timeout=60)
    port, conns = traffic(pods, 4)
    wait_spans_for_port(cluster, port, len(conns))
    log = cluster.log_text(log_start)
    assert "terminated by signal" not in log, log
    assert "server process" not in log or "was terminated" not in log
    assert st["state"] == "running"


# ----------------------------------------------------------------------------
# 4. nothing lost on shutdown, locks never stall the capture


def test_a_fast_shutdown_during_a_slow_flush_writes_everything(cluster, pods):
    """SIGTERM (pg_ctl stop -m fast) arrives while a trigger slows every
    insert: the worker still writes the spans it holds, and the connections
    still open become capture_stopped spans, before it exits."""
    cluster.ensure_capture()
    cluster.sql("CREATE FUNCTION slow_span() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$")
    cluster.sql("CREATE TRIGGER slow_span AFTER INSERT ON spans FOR EACH ROW "
                "EXECUTE FUNCTION slow_span()")
    held = []
    try:
        _server, addr, port = pods.byte_server(2)
        # Connections left open across the stop ...
        for _ in range(3):
            client, _info = pods.ctl_client(1, addr, port)
            client.command("round 5 7")
            held.append(client)
        # ... and closed ones, whose spans the slow inserts keep waiting.
        pods.batch(1, addr, port, [[1, 1]] * 40)
        time.sleep(0.3)
        log_start = cluster.log_size()
        cluster.stop()
        log = cluster.log_text(log_start)
        assert "terminated by signal" not in log, log
    finally:
        for client in held:
            client.stop()
        cluster.restart()
        cluster.sql("DROP TRIGGER IF EXISTS slow_span ON spans")
        cluster.sql("DROP FUNCTION IF EXISTS slow_span()")
    rows = cluster.sql("SELECT attributes->>'tcp.close_reason' AS why, count(*) AS n FROM spans "
                       "WHERE dst_port = %s GROUP BY 1", (port,))
    counts = {r["why"]: r["n"] for r in rows}
    assert counts.get("fin", 0) == 40, counts
    assert counts.get("capture_stopped", 0) == 3, counts
    cluster.wait_state("running", timeout=30)


def test_locked_pods_and_rollup_never_hold_up_the_spans(cluster, capture, pods):
    """Another session holds pods and the rollup: spans keep arriving, their
    rollup rows are staged, and the rollup catches up once the locks are
    gone, counting every span once."""
    m0 = cluster.value("SELECT date_bin('1 minute', now(), '2000-01-01')")
    locker = cluster.connect()
    locker.autocommit = False
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE pods, service_map_minutes IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            port, conns = traffic(pods, 20)
            wait_spans_for_port(cluster, port, len(conns), timeout=5)
            assert time.monotonic() - t0 < 8
            wait_for(lambda: cluster.value("SELECT count(*) FROM _service_map_staged") > 0, 10,
                     desc="rollup rows staged")
            time.sleep(2)  # more flushes while the locks are held
        locker.rollback()
    finally:
        locker.close()
    wait_for(lambda: cluster.value("SELECT count(*) FROM _service_map_staged") == 0, 15,
             desc="the staged rows merged")
    time.sleep(1)
    rolled = cluster.value("SELECT coalesce(sum(spans), 0) FROM service_map_minutes "
                           "WHERE bucket = 0 AND minute >= %s", (m0,))
    counted = cluster.value("SELECT count(*) FROM spans WHERE protocol = 'tcp' "
                            "AND start_time >= %s", (m0,))
    assert rolled == counted, (rolled, counted)


# ----------------------------------------------------------------------------
# dropping what the capture writes into


def test_spans_gone_is_logged_once_and_the_worker_goes_on(cluster, capture, pods):
    """DROP TABLE spans is refused while the extension is there (its
    functions and default partition depend on it); a spans table renamed
    away is what the worker meets instead: it logs that once, counts the
    spans it cannot write, keeps running (no restart), and writes again once
    the table is back."""
    with pytest.raises(Exception) as refused:
        cluster.sql("DROP TABLE spans")
    assert "extension ebpf_capture requires it" in str(refused.value)
    pid = capture["pid"]
    log_start = cluster.log_size()
    cluster.sql("ALTER TABLE spans RENAME TO spans_away")
    try:
        for _ in range(5):
            traffic(pods, 3)
            time.sleep(0.5)
        wait_for(lambda: cluster.status()["spans_dropped"] > 0, 10, desc="spans dropped")
        st = cluster.status()
        assert st["pid"] == pid and st["state"] == "running", st
        log = cluster.log_text(log_start)
        assert log.count("could not insert") == 1, log
        assert "has no spans table" in log
        assert "terminated by signal" not in log
    finally:
        cluster.sql("ALTER TABLE spans_away RENAME TO spans")
    port, conns = traffic(pods, 4)
    wait_spans_for_port(cluster, port, len(conns))
    assert cluster.status()["pid"] == pid


def test_drop_extension_during_a_capture_stops_it_cleanly(cluster, pods):
    cluster.ensure_capture()
    log_start = cluster.log_size()
    try:
        cluster.sql("DROP EXTENSION ebpf_capture")
        wait_for(lambda: cluster.value("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE backend_type = 'ebpf_capture worker'") == 0, 20,
                 desc="the worker gone")
        time.sleep(3)
        log = cluster.log_text(log_start)
        assert "extension was dropped" in log, log
        assert log.count("capturing on") == 0, log  # not started again
        assert "terminated by signal" not in log
        assert cluster.value("SELECT count(*) FROM pg_stat_activity "
                             "WHERE backend_type = 'ebpf_capture worker'") == 0
    finally:
        cluster.sql("CREATE EXTENSION IF NOT EXISTS ebpf_capture")
    cluster.ensure_capture()


def test_drop_database_force_of_the_capture_database(topology, pods):
    """The capture database dropped with FORCE: its launcher and worker end,
    the supervisor says once that it is gone, nothing restarts every few
    seconds, and the other databases go on."""
    import os
    os.environ["EBPFC_PG_EXTRA_CONF"] = "ebpf_capture.database = 'capdb'"
    try:
        with extra_cluster(MAIN_PORT - 4) as c:
            c.sql("CREATE DATABASE capdb")
            c.sql("CREATE EXTENSION ebpf_capture", dbname="capdb")
            c.sql("SELECT capture_start(%s)", (IFACE,), dbname="capdb")
            wait_for(lambda: c.value("SELECT state FROM capture_status()", dbname="capdb")
                     == "running", 20, desc="capture running in capdb")
            log_start = c.log_size()
            c.sql("DROP DATABASE capdb WITH (FORCE)")
            wait_for(lambda: "does not exist; captures start once" in c.log_text(log_start), 15,
                     desc="the supervisor saying the database is gone")
            time.sleep(8)
            log = c.log_text(log_start)
            assert log.count("does not exist; captures start once") == 1, log
            assert log.count("FATAL:  database \"capdb\" does not exist") == 0, log
            assert "terminated by signal" not in log
            assert c.value("SELECT 1") == 1
            assert c.value("SELECT count(*) FROM pg_stat_activity "
                           "WHERE backend_type = 'ebpf_capture worker'") == 0
    finally:
        os.environ.pop("EBPFC_PG_EXTRA_CONF", None)
