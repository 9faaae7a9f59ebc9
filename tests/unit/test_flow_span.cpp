// Tests of extension/core/flow_span.*: flow -> span conversion and the sweep
// policy, on hand-made flow records and on flows accounted from real frames.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "conn_sim.h"
#include "core/flow_span.h"

namespace ebpfc_test {
namespace {

using ebpfc::CloseReason;
using ebpfc::Side;
using ebpfc::Span;
using ebpfc::SpanIdGenerator;
using ebpfc::SpanStatus;
using ebpfc::SweepAction;
using ebpfc::SweepPolicy;
using ebpfc::WallClock;

constexpr uint64_t kMs = 1000 * 1000;
constexpr uint64_t kSec = 1000 * kMs;

// endpoint 0: 10.0.0.1:5432, endpoint 1: 10.0.0.2:40000
ebpfc_flow_key make_key() { return ipv4_flow_key(5432, 40000); }

// A finished connection: client = endpoint `client`, 100 bytes sent, 300
// received, handshake at 1 s / 1.001 s / 1.0025 s, closed by FINs at 2 s.
ebpfc_flow_stats make_stats(uint8_t client) {
  ebpfc_flow_stats st{};
  const uint8_t server = client ^ 1;
  st.first_ns = 1 * kSec;
  st.last_ns = 2 * kSec;
  st.syn_ns = 1 * kSec;
  st.synack_ns = 1 * kSec + 1 * kMs;
  st.established_ns = 1 * kSec + 2500 * 1000;
  st.dir[client].bytes = 100;
  st.dir[client].packets = 6;
  st.dir[client].retransmits = 2;
  st.dir[client].zero_windows = 7;
  st.dir[server].bytes = 300;
  st.dir[server].packets = 4;
  st.dir[server].retransmits = 3;
  st.dir[server].zero_windows = 1;
  st.state = EBPFC_FLOW_CLOSED;
  st.client = client;
  st.close_reason = EBPFC_CLOSE_FIN;
  st.rst_from = EBPFC_NO_ENDPOINT;
  return st;
}

Span to_span(const ebpfc_flow_key& key, const ebpfc_flow_stats& st,
             CloseReason reason = CloseReason::None) {
  static const WallClock clock;
  static SpanIdGenerator ids(1);
  Span s;
  std::memset(&s, 0xa5, sizeof(s));  // every field must be written
  ebpfc::span_from_flow(key, st, reason, clock, ids, s);
  return s;
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

TEST(FlowSpan, ClientAtEndpointOne) {
  const ebpfc_flow_key key = make_key();
  const Span s = to_span(key, make_stats(1));
  EXPECT_EQ(s.family, 4);
  EXPECT_EQ(std::memcmp(s.src_addr, key.addr[1], 16), 0);
  EXPECT_EQ(std::memcmp(s.dst_addr, key.addr[0], 16), 0);
  EXPECT_EQ(s.src_port, 40000);
  EXPECT_EQ(s.dst_port, 5432);
  EXPECT_EQ(s.bytes_sent, 100u);
  EXPECT_EQ(s.bytes_received, 300u);
  EXPECT_EQ(s.packets_sent, 6u);
  EXPECT_EQ(s.packets_received, 4u);
  EXPECT_EQ(s.retransmits_sent, 2u);
  EXPECT_EQ(s.retransmits_received, 3u);
  EXPECT_EQ(s.close_reason, CloseReason::Fin);
  EXPECT_EQ(s.status, SpanStatus::Unset);
  EXPECT_EQ(s.reset_by, Side::None);
  EXPECT_FALSE(s.mid_stream);
}

TEST(FlowSpan, ClientAtEndpointZero) {
  const ebpfc_flow_key key = make_key();
  const Span s = to_span(key, make_stats(0));
  EXPECT_EQ(std::memcmp(s.src_addr, key.addr[0], 16), 0);
  EXPECT_EQ(std::memcmp(s.dst_addr, key.addr[1], 16), 0);
  EXPECT_EQ(s.src_port, 5432);
  EXPECT_EQ(s.dst_port, 40000);
  EXPECT_EQ(s.bytes_sent, 100u);
  EXPECT_EQ(s.bytes_received, 300u);
  EXPECT_EQ(s.packets_sent, 6u);
  EXPECT_EQ(s.packets_received, 4u);
  EXPECT_EQ(s.retransmits_sent, 2u);
  EXPECT_EQ(s.retransmits_received, 3u);
  EXPECT_EQ(s.zero_windows_sent, 7u);
  EXPECT_EQ(s.zero_windows_received, 1u);
}

TEST(FlowSpan, Ipv6FamilyAndMidStream) {
  ebpfc_flow_key key = make_key();
  key.family = 6;
  key.addr[0][0] = 0x20;
  ebpfc_flow_stats st = make_stats(1);
  st.mid_stream = 1;
  st.syn_ns = st.synack_ns = st.established_ns = 0;
  const Span s = to_span(key, st);
  EXPECT_EQ(s.family, 6);
  EXPECT_EQ(s.dst_addr[0], 0x20);
  EXPECT_TRUE(s.mid_stream);
  EXPECT_FALSE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, -1);
}

TEST(FlowSpan, HandshakeRtt) {
  ebpfc_flow_stats st = make_stats(1);
  Span s = to_span(make_key(), st);
  EXPECT_TRUE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, 2500);

  st.established_ns = st.syn_ns + 1999;  // truncated to whole microseconds
  EXPECT_EQ(to_span(make_key(), st).handshake_rtt_us, 1);

  st.established_ns = 0;  // never established
  s = to_span(make_key(), st);
  EXPECT_FALSE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, -1);

  st = make_stats(1);
  st.syn_ns = 0;  // the SYN was not seen (SYN-ACK first)
  s = to_span(make_key(), st);
  EXPECT_FALSE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, -1);
}

TEST(FlowSpan, ResetIsAnError) {
  ebpfc_flow_stats st = make_stats(1);
  st.close_reason = EBPFC_CLOSE_RST;
  st.rst_from = 0;  // the server
  Span s = to_span(make_key(), st);
  EXPECT_EQ(s.status, SpanStatus::Error);
  EXPECT_EQ(s.reset_by, Side::Server);
  EXPECT_EQ(s.close_reason, CloseReason::Rst);

  st.rst_from = 1;
  s = to_span(make_key(), st);
  EXPECT_EQ(s.status, SpanStatus::Error);
  EXPECT_EQ(s.reset_by, Side::Client);

  st.client = 0;  // same endpoint, other role
  s = to_span(make_key(), st);
  EXPECT_EQ(s.reset_by, Side::Server);
}

TEST(FlowSpan, RefusedIsAnError) {
  // SYN, no SYN-ACK, RST
  ebpfc_flow_stats st{};
  st.first_ns = st.syn_ns = 5 * kSec;
  st.last_ns = 5 * kSec + 100 * 1000;
  st.client = 1;
  st.dir[1].packets = 1;
  st.dir[0].packets = 1;
  st.state = EBPFC_FLOW_CLOSED;
  st.close_reason = EBPFC_CLOSE_RST;
  st.rst_from = 0;
  Span s = to_span(make_key(), st);
  EXPECT_EQ(s.status, SpanStatus::Error);
  EXPECT_EQ(s.reset_by, Side::Server);
  EXPECT_FALSE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, -1);

  // SYN, no answer at all, reported idle by user space
  st.dir[0].packets = 0;
  st.state = EBPFC_FLOW_OPEN;
  st.close_reason = EBPFC_CLOSE_NONE;
  st.rst_from = EBPFC_NO_ENDPOINT;
  s = to_span(make_key(), st, CloseReason::Idle);
  EXPECT_EQ(s.close_reason, CloseReason::Idle);
  EXPECT_EQ(s.reset_by, Side::None);
  EXPECT_EQ(s.status, SpanStatus::Error);

  // the same SYN still pending when the capture stops: not known to have failed
  s = to_span(make_key(), st, CloseReason::CaptureStopped);
  EXPECT_EQ(s.status, SpanStatus::Unset);
}

TEST(FlowSpan, IdleAfterHandshakeIsNotAnError) {
  ebpfc_flow_stats st = make_stats(1);
  st.state = EBPFC_FLOW_OPEN;
  st.close_reason = EBPFC_CLOSE_NONE;
  EXPECT_EQ(to_span(make_key(), st, CloseReason::Idle).status, SpanStatus::Unset);
  st.syn_ns = st.synack_ns = st.established_ns = 0;
  st.mid_stream = 1;
  EXPECT_EQ(to_span(make_key(), st, CloseReason::Idle).status, SpanStatus::Unset);
}

TEST(FlowSpan, CloseReasonOverride) {
  ebpfc_flow_stats st = make_stats(1);
  EXPECT_EQ(to_span(make_key(), st).close_reason, CloseReason::Fin);
  EXPECT_EQ(to_span(make_key(), st, CloseReason::Idle).close_reason, CloseReason::Idle);
  EXPECT_EQ(to_span(make_key(), st, CloseReason::CaptureStopped).close_reason,
            CloseReason::CaptureStopped);

  const struct {
    uint8_t kernel;
    CloseReason want;
  } cases[] = {
      {EBPFC_CLOSE_NONE, CloseReason::None},
      {EBPFC_CLOSE_FIN, CloseReason::Fin},
      {EBPFC_CLOSE_RST, CloseReason::Rst},
      {EBPFC_CLOSE_IDLE, CloseReason::Idle},
      {EBPFC_CLOSE_CAPTURE_STOPPED, CloseReason::CaptureStopped},
      {200, CloseReason::None},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(int{c.kernel});
    st.close_reason = c.kernel;
    EXPECT_EQ(to_span(make_key(), st).close_reason, c.want);
  }
}

TEST(FlowSpan, Names) {
  EXPECT_STREQ(ebpfc::close_reason_name(CloseReason::None), "none");
  EXPECT_STREQ(ebpfc::close_reason_name(CloseReason::Fin), "fin");
  EXPECT_STREQ(ebpfc::close_reason_name(CloseReason::Rst), "rst");
  EXPECT_STREQ(ebpfc::close_reason_name(CloseReason::Idle), "idle");
  EXPECT_STREQ(ebpfc::close_reason_name(CloseReason::CaptureStopped), "capture_stopped");
  EXPECT_STREQ(ebpfc::status_name(SpanStatus::Unset), "UNSET");
  EXPECT_STREQ(ebpfc::status_name(SpanStatus::Ok), "OK");
  EXPECT_STREQ(ebpfc::status_name(SpanStatus::Error), "ERROR");
}

TEST(FlowSpan, TimesAreConvertedWithTheWallClock) {
  const WallClock clock;
  SpanIdGenerator ids(7);
  const uint64_t now = WallClock::monotonic_ns();
  ebpfc_flow_stats st = make_stats(1);
  st.first_ns = now;
  st.last_ns = now + 5 * kMs;
  Span s;
  ebpfc::span_from_flow(make_key(), st, CloseReason::None, clock, ids, s);
  EXPECT_EQ(s.start_unix_us, clock.to_unix_us(now));
  EXPECT_EQ(s.end_unix_us, clock.to_unix_us(now + 5 * kMs));
  EXPECT_EQ(s.end_unix_us - s.start_unix_us, 5000);

  // the start is "now" on the system clock
  const int64_t sys_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  EXPECT_LT(std::llabs(s.start_unix_us - sys_us), 2 * 1000 * 1000);

  // the trace id starts with the start, in milliseconds
  uint64_t id_ms = 0;
  for (int i = 0; i < 6; i++) id_ms = id_ms << 8 | s.trace_id[i];
  EXPECT_EQ(id_ms, static_cast<uint64_t>(s.start_unix_us / 1000));

  // a last-seen time before the first (racing CPUs) does not end before the start
  st.last_ns = now - 1 * kMs;
  ebpfc::span_from_flow(make_key(), st, CloseReason::None, clock, ids, s);
  EXPECT_EQ(s.end_unix_us, s.start_unix_us);
}

TEST(WallClock, ConversionIsMonotonicAndConsistent) {
  WallClock clock;
  const uint64_t m = WallClock::monotonic_ns();
  int64_t prev = clock.to_unix_us(m);
  for (uint64_t d = 1; d < 5000; d += 7) {
    const int64_t cur = clock.to_unix_us(m + d * 997);
    EXPECT_GE(cur, prev);
    prev = cur;
  }
  // whole microseconds translate exactly
  EXPECT_EQ(clock.to_unix_us(m + 1000) - clock.to_unix_us(m), 1);
  EXPECT_EQ(clock.to_unix_us(m + 3600 * kSec) - clock.to_unix_us(m), 3600ll * 1000 * 1000);

  // monotonic time advances
  const uint64_t m2 = WallClock::monotonic_ns();
  EXPECT_GE(m2, m);

  // two samples of the offset agree (to well within a millisecond in practice)
  WallClock other;
  clock.refresh();
  EXPECT_LT(std::llabs(other.to_unix_us(m) - clock.to_unix_us(m)), 50 * 1000);
}

TEST(WallClock, SameKernelTimeSameMicrosecondAcrossSamples) {
  // Spans that start together are written in different drains; each drain
  // re-samples the offset, and samples differ by nanoseconds. The same kernel
  // timestamp must still convert to the same microsecond.
  WallClock clock;
  const uint64_t base = 1700000000ull * kSec + 999;  // 1 ns short of a microsecond edge
  clock.apply_sample(base, 1000);
  const uint64_t t = 123456789001ull;
  const int64_t first = clock.to_unix_us(t);
  for (uint64_t jitter : {uint64_t{1}, uint64_t{2}, uint64_t{500}, uint64_t{999}, uint64_t{50000},
                          WallClock::kMaxDriftNs}) {
    EXPECT_FALSE(clock.apply_sample(base + jitter, 1000)) << jitter;
    EXPECT_EQ(clock.to_unix_us(t), first) << jitter;
    EXPECT_FALSE(clock.apply_sample(base - jitter, 1000)) << jitter;
    EXPECT_EQ(clock.to_unix_us(t), first) << jitter;
  }
}

TEST(WallClock, FollowsAStepOrALargeDrift) {
  WallClock clock;
  const uint64_t base = 1700000000ull * kSec;
  clock.apply_sample(base, 1000);
  // the realtime clock was stepped forward by a second
  EXPECT_TRUE(clock.apply_sample(base + kSec, 1000));
  EXPECT_EQ(clock.offset_ns(), base + kSec);
  // slewed back by a little more than the tolerance
  EXPECT_TRUE(clock.apply_sample(base + kSec - WallClock::kMaxDriftNs - 1, 1000));
  EXPECT_EQ(clock.offset_ns(), base + kSec - WallClock::kMaxDriftNs - 1);
}

TEST(WallClock, IgnoresASampleTakenWhilePreempted) {
  WallClock clock;
  const uint64_t base = 1700000000ull * kSec;
  clock.apply_sample(base, 1000);
  EXPECT_FALSE(clock.apply_sample(base + kSec, WallClock::kMaxBracketNs + 1));
  EXPECT_EQ(clock.offset_ns(), base);
}

TEST(FlowSpan, IdsAreFreshAndNonZero) {
  const ebpfc_flow_key key = make_key();
  const ebpfc_flow_stats st = make_stats(1);
  const Span a = to_span(key, st);
  const Span b = to_span(key, st);
  EXPECT_FALSE(all_zero(a.trace_id, 16));
  EXPECT_FALSE(all_zero(a.span_id, 8));
  EXPECT_NE(std::memcmp(a.trace_id, b.trace_id, 16), 0);
  EXPECT_NE(std::memcmp(a.span_id, b.span_id, 8), 0);
}

// ---- end to end: frames -> flow -> span ---------------------------------

TEST(FlowSpan, FromAccountedConnection) {
  ConnSim c({{10, 0, 0, 2}, 40000}, {{10, 0, 0, 1}, 5432});
  const uint64_t t0 = 7 * kSec;
  ASSERT_EQ(c.send(Who::Client, EBPFC_TCP_SYN, 100, 0, 0, t0), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Server, EBPFC_TCP_SYN | EBPFC_TCP_ACK, 900, 101, 0, t0 + 1 * kMs),
            EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Client, EBPFC_TCP_ACK, 101, 901, 0, t0 + 2 * kMs), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Client, EBPFC_TCP_ACK, 101, 901, 42, t0 + 3 * kMs), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Client, EBPFC_TCP_ACK, 101, 901, 42, t0 + 4 * kMs), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Server, EBPFC_TCP_ACK, 901, 143, 1000, t0 + 5 * kMs), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Server, EBPFC_TCP_RST, 1901, 0, 0, t0 + 6 * kMs), EBPFC_CLOSED_NOW);

  const WallClock clock;
  SpanIdGenerator ids(3);
  Span s;
  ebpfc::span_from_flow(c.key, c.st, CloseReason::None, clock, ids, s);
  const uint8_t client_ip[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
  EXPECT_EQ(std::memcmp(s.src_addr, client_ip, 16), 0);
  EXPECT_EQ(s.src_port, 40000);
  EXPECT_EQ(s.dst_port, 5432);
  EXPECT_EQ(s.bytes_sent, 42u);
  EXPECT_EQ(s.bytes_received, 1000u);
  EXPECT_EQ(s.packets_sent, 4u);
  EXPECT_EQ(s.packets_received, 3u);
  EXPECT_EQ(s.retransmits_sent, 1u);
  EXPECT_EQ(s.retransmits_received, 0u);
  EXPECT_TRUE(s.handshake_completed);
  EXPECT_EQ(s.handshake_rtt_us, 2000);
  EXPECT_EQ(s.close_reason, CloseReason::Rst);
  EXPECT_EQ(s.reset_by, Side::Server);
  EXPECT_EQ(s.status, SpanStatus::Error);
  EXPECT_EQ(s.end_unix_us - s.start_unix_us, 6000);
}

TEST(FlowSpan, FromRefusedConnection) {
  ConnSim c({{10, 0, 0, 1}, 40000}, {{10, 0, 0, 2}, 81});
  ASSERT_EQ(c.send(Who::Client, EBPFC_TCP_SYN, 100, 0, 0, kSec), EBPFC_ACCOUNTED);
  ASSERT_EQ(c.send(Who::Server, EBPFC_TCP_RST | EBPFC_TCP_ACK, 0, 101, 0, kSec + 50 * 1000),
            EBPFC_CLOSED_NOW);
  const Span s = to_span(c.key, c.st);
  EXPECT_EQ(s.status, SpanStatus::Error);
  EXPECT_EQ(s.reset_by, Side::Server);
  EXPECT_EQ(s.dst_port, 81);
  EXPECT_FALSE(s.handshake_completed);
}

// ---- sweep policy --------------------------------------------------------

ebpfc_flow_stats flow_at(uint64_t last_ns, bool closed) {
  ebpfc_flow_stats st{};
  st.first_ns = 1;
  st.last_ns = last_ns;
  st.state = closed ? EBPFC_FLOW_CLOSED : EBPFC_FLOW_OPEN;
  return st;
}

TEST(SweepAction, OpenFlows) {
  const SweepPolicy p{60 * kSec, 1 * kSec, false};
  const uint64_t last = 1000 * kSec;
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last, p), SweepAction::Open);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last + 60 * kSec - 1, p), SweepAction::Open);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last + 60 * kSec, p),
            SweepAction::ReportIdle);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last + 3600 * kSec, p),
            SweepAction::ReportIdle);
  // a packet stamped after `now` was read (another CPU): not idle
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last - 1, p), SweepAction::Open);
}

TEST(SweepAction, ClosedFlows) {
  const SweepPolicy p{60 * kSec, 1 * kSec, false};
  const uint64_t last = 1000 * kSec;
  // within the grace period the ring-buffer event will report it
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last, p), SweepAction::Keep);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last + kSec - 1, p), SweepAction::Keep);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last - 5, p), SweepAction::Keep);
  // after it, the event was lost
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last + kSec, p), SweepAction::ReportClosed);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last + 120 * kSec, p),
            SweepAction::ReportClosed);
}

TEST(SweepAction, FinalSweepReportsEverything) {
  const SweepPolicy p{60 * kSec, 1 * kSec, true};
  const uint64_t last = 1000 * kSec;
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, true), last, p), SweepAction::ReportClosed);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last, p), SweepAction::ReportStopped);
  EXPECT_EQ(ebpfc::sweep_action(flow_at(last, false), last + 3600 * kSec, p),
            SweepAction::ReportStopped);
}

}  // namespace
}  // namespace ebpfc_test
