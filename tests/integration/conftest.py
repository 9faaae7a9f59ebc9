"""Fixtures for the ebpf_capture integration tests.

Everything is real: a PostgreSQL 15 server running inside the node network
namespace (where the bridge cni0 lives), pods made of network namespaces, and
TCP traffic between them.

Run with ``/usr/bin/python3 -m pytest tests/integration`` as root. By default
the tests build their own topology (namespace prefix EBPFC_NS, default
"ebpfct") and cluster; tests/run.sh instead hands over the ones it started
through EBPFC_TOPOLOGY_READY=1, EBPFC_PGDIR and EBPFC_PGPORT.
"""

import contextlib
import ipaddress
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB = REPO / "tests" / "lib"
NETUTIL = HERE / "netutil.py"
PY = "/usr/bin/python3"
PG_BINDIR = os.environ.get("PG_BINDIR") or subprocess.run(
    ["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip()

NS = os.environ.setdefault("EBPFC_NS", "ebpfct")
PODS = int(os.environ.setdefault("EBPFC_PODS", "4"))
IFACE = "cni0"
MAIN_PORT = int(os.environ.get("EBPFC_PGPORT", "5499"))

# Time the capture gets to write a span (flushes every ~200 ms).
SPAN_TIMEOUT = 15.0
# Slack allowed between the span timestamps and the test's wall clock.
CLOCK_SLACK_S = 1.0


# ----------------------------------------------------------------------------
# small helpers


def node_ns():
    return f"{NS}-node"


def pod_ns(i):
    return f"{NS}-pod{i}"


def pod_ip4(i):
    return f"10.213.0.{10 + i}"


def pod_ip6(i):
    return f"fd00:ebc::{10 + i}"


def now_utc():
    return datetime.now(timezone.utc)


def norm_ip(addr):
    return str(ipaddress.ip_address(addr))


def wait_for(predicate, timeout=SPAN_TIMEOUT, interval=0.1, desc="condition"):
    """Polls predicate() until it returns something truthy; returns that.

    Exceptions raised by the predicate count as "not yet" (the server may be
    restarting); the last one is reported if the time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    last_exc = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - reported below
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = f"timed out after {timeout}s waiting for {desc}; last value: {last!r}"
    if last_exc is not None:
        msg += f"; last error: {last_exc!r}"
    raise AssertionError(msg)


def run(cmd, check=True, timeout=120, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(
            f"command failed ({res.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


def in_pod(i, *args):
    """A command run in pod i, or in the node namespace for i == "node", or
    in the namespace named i (one of ours, "<EBPFC_NS>-...")."""
    if i == "node":
        ns = node_ns()
    elif isinstance(i, str) and i.startswith(f"{NS}-"):
        ns = i
    else:
        ns = pod_ns(i)
    return ["ip", "netns", "exec", ns, *map(str, args)]


def pod_run(i, *args, check=True, timeout=120):
    """Runs a command in pod i and returns the CompletedProcess."""
    return run(in_pod(i, *args), check=check, timeout=timeout)


def netutil_json(i, *args, timeout=120):
    """Runs a netutil.py subcommand in pod i; returns its JSON lines."""
    res = pod_run(i, PY, NETUTIL, *args, timeout=timeout)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def set_guc(cluster, name, value):
    """ALTER SYSTEM SET name = value (RESET when value is None), then reload."""
    if value is None:
        cluster.sql(f"ALTER SYSTEM RESET {name}")
    else:
        cluster.sql(f"ALTER SYSTEM SET {name} = %s", (value,))
    cluster.sql("SELECT pg_reload_conf()")


@contextlib.contextmanager
def capture_restarted_with(cluster, name, value):
    """Restarts the capture with the setting name = value for the block, and
    after it with the setting reset (the capture runs again either way)."""
    before = cluster.value(f"SHOW {name}")
    cluster.stop_capture()
    set_guc(cluster, name, value)
    try:
        wait_for(lambda: cluster.value(f"SHOW {name}") == value, 5, desc=f"{name} reloaded")
        cluster.ensure_capture()
        yield
    finally:
        cluster.stop_capture()
        set_guc(cluster, name, None)
        wait_for(lambda: cluster.value(f"SHOW {name}") == before, 5, desc=f"{name} restored")
        cluster.ensure_capture()


def pod_mac(i):
    return pod_run(i, "cat", "/sys/class/net/eth0/address").stdout.strip()


def pid_alive(pid):
    return Path(f"/proc/{pid}").exists()


def parent_pid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


# ----------------------------------------------------------------------------
# processes started in pods


class PodProcess:
    """A long-running process in a pod that speaks JSON lines on stdout."""

    def __init__(self, pod, args, stdin=False):
        self.pod = pod
        self.args = list(map(str, args))
        self.proc = subprocess.Popen(
            in_pod(pod, *self.args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(line)
        self.lines.put(None)  # EOF

    def readline(self, timeout=15.0):
        """Returns the next JSON line from stdout (waiting at most timeout s)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.args} in pod{self.pod} "
                                 f"within {timeout}s; stderr: {self.stderr_now()}") from None
        if line is None:
            self.lines.put(None)
            self.proc.wait(5)
            raise AssertionError(f"{self.args} in pod{self.pod} exited "
                                 f"({self.proc.poll()}); stderr: {self.stderr_now()}")
        return json.loads(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def command(self, line, timeout=15.0):
        self.send(line)
        reply = self.readline(timeout)
        assert reply.get("ok"), f"command {line!r} failed: {reply}"
        return reply

    def stderr_now(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                with contextlib.suppress(Exception):
                    stream.close()


class Pods:
    """Per-test access to the pods; everything started is stopped afterwards."""

    _next_port = [9100]

    def __init__(self):
        self.procs = []

    @classmethod
    def new_port(cls):
        port = cls._next_port[0]
        cls._next_port[0] += 1
        return port

    def popen(self, pod, args, stdin=False):
        proc = PodProcess(pod, args, stdin=stdin)
        self.procs.append(proc)
        return proc

    def byte_server(self, pod, port=None, v6=False):
        """Starts netutil.py serve in pod; returns (process, address, port)."""
        port = port or self.new_port()
        addr = pod_ip6(pod) if v6 else pod_ip4(pod)
        proc = self.popen(pod, [PY, NETUTIL, "serve", "--bind", addr, "--port", port])
        hello = proc.readline()
        assert hello.get("ready"), hello
        return proc, addr, port

    def ctl_client(self, pod, host, port, lport=None):
        args = [PY, NETUTIL, "ctl", "--host", host, "--port", port]
        if lport:
            args += ["--lport", lport]
        proc = self.popen(pod, args, stdin=True)
        info = proc.readline()
        return proc, info

    def batch(self, pod, host, port, plan, timeout=120):
        return netutil_json(pod, "batch", "--host", host, "--port", port,
                            "--plan", json.dumps(plan), timeout=timeout)

    def stop_all(self):
        for proc in self.procs:
            proc.stop()
        self.procs.clear()


# ----------------------------------------------------------------------------
# the PostgreSQL cluster


class Cluster:
    def __init__(self, directory, port):
        self.dir = str(directory)
        self.port = int(port)
        self.log = Path(self.dir) / "server.log"
        # byte ranges of the log in which a crash is deliberate
        self.allowed_crash_ranges = []

    # -- connections
    def connect(self, dbname="postgres", user="postgres"):
        conn = psycopg2.connect(host=self.dir, port=self.port, user=user, dbname=dbname,
                                connect_timeout=10)
        conn.autocommit = True
        return conn

    def sql(self, query, params=None, dbname="postgres"):
        """Runs one statement in a fresh autocommit connection; returns the
        rows as dicts (or None for statements without a result)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(query, params)
                if cur.description is None:
                    return None
                return [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def value(self, query, params=None, dbname="postgres"):
        rows = self.sql(query, params, dbname)
        assert rows and len(rows) == 1, rows
        return next(iter(rows[0].values()))

    # -- capture
    def status(self, iface=IFACE):
        rows = self.sql("SELECT * FROM capture_status() WHERE interface = %s", (iface,))
        assert len(rows) <= 1, f"capture_status() has {len(rows)} rows for {iface}: {rows}"
        return rows[0] if rows else None

    def wait_state(self, state, iface=IFACE, timeout=SPAN_TIMEOUT, other_than_pid=None):
        def check():
            st = self.status(iface)
            if st and st["state"] == state and (other_than_pid is None or st["pid"] != other_than_pid):
                return st
            return None

        try:
            return wait_for(check, timeout, desc=f"capture on {iface} in state {state!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus now: {self.safe_status(iface)}\n"
                                 f"server log tail:\n{self.log_tail()}") from None

    def safe_status(self, iface=IFACE):
        try:
            return self.status(iface)
        except Exception as exc:  # noqa: BLE001
            return f"(error: {exc})"

    def ensure_capture(self, iface=IFACE):
        """Makes sure a capture runs on iface; returns its status row."""
        st = self.status(iface)
        if st and st["state"] == "running":
            return st
        if st and st["state"] == "starting":
            return self.wait_state("running", iface)
        if st and st["state"] in ("failed", "paused") and st.get("enabled", True):
            # enabled, and the launcher restarts a failed worker with back-off
            return self.wait_state("running", iface, timeout=90)
        if st and st["state"] == "stopping":
            self.wait_state("stopped", iface)
        self.sql("SELECT capture_start(%s)", (iface,))
        return self.wait_state("running", iface)

    def stop_capture(self, iface=IFACE):
        was = self.value("SELECT capture_stop(%s)", (iface,))
        st = self.wait_state("stopped", iface)
        return was, st

    # -- spans
    def spans(self, where, params=()):
        return self.sql(
            "SELECT *, host(src_addr) AS src_host, host(dst_addr) AS dst_host, "
            "masklen(src_addr) AS src_masklen, masklen(dst_addr) AS dst_masklen "
            f"FROM spans WHERE {where} ORDER BY start_time", params)

    def spans_touching_port(self, port):
        return self.spans("src_port = %s OR dst_port = %s", (port, port))

    def span_count(self):
        return self.value("SELECT count(*) FROM spans")

    # -- server process
    def postmaster_pid(self):
        return int((Path(self.dir) / "data" / "postmaster.pid").read_text().split()[0])

    def script(self, *args, check=True, timeout=120):
        return run(["bash", str(LIB / "pgcluster.sh"), *map(str, args)], check=check,
                   timeout=timeout)

    def stop(self):
        return self.script("stop", self.dir)

    def restart(self):
        return self.script("restart", self.dir)

    def log_size(self):
        return self.log.stat().st_size if self.log.exists() else 0

    def log_text(self, start=0):
        with open(self.log, "rb") as fh:
            fh.seek(start)
            return fh.read().decode("utf-8", "replace")

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_text().splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def unexpected_crashes(self):
        """Lines of the log reporting a process "terminated by signal"
        outside the ranges recorded around deliberate crashes."""
        data = self.log.read_bytes() if self.log.exists() else b""
        found = []
        for m in re.finditer(rb"[^\n]*terminated by signal[^\n]*", data):
            if not any(lo <= m.start() < hi for lo, hi in self.allowed_crash_ranges):
                found.append(m.group().decode("utf-8", "replace"))
        return found


def start_extra_cluster(port, *flags):
    """Starts another cluster (for error tests) in the node namespace."""
    directory = tempfile.mkdtemp(prefix=f"ebpfc-{NS}-pg-")
    res = run(["bash", str(LIB / "pgcluster.sh"), "start", directory, "--port", str(port),
               *flags], check=False)
    if res.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise AssertionError(f"extra cluster {flags} failed to start:\n{res.stderr}")
    return Cluster(directory, port)


@contextlib.contextmanager
def extra_cluster(port, *flags):
    cluster = start_extra_cluster(port, *flags)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)


# ----------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def topology():
    if os.geteuid() != 0:
        pytest.exit("the integration tests need root (network namespaces)", returncode=2)
    if os.environ.get("EBPFC_TOPOLOGY_READY") == "1":
        yield NS
        return
    run(["bash", str(LIB / "topology.sh"), "up"])
    try:
        yield NS
    finally:
        run(["bash", str(LIB / "topology.sh"), "down"], check=False)


def stop_leftover_clusters():
    """Stops and removes clusters a killed earlier run left in /tmp."""
    for pidfile in Path(tempfile.gettempdir()).glob(f"ebpfc-{NS}-pg-*/data/postmaster.pid"):
        datadir = pidfile.parent
        run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/pg_ctl", "-D",
             str(datadir), "-m", "immediate", "-w", "-t", "30", "stop"], check=False)
        shutil.rmtree(datadir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(topology):
    own = not os.environ.get("EBPFC_PGDIR")
    if own:
        stop_leftover_clusters()
        directory = tempfile.mkdtemp(prefix=f"ebpfc-{NS}-pg-")
        run(["bash", str(LIB / "pgcluster.sh"), "start", directory, "--port", str(MAIN_PORT)])
        c = Cluster(directory, MAIN_PORT)
    else:
        c = Cluster(os.environ["EBPFC_PGDIR"], MAIN_PORT)
    c.sql("CREATE EXTENSION IF NOT EXISTS ebpf_capture")
    try:
        yield c
    finally:
        # Leave no capture behind for whoever uses the cluster next.
        with contextlib.suppress(Exception):
            c.sql("SELECT capture_stop(%s)", (IFACE,))
        crashes = c.unexpected_crashes()
        if own:
            c.stop()
            if not crashes:
                shutil.rmtree(c.dir, ignore_errors=True)
        if crashes:
            pytest.fail("server log has processes terminated by signal:\n" + "\n".join(crashes)
                        + f"\n(log: {c.log})", pytrace=False)


@pytest.fixture
def pods(topology):
    p = Pods()
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def capture(cluster):
    """A running capture on cni0; returns its status row."""
    return cluster.ensure_capture()


# ----------------------------------------------------------------------------
# span checks shared by the tests


HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def trace_id_is_timed(span):
    """A trace id the capture made starts with the span's start in Unix
    milliseconds, as 12 hex digits (then 20 random ones)."""
    start_ms = (span["start_time"] - UNIX_EPOCH) // timedelta(milliseconds=1)
    return span["trace_id"][:12] == f"{start_ms:012x}"


def check_span_common(span, t0, t1, iface=IFACE):
    """The properties every TCP span recorded during [t0, t1] by the capture
    on iface must have."""
    assert span["protocol"] == "tcp", span
    assert span["interface"] == iface, span
    assert HEX32.match(span["trace_id"] or ""), span["trace_id"]
    assert span["trace_id"] != "0" * 32, span
    assert trace_id_is_timed(span), (span["trace_id"], span["start_time"])
    assert HEX16.match(span["span_id"] or ""), span["span_id"]
    assert span["span_id"] != "0" * 16, span
    assert span["parent_span_id"] is None, span
    assert span["name"], span
    assert span["kind"], span
    assert span["status"] in ("UNSET", "OK", "ERROR"), span
    assert span["start_time"] is not None and span["end_time"] is not None, span
    assert span["start_time"] <= span["end_time"], span
    lo = t0.timestamp() - CLOCK_SLACK_S
    hi = t1.timestamp() + CLOCK_SLACK_S
    assert lo <= span["start_time"].timestamp() <= hi, (span["start_time"], t0, t1)
    assert lo <= span["end_time"].timestamp() <= hi, (span["end_time"], t0, t1)
    assert span["src_masklen"] in (32, 128) and span["dst_masklen"] in (32, 128), span
    attrs = span["attributes"]
    assert isinstance(attrs, dict), span
    assert attrs.get("tcp.close_reason") in ("fin", "rst", "idle", "capture_stopped"), attrs
    for key in ("bytes_sent", "bytes_received", "packets_sent", "packets_received"):
        assert span[key] is not None and span[key] >= 0, (key, span)


def key_of(span):
    return (norm_ip(span["src_host"]), span["src_port"], norm_ip(span["dst_host"]),
            span["dst_port"])


def spans_by_connection(conns, rows):
    """Pairs each netutil connection with the spans of its four-tuple.
    Returns [(key, connection, spans)] in the connections' order, and the
    keys of spans no connection made."""
    by_key = {}
    for r in rows:
        by_key.setdefault(key_of(r), []).append(r)
    pairs = []
    for c in conns:
        key = (norm_ip(c["laddr"]), c["lport"], norm_ip(c["raddr"]), c["rport"])
        pairs.append((key, c, by_key.pop(key, [])))
    return pairs, list(by_key)


def wait_spans_for_port(cluster, port, count, timeout=SPAN_TIMEOUT, settle=0.6):
    """Waits until at least count spans touch port, then waits a little
    longer (more than a flush interval) so duplicates would show too."""
    wait_for(lambda: len(cluster.spans_touching_port(port)) >= count, timeout,
             desc=f"{count} spans touching port {port}")
    time.sleep(settle)
    return cluster.spans_touching_port(port)


def wait_span_for(cluster, src, sport, dst, dport, timeout=SPAN_TIMEOUT, predicate=None):
    """Waits for the span(s) of one connection (by client->server 4-tuple)."""
    def find():
        rows = cluster.spans("src_port = %s AND dst_port = %s AND src_addr = %s::inet "
                             "AND dst_addr = %s::inet", (sport, dport, src, dst))
        if predicate:
            rows = [r for r in rows if predicate(r)]
        return rows

    return wait_for(find, timeout, desc=f"span {src}:{sport} -> {dst}:{dport}")


def dump_spans(rows):
    out = []
    for r in rows:
        out.append({k: (v.isoformat() if isinstance(v, datetime) else v)
                    for k, v in r.items()})
    return json.dumps(out, indent=1, default=str)
