// Tests of extension/core/http_span.cpp's http_span_from_exchange: the ids
// and times of an HTTP span.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "conn_sim.h"
#include "core/http_span.h"

namespace ebpfc_test {
namespace {

constexpr uint64_t kMs = 1000 * 1000;

uint64_t leading_ms(const uint8_t id[16]) {
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++) ms = ms << 8 | id[i];
  return ms;
}

// One exchange on 10.0.0.2:40000 -> 10.0.0.1:8080, its request at `now_`.
class HttpSpanIds : public ::testing::Test {
 protected:
  void build() {
    ebpfc::http_span_from_exchange(*ex_, trace_, ipv4_flow_key(8080, 40000), 1, conn_span_, clock_,
                                   ids_, *span_);
  }

  const ebpfc::WallClock clock_;
  ebpfc::SpanIdGenerator ids_{11};
  const uint64_t now_ = ebpfc::WallClock::monotonic_ns();
  const uint8_t conn_span_[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  ebpfc::TraceIds trace_{};
  std::unique_ptr<ebpfc::HttpExchange> ex_{new ebpfc::HttpExchange()};
  std::unique_ptr<ebpfc::HttpSpan> span_{new ebpfc::HttpSpan()};
};

TEST_F(HttpSpanIds, WithoutTraceparentTheTraceIdStartsWithTheRequest) {
  ex_->request_start_ns = now_;
  ex_->response_end_ns = now_ + 3 * kMs;
  ex_->status = 200;
  build();
  EXPECT_EQ(span_->start_unix_us, clock_.to_unix_us(now_));
  EXPECT_EQ(span_->end_unix_us - span_->start_unix_us, 3000);
  EXPECT_EQ(leading_ms(span_->trace_id), static_cast<uint64_t>(span_->start_unix_us / 1000));
  EXPECT_FALSE(span_->has_parent);
  EXPECT_EQ(span_->src_port, 40000);
  EXPECT_EQ(span_->dst_port, 8080);

  // no request seen: the response's end is the start, and the id's time
  ex_->request_start_ns = 0;
  build();
  EXPECT_EQ(span_->start_unix_us, clock_.to_unix_us(now_ + 3 * kMs));
  EXPECT_EQ(leading_ms(span_->trace_id), static_cast<uint64_t>(span_->start_unix_us / 1000));
}

TEST_F(HttpSpanIds, ARequestWithTraceContextTakesTheIdsDecidedForIt) {
  ex_->request_start_ns = now_;
  ex_->response_end_ns = now_ + kMs;
  ex_->has_traceparent = true;
  ex_->trace_origin = ebpfc::TraceOrigin::W3C;
  ex_->trace_flags = 1;
  for (int i = 0; i < 16; i++) ex_->trace_id[i] = static_cast<uint8_t>(0xf0 - i);
  for (int i = 0; i < 8; i++) ex_->parent_id[i] = static_cast<uint8_t>(0x30 + i);
  trace_.assigned = true;
  trace_.has_parent = true;
  trace_.resend_count = 2;
  for (int i = 0; i < 8; i++) trace_.span_id[i] = ex_->parent_id[i];
  for (int i = 0; i < 8; i++) trace_.parent_id[i] = static_cast<uint8_t>(0x70 + i);
  build();
  EXPECT_EQ(std::memcmp(span_->trace_id, ex_->trace_id, 16), 0);
  EXPECT_EQ(std::memcmp(span_->span_id, ex_->parent_id, 8), 0);  // the caller's id for it
  EXPECT_TRUE(span_->has_parent);
  EXPECT_EQ(std::memcmp(span_->parent_span_id, trace_.parent_id, 8), 0);
  EXPECT_EQ(span_->resend_count, 2);
  EXPECT_EQ(span_->trace_flags, 1);
  EXPECT_EQ(std::memcmp(span_->connection_span_id, conn_span_, 8), 0);

  // a root as far as the capture knows
  trace_.has_parent = false;
  build();
  EXPECT_FALSE(span_->has_parent);
  EXPECT_EQ(std::memcmp(span_->trace_id, ex_->trace_id, 16), 0);

  // no context: ids of its own, whatever trace_ says
  ex_->trace_origin = ebpfc::TraceOrigin::None;
  ex_->has_traceparent = false;
  build();
  EXPECT_NE(std::memcmp(span_->trace_id, ex_->trace_id, 16), 0);
  EXPECT_NE(std::memcmp(span_->span_id, ex_->parent_id, 8), 0);
  EXPECT_FALSE(span_->has_parent);
}

TEST(HostPort, SplitsTheHostHeaderAsServerAddressAndPort) {
  auto check = [](const char* v, const char* host, uint16_t port) {
    const ebpfc::HostPort hp = ebpfc::split_host(v);
    EXPECT_EQ(hp.host, host) << v;
    EXPECT_EQ(hp.port, port) << v;
  };
  check("example.com", "example.com", 0);
  check("example.com:8080", "example.com", 8080);
  check("10.0.0.2:80", "10.0.0.2", 80);
  check("[fd00::12]:9080", "fd00::12", 9080);
  check("[fd00::12]", "fd00::12", 0);
  check("fd00::12", "fd00::12", 0);  // no brackets: no port in it
  check("host:", "host", 0);
  check("host:99999", "host", 0);
  check("host:12a", "host", 0);
  check("[fd00::1", "[fd00::1", 0);
  check("", "", 0);
}

// OpenTelemetry server-side status: 5xx and no response are errors; an
// exchange whose outcome the capture does not know is not (emitted early
// with too many open, its response lost in capture, or written unpaired
// after a loss: the response, if seen, has its own span with its status).
TEST_F(HttpSpanIds, StatusIsAnErrorOnlyWhenTheOutcomeIsKnownToBeOne) {
  using ebpfc::SpanStatus;
  const struct {
    uint16_t status;
    uint16_t incomplete;
    SpanStatus want;
  } cases[] = {
      {200, 0, SpanStatus::Unset},
      {404, 0, SpanStatus::Unset},
      {503, 0, SpanStatus::Error},
      {0, ebpfc::kHttpNoResponse, SpanStatus::Error},
      {0, ebpfc::kHttpNoResponse | ebpfc::kHttpResponseCut, SpanStatus::Error},
      {0, ebpfc::kHttpNoResponse | ebpfc::kHttpQueueBound, SpanStatus::Unset},
      {0, ebpfc::kHttpNoResponse | ebpfc::kHttpGapResponse, SpanStatus::Unset},
      {0, ebpfc::kHttpNoResponse | ebpfc::kHttpUnpaired, SpanStatus::Unset},
      {500, ebpfc::kHttpNoRequest | ebpfc::kHttpUnpaired, SpanStatus::Error},
      {200, ebpfc::kHttpNoRequest | ebpfc::kHttpUnpaired, SpanStatus::Unset},
      {200, ebpfc::kHttpGapResponse, SpanStatus::Unset},
  };
  for (const auto& c : cases) {
    ex_->request_start_ns = now_;
    ex_->response_end_ns = now_ + kMs;
    ex_->status = c.status;
    ex_->incomplete = c.incomplete;
    build();
    EXPECT_EQ(span_->status, c.want) << c.status << " " << c.incomplete;
  }
}

}  // namespace
}  // namespace ebpfc_test
