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

void tcp_attributes(const Span& s, AttributeSink& out) {
  out.string("tcp.close_reason", close_reason_name(s.close_reason),
             strlen(close_reason_name(s.close_reason)));
  out.boolean("tcp.reset", s.reset_by != Side::None);
  if (s.reset_by != Side::None)
    out.string("tcp.reset_by", side_name(s.reset_by), strlen(side_name(s.reset_by)));
  out.boolean("tcp.mid_stream", s.mid_stream);
  out.boolean("tcp.handshake_completed", s.handshake_completed);
  if (s.handshake_rtt_us >= 0)
    out.number("tcp.handshake_rtt_us", static_cast<uint64_t>(s.handshake_rtt_us));
  out.number("tcp.retransmits_sent", s.retransmits_sent);
  out.number("tcp.retransmits_received", s.retransmits_received);
  // Rare, and every attribute costs every row its bytes: only when there were any.
  if (s.zero_windows_sent > 0) out.number("tcp.zero_windows_sent", s.zero_windows_sent);
  if (s.zero_windows_received > 0) out.number("tcp.zero_windows_received", s.zero_windows_received);
}

size_t format_tcp_attributes(const Span& s, char* buf, size_t size) {
  if (size == 0) return 0;
  JsonTextSink j(buf, size);
  tcp_attributes(s, j);
  return j.finish();
}

}  // namespace ebpfc
