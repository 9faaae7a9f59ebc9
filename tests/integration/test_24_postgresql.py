"""PostgreSQL's wire protocol as spans (docs/protocols.md): a second
PostgreSQL cluster in pod 2, queried from pod 1 with psql and pgbench
(simple, extended, prepared and pipelined), a TLS session, an error, a
garbage connection; the spans are compared with what the clients did and
with tshark's pgsql dissector on a capture of the same traffic."""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    IFACE, PG_BINDIR, capture_restarted_with, pod_ip4, pod_ns, pod_run, run, wait_for,
)

SERVER_POD = 2
CLIENT_POD = 1
PGPORT = 5432


def pod_server_cluster():
    """initdb + a self-signed certificate + start, in the server pod."""
    d = Path(tempfile.mkdtemp(prefix="ebpfc-podpg-"))
    shutil.chown(d, "postgres", "postgres")
    data = d / "data"
    run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/initdb", "-D", str(data), "-A", "trust",
         "-U", "postgres", "--no-sync"])
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=pgpod", "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")])
    for f in ("server.key", "server.crt"):
        shutil.chown(data / f, "postgres", "postgres")
        os.chmod(data / f, 0o600)
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("listen_addresses = '*'\nssl = on\nfsync = off\nmax_connections = 50\n"
                 f"unix_socket_directories = '{d}'\n")
    with open(data / "pg_hba.conf", "a") as fh:
        fh.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
    run(["ip", "netns", "exec", pod_ns(SERVER_POD), "runuser", "-u", "postgres", "--",
         f"{PG_BINDIR}/pg_ctl", "-D", str(data), "-l", str(d / "log"), "-w", "-o",
         f"-p {PGPORT}", "start"])
    return d


@pytest.fixture(scope="module")
def pg_pod(cluster):
    d = pod_server_cluster()
    try:
        host = pod_ip4(SERVER_POD)
        pod_run(CLIENT_POD, "psql", f"host={host} user=postgres dbname=postgres sslmode=disable",
                "-X", "-c", "CREATE DATABASE shop")
        pgbench(host, "-i", "-s", "1", "-q", timeout=180)
        cluster.ensure_capture()
        yield host
    finally:
        run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/pg_ctl", "-D", str(d / "data"),
             "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(d, ignore_errors=True)


def pgbench(host, *args, check=True, timeout=180):
    """pgbench in the client pod, in the clear (libpq's default sslmode,
    prefer, would make every connection TLS: the server has a certificate)."""
    return pod_run(CLIENT_POD, "env", "PGSSLMODE=disable", "pgbench", *args, "-h", host, "-U",
                   "postgres", "shop", check=check, timeout=timeout)


def texts(cluster, since):
    """What the postgresql spans since `since` say, grouped: for messages."""
    return cluster.sql(
        "SELECT name, attributes->>'db.query.text' AS text, status, count(*) FROM spans "
        "WHERE protocol = 'postgresql' AND start_time >= %s GROUP BY 1, 2, 3 ORDER BY 4 DESC",
        (since,))


def pg_spans(cluster, since, where="true", params=()):
    return cluster.spans(
        f"protocol = 'postgresql' AND start_time >= %s AND ({where})", (since, *params))


def psql(host, sql, sslmode="disable", dbname="shop", check=True):
    return pod_run(CLIENT_POD, "psql", f"host={host} user=postgres dbname={dbname} "
                   f"sslmode={sslmode}", "-X", "-v", "ON_ERROR_STOP=0", "-c", sql, check=check)


def db_now(cluster):
    return cluster.value("SELECT now() - interval '50 milliseconds'")


@contextlib.contextmanager
def tshark_capture():
    """tshark on the bridge (in the node namespace) for the traffic inside the block."""
    f = tempfile.NamedTemporaryFile(prefix="ebpfc-pg-", suffix=".pcapng", delete=False)
    f.close()
    os.chmod(f.name, 0o666)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", f"{os.environ['EBPFC_NS']}-node", "tshark", "-q", "-i", IFACE,
         "-f", f"tcp port {PGPORT}", "-w", f.name],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # tshark's capture is live
        yield f.name
    finally:
        time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=20)


def tshark_fields(pcap, *fields, display="pgsql"):
    res = run(["tshark", "-r", pcap, "-Y", display, "-T", "fields", "-E", "separator=|",
               "-E", "occurrence=a", "-E", "aggregator=;"] + sum([["-e", f] for f in fields], []))
    return [line.split("|") for line in res.stdout.splitlines() if line.strip()]


def test_simple_queries_match_psql_and_tshark(cluster, pg_pod):
    since = db_now(cluster)
    with tshark_capture() as pcap:
        psql(pg_pod, "SELECT aid, abalance FROM pgbench_accounts WHERE aid < 4 AND "
             "filler <> 'top secret'")
        psql(pg_pod, "SELECT * FROM no_such_table WHERE x = 42", check=False)
        psql(pg_pod, "UPDATE pgbench_branches SET bbalance = bbalance + 7 WHERE bid = 1")
        mine = ("SELECT pgbench_accounts", "SELECT no_such_table", "UPDATE pgbench_branches")

        def three():
            # the spans of these three connections (the client pod's, to the server)
            r = [x for x in pg_spans(cluster, since, "dst_port = %s AND host(src_addr) = %s",
                                     (PGPORT, pod_ip4(CLIENT_POD)))
                 if x["name"] in mine]
            return r if len(r) >= 3 else None
        try:
            rows = wait_for(three, desc="the three postgresql spans")
        except AssertionError:
            raise AssertionError(f"spans: {texts(cluster, since)}") from None
    by_name = {r["name"]: r for r in rows}
    sel, upd = by_name["SELECT pgbench_accounts"], by_name["UPDATE pgbench_branches"]
    assert sel["attributes"]["db.query.text"] == (
        "SELECT aid, abalance FROM pgbench_accounts WHERE aid < ? AND filler <> ?")
    assert sel["name"] == "SELECT pgbench_accounts"
    assert sel["attributes"]["db.system.name"] == "postgresql"
    assert sel["attributes"]["db.namespace"] == "shop"
    assert sel["attributes"]["db.user"] == "postgres"
    assert sel["attributes"]["db.response.returned_rows"] == 3
    assert sel["kind"] == "CLIENT" and sel["status"] == "UNSET"
    assert sel["dst_host"] == pg_pod and sel["dst_port"] == PGPORT
    assert upd["attributes"]["db.response.returned_rows"] == 1
    err = [r for r in rows if r["status"] == "ERROR"]
    assert len(err) == 1, rows
    assert err[0]["attributes"]["db.response.status_code"] == "42P01"
    assert "42" not in err[0]["attributes"]["db.query.text"]
    assert all("top secret" not in json.dumps(r["attributes"]) for r in rows)
    # tshark: every Query message has its span, every error its SQLSTATE.
    queries = [f[0] for f in tshark_fields(pcap, "pgsql.query",
                                           display='pgsql.type == "Simple query"')]
    codes = [c for f in tshark_fields(pcap, "pgsql.code", display="pgsql.code")
             for c in f[0].split(";")]
    tags = [t for f in tshark_fields(pcap, "pgsql.tag", display="pgsql.tag")
            for t in f[0].split(";")]
    assert len(queries) == len(rows), (queries, rows)
    assert sorted(codes) == sorted(r["attributes"]["db.response.status_code"] for r in err)
    assert sorted(tags) == sorted(f"{r['attributes']['db.operation.name']} "
                                  f"{r['attributes']['db.response.returned_rows']}"
                                  for r in rows if r["status"] != "ERROR"), tags
    # The service map counts them as requests: the edge's rollup holds as
    # many requests as its http and postgresql spans.
    edge = cluster.sql(
        "SELECT _service_map_node_id(src_namespace, src_workload, src_pod, src_node, src_addr) "
        "AS s, _service_map_node_id(dst_namespace, dst_workload, dst_pod, dst_node, dst_addr) "
        "AS d FROM spans WHERE span_id = %s", (sel["span_id"],))[0]
    counts = cluster.sql(
        "SELECT (SELECT coalesce(sum(spans), 0) FROM service_map_minutes WHERE src_id = %(s)s "
        "        AND dst_id = %(d)s AND bucket > 0 AND minute >= date_trunc('minute', %(t)s))"
        "       AS rolled, "
        "       (SELECT count(*) FROM spans WHERE protocol IN ('http', 'postgresql') "
        "        AND name NOT IN ('TLS', 'GSSENC') AND start_time >= date_trunc('minute', %(t)s)"
        "        AND _service_map_node_id(src_namespace, src_workload, src_pod, src_node, "
        "                                 src_addr) = %(s)s"
        "        AND _service_map_node_id(dst_namespace, dst_workload, dst_pod, dst_node, "
        "                                 dst_addr) = %(d)s) AS spans",
        {"s": edge["s"], "d": edge["d"], "t": since})[0]
    assert counts["spans"] >= 3 and counts["rolled"] == counts["spans"], counts
    st = cluster.status()
    assert st["postgresql_connections"] >= 3 and st["postgresql_spans"] >= 3


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only_recall(cluster, pg_pod, mode):
    since = db_now(cluster)
    n = 300
    res = pgbench(pg_pod, "-S", "-n", "-M", mode, "-t", n, "-c", 2)
    assert f"number of transactions actually processed: {2 * n}/{2 * n}" in res.stdout
    want = "SELECT abalance FROM pgbench_accounts WHERE aid = " + ("?" if mode == "simple"
                                                                    else "$1")

    def count():
        c = cluster.value("SELECT count(*) FROM spans WHERE protocol = 'postgresql' AND "
                          "start_time >= %s AND attributes->>'db.query.text' IN (%s, %s)",
                          (since, want, want + ";"))
        return c if c >= 2 * n else None
    try:
        got = wait_for(count, desc=f"{2 * n} spans")
    except AssertionError:
        raise AssertionError(f"spans: {texts(cluster, since)}; status: {cluster.status()}")
    assert got == 2 * n, texts(cluster, since)


def test_pgbench_pipeline(cluster, pg_pod, tmp_path):
    script = tmp_path / "pipe.sql"
    # "AS piped" tells these statements from any others
    script.write_text("\\set aid random(1, 100000)\n\\startpipeline\n" +
                      "SELECT abalance AS piped FROM pgbench_accounts WHERE aid = :aid;\n" * 5 +
                      "SELECT 1/(:aid::int - :aid::int) AS piped;\n" +
                      "SELECT bid AS piped FROM pgbench_branches;\n" +
                      "\\endpipeline\n")
    os.chmod(tmp_path, 0o755)
    since = db_now(cluster)
    n = 50
    res = pgbench(pg_pod, "-n", "-M", "extended", "-f", script, "-t", n, check=False)
    # Each pipeline fails at its division by zero: the SELECT after it is skipped.
    assert "division by zero" in res.stderr + res.stdout

    def spans():
        rows = pg_spans(cluster, since, "attributes->>'db.query.text' LIKE '%%AS piped%%'")
        return rows if len(rows) >= 1 else None
    rows = wait_for(spans, desc="pipeline spans")
    time.sleep(1.0)
    rows = pg_spans(cluster, since, "attributes->>'db.query.text' LIKE '%%AS piped%%'")
    info = texts(cluster, since)
    sel = [r for r in rows if r["name"] == "SELECT pgbench_accounts"]
    div = [r for r in rows if r["status"] == "ERROR" and
           r["attributes"].get("db.response.status_code") == "22012"]
    skipped = [r for r in rows if r["attributes"].get("db.postgresql.skipped")]
    # pgbench stops a client at its first failed transaction (it does not
    # retry errors other than serialization failures): one pipeline ran.
    assert len(div) >= 1, info
    assert len(sel) == 5 * len(div), info
    assert len(skipped) == len(div) and skipped[0]["name"] == "SELECT pgbench_branches", info
    assert all(r["attributes"]["db.query.text"] ==
               "SELECT abalance AS piped FROM pgbench_accounts WHERE aid = $1" for r in sel)


def test_tls_session_is_recorded_as_tls(cluster, pg_pod):
    since = db_now(cluster)
    res = psql(pg_pod, "SELECT 'not to be seen' AS secret, 1", sslmode="require")
    assert "not to be seen" in res.stdout

    def tls():
        return pg_spans(cluster, since, "name = 'TLS'") or None
    wait_for(tls, desc="the TLS session span")
    time.sleep(0.5)
    rows = pg_spans(cluster, since)
    tls_rows = [r for r in rows if r["name"] == "TLS"]
    assert len(tls_rows) == 1, [(r["name"], r["src_port"], r["start_time"]) for r in rows]
    assert tls_rows[0]["attributes"]["tls"] is True
    # nothing else on that connection: no query parsed out of TLS records
    conn = tls_rows[0]["attributes"]["tcp.span_id"]
    assert [r["name"] for r in rows if r["attributes"]["tcp.span_id"] == conn] == ["TLS"]
    assert cluster.status()["postgresql_encrypted"] >= 1


def test_garbage_connection_does_not_hurt_the_worker(cluster, pg_pod):
    pid = cluster.status()["pid"]
    crashes = len(cluster.unexpected_crashes())
    since = db_now(cluster)
    # a startup packet, then garbage: huge lengths, truncated messages, noise
    script = (
        "import socket,struct,os\n"
        f"s=socket.create_connection(('{pg_pod}',{PGPORT}))\n"
        "body=struct.pack('!I',196608)+b'user\\0postgres\\0database\\0shop\\0\\0'\n"
        "s.sendall(struct.pack('!I',len(body)+4)+body)\n"
        "s.recv(4096)\n"
        "try:\n"
        "    s.sendall(b'Q'+struct.pack('!I',0x7fffffff)+b'SELECT '+os.urandom(3000))\n"
        "    s.sendall(os.urandom(5000))\n"
        "except OSError:\n"
        "    pass\n"
        "s.close()\n"
        f"s=socket.create_connection(('{pg_pod}',{PGPORT}))\n"
        "try:\n"
        "    s.sendall(b'Q\\0\\0\\0\\x09SEL')\n"
        "except OSError:\n"
        "    pass\n"
        "s.close()\n")
    pod_run(CLIENT_POD, "/usr/bin/python3", "-c", script)
    psql(pg_pod, "SELECT 1 AS after_garbage")
    wait_for(lambda: pg_spans(cluster, since, "attributes->>'db.query.text' = 'SELECT ? AS "
                              "after_garbage'") or None, desc="a span after the garbage")
    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid
    assert len(cluster.unexpected_crashes()) == crashes


def test_setting_turns_it_off(cluster, pg_pod):
    with capture_restarted_with(cluster, "ebpf_capture.postgresql", "off"):
        since = db_now(cluster)
        psql(pg_pod, "SELECT 2 AS while_off")
        wait_for(lambda: cluster.spans("protocol = 'tcp' AND dst_port = %s AND start_time >= %s",
                                       (PGPORT, since)) or None, desc="the tcp span")
        assert pg_spans(cluster, since) == []
        assert cluster.status()["postgresql_connections"] == 0
