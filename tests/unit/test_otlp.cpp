// Tests of the OTLP exporter's PostgreSQL-free parts: the writers, the
// encoding of a chunk (read back as JSON with nlohmann::json, and as
// protobuf with a wire-format walker; the integration tests decode with the
// OpenTelemetry protobuf definitions), gzip, and the policy for answers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <algorithm>
#include <map>
#include <set>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "export/otlp_encode.h"
#include "export/otlp_policy.h"

namespace ebpfc::otlp {
namespace {

using json = nlohmann::json;

// ---- a protobuf wire-format walker -------------------------------------------

struct Field {
  int number;
  int wire;
  uint64_t value;     // varint / fixed
  std::string bytes;  // length-delimited
};

std::vector<Field> fields(const std::string& msg) {
  std::vector<Field> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; i < msg.size(); shift += 7) {
      const uint8_t b = static_cast<uint8_t>(msg[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ADD_FAILURE() << "truncated varint";
    return v;
  };
  while (i < msg.size()) {
    const uint64_t tag = varint();
    Field f{static_cast<int>(tag >> 3), static_cast<int>(tag & 7), 0, {}};
    if (f.wire == 0) {
      f.value = varint();
    } else if (f.wire == 1 || f.wire == 5) {
      const size_t n = f.wire == 1 ? 8 : 4;
      for (size_t k = 0; k < n; k++)
        f.value |= static_cast<uint64_t>(static_cast<uint8_t>(msg[i + k])) << (8 * k);
      i += n;
    } else if (f.wire == 2) {
      const uint64_t n = varint();
      EXPECT_LE(i + n, msg.size());
      f.bytes = msg.substr(i, n);
      i += n;
    } else {
      ADD_FAILURE() << "wire type " << f.wire;
      break;
    }
    out.push_back(f);
  }
  return out;
}

std::vector<std::string> sub(const std::string& msg, int number) {
  std::vector<std::string> out;
  for (const Field& f : fields(msg))
    if (f.number == number && f.wire == 2) out.push_back(f.bytes);
  return out;
}

TEST(OtlpWriter, NestedLengthsBeyondOneByteAreExact) {
  ProtobufWriter w;
  w.begin(0, nullptr);
  w.begin(1, nullptr);
  const std::string big(300, 'x');
  w.string(2, nullptr, big.data(), big.size());
  w.begin(3, nullptr);
  w.string(4, nullptr, "y", 1);
  w.end();
  w.end();
  w.uint(5, nullptr, 150);
  w.end();
  const std::string msg(w.data().begin(), w.data().end());
  const auto top = fields(msg);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[1].number, 5);
  EXPECT_EQ(top[1].value, 150u);
  const auto inner = fields(top[0].bytes);
  ASSERT_EQ(inner.size(), 2u);
  EXPECT_EQ(inner[0].bytes, big);
  EXPECT_EQ(sub(inner[1].bytes, 4), std::vector<std::string>{"y"});
}

TEST(OtlpWriter, StringsFromTheWireBecomeValidUtf8) {
  JsonWriter w;
  w.begin(0, nullptr);
  w.string(1, "s", "a\"b\xff\x01", 5);
  w.end();
  const json j = json::parse(std::string(w.data().begin(), w.data().end()));
  const std::string s = j["s"];
  EXPECT_EQ(s.substr(0, 3), "a\"b");
  EXPECT_EQ(s.find('\x01'), std::string::npos);
}

// ---- a chunk: one tcp span, two http spans -----------------------------------

struct Fixture {
  std::vector<Span> tcp;
  HttpSpanList http;
  std::vector<const kube::PeerIdentity*> peers;
  kube::PeerIdentity productpage{"productpage-v1-6b7-x", "bookinfo", "productpage-v1", "Deployment",
                                 "node-a"};
  kube::PeerIdentity loadgen{"loadgen", "default", "loadgen", "Pod", "node-a"};

  Fixture() {
    Span t;
    std::memset(&t, 0, sizeof(t));
    for (int i = 0; i < 16; i++) t.trace_id[i] = static_cast<uint8_t>(i + 1);
    for (int i = 0; i < 8; i++) t.span_id[i] = static_cast<uint8_t>(0x40 + i);
    t.family = 4;
    t.src_addr[10] = t.src_addr[11] = t.dst_addr[10] = t.dst_addr[11] = 0xff;
    t.src_addr[12] = 10, t.src_addr[15] = 5;
    t.dst_addr[12] = 10, t.dst_addr[15] = 1;
    t.src_port = 40000;
    t.dst_port = 9080;
    t.start_unix_us = 1700000000000000;
    t.end_unix_us = 1700000000002000;
    t.bytes_sent = 100;
    t.bytes_received = 2000;
    t.packets_sent = 4;
    t.packets_received = 5;
    t.handshake_completed = true;
    t.handshake_rtt_us = 42;
    t.reset_by = Side::None;
    t.close_reason = CloseReason::Fin;
    tcp.push_back(t);

    for (int k = 0; k < 2; k++) {
      HttpExchange* ex = new HttpExchange();
      std::memset(ex, 0, sizeof(*ex));
      ex->method = k == 0 ? HttpMethod::Get : HttpMethod::Other;
      std::strcpy(ex->method_text, k == 0 ? "GET" : "PURGE");
      ex->method_len = static_cast<uint16_t>(std::strlen(ex->method_text));
      std::strcpy(ex->target, k == 0 ? "/productpage?id=7&u=REDACTED" : "/cache");
      ex->target_len = static_cast<uint16_t>(std::strlen(ex->target));
      std::strcpy(ex->host, "10.0.0.1:9080");
      ex->host_len = 13;
      std::strcpy(ex->tracestate, "a=b");
      ex->tracestate_len = k == 0 ? 3 : 0;
      ex->request_version = ex->response_version = 11;
      HttpSpan& s = http.append(*ex, HttpQueryMode::Keep);
      delete ex;
      for (int i = 0; i < 16; i++) s.trace_id[i] = static_cast<uint8_t>(0xa0 + i);
      for (int i = 0; i < 8; i++) s.span_id[i] = static_cast<uint8_t>(0x10 * (k + 1) + i);
      for (int i = 0; i < 8; i++) s.parent_span_id[i] = static_cast<uint8_t>(0x70 + i);
      s.has_parent = k == 1;
      s.family = 4;
      std::memcpy(s.src_addr, tcp[0].src_addr, 16);
      std::memcpy(s.dst_addr, tcp[0].dst_addr, 16);
      s.src_port = 40000;
      s.dst_port = 9080;
      s.start_unix_us = 1700000000000100;
      s.end_unix_us = 1700000000001100;
      s.http_status = k == 0 ? 200 : 503;
      s.status = k == 0 ? SpanStatus::Unset : SpanStatus::Error;
      s.response_body_bytes = 123;
      s.trace_flags = 1;
      s.request_version = s.response_version = 11;
      s.method = k == 0 ? HttpMethod::Get : HttpMethod::Other;
    }
    // tcp: loadgen -> productpage; http: the same, both ends known
    peers = {&loadgen, &productpage, &loadgen, &productpage, &loadgen, &productpage};
  }

  SpanBatch::Chunk chunk() const {
    SpanBatch::Chunk c;
    c.tcp = tcp.data();
    c.ntcp = tcp.size();
    c.http = http.data();
    c.nhttp = http.size();
    c.http_text = http.text();
    return c;
  }
};

std::map<std::string, json> kv(const json& list) {
  std::map<std::string, json> out;
  for (const json& e : list) out[e["key"]] = e["value"];
  return out;
}

TEST(OtlpEncode, JsonCarriesResourcesSpansAndSemanticConventions) {
  Fixture fx;
  Encoder enc;
  EncodeOptions o;
  o.format = Format::Json;
  o.compression = Compression::None;
  o.interface = "cni0";
  std::vector<uint8_t> out;
  ASSERT_EQ(enc.encode(fx.chunk(), fx.peers.data(), o, out), 3u);
  const json j = json::parse(std::string(out.begin(), out.end()));
  ASSERT_EQ(j["resourceSpans"].size(), 2u) << "productpage (http) and loadgen (tcp)";
  std::map<std::string, json> by_service;
  for (const json& rs : j["resourceSpans"]) {
    const auto r = kv(rs["resource"]["attributes"]);
    by_service[r.at("service.name")["stringValue"]] = rs;
  }
  const json& pp = by_service.at("productpage-v1");
  const auto pr = kv(pp["resource"]["attributes"]);
  EXPECT_EQ(pr.at("k8s.deployment.name")["stringValue"], "productpage-v1");
  EXPECT_EQ(pr.at("k8s.namespace.name")["stringValue"], "bookinfo");
  EXPECT_EQ(pr.at("k8s.pod.name")["stringValue"], "productpage-v1-6b7-x");
  EXPECT_EQ(pr.at("k8s.node.name")["stringValue"], "node-a");
  const json& scope = pp["scopeSpans"][0]["scope"];
  EXPECT_EQ(scope["name"], "ebpf_capture");
  const json& spans = pp["scopeSpans"][0]["spans"];
  ASSERT_EQ(spans.size(), 2u);
  const json& get = spans[0];
  EXPECT_EQ(get["traceId"], "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(get["spanId"], "1011121314151617");
  EXPECT_EQ(get.count("parentSpanId"), 0u);
  EXPECT_EQ(get["traceState"], "a=b");
  EXPECT_EQ(get["name"], "GET");
  EXPECT_EQ(get["kind"], 2);
  EXPECT_EQ(get["startTimeUnixNano"], "1700000000000100000");
  EXPECT_EQ(get["flags"], 1);
  const auto a = kv(get["attributes"]);
  EXPECT_EQ(a.at("http.request.method")["stringValue"], "GET");
  EXPECT_EQ(a.at("url.path")["stringValue"], "/productpage");
  EXPECT_EQ(a.at("url.query")["stringValue"], "id=7&u=REDACTED");
  EXPECT_EQ(a.at("http.response.status_code")["intValue"], "200");
  EXPECT_EQ(a.at("server.address")["stringValue"], "10.0.0.1");
  EXPECT_EQ(a.at("server.port")["intValue"], "9080");
  EXPECT_EQ(a.at("client.address")["stringValue"], "10.0.0.5");
  EXPECT_EQ(a.at("network.peer.port")["intValue"], "40000");
  EXPECT_EQ(a.at("network.protocol.version")["stringValue"], "1.1");
  EXPECT_EQ(a.count("tracestate"), 0u) << "in trace_state";
  EXPECT_EQ(a.count("http.incomplete"), 0u) << "a false flag is left out";
  EXPECT_EQ(a.count("error.type"), 0u);
  EXPECT_EQ(get.count("status"), 0u);
  const json& purge = spans[1];
  EXPECT_EQ(purge["parentSpanId"], "7071727374757677");
  EXPECT_EQ(purge["name"], "HTTP");
  const auto b = kv(purge["attributes"]);
  EXPECT_EQ(b.at("http.request.method")["stringValue"], "_OTHER");
  EXPECT_EQ(b.at("http.request.method_original")["stringValue"], "PURGE");
  EXPECT_EQ(b.at("error.type")["stringValue"], "503");
  EXPECT_EQ(purge["status"]["code"], 2);
  EXPECT_EQ(purge["status"]["message"], "HTTP 503");

  const json& lg = by_service.at("loadgen");
  EXPECT_EQ(kv(lg["resource"]["attributes"]).count("k8s.pod.name"), 1u);
  EXPECT_EQ(kv(lg["resource"]["attributes"]).count("k8s.pod.pod.name"), 0u);
  const json& conn = lg["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(conn["name"], "tcp.connection");
  EXPECT_EQ(conn["kind"], 3);
  const auto c = kv(conn["attributes"]);
  EXPECT_EQ(c.at("server.address")["stringValue"], "10.0.0.1");
  EXPECT_EQ(c.at("network.peer.port")["intValue"], "9080");
  EXPECT_EQ(c.at("tcp.bytes_received")["intValue"], "2000");
  EXPECT_EQ(c.at("tcp.close_reason")["stringValue"], "fin");
  EXPECT_EQ(c.at("tcp.handshake_rtt_us")["intValue"], "42");
  EXPECT_EQ(c.at("network.transport")["stringValue"], "tcp");
}

// A PostgreSQL span is a CLIENT span of the client's service, with the
// database conventions' attributes and its SQLSTATE as the status message.
TEST(OtlpEncode, PostgresqlSpansAreClientSpansOfTheClient) {
  Fixture fx;
  PgSpanList pg;
  PgSpan& s = pg.append();
  for (int i = 0; i < 16; i++) s.trace_id[i] = static_cast<uint8_t>(0xc0 + i);
  for (int i = 0; i < 8; i++) s.span_id[i] = static_cast<uint8_t>(0x30 + i);
  s.family = 4;
  std::memcpy(s.src_addr, fx.tcp[0].src_addr, 16);
  std::memcpy(s.dst_addr, fx.tcp[0].dst_addr, 16);
  s.src_port = 40001;
  s.dst_port = 5432;
  s.start_unix_us = 1700000000000100;
  s.end_unix_us = 1700000000000900;
  s.status = SpanStatus::Error;
  std::memcpy(s.sqlstate, "42P01", 6);
  s.operation = pg.put("SELECT", 6);
  s.collection = pg.put("missing", 7);
  s.query = pg.put("SELECT * FROM missing WHERE a = ?", 33);
  s.database = pg.put("shop", 4);
  s.user = pg.put("alice", 5);
  SpanBatch::Chunk c;
  c.pg = pg.data();
  c.npg = 1;
  c.pg_text = pg.text();
  const kube::PeerIdentity* peers[2] = {&fx.loadgen, &fx.productpage};
  Encoder enc;
  EncodeOptions o;
  o.format = Format::Json;
  o.compression = Compression::None;
  o.interface = "cni0";
  std::vector<uint8_t> out;
  ASSERT_EQ(enc.encode(c, peers, o, out), 1u);
  const json j = json::parse(std::string(out.begin(), out.end()));
  ASSERT_EQ(j["resourceSpans"].size(), 1u);
  EXPECT_EQ(kv(j["resourceSpans"][0]["resource"]["attributes"]).at("service.name")["stringValue"],
            "loadgen");
  const json& span = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(span["name"], "SELECT missing");
  EXPECT_EQ(span["kind"], 3);
  EXPECT_EQ(span["status"]["code"], 2);
  EXPECT_EQ(span["status"]["message"], "42P01");
  const auto a = kv(span["attributes"]);
  EXPECT_EQ(a.at("db.system.name")["stringValue"], "postgresql");
  EXPECT_EQ(a.at("db.namespace")["stringValue"], "shop");
  EXPECT_EQ(a.at("db.query.text")["stringValue"], "SELECT * FROM missing WHERE a = ?");
  EXPECT_EQ(a.at("db.response.status_code")["stringValue"], "42P01");
  EXPECT_EQ(a.at("server.port")["intValue"], "5432");
}

// A Redis span (a PgSpan of system Redis): the command as its name, the
// error reply's prefix as the status message.
TEST(OtlpEncode, RedisSpansCarryTheirErrorPrefix) {
  Fixture fx;
  PgSpanList pg;
  PgSpan& s = pg.append();
  s.system = DbSystem::Redis;
  s.family = 4;
  std::memcpy(s.src_addr, fx.tcp[0].src_addr, 16);
  std::memcpy(s.dst_addr, fx.tcp[0].dst_addr, 16);
  s.src_port = 40001;
  s.dst_port = 6379;
  s.start_unix_us = 1700000000000100;
  s.end_unix_us = 1700000000000900;
  s.status = SpanStatus::Error;
  s.operation = pg.put("LPUSH", 5);
  s.query = pg.put("LPUSH", 5);
  s.database = pg.put("0", 1);
  s.error_code = pg.put("WRONGTYPE", 9);
  SpanBatch::Chunk c;
  c.pg = pg.data();
  c.npg = 1;
  c.pg_text = pg.text();
  const kube::PeerIdentity* peers[2] = {&fx.loadgen, &fx.productpage};
  Encoder enc;
  EncodeOptions o;
  o.format = Format::Json;
  o.compression = Compression::None;
  o.interface = "cni0";
  std::vector<uint8_t> out;
  ASSERT_EQ(enc.encode(c, peers, o, out), 1u);
  const json j = json::parse(std::string(out.begin(), out.end()));
  const json& span = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(span["name"], "LPUSH");
  EXPECT_EQ(span["kind"], 3);
  EXPECT_EQ(span["status"]["code"], 2);
  EXPECT_EQ(span["status"]["message"], "WRONGTYPE");
  const auto a = kv(span["attributes"]);
  EXPECT_EQ(a.at("db.system.name")["stringValue"], "redis");
  EXPECT_EQ(a.at("db.namespace")["stringValue"], "0");
  EXPECT_EQ(a.at("db.response.status_code")["stringValue"], "WRONGTYPE");
  EXPECT_EQ(a.at("server.port")["intValue"], "6379");
}

TEST(OtlpEncode, ProtobufHasTheSameStructureAndGzipRoundTrips) {
  Fixture fx;
  Encoder enc;
  EncodeOptions o;
  o.compression = Compression::None;
  std::vector<uint8_t> plain, zipped;
  ASSERT_EQ(enc.encode(fx.chunk(), fx.peers.data(), o, plain), 3u);
  const std::string msg(plain.begin(), plain.end());
  const auto rss = sub(msg, 1);
  ASSERT_EQ(rss.size(), 2u);
  size_t spans = 0;
  for (const std::string& rs : rss) {
    ASSERT_EQ(sub(rs, 1).size(), 1u);  // resource
    for (const std::string& ss : sub(rs, 2)) {
      for (const std::string& span : sub(ss, 2)) {
        spans++;
        EXPECT_EQ(sub(span, 1).at(0).size(), 16u);  // trace_id
        EXPECT_EQ(sub(span, 2).at(0).size(), 8u);   // span_id
        bool times = false;
        for (const Field& f : fields(span))
          if (f.number == 7) times = f.wire == 1 && f.value % 1000 == 0;
        EXPECT_TRUE(times);
      }
    }
  }
  EXPECT_EQ(spans, 3u);

  o.compression = Compression::Gzip;
  enc.encode(fx.chunk(), fx.peers.data(), o, zipped);
  ASSERT_GT(zipped.size(), 18u);
  EXPECT_EQ(zipped[0], 0x1f);
  EXPECT_EQ(zipped[1], 0x8b);
  std::vector<uint8_t> back(plain.size() + 64);
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = zipped.data();
  z.avail_in = static_cast<uInt>(zipped.size());
  z.next_out = back.data();
  z.avail_out = static_cast<uInt>(back.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  back.resize(z.total_out);
  inflateEnd(&z);
  EXPECT_EQ(back, plain);

  // connection spans off: only the http spans, one resource
  o.connection_spans = false;
  o.compression = Compression::None;
  EXPECT_EQ(enc.encode(fx.chunk(), fx.peers.data(), o, plain), 2u);
  EXPECT_EQ(sub(std::string(plain.begin(), plain.end()), 1).size(), 1u);
}

TEST(OtlpEncode, AnUnknownPeerIsItsAddress) {
  Fixture fx;
  std::fill(fx.peers.begin(), fx.peers.end(), nullptr);
  Encoder enc;
  EncodeOptions o;
  o.format = Format::Json;
  o.compression = Compression::None;
  std::vector<uint8_t> out;
  enc.encode(fx.chunk(), fx.peers.data(), o, out);
  const json j = json::parse(std::string(out.begin(), out.end()));
  std::set<std::string> services;
  for (const json& rs : j["resourceSpans"])
    services.insert(
        kv(rs["resource"]["attributes"]).at("service.name")["stringValue"].get<std::string>());
  EXPECT_EQ(services, (std::set<std::string>{"10.0.0.1", "10.0.0.5"}));
}

// ---- policy ------------------------------------------------------------------

TEST(OtlpPolicy, OnlyThrottlingAndUnavailabilityAreRetried) {
  EXPECT_EQ(classify(200), Disposition::Delivered);
  EXPECT_EQ(classify(202), Disposition::Delivered);
  for (long s : {0L, 429L, 502L, 503L, 504L}) EXPECT_EQ(classify(s), Disposition::Retry) << s;
  for (long s : {400L, 401L, 403L, 404L, 413L, 500L, 501L, 301L})
    EXPECT_EQ(classify(s), Disposition::Rejected) << s;
}

TEST(OtlpPolicy, PartialSuccessFromProtobufAndJson) {
  // ExportTraceServiceResponse{partial_success{rejected_spans: 3, error_message: "no"}}
  const uint8_t pb[] = {0x0a, 0x06, 0x08, 0x03, 0x12, 0x02, 'n', 'o'};
  PartialSuccess p;
  ASSERT_TRUE(parse_partial_success(pb, sizeof(pb), false, &p));
  EXPECT_EQ(p.rejected_spans, 3);
  EXPECT_EQ(p.error_message, "no");
  EXPECT_FALSE(parse_partial_success(pb, 0, false, &p));  // empty: a full success
  const uint8_t truncated[] = {0x0a, 0x09, 0x08};
  EXPECT_FALSE(parse_partial_success(truncated, sizeof(truncated), false, &p));
  const std::string j = R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"quota \"x\""}})";
  ASSERT_TRUE(
      parse_partial_success(reinterpret_cast<const uint8_t*>(j.data()), j.size(), true, &p));
  EXPECT_EQ(p.rejected_spans, 2);
  EXPECT_EQ(p.error_message, "quota \"x\"");
  const std::string none = "{}";
  EXPECT_FALSE(
      parse_partial_success(reinterpret_cast<const uint8_t*>(none.data()), none.size(), true, &p));
}

TEST(OtlpPolicy, HeadersFile) {
  std::vector<std::string> h;
  std::string error;
  ASSERT_TRUE(parse_headers_file("# token\nAuthorization: Bearer abc\r\n\n  X-Scope-OrgID:  t1 \n",
                                 &h, &error));
  EXPECT_EQ(h, (std::vector<std::string>{"Authorization: Bearer abc", "X-Scope-OrgID: t1"}));
  EXPECT_FALSE(parse_headers_file("no colon\n", &h, &error));
  EXPECT_EQ(error, "line 1: not \"Name: value\"");
  EXPECT_FALSE(parse_headers_file("ok: 1\nBad Name: x\n", &h, &error));
  EXPECT_EQ(error, "line 2: the header name is not an HTTP token");
  EXPECT_FALSE(parse_headers_file(std::string("A: b\x01") + "\n", &h, &error));
}

TEST(OtlpPolicy, TracesUrl) {
  EXPECT_EQ(traces_url("http://c:4318"), "http://c:4318/v1/traces");
  EXPECT_EQ(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
  EXPECT_EQ(traces_url("https://c/otlp/v1/traces"), "https://c/otlp/v1/traces");
}

}  // namespace
}  // namespace ebpfc::otlp
