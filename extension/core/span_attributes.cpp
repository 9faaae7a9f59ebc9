#include "core/span_attributes.h"

#include <cstring>

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

// Every attribute costs every row its bytes (a key and a value in jsonb, in
// the heap and in the WAL): what is usual (no reset, seen from the SYN, no
// retransmission) is said by its absence.
void tcp_attributes(const Span& s, AttributeSink& out) {
  out.string("tcp.close_reason", close_reason_name(s.close_reason),
             strlen(close_reason_name(s.close_reason)));
  if (s.reset_by != Side::None) {
    out.boolean("tcp.reset", true);
    out.string("tcp.reset_by", side_name(s.reset_by), strlen(side_name(s.reset_by)));
  }
  if (s.mid_stream) out.boolean("tcp.mid_stream", true);
  out.boolean("tcp.handshake_completed", s.handshake_completed);
  if (s.handshake_rtt_us >= 0)
    out.number("tcp.handshake_rtt_us", static_cast<uint64_t>(s.handshake_rtt_us));
  if (s.retransmits_sent > 0) out.number("tcp.retransmits_sent", s.retransmits_sent);
  if (s.retransmits_received > 0) out.number("tcp.retransmits_received", s.retransmits_received);
  if (s.zero_windows_sent > 0) out.number("tcp.zero_windows_sent", s.zero_windows_sent);
  if (s.zero_windows_received > 0) out.number("tcp.zero_windows_received", s.zero_windows_received);
}

}  // namespace ebpfc
