#include "export/otlp_encode.h"

#include <arpa/inet.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/attribute_sink.h"
#include "core/http_span.h"
#include "core/span_attributes.h"

namespace ebpfc::otlp {

namespace {

// Field numbers of opentelemetry/proto/{collector/trace,trace,resource,common}/v1.
namespace f {
constexpr int kResourceSpans = 1;              // ExportTraceServiceRequest
constexpr int kResource = 1, kScopeSpans = 2;  // ResourceSpans
constexpr int kAttributes = 1;                 // Resource
constexpr int kScope = 1, kSpans = 2;          // ScopeSpans
constexpr int kScopeName = 1, kScopeVersion = 2, kScopeAttributes = 3;
constexpr int kTraceId = 1, kSpanId = 2, kTraceState = 3, kParentSpanId = 4, kName = 5, kKind = 6,
              kStart = 7, kEnd = 8, kSpanAttributes = 9, kStatus = 15, kFlags = 16;  // Span
constexpr int kStatusMessage = 2, kStatusCode = 3;                                   // Status
constexpr int kKey = 1, kValue = 2;                                                  // KeyValue
constexpr int kString = 1, kBool = 2, kInt = 3, kArray = 5;                          // AnyValue
constexpr int kArrayValues = 1;                                                      // ArrayValue
}  // namespace f

constexpr uint64_t kSpanKindServer = 2, kSpanKindClient = 3;
constexpr uint64_t kStatusError = 2;

void kv_begin(Writer& w, const char* key) {
  w.begin(w.list_field(), nullptr);  // an element of the attributes list open now
  w.string(f::kKey, "key", key, std::strlen(key));
  w.begin(f::kValue, "value");
}

void kv_end(Writer& w) {
  w.end();
  w.end();
}

void kv_str(Writer& w, const char* key, const char* s, size_t n) {
  kv_begin(w, key);
  w.string(f::kString, "stringValue", s, n);
  kv_end(w);
}

void kv_str(Writer& w, const char* key, std::string_view s) { kv_str(w, key, s.data(), s.size()); }

void kv_int(Writer& w, const char* key, int64_t v) {
  kv_begin(w, key);
  w.int64(f::kInt, "intValue", v);
  kv_end(w);
}

void kv_bool(Writer& w, const char* key, bool v) {
  kv_begin(w, key);
  w.boolean(f::kBool, "boolValue", v);
  kv_end(w);
}

// The table's attributes (tcp_attributes, http_attributes) as KeyValues.
class KeyValueSink final : public AttributeSink {
 public:
  explicit KeyValueSink(Writer& w) : w_(w) {}
  void string(const char* key, const char* s, size_t len) override {
    if (std::strcmp(key, "tracestate") == 0) return;  // the span's trace_state
    kv_str(w_, key, s, len);
  }
  void number(const char* key, uint64_t v) override { kv_int(w_, key, static_cast<int64_t>(v)); }
  void boolean(const char* key, bool v) override {
    if (v) kv_bool(w_, key, v);
  }
  void hex(const char* key, const uint8_t* bytes, size_t n) override {
    static const char* d = "0123456789abcdef";
    char buf[64];
    n = std::min(n, sizeof(buf) / 2);
    for (size_t i = 0; i < n; i++) {
      buf[2 * i] = d[bytes[i] >> 4];
      buf[2 * i + 1] = d[bytes[i] & 15];
    }
    kv_str(w_, key, buf, 2 * n);
  }
  void begin_array(const char* key) override {
    kv_begin(w_, key);
    w_.begin(f::kArray, "arrayValue");
    w_.begin_list(f::kArrayValues, "values");
  }
  void array_string(const char* s) override {
    w_.begin(w_.list_field(), nullptr);
    w_.string(f::kString, "stringValue", s, std::strlen(s));
    w_.end();
  }
  void end_array() override {
    w_.end_list();
    w_.end();
    kv_end(w_);
  }

 private:
  Writer& w_;
};

const char* network_type(uint8_t family) { return family == 4 ? "ipv4" : "ipv6"; }

void times(Writer& w, int64_t start_us, int64_t end_us) {
  w.fixed64(f::kStart, "startTimeUnixNano", static_cast<uint64_t>(start_us) * 1000);
  w.fixed64(f::kEnd, "endTimeUnixNano", static_cast<uint64_t>(end_us) * 1000);
}

void error_status(Writer& w, const char* message) {
  w.begin(f::kStatus, "status");
  w.string(f::kStatusMessage, "message", message, std::strlen(message));
  w.uint(f::kStatusCode, "code", kStatusError);
  w.end();
}

}  // namespace

const char* content_type(Format fmt) {
  return fmt == Format::Json ? "application/json" : "application/x-protobuf";
}

const char* content_encoding(Compression c) { return c == Compression::Gzip ? "gzip" : nullptr; }

std::string address_text(uint8_t family, const uint8_t addr[16]) {
  char buf[INET6_ADDRSTRLEN];
  if (family != 4) {
    inet_ntop(AF_INET6, addr, buf, sizeof(buf));
    return buf;
  }
  // IPv4 by hand: inet_ntop formats with sprintf, a third of the encoding's time
  char* o = buf;
  for (int i = 12; i < 16; i++) {
    unsigned v = addr[i];
    if (v >= 100) *o++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *o++ = static_cast<char>('0' + v / 10 % 10);
    *o++ = static_cast<char>('0' + v % 10);
    if (i < 15) *o++ = '.';
  }
  return std::string(buf, static_cast<size_t>(o - buf));
}

void Encoder::resource(Writer& w, const Item& it) {
  w.begin(f::kResource, "resource");
  w.begin_list(f::kAttributes, "attributes");
  const kube::PeerIdentity* who = it.who;
  if (who == nullptr) {
    kv_str(w, "service.name", address_text(it.family, it.addr));
  } else {
    const std::string_view name = !who->workload.empty() ? who->workload
                                  : !who->pod.empty()    ? who->pod
                                                         : who->node;
    kv_str(w, "service.name", name);
    if (!who->ns.empty()) kv_str(w, "k8s.namespace.name", who->ns);
    if (!who->pod.empty()) kv_str(w, "k8s.pod.name", who->pod);
    if (!who->workload.empty() && who->workload_kind != "Pod" && who->workload_kind != "Node" &&
        !who->workload_kind.empty()) {
      std::string key = "k8s.";
      for (const char c : who->workload_kind)
        key += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      key += ".name";
      kv_str(w, key.c_str(), who->workload);
    }
    if (!who->node.empty()) kv_str(w, "k8s.node.name", who->node);
  }
  w.end_list();
  w.end();
}

void Encoder::tcp_span(Writer& w, const Span& s) {
  w.begin(w.list_field(), nullptr);
  w.bytes(f::kTraceId, "traceId", s.trace_id, 16);
  w.bytes(f::kSpanId, "spanId", s.span_id, 8);
  w.string(f::kName, "name", "tcp.connection", 14);
  w.uint(f::kKind, "kind", kSpanKindClient);
  times(w, s.start_unix_us, s.end_unix_us);
  w.begin_list(f::kSpanAttributes, "attributes");
  const std::string src = address_text(s.family, s.src_addr);
  const std::string dst = address_text(s.family, s.dst_addr);
  kv_str(w, "server.address", dst);
  kv_int(w, "server.port", s.dst_port);
  kv_str(w, "client.address", src);
  kv_int(w, "client.port", s.src_port);
  kv_str(w, "network.peer.address", dst);
  kv_int(w, "network.peer.port", s.dst_port);
  kv_str(w, "network.transport", "tcp");
  kv_str(w, "network.type", network_type(s.family));
  kv_int(w, "tcp.bytes_sent", static_cast<int64_t>(s.bytes_sent));
  kv_int(w, "tcp.bytes_received", static_cast<int64_t>(s.bytes_received));
  kv_int(w, "tcp.packets_sent", static_cast<int64_t>(s.packets_sent));
  kv_int(w, "tcp.packets_received", static_cast<int64_t>(s.packets_received));
  KeyValueSink sink(w);
  tcp_attributes(s, sink);
  w.end_list();
  if (s.status == SpanStatus::Error)
    error_status(w, s.reset_by != Side::None ? "connection reset" : "connection failed");
  w.end();
}

void Encoder::http_span(Writer& w, const HttpSpan& s, const char* text) {
  w.begin(w.list_field(), nullptr);
  w.bytes(f::kTraceId, "traceId", s.trace_id, 16);
  w.bytes(f::kSpanId, "spanId", s.span_id, 8);
  if (s.tracestate.len > 0)
    w.string(f::kTraceState, "traceState", text + s.tracestate.offset, s.tracestate.len);
  if (s.has_parent) w.bytes(f::kParentSpanId, "parentSpanId", s.parent_span_id, 8);
  const char* name = http_span_name(s);
  w.string(f::kName, "name", name, std::strlen(name));
  w.uint(f::kKind, "kind", kSpanKindServer);
  times(w, s.start_unix_us, s.end_unix_us);
  w.begin_list(f::kSpanAttributes, "attributes");
  if (s.method != HttpMethod::None) {
    const bool known = s.method != HttpMethod::Other;
    kv_str(w, "http.request.method", known ? http_method_name(s.method) : "_OTHER");
    if (!known) kv_str(w, "http.request.method_original", text_of(text, s.method_text));
  }
  const std::string_view target = text_of(text, s.target);
  const size_t q = target.find('?');
  if (!target.empty()) kv_str(w, "url.path", target.substr(0, q));
  if (q != std::string_view::npos && q + 1 < target.size())
    kv_str(w, "url.query", target.substr(q + 1));
  if (s.http_status != 0) kv_int(w, "http.response.status_code", s.http_status);
  const std::string client = address_text(s.family, s.src_addr);
  kv_str(w, "client.address", client);
  kv_int(w, "client.port", s.src_port);
  kv_str(w, "network.peer.address", client);
  kv_int(w, "network.peer.port", s.src_port);
  kv_int(w, "http.request.body.size", static_cast<int64_t>(s.request_body_bytes));
  kv_int(w, "http.response.body.size", static_cast<int64_t>(s.response_body_bytes));
  char error[8];
  if (s.status == SpanStatus::Error) {
    if (s.http_status >= 500)
      kv_str(w, "error.type", error,
             static_cast<size_t>(snprintf(error, sizeof(error), "%u", s.http_status)));
    else
      kv_str(w, "error.type", "no_response");
  }
  KeyValueSink sink(w);
  http_attributes(s, text, sink);
  w.end_list();
  if (s.status == SpanStatus::Error) {
    char message[32];
    if (s.http_status >= 500)
      snprintf(message, sizeof(message), "HTTP %u", s.http_status);
    else
      snprintf(message, sizeof(message), "no response");
    error_status(w, message);
  }
  if (s.trace_flags != 0) w.fixed32(f::kFlags, "flags", s.trace_flags);
  w.end();
}

void Encoder::pg_span(Writer& w, const PgSpan& s, const char* text) {
  w.begin(w.list_field(), nullptr);
  w.bytes(f::kTraceId, "traceId", s.trace_id, 16);
  w.bytes(f::kSpanId, "spanId", s.span_id, 8);
  char buf[128];
  const char* name = pg_span_name(s, text, buf, sizeof(buf));
  w.string(f::kName, "name", name, std::strlen(name));
  w.uint(f::kKind, "kind", kSpanKindClient);
  times(w, s.start_unix_us, s.end_unix_us);
  w.begin_list(f::kSpanAttributes, "attributes");
  kv_str(w, "server.address", address_text(s.family, s.dst_addr));
  kv_int(w, "server.port", s.dst_port);
  const std::string peer = address_text(s.family, s.dst_addr);
  kv_str(w, "network.peer.address", peer);
  kv_int(w, "network.peer.port", s.dst_port);
  KeyValueSink sink(w);
  pg_attributes(s, text, sink);
  w.end_list();
  if (s.status == SpanStatus::Error) {
    if (s.system == DbSystem::Redis) {
      const std::string code(text_of(text, s.error_code));
      error_status(w, code.empty() ? "error" : code.c_str());
    } else {
      error_status(w, s.sqlstate[0] != '\0' ? s.sqlstate : "error");
    }
  }
  w.end();
}

size_t Encoder::encode(const SpanBatch::Chunk& chunk, const kube::PeerIdentity* const* peers,
                       const EncodeOptions& options, std::vector<uint8_t>& out) {
  out.clear();
  items_.clear();
  const size_t ntcp = options.connection_spans ? chunk.ntcp : 0;
  items_.reserve(ntcp + chunk.nhttp + chunk.npg);
  for (size_t i = 0; i < ntcp; i++) {
    const Span& s = chunk.tcp[i];
    Item it{peers[2 * i], {}, s.family, 0, static_cast<uint32_t>(i)};
    if (it.who == nullptr) std::memcpy(it.addr, s.src_addr, 16);  // the client's service
    items_.push_back(it);
  }
  for (size_t i = 0; i < chunk.nhttp; i++) {
    const HttpSpan& s = chunk.http[i];
    Item it{peers[2 * (chunk.ntcp + i) + 1], {}, s.family, 1, static_cast<uint32_t>(i)};
    if (it.who == nullptr) std::memcpy(it.addr, s.dst_addr, 16);  // the server's service
    items_.push_back(it);
  }
  for (size_t i = 0; i < chunk.npg; i++) {
    const PgSpan& s = chunk.pg[i];
    Item it{peers[2 * (chunk.ntcp + chunk.nhttp + i)], {}, s.family, 2, static_cast<uint32_t>(i)};
    if (it.who == nullptr) std::memcpy(it.addr, s.src_addr, 16);  // the client's service
    items_.push_back(it);
  }
  if (items_.empty()) return 0;
  auto same_resource = [](const Item& a, const Item& b) {
    return a.who == b.who && (a.who != nullptr || std::memcmp(a.addr, b.addr, 16) == 0);
  };
  std::sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
    if (a.who != b.who) return std::less<const void*>()(a.who, b.who);
    if (a.who == nullptr) {
      const int c = std::memcmp(a.addr, b.addr, 16);
      if (c != 0) return c < 0;
    }
    if (a.kind != b.kind) return a.kind < b.kind;
    return a.index < b.index;
  });

  Writer& w = options.format == Format::Json ? static_cast<Writer&>(json_) : protobuf_;
  w.clear();
  w.begin(0, nullptr);
  w.begin_list(f::kResourceSpans, "resourceSpans");
  for (size_t i = 0; i < items_.size();) {
    size_t j = i;
    while (j < items_.size() && same_resource(items_[i], items_[j])) j++;
    w.begin(w.list_field(), nullptr);
    resource(w, items_[i]);
    w.begin_list(f::kScopeSpans, "scopeSpans");
    w.begin(w.list_field(), nullptr);
    w.begin(f::kScope, "scope");
    w.string(f::kScopeName, "name", "ebpf_capture", 12);
    w.string(f::kScopeVersion, "version", "0.2", 3);
    w.begin_list(f::kScopeAttributes, "attributes");
    kv_str(w, "ebpf_capture.interface", options.interface);
    w.end_list();
    w.end();
    w.begin_list(f::kSpans, "spans");
    for (size_t k = i; k < j; k++) {
      if (items_[k].kind == 1)
        http_span(w, chunk.http[items_[k].index], chunk.http_text);
      else if (items_[k].kind == 2)
        pg_span(w, chunk.pg[items_[k].index], chunk.pg_text);
      else
        tcp_span(w, chunk.tcp[items_[k].index]);
    }
    w.end_list();
    w.end();
    w.end_list();
    w.end();
    i = j;
  }
  w.end_list();
  w.end();
  if (options.compression == Compression::Gzip)
    gzip(w.data().data(), w.data().size(), out);
  else
    out.assign(w.data().begin(), w.data().end());
  return items_.size();
}

void gzip(const uint8_t* in, size_t n, std::vector<uint8_t>& out) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("gzip: deflateInit2 failed");
  out.resize(deflateBound(&z, n));
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(n);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t written = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("gzip: deflate failed");
  out.resize(written);
}

}  // namespace ebpfc::otlp
