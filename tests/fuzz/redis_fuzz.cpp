// redis_fuzz.cpp - libFuzzer target for Redis's protocol parser and its
// pairing (extension/core/redis_wire.*), and the filter's classifier
// (bpf/l7_classify.h, ebpfc_redis_classify).
//
// The input is a connection's capture, as the kernel would report it:
//
//   config (1 byte) | records...
//
// config bit 0: the capture joined mid-stream (no stream starts); bit 1: key
// names on. A record is ctl (1 byte) and its operands; ctl bit 0 is the
// direction; the records are those of segment_script.h.
// Every segment acknowledges all the other direction sent.
//
// Checked (CHECK aborts): every span is well formed (a Redis span, text
// references inside the list's text, a name of at most kRedisNameMax bytes,
// a query of at most the name, a space and kRedisKeyMax bytes, an error code
// only on an error, times in order); the connections followed stay bounded;
// at close nothing is left open.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/redis_wire.h"
#include "db_fuzz_run.h"
#include "fuzz_check.h"
#include "l7_classify.h"

namespace {

using namespace ebpfc;

std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

std::string canned(uint8_t k) {
  switch (k % 16) {
    case 0:
      return "*3\r\n" + bulk("SET") + bulk("user:1") + bulk("v");
    case 1:
      return "*2\r\n" + bulk("GET") + bulk("user:1");
    case 2:
      return "+OK\r\n";
    case 3:
      return bulk("value");
    case 4:
      return "-WRONGTYPE Operation against a key\r\n";
    case 5:
      return "*1\r\n" + bulk("MULTI");
    case 6:
      return "+QUEUED\r\n";
    case 7:
      return "*2\r\n" + bulk("SUBSCRIBE") + bulk("ch");
    case 8:
      return "*3\r\n" + bulk("subscribe") + bulk("ch") + ":1\r\n";
    case 9:
      return ">2\r\n" + bulk("invalidate") + "*1\r\n" + bulk("a");
    case 10:
      return "%1\r\n+proto\r\n:3\r\n";
    case 11:
      return "|1\r\n+a\r\n,0.5\r\n";
    case 12:
      return "*2\r\n" + bulk("SELECT") + bulk("2");
    case 13:
      return "PING\r\n";
    case 14:
      return "*1\r\n" + bulk("EXEC");
    default:
      return "$4294967295\r\nxx";
  }
}

void check_spans(const PgSpanList& out, size_t from) {
  const size_t text_len = out.bytes();  // an upper bound of the text's size
  for (size_t i = from; i < out.size(); i++) {
    const PgSpan& s = out[i];
    CHECK(s.system == DbSystem::Redis);
    for (const TextRef r : {s.operation, s.query, s.database, s.error_code})
      CHECK(r.offset + size_t{r.len} <= text_len);
    CHECK(s.operation.len <= kRedisNameMax);
    CHECK(s.query.len <= kRedisNameMax + 1 + kRedisKeyMax);
    CHECK(s.error_code.len <= kRedisErrorMax);
    CHECK(s.error_code.len == 0 || s.status == SpanStatus::Error);
    CHECK(s.start_unix_us <= s.end_unix_us);
    char buf[128];
    CHECK(pg_span_name(s, out.text(), buf, sizeof(buf)) != nullptr);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  ebpfc_fuzz::NullControl control;
  RedisTrackerOptions options;
  options.max_connections = 4;
  options.key_names = (data[0] & 2) != 0;
  RedisTracker tracker(options, control);
  ebpfc_fuzz::run_db_fuzz(
      data, size, tracker, options.max_connections,
      {EBPFC_L7_REDIS, 6379, true, (data[0] & 1) != 0},
      [](const __u8* head, __u32 n, __u32, bool) { (void)ebpfc_redis_classify(head, n); }, canned,
      check_spans);
  return 0;
}
