#!/usr/bin/python3
"""Raw-socket HTTP/1.x traffic for the HTTP integration tests, run inside the
pods' network namespaces (``ip netns exec <ns> /usr/bin/python3 httputil.py
SUBCOMMAND``). Every result is one JSON object per line on stdout.

These exist where curl and nginx give too little control: exact segmentation
(TCP_NODELAY and small writes), pipelining, chunked bodies with extensions and
trailers, interim responses, bodies ended by the connection's close, and bytes
that are not HTTP at all. Both sides count the body bytes they put on (or took
off) the wire, so the tests can compare the spans with exact numbers.

client  --host H --port P --plan JSON|@FILE [--nodelay] [--timeout S]
        One connection; the plan is a list of steps (bytes are base64):
          {"send": B64, "piece": N, "pause": S}  write, in pieces of N bytes
                                                 (0: at once) with S s between
          {"read": [{"head": bool}, ...]}        read that many responses (a
                                                 response to HEAD has no body);
                                                 1xx before a final one count
                                                 as its "interim"
          {"interim": 1}                         read one 1xx response
          {"eof": true}                          read until the peer closes
          {"recv_some": S}                       read what arrives within S s
          {"sleep": S}
          {"shutdown": true}                     shutdown(SHUT_WR)
          {"reset": true}                        close with a RST (SO_LINGER 0)
        Prints {"laddr", "lport", "raddr", "rport", "responses": [{"status",
        "version", "headers", "body_wire", "interim", "reason"}], "eof_bytes",
        "received", "sent", "error"}.

serve   --bind ADDR --port P [--mode http|script] [--script JSON] [--cookie V]
        mode http: answers each request on a connection (pipelined or not) as
        its query string asks:
          status=N        status code (200)
          len=N           body length (0)
          te=chunked      chunked body, chunk=N bytes per chunk (1000), trailer=1
          eof=1           HTTP/1.0-style: no Content-Length, the body ends with
                          the connection's close
          clh=N           a Content-Length: N header on a response without a
                          body (HEAD, 204, 304)
          interim=N       N "103 Early Hints" responses first
          continue=0      do not answer "Expect: 100-continue" (default: do)
          piece=N,pause=S write the response in pieces of N bytes, S s apart
          delay=S         wait S s before answering
          hpad=N          N bytes of extra response header fields
          close=1         Connection: close, and close after the response
        --cookie V adds "Set-Cookie: V" to every response.
        One line per request: {"peer", "method", "target", "req_body",
        "status", "resp_body"}.
        mode script: each connection runs the next entry of --script (a list,
        used round robin) of steps {"send": B64}, {"recv": S} (read what comes
        within S s), {"sleep": S}, {"close": true}; then reads until EOF.
        One line per connection: {"peer", "received", "sent"}.
"""

import argparse
import base64
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def family_of(host):
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


class Eof(Exception):
    pass


class Reader:
    """Buffered reads of one socket; counts what it took off the wire."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.received = 0

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Eof()
        self.received += len(data)
        self.buf += data

    def take(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        """A start line and header fields, up to and with the empty line."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                return self.take(i + 4)
            if len(self.buf) > 1 << 20:
                raise ValueError("header block over 1 MiB")
            self.fill()

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self.take(i + 2)
            self.fill()

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        return self.take(n)

    def until_eof(self):
        n = len(self.buf)
        self.buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.received += len(data)
                n += len(data)
        except (ConnectionResetError, socket.timeout):
            pass
        return n


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0]
    headers = {}
    for ln in lines[1:]:
        if not ln:
            continue
        name, _, value = ln.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = headers[key] + ", " + value if key in headers else value
    return start, headers


def read_body(reader, headers, until_eof_ok=True):
    """Reads a body framed by headers; returns the bytes it took on the wire
    (chunk framing and trailer included)."""
    te = headers.get("transfer-encoding", "").lower()
    if te.split(",")[-1].strip() == "chunked":
        n = 0
        while True:
            ln = reader.line()
            n += len(ln)
            size = int(ln.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = reader.line()
                    n += len(t)
                    if t == b"\r\n":
                        return n
            reader.exact(size + 2)
            n += size + 2
    if "content-length" in headers:
        cl = int(headers["content-length"])
        reader.exact(cl)
        return cl
    if until_eof_ok:
        return reader.until_eof()
    return 0


# --------------------------------------------------------------------- client


def read_response(reader, head_request, interim_before=0):
    interim = interim_before
    while True:
        head = reader.head()
        start, headers = parse_head(head)
        parts = start.split(" ", 2)
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        if 100 <= status < 200 and status != 101:
            interim += 1
            continue
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = 0
        else:
            body = read_body(reader, headers)
        return {"status": status, "version": version, "reason": reason, "headers": headers,
                "body_wire": body, "interim": interim}


def send_pieces(sock, data, piece, pause):
    if not piece:
        sock.sendall(data)
        return
    for i in range(0, len(data), piece):
        sock.sendall(data[i:i + piece])
        if pause:
            time.sleep(pause)


def cmd_client(args):
    if args.plan.startswith("@"):
        with open(args.plan[1:]) as fh:
            plan = json.load(fh)
    else:
        plan = json.loads(args.plan)
    fam = family_of(args.host)
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    if args.nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((args.host, args.port))
    local, remote = sock.getsockname(), sock.getpeername()
    out = {"laddr": local[0], "lport": local[1], "raddr": remote[0], "rport": remote[1],
           "responses": [], "eof_bytes": None, "sent": 0, "error": None}
    reader = Reader(sock)
    pending_interim = 0
    reset = False
    try:
        for step in plan:
            if "send" in step:
                data = base64.b64decode(step["send"])
                send_pieces(sock, data, step.get("piece", 0), step.get("pause", 0))
                out["sent"] += len(data)
            elif "read" in step:
                for want in step["read"]:
                    r = read_response(reader, want.get("head", False), pending_interim)
                    pending_interim = 0
                    out["responses"].append(r)
            elif "interim" in step:
                head = reader.head()
                start, _ = parse_head(head)
                status = int(start.split(" ")[1])
                if not 100 <= status < 200:
                    raise ValueError("expected an interim response, got %r" % start)
                pending_interim += 1
            elif "eof" in step:
                out["eof_bytes"] = reader.until_eof()
            elif "recv_some" in step:
                sock.settimeout(step["recv_some"])
                try:
                    reader.fill()
                except (Eof, socket.timeout, ConnectionResetError):
                    pass
                sock.settimeout(args.timeout)
                reader.buf = b""
            elif "sleep" in step:
                time.sleep(step["sleep"])
            elif "shutdown" in step:
                sock.shutdown(socket.SHUT_WR)
            elif "reset" in step:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                reset = True
                break
    except (OSError, Eof, ValueError) as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        sock.close()
    out["received"] = reader.received
    out["reset"] = reset
    emit(out)


# --------------------------------------------------------------------- server


def body_bytes(n):
    block = bytes(range(33, 127)) * 700
    while len(block) < n:
        block += block
    return block[:n]


def q(params, name, default, conv=int):
    v = params.get(name)
    return conv(v[0]) if v else default


COOKIE = [""]  # --cookie: a Set-Cookie value on every response


def build_response(method, params, version_in):
    status = q(params, "status", 200)
    length = q(params, "len", 0)
    chunked = q(params, "te", "", str) == "chunked"
    eof = q(params, "eof", 0) == 1
    close = q(params, "close", 0) == 1
    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    pre = b""
    for _ in range(q(params, "interim", 0)):
        pre += b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    version = "HTTP/1.0" if eof else "HTTP/1.1"
    hdr = ["%s %d %s" % (version, status, "Whatever"), "Server: httputil"]
    if q(params, "hpad", 0):
        pad = q(params, "hpad", 0)
        i = 0
        while pad > 0:
            n = min(pad, 200)
            hdr.append("X-Pad-%d: %s" % (i, "p" * n))
            pad -= n
            i += 1
    if COOKIE[0]:
        hdr.append("Set-Cookie: " + COOKIE[0])
    body = b""
    if no_body:
        if q(params, "clh", None) is not None:
            hdr.append("Content-Length: %d" % q(params, "clh", 0))
        elif method == "HEAD" and not chunked:
            hdr.append("Content-Length: %d" % length)
        elif method == "HEAD":
            hdr.append("Transfer-Encoding: chunked")
    elif eof:
        body = body_bytes(length)
    elif chunked:
        hdr.append("Transfer-Encoding: chunked")
        size = max(1, q(params, "chunk", 1000))
        data = body_bytes(length)
        for i in range(0, len(data), size):
            part = data[i:i + size]
            ext = b";x=1" if (i // size) % 2 else b""
            body += b"%x%s\r\n%s\r\n" % (len(part), ext, part)
        body += b"0\r\n"
        if q(params, "trailer", 0):
            body += b"X-Checksum: 12345\r\nX-Other: two\r\n"
        body += b"\r\n"
    else:
        hdr.append("Content-Length: %d" % length)
        body = body_bytes(length)
    if close or eof:
        if not eof:
            hdr.append("Connection: close")
    head = ("\r\n".join(hdr) + "\r\n\r\n").encode()
    wire_body = 0 if no_body else len(body)
    keep = not (close or eof) and version_in != "HTTP/1.0"
    return pre + head + body, status, wire_body, keep


def serve_http(conn, peer):
    reader = Reader(conn)
    try:
        while True:
            try:
                head = reader.head()
            except Eof:
                break
            start, headers = parse_head(head)
            parts = start.split(" ")
            method, target, version = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
            params = parse_qs(urlsplit(target).query)
            if headers.get("expect", "").lower() == "100-continue" and q(params, "continue", 1):
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req_body = read_body(reader, headers, until_eof_ok=False)
            delay = q(params, "delay", 0.0, float)
            if delay:
                time.sleep(delay)
            data, status, resp_body, keep = build_response(method, params, version)
            if headers.get("connection", "").lower() == "close":
                keep = False
            piece = q(params, "piece", 0)
            if piece:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_pieces(conn, data, piece, q(params, "pause", 0.0, float))
            emit({"peer": list(peer[:2]), "method": method, "target": target,
                  "req_body": req_body, "status": status, "resp_body": resp_body})
            if not keep:
                break
    except (OSError, ValueError, Eof) as exc:
        emit({"peer": list(peer[:2]), "error": "%s: %s" % (type(exc).__name__, exc)})
    finally:
        conn.close()


def serve_script(conn, peer, steps):
    received = sent = 0
    conn.settimeout(10)
    try:
        for step in steps:
            if "send" in step:
                data = base64.b64decode(step["send"])
                conn.sendall(data)
                sent += len(data)
            elif "recv" in step:
                conn.settimeout(step["recv"])
                try:
                    data = conn.recv(65536)
                    received += len(data)
                except socket.timeout:
                    pass
                conn.settimeout(10)
            elif "sleep" in step:
                time.sleep(step["sleep"])
            elif "close" in step:
                break
        else:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                received += len(data)
    except OSError:
        pass
    finally:
        conn.close()
    emit({"peer": list(peer[:2]), "received": received, "sent": sent})


def cmd_serve(args):
    fam = family_of(args.bind)
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(128)
    script = json.loads(args.script) if args.script else [[]]
    COOKIE[0] = args.cookie
    emit({"ready": True, "port": lsock.getsockname()[1]})
    n = 0
    while True:
        conn, peer = lsock.accept()
        if args.mode == "http":
            t = threading.Thread(target=serve_http, args=(conn, peer), daemon=True)
        else:
            t = threading.Thread(target=serve_script, args=(conn, peer, script[n % len(script)]),
                                 daemon=True)
        n += 1
        t.start()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("client")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--nodelay", action="store_true")
    p.add_argument("--timeout", type=float, default=15.0)
    p = sub.add_parser("serve")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["http", "script"], default="http")
    p.add_argument("--script", default="")
    p.add_argument("--cookie", default="")
    args = parser.parse_args()
    {"client": cmd_client, "serve": cmd_serve}[args.cmd](args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(0)
