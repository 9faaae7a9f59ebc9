#include "core/span_attributes.h"

#include <cinttypes>
#include <cstdio>

namespace ebpfc {

static const char* side_name(Side s) {
  switch (s) {
    case Side::Client:
      return "client";
    case Side::Server:
      return "server";
    case Side::None:
      break;
  }
  return "none";
}

size_t format_tcp_attributes(const Span& s, char* buf, size_t size) {
  char rtt[48] = "";
  if (s.handshake_rtt_us >= 0)
    snprintf(rtt, sizeof(rtt), ",\"tcp.handshake_rtt_us\":%" PRId64, s.handshake_rtt_us);
  char reset_by[40] = "";
  if (s.reset_by != Side::None)
    snprintf(reset_by, sizeof(reset_by), ",\"tcp.reset_by\":\"%s\"", side_name(s.reset_by));
  int n =
      snprintf(buf, size,
               "{\"tcp.close_reason\":\"%s\",\"tcp.reset\":%s%s,\"tcp.mid_stream\":%s,"
               "\"tcp.handshake_completed\":%s%s,\"tcp.retransmits_sent\":%" PRIu32
               ",\"tcp.retransmits_received\":%" PRIu32 "}",
               close_reason_name(s.close_reason), s.reset_by != Side::None ? "true" : "false",
               reset_by, s.mid_stream ? "true" : "false", s.handshake_completed ? "true" : "false",
               rtt, s.retransmits_sent, s.retransmits_received);
  if (n < 0 || static_cast<size_t>(n) >= size) {
    if (size > 0) buf[0] = '\0';
    return 0;
  }
  return static_cast<size_t>(n);
}

}  // namespace ebpfc
