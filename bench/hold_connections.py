#!/usr/bin/env python3
"""hold_connections.py - many long-lived TCP connections, for
bench/open_connections_bench.sh.

  serve --bind ADDR --port P
      accepts every connection and reads (and drops) what comes, until killed.
  connect --host ADDR --port P --count N --every S
      opens N connections, prints "ready N", then sends one byte on each of
      them every S seconds (so that none looks idle), until killed.
"""

import argparse
import resource
import selectors
import socket
import time


def raise_fd_limit(n):
    """Room for n sockets, up to the hard limit (which may not be raised here)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256 if hard == resource.RLIM_INFINITY else min(n + 256, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < n + 256:
        raise SystemExit(f"{n} connections need {n + 256} file descriptors; the hard limit is {hard}")


def serve(args):
    # as many connections as the hard limit allows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ)
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is lsock:
                try:
                    conn, _ = lsock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()


def connect(args):
    raise_fd_limit(args.count)
    socks = []
    for _ in range(args.count):
        s = socket.create_connection((args.host, args.port), timeout=10)
        socks.append(s)
    print(f"ready {len(socks)}", flush=True)
    while True:
        t0 = time.monotonic()
        for s in socks:
            s.send(b"x")
        time.sleep(max(0.0, args.every - (time.monotonic() - t0)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("connect")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--every", type=float, default=10.0)
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        connect(args)


if __name__ == "__main__":
    main()
