// Tests of PostgreSQL's wire protocol: the filter's classifier
// (bpf/l7_classify.h), the statement summary (core/pg_query.h) and the
// parser and pairing of core/pg_wire.h, fed payload records as the kernel
// sends them.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/pg_query.h"
#include "core/pg_wire.h"
#include "db_wire_fixture.h"
#include "json_text_sink.h"
#include "l7_classify.h"

namespace ebpfc_test {
namespace {

using namespace ebpfc;

// ---------------------------------------------------------------------------
// Wire messages.

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}
std::string msg(char type, const std::string& body) {
  return std::string(1, type) + be32(static_cast<uint32_t>(body.size() + 4)) + body;
}
std::string cstr(const std::string& s) { return s + std::string(1, '\0'); }
std::string startup(const std::string& user, const std::string& db) {
  std::string body = be32(196608) + cstr("user") + cstr(user);
  if (!db.empty()) body += cstr("database") + cstr(db);
  body += std::string(1, '\0');
  return be32(static_cast<uint32_t>(body.size() + 4)) + body;
}
std::string ssl_request() { return be32(8) + be32(80877103); }
std::string query(const std::string& q) { return msg('Q', cstr(q)); }
std::string parse(const std::string& name, const std::string& q) {
  return msg('P', cstr(name) + cstr(q) + std::string(2, '\0'));
}
std::string bind(const std::string& portal, const std::string& stmt) {
  return msg('B', cstr(portal) + cstr(stmt) + std::string(6, '\0'));
}
std::string execute(const std::string& portal) { return msg('E', cstr(portal) + be32(0)); }
std::string describe_portal() { return msg('D', "P" + cstr("")); }
std::string sync() { return msg('S', ""); }
std::string command_complete(const std::string& tag) { return msg('C', cstr(tag)); }
std::string ready(char st = 'I') { return msg('Z', std::string(1, st)); }
std::string data_row(const std::string& v) {
  return msg('D', std::string("\0\1", 2) + be32(static_cast<uint32_t>(v.size())) + v);
}
std::string error(const std::string& sqlstate) {
  return msg(
      'E', "SERROR" + std::string(1, '\0') + "C" + cstr(sqlstate) + "Mboom" + std::string(2, '\0'));
}
std::string auth_ok() { return msg('R', be32(0)); }

// ---------------------------------------------------------------------------
// The classifier.

int pg_classify(const std::string& s, bool at_start) {
  __u8 buf[EBPFC_L7_BUF_LEN] = {};
  const size_t n = std::min<size_t>(s.size(), EBPFC_L7_PROBE_LEN);
  std::memcpy(buf, s.data(), n);
  return ebpfc_pg_classify(buf, static_cast<__u32>(n), static_cast<__u32>(s.size()), at_start);
}

TEST(PgClassify, StartupPacketsAtAStreamStart) {
  EXPECT_TRUE(pg_classify(startup("alice", "shop"), true));
  EXPECT_TRUE(pg_classify(ssl_request(), true));
  EXPECT_TRUE(pg_classify(be32(8) + be32(80877104), true));                       // GSSENCRequest
  EXPECT_TRUE(pg_classify(be32(16) + be32(80877102) + be32(1) + be32(2), true));  // cancel
  // Not at a start: a startup packet has no type byte to go by.
  EXPECT_FALSE(pg_classify(startup("alice", "shop"), false));
  EXPECT_FALSE(pg_classify(be32(9) + be32(80877103), true));  // wrong length
  EXPECT_FALSE(pg_classify(be32(8) + be32(196609), true));    // no such version
}

TEST(PgClassify, MessageShapesAnywhere) {
  EXPECT_TRUE(pg_classify(query("SELECT 1"), false));
  EXPECT_TRUE(pg_classify(query("SELECT * FROM a_rather_long_table_name WHERE x = 1"), false));
  EXPECT_TRUE(pg_classify(parse("", "SELECT 1") + bind("", "") + execute("") + sync(), false));
  EXPECT_TRUE(pg_classify(bind("", "P0_1") + execute("") + sync(), false));
  EXPECT_TRUE(
      pg_classify(msg('2', "") + data_row("1") + command_complete("SELECT 1") + ready(), false));
  EXPECT_TRUE(pg_classify(ready(), false));  // the whole segment, one message
}

TEST(PgClassify, OtherPayloadIsNot) {
  for (const std::string& s :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string("HTTP/1.1 200 OK\r\n\r\n"),
        std::string("*1\r\n$4\r\nPING\r\n"), std::string("EHLO client.example\r\n"),
        std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
        std::string("Q\0\0\0\x05xx", 7),           // a 'Q' whose length does not fit
        std::string("Z\0\0\0\x05Q", 6),            // ReadyForQuery with no such status
        std::string("1\0\0\0\x05\0\0\0\0\0", 10),  // ParseComplete is 4 bytes
        std::string("Q\xff\0\0\x05SELECT 1", 13)}) {
    EXPECT_FALSE(pg_classify(s, false)) << s;
    EXPECT_FALSE(pg_classify(s, true)) << s;
  }
}

// The HTTP classifier never says HTTP for PostgreSQL's first bytes.
TEST(PgClassify, HttpClassifierSaysOther) {
  for (const std::string& s : {startup("alice", "shop"), ssl_request(), query("SELECT 1")}) {
    const __u32 n = static_cast<__u32>(std::min<size_t>(s.size(), EBPFC_L7_PROBE_LEN));
    EXPECT_EQ(ebpfc_l7_classify(reinterpret_cast<const __u8*>(s.data()), n),
              static_cast<__u32>(EBPFC_L7_OTHER));
  }
}

// ---------------------------------------------------------------------------
// The statement summary.

std::string normalized(const std::string& q, PgQuerySummary* s = nullptr, bool raw = false) {
  char out[kPgTextMax];
  PgQuerySummary tmp;
  if (s == nullptr) s = &tmp;
  pg_summarize_query(q.data(), q.size(), false, raw, out, sizeof(out), s);
  return std::string(out, s->text_len);
}

TEST(PgQuery, LiteralsBecomePlaceholders) {
  EXPECT_EQ(normalized("SELECT abalance FROM pgbench_accounts WHERE aid = 4711"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  EXPECT_EQ(normalized("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;\n"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  EXPECT_EQ(normalized("SELECT * FROM users WHERE name = 'O''Brien' AND pw = E'se\\'cret'"),
            "SELECT * FROM users WHERE name = ? AND pw = ?");
  EXPECT_EQ(normalized("select $1::int, 1.5e-3, x'ff', $tag$secret$tag$, $$x$$"),
            "select $1::int, ?, ?, ?, ?");
  EXPECT_EQ(normalized("SELECT t1.c2 FROM t1 -- card 4111111111111111\n WHERE  c = /* 42 */ 7"),
            "SELECT t1.c2 FROM t1 WHERE c = ?");
  EXPECT_EQ(normalized("INSERT INTO \"Odd Table\" VALUES (1, 'a')"),
            "INSERT INTO \"Odd Table\" VALUES (?, ?)");
  // unterminated literals (a cut statement) still reveal nothing
  EXPECT_EQ(normalized("SELECT 'half a secr"), "SELECT ?");
}

TEST(PgQuery, RawKeepsTheText) {
  EXPECT_EQ(normalized("SELECT 'x' , 42", nullptr, true), "SELECT 'x' , 42");
}

TEST(PgQuery, OperationAndCollection) {
  PgQuerySummary s;
  normalized("select abalance from public.pgbench_accounts where aid = 1", &s);
  EXPECT_STREQ(s.operation, "SELECT");
  EXPECT_STREQ(s.collection, "public.pgbench_accounts");
  normalized("UPDATE pgbench_tellers SET tbalance = tbalance + 1", &s);
  EXPECT_STREQ(s.operation, "UPDATE");
  EXPECT_STREQ(s.collection, "pgbench_tellers");
  normalized("INSERT INTO h (a) VALUES (1)", &s);
  EXPECT_STREQ(s.collection, "h");
  normalized("SELECT (SELECT 1 FROM inner_t) FROM outer_t", &s);
  EXPECT_STREQ(s.collection, "outer_t");
  normalized("BEGIN", &s);
  EXPECT_STREQ(s.operation, "BEGIN");
  EXPECT_STREQ(s.collection, "");
  normalized("  ", &s);
  EXPECT_STREQ(s.operation, "");
}

TEST(PgQuery, TagRows) {
  uint64_t rows = 0;
  EXPECT_TRUE(pg_tag_rows("SELECT 5", 9, &rows));
  EXPECT_EQ(rows, 5u);
  EXPECT_TRUE(pg_tag_rows("INSERT 0 3", 10, &rows));
  EXPECT_EQ(rows, 3u);
  EXPECT_FALSE(pg_tag_rows("BEGIN", 5, &rows));
  EXPECT_FALSE(pg_tag_rows("CREATE TABLE", 12, &rows));
}

// ---------------------------------------------------------------------------
// The tracker.

class PgWire : public DbWireFixture<PgTracker, PgTrackerOptions> {
 protected:
  PgWire() : DbWireFixture(5432, EBPFC_L7_PGSQL, false) {}

  void connect(const std::string& user = "alice", const std::string& db = "shop") {
    send(true, startup(user, db));
    send(false, auth_ok() + msg('S', cstr("server_version") + cstr("15.0")) + ready());
  }
};

TEST_F(PgWire, SimpleQueryIsOneSpanWithItsRowsAndNames) {
  connect();
  EXPECT_EQ(out_.size(), 0u) << "the startup's ReadyForQuery answers no query";
  send(true, query("SELECT abalance FROM pgbench_accounts WHERE aid = 4711"));
  send(false,
       msg('T', std::string(40, 'x')) + data_row("42") + command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 1u);
  const PgSpan& s = out_[0];
  EXPECT_EQ(text(s.query), "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  EXPECT_EQ(text(s.operation), "SELECT");
  EXPECT_EQ(text(s.database), "shop");
  EXPECT_EQ(text(s.user), "alice");
  EXPECT_EQ(name(0), "SELECT pgbench_accounts");
  EXPECT_EQ(s.status, SpanStatus::Unset);
  EXPECT_TRUE(s.flags & kPgRowsKnown);
  EXPECT_EQ(s.rows, 1u);
  EXPECT_EQ(s.src_port, 40000);  // the client
  EXPECT_EQ(s.dst_port, 5432);
  EXPECT_LT(s.start_unix_us, s.end_unix_us + 1);
  const std::string a = attrs(0);
  EXPECT_NE(a.find("\"db.system.name\":\"postgresql\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"db.response.returned_rows\":1"), std::string::npos) << a;
  EXPECT_EQ(a.find("4711"), std::string::npos) << "no literal by default: " << a;
}

TEST_F(PgWire, DatabaseDefaultsToTheUser) {
  connect("bob", "");
  send(true, query("SELECT 1"));
  send(false, command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(text(out_[0].database), "bob");
}

TEST_F(PgWire, ErrorGivesSqlstateAndErrorStatus) {
  connect();
  send(true, query("SELECT * FROM missing"));
  send(false, error("42P01") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].status, SpanStatus::Error);
  EXPECT_STREQ(out_[0].sqlstate, "42P01");
  EXPECT_NE(attrs(0).find("\"db.response.status_code\":\"42P01\""), std::string::npos);
}

TEST_F(PgWire, ExtendedCyclesPairInOrderUnderPipelining) {
  connect();
  // pgbench -M prepared: statements parsed once, then Bind/Execute by name;
  // libpq's pipeline mode sends many before one Sync.
  send(true, parse("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1") +
                 msg('D', "S" + cstr("P0_1")) + sync());
  send(false, msg('1', "") + msg('t', std::string(6, '\0')) + msg('n', "") + ready());
  EXPECT_EQ(out_.size(), 0u) << "a cycle with no Execute is no span";
  std::string batch;
  for (int i = 0; i < 5; i++) batch += bind("", "P0_1") + describe_portal() + execute("");
  batch += parse("", "UPDATE t SET v = 1 WHERE k = $1") + bind("", "") + execute("") + sync();
  send(true, batch);
  std::string answers;
  for (int i = 0; i < 5; i++)
    answers += msg('2', "") + data_row(std::to_string(i)) + command_complete("SELECT 1");
  answers += msg('1', "") + msg('2', "") + command_complete("UPDATE 7") + ready();
  send(false, answers);
  ASSERT_EQ(out_.size(), 6u);
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(text(out_[i].query), "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    EXPECT_EQ(out_[i].rows, 1u);
  }
  EXPECT_EQ(text(out_[5].query), "UPDATE t SET v = ? WHERE k = $1");
  EXPECT_EQ(out_[5].rows, 7u);
  EXPECT_EQ(name(5), "UPDATE t");
}

TEST_F(PgWire, AnErrorSkipsTheRestOfItsCycle) {
  connect();
  send(true, parse("", "SELECT 1/0") + bind("", "") + execute("") + parse("", "SELECT 2") +
                 bind("", "") + execute("") + sync() + query("SELECT 3"));
  send(false, msg('1', "") + msg('2', "") + error("22012") + ready('I') +
                  command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 3u);
  EXPECT_STREQ(out_[0].sqlstate, "22012");
  EXPECT_EQ(out_[0].status, SpanStatus::Error);
  EXPECT_TRUE(out_[1].flags & kPgSkipped);
  EXPECT_EQ(text(out_[1].query), "SELECT ?");
  EXPECT_EQ(text(out_[2].query), "SELECT ?");
  EXPECT_EQ(out_[2].status, SpanStatus::Unset);
}

TEST_F(PgWire, AcceptedSslRequestIsATlsSessionAndNothingElse) {
  send(true, ssl_request());
  send(false, "S");
  // what follows is TLS: never parsed
  send(true, std::string("\x16\x03\x01\x00\x05hello", 10));
  send(false, std::string("\x17\x03\x03\x00\x05QQQQQ", 10));
  end();
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].flags & kPgTls);
  EXPECT_EQ(name(0), "TLS");
  EXPECT_EQ(tracker_.counters().tls_sessions, 1u);
  EXPECT_EQ(control_.stops, 1) << "the kernel is told to stop sending its payload";
}

TEST_F(PgWire, RefusedSslRequestGoesOnInTheClear) {
  send(true, ssl_request());
  send(false, "N");
  connect();
  send(true, query("SELECT 1"));
  send(false, command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(text(out_[0].database), "shop");
}

TEST_F(PgWire, MessagesSplitAcrossSegmentsAndBigResults) {
  connect();
  const std::string q = query("SELECT g FROM generate_series(1, 100000) g");
  send(true, q.substr(0, 3));
  send(true, q.substr(3));
  std::string rows;
  for (int i = 0; i < 20000; i++) rows += data_row(std::to_string(i));
  send(false, msg('T', std::string(30, 'x')) + rows + command_complete("SELECT 20000") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].rows, 20000u);
  EXPECT_EQ(text(out_[0].query), "SELECT g FROM generate_series(?, ?) g");
}

TEST_F(PgWire, MidStreamConnectionResynchronises) {
  // The capture started while the connection was open: its first bytes are
  // the middle of a result.
  send(false, std::string(100, 'z'), true);
  send(true, query("SELECT 1"), true);
  send(false, command_complete("SELECT 1") + ready(), true);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].flags & kPgMidStream);
  EXPECT_EQ(text(out_[0].database), "");
  EXPECT_EQ(tracker_.counters().mid_stream, 1u);
  EXPECT_GE(tracker_.counters().resyncs, 2u);
}

TEST_F(PgWire, ALossDropsThePairingItBrokeAndResynchronises) {
  connect();
  send(true, query("SELECT 1"));
  lose(false, 20);  // its answer was not captured
  send(true, query("SELECT 2"));
  send(false, command_complete("SELECT 1") + ready());
  // The answer to SELECT 2 is not taken for SELECT 1's.
  for (size_t i = 0; i < out_.size(); i++) EXPECT_NE(text(out_[i].query), "SELECT 1");
  EXPECT_GE(tracker_.counters().lost_requests, 1u);
  EXPECT_GE(tracker_.counters().gaps, 1u);
  // Once in step again, queries pair.
  send(true, query("SELECT 3"));
  send(false, command_complete("SELECT 1") + ready());
  ASSERT_GE(out_.size(), 1u);
  EXPECT_EQ(text(out_.back().query), "SELECT ?");
}

TEST_F(PgWire, UnansweredRequestsEndWithTheConnection) {
  connect();
  send(true, query("SELECT pg_sleep(100)"));
  end();
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].flags & kPgNoResponse);
  EXPECT_EQ(tracker_.open_connections(), 0u);
}

TEST_F(PgWire, GarbageGivesTheConnectionUp) {
  connect();
  send(true, std::string("\x01\xff\xff\xff\xffgarbage", 12));
  send(true, query("SELECT 1"));
  send(false, command_complete("SELECT 1") + ready());
  EXPECT_EQ(out_.size(), 0u);
  EXPECT_EQ(tracker_.counters().bad_messages, 1u);
  EXPECT_EQ(control_.stops, 1);
}

TEST_F(PgWire, HugeLengthsAreCountedNotAllocated) {
  connect();
  // A long statement: its first kPgTextMax bytes are kept, the rest counted.
  send(true, query("SELECT '" + std::string(20000, 'a') + "', x FROM t"));
  send(false, command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].flags & kPgTextTruncated);
  EXPECT_EQ(text(out_[0].query), "SELECT ?");
  // A Query claiming almost 1 GiB that never ends: no span, nothing kept.
  send(true, std::string("Q") + be32(0x3fffffff) + "SELECT '" + std::string(5000, 'a'));
  end();
  EXPECT_EQ(out_.size(), 1u);
  EXPECT_EQ(tracker_.open_connections(), 0u);
}

// More requests in flight than followed: pairing the responses to come
// could go wrong, so the connection is given up, and that is counted.
TEST_F(PgWire, PendingRequestsAreBounded) {
  connect();
  std::string many;
  for (size_t i = 0; i < kPgMaxPending; i++) many += query("SELECT 1");
  send(true, many);
  EXPECT_EQ(tracker_.counters().pending_bound, 0u);
  send(true, query("SELECT 1") + query("SELECT 1"));
  EXPECT_EQ(tracker_.counters().pending_bound, 1u);
  EXPECT_EQ(tracker_.counters().lost_requests, kPgMaxPending);
  EXPECT_EQ(control_.stops, 1) << "the kernel stops sending its payload";
  std::string answers;
  for (size_t i = 0; i < kPgMaxPending + 2; i++) answers += command_complete("SELECT 1") + ready();
  send(false, answers);
  EXPECT_EQ(out_.size(), 0u);
}

TEST_F(PgWire, RawTextWhenAllowed) {
  PgTrackerOptions o;
  o.raw_text = true;
  tracker_.set_options(o);
  connect();
  send(true, query("SELECT 'secret', 42"));
  send(false, command_complete("SELECT 1") + ready());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(text(out_[0].query), "SELECT 'secret', 42");
}

TEST_F(PgWire, ConnectionsBeyondTheBoundAreNotFollowed) {
  PgTrackerOptions o;
  o.max_connections = 1;
  tracker_.set_options(o);
  connect();
  key_.port[1] = 40001;
  seq_[0] = start_[0];
  seq_[1] = start_[1];
  connect();
  EXPECT_EQ(tracker_.counters().pool_full, 1u);
  EXPECT_EQ(tracker_.open_connections(), 1u);
}

}  // namespace
}  // namespace ebpfc_test
