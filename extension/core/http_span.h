// http_span.h - turns an HTTP exchange seen on a connection into a span row:
// ids from the W3C trace context, OpenTelemetry name, kind and status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "capture_abi.h"
#include "core/attribute_sink.h"
#include "core/http_exchange.h"
#include "core/span.h"
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

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
  HttpExchange exchange;
};

// An allocator whose construct() without arguments default-initializes:
// a new HttpSpan (about 3 KiB, mostly string buffers) in a span list is
// filled in by http_span_from_exchange, not zeroed first.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using HttpSpanList = std::vector<HttpSpan, DefaultInitAllocator<HttpSpan>>;

// Copies an exchange: its fixed fields and the used part of each string
// (with its NUL), not the whole 3 KiB of string buffers.
void copy_exchange(const HttpExchange& from, HttpExchange& to);

// Builds the span of `ex`, seen on connection `key` whose client is endpoint
// `client`; connection_span_id is the id the connection's tcp span will carry.
void http_span_from_exchange(const HttpExchange& ex, const ebpfc_flow_key& key, unsigned client,
                             const uint8_t connection_span_id[8], const WallClock& clock,
                             SpanIdGenerator& ids, HttpSpan& out);

// The span name per OpenTelemetry: the method ("GET"), or "HTTP" when it is
// not a known one (or there was no request).
const char* http_span_name(const HttpExchange& ex);

// The attributes of an HTTP span (Host, body sizes, version, tracestate, why
// it is incomplete, the connection's span id), emitted into a sink.
void http_attributes(const HttpSpan& span, AttributeSink& out);

// The same as a JSON object text. Returns the length, or 0 if buf is too
// small (kHttpAttributesMax always suffices).
constexpr size_t kHttpAttributesMax = 8192;
size_t format_http_attributes(const HttpSpan& span, char* buf, size_t size);

}  // namespace ebpfc
