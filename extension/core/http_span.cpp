#include "core/http_span.h"

#include <cstddef>
#include <cstring>

namespace ebpfc {

void http_span_from_exchange(const HttpExchange& ex, const TraceIds& trace,
                             const ebpfc_flow_key& key, unsigned client,
                             const uint8_t connection_span_id[8], const WallClock& clock,
                             SpanIdGenerator& ids, HttpSpan& out) {
  const unsigned c = client & 1;
  const unsigned s = c ^ 1;
  const uint64_t start = ex.request_start_ns != 0 ? ex.request_start_ns : ex.response_end_ns;
  const uint64_t end = ex.response_end_ns >= start ? ex.response_end_ns : start;
  out.start_unix_us = clock.to_unix_us(start);
  out.end_unix_us = clock.to_unix_us(end);
  out.resend_count = 0;
  out.trace_flags = 0;
  if (ex.trace_origin != TraceOrigin::None && trace.assigned) {
    std::memcpy(out.trace_id, ex.trace_id, sizeof(out.trace_id));
    std::memcpy(out.span_id, trace.span_id, sizeof(out.span_id));
    std::memcpy(out.parent_span_id, trace.parent_id, sizeof(out.parent_span_id));
    out.has_parent = trace.has_parent;
    out.resend_count = trace.resend_count;
    out.trace_flags = ex.trace_flags;
  } else {
    ids.trace_id(out.trace_id, out.start_unix_us);
    ids.span_id(out.span_id);
    std::memset(out.parent_span_id, 0, sizeof(out.parent_span_id));
    out.has_parent = false;
  }
  out.family = key.family;
  std::memcpy(out.src_addr, key.addr[c], sizeof(out.src_addr));
  std::memcpy(out.dst_addr, key.addr[s], sizeof(out.dst_addr));
  out.src_port = key.port[c];
  out.dst_port = key.port[s];
  std::memcpy(out.connection_span_id, connection_span_id, sizeof(out.connection_span_id));
  // Server-side semantics (we observe the server's answer): 5xx is an error,
  // 4xx is not; so is an exchange that never got a response. Its outcome is
  // unknown, not an error, when it was emitted early because too many were
  // open, when its response was lost in capture, or when which response was
  // its could not be told after a loss (that response has its own span).
  const bool no_response =
      ex.status == 0 && !(ex.incomplete & (kHttpQueueBound | kHttpGapResponse | kHttpUnpaired));
  out.status = (ex.status >= 500 || no_response) ? SpanStatus::Error : SpanStatus::Unset;
  out.request_body_bytes = ex.request_body_bytes;
  out.response_body_bytes = ex.response_body_bytes;
  out.http_status = ex.status;
  out.incomplete |= ex.incomplete;  // append() may have set target_truncated
  out.flags = ex.flags;
  out.interim_responses = ex.interim_responses;
  out.method = ex.method;
  out.request_version = ex.request_version;
  out.response_version = ex.response_version;
}

namespace {

// A length is never beyond its buffer; clamped all the same, so that a
// broken one cannot make a copy overrun.
size_t clamp(uint16_t len, size_t cap) { return len > cap ? cap : len; }

}  // namespace

TextRef HttpSpanList::put(const char* s, size_t len) {
  TextRef ref{static_cast<uint32_t>(text_.size()), static_cast<uint16_t>(len)};
  text_.insert(text_.end(), s, s + len);
  return ref;
}

TextRef HttpSpanList::put_target(const char* s, size_t len, HttpQueryMode query, bool* truncated) {
  const char* q = static_cast<const char*>(std::memchr(s, '?', len));
  if (q == nullptr || query == HttpQueryMode::Keep) return put(s, len);
  const size_t path = static_cast<size_t>(q - s);
  if (query == HttpQueryMode::Drop) return put(s, path);
  // Redact: every parameter keeps its key; a value becomes REDACTED. The
  // result stays within kHttpTargetMax (cut at a parameter boundary).
  static const char kRedacted[] = "REDACTED";
  const size_t begin = text_.size();
  text_.insert(text_.end(), s, q + 1);
  size_t i = path + 1;
  while (i < len) {
    size_t end = i;
    while (end < len && s[end] != '&') end++;
    const char* eq = static_cast<const char*>(std::memchr(s + i, '=', end - i));
    const size_t key_len = eq != nullptr ? static_cast<size_t>(eq - (s + i)) : end - i;
    const bool has_value = eq != nullptr && static_cast<size_t>(eq - s) + 1 < end;
    const size_t add = key_len + (eq != nullptr ? 1 : 0) + (has_value ? sizeof(kRedacted) - 1 : 0) +
                       (end < len ? 1 : 0);
    if (text_.size() - begin + add > kHttpTargetMax) {
      *truncated = true;
      break;
    }
    text_.insert(text_.end(), s + i, s + i + key_len);
    if (eq != nullptr) text_.push_back('=');
    if (has_value) text_.insert(text_.end(), kRedacted, kRedacted + sizeof(kRedacted) - 1);
    if (end < len) text_.push_back('&');
    i = end + 1;
  }
  return TextRef{static_cast<uint32_t>(begin), static_cast<uint16_t>(text_.size() - begin)};
}

HttpSpan& HttpSpanList::append(const HttpExchange& ex, HttpQueryMode query) {
  HttpSpan span;
  std::memset(&span, 0, sizeof(span));
  bool truncated = false;
  span.method_text = put(ex.method_text, clamp(ex.method_len, kHttpMethodMax));
  span.target = put_target(ex.target, clamp(ex.target_len, kHttpTargetMax), query, &truncated);
  span.host = put(ex.host, clamp(ex.host_len, kHttpHostMax));
  span.tracestate = put(ex.tracestate, clamp(ex.tracestate_len, kHttpTracestateMax));
  if (truncated) span.incomplete |= kHttpTargetTruncated;
  spans_.push_back(span);
  return spans_.back();
}

void HttpSpanList::pop_back() {
  text_.resize(spans_.back().method_text.offset);  // its strings are the last ones
  spans_.pop_back();
}

HostPort split_host(std::string_view v) {
  HostPort out{v, 0};
  size_t colon = std::string_view::npos;
  if (!v.empty() && v.front() == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos) return out;
    out.host = v.substr(1, close - 1);
    if (close + 1 < v.size() && v[close + 1] == ':') colon = close + 1;
  } else {
    colon = v.find(':');
    if (colon != std::string_view::npos && v.find(':', colon + 1) != std::string_view::npos)
      return out;  // an IPv6 address without brackets: no port in it
    if (colon != std::string_view::npos) out.host = v.substr(0, colon);
  }
  if (colon == std::string_view::npos) return out;
  const std::string_view port = v.substr(colon + 1);
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || port.size() > 5) return HostPort{out.host, 0};
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  out.port = p <= 65535 ? static_cast<uint16_t>(p) : 0;
  return out;
}

const char* http_span_name(const HttpSpan& span) {
  switch (span.method) {
    case HttpMethod::None:
    case HttpMethod::Other:
      return "HTTP";
    default:
      return http_method_name(span.method);
  }
}

// What the row's columns hold (the method, the body sizes: http_method,
// bytes_sent, bytes_received) is not repeated here: every attribute costs
// every row its bytes.
void http_attributes(const HttpSpan& span, const char* text, AttributeSink& j) {
  const HttpSpan& ex = span;
  auto str = [&](const char* key, TextRef ref) { j.string(key, text + ref.offset, ref.len); };
  if (ex.host.len > 0) {
    const HostPort hp = split_host(text_of(text, ex.host));
    if (!hp.host.empty()) j.string("server.address", hp.host.data(), hp.host.size());
    if (hp.port != 0) j.number("server.port", hp.port);
  }
  if (ex.resend_count > 0) j.number("http.request.resend_count", ex.resend_count);
  if (ex.request_version != 0 || ex.response_version != 0) {
    const uint8_t v = ex.response_version != 0 ? ex.response_version : ex.request_version;
    j.string("network.protocol.version", v == 10 ? "1.0" : "1.1", 3);
  }
  if (ex.interim_responses > 0) j.number("http.interim_responses", ex.interim_responses);
  if (ex.tracestate.len > 0) str("tracestate", ex.tracestate);
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
        {kHttpGapRequest, "request_gap"},
        {kHttpGapResponse, "response_gap"},
        {kHttpHeaderBound, "header_bound"},
        {kHttpQueueBound, "queue_bound"},
        {kHttpNoResponse, "no_response"},
        {kHttpNoRequest, "no_request"},
        {kHttpTargetTruncated, "target_truncated"},
        {kHttpHostTruncated, "host_truncated"},
        {kHttpBadRequest, "bad_request"},
        {kHttpBadResponse, "bad_response"},
        {kHttpRequestCut, "request_cut"},
        {kHttpResponseCut, "response_cut"},
        {kHttpUnpaired, "unpaired"},
    };
    j.begin_array("http.incomplete_reasons");
    for (const auto& r : kReasons)
      if (ex.incomplete & r.bit) j.array_string(r.name);
    j.end_array();
  }
  j.hex("tcp.span_id", span.connection_span_id, 8);
}

}  // namespace ebpfc
