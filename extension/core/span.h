// span.h - one span as the core builds it, before it becomes a row.
#pragma once

#include <cstdint>

namespace ebpfc {

// OpenTelemetry status codes.
enum class SpanStatus : uint8_t { Unset, Ok, Error };

// Why a connection's span ended (mirrors enum ebpfc_close_reason).
enum class CloseReason : uint8_t { None, Fin, Rst, Idle, CaptureStopped, Reopened };

// Which end of the connection did something.
enum class Side : int8_t { None = -1, Client = 0, Server = 1 };

// A TCP connection span. Plain data: no allocation to build one.
struct Span {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  int64_t start_unix_us;
  int64_t end_unix_us;
  uint8_t family;        // 4 or 6
  uint8_t src_addr[16];  // client; IPv4 as IPv4-mapped IPv6
  uint8_t dst_addr[16];  // server
  uint16_t src_port;
  uint16_t dst_port;
  uint64_t bytes_sent;      // client -> server payload
  uint64_t bytes_received;  // server -> client payload
  uint64_t packets_sent;
  uint64_t packets_received;
  uint32_t retransmits_sent;
  uint32_t retransmits_received;
  uint32_t zero_windows_sent;      // segments in which the client advertised a zero window
  uint32_t zero_windows_received;  // ... the server did
  int64_t handshake_rtt_us;        // -1 when the handshake was not seen
  SpanStatus status;
  CloseReason close_reason;
  Side reset_by;    // who sent the first RST
  bool mid_stream;  // first seen without a SYN
  bool handshake_completed;
};

const char* close_reason_name(CloseReason r);
const char* status_name(SpanStatus s);

}  // namespace ebpfc
