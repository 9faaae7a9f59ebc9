"""Redis (RESP2/RESP3) calls as spans (docs/protocols.md): a redis-server in
pod 2, driven from pod 1 by redis-cli, redis-benchmark (pipelined) and a raw
socket client whose commands are the truth the spans are compared with:
pipelining, errors, SELECT, MULTI/EXEC, RESP3, SUBSCRIBE, and hostile bytes
that must not hurt the worker."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import capture_restarted_with, pod_ip4, pod_ns, pod_run, run, wait_for

SERVER_POD = 2
CLIENT_POD = 1
PORT = 6379


@pytest.fixture(scope="module")
def redis_pod(cluster):
    """redis-server in the server pod (no persistence, no protected mode)."""
    d = Path(tempfile.mkdtemp(prefix="ebpfc-redis-"))
    pidfile = d / "redis.pid"
    run(["ip", "netns", "exec", pod_ns(SERVER_POD), "redis-server", "--port", str(PORT),
         "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no",
         "--daemonize", "yes", "--pidfile", str(pidfile), "--dir", str(d),
         "--logfile", str(d / "log")])
    host = pod_ip4(SERVER_POD)
    try:
        wait_for(lambda: pod_run(CLIENT_POD, "redis-cli", "-h", host, "PING",
                                 check=False).stdout.strip() == "PONG", 10, desc="redis up")
        cluster.ensure_capture()
        yield host
    finally:
        if pidfile.exists():
            run(["kill", pidfile.read_text().strip()], check=False)
            wait_for(lambda: not pidfile.exists(), 10, desc="redis-server stopped")
        shutil.rmtree(d, ignore_errors=True)


def cli(host, *args, check=True):
    return pod_run(CLIENT_POD, "redis-cli", "-h", host, "-p", str(PORT), *args, check=check)


def db_now(cluster):
    return cluster.value("SELECT now() - interval '50 milliseconds'")


def redis_spans(cluster, since, where="true", params=()):
    return cluster.spans(
        f"protocol = 'redis' AND start_time >= %s AND ({where})", (since, *params))


def of_port(rows, port):
    return [r for r in rows if r["src_port"] == port]


# The raw client: each scenario on a connection of its own; prints the local
# port of each, so that its spans are told apart. Commands and replies are
# read back one by one where the truth needs it, pipelined elsewhere.
RAW_CLIENT = r"""
import json, os, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def conn():
    s = socket.create_connection((host, port))
    return s
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def read_until(s, n_crlf):
    buf = b""
    while buf.count(b"\r\n") < n_crlf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf
ports = {}
# 1. pipelined: 60 commands in one write, every third a SET, the replies read at once
s = conn(); ports["pipeline"] = s.getsockname()[1]
batch = b""
for i in range(60):
    batch += cmd("SET", "pk:%d" % i, "secret-value-%d" % i) if i % 3 == 0 else cmd("GET", "pk:%d" % (i - i % 3))
s.sendall(batch)
got = b""
while got.count(b"\r\n") < 20 + 40 * 2:
    got += s.recv(65536)
s.close()
# 2. errors, one at a time
s = conn(); ports["errors"] = s.getsockname()[1]
for c, n in ((cmd("SET", "str", "v"), 1), (cmd("LPUSH", "str", "x"), 1), (cmd("NOSUCHCMD", "a"), 1),
             (cmd("GET", "str"), 2)):
    s.sendall(c); read_until(s, n)
s.close()
# 3. SELECT and MULTI/EXEC
s = conn(); ports["multi"] = s.getsockname()[1]
s.sendall(cmd("SELECT", "3")); read_until(s, 1)
s.sendall(cmd("MULTI") + cmd("INCR", "counter") + cmd("LPUSH", "counter", "x") + cmd("EXEC"))
read_until(s, 6)
s.sendall(cmd("GET", "counter")); read_until(s, 2)
s.close()
# 4. RESP3: HELLO 3, a map reply, a client-tracking push before a reply
s = conn(); ports["resp3"] = s.getsockname()[1]
s.sendall(cmd("HELLO", "3")); time.sleep(0.2); s.recv(65536)
s.sendall(cmd("CLIENT", "TRACKING", "on")); read_until(s, 1)
s.sendall(cmd("GET", "tracked")); read_until(s, 1)
o = conn(); o.sendall(cmd("SET", "tracked", "1")); read_until(o, 1); o.close()
time.sleep(0.2)
s.sendall(cmd("PING")); time.sleep(0.2); s.recv(65536)
s.close()
# 5. SUBSCRIBE: push mode; a message published meanwhile
s = conn(); ports["subscribe"] = s.getsockname()[1]
s.sendall(cmd("GET", "before")); read_until(s, 1)
s.sendall(cmd("SUBSCRIBE", "news")); read_until(s, 6)
p = conn(); ports["publish"] = p.getsockname()[1]
p.sendall(cmd("PUBLISH", "news", "hello")); read_until(p, 1); p.close()
read_until(s, 7)
s.sendall(cmd("PING")); time.sleep(0.2)
s.close()
print(json.dumps(ports))
"""

GARBAGE_CLIENT = r"""
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
for junk in (b"*3\r\n$3\r\nSET\r\n$99999999999999\r\n" + os.urandom(3000),
             b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" + b"*" * 70 + b"\r\n" + os.urandom(2000),
             b"*1\r\n$4\r\nPING\r\n" + b"*1\r\n" * 5000):
    s = socket.create_connection((host, port))
    try:
        s.sendall(junk)
        s.settimeout(1.0)
        s.recv(65536)
    except OSError:
        pass
    s.close()
"""


def test_raw_client_truth(cluster, redis_pod):
    since = db_now(cluster)
    res = pod_run(CLIENT_POD, "/usr/bin/python3", "-c", RAW_CLIENT, redis_pod, str(PORT))
    ports = json.loads(res.stdout.strip().splitlines()[-1])

    def enough():
        rows = redis_spans(cluster, since, "host(src_addr) = %s", (pod_ip4(CLIENT_POD),))
        return rows if len(of_port(rows, ports["subscribe"])) >= 2 and \
            len(of_port(rows, ports["pipeline"])) >= 60 and \
            len(of_port(rows, ports["resp3"])) >= 4 else None
    rows = wait_for(enough, desc="the raw client's redis spans")
    names = {k: [r["name"] for r in of_port(rows, p)] for k, p in ports.items()}

    # Commands that arrived in one segment share their start time: spans
    # are compared as multisets where the order is not in the data.
    def bag(k):
        return sorted(names[k])

    # 1. pipelining: every command its span, no key, no value
    pipe = of_port(rows, ports["pipeline"])
    assert bag("pipeline") == sorted("SET" if i % 3 == 0 else "GET" for i in range(60)), names
    assert all(r["status"] == "UNSET" and r["kind"] == "CLIENT" for r in pipe)
    assert all(r["attributes"]["db.query.text"] == r["name"] for r in pipe)
    assert all("pk:" not in json.dumps(r["attributes"]) and
               "secret" not in json.dumps(r["attributes"]) for r in rows)
    assert pipe[0]["attributes"]["db.system.name"] == "redis"
    assert pipe[0]["attributes"]["db.namespace"] == "0"
    assert pipe[0]["dst_host"] == redis_pod and pipe[0]["dst_port"] == PORT

    # 2. errors: the prefix as the status code
    err = of_port(rows, ports["errors"])
    assert names["errors"] == ["SET", "LPUSH", "NOSUCHCMD", "GET"], names
    assert [r["status"] for r in err] == ["UNSET", "ERROR", "ERROR", "UNSET"]
    assert err[1]["attributes"]["db.response.status_code"] == "WRONGTYPE"
    assert err[2]["attributes"]["db.response.status_code"] == "ERR"
    assert "wrong kind" not in json.dumps(err[1]["attributes"])

    # 3. SELECT, MULTI/EXEC: every queued command its span
    multi = {r["name"]: r for r in of_port(rows, ports["multi"])}
    assert bag("multi") == sorted(["SELECT", "MULTI", "INCR", "LPUSH", "EXEC", "GET"]), names
    assert {k: r["attributes"]["db.namespace"] for k, r in multi.items()} == \
        {"SELECT": "0", "MULTI": "3", "INCR": "3", "LPUSH": "3", "EXEC": "3", "GET": "3"}
    assert {k for k, r in multi.items() if r["attributes"].get("db.redis.transaction")} == \
        {"INCR", "LPUSH"}
    assert multi["LPUSH"]["status"] == "UNSET"  # +QUEUED; its error is inside EXEC's reply

    # 4. RESP3: the invalidation push is no reply
    assert names["resp3"] == ["HELLO", "CLIENT", "GET", "PING"], names
    assert all(r["status"] == "UNSET" for r in of_port(rows, ports["resp3"]))

    # 5. SUBSCRIBE: its span, then nothing more on that connection (counted)
    sub = of_port(rows, ports["subscribe"])
    assert names["subscribe"] == ["GET", "SUBSCRIBE"], names
    assert sub[1]["attributes"]["db.redis.push_mode"] is True
    assert names["publish"] == ["PUBLISH"], names
    # the counters are published on the worker's own schedule
    st = wait_for(lambda: (lambda s: s if s["redis_push_mode"] >= 1 and
                           s["redis_spans"] >= len(rows) else None)(cluster.status()),
                  desc="the counters")
    assert st["redis_connections"] >= 6


def test_redis_cli(cluster, redis_pod):
    since = db_now(cluster)
    cli(redis_pod, "SET", "cli:key", "cli-secret")
    assert cli(redis_pod, "GET", "cli:key").stdout.strip() == "cli-secret"
    cli(redis_pod, "HSET", "cli:h", "f", "v")
    res = cli(redis_pod, "INCR", "cli:h", check=False)
    assert "WRONGTYPE" in res.stdout + res.stderr
    cli(redis_pod, "-n", "5", "SET", "cli:in5", "x")

    def enough():
        rows = redis_spans(cluster, since, "host(src_addr) = %s", (pod_ip4(CLIENT_POD),))
        return rows if {"SET", "GET", "HSET", "INCR"} <= {r["name"] for r in rows} and \
            sum(r["name"] == "SET" for r in rows) >= 2 else None
    rows = wait_for(enough, desc="redis-cli's spans")
    mine = [r for r in rows if r["name"] in ("SET", "GET", "HSET", "INCR")]
    assert [r["name"] for r in mine] == ["SET", "GET", "HSET", "INCR", "SET"], rows
    incr = mine[3]
    assert incr["status"] == "ERROR"
    assert incr["attributes"]["db.response.status_code"] == "WRONGTYPE"
    assert mine[4]["attributes"]["db.namespace"] == "5"  # redis-cli -n 5: SELECT 5 first
    assert all("cli-secret" not in json.dumps(r["attributes"]) for r in rows)
    # The service map counts them as requests, with their error.
    edge = cluster.sql(
        "SELECT _service_map_node_id(src_namespace, src_workload, src_pod, src_node, src_addr) "
        "AS s, _service_map_node_id(dst_namespace, dst_workload, dst_pod, dst_node, dst_addr) "
        "AS d FROM spans WHERE span_id = %s", (incr["span_id"],))[0]

    def rolled():
        c = cluster.sql(
            "SELECT (SELECT coalesce(sum(spans), 0) FROM service_map_minutes "
            "        WHERE src_id = %(s)s AND dst_id = %(d)s AND bucket > 0 "
            "        AND minute >= date_trunc('minute', %(t)s)) AS rolled, "
            "       (SELECT coalesce(sum(errors), 0) FROM service_map_minutes "
            "        WHERE src_id = %(s)s AND dst_id = %(d)s AND bucket > 0 "
            "        AND minute >= date_trunc('minute', %(t)s)) AS rolled_errors, "
            "       (SELECT count(*) FROM spans WHERE protocol IN ('http', 'postgresql', 'redis')"
            "        AND name NOT IN ('TLS', 'GSSENC') "
            "        AND start_time >= date_trunc('minute', %(t)s)"
            "        AND _service_map_node_id(src_namespace, src_workload, src_pod, src_node, "
            "                                 src_addr) = %(s)s"
            "        AND _service_map_node_id(dst_namespace, dst_workload, dst_pod, dst_node, "
            "                                 dst_addr) = %(d)s) AS spans",
            {"s": edge["s"], "d": edge["d"], "t": since})[0]
        return c if c["rolled"] == c["spans"] and c["spans"] >= 5 else None
    counts = wait_for(rolled, desc="the rollup's requests")
    assert counts["rolled_errors"] >= 1, counts


def test_key_names_setting(cluster, redis_pod):
    with capture_restarted_with(cluster, "ebpf_capture.redis_key_names", "on"):
        since = db_now(cluster)
        cli(redis_pod, "SET", "user:42", "not-a-key")
        cli(redis_pod, "ECHO", "echoed-secret")
        rows = wait_for(lambda: [r for r in redis_spans(cluster, since)
                                 if r["name"] in ("SET", "ECHO")] or None, desc="spans")
        rows = wait_for(lambda: [r for r in redis_spans(cluster, since)
                                 if r["name"] in ("SET", "ECHO")]
                        if len(rows) >= 2 else None, desc="both spans")
        by = {r["name"]: r for r in rows}
        assert by["SET"]["attributes"]["db.query.text"] == "SET user:42"
        assert by["ECHO"]["attributes"]["db.query.text"] == "ECHO"
        assert all("not-a-key" not in json.dumps(r["attributes"]) and
                   "echoed-secret" not in json.dumps(r["attributes"]) for r in rows)


def test_benchmark_pipelined_recall(cluster, redis_pod):
    """redis-benchmark -P 16: every SET and GET the server counted is a span."""
    cli(redis_pod, "CONFIG", "RESETSTAT")
    since = db_now(cluster)
    n = 20000
    pod_run(CLIENT_POD, "redis-benchmark", "-h", redis_pod, "-p", str(PORT), "-t", "set,get",
            "-n", str(n), "-c", "4", "-P", "16", "-r", "1000", "-q", timeout=300)
    stats = cli(redis_pod, "INFO", "commandstats").stdout
    calls = {}
    for line in stats.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            calls[name.upper()] = int(rest.split("calls=")[1].split(",")[0])
    want = {"SET": calls["SET"], "GET": calls["GET"]}
    assert want["SET"] >= n and want["GET"] >= n, calls

    def count():
        got = {r["name"]: r["n"] for r in cluster.sql(
            "SELECT name, count(*) AS n FROM spans WHERE protocol = 'redis' AND start_time >= %s "
            "AND name IN ('SET', 'GET') AND host(src_addr) = %s GROUP BY name",
            (since, pod_ip4(CLIENT_POD)))}
        return got if got.get("SET", 0) >= want["SET"] and \
            got.get("GET", 0) >= want["GET"] else None
    try:
        got = wait_for(count, desc="the benchmark's spans")
    except AssertionError:
        raise AssertionError(f"want {want}; status {cluster.status()}") from None
    assert got == want


def test_garbage_connection_does_not_hurt_the_worker(cluster, redis_pod):
    pid = cluster.status()["pid"]
    crashes = len(cluster.unexpected_crashes())
    lost = cluster.status()["redis_lost"]
    since = db_now(cluster)
    pod_run(CLIENT_POD, "/usr/bin/python3", "-c", GARBAGE_CLIENT, redis_pod, str(PORT))
    cli(redis_pod, "SET", "after:garbage", "1")
    wait_for(lambda: redis_spans(cluster, since, "name = 'SET'") or None,
             desc="a span after the garbage")
    st = cluster.status()
    assert st["state"] == "running" and st["pid"] == pid
    assert len(cluster.unexpected_crashes()) == crashes
    assert st["redis_lost"] > lost  # the garbage connections were given up, counted


def test_setting_turns_it_off(cluster, redis_pod):
    with capture_restarted_with(cluster, "ebpf_capture.redis", "off"):
        since = db_now(cluster)
        cli(redis_pod, "SET", "while:off", "1")
        wait_for(lambda: cluster.spans("protocol = 'tcp' AND dst_port = %s AND start_time >= %s",
                                       (PORT, since)) or None, desc="the tcp span")
        assert redis_spans(cluster, since) == []
        assert cluster.status()["redis_connections"] == 0
