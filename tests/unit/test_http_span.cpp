// Tests of extension/core/http_span.cpp's http_span_from_exchange: the ids
// and times of an HTTP span.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "core/http_span.h"

namespace {

constexpr uint64_t kMs = 1000 * 1000;

ebpfc_flow_key make_key() {
  ebpfc_flow_key k{};
  for (int i = 0; i < 2; i++) {
    k.addr[i][10] = k.addr[i][11] = 0xff;
    k.addr[i][12] = 10;
    k.addr[i][15] = static_cast<uint8_t>(i + 1);
  }
  k.port[0] = 8080;
  k.port[1] = 40000;
  k.family = 4;
  return k;
}

uint64_t leading_ms(const uint8_t id[16]) {
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++) ms = ms << 8 | id[i];
  return ms;
}

struct Built {
  std::unique_ptr<ebpfc::HttpExchange> ex{new ebpfc::HttpExchange()};
  std::unique_ptr<ebpfc::HttpSpan> span{new ebpfc::HttpSpan()};
};

TEST(HttpSpan, WithoutTraceparentTheTraceIdStartsWithTheRequest) {
  const ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids(11);
  const uint64_t now = ebpfc::WallClock::monotonic_ns();
  const uint8_t conn_span[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  Built b;
  b.ex->request_start_ns = now;
  b.ex->response_end_ns = now + 3 * kMs;
  b.ex->status = 200;
  ebpfc::http_span_from_exchange(*b.ex, make_key(), 1, conn_span, clock, ids, *b.span);
  EXPECT_EQ(b.span->start_unix_us, clock.to_unix_us(now));
  EXPECT_EQ(b.span->end_unix_us - b.span->start_unix_us, 3000);
  EXPECT_EQ(leading_ms(b.span->trace_id), static_cast<uint64_t>(b.span->start_unix_us / 1000));
  EXPECT_FALSE(b.span->has_parent);
  EXPECT_EQ(b.span->src_port, 40000);
  EXPECT_EQ(b.span->dst_port, 8080);

  // no request seen: the response's end is the start, and the id's time
  b.ex->request_start_ns = 0;
  ebpfc::http_span_from_exchange(*b.ex, make_key(), 1, conn_span, clock, ids, *b.span);
  EXPECT_EQ(b.span->start_unix_us, clock.to_unix_us(now + 3 * kMs));
  EXPECT_EQ(leading_ms(b.span->trace_id), static_cast<uint64_t>(b.span->start_unix_us / 1000));
}

TEST(HttpSpan, ATraceparentsIdsAreKeptAsTheyCame) {
  const ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids(12);
  const uint64_t now = ebpfc::WallClock::monotonic_ns();
  const uint8_t conn_span[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  Built b;
  b.ex->request_start_ns = now;
  b.ex->response_end_ns = now + kMs;
  b.ex->has_traceparent = true;
  for (int i = 0; i < 16; i++) b.ex->trace_id[i] = static_cast<uint8_t>(0xf0 - i);
  for (int i = 0; i < 8; i++) b.ex->parent_id[i] = static_cast<uint8_t>(0x30 + i);
  ebpfc::http_span_from_exchange(*b.ex, make_key(), 1, conn_span, clock, ids, *b.span);
  EXPECT_EQ(std::memcmp(b.span->trace_id, b.ex->trace_id, 16), 0);
  EXPECT_TRUE(b.span->has_parent);
  EXPECT_EQ(std::memcmp(b.span->parent_span_id, b.ex->parent_id, 8), 0);
  EXPECT_EQ(std::memcmp(b.span->connection_span_id, conn_span, 8), 0);
}

}  // namespace
