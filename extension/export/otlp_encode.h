// otlp_encode.h - a chunk of spans (what one insert transaction writes) as
// one OTLP ExportTraceServiceRequest, in protobuf or JSON, gzip-compressed
// or not.
//
// Resources follow the OpenTelemetry semantic conventions: the service of an
// HTTP span is the server (the span is the server's handling of the
// request: kind SERVER), of a connection span the client (kind CLIENT).
// Their resource attributes are service.name (the workload, else the pod,
// else the node, else the address), k8s.namespace.name, k8s.pod.name,
// k8s.<kind>.name (k8s.deployment.name, k8s.statefulset.name, ...) and
// k8s.node.name. Spans of one resource are grouped in one ResourceSpans.
//
// HTTP span attributes: http.request.method (and
// http.request.method_original for an unknown method), url.path, url.query
// (as stored: redacted or dropped per ebpf_capture.http_query),
// http.response.status_code, server.address and server.port (from Host),
// client.address/client.port and network.peer.address/.port (the client),
// network.protocol.version, http.request.body.size, http.response.body.size,
// error.type, and the capture's own (http.incomplete_reasons, tcp.span_id,
// ...); tracestate goes in the span's trace_state. Connection spans: name
// tcp.connection, server.address/.port, client.address/.port,
// network.peer.address/.port (the server), network.transport, network.type,
// tcp.bytes_sent, tcp.bytes_received, tcp.packets_sent, tcp.packets_received
// and the tcp.* attributes of the table. A flag that is false is left out.
//
// PostgreSQL-free. The encoder keeps its buffers from one chunk to the next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/span_batch.h"
#include "export/otlp_writer.h"
#include "kube/pod_cache.h"

namespace ebpfc::otlp {

enum class Format : uint8_t { Protobuf, Json };
enum class Compression : uint8_t { None, Gzip };

struct EncodeOptions {
  Format format = Format::Protobuf;
  Compression compression = Compression::Gzip;
  bool connection_spans = true;  // export tcp spans too
  std::string interface;         // the capture's, an attribute of the scope
};

const char* content_type(Format f);           // application/x-protobuf, application/json
const char* content_encoding(Compression c);  // "gzip", or nullptr

class Encoder {
 public:
  // Encodes the chunk's spans; peers[2 * i], peers[2 * i + 1] are the source
  // and destination of span i (tcp first, then http; null: no pod known).
  // The request body goes to `out` (replaced); returns the number of spans
  // in it (0: nothing to send, out is empty). Throws std::bad_alloc, or
  // std::runtime_error if compression fails.
  size_t encode(const SpanBatch::Chunk& chunk, const kube::PeerIdentity* const* peers,
                const EncodeOptions& options, std::vector<uint8_t>& out);

 private:
  struct Item {
    const kube::PeerIdentity* who;  // the resource's pod, or null
    uint8_t addr[16];               // ... else its address
    uint8_t family;
    uint8_t kind;    // 0 tcp, 1 http, 2 postgresql
    uint32_t index;  // in chunk.tcp, chunk.http or chunk.pg
  };
  void resource(Writer& w, const Item& it);
  void tcp_span(Writer& w, const Span& s);
  void http_span(Writer& w, const HttpSpan& s, const char* text);
  void pg_span(Writer& w, const PgSpan& s, const char* text);

  std::vector<Item> items_;
  ProtobufWriter protobuf_;
  JsonWriter json_;
};

// Gzip (RFC 1952) of in[0..n) into out (replaced), at zlib's fastest level.
// Throws std::runtime_error if zlib fails.
void gzip(const uint8_t* in, size_t n, std::vector<uint8_t>& out);

// The address as text (IPv4 dotted for family 4).
std::string address_text(uint8_t family, const uint8_t addr[16]);

}  // namespace ebpfc::otlp
