#include "core/http_span.h"

#include <cstddef>
#include <cstring>
#include <type_traits>

namespace ebpfc {

void http_span_from_exchange(const HttpExchange& ex, const ebpfc_flow_key& key, unsigned client,
                             const uint8_t connection_span_id[8], const WallClock& clock,
                             SpanIdGenerator& ids, HttpSpan& out) {
  const unsigned c = client & 1;
  const unsigned s = c ^ 1;
  const uint64_t start = ex.request_start_ns != 0 ? ex.request_start_ns : ex.response_end_ns;
  const uint64_t end = ex.response_end_ns >= start ? ex.response_end_ns : start;
  out.start_unix_us = clock.to_unix_us(start);
  out.end_unix_us = clock.to_unix_us(end);
  // A request that carries a valid traceparent joins its trace: the hop we
  // see is a child of the caller's span.
  if (ex.has_traceparent) {
    std::memcpy(out.trace_id, ex.trace_id, sizeof(out.trace_id));
    std::memcpy(out.parent_span_id, ex.parent_id, sizeof(out.parent_span_id));
    out.has_parent = true;
  } else {
    ids.trace_id(out.trace_id, out.start_unix_us);
    std::memset(out.parent_span_id, 0, sizeof(out.parent_span_id));
    out.has_parent = false;
  }
  ids.span_id(out.span_id);
  out.family = key.family;
  std::memcpy(out.src_addr, key.addr[c], sizeof(out.src_addr));
  std::memcpy(out.dst_addr, key.addr[s], sizeof(out.dst_addr));
  out.src_port = key.port[c];
  out.dst_port = key.port[s];
  std::memcpy(out.connection_span_id, connection_span_id, sizeof(out.connection_span_id));
  // Server-side semantics (we observe the server's answer): 5xx is an error,
  // 4xx is not; so is an exchange that never got a response. One emitted
  // early because too many were open has an unknown outcome, not an error.
  const bool no_response = ex.status == 0 && !(ex.incomplete & kHttpQueueBound);
  out.status = (ex.status >= 500 || no_response) ? SpanStatus::Error : SpanStatus::Unset;
  copy_exchange(ex, out.exchange);
}

void copy_exchange(const HttpExchange& from, HttpExchange& to) {
  static_assert(std::is_trivially_copyable<HttpExchange>::value, "HttpExchange is plain data");
  std::memcpy(&to, &from, offsetof(HttpExchange, method_text));
  // a length is never beyond its buffer; clamped all the same, so that a
  // broken one cannot make this copy overrun
  auto text = [](char* dst, const char* src, uint16_t& len, size_t cap) {
    if (len > cap) len = static_cast<uint16_t>(cap);
    std::memcpy(dst, src, len);
    dst[len] = '\0';
  };
  text(to.method_text, from.method_text, to.method_len, kHttpMethodMax);
  text(to.target, from.target, to.target_len, kHttpTargetMax);
  text(to.host, from.host, to.host_len, kHttpHostMax);
  text(to.tracestate, from.tracestate, to.tracestate_len, kHttpTracestateMax);
}

const char* http_span_name(const HttpExchange& ex) {
  switch (ex.method) {
    case HttpMethod::None:
    case HttpMethod::Other:
      return "HTTP";
    default:
      return http_method_name(ex.method);
  }
}

void http_attributes(const HttpSpan& span, AttributeSink& j) {
  const HttpExchange& ex = span.exchange;
  if (ex.method != HttpMethod::None) j.string("http.request.method", ex.method_text, ex.method_len);
  if (ex.host_len > 0) j.string("server.address", ex.host, ex.host_len);
  j.number("http.request.body.size", ex.request_body_bytes);
  j.number("http.response.body.size", ex.response_body_bytes);
  if (ex.request_version != 0 || ex.response_version != 0) {
    const uint8_t v = ex.response_version != 0 ? ex.response_version : ex.request_version;
    j.string("network.protocol.version", v == 10 ? "1.0" : "1.1", 3);
  }
  if (ex.interim_responses > 0) j.number("http.interim_responses", ex.interim_responses);
  if (ex.tracestate_len > 0) j.string("tracestate", ex.tracestate, ex.tracestate_len);
  if (ex.flags & kHttpTraceparentInvalid) j.boolean("http.traceparent_invalid", true);
  if (ex.flags & kHttpRequestChunked) j.boolean("http.request.chunked", true);
  if (ex.flags & kHttpResponseChunked) j.boolean("http.response.chunked", true);
  if (ex.flags & kHttpTunnel) j.boolean("http.tunnel", true);
  j.boolean("http.incomplete", ex.incomplete != 0);
  if (ex.incomplete != 0) {
    static const struct {
      uint16_t bit;
      const char* name;
    } kReasons[] = {
        {kHttpGapRequest, "request_gap"},           {kHttpGapResponse, "response_gap"},
        {kHttpHeaderBound, "header_bound"},         {kHttpQueueBound, "queue_bound"},
        {kHttpNoResponse, "no_response"},           {kHttpNoRequest, "no_request"},
        {kHttpTargetTruncated, "target_truncated"}, {kHttpHostTruncated, "host_truncated"},
        {kHttpBadRequest, "bad_request"},           {kHttpBadResponse, "bad_response"},
        {kHttpRequestCut, "request_cut"},           {kHttpResponseCut, "response_cut"},
    };
    j.begin_array("http.incomplete_reasons");
    for (const auto& r : kReasons)
      if (ex.incomplete & r.bit) j.array_string(r.name);
    j.end_array();
  }
  j.hex("tcp.span_id", span.connection_span_id, 8);
}

size_t format_http_attributes(const HttpSpan& span, char* buf, size_t size) {
  if (size == 0) return 0;
  JsonTextSink j(buf, size);
  http_attributes(span, j);
  return j.finish();
}

}  // namespace ebpfc
