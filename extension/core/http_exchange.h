// http_exchange.h - what the HTTP/1.x parser reports: one request/response
// exchange as a fixed-size struct, why it may be incomplete, and the bounds
// that shape it. PostgreSQL-free; nothing here allocates.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

// Bounds of what one exchange keeps (bytes, without the terminating NUL).
constexpr size_t kHttpMethodMax = 20;       // longer method tokens are not HTTP
constexpr size_t kHttpTargetMax = 2048;     // request target, as sent (path and query)
constexpr size_t kHttpHostMax = 256;        // Host header value
constexpr size_t kHttpTracestateMax = 512;  // W3C: at least 512 characters are propagated

enum class HttpMethod : uint8_t {
  None,  // no request was seen (a response without a request)
  Get,
  Head,
  Post,
  Put,
  Delete,
  Connect,
  Options,
  Trace,
  Patch,
  Other,  // another token: see HttpExchange::method_text
};

// The method of a request-line token.
HttpMethod http_method_of(const char* token, size_t len);
// "GET", ..., "" for None, "_OTHER" for Other (OpenTelemetry's convention).
const char* http_method_name(HttpMethod m);

// Why an exchange is not whole: HttpExchange::incomplete is an OR of these,
// 0 when the exchange is complete.
enum HttpIncomplete : uint16_t {
  kHttpGapRequest = 1 << 0,       // bytes of the request were lost in capture
  kHttpGapResponse = 1 << 1,      // bytes of the response were lost in capture
  kHttpHeaderBound = 1 << 2,      // a header block (or trailer) longer than kHttpHeaderBlockMax
  kHttpQueueBound = 1 << 3,       // too many open exchanges: emitted before its response
  kHttpNoResponse = 1 << 4,       // the connection ended before the final response began
  kHttpNoRequest = 1 << 5,        // a response without a request
  kHttpTargetTruncated = 1 << 6,  // target longer than kHttpTargetMax (or no room left)
  kHttpHostTruncated = 1 << 7,    // Host longer than kHttpHostMax (or no room left)
  kHttpBadRequest = 1 << 8,       // invalid request framing (Content-Length, chunk size...)
  kHttpBadResponse = 1 << 9,      // invalid response framing
  kHttpRequestCut = 1 << 10,      // the request had not ended when the exchange was emitted
  kHttpResponseCut = 1 << 11,     // the connection ended inside the response
  // Bytes of the connection were lost in capture (or it was joined
  // mid-stream), and this request's response (or this response's request)
  // could not be told for certain: the exchange is emitted without its
  // other half rather than with another exchange's.
  kHttpUnpaired = 1 << 12,
};

// Facts about a complete or incomplete exchange: HttpExchange::flags.
enum HttpFlag : uint16_t {
  kHttpRequestChunked = 1 << 0,
  kHttpResponseChunked = 1 << 1,
  kHttpKeepAlive = 1 << 2,            // the connection persists after this exchange
  kHttpTraceparentInvalid = 1 << 3,   // a traceparent header was present but invalid (ignored)
  kHttpTracestateTruncated = 1 << 4,  // whole list members were dropped to fit
  kHttpTunnel = 1 << 5,               // 101 Switching Protocols or 2xx to CONNECT: not HTTP after
  kHttpEndUnseen = 1 << 6,  // the segment holding the response's last byte was not delivered:
                            // response_end_ns is the last time seen, a lower bound
};

// Where a request's trace context came from (HttpExchange::trace_origin).
enum class TraceOrigin : uint8_t {
  None,  // no valid context: the span starts a trace of its own
  W3C,   // a valid traceparent (which wins when B3 headers come too)
  B3,    // the b3 header, or X-B3-TraceId and X-B3-SpanId
};

// The ids the span of an exchange with trace context takes, decided when
// its request's header block ended (HttpExchangeSink::on_request_context,
// core/trace_links.h) or, if it never did, when the exchange is emitted.
struct TraceIds {
  bool assigned;         // the fields below are set
  bool has_parent;       // parent_id is the parent span's id
  uint8_t resend_count;  // the caller reused its id for this request: the n-th resend
  uint8_t span_id[8];
  uint8_t parent_id[8];
  uint32_t link;      // the request's entry in the TraceLinks index (0: none)
  uint32_t link_gen;  // ... in its use of that entry
};

// One exchange. Plain data, fixed size: strings are NUL-terminated, with their
// length; they hold the bytes as sent, which are printable ASCII except for
// bytes >= 0x80 (not validated as UTF-8).
struct HttpExchange {
  uint64_t request_start_ns;     // the request's first byte; 0 without a request
  uint64_t response_end_ns;      // the response's last byte; for an incomplete exchange
                                 // the last byte seen of it
  uint64_t request_body_bytes;   // body bytes on the wire (chunked: with the chunk framing)
  uint64_t response_body_bytes;  // counted from sequence numbers, seen or not
  uint16_t status;               // final status code, 0 if none
  uint16_t incomplete;           // HttpIncomplete bits
  uint16_t flags;                // HttpFlag bits
  uint8_t interim_responses;     // 1xx responses before the final one (saturates)
  HttpMethod method;
  uint8_t request_version;   // 10 (HTTP/1.0) or 11 (HTTP/1.1); 0 without a request
  uint8_t response_version;  // same, 0 without a response
  // Trace context of the request: trace_id and the caller's id for the
  // request (W3C parent-id, B3 SpanId) when trace_origin is not None.
  bool has_traceparent;  // a valid W3C traceparent (tracestate goes with it)
  TraceOrigin trace_origin;
  uint8_t trace_flags;  // W3C trace flags (B3: sampled -> 01)
  uint8_t trace_id[16];
  uint8_t parent_id[8];
  TraceIds ids;
  uint16_t method_len;  // of method_text
  uint16_t target_len;
  uint16_t host_len;
  uint16_t tracestate_len;               // 0 without a valid traceparent
  char method_text[kHttpMethodMax + 1];  // the token as sent (empty for None)
  char target[kHttpTargetMax + 1];
  char host[kHttpHostMax + 1];
  char tracestate[kHttpTracestateMax + 1];
};

// Receives exchanges as they complete. The exchange is valid only during the
// call; the call must not re-enter the HttpStream that makes it.
class HttpExchangeSink {
 public:
  virtual ~HttpExchangeSink() = default;
  virtual void on_exchange(const HttpExchange& exchange) = 0;
  // A request with trace context (trace_id, and caller_id: the id its
  // caller gave it) ended its header block: the sink may decide the ids of
  // its span now, into `ids` (left unassigned otherwise).
  virtual void on_request_context(const uint8_t trace_id[16], const uint8_t caller_id[8],
                                  TraceIds* ids) {
    (void)trace_id;
    (void)caller_id;
    (void)ids;
  }
};

// What one connection's parser counted, for the worker to add up (events, not
// bytes, unless named so).
struct HttpCounters {
  uint64_t segments;          // payload segments received
  uint64_t duplicates;        // segments that carried only bytes already counted
  uint64_t skipped_bytes;     // body bytes counted from sequence numbers without being seen
  uint64_t exchanges;         // exchanges emitted
  uint64_t incomplete;        // ... of which incomplete
  uint64_t gaps;              // holes given up (bytes lost in capture)
  uint64_t reorder_full;      // ... of which because the out-of-order buffer was full
  uint64_t header_bound;      // header blocks over kHttpHeaderBlockMax
  uint64_t queue_bound;       // exchanges emitted early: too many open exchanges
  uint64_t string_bound;      // target, Host or tracestate truncated
  uint64_t malformed;         // messages with invalid framing
  uint64_t junk;              // invalid start lines where a message should begin
  uint64_t resyncs;           // message starts found by hunting after a gap or mid-stream
  uint64_t no_request;        // responses without a request
  uint64_t orphan_responses;  // responses dropped: their request was emitted early
  uint64_t not_http;          // directions given up as not HTTP
  uint64_t traceparent_invalid;
  uint64_t realigned;  // pairing by order resumed after a loss or a mid-stream start
  uint64_t unpaired;   // responses emitted without a request as they could not be paired
};

}  // namespace ebpfc
