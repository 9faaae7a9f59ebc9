#!/usr/bin/python3
"""Traffic helpers for the integration tests, run inside the pods' network
namespaces (``ip netns exec <ns> /usr/bin/python3 netutil.py SUBCOMMAND``).

Subcommands (every result is printed as one JSON object per line):

serve    --bind ADDR --port P [--close-first] [--http]
         A TCP server speaking the "byte protocol": the client sends a header
         of two big-endian uint32 (UP, DOWN), then UP bytes; the server reads
         exactly UP bytes and answers with exactly DOWN bytes. Repeats until
         the client closes, then closes too. Prints {"ready": true} once it
         listens and one line per finished connection with what it counted.
         --http: reads one HTTP request head instead, answers it with a
         "Connection: close" response of DOWN_HTTP bytes of body, and closes
         first.

batch    --host H --port P --plan JSON [--src ADDR] [--lport L --wait-eof] [--hold S] [--gap S]
         [--http]
         One connection per plan entry. An entry [UP, DOWN] is one round of
         the byte protocol followed by a normal close; null is a connection
         that sends nothing and closes at once. --lport binds every
         connection to local port L; --wait-eof waits for the server to close
         first (serve --close-first), so L is free again at once. --hold
         waits S seconds after connecting, before the round. --http: each
         connection sends "GET /<entry> HTTP/1.1" (for serve --http) and
         reads the response until the server closes. --src binds every
         connection to local address ADDR.

ctl      --host H --port P [--lport L]
         One connection (from local port L if given) driven by commands on stdin: "round UP DOWN",
         "close", "reset" (SO_LINGER 0, so close sends a RST), "quit".

refused  --host H --port P
         Connects to a port nobody listens on (the peer answers the SYN with
         a RST) from a known local port.

sink     --bind ADDR --port P
         Accepts connections (receive buffer 4 KiB) and never reads from
         them, so their receive windows close. Prints {"ready": true}.

fill     --host H --port P [--hold S]
         Connects and sends until the peer's window is closed (no progress for
         0.3 s), waits S seconds (default 1) while the kernel probes the zero
         window, then resets the connection. Prints what it sent.

hostile  --iface eth0 --dst-mac MAC --src-ip4 A --dst-ip4 B --src-ip6 A6
         --dst-ip6 B6 --count N
         Sends N malformed Ethernet frames through an AF_PACKET raw socket.
"""

import argparse
import errno
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct("!II")
CHUNK = 65536


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def recv_exact(sock, n):
    """Reads exactly n bytes; returns the number read (less only on EOF)."""
    got = 0
    while got < n:
        data = sock.recv(min(CHUNK, n - got))
        if not data:
            break
        got += len(data)
    return got


def send_pattern(sock, n):
    block = bytes(range(256)) * (CHUNK // 256)
    left = n
    while left > 0:
        chunk = block[: min(CHUNK, left)]
        sock.sendall(chunk)
        left -= len(chunk)


def family_of(host):
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


# --------------------------------------------------------------------- serve


HTTP_BODY = b"hello from netutil"


def serve_http_conn(conn, peer):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = conn.recv(4096)
        if not data:
            break
        head += data
    sent = 0
    if b"\r\n\r\n" in head:
        response = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                    % len(HTTP_BODY)) + HTTP_BODY
        conn.sendall(response)
        sent = len(response)
    conn.close()
    emit({"peer": list(peer[:2]), "received": len(head), "sent": sent, "end": "http"})


def serve_conn(conn, peer, close_first=False):
    received = 0
    sent = 0
    rounds = 0
    how = "eof"
    try:
        while True:
            hdr = b""
            while len(hdr) < HEADER.size:
                data = conn.recv(HEADER.size - len(hdr))
                if not data:
                    break
                hdr += data
            received += len(hdr)
            if len(hdr) < HEADER.size:
                break
            up, down = HEADER.unpack(hdr)
            got = recv_exact(conn, up)
            received += got
            if got < up:
                how = "short"
                break
            send_pattern(conn, down)
            sent += down
            rounds += 1
            if close_first:
                how = "closed first"
                break
    except ConnectionResetError:
        how = "reset"
    except OSError as exc:  # pragma: no cover - reported to the test
        how = "error: %s" % exc
    finally:
        conn.close()
    emit({"peer": list(peer[:2]), "received": received, "sent": sent,
          "rounds": rounds, "end": how})


def cmd_serve(args):
    fam = family_of(args.bind)
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(128)
    emit({"ready": True, "port": lsock.getsockname()[1]})
    while True:
        conn, peer = lsock.accept()
        if args.http:
            threading.Thread(target=serve_http_conn, args=(conn, peer), daemon=True).start()
        else:
            threading.Thread(target=serve_conn, args=(conn, peer, args.close_first),
                             daemon=True).start()


# --------------------------------------------------------------------- clients


def connect(host, port, timeout=15.0, lport=0, src=None):
    fam = family_of(host)
    # A fixed local port is busy until this side's last connection on the
    # same four-tuple has its FIN acknowledged (LAST_ACK); on a loaded
    # machine that takes a moment: try again for up to two seconds.
    deadline = time.monotonic() + 2.0
    while True:
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if lport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if lport or src:
                sock.bind((src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), lport))
            sock.connect((host, port))
            return sock
        except OSError as exc:
            sock.close()
            if not lport or exc.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def do_round(sock, up, down):
    sock.sendall(HEADER.pack(up, down))
    send_pattern(sock, up)
    got = recv_exact(sock, down)
    if got != down:
        raise RuntimeError("short response: %d of %d bytes" % (got, down))
    return HEADER.size + up, down


def describe(sock):
    local = sock.getsockname()
    remote = sock.getpeername()
    return {"laddr": local[0], "lport": local[1], "raddr": remote[0], "rport": remote[1]}


def cmd_batch(args):
    plan = json.loads(args.plan)
    for entry in plan:
        sock = connect(args.host, args.port, lport=args.lport, src=args.src)
        info = describe(sock)
        if args.hold:
            time.sleep(args.hold)
        if args.http:
            request = ("GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (entry, args.host)).encode()
            sock.sendall(request)
            sent, received = len(request), 0
            while True:  # the server closes first
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
        elif entry is None:
            sent, received = 0, 0
        else:
            sent, received = do_round(sock, entry[0], entry[1])
        if args.wait_eof and not args.http:
            # the server closes first (serve --close-first): wait for its FIN,
            # so this side ends without TIME_WAIT and the next connection can
            # take the same local port at once
            if sock.recv(1) != b"":
                raise RuntimeError("expected the server to close first")
        sock.close()
        info.update({"plan": entry, "sent": sent, "received": received,
                     "closed_at": time.time()})
        emit(info)
        if args.gap:
            time.sleep(args.gap)


def cmd_ctl(args):
    sock = connect(args.host, args.port, lport=args.lport)
    info = describe(sock)
    emit(info)
    total_sent = 0
    total_received = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "round":
            sent, received = do_round(sock, int(words[1]), int(words[2]))
            total_sent += sent
            total_received += received
            emit({"ok": True, "sent": sent, "received": received,
                  "total_sent": total_sent, "total_received": total_received})
        elif words[0] == "close":
            sock.close()
            emit({"ok": True, "closed": "fin"})
            return
        elif words[0] == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            emit({"ok": True, "closed": "rst"})
            return
        elif words[0] == "quit":
            return
        else:
            emit({"ok": False, "error": "unknown command %r" % words[0]})


def cmd_refused(args):
    fam = family_of(args.host)
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
    lport = sock.getsockname()[1]
    try:
        sock.connect((args.host, args.port))
        emit({"lport": lport, "refused": False})
    except ConnectionRefusedError:
        emit({"lport": lport, "refused": True})
    finally:
        sock.close()


def cmd_sink(args):
    fam = family_of(args.bind)
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # set before listen(): accepted sockets inherit it, and the window with it
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lsock.bind((args.bind, args.port))
    lsock.listen(16)
    emit({"ready": True})
    held = []
    while True:
        conn, _ = lsock.accept()
        held.append(conn)  # never read


def cmd_fill(args):
    sock = connect(args.host, args.port)
    info = describe(sock)
    sock.settimeout(0.3)
    chunk = b"z" * 65536
    sent = 0
    try:
        while True:
            sent += sock.send(chunk)
    except socket.timeout:
        pass
    time.sleep(args.hold)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    info.update({"sent": sent})
    emit(info)


# --------------------------------------------------------------------- hostile frames


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


class Frames:
    """Builds malformed frames; each builder returns (category, frame bytes)."""

    def __init__(self, rng, dst_mac, src_mac, src4, dst4, src6, dst6):
        self.rng = rng
        self.dst_mac = dst_mac
        self.src_mac = src_mac
        self.src4 = ipaddress.IPv4Address(src4).packed
        self.dst4 = ipaddress.IPv4Address(dst4).packed
        self.src6 = ipaddress.IPv6Address(src6).packed
        self.dst6 = ipaddress.IPv6Address(dst6).packed

    # -- layers
    def eth(self, ethertype, payload, tags=()):
        hdr = self.dst_mac + self.src_mac
        for tpid, vid in tags:
            hdr += struct.pack("!HH", tpid, vid & 0x0FFF)
        return hdr + struct.pack("!H", ethertype) + payload

    def ipv4(self, payload, proto=6, ihl=5, tot_len=None, frag=0, options=b"", ident=None):
        hlen = 20 + len(options)
        if tot_len is None:
            tot_len = hlen + len(payload)
        ident = self.rng.randrange(65536) if ident is None else ident
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 0xF), 0, tot_len & 0xFFFF, ident,
                          frag & 0xFFFF, 64, proto, 0, self.src4, self.dst4) + options
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        return hdr + payload

    def ipv6(self, payload, nh=6, plen=None):
        if plen is None:
            plen = len(payload)
        return struct.pack("!IHBB16s16s", 0x60000000, plen & 0xFFFF, nh, 64,
                           self.src6, self.dst6) + payload

    def tcp(self, sport, dport, seq, ack, flags, doff=5, payload=b"", v6=False,
            options=b"", fix_csum=True):
        hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          (doff & 0xF) << 4, flags & 0xFF, 65535, 0, 0) + options
        seg = hdr + payload
        if fix_csum:
            if v6:
                pseudo = self.src6 + self.dst6 + struct.pack("!IxxxB", len(seg), 6)
            else:
                pseudo = self.src4 + self.dst4 + struct.pack("!xBH", 6, len(seg))
            seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
        return seg

    def rport(self):
        # Below 9000: the tests' servers listen on 9100 and up, clients use
        # 20000 and up, so no forged segment lands in a connection they check.
        return self.rng.randrange(1, 9000)

    def rbytes(self, n):
        return self.rng.randbytes(n)

    def good_tcp(self, v6=False, flags=0x18, payload=b"x" * 10, **kw):
        seg = self.tcp(self.rport(), self.rport(), self.rng.getrandbits(32),
                       self.rng.getrandbits(32), flags, payload=payload, v6=v6, **kw)
        if v6:
            return self.eth(0x86DD, self.ipv6(seg))
        return self.eth(0x0800, self.ipv4(seg))

    # -- categories
    def truncated_eth(self):
        # AF_PACKET refuses frames shorter than the 14-byte Ethernet header;
        # the shortest are a bare header, or a VLAN tag cut in the middle.
        choice = self.rng.randrange(4)
        if choice == 0:
            return self.dst_mac + self.src_mac + struct.pack("!H", self.rng.choice([0x0800, 0x86DD]))
        if choice == 1:
            return self.dst_mac + self.src_mac + struct.pack("!H", 0x8100) + self.rbytes(self.rng.randrange(0, 4))
        if choice == 2:
            return self.dst_mac + self.src_mac + struct.pack("!HHH", 0x88A8, 5, 0x8100) + self.rbytes(self.rng.randrange(0, 2))
        return self.dst_mac + self.src_mac + struct.pack("!H", 0x0800) + self.rbytes(1)

    def truncated_ipv4(self):
        full = self.ipv4(self.tcp(self.rport(), self.rport(), 1, 1, 0x10))
        return self.eth(0x0800, full[: self.rng.randrange(0, 20)])

    def truncated_ipv6(self):
        full = self.ipv6(self.tcp(self.rport(), self.rport(), 1, 1, 0x10, v6=True))
        return self.eth(0x86DD, full[: self.rng.randrange(0, 40)])

    def truncated_tcp(self):
        v6 = self.rng.random() < 0.5
        seg = self.tcp(self.rport(), self.rport(), 1, 1, 0x18, payload=b"abc", v6=v6)
        seg = seg[: self.rng.randrange(0, 20)]
        if v6:
            return self.eth(0x86DD, self.ipv6(seg))
        return self.eth(0x0800, self.ipv4(seg))

    def bad_ihl(self):
        seg = self.tcp(self.rport(), self.rport(), 7, 7, 0x18, payload=b"hello")
        ihl = self.rng.choice([0, 1, 2, 3, 4, 15, 14, 6])
        return self.eth(0x0800, self.ipv4(seg, ihl=ihl))

    def ipv4_len_lies(self):
        seg = self.tcp(self.rport(), self.rport(), 9, 9, 0x18, payload=self.rbytes(self.rng.randrange(0, 64)))
        real = 20 + len(seg)
        tot = self.rng.choice([0, 1, 19, 20, 21, 39, real - 1, real + 1, real + 1000, 1500, 65535])
        return self.eth(0x0800, self.ipv4(seg, tot_len=tot))

    def ipv6_len_lies(self):
        seg = self.tcp(self.rport(), self.rport(), 9, 9, 0x18, payload=b"zz", v6=True)
        plen = self.rng.choice([0, 1, 19, len(seg) + 1, 65535])
        return self.eth(0x86DD, self.ipv6(seg, plen=plen))

    def bad_doff(self):
        v6 = self.rng.random() < 0.5
        doff = self.rng.choice([0, 1, 2, 3, 4, 15, 14, 9])
        seg = self.tcp(self.rport(), self.rport(), 3, 3, 0x18, doff=doff, payload=b"q" * self.rng.randrange(0, 8), v6=v6)
        if v6:
            return self.eth(0x86DD, self.ipv6(seg))
        return self.eth(0x0800, self.ipv4(seg))

    def vlan_stack(self):
        depth = self.rng.choice([1, 2, 2, 3, 4, 6])
        tags = []
        for k in range(depth):
            tpid = 0x88A8 if (k == 0 and depth > 1 and self.rng.random() < 0.7) else 0x8100
            tags.append((tpid, self.rng.randrange(4096)))
        v6 = self.rng.random() < 0.5
        seg = self.tcp(self.rport(), self.rport(), 11, 11, 0x18, payload=b"vlan", v6=v6)
        inner = self.ipv6(seg) if v6 else self.ipv4(seg)
        if self.rng.random() < 0.3:
            inner = inner[: self.rng.randrange(0, len(inner))]
        return self.eth(0x86DD if v6 else 0x0800, inner, tags=tags)

    def ipv6_ext_chain(self):
        # Hop-by-hop (0), routing (43), destination options (60) and
        # fragment (44) headers, chained up to far beyond any sane limit.
        n = self.rng.choice([1, 3, 5, 6, 7, 8, 12, 20, 40])
        types = [self.rng.choice([0, 43, 60, 44]) for _ in range(n)]
        seg = self.tcp(self.rport(), self.rport(), 5, 5, 0x18, payload=b"ext", v6=True)
        body = seg
        nh = 6
        for t in reversed(types):
            if t == 44:
                ext = struct.pack("!BBHI", nh, 0, 0, self.rng.getrandbits(32))
            else:
                hlen = self.rng.choice([0, 0, 1, 2, 255])
                if hlen == 255:
                    # Claims 2 KiB of options; only 8 bytes are there.
                    ext = bytes([nh, hlen]) + b"\x01\x04" + b"\0" * 4
                else:
                    real = 8 * (hlen + 1)
                    ext = bytes([nh, hlen, 1, real - 4]) + b"\0" * (real - 4)
            body = ext + body
            nh = t
        if self.rng.random() < 0.2:
            body = body[: self.rng.randrange(0, len(body) + 1)]
        return self.eth(0x86DD, self.ipv6(body, nh=nh))

    def fragment(self):
        seg = self.tcp(self.rport(), self.rport(), 13, 13, 0x18, payload=self.rbytes(32))
        if self.rng.random() < 0.5:
            # IPv4: more-fragments, a non-zero offset, or both.
            frag = self.rng.choice([0x2000, 0x0001, 0x2005, 0x1FFF, 0x3FFF])
            return self.eth(0x0800, self.ipv4(seg, frag=frag))
        off = self.rng.choice([0, 1, 8191])
        mf = self.rng.choice([0, 1])
        fh = struct.pack("!BBHI", 6, 0, (off << 3) | mf, self.rng.getrandbits(32))
        return self.eth(0x86DD, self.ipv6(fh + self.tcp(self.rport(), self.rport(), 1, 1, 0x18, payload=b"f", v6=True), nh=44))

    def random_bytes(self):
        n = self.rng.randrange(0, 200)
        et = self.rng.choice([0x0800, 0x86DD, 0x8100, 0x88A8, self.rng.randrange(65536)])
        return self.eth(et, self.rbytes(n))

    def zero_payload(self):
        v6 = self.rng.random() < 0.5
        choice = self.rng.randrange(3)
        if choice == 0:  # an IP header and nothing after it
            return self.eth(0x86DD, self.ipv6(b"")) if v6 else self.eth(0x0800, self.ipv4(b""))
        if choice == 1:  # a bare Ethernet header with a payload-less ethertype
            return self.eth(0x86DD if v6 else 0x0800, b"")
        return self.good_tcp(v6=v6, flags=self.rng.choice([0x10, 0x18, 0x00]), payload=b"")

    def all_flags(self):
        v6 = self.rng.random() < 0.5
        flags = self.rng.choice([0x07, 0xFF, 0x03, 0x06, 0x05, 0x17])  # SYN+FIN+RST and friends
        return self.good_tcp(v6=v6, flags=flags, payload=self.rbytes(self.rng.randrange(0, 40)))

    def absurd_seq(self):
        v6 = self.rng.random() < 0.5
        sport, dport = self.rport(), self.rport()
        frames = []
        seqs = [0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1, 0xFFFFFFF0]
        # A "connection" whose segments jump around the sequence space,
        # starting with a SYN so the flow is tracked.
        frames.append((0x02, self.rng.choice(seqs), b""))
        for _ in range(6):
            frames.append((self.rng.choice([0x10, 0x18, 0x11, 0x04, 0x02]),
                           self.rng.choice(seqs) + self.rng.randrange(-3, 3),
                           self.rbytes(self.rng.randrange(0, 100))))
        out = []
        for flags, seq, payload in frames:
            seg = self.tcp(sport, dport, seq, self.rng.getrandbits(32), flags, payload=payload, v6=v6)
            out.append(self.eth(0x86DD, self.ipv6(seg)) if v6 else self.eth(0x0800, self.ipv4(seg)))
        return out

    def many_flows(self):
        # SYNs of distinct connections, to fill the flow table a little.
        return self.good_tcp(v6=self.rng.random() < 0.5, flags=0x02, payload=b"")

    def ipv4_options(self):
        opts = self.rbytes(self.rng.choice([4, 8, 40]))
        seg = self.tcp(self.rport(), self.rport(), 1, 1, 0x18, payload=b"o")
        ihl = 5 + len(opts) // 4
        return self.eth(0x0800, self.ipv4(seg, ihl=ihl if ihl <= 15 else 15, options=opts))

    CATEGORIES = [
        "truncated_eth", "truncated_ipv4", "truncated_ipv6", "truncated_tcp",
        "bad_ihl", "ipv4_len_lies", "ipv6_len_lies", "bad_doff", "vlan_stack",
        "ipv6_ext_chain", "fragment", "random_bytes", "zero_payload", "all_flags",
        "absurd_seq", "many_flows", "ipv4_options",
    ]


def cmd_hostile(args):
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.iface, 0))
    src_mac = sock.getsockname()[4]
    frames = Frames(rng, mac_bytes(args.dst_mac), src_mac, args.src_ip4, args.dst_ip4,
                    args.src_ip6, args.dst_ip6)
    counts = {}
    errors = {}
    sent = 0
    while sent < args.count:
        for cat in Frames.CATEGORIES:
            out = getattr(frames, cat)()
            for frame in (out if isinstance(out, list) else [out]):
                if len(frame) > 1514:
                    frame = frame[:1514]
                try:
                    sock.send(frame)
                    counts[cat] = counts.get(cat, 0) + 1
                except OSError as exc:
                    key = "%s: %s" % (cat, exc.strerror)
                    errors[key] = errors.get(key, 0) + 1
                sent += 1
        if args.pace and sent % 100 < len(Frames.CATEGORIES):
            time.sleep(args.pace)
    emit({"sent": sum(counts.values()), "attempted": sent, "by_category": counts,
          "errors": errors})


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--close-first", action="store_true")
    p.add_argument("--http", action="store_true")

    p = sub.add_parser("batch")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--gap", type=float, default=0.0)
    p.add_argument("--lport", type=int, default=0)
    p.add_argument("--src", default=None)
    p.add_argument("--wait-eof", action="store_true")
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--http", action="store_true")

    p = sub.add_parser("ctl")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lport", type=int, default=0)

    p = sub.add_parser("refused")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)

    p = sub.add_parser("sink")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)

    p = sub.add_parser("fill")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hold", type=float, default=1.0)

    p = sub.add_parser("hostile")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--src-ip4", required=True)
    p.add_argument("--dst-ip4", required=True)
    p.add_argument("--src-ip6", required=True)
    p.add_argument("--dst-ip6", required=True)
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pace", type=float, default=0.002)

    args = parser.parse_args()
    {"serve": cmd_serve, "batch": cmd_batch, "ctl": cmd_ctl, "refused": cmd_refused,
     "sink": cmd_sink, "fill": cmd_fill, "hostile": cmd_hostile}[args.cmd](args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(0)
