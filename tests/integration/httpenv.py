"""Test-side helpers for the HTTP integration tests: nginx servers in pods,
the raw HTTP client and server of httputil.py, tshark on the bridge, and
checks shared by the HTTP span tests."""

import base64
import contextlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from conftest import (
    CLOCK_SLACK_S, HEX16, HEX32, IFACE, PY, node_ns, pod_ip4, pod_ip6, pod_ns, pod_run, run,
    trace_id_is_timed, wait_for,
)

HERE = Path(__file__).resolve().parent
HTTPUTIL = HERE / "httputil.py"

# Every attribute key an http row may carry (the documented set).
HTTP_ATTR_KEYS = {
    "server.address", "server.port", "http.request.resend_count",
    "network.protocol.version", "http.interim_responses",
    "tracestate", "http.traceparent_invalid", "http.request.chunked", "http.response.chunked",
    "http.tunnel", "http.incomplete", "http.incomplete_reasons", "tcp.span_id",
}
STANDARD_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                    "PATCH"}


def b64(data):
    if isinstance(data, str):
        data = data.encode("latin-1")
    return base64.b64encode(data).decode()


def request(method, target, host="h", headers=(), body=None, chunks=None, version="HTTP/1.1",
            trailer=b""):
    """Bytes of one request. body: a Content-Length body; chunks: a list of
    chunk payloads sent chunked (an empty last chunk is added). Returns
    (bytes, body bytes on the wire)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(headers)
    wire = b""
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
        for i, c in enumerate(chunks):
            ext = b";n=v" if i % 2 else b""
            wire += b"%x%s\r\n%s\r\n" % (len(c), ext, c)
        wire += b"0\r\n" + trailer + b"\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        wire = body
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + wire, len(wire)


def raw_client(pod, host, port, plan, nodelay=False, timeout=60, client_timeout=15.0):
    """Runs httputil.py client in pod; returns its JSON result."""
    with tempfile.NamedTemporaryFile("w", prefix="ebpfc-plan-", suffix=".json") as fh:
        json.dump(plan, fh)
        fh.flush()
        args = [PY, HTTPUTIL, "client", "--host", host, "--port", port, "--plan", "@" + fh.name,
                "--timeout", client_timeout]
        if nodelay:
            args.append("--nodelay")
        res = pod_run(pod, *args, timeout=timeout)
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stdout + res.stderr
    return lines[0]


def send_step(data, piece=0, pause=0.0):
    return {"send": b64(data), "piece": piece, "pause": pause}


def raw_server(pods, pod, port=None, v6=False, mode="http", script=None, cookie=None):
    """Starts httputil.py serve in pod; returns (process, address, port)."""
    port = port or pods.new_port()
    addr = pod_ip6(pod) if v6 else pod_ip4(pod)
    args = [PY, HTTPUTIL, "serve", "--bind", addr, "--port", port, "--mode", mode]
    if script is not None:
        args += ["--script", json.dumps(script)]
    if cookie:
        args += ["--cookie", cookie]
    proc = pods.popen(pod, args)
    hello = proc.readline()
    assert hello.get("ready"), hello
    return proc, addr, port


def wait_listening(pod, port, timeout=10):
    wait_for(lambda: pod_run(pod, "ss", "-Hltn", f"sport = :{port}").stdout.strip(), timeout,
             desc=f"a listener on port {port} in pod{pod}")


# ----------------------------------------------------------------------------
# nginx


BACKEND_LOCATIONS = """
        location /ok { return 200 "hello\\n"; }
        location /e500 { return 500 "boom\\n"; }
        location /e503 { return 503 "busy\\n"; }
        location /e404 { return 404 "nope\\n"; }
        location /e401 { return 401 "who\\n"; }
        location /nocontent { return 204; }
        location /cookie { add_header Set-Cookie "sid=@COOKIE@; HttpOnly"; return 200 "c\\n"; }
        location /f/ { }
"""

FILES = {"f/1k.bin": 1000, "f/big.bin": 150_000, "f/small.txt": 17}


class Nginx:
    """nginx (master and one worker, in the foreground) in a pod.

    role "backend": fixed answers (see BACKEND_LOCATIONS) and static files
    (FILES); role "proxy": proxy_pass of everything to `upstream`, forwarding
    traceparent and tracestate."""

    def __init__(self, pod, port, role="backend", upstream=None, cookie="none"):
        self.pod = pod
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="ebpfc-nginx-"))
        self.dir.chmod(0o755)
        www = self.dir / "www"
        for name, size in FILES.items():
            path = www / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes((b"0123456789abcdef" * (size // 16 + 1))[:size])
        for p in [www, *www.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if role == "backend":
            locations = BACKEND_LOCATIONS.replace("@COOKIE@", cookie)
        else:
            locations = f"""
        location / {{
            proxy_pass http://{upstream};
            proxy_set_header traceparent $http_traceparent;
            proxy_set_header tracestate $http_tracestate;
        }}
"""
        d = self.dir
        conf = f"""
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    default_type application/octet-stream;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {pod_ip4(pod)}:{port};
        listen [{pod_ip6(pod)}]:{port};
        root {www};
{locations}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", pod_ns(pod), "nginx", "-c",
             str(d / "nginx.conf"), "-p", str(d), "-e", str(d / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(pod, port)
        except AssertionError:
            self.stop()
            raise AssertionError(f"nginx did not start: {self.error_log()}") from None

    def error_log(self):
        try:
            return (self.dir / "error.log").read_text()[-4000:]
        except OSError as exc:
            return f"(no error log: {exc})"

    def access_log(self):
        try:
            return (self.dir / "access.log").read_text()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: closes idle keep-alives
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(Exception):
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------
# tshark on the bridge


class Tshark:
    """tshark capturing `tcp port P` on cni0 in the node namespace to a file."""

    def __init__(self, port):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="ebpfc-tshark-"))
        self.file = self.dir / "cap.pcapng"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", node_ns(), "tshark", "-n", "-i", IFACE, "-f",
             f"tcp port {port}", "-w", str(self.file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = []
        started = threading.Event()

        def read_stderr():
            for line in self.proc.stderr:
                self.stderr.append(line)
                if "Capturing on" in line:
                    started.set()
            started.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        if not started.wait(20) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"tshark did not start: {''.join(self.stderr)}")
        # "Capturing on" comes from dumpcap once the socket is open; the file
        # exists once it writes its header.
        wait_for(lambda: self.file.exists(), 10, desc="tshark's capture file")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def fields(self, display_filter, fields):
        """Rows of -T fields output; multiple occurrences joined by '|'."""
        cmd = ["tshark", "-n", "-r", str(self.file), "-d", f"tcp.port=={self.port},http",
               "-Y", display_filter, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
               "-E", "aggregator=|"]
        for f in fields:
            cmd += ["-e", f]
        res = run(cmd)
        rows = []
        for line in res.stdout.splitlines():
            if line.strip():
                rows.append(line.split("\t"))
        return rows

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------
# span checks


def http_rows(cluster, where, params=()):
    return cluster.spans(f"protocol = 'http' AND ({where})", params)


def wait_http(cluster, count, where, params=(), timeout=15.0, settle=0.7):
    """Waits for at least count http spans matching where, then a little
    longer so duplicates would show too; returns them (by start_time)."""
    wait_for(lambda: len(http_rows(cluster, where, params)) >= count, timeout,
             desc=f"{count} http spans where {where} {params}")
    time.sleep(settle)
    return http_rows(cluster, where, params)


def check_http_span(span, t0=None, t1=None):
    """What every http row must look like; returns the problems found."""
    p = []
    attrs = span["attributes"]
    if span["protocol"] != "http":
        p.append("protocol")
    if span["kind"] != "SERVER":
        p.append(f"kind {span['kind']!r}")
    if span["interface"] != IFACE:
        p.append("interface")
    if not HEX32.match(span["trace_id"] or "") or span["trace_id"] == "0" * 32:
        p.append(f"trace_id {span['trace_id']!r}")
    elif (span["parent_span_id"] is None and span["trace_id"] not in CLIENT_TRACE_IDS
          and not trace_id_is_timed(span)):
        p.append(f"trace_id {span['trace_id']!r} does not start with {span['start_time']}")
    if not HEX16.match(span["span_id"] or "") or span["span_id"] == "0" * 16:
        p.append(f"span_id {span['span_id']!r}")
    if span["parent_span_id"] is not None and (not HEX16.match(span["parent_span_id"])
                                               or span["parent_span_id"] == "0" * 16):
        p.append(f"parent_span_id {span['parent_span_id']!r}")
    if span["packets_sent"] is not None or span["packets_received"] is not None:
        p.append("packets_* not NULL")
    method = span["http_method"]
    want_name = method if method in STANDARD_METHODS else "HTTP"
    if span["name"] != want_name:
        p.append(f"name {span['name']!r}, expected {want_name!r}")
    code = span["http_status"]
    # no response is an error, unless its outcome is unknown: the exchange was
    # emitted early because too many were open, its response was lost in
    # capture, or which response was its could not be told after a loss
    unknown = {"queue_bound", "response_gap", "unpaired"} & \
        set(span["attributes"].get("http.incomplete_reasons", []))
    want_status = "ERROR" if (code is None and not unknown) or (code or 0) >= 500 else "UNSET"
    if span["status"] != want_status:
        p.append(f"status {span['status']!r} for http_status {code}")
    if not isinstance(attrs, dict):
        p.append("attributes not an object")
        return p
    extra = set(attrs) - HTTP_ATTR_KEYS
    if extra:
        p.append(f"unexpected attribute keys {sorted(extra)}")
    if not HEX16.match(str(attrs.get("tcp.span_id", ""))):
        p.append(f"tcp.span_id {attrs.get('tcp.span_id')!r}")
    if not isinstance(attrs.get("http.incomplete"), bool):
        p.append("http.incomplete not a bool")
    if attrs.get("http.incomplete") and not attrs.get("http.incomplete_reasons"):
        p.append("incomplete without reasons")
    if not attrs.get("http.incomplete") and "http.incomplete_reasons" in attrs:
        p.append("reasons on a complete exchange")
    for key in ("bytes_sent", "bytes_received"):
        if span[key] is None or span[key] < 0:
            p.append(f"{key} = {span[key]}")
    for key in ("http.request.method", "http.request.body.size", "http.response.body.size"):
        if key in attrs:
            p.append(f"{key} repeats a column")
    if method is None and span["http_target"] is not None:
        p.append("a target without a method")
    if span["start_time"] > span["end_time"]:
        p.append("start_time > end_time")
    if t0 is not None and t1 is not None:
        lo = t0.timestamp() - CLOCK_SLACK_S
        hi = t1.timestamp() + CLOCK_SLACK_S
        for key in ("start_time", "end_time"):
            if not lo <= span[key].timestamp() <= hi:
                p.append(f"{key} {span[key]} outside [{t0}, {t1}]")
    return p


def assert_http_spans_ok(rows, t0=None, t1=None):
    problems = []
    for r in rows:
        for msg in check_http_span(r, t0, t1):
            problems.append(f"{r['http_method']} {r['http_target']!r} "
                            f"{r['src_host']}:{r['src_port']}: {msg}")
    assert not problems, "\n".join(problems) + "\n" + brief(rows)


def brief(rows):
    """A compact dump of http rows for assertion messages."""
    out = []
    for r in rows:
        out.append(f"  {r['protocol']} {r['src_host']}:{r['src_port']} -> "
                   f"{r['dst_host']}:{r['dst_port']} {r['name']!r} {r['http_method']} "
                   f"{r['http_target']!r} {r['http_status']} {r['status']} "
                   f"sent={r['bytes_sent']} recv={r['bytes_received']} "
                   f"trace={r['trace_id']} parent={r['parent_span_id']} span={r['span_id']} "
                   f"start={r['start_time'].isoformat()} end={r['end_time'].isoformat()} "
                   f"attrs={json.dumps(r['attributes'], sort_keys=True)}")
    return "\n".join(out)


def worker_rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def secrets_in_spans(cluster, secrets):
    """Rows of the whole spans table whose text holds any of the secrets."""
    found = {}
    for s in secrets:
        n = cluster.value("SELECT count(*) FROM spans s WHERE strpos(s::text, %s) > 0", (s,))
        if n:
            found[s] = n
    return found


_traceparent_re = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


# Trace ids the tests' clients sent (new_traceparent): a span of such a
# request that has no parent is the root of the client's trace, whose id does
# not start with a time.
CLIENT_TRACE_IDS = set()


def new_traceparent():
    """A W3C traceparent of a new trace (registered in CLIENT_TRACE_IDS)."""
    trace = secrets.token_hex(16)
    CLIENT_TRACE_IDS.add(trace)
    return f"00-{trace}-{secrets.token_hex(8)}-01"


def traceparent_ids(tp):
    m = _traceparent_re.match(tp)
    assert m, tp
    return m.group(1), m.group(2)
