// redis_wire.h - Redis's protocol (RESP2 and RESP3) as the capture sees it:
// the payload of both directions of a connection, value by value, paired
// into one span per command and its reply, in order under pipelining.
//
// PostgreSQL-free. Lengths from the wire are never trusted for memory: bulk
// strings are counted through, aggregates are followed with a fixed stack of
// element counts (kRedisMaxDepth levels), and only the first bytes of a
// command's name and first argument, and of an error reply, are kept.
// Memory per connection is bounded: at most kRedisMaxPending commands wait
// for their reply (about 230 bytes each: 60 KiB at most).
//
// Redis spans travel with PostgreSQL's (PgSpan, system DbSystem::Redis):
// the batch, the store, the rollup and the export handle both as database
// client calls.
#pragma once

#include <cstddef>
#include <cstdint>

#include "capture_abi.h"
#include "core/attribute_sink.h"
#include "core/db_connections.h"
#include "core/pg_wire.h"  // PgSpan, PgSpanList
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

constexpr size_t kRedisMaxPending = 256;  // commands waiting for their reply
constexpr size_t kRedisMaxDepth = 32;     // aggregates nested in one value
constexpr size_t kRedisNameMax = 32;      // bytes of a command's name kept
constexpr size_t kRedisKeyMax = 128;      // bytes of a key's name kept
constexpr size_t kRedisErrorMax = 32;     // bytes of an error's prefix kept

// Why a Redis span is special (PgSpan::flags when system is Redis).
enum RedisSpanFlags : uint16_t {
  kRedisNoResponse = 1,     // the connection ended, or bytes were lost, before the reply
  kRedisMidStream = 2,      // the connection's start was not seen
  kRedisPubSub = 4,         // SUBSCRIBE (or MONITOR): the connection went to push mode
  kRedisTransaction = 8,    // a command queued between MULTI and EXEC/DISCARD
  kRedisKeyTruncated = 16,  // the key's name was cut at kRedisKeyMax
  kRedisInline = 32,        // an inline command (a line of words, not a RESP array)
};

// The span name (the command name, or "redis") and attributes of a Redis
// span (pg_span_name / pg_attributes hand Redis spans to these).
const char* redis_span_name(const PgSpan& span, const char* text, char* buf, size_t cap);
void redis_attributes(const PgSpan& span, const char* text, AttributeSink& out);

struct RedisCounters {
  uint64_t connections;    // connections followed
  uint64_t pool_full;      // connections not followed: max_connections were open
  uint64_t mid_stream;     // connections first seen without their start
  uint64_t resyncs;        // a direction found value boundaries again after a gap
  uint64_t gaps;           // bytes of a direction lost (not captured) while parsing
  uint64_t lost_requests;  // commands given up unanswered (a gap, push mode, a bound)
  uint64_t bad_values;     // connections given up: bytes that are not RESP
  uint64_t pending_bound;  // connections given up: kRedisMaxPending commands were waiting
  uint64_t pubsub;         // connections that went to push mode (SUBSCRIBE, MONITOR)
  uint64_t unpaired;       // replies with no command waiting
  uint64_t spans;          // spans made
};

struct RedisTrackerOptions {
  size_t max_connections = 1024;
  bool key_names = false;        // db.query.text with the key's name ("GET user:1")
  uint64_t expire_after_ns = 0;  // a connection silent this long is given up (0: never)
};

class RedisConnection;

// Follows the Redis connections of one capture (the kernel sends the payload
// of connections it takes for Redis, ebpfc_payload_event.l7 ==
// EBPFC_L7_REDIS).
class RedisTracker final
    : public DbConnections<RedisConnection, RedisTrackerOptions, RedisCounters> {
 public:
  using DbConnections::DbConnections;
};

}  // namespace ebpfc
