// Tests of extension/core/span_attributes.*: the span's `attributes` JSON,
// checked by parsing it with nlohmann::json.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "conn_sim.h"
#include "core/flow_span.h"
#include "core/http_span.h"
#include "core/span_attributes.h"
#include "json_text_sink.h"

namespace {

using ebpfc::CloseReason;
using ebpfc::kAttributesMax;
using ebpfc::Side;
using ebpfc::Span;
using ebpfc::SpanStatus;
using nlohmann::json;

Span base_span() {
  Span s{};
  s.family = 4;
  s.handshake_rtt_us = -1;
  s.status = SpanStatus::Unset;
  s.close_reason = CloseReason::Fin;
  s.reset_by = Side::None;
  return s;
}

std::string format(const Span& s) {
  char buf[kAttributesMax];
  std::memset(buf, 'x', sizeof(buf));
  const size_t n = ebpfc::format_tcp_attributes(s, buf, sizeof(buf));
  EXPECT_GT(n, 0u);
  EXPECT_LT(n, kAttributesMax);
  EXPECT_EQ(std::strlen(buf), n);
  return std::string(buf, n);
}

json parse_json(const std::string& text) {
  EXPECT_TRUE(json::accept(text)) << text;
  return json::parse(text, nullptr, false);
}

std::set<std::string> keys(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

TEST(SpanAttributes, CleanCloseWithHandshake) {
  Span s = base_span();
  s.handshake_completed = true;
  s.handshake_rtt_us = 2500;
  s.retransmits_sent = 2;
  s.retransmits_received = 3;
  s.zero_windows_sent = 4;
  s.zero_windows_received = 5;
  const std::string text = format(s);
  const json j = parse_json(text);
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(keys(j), (std::set<std::string>{"tcp.close_reason", "tcp.handshake_completed",
                                            "tcp.handshake_rtt_us", "tcp.retransmits_sent",
                                            "tcp.retransmits_received", "tcp.zero_windows_sent",
                                            "tcp.zero_windows_received"}))
      << "no reset, not mid-stream: said by their absence";
  EXPECT_EQ(j["tcp.close_reason"], "fin");
  EXPECT_EQ(j["tcp.handshake_completed"], true);
  EXPECT_TRUE(j["tcp.handshake_rtt_us"].is_number_integer());
  EXPECT_EQ(j["tcp.handshake_rtt_us"], 2500);
  EXPECT_EQ(j["tcp.retransmits_sent"], 2);
  EXPECT_EQ(j["tcp.retransmits_received"], 3);
  EXPECT_EQ(j["tcp.zero_windows_sent"], 4);
  EXPECT_EQ(j["tcp.zero_windows_received"], 5);
}

TEST(SpanAttributes, ResetMidStream) {
  Span s = base_span();
  s.close_reason = CloseReason::Rst;
  s.reset_by = Side::Server;
  s.status = SpanStatus::Error;
  s.mid_stream = true;
  const json j = parse_json(format(s));
  EXPECT_EQ(keys(j), (std::set<std::string>{"tcp.close_reason", "tcp.reset", "tcp.reset_by",
                                            "tcp.mid_stream", "tcp.handshake_completed"}))
      << "no retransmission or zero window: no attributes for them";
  EXPECT_EQ(j["tcp.close_reason"], "rst");
  EXPECT_EQ(j["tcp.reset"], true);
  EXPECT_EQ(j["tcp.reset_by"], "server");
  EXPECT_EQ(j["tcp.mid_stream"], true);
  EXPECT_EQ(j["tcp.handshake_completed"], false);

  s.reset_by = Side::Client;
  EXPECT_EQ(parse_json(format(s))["tcp.reset_by"], "client");

  // each zero-window count appears on its own once it is not zero
  s.zero_windows_received = 1;
  json z = parse_json(format(s));
  EXPECT_EQ(z["tcp.zero_windows_received"], 1);
  EXPECT_FALSE(z.contains("tcp.zero_windows_sent"));
  s.zero_windows_received = 0;
  s.zero_windows_sent = 2;
  z = parse_json(format(s));
  EXPECT_EQ(z["tcp.zero_windows_sent"], 2);
  EXPECT_FALSE(z.contains("tcp.zero_windows_received"));
}

TEST(SpanAttributes, EveryCloseReason) {
  const struct {
    CloseReason r;
    const char* name;
  } cases[] = {{CloseReason::None, "none"},
               {CloseReason::Fin, "fin"},
               {CloseReason::Rst, "rst"},
               {CloseReason::Idle, "idle"},
               {CloseReason::CaptureStopped, "capture_stopped"}};
  for (const auto& c : cases) {
    Span s = base_span();
    s.close_reason = c.r;
    EXPECT_EQ(parse_json(format(s))["tcp.close_reason"], c.name);
  }
}

TEST(SpanAttributes, ZeroRttIsReported) {
  Span s = base_span();
  s.handshake_completed = true;
  s.handshake_rtt_us = 0;  // loopback: under a microsecond
  const json j = parse_json(format(s));
  ASSERT_TRUE(j.contains("tcp.handshake_rtt_us"));
  EXPECT_EQ(j["tcp.handshake_rtt_us"], 0);
}

Span worst_case() {
  Span s = base_span();
  s.close_reason = CloseReason::CaptureStopped;
  s.reset_by = Side::Server;
  s.mid_stream = false;
  s.handshake_completed = false;
  s.handshake_rtt_us = std::numeric_limits<int64_t>::max();
  s.retransmits_sent = std::numeric_limits<uint32_t>::max();
  s.retransmits_received = std::numeric_limits<uint32_t>::max();
  s.zero_windows_sent = std::numeric_limits<uint32_t>::max();
  s.zero_windows_received = std::numeric_limits<uint32_t>::max();
  return s;
}

TEST(SpanAttributes, LargestOutputFitsTheMaximum) {
  const Span s = worst_case();
  const json j = parse_json(format(s));
  EXPECT_EQ(j["tcp.handshake_rtt_us"].get<int64_t>(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(j["tcp.retransmits_sent"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(j["tcp.retransmits_received"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(j["tcp.zero_windows_sent"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(j["tcp.zero_windows_received"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(j["tcp.close_reason"], "capture_stopped");
}

TEST(SpanAttributes, BufferTooSmallReturnsZero) {
  const Span s = worst_case();
  const std::string full = format(s);
  const size_t n = full.size();
  for (size_t size = 1; size <= n; size++) {
    SCOPED_TRACE(size);
    std::unique_ptr<char[]> buf(new char[size]);  // exact: overruns are ASan reports
    std::memset(buf.get(), 'x', size);
    EXPECT_EQ(ebpfc::format_tcp_attributes(s, buf.get(), size), 0u);
    EXPECT_EQ(buf[0], '\0');  // never a truncated, unterminated object
  }
  std::unique_ptr<char[]> exact(new char[n + 1]);
  EXPECT_EQ(ebpfc::format_tcp_attributes(s, exact.get(), n + 1), n);
  EXPECT_EQ(std::string(exact.get()), full);

  EXPECT_EQ(ebpfc::format_tcp_attributes(s, nullptr, 0), 0u);
}

TEST(SpanAttributes, FromRealFlows) {
  using ebpfc_test::ConnSim;
  using ebpfc_test::Who;
  const ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids(5);

  ConnSim c({{10, 0, 0, 2}, 40000}, {{10, 0, 0, 1}, 5432});
  c.send(Who::Client, EBPFC_TCP_SYN, 1, 0, 0, 1000000);
  c.send(Who::Server, EBPFC_TCP_SYN | EBPFC_TCP_ACK, 1, 2, 0, 1500000);
  c.send(Who::Client, EBPFC_TCP_ACK, 2, 2, 0, 4000000);
  c.send(Who::Client, EBPFC_TCP_ACK, 2, 2, 10, 5000000);
  c.send(Who::Client, EBPFC_TCP_ACK, 2, 2, 10, 6000000);
  Span s;
  ebpfc::span_from_flow(c.key, c.st, CloseReason::Idle, clock, ids, s);
  json j = parse_json(format(s));
  EXPECT_EQ(j["tcp.close_reason"], "idle");
  EXPECT_FALSE(j.contains("tcp.reset"));
  EXPECT_FALSE(j.contains("tcp.reset_by"));
  EXPECT_EQ(j["tcp.handshake_completed"], true);
  EXPECT_EQ(j["tcp.handshake_rtt_us"], 3000);
  EXPECT_EQ(j["tcp.retransmits_sent"], 1);
  EXPECT_FALSE(j.contains("tcp.retransmits_received"));
  EXPECT_FALSE(j.contains("tcp.mid_stream"));

  ConnSim m({{10, 0, 0, 2}, 40000}, {{10, 0, 0, 1}, 5432});
  m.send(Who::Server, EBPFC_TCP_ACK, 50, 60, 5, 1000000);
  m.send(Who::Client, EBPFC_TCP_RST, 60, 0, 0, 2000000);
  ebpfc::span_from_flow(m.key, m.st, CloseReason::None, clock, ids, s);
  j = parse_json(format(s));
  EXPECT_EQ(j["tcp.close_reason"], "rst");
  EXPECT_EQ(j["tcp.reset"], true);
  EXPECT_EQ(j["tcp.reset_by"], "client");
  EXPECT_EQ(j["tcp.mid_stream"], true);
  EXPECT_EQ(j["tcp.handshake_completed"], false);
  EXPECT_FALSE(j.contains("tcp.handshake_rtt_us"));
}

}  // namespace

// ---------------------------------------------------------------------------
// HTTP spans (core/http_span.cpp): the attributes emitted into the JSON text
// sink. The worker's jsonb sink receives the same calls.

namespace {

// An exchange as the parser fills it: GET to shop.example, 200, 1234 bytes.
std::unique_ptr<ebpfc::HttpExchange> exchange_base() {
  std::unique_ptr<ebpfc::HttpExchange> ex(new ebpfc::HttpExchange());
  ex->method = ebpfc::HttpMethod::Get;
  std::memcpy(ex->method_text, "GET", 4);
  ex->method_len = 3;
  std::memcpy(ex->target, "/cart", 6);
  ex->target_len = 5;
  std::memcpy(ex->host, "shop.example", 12);
  ex->host_len = 12;
  ex->request_version = 11;
  ex->response_version = 11;
  ex->request_body_bytes = 0;
  ex->response_body_bytes = 1234;
  ex->status = 200;
  return ex;
}

// The span of `ex` in `list`, as the tracker makes it.
ebpfc::HttpSpan& span_of(ebpfc::HttpSpanList& list, const ebpfc::HttpExchange& ex,
                         ebpfc::HttpQueryMode query = ebpfc::HttpQueryMode::Keep) {
  ebpfc::HttpSpan& s = list.append(ex, query);
  const ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids(7);
  uint8_t connection_span_id[8];
  for (int i = 0; i < 8; i++) connection_span_id[i] = static_cast<uint8_t>(0xa0 + i);
  const ebpfc::TraceIds trace{};
  ebpfc::http_span_from_exchange(ex, trace, ebpfc_test::ipv4_flow_key(40000, 80), 0,
                                 connection_span_id, clock, ids, s);
  return s;
}

json http_json(const ebpfc::HttpSpanList& list, size_t i) {
  std::unique_ptr<char[]> buf(new char[ebpfc::kHttpAttributesMax]);
  const size_t n =
      ebpfc::format_http_attributes(list[i], list.text(), buf.get(), ebpfc::kHttpAttributesMax);
  EXPECT_GT(n, 0u);
  return parse_json(std::string(buf.get(), n));
}

std::string target_of(const ebpfc::HttpSpanList& list, size_t i) {
  return std::string(ebpfc::text_of(list.text(), list[i].target));
}

}  // namespace

TEST(HttpAttributes, CompleteExchange) {
  ebpfc::HttpSpanList list;
  span_of(list, *exchange_base());
  const json j = http_json(list, 0);
  EXPECT_EQ(keys(j), (std::set<std::string>{"server.address", "network.protocol.version",
                                            "http.incomplete", "tcp.span_id"}))
      << "the method and the body sizes are columns";
  EXPECT_EQ(j["server.address"], "shop.example");
  EXPECT_EQ(list[0].response_body_bytes, 1234u);
  EXPECT_EQ(j["network.protocol.version"], "1.1");
  EXPECT_EQ(j["http.incomplete"], false);
  EXPECT_EQ(j["tcp.span_id"], "a0a1a2a3a4a5a6a7");
  EXPECT_EQ(list[0].http_status, 200);
  EXPECT_EQ(std::string(ebpfc::http_span_name(list[0])), "GET");
}

TEST(HttpAttributes, ServerAddressIsTheHostAndServerPortItsPort) {
  auto ex = exchange_base();
  std::memcpy(ex->host, "[fd00::12]:9080", 15);
  ex->host_len = 15;
  ebpfc::HttpSpanList list;
  span_of(list, *ex).resend_count = 3;
  const json j = http_json(list, 0);
  EXPECT_EQ(j["server.address"], "fd00::12");
  EXPECT_EQ(j["server.port"], 9080);
  EXPECT_EQ(j["http.request.resend_count"], 3);
}

TEST(HttpAttributes, IncompleteWithReasonsFlagsAndTracestate) {
  auto ex = exchange_base();
  ex->incomplete = ebpfc::kHttpGapResponse | ebpfc::kHttpNoResponse;
  ex->flags = ebpfc::kHttpRequestChunked | ebpfc::kHttpTraceparentInvalid;
  ex->interim_responses = 1;
  std::memcpy(ex->tracestate, "rojo=00f067aa0ba902b7", 21);
  ex->tracestate_len = 21;
  ebpfc::HttpSpanList list;
  span_of(list, *ex);
  const json j = http_json(list, 0);
  EXPECT_EQ(j["http.incomplete"], true);
  EXPECT_EQ(j["http.incomplete_reasons"], json::array({"response_gap", "no_response"}));
  EXPECT_EQ(j["http.request.chunked"], true);
  EXPECT_EQ(j["http.traceparent_invalid"], true);
  EXPECT_EQ(j["http.interim_responses"], 1);
  EXPECT_EQ(j["tracestate"], "rojo=00f067aa0ba902b7");
}

TEST(HttpAttributes, WireBytesBecomeValidJson) {
  auto ex = exchange_base();
  const char host[] = "a\"b\\c\x01\xff\xfe";
  std::memcpy(ex->host, host, sizeof(host) - 1);
  ex->host_len = sizeof(host) - 1;
  ebpfc::HttpSpanList list;
  span_of(list, *ex);
  const std::string got = http_json(list, 0)["server.address"];
  EXPECT_EQ(got.substr(0, 5), "a\"b\\c");
  EXPECT_EQ(got.find('\x01'), std::string::npos);
}

TEST(HttpAttributes, NoRequestNoMethod) {
  auto ex = exchange_base();
  ex->method = ebpfc::HttpMethod::None;
  ex->method_len = 0;
  ex->host_len = 0;
  ex->request_version = 0;
  ebpfc::HttpSpanList list;
  span_of(list, *ex);
  const json j = http_json(list, 0);
  EXPECT_EQ(j.count("server.address"), 0u);
  EXPECT_EQ(j.count("server.port"), 0u);
  EXPECT_EQ(j["network.protocol.version"], "1.1");  // from the response
  EXPECT_EQ(std::string(ebpfc::http_span_name(list[0])), "HTTP");
}

TEST(HttpSpanList, KeepsOnlyTheStringsBytesAndGivesThemBackOnPop) {
  auto ex = exchange_base();
  ebpfc::HttpSpanList list;
  span_of(list, *ex);
  std::memcpy(ex->target, "/x?y=1", 7);
  ex->target_len = 6;
  std::memcpy(ex->tracestate, "k=v", 4);
  ex->tracestate_len = 3;
  span_of(list, *ex);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(target_of(list, 0), "/cart");
  EXPECT_EQ(target_of(list, 1), "/x?y=1");
  EXPECT_EQ(ebpfc::text_of(list.text(), list[1].tracestate), "k=v");
  const size_t strings = 3 + 5 + 12 + 3 + 6 + 12 + 3;
  EXPECT_EQ(list.bytes(), 2 * sizeof(ebpfc::HttpSpan) + strings);
  EXPECT_LT(sizeof(ebpfc::HttpSpan), 200u);  // against the exchange's fixed buffers
  EXPECT_GT(sizeof(ebpfc::HttpExchange), 2800u);
  list.pop_back();
  EXPECT_EQ(list.bytes(), sizeof(ebpfc::HttpSpan) + 3 + 5 + 12);
  // a broken length is clamped to its buffer
  ex->host_len = 60000;
  span_of(list, *ex);
  EXPECT_EQ(list[1].host.len, ebpfc::kHttpHostMax);
}

TEST(HttpSpanList, QueryStringsKeptRedactedOrDropped) {
  auto ex = exchange_base();
  const char target[] = "/login?user=ann&token=s3cr3t&flag&empty=&x=1";
  std::memcpy(ex->target, target, sizeof(target));
  ex->target_len = sizeof(target) - 1;
  ebpfc::HttpSpanList list;
  span_of(list, *ex, ebpfc::HttpQueryMode::Keep);
  span_of(list, *ex, ebpfc::HttpQueryMode::Redact);
  span_of(list, *ex, ebpfc::HttpQueryMode::Drop);
  EXPECT_EQ(target_of(list, 0), target);
  EXPECT_EQ(target_of(list, 1), "/login?user=REDACTED&token=REDACTED&flag&empty=&x=REDACTED");
  EXPECT_EQ(target_of(list, 2), "/login");
  for (size_t i = 0; i < 3; i++) EXPECT_EQ(list[i].incomplete, 0) << i;
  // no query: the same in every mode
  std::memcpy(ex->target, "/a/b", 5);
  ex->target_len = 4;
  span_of(list, *ex, ebpfc::HttpQueryMode::Redact);
  span_of(list, *ex, ebpfc::HttpQueryMode::Drop);
  EXPECT_EQ(target_of(list, 3), "/a/b");
  EXPECT_EQ(target_of(list, 4), "/a/b");
}

TEST(HttpSpanList, ARedactedTargetStaysWithinItsBound) {
  auto ex = exchange_base();
  std::string target = "/q?";
  while (target.size() + 4 <= ebpfc::kHttpTargetMax) target += "a=1&";
  target.pop_back();
  std::memcpy(ex->target, target.data(), target.size());
  ex->target_len = static_cast<uint16_t>(target.size());
  ebpfc::HttpSpanList list;
  span_of(list, *ex, ebpfc::HttpQueryMode::Redact);
  const std::string got = target_of(list, 0);
  EXPECT_LE(got.size(), ebpfc::kHttpTargetMax);
  EXPECT_EQ(got.substr(0, 15), "/q?a=REDACTED&a");
  EXPECT_TRUE(list[0].incomplete & ebpfc::kHttpTargetTruncated);
  // cut at a parameter boundary
  EXPECT_TRUE(got.back() == '&' || got.compare(got.size() - 8, 8, "REDACTED") == 0) << got;
}
