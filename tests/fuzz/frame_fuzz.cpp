// frame_fuzz.cpp - libFuzzer target for the frame decoder and everything
// downstream of it: flow accounting, flow -> span, span attributes.
//
// The input is used twice:
//
//  1. The whole input is one Ethernet frame for ebpfc_parse_frame (so a raw
//     frame is a useful seed).
//  2. The input is also a capture: a sequence of records
//         ctl (1 byte) | length (2 bytes, big endian) | frame (length bytes)
//     (the last frame takes whatever is left). ctl & 0x3f advances the clock
//     by that many milliseconds; ctl & 0x80 drains closed flows (the ring-buffer
//     event path); ctl & 0x40 runs a sweep (idle and lost-event flows). Every
//     frame that parses as TCP goes through the socket filter's find-or-create
//     and ebpfc_flow_account on a small flow table, and every flow that leaves
//     the table becomes a span and its attributes JSON. At the end a final
//     sweep reports whatever is left.
//
// Every decoded frame is also compared with an independent reference decoder.
// Invariants are checked with CHECK, which aborts: libFuzzer reports a crash.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "bpf_user.h"
#include "core/flow_span.h"
#include "core/span_attributes.h"
#include "json_text_sink.h"

#include "fuzz_check.h"

namespace {

using ebpfc::CloseReason;
using ebpfc::Side;
using ebpfc::Span;
using ebpfc::SpanStatus;
using ebpfc::SweepAction;
using ebpfc::SweepPolicy;

constexpr size_t kTableSize = 8;
constexpr uint64_t kMs = 1000 * 1000;
constexpr uint64_t kIdleNs = 200 * kMs;
constexpr uint64_t kGraceNs = 20 * kMs;

// What was fed to one direction of a flow since ebpfc_flow_init.
struct Fed {
  uint64_t segments = 0;          // accounted segments
  uint64_t payload = 0;           // sum of their payload lengths
  uint64_t payload_segments = 0;  // segments with payload
  uint32_t flags = 0;             // OR of their flags
};

struct Entry {
  bool used = false;
  ebpfc_flow_key key;
  ebpfc_flow_stats st;
  Fed fed[2];
};

struct Capture {
  Entry table[kTableSize];
  uint64_t now = 1ull << 30;
  ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids{0x5eed};
};

// An independent decoder written from the description in frame_parse.h,
// with plain array indexing: the real one must agree with it on every input
// (the verdict, and every field of a TCP segment).
struct RefSegment {
  uint8_t addr[2][16];
  uint16_t port[2];
  uint8_t family;
  uint32_t seq, ack, payload_off, payload_len;
  uint8_t flags, sender;
};

uint32_t be16(const uint8_t* b) { return static_cast<uint32_t>(b[0]) << 8 | b[1]; }
uint32_t be32(const uint8_t* b) { return be16(b) << 16 | be16(b + 2); }

int reference_parse(const uint8_t* f, size_t n, RefSegment* r) {
  if (n < 14) return EBPFC_PARSE_MALFORMED;
  size_t off = 14;
  uint32_t type = be16(f + 12);
  for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); tags++) {
    if (n < off + 4) return EBPFC_PARSE_MALFORMED;
    type = be16(f + off + 2);
    off += 4;
  }
  std::memset(r, 0, sizeof(*r));
  size_t l4, end;
  if (type == 0x0800) {
    if (n < off + 20 || f[off] >> 4 != 4) return EBPFC_PARSE_MALFORMED;
    const size_t ihl = (f[off] & 15u) * 4, total = be16(f + off + 2);
    if (ihl < 20 || total < ihl || off + total > n) return EBPFC_PARSE_MALFORMED;
    if (be16(f + off + 6) & 0x3fff) return EBPFC_PARSE_FRAGMENT;
    if (f[off + 9] != 6) return EBPFC_PARSE_NOT_TCP;
    r->family = 4;
    for (int i = 0; i < 2; i++) {
      r->addr[i][10] = r->addr[i][11] = 0xff;
      std::memcpy(&r->addr[i][12], f + off + 12 + 4 * i, 4);
    }
    l4 = off + ihl;
    end = off + total;
  } else if (type == 0x86dd) {
    if (n < off + 8 || f[off] >> 4 != 6) return EBPFC_PARSE_MALFORMED;
    const size_t plen = be16(f + off + 4);
    if (plen == 0 || off + 40 + plen > n) return EBPFC_PARSE_MALFORMED;
    r->family = 6;
    std::memcpy(r->addr[0], f + off + 8, 16);
    std::memcpy(r->addr[1], f + off + 24, 16);
    uint8_t next = f[off + 6];
    end = off + 40 + plen;
    l4 = off + 40;
    for (int i = 0; i < 6 && next != 6; i++) {
      if (next == 44) return EBPFC_PARSE_FRAGMENT;
      if (next != 0 && next != 43 && next != 60 && next != 51) return EBPFC_PARSE_NOT_TCP;
      if (n < l4 + 2) return EBPFC_PARSE_MALFORMED;
      const size_t len = next == 51 ? (f[l4 + 1] + 2u) * 4 : (f[l4 + 1] + 1u) * 8;
      next = f[l4];
      l4 += len;
      if (l4 > end) return EBPFC_PARSE_MALFORMED;
    }
    if (next != 6) return EBPFC_PARSE_NOT_TCP;
  } else {
    return EBPFC_PARSE_NOT_TCP;
  }
  if (l4 + 20 > end) return EBPFC_PARSE_MALFORMED;
  const size_t doff = (f[l4 + 12] >> 4) * 4u;
  if (doff < 20 || l4 + doff > end) return EBPFC_PARSE_MALFORMED;
  r->port[0] = static_cast<uint16_t>(be16(f + l4));
  r->port[1] = static_cast<uint16_t>(be16(f + l4 + 2));
  r->seq = be32(f + l4 + 4);
  r->ack = be32(f + l4 + 8);
  r->flags = f[l4 + 13];
  r->payload_off = static_cast<uint32_t>(l4 + doff);
  r->payload_len = static_cast<uint32_t>(end - l4 - doff);
  const int c = std::memcmp(r->addr[0], r->addr[1], 16);
  if (c > 0 || (c == 0 && r->port[0] > r->port[1])) {
    std::swap(r->addr[0], r->addr[1]);
    std::swap(r->port[0], r->port[1]);
    r->sender = 1;
  }
  return EBPFC_PARSE_TCP;
}

// Parses frame (a heap block of exactly its size); checks the decoded packet.
int parse_checked(const uint8_t* data, size_t size, ebpfc_packet* p) {
  const int r = ebpfc_test::parse_frame(data, size, EBPFC_HEAD_LEN, p);
  CHECK(r >= EBPFC_PARSE_TCP && r <= EBPFC_PARSE_MALFORMED);
  // The head only saves loads: a head that ends anywhere decodes the same.
  ebpfc_packet q;
  std::memset(&q, 0, sizeof(q));
  const size_t limit = size > 0 ? data[size - 1] % (EBPFC_HEAD_LEN + 1) : 0;
  CHECK(ebpfc_test::parse_frame(data, size, limit, &q) == r);
  if (r == EBPFC_PARSE_TCP) CHECK(std::memcmp(p, &q, sizeof(q)) == 0);
  RefSegment ref;
  CHECK(reference_parse(data, size, &ref) == r);
  if (r != EBPFC_PARSE_TCP) return r;
  CHECK(std::memcmp(p->key.addr, ref.addr, sizeof(ref.addr)) == 0);
  CHECK(p->key.port[0] == ref.port[0] && p->key.port[1] == ref.port[1]);
  CHECK(p->key.family == ref.family);
  CHECK(p->seq == ref.seq && p->ack == ref.ack && p->flags == ref.flags);
  CHECK(p->payload_off == ref.payload_off && p->payload_len == ref.payload_len);
  CHECK(p->sender == ref.sender);

  CHECK(static_cast<uint64_t>(p->payload_off) + p->payload_len <= size);
  CHECK(p->payload_off >= EBPFC_ETH_HLEN + 20 + 20);
  CHECK(p->key.family == 4 || p->key.family == 6);
  CHECK(p->sender <= 1);
  CHECK(ebpfc_endpoint_cmp(&p->key) <= 0);
  CHECK(p->key.pad[0] == 0 && p->key.pad[1] == 0 && p->key.pad[2] == 0);
  CHECK(p->pad[0] == 0 && p->pad[1] == 0);
  if (p->key.family == 4) {
    for (int i = 0; i < 2; i++) {
      for (int b = 0; b < 10; b++) CHECK(p->key.addr[i][b] == 0);
      CHECK(p->key.addr[i][10] == 0xff && p->key.addr[i][11] == 0xff);
    }
  }
  return r;
}

// The IP header's length, not the frame's, ends the packet: bytes after it
// (Ethernet padding) change nothing, and cutting them off changes nothing.
void check_padding_independence(const uint8_t* data, size_t size, const ebpfc_packet& p) {
  ebpfc_packet q;
  std::vector<uint8_t> longer(data, data + size);
  longer.insert(longer.end(), 13, 0x5a);
  std::memset(&q, 0xa5, sizeof(q));
  CHECK(ebpfc_test::parse(longer, &q) == EBPFC_PARSE_TCP);
  CHECK(std::memcmp(&p, &q, sizeof(p)) == 0);

  const std::vector<uint8_t> exact(data, data + p.payload_off + p.payload_len);
  std::memset(&q, 0xa5, sizeof(q));
  CHECK(ebpfc_test::parse(exact, &q) == EBPFC_PARSE_TCP);
  CHECK(std::memcmp(&p, &q, sizeof(p)) == 0);
}

void check_flow(const Entry& e) {
  const ebpfc_flow_stats& st = e.st;
  CHECK(st.state == EBPFC_FLOW_OPEN || st.state == EBPFC_FLOW_CLOSED);
  CHECK(st.client <= 1);
  CHECK(st.mid_stream <= 1);
  CHECK(st.first_ns != 0 && st.first_ns <= st.last_ns);
  for (uint64_t t : {st.syn_ns, st.synack_ns, st.established_ns})
    CHECK(t == 0 || (t >= st.first_ns && t <= st.last_ns));
  if (st.established_ns != 0) CHECK(st.synack_ns != 0 && st.established_ns >= st.synack_ns);
  if (st.state == EBPFC_FLOW_OPEN) {
    CHECK(st.close_reason == EBPFC_CLOSE_NONE);
    CHECK(st.rst_from == EBPFC_NO_ENDPOINT);
  } else {
    CHECK(st.close_reason == EBPFC_CLOSE_FIN || st.close_reason == EBPFC_CLOSE_RST ||
          st.close_reason == EBPFC_CLOSE_REOPENED);
    if (st.close_reason == EBPFC_CLOSE_RST)
      CHECK(st.rst_from <= 1);
    else
      CHECK(st.rst_from == EBPFC_NO_ENDPOINT);
  }
  for (int d = 0; d < 2; d++) {
    const ebpfc_flow_dir& dir = st.dir[d];
    const Fed& fed = e.fed[d];
    CHECK(dir.packets == fed.segments);
    CHECK(dir.flags == fed.flags);
    CHECK(dir.retransmits <= dir.packets);
    // each sequence number once: at most what was fed, plus the gaps the
    // accounting believes in (at most EBPFC_MAX_SEQ_GAP per segment)
    CHECK(dir.bytes <= fed.payload + fed.payload_segments * EBPFC_MAX_SEQ_GAP);
    if (fed.payload == 0) CHECK(dir.bytes == 0);
    if (dir.seq != 0) CHECK((dir.seq >> 32) == 1);
  }
}

void report(Capture& cap, Entry& e, CloseReason reason) {
  check_flow(e);
  const ebpfc_flow_stats& st = e.st;
  Span s;
  std::memset(&s, 0xa5, sizeof(s));
  ebpfc::span_from_flow(e.key, st, reason, cap.clock, cap.ids, s);

  const unsigned c = st.client, sv = st.client ^ 1;
  CHECK(s.family == e.key.family);
  CHECK(std::memcmp(s.src_addr, e.key.addr[c], 16) == 0);
  CHECK(std::memcmp(s.dst_addr, e.key.addr[sv], 16) == 0);
  CHECK(s.src_port == e.key.port[c] && s.dst_port == e.key.port[sv]);
  CHECK(s.bytes_sent == st.dir[c].bytes && s.bytes_received == st.dir[sv].bytes);
  CHECK(s.packets_sent == st.dir[c].packets && s.packets_received == st.dir[sv].packets);
  CHECK(s.bytes_sent <= e.fed[c].payload + e.fed[c].payload_segments * EBPFC_MAX_SEQ_GAP);
  CHECK(s.bytes_received <= e.fed[sv].payload + e.fed[sv].payload_segments * EBPFC_MAX_SEQ_GAP);
  CHECK(s.start_unix_us <= s.end_unix_us);
  CHECK(s.handshake_rtt_us >= -1);
  CHECK(s.handshake_completed == (s.handshake_rtt_us >= 0));
  if (reason != CloseReason::None) CHECK(s.close_reason == reason);
  if (s.reset_by != Side::None) CHECK(s.status == SpanStatus::Error);
  if (st.close_reason == EBPFC_CLOSE_RST && reason == CloseReason::None)
    CHECK(s.reset_by != Side::None);
  uint8_t any = 0;
  for (uint8_t b : s.trace_id) any |= b;
  CHECK(any != 0);
  any = 0;
  for (uint8_t b : s.span_id) any |= b;
  CHECK(any != 0);

  char buf[ebpfc::kAttributesMax];
  const size_t n = ebpfc::format_tcp_attributes(s, buf, sizeof(buf));
  CHECK(n > 0 && n < sizeof(buf));
  CHECK(std::strlen(buf) == n);
  const nlohmann::json j = nlohmann::json::parse(buf, buf + n, nullptr, false);
  CHECK(!j.is_discarded());
  CHECK(j.is_object());
  CHECK(j.value("tcp.close_reason", "") == ebpfc::close_reason_name(s.close_reason));
  CHECK(j.value("tcp.reset", false) == (s.reset_by != Side::None));
  CHECK(j.contains("tcp.handshake_rtt_us") == (s.handshake_rtt_us >= 0));

  e.used = false;
}

// The socket filter's path for one TCP segment (capture.bpf.c).
void account(Capture& cap, const ebpfc_packet& p) {
  Entry* e = nullptr;
  Entry* free_slot = nullptr;
  for (Entry& x : cap.table) {
    if (x.used && std::memcmp(&x.key, &p.key, sizeof(p.key)) == 0) e = &x;
    if (!x.used && !free_slot) free_slot = &x;
  }
  if (!e) {
    if (!ebpfc_starts_flow(&p)) return;  // untracked
    if (!free_slot) return;              // flow table full
    e = free_slot;
    e->used = true;
    e->key = p.key;
    ebpfc_flow_init(&e->st, &p, cap.now);
    for (Fed& f : e->fed) f = Fed{};
    check_flow(*e);
  }

  const ebpfc_flow_stats before = e->st;
  const bool reopens = before.state != EBPFC_FLOW_OPEN &&
                       (p.flags & (EBPFC_TCP_SYN | EBPFC_TCP_ACK | EBPFC_TCP_RST)) == EBPFC_TCP_SYN;
  ebpfc_flow_stats old;
  const int r = ebpfc_flow_account(&e->st, &p, cap.now, &old);
  CHECK(r == EBPFC_ACCOUNTED || r == EBPFC_CLOSED_NOW || r == EBPFC_LATE || r == EBPFC_REOPENED ||
        r == EBPFC_RESTARTED);
  // a SYN on a closed entry, and only that, restarts it
  CHECK((r == EBPFC_RESTARTED) == reopens);
  if (r == EBPFC_REOPENED) {
    // The old connection's record is reported as it was (the kernel sends it
    // in a close event) and the entry starts over with this segment.
    CHECK(before.state == EBPFC_FLOW_OPEN);
    CHECK(old.state == EBPFC_FLOW_CLOSED && old.close_reason == EBPFC_CLOSE_REOPENED);
    Entry gone = *e;
    gone.st = old;
    report(cap, gone, CloseReason::None);
    for (Fed& f : e->fed) f = Fed{};
    CHECK(e->st.first_ns == cap.now);
  }
  if (r == EBPFC_LATE) {
    CHECK(before.state == EBPFC_FLOW_CLOSED && !reopens);
    CHECK(std::memcmp(&before, &e->st, sizeof(before)) == 0);
    return;
  }
  if (reopens) {
    for (Fed& f : e->fed) f = Fed{};
    CHECK(e->st.first_ns == cap.now);
  }
  Fed& f = e->fed[p.sender];
  f.segments++;
  f.payload += p.payload_len;
  f.payload_segments += p.payload_len > 0;
  f.flags |= p.flags;
  if (r == EBPFC_CLOSED_NOW) {
    CHECK(e->st.state == EBPFC_FLOW_CLOSED);
    if (p.flags & EBPFC_TCP_RST) {
      CHECK(e->st.close_reason == EBPFC_CLOSE_RST && e->st.rst_from == p.sender);
    } else {
      CHECK(e->st.close_reason == EBPFC_CLOSE_FIN);
      CHECK(e->fed[0].flags & e->fed[1].flags & EBPFC_TCP_FIN);
    }
  } else {
    CHECK(e->st.state == EBPFC_FLOW_OPEN);
  }
  CHECK(e->st.last_ns == cap.now);
  check_flow(*e);
}

// The ring-buffer path: closed flows are reported and removed.
void drain(Capture& cap) {
  for (Entry& e : cap.table)
    if (e.used && e.st.state == EBPFC_FLOW_CLOSED) report(cap, e, CloseReason::None);
}

void sweep(Capture& cap, bool final_sweep) {
  const SweepPolicy policy{kIdleNs, kGraceNs, final_sweep};
  for (Entry& e : cap.table) {
    if (!e.used) continue;
    const SweepAction a = ebpfc::sweep_action(e.st, cap.now, policy);
    if (final_sweep) CHECK(a == SweepAction::ReportClosed || a == SweepAction::ReportStopped);
    if (e.st.state == EBPFC_FLOW_CLOSED)
      CHECK(a == SweepAction::Keep || a == SweepAction::ReportClosed);
    else
      CHECK(a != SweepAction::ReportClosed && a != SweepAction::Keep);
    switch (a) {
      case SweepAction::Open:
        CHECK(cap.now < e.st.last_ns || cap.now - e.st.last_ns < kIdleNs);
        break;
      case SweepAction::Keep:
        break;
      case SweepAction::ReportClosed:
        report(cap, e, CloseReason::None);
        break;
      case SweepAction::ReportIdle:
        CHECK(cap.now - e.st.last_ns >= kIdleNs);
        report(cap, e, CloseReason::Idle);
        break;
      case SweepAction::ReportStopped:
        report(cap, e, CloseReason::CaptureStopped);
        break;
    }
  }
}

void one_frame(Capture* cap, const uint8_t* data, size_t size) {
  // a heap block of exactly the frame: reads past it are ASan reports
  std::unique_ptr<uint8_t[]> copy(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(copy.get(), data, size);
  ebpfc_packet p;
  std::memset(&p, 0xa5, sizeof(p));
  if (parse_checked(copy.get(), size, &p) != EBPFC_PARSE_TCP) return;
  check_padding_independence(copy.get(), size, p);
  if (cap) account(*cap, p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  one_frame(nullptr, data, size);

  Capture cap;
  while (size >= 3) {
    const uint8_t ctl = data[0];
    size_t len = static_cast<size_t>(data[1]) << 8 | data[2];
    data += 3;
    size -= 3;
    if (len > size) len = size;
    cap.now += (ctl & 0x3f) * kMs;
    one_frame(&cap, data, len);
    data += len;
    size -= len;
    if (ctl & 0x80) drain(cap);
    if (ctl & 0x40) sweep(cap, false);
  }
  sweep(cap, true);
  for (const Entry& e : cap.table) CHECK(!e.used);
  return 0;
}
