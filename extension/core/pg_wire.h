// pg_wire.h - PostgreSQL's wire protocol (3.0) as the capture sees it: the
// payload of both directions of a connection, message by message, paired
// into one span per simple Query (Q ... ReadyForQuery) and one per Execute of
// the extended protocol (its Parse/Bind ... its CommandComplete, or the
// ReadyForQuery of its Sync), in order under pipelining.
//
// PostgreSQL-free (no PostgreSQL headers: the protocol is read from its
// documentation). Lengths from the wire are never trusted for memory: a
// message's body is followed by counting, and only the first bytes of the
// messages that matter are kept, in fixed buffers. Memory per connection is
// bounded: kPgMaxStatements prepared statements, kPgMaxPortals portals and
// kPgMaxPending Executes and Queries waiting for their response, each with a
// text of at most kPgTextMax bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "capture_abi.h"
#include "core/attribute_sink.h"
#include "core/db_connections.h"
#include "core/http_span.h"     // TextRef, text_of
#include "core/http_tracker.h"  // PayloadControl
#include "core/span.h"
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

constexpr size_t kPgTextMax = 1024;      // bytes of a statement's text kept
constexpr size_t kPgMaxStatements = 16;  // prepared statements followed per connection
constexpr size_t kPgMaxPortals = 8;      // named portals followed per connection
constexpr size_t kPgMaxPending = 64;     // requests waiting for their response
constexpr size_t kPgNameMax = 64;        // database and user names kept

// Why a span is incomplete or special (PgSpan::flags).
enum PgSpanFlags : uint16_t {
  kPgTextTruncated = 1,       // the statement's text was cut at kPgTextMax (or in the capture)
  kPgRowsKnown = 2,           // rows holds CommandComplete's count
  kPgSkipped = 4,             // an Execute the server skipped after an earlier error of its cycle
  kPgNoResponse = 8,          // the connection ended, or its bytes were lost, before the response
  kPgMidStream = 16,          // the connection's start was not seen (no database, no user)
  kPgTls = 32,                // the session span of an SSLRequest the server accepted
  kPgGssEncrypted = 64,       // ... of a GSSENCRequest the server accepted
  kPgUnknownStatement = 128,  // an Execute of a statement whose Parse was not seen
};

// Which database protocol made a span: Redis spans travel in the same lists
// (redis_wire.h) and are named and described by their own functions.
enum class DbSystem : uint8_t { Postgresql = 0, Redis = 1 };

// One span: a query, an execute, or a session that went encrypted (or a
// Redis command, system Redis).
struct PgSpan {
  DbSystem system;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  int64_t start_unix_us;
  int64_t end_unix_us;
  uint8_t family;
  uint8_t src_addr[16];  // the client
  uint8_t dst_addr[16];  // the server
  uint16_t src_port;
  uint16_t dst_port;
  uint8_t connection_span_id[8];
  SpanStatus status;
  uint16_t flags;
  uint64_t rows;
  uint64_t request_bytes;   // bytes of the client's messages of this request
  uint64_t response_bytes;  // bytes of the server's messages answering it
  char sqlstate[6];         // of an ErrorResponse, "" if none
  TextRef operation;        // db.operation.name
  TextRef collection;       // db.collection.name
  TextRef query;            // db.query.text
  TextRef database;         // db.namespace
  TextRef user;
  TextRef error_code;  // Redis: the error reply's prefix (ERR, WRONGTYPE)
};

// The spans waiting in one buffer (like HttpSpanList): fixed parts in a
// vector, strings in one text buffer; both keep their memory.
class PgSpanList {
 public:
  PgSpan& append();
  TextRef put(const char* s, size_t len);
  void pop_back();
  void clear();
  size_t size() const { return spans_.size(); }
  bool empty() const { return spans_.empty(); }
  PgSpan& operator[](size_t i) { return spans_[i]; }
  const PgSpan& operator[](size_t i) const { return spans_[i]; }
  PgSpan& back() { return spans_.back(); }
  const PgSpan* data() const { return spans_.data(); }
  const char* text() const { return text_.data(); }
  size_t bytes() const { return spans_.size() * (sizeof(PgSpan) + sizeof(size_t)) + text_.size(); }
  size_t capacity_bytes() const {
    return spans_.capacity() * sizeof(PgSpan) + text_.capacity() +
           text_marks_.capacity() * sizeof(size_t);
  }
  void swap(PgSpanList& other);
  // Gives the reserved memory back.
  void release();
  // Reserves a quarter of `bytes` (PostgreSQL spans are fewer than HTTP's on
  // most nodes; the vectors grow beyond it if they must).
  void reserve(size_t bytes);

 private:
  std::vector<PgSpan> spans_;
  std::vector<char> text_;
  std::vector<size_t> text_marks_;  // text_ size before each span (pop_back)
};

// The span name (OpenTelemetry database conventions): "{operation}
// {collection}", "{operation}", or "postgresql"; into buf.
const char* pg_span_name(const PgSpan& span, const char* text, char* buf, size_t cap);

// The attributes of a span (db.system.name, db.operation.name, ...).
void pg_attributes(const PgSpan& span, const char* text, AttributeSink& out);

struct PgCounters {
  uint64_t connections;      // connections followed
  uint64_t pool_full;        // connections not followed: max_connections were open
  uint64_t tls_sessions;     // sessions that went encrypted (SSL or GSS): not parsed
  uint64_t mid_stream;       // connections first seen without their start
  uint64_t resyncs;          // a direction found message boundaries again after a gap
  uint64_t gaps;             // bytes of a direction lost (not captured) while parsing
  uint64_t lost_requests;    // requests dropped unanswered at a gap (pairing was lost)
  uint64_t bad_messages;     // connections given up: bytes that are not the protocol
  uint64_t pending_bound;    // requests not followed: kPgMaxPending were waiting
  uint64_t statement_bound;  // prepared statements forgotten at kPgMaxStatements
  uint64_t unpaired;         // responses with no request waiting
  uint64_t spans;            // spans made
};

struct PgTrackerOptions {
  size_t max_connections = 1024;
  bool raw_text = false;         // db.query.text as sent (literals and all)
  uint64_t expire_after_ns = 0;  // a connection silent this long is given up (0: never)
};

class PgConnection;

// Follows the PostgreSQL connections of one capture (the kernel sends the
// payload of connections it takes for PostgreSQL, ebpfc_payload_event.l7 ==
// EBPFC_L7_PGSQL).
class PgTracker final : public DbConnections<PgConnection, PgTrackerOptions, PgCounters> {
 public:
  using DbConnections::DbConnections;
};

}  // namespace ebpfc
