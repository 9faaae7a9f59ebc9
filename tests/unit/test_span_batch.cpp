// SpanBatch: the spans waiting to be written, the flush that hands them out
// in chunks, a chunk handed back (a lock) written first next time, a chunk
// refused counted, and the backlog bound in bytes.
#include "core/span_batch.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "conn_sim.h"

namespace ebpfc {
namespace {

using ebpfc_test::ipv4_flow_key;

ebpfc_flow_stats closed_stats(uint64_t bytes) {
  ebpfc_flow_stats st{};
  st.first_ns = 1000;
  st.last_ns = 2000;
  st.dir[0].bytes = bytes;  // the client (endpoint 0, the SYN's sender) sent them
  st.dir[0].flags = 0x02;   // SYN
  st.client = 0;
  st.state = EBPFC_FLOW_CLOSED;
  return st;
}

// n connections ended, the i-th with i bytes sent.
void end_connections(SpanBatch& b, int n, uint16_t first_port = 1000) {
  for (int i = 0; i < n; i++)
    b.flow_ended(ipv4_flow_key(static_cast<uint16_t>(first_port + i), 80),
                 closed_stats(static_cast<uint64_t>(i)), CloseReason::Fin);
}

TEST(SpanBatch, AFlushHandsOutEverySpanInChunksInOrder) {
  SpanBatch b(1 << 20);
  end_connections(b, 5);
  EXPECT_EQ(b.waiting(), 5u);
  EXPECT_GT(b.oldest_ns(), 0u);
  b.begin_flush();
  EXPECT_EQ(b.waiting(), 0u);
  EXPECT_EQ(b.oldest_ns(), 0u);
  // Spans that end meanwhile wait for the next flush.
  end_connections(b, 2, 2000);
  std::vector<uint64_t> seen;
  for (SpanBatch::Chunk c = b.next_chunk(2); c.size() > 0; c = b.next_chunk(2)) {
    EXPECT_LE(c.size(), 2u);
    for (size_t i = 0; i < c.ntcp; i++) seen.push_back(c.tcp[i].bytes_sent);
    b.chunk_done(c);
  }
  b.end_flush();
  EXPECT_EQ(seen, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(b.left_over(), 0u);
  EXPECT_EQ(b.waiting(), 2u);
  EXPECT_EQ(b.dropped(), 0u);
}

TEST(SpanBatch, AChunkHandedBackIsWrittenFirstNextTime) {
  SpanBatch b(1 << 20);
  end_connections(b, 5);
  b.begin_flush();
  SpanBatch::Chunk c = b.next_chunk(2);
  b.chunk_done(c);  // 0, 1 written
  c = b.next_chunk(2);
  ASSERT_EQ(c.size(), 2u);  // 2, 3: a lock was busy, handed back
  b.end_flush();
  EXPECT_EQ(b.left_over(), 3u);
  end_connections(b, 1, 3000);  // newer, waits behind them
  b.begin_flush();
  std::vector<uint64_t> seen;
  for (c = b.next_chunk(10); c.size() > 0; c = b.next_chunk(10)) {
    for (size_t i = 0; i < c.ntcp; i++) seen.push_back(c.tcp[i].bytes_sent);
    b.chunk_done(c);
  }
  b.end_flush();
  EXPECT_EQ(seen, (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(b.waiting(), 1u);  // the newer one, next flush
  b.begin_flush();
  c = b.next_chunk(10);
  ASSERT_EQ(c.ntcp, 1u);
  EXPECT_EQ(c.tcp[0].src_port, 3000);
}

TEST(SpanBatch, AChunkRefusedIsCountedAndTheFlushGoesOn) {
  SpanBatch b(1 << 20);
  end_connections(b, 4);
  b.begin_flush();
  SpanBatch::Chunk c = b.next_chunk(3);
  b.chunk_done(c, /*refused=*/true);
  c = b.next_chunk(3);
  ASSERT_EQ(c.size(), 1u);
  b.chunk_done(c);
  b.end_flush();
  EXPECT_EQ(b.dropped(), 3u);
  EXPECT_EQ(b.left_over(), 0u);
}

TEST(SpanBatch, TheBacklogIsBoundedInBytesWaitingAndFlushingTogether) {
  SpanBatch b(10 * sizeof(Span));
  end_connections(b, 6);
  b.begin_flush();  // 6 being flushed, none handed out yet
  end_connections(b, 6, 2000);
  EXPECT_EQ(b.waiting(), 4u);
  EXPECT_EQ(b.dropped(), 2u);
  EXPECT_EQ(b.pending_bytes(), 10 * sizeof(Span));
  // Written spans make room once their flush ends (their memory is held
  // until then).
  b.chunk_done(b.next_chunk(6));
  end_connections(b, 1, 3000);
  EXPECT_EQ(b.dropped(), 3u);
  b.end_flush();
  end_connections(b, 3, 3000);
  EXPECT_EQ(b.waiting(), 7u);
  EXPECT_EQ(b.dropped(), 3u);
}

TEST(SpanBatch, DroppingTheWaitingSpansCountsThem) {
  SpanBatch b(1 << 20);
  end_connections(b, 3);
  b.drop_waiting();
  EXPECT_EQ(b.waiting(), 0u);
  EXPECT_EQ(b.dropped(), 3u);
  EXPECT_EQ(b.oldest_ns(), 0u);
}

TEST(SpanBatch, OpenConnectionsAreListedApart) {
  SpanBatch b(1 << 20);
  ebpfc_flow_stats st = closed_stats(7);
  st.state = EBPFC_FLOW_OPEN;
  b.flow_open(ipv4_flow_key(4000, 80), st);
  EXPECT_EQ(b.waiting(), 0u);
  ASSERT_EQ(b.open_spans().size(), 1u);
  EXPECT_EQ(b.open_spans()[0].bytes_sent, 7u);
}

}  // namespace
}  // namespace ebpfc

namespace ebpfc {
namespace {

TEST(SpanBatch, HttpSpansCountTheirStringsAndABurstGivesItsMemoryBack) {
  HttpSpanList list;
  std::unique_ptr<HttpExchange> ex(new HttpExchange());
  std::memcpy(ex->target, "/a/rather/long/target/of/forty/bytes/xx", 40);
  ex->target_len = 40;
  for (int i = 0; i < 1000; i++) list.append(*ex, HttpQueryMode::Keep);
  EXPECT_EQ(list.bytes(), 1000 * (sizeof(HttpSpan) + 40));
  const size_t reserved = list.capacity_bytes();
  list.clear();
  EXPECT_EQ(list.capacity_bytes(), reserved) << "kept for the next batch";
  list.release();
  EXPECT_EQ(list.capacity_bytes(), 0u);
}

}  // namespace
}  // namespace ebpfc

namespace ebpfc {

namespace {

class StopControl final : public PayloadControl {
 public:
  void set_l7_control(const ebpfc_flow_key&, const ebpfc_l7_control&) override {}
  void clear_l7_control(const ebpfc_flow_key&) override {}
};

// A payload record of the client of `key` (endpoint 0), classified `l7`.
ebpfc_payload_event client_record(const ebpfc_flow_key& key, uint8_t l7, const std::string& bytes,
                                  uint32_t seq) {
  ebpfc_payload_event e{};
  e.type = EBPFC_EVENT_PAYLOAD;
  e.sender = 0;
  e.from_client = 1;
  e.l7 = l7;
  e.key = key;
  e.ts_ns = 1500;
  e.flow_first_ns = 1000;
  e.seq = seq;
  e.flags = 0;  // first seen mid-stream: no startup packet to wait for
  e.segment_len = e.data_len = static_cast<uint32_t>(bytes.size());
  std::memcpy(e.data, bytes.data(), bytes.size());
  return e;
}

}  // namespace

// Payload the filter classified PostgreSQL goes to the PostgreSQL tracker
// (not to HTTP's), its spans come out of the flush after the tcp spans, and
// the connection's tcp span carries the id they refer to.
TEST(SpanBatch, PostgresqlPayloadMakesPostgresqlSpans) {
  StopControl control;
  HttpTracker http(HttpTrackerOptions(), control);
  PgTracker pg(PgTrackerOptions(), control);
  SpanBatch b(1 << 20);
  b.set_http(&http);
  b.set_pg(&pg);
  const ebpfc_flow_key key = ipv4_flow_key(40000, 5432);
  const std::string q = std::string("Q\0\0\0\x0dSELECT 1\0", 14);
  b.payload(client_record(key, EBPFC_L7_PGSQL, q, 100));
  EXPECT_EQ(pg.open_connections(), 1u);
  EXPECT_EQ(http.open_connections(), 0u);
  b.flow_ended(key, closed_stats(q.size()), CloseReason::Fin);
  b.end_of_drain(3000);
  EXPECT_EQ(b.waiting(), 2u);  // the tcp span and the unanswered query's
  b.begin_flush();
  const SpanBatch::Chunk c = b.next_chunk(10);
  ASSERT_EQ(c.ntcp, 1u);
  ASSERT_EQ(c.npg, 1u);
  EXPECT_EQ(c.nhttp, 0u);
  EXPECT_EQ(std::memcmp(c.tcp[0].span_id, c.pg[0].connection_span_id, 8), 0);
  EXPECT_TRUE(c.pg[0].flags & kPgNoResponse);
  b.chunk_done(c);
  EXPECT_EQ(b.next_chunk(10).size(), 0u);
  b.end_flush();
}

// Payload classified Redis goes to the Redis tracker (not to PostgreSQL's or
// HTTP's); its spans travel with PostgreSQL's, marked Redis.
TEST(SpanBatch, RedisPayloadMakesRedisSpans) {
  StopControl control;
  HttpTracker http(HttpTrackerOptions(), control);
  PgTracker pg(PgTrackerOptions(), control);
  RedisTracker redis(RedisTrackerOptions(), control);
  SpanBatch b(1 << 20);
  b.set_http(&http);
  b.set_pg(&pg);
  b.set_redis(&redis);
  const ebpfc_flow_key key = ipv4_flow_key(40000, 6379);
  const std::string get = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  b.payload(client_record(key, EBPFC_L7_REDIS, get, 100));
  EXPECT_EQ(redis.open_connections(), 1u);
  EXPECT_EQ(pg.open_connections(), 0u);
  EXPECT_EQ(http.open_connections(), 0u);
  b.flow_ended(key, closed_stats(get.size()), CloseReason::Fin);
  b.end_of_drain(3000);
  EXPECT_EQ(b.waiting(), 2u);  // the tcp span and the unanswered command's
  b.begin_flush();
  const SpanBatch::Chunk c = b.next_chunk(10);
  ASSERT_EQ(c.ntcp, 1u);
  ASSERT_EQ(c.npg, 1u);
  EXPECT_EQ(c.pg[0].system, DbSystem::Redis);
  EXPECT_EQ(std::memcmp(c.tcp[0].span_id, c.pg[0].connection_span_id, 8), 0);
  EXPECT_TRUE(c.pg[0].flags & kRedisNoResponse);
  b.chunk_done(c);
  b.end_flush();
}

}  // namespace ebpfc
