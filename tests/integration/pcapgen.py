"""Generated TCP conversations written as pcap files, for replaying through a
bridge port with tcpreplay: Ethernet/IPv4/TCP frames with valid checksums,
a handshake, data segments of at most an MSS (each acknowledging everything
the other side sent before it), and a close by FINs. Each frame carries a tag
so that a test can remove the frames it wants lost."""

import struct

ETH_IPV4 = 0x0800
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip4(addr):
    return bytes(int(x) for x in addr.split("."))


def tcp_frame(src, dst, sport, dport, seq, ack, flags, payload=b"", src_mac=b"\x02\0\0\0\0\1",
              dst_mac=b"\x02\0\0\0\0\2"):
    """One Ethernet frame carrying a TCP/IPv4 segment."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0)
    pseudo = _ip4(src) + _ip4(dst) + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    csum = _checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, _ip4(src), _ip4(dst))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_IPV4) + ip + tcp + payload


class Conversation:
    """One TCP connection between client and server, frame by frame.

    frames: (tag, bytes) in wire order; tags are tuples such as
    ("req", i, k) for segment k of request i, ("resp", i, k), ("syn",),
    ("fin",)."""

    def __init__(self, client, cport, server, sport, isn_c=1_000_000, isn_s=7_000_000, mss=1448):
        self.ends = ((client, cport, b"\x02\xeb\xc0\0\0\1"), (server, sport, b"\x02\xeb\xc0\0\0\2"))
        self.seq = [isn_c, isn_s]
        self.mss = mss
        self.frames = []

    def _frame(self, from_client, flags, payload=b"", tag=None):
        a, b = (0, 1) if from_client else (1, 0)
        (src, sp, smac), (dst, dp, dmac) = self.ends[a], self.ends[b]
        ack = self.seq[b] if flags & ACK else 0
        self.frames.append((tag, tcp_frame(src, dst, sp, dp, self.seq[a], ack, flags, payload,
                                           smac, dmac)))
        self.seq[a] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def handshake(self):
        self._frame(True, SYN, tag=("syn",))
        self._frame(False, SYN | ACK, tag=("syn",))
        self._frame(True, ACK, tag=("syn",))

    def send(self, from_client, data, tag):
        """data in segments of at most mss bytes, tagged tag + (k,)."""
        for k, off in enumerate(range(0, len(data), self.mss)):
            self._frame(from_client, PSH | ACK, data[off:off + self.mss], tag=(*tag, k))
            # the receiver acknowledges every other segment, as TCP does
            if k % 2:
                self._frame(not from_client, ACK, tag=("ack",))

    def close(self):
        self._frame(False, FIN | ACK, tag=("fin",))
        self._frame(True, ACK, tag=("fin",))
        self._frame(True, FIN | ACK, tag=("fin",))
        self._frame(False, ACK, tag=("fin",))


def write_pcap(path, frames, t0=1_700_000_000.0, step=0.0002):
    """Writes frames (bytes) to a pcap file, step seconds apart."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, frame in enumerate(frames):
            t = t0 + i * step
            sec = int(t)
            usec = int(round((t - sec) * 1e6))
            fh.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            fh.write(frame)
