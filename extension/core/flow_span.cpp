#include "core/flow_span.h"

#include <cstring>

namespace ebpfc {

const char* close_reason_name(CloseReason r) {
  switch (r) {
    case CloseReason::Fin:
      return "fin";
    case CloseReason::Rst:
      return "rst";
    case CloseReason::Idle:
      return "idle";
    case CloseReason::CaptureStopped:
      return "capture_stopped";
    case CloseReason::Reopened:
      return "reopened";
    case CloseReason::None:
      break;
  }
  return "none";
}

const char* status_name(SpanStatus s) {
  switch (s) {
    case SpanStatus::Ok:
      return "OK";
    case SpanStatus::Error:
      return "ERROR";
    case SpanStatus::Unset:
      break;
  }
  return "UNSET";
}

static CloseReason from_kernel(uint8_t r) {
  switch (r) {
    case EBPFC_CLOSE_FIN:
      return CloseReason::Fin;
    case EBPFC_CLOSE_RST:
      return CloseReason::Rst;
    case EBPFC_CLOSE_IDLE:
      return CloseReason::Idle;
    case EBPFC_CLOSE_CAPTURE_STOPPED:
      return CloseReason::CaptureStopped;
    case EBPFC_CLOSE_REOPENED:
      return CloseReason::Reopened;
    default:
      return CloseReason::None;
  }
}

void span_from_flow(const ebpfc_flow_key& key, const ebpfc_flow_stats& st, CloseReason reason,
                    const WallClock& clock, SpanIdGenerator& ids, Span& out) {
  const unsigned c = st.client & 1;
  const unsigned s = c ^ 1;

  out.start_unix_us = clock.to_unix_us(st.first_ns);
  ids.trace_id(out.trace_id, out.start_unix_us);
  ids.span_id(out.span_id);
  out.end_unix_us = clock.to_unix_us(st.last_ns >= st.first_ns ? st.last_ns : st.first_ns);
  out.family = key.family;
  std::memcpy(out.src_addr, key.addr[c], sizeof(out.src_addr));
  std::memcpy(out.dst_addr, key.addr[s], sizeof(out.dst_addr));
  out.src_port = key.port[c];
  out.dst_port = key.port[s];
  out.bytes_sent = st.dir[c].bytes;
  out.bytes_received = st.dir[s].bytes;
  out.packets_sent = st.dir[c].packets;
  out.packets_received = st.dir[s].packets;
  out.retransmits_sent = st.dir[c].retransmits;
  out.retransmits_received = st.dir[s].retransmits;
  out.zero_windows_sent = st.dir[c].zero_windows;
  out.zero_windows_received = st.dir[s].zero_windows;
  out.mid_stream = st.mid_stream != 0;
  out.handshake_completed = st.syn_ns != 0 && st.established_ns >= st.syn_ns;
  out.handshake_rtt_us =
      out.handshake_completed ? static_cast<int64_t>((st.established_ns - st.syn_ns) / 1000) : -1;
  out.close_reason = reason != CloseReason::None ? reason : from_kernel(st.close_reason);
  if (st.rst_from == EBPFC_NO_ENDPOINT)
    out.reset_by = Side::None;
  else
    out.reset_by = (st.rst_from & 1) == c ? Side::Client : Side::Server;

  // A reset, or a SYN that never got an answer, is a failed connection.
  const bool refused =
      st.syn_ns != 0 && st.synack_ns == 0 &&
      (out.close_reason == CloseReason::Rst || out.close_reason == CloseReason::Idle);
  out.status = (out.reset_by != Side::None || refused) ? SpanStatus::Error : SpanStatus::Unset;
}

SweepAction sweep_action(const ebpfc_flow_stats& st, uint64_t now_ns, const SweepPolicy& policy) {
  const uint64_t age = now_ns > st.last_ns ? now_ns - st.last_ns : 0;
  if (st.state == EBPFC_FLOW_CLOSED) {
    // Always report closed flows on the final sweep; otherwise only once the
    // event path has had its chance.
    return (policy.final_sweep || age >= policy.close_grace_ns) ? SweepAction::ReportClosed
                                                                : SweepAction::Keep;
  }
  if (policy.final_sweep) return SweepAction::ReportStopped;
  if (age >= policy.idle_timeout_ns) return SweepAction::ReportIdle;
  return SweepAction::Open;
}

}  // namespace ebpfc
