"""Errors of the SQL API; after each, the capture on cni0 still runs."""

import psycopg2
import pytest

from conftest import MAIN_PORT, extra_cluster, pid_alive


def call_error(cluster, query, params=None, dbname="postgres", user=None, setup=()):
    """Runs query and returns the psycopg2 error it must raise."""
    conn = cluster.connect(dbname)
    try:
        with conn.cursor() as cur:
            for stmt in setup:
                cur.execute(stmt)
            if user:
                cur.execute(f"SET ROLE {user}")
            with pytest.raises(psycopg2.Error) as info:
                cur.execute(query, params)
        return info.value
    finally:
        conn.close()


def still_running(cluster, before):
    st = cluster.status()
    assert st and st["state"] == "running", st
    assert st["pid"] == before["pid"] and pid_alive(st["pid"]), (before, st)


@pytest.mark.parametrize("name,message", [
    ("nosuch0", 'interface "nosuch0" does not exist'),
    ("a" * 16, "is too long"),
    ("abcdefghijklmnopqrstuvwxyz", "is too long"),
    ("eth0; rm", "invalid interface name"),
    ("../x", "invalid interface name"),
    ("", "invalid interface name"),
])
def test_bad_interface_names(cluster, capture, name, message):
    err = call_error(cluster, "SELECT capture_start(%s)", (name,))
    assert message in (err.diag.message_primary or ""), f"{type(err).__name__}: {err}"
    still_running(cluster, capture)


def test_second_start_on_same_interface(cluster, capture):
    err = call_error(cluster, "SELECT capture_start('cni0')")
    assert 'capture already running on interface "cni0"' in (err.diag.message_primary or ""), str(err)
    still_running(cluster, capture)


def test_non_superuser(cluster, capture):
    cluster.sql("DROP ROLE IF EXISTS ebpfc_plain")
    cluster.sql("CREATE ROLE ebpfc_plain LOGIN")
    try:
        for fn, args in (("capture_start", "('cni0')"), ("capture_stop", "('cni0')")):
            err = call_error(cluster, f"SELECT {fn}{args}", user="ebpfc_plain")
            assert f"permission denied for function {fn}" in (err.diag.message_primary or ""), str(err)
        # and directly as that user, not through SET ROLE
        conn = cluster.connect(user="ebpfc_plain")
        try:
            with conn.cursor() as cur, pytest.raises(psycopg2.Error) as info:
                cur.execute("SELECT capture_stop('cni0')")
            assert "permission denied for function capture_stop" in (info.value.diag.message_primary or "")
        finally:
            conn.close()
    finally:
        cluster.sql("DROP ROLE IF EXISTS ebpfc_plain")
    still_running(cluster, capture)


def test_wrong_database(cluster, capture):
    cluster.sql("DROP DATABASE IF EXISTS ebpfc_other")
    cluster.sql("CREATE DATABASE ebpfc_other")
    try:
        cluster.sql("CREATE EXTENSION ebpf_capture", dbname="ebpfc_other")
        # veth1 exists and no capture runs on it: only the database is wrong
        err = call_error(cluster, "SELECT capture_start('veth1')", dbname="ebpfc_other")
        assert "ebpf_capture.database" in (err.diag.message_primary or ""), str(err)
        assert cluster.status("veth1") is None or cluster.status("veth1")["state"] != "running"
    finally:
        # should a capture have started on veth1 after all, stop it
        cluster.sql("SELECT capture_stop('veth1')")
        cluster.sql("DROP DATABASE IF EXISTS ebpfc_other")
    still_running(cluster, capture)


def test_not_preloaded(cluster, capture):
    with extra_cluster(MAIN_PORT - 1, "--no-preload") as other:
        conn = other.connect()
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute("CREATE EXTENSION ebpf_capture")
                    with pytest.raises(psycopg2.Error) as info:
                        cur.execute("SELECT capture_start('cni0')")
                    err = info.value
                except psycopg2.Error as exc:  # refusing CREATE EXTENSION is fine too
                    err = exc
        finally:
            conn.close()
        # (a FATAL that drops the connection has no diag: show the server log)
        why = (f"{type(err).__name__}: {err}\nserver log:\n"
               + "\n".join(line for line in other.log_text().splitlines()
                           if "ERROR" in line or "FATAL" in line or "HINT" in line))
        assert "ebpf_capture is not loaded via shared_preload_libraries" in \
            (err.diag.message_primary or ""), why
        assert "shared_preload_libraries = 'ebpf_capture'" in (err.diag.message_hint or ""), why
    still_running(cluster, capture)


def test_missing_capabilities(cluster, capture):
    with extra_cluster(MAIN_PORT - 2, "--no-caps") as other:
        other.sql("CREATE EXTENSION ebpf_capture")
        conn = other.connect()
        try:
            with conn.cursor() as cur, pytest.raises(psycopg2.Error) as info:
                cur.execute("SELECT capture_start('cni0')")
        finally:
            conn.close()
        err = info.value
        msg = err.diag.message_primary
        hint = err.diag.message_hint or ""
        assert "CAP_BPF" in msg or "CAP_NET_RAW" in msg, err.pgerror
        assert "setpriv" in hint or "setcap" in hint, err.pgerror
        rows = other.sql("SELECT * FROM capture_status() WHERE state IN ('starting', 'running')")
        assert rows == [], rows
        log = other.log_text()
        assert "terminated by signal" not in log, log
    still_running(cluster, capture)
