// http_traceparent.h - trace context propagated in HTTP request headers: W3C
// Trace Context (traceparent) and Zipkin's B3 (the single `b3` header, and
// X-B3-TraceId / X-B3-SpanId / X-B3-Sampled).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

// A request's trace context: the trace, and the id the caller gave this
// request (W3C: the traceparent's parent-id, "the ID of this request as known
// by the caller"; B3: the SpanId, which names the same thing).
struct TraceParent {
  uint8_t trace_id[16];
  uint8_t parent_id[8];
  uint8_t flags;  // W3C trace flags: bit 0 is "sampled"
};

// Parses a traceparent value (surrounding whitespace already removed):
// version 00 only, exactly "00-<32 hex>-<16 hex>-<2 hex>" in lowercase hex,
// trace id and parent id not all zero. Returns false (out unspecified) for
// anything else.
bool parse_traceparent(const char* value, size_t len, TraceParent* out);

// B3 ids are lowercase hex, not all zero. A trace id has 32 digits or 16 (a
// 64-bit id, which becomes the low half of a 128-bit one, as Zipkin and
// OpenTelemetry's B3 propagator do); a span id 16.
bool parse_b3_trace_id(const char* value, size_t len, uint8_t out[16]);
bool parse_b3_span_id(const char* value, size_t len, uint8_t out[8]);
// X-B3-Sampled (or the single header's sampling state): "1" or "d" (debug)
// sampled, "0" not; returns false for anything else.
bool parse_b3_sampled(const char* value, size_t len, bool* sampled);

// The single header: "{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]"
// (every part as above). A value with no ids ("0", "1", "d": a sampling
// decision alone) carries no context: false. flags: sampled unless the
// state says "0".
bool parse_b3_single(const char* value, size_t len, TraceParent* out);

}  // namespace ebpfc
