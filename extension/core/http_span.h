// http_span.h - turns an HTTP exchange seen on a connection into a span row:
// ids from the W3C trace context, OpenTelemetry name, kind and status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "capture_abi.h"
#include "core/attribute_sink.h"
#include "core/http_exchange.h"
#include "core/span.h"
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

// A string of a span waiting in an HttpSpanList: where it is in the list's
// text.
struct TextRef {
  uint32_t offset;
  uint16_t len;
};

// The span of one HTTP exchange, as it waits to be written: fixed fields,
// and its strings (method, target, Host, tracestate) by reference into the
// text of the HttpSpanList that holds it. About 160 bytes and the strings'
// own length, where the exchange the parser fills keeps fixed buffers of
// almost 3 KiB.
struct HttpSpan {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_span_id[8];
  bool has_parent;
  int64_t start_unix_us;
  int64_t end_unix_us;
  uint8_t family;
  uint8_t src_addr[16];  // the client
  uint8_t dst_addr[16];  // the server
  uint16_t src_port;
  uint16_t dst_port;
  uint8_t connection_span_id[8];  // the span_id of the connection's tcp span
  SpanStatus status;
  // The exchange, but for its strings (see HttpExchange).
  uint64_t request_body_bytes;
  uint64_t response_body_bytes;
  uint16_t http_status;
  uint16_t incomplete;
  uint16_t flags;
  uint8_t interim_responses;
  uint8_t resend_count;  // the caller reused its id for this request: the n-th resend
  uint8_t trace_flags;   // W3C trace flags of the request's context (0 without one)
  HttpMethod method;
  uint8_t request_version;
  uint8_t response_version;
  TextRef method_text;
  TextRef target;
  TextRef host;
  TextRef tracestate;
};

// What becomes of a request target's query string before it is stored. Query
// strings carry tokens and signatures (OpenTelemetry: url.query is sensitive).
enum class HttpQueryMode : uint8_t {
  Keep,    // as sent
  Redact,  // each parameter's value replaced by REDACTED; the keys stay
  Drop,    // the query is removed, with its '?'
};

// The spans waiting in one buffer: the fixed parts in a vector, the strings
// one after the other in a text buffer. Appending copies only the strings'
// bytes; both buffers keep their memory from one batch to the next.
class HttpSpanList {
 public:
  // Appends the span of `ex`'s strings, the target made per `query`; the
  // caller fills in the rest (http_span_from_exchange).
  HttpSpan& append(const HttpExchange& ex, HttpQueryMode query);
  void pop_back();
  void clear() {
    spans_.clear();
    text_.clear();
  }
  size_t size() const { return spans_.size(); }
  bool empty() const { return spans_.empty(); }
  HttpSpan& operator[](size_t i) { return spans_[i]; }
  const HttpSpan& operator[](size_t i) const { return spans_[i]; }
  HttpSpan& back() { return spans_.back(); }
  const HttpSpan* data() const { return spans_.data(); }
  // Where a span's TextRefs point into.
  const char* text() const { return text_.data(); }
  // The bytes the spans and their strings take.
  size_t bytes() const { return spans_.size() * sizeof(HttpSpan) + text_.size(); }
  // The bytes reserved, in use or not.
  size_t capacity_bytes() const { return spans_.capacity() * sizeof(HttpSpan) + text_.capacity(); }
  void swap(HttpSpanList& other) {
    spans_.swap(other.spans_);
    text_.swap(other.text_);
  }
  // Gives the reserved memory back.
  void release() {
    std::vector<HttpSpan>().swap(spans_);
    std::vector<char>().swap(text_);
  }
  // Reserves room for `bytes` of spans and as many of strings: address
  // space only (memory is resident once written), and the buffers then never
  // move their contents to grow.
  void reserve(size_t bytes) {
    spans_.reserve(bytes / sizeof(HttpSpan));
    text_.reserve(bytes);
  }

 private:
  TextRef put(const char* s, size_t len);
  TextRef put_target(const char* s, size_t len, HttpQueryMode query, bool* truncated);

  std::vector<HttpSpan> spans_;
  std::vector<char> text_;
};

// A span's string.
inline std::string_view text_of(const char* text, TextRef ref) {
  return std::string_view(text + ref.offset, ref.len);
}

// Fills in the span of `ex` (appended by HttpSpanList::append), seen on
// connection `key` whose client is endpoint `client`; connection_span_id is
// the id the connection's tcp span will carry. A request with trace context
// joins its trace with the ids `trace` says (core/trace_links.h: the span id
// and parent decided when its header block ended); one without gets a trace
// of its own.
void http_span_from_exchange(const HttpExchange& ex, const TraceIds& trace,
                             const ebpfc_flow_key& key, unsigned client,
                             const uint8_t connection_span_id[8], const WallClock& clock,
                             SpanIdGenerator& ids, HttpSpan& out);

// The Host header split the way OpenTelemetry's server.address and
// server.port want it: the host without brackets or port, and the port (0
// when the value names none, or not a valid one).
struct HostPort {
  std::string_view host;
  uint16_t port;
};
HostPort split_host(std::string_view host_header);

// The span name per OpenTelemetry: the method ("GET"), or "HTTP" when it is
// not a known one (or there was no request).
const char* http_span_name(const HttpSpan& span);

// The attributes of an HTTP span (Host, body sizes, version, tracestate, why
// it is incomplete, the connection's span id), emitted into a sink; `text`
// is the text of the list that holds the span.
void http_attributes(const HttpSpan& span, const char* text, AttributeSink& out);

}  // namespace ebpfc
