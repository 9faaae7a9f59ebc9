// Tests of Redis's protocol (RESP2, RESP3): the filter's classifier
// (bpf/l7_classify.h) and the parser and pairing of core/redis_wire.h, fed
// payload records as the kernel sends them.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/redis_wire.h"
#include "db_wire_fixture.h"
#include "json_text_sink.h"
#include "l7_classify.h"

namespace ebpfc_test {
namespace {

using namespace ebpfc;

// ---------------------------------------------------------------------------
// RESP.

std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}
std::string cmd(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += bulk(a);
  return out;
}
const std::string kOk = "+OK\r\n";
const std::string kQueued = "+QUEUED\r\n";

// ---------------------------------------------------------------------------
// The classifier.

int redis_classify(const std::string& s) {
  __u8 buf[EBPFC_L7_BUF_LEN] = {};
  const size_t n = std::min<size_t>(s.size(), EBPFC_L7_PROBE_LEN);
  std::memcpy(buf, s.data(), n);
  return ebpfc_redis_classify(buf, static_cast<__u32>(n));
}

TEST(RedisClassify, CommandArrays) {
  EXPECT_TRUE(redis_classify(cmd({"GET", "key:000000000042"})));
  EXPECT_TRUE(redis_classify(cmd({"set", "k", "v"})));
  EXPECT_TRUE(redis_classify(cmd({"PING"})));
  EXPECT_TRUE(redis_classify(cmd({"CLIENT", "SETNAME", "x"})));
  EXPECT_TRUE(redis_classify(cmd({"JSON.SET", "k", "$", "1"})));
  EXPECT_TRUE(redis_classify(cmd({"HELLO", "3"})));
  // a pipelined batch starts with its first command
  EXPECT_TRUE(redis_classify(cmd({"SET", "a", "1"}) + cmd({"SET", "b", "2"})));
  // a long name: as far as it is in view
  EXPECT_TRUE(redis_classify(cmd({std::string(40, 'X')})));
}

TEST(RedisClassify, OtherPayloadIsNot) {
  for (const std::string& s :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string("HTTP/1.1 200 OK\r\n\r\n"),
        std::string("PING\r\n"), std::string("+OK\r\n"), std::string(":1\r\n$3\r\nabc\r\n"),
        std::string("*1\r\n:12345\r\n"),            // an array of integers: a reply
        std::string("*2\r\n$3\r\nab1\r\n"),         // a digit in the name
        std::string("*2\r\n$3\r\nGETX\r\n"),        // the name is longer than its length
        std::string("*0\r\n$3\r\nGET\r\n"),         // no count 0 with elements
        std::string("*12345678\r\n$3\r\nGET\r\n"),  // a count too long
        std::string("*2\r\n$12345\r\nGET\r\n"),     // a length too long
        std::string("*2\n$3\nGET\n"), std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03", 10),
        std::string("Q\0\0\0\x0dSELECT 1\0", 14), std::string("*x\r\n$3\r\nGET\r\n")}) {
    EXPECT_FALSE(redis_classify(s)) << s;
  }
}

// The HTTP and PostgreSQL classifiers never take a Redis command.
TEST(RedisClassify, OtherClassifiersSayNo) {
  for (const std::string& s : {cmd({"GET", "k"}), cmd({"SET", "key", "value"}), cmd({"PING"})}) {
    const __u32 n = static_cast<__u32>(std::min<size_t>(s.size(), EBPFC_L7_PROBE_LEN));
    EXPECT_EQ(ebpfc_l7_classify(reinterpret_cast<const __u8*>(s.data()), n),
              static_cast<__u32>(EBPFC_L7_OTHER));
    __u8 buf[EBPFC_L7_BUF_LEN] = {};
    std::memcpy(buf, s.data(), n);
    EXPECT_FALSE(ebpfc_pg_classify(buf, n, static_cast<__u32>(s.size()), 1));
    EXPECT_FALSE(ebpfc_pg_classify(buf, n, static_cast<__u32>(s.size()), 0));
  }
}

// ---------------------------------------------------------------------------
// The tracker.

class RedisWire : public DbWireFixture<RedisTracker, RedisTrackerOptions> {
 protected:
  RedisWire() : DbWireFixture(6379, EBPFC_L7_REDIS, true) {}

  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (size_t i = 0; i < out_.size(); i++) v.push_back(name(i));
    return v;
  }
  void with_key_names() {
    RedisTrackerOptions o;
    o.key_names = true;
    tracker_.set_options(o);
  }
};

TEST_F(RedisWire, OneSpanPerCommandAndReply) {
  send(true, cmd({"SET", "user:1", "secret-value"}));
  send(false, kOk);
  send(true, cmd({"get", "user:1"}));
  send(false, bulk("secret-value"));
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].system, DbSystem::Redis);
  EXPECT_EQ(names(), (std::vector<std::string>{"SET", "GET"}));
  EXPECT_EQ(text(out_[1].query), "GET") << "the command name only by default";
  EXPECT_EQ(text(out_[1].database), "0") << "a connection starts in database 0";
  EXPECT_EQ(out_[1].status, SpanStatus::Unset);
  EXPECT_EQ(out_[0].src_port, 40000);  // the client
  EXPECT_EQ(out_[0].dst_port, 6379);
  EXPECT_EQ(out_[0].request_bytes, cmd({"SET", "user:1", "secret-value"}).size());
  EXPECT_EQ(out_[0].response_bytes, kOk.size());
  EXPECT_LE(out_[0].start_unix_us, out_[0].end_unix_us);
  const std::string a = attrs(0);
  EXPECT_NE(a.find("\"db.system.name\":\"redis\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"db.operation.name\":\"SET\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"db.namespace\":\"0\""), std::string::npos) << a;
  EXPECT_EQ(a.find("user:1"), std::string::npos) << "no key name by default: " << a;
  EXPECT_EQ(a.find("secret"), std::string::npos) << a;
  EXPECT_EQ(tracker_.counters().spans, 2u);
}

TEST_F(RedisWire, KeyNamesOnlyWhenAllowedAndNeverValues) {
  with_key_names();
  send(true, cmd({"SET", "user:1", "secret-value"}));
  send(false, kOk);
  send(true, cmd({"AUTH", "hunter2"}));
  send(false, kOk);
  send(true, cmd({"ECHO", "private"}));
  send(false, bulk("private"));
  send(true, cmd({"HSET", std::string(200, 'k'), "f", "v"}));
  send(false, ":1\r\n");
  ASSERT_EQ(out_.size(), 4u);
  EXPECT_EQ(text(out_[0].query), "SET user:1");
  EXPECT_EQ(text(out_[1].query), "AUTH") << "AUTH's argument is no key";
  EXPECT_EQ(text(out_[2].query), "ECHO");
  EXPECT_EQ(text(out_[3].query), "HSET " + std::string(kRedisKeyMax, 'k'));
  EXPECT_TRUE(out_[3].flags & kRedisKeyTruncated);
  for (size_t i = 0; i < out_.size(); i++) {
    const std::string a = attrs(i);
    EXPECT_EQ(a.find("secret"), std::string::npos) << a;
    EXPECT_EQ(a.find("hunter2"), std::string::npos) << a;
    EXPECT_EQ(a.find("private"), std::string::npos) << a;
  }
}

TEST_F(RedisWire, ErrorRepliesAreErrorsWithTheirPrefix) {
  send(true, cmd({"LPUSH", "s", "x"}));
  send(false, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  send(true, cmd({"NOSUCHCOMMAND"}));
  send(false, "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \r\n");
  send(true, cmd({"GET", "k"}));
  send(false, "!21\r\nSYNTAX invalid syntax\r\n");  // a RESP3 bulk error
  send(true, cmd({"GET", "k"}));
  send(false, "$-1\r\n");
  ASSERT_EQ(out_.size(), 4u);
  EXPECT_EQ(out_[0].status, SpanStatus::Error);
  EXPECT_EQ(text(out_[0].error_code), "WRONGTYPE");
  EXPECT_EQ(text(out_[1].error_code), "ERR");
  EXPECT_EQ(text(out_[2].error_code), "SYNTAX");
  EXPECT_EQ(out_[2].status, SpanStatus::Error);
  EXPECT_EQ(out_[3].status, SpanStatus::Unset) << "a null reply is no error";
  const std::string a = attrs(0);
  EXPECT_NE(a.find("\"db.response.status_code\":\"WRONGTYPE\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"error.type\":\"WRONGTYPE\""), std::string::npos) << a;
  EXPECT_EQ(a.find("wrong kind"), std::string::npos) << "no error message: " << a;
}

TEST_F(RedisWire, PipeliningPairsInOrder) {
  std::string batch, replies;
  for (int i = 0; i < 100; i++) {
    const bool set = i % 3 == 0;
    batch += set ? cmd({"SET", "k" + std::to_string(i), "v"}) : cmd({"GET", "k"});
    replies += set ? kOk : (i % 3 == 1 ? bulk(std::string(i, 'x')) : "-ERR no\r\n");
  }
  send(true, batch);
  EXPECT_EQ(out_.size(), 0u);
  // the replies byte by byte: boundaries anywhere
  send(false, replies, false, 7);
  ASSERT_EQ(out_.size(), 100u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(name(i), i % 3 == 0 ? "SET" : "GET") << i;
    EXPECT_EQ(out_[i].status, i % 3 == 2 ? SpanStatus::Error : SpanStatus::Unset) << i;
  }
  EXPECT_EQ(tracker_.counters().lost_requests, 0u);
}

TEST_F(RedisWire, CommandsSplitAnywhere) {
  const std::string c = cmd({"SET", "key", std::string(5000, 'v')}) + cmd({"INCR", "n"});
  send(true, c, false, 3);
  send(false, kOk + ":1\r\n", false, 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"SET", "INCR"}));
}

TEST_F(RedisWire, LargeAndNestedReplies) {
  send(true, cmd({"GET", "big"}));
  send(false, bulk(std::string(100000, '*')));  // counted through, body bytes unseen
  send(true, cmd({"LRANGE", "l", "0", "-1"}));
  send(false, "*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n");
  send(true, cmd({"HELLO", "3"}));
  send(false, "%2\r\n+server\r\n+redis\r\n+modules\r\n*0\r\n");
  send(true, cmd({"ZSCORE", "z", "m"}));
  send(false, ",3.14\r\n");
  send(true, cmd({"EXISTS", "a"}));
  send(false, "#t\r\n");
  send(true, cmd({"GET", "n"}));
  send(false, "_\r\n");
  send(true, cmd({"INFO"}));
  send(false, "=15\r\ntxt:Some string\r\n");
  send(true, cmd({"SMEMBERS", "s"}));
  send(false, "~2\r\n(3492890328409238509324850943850943825024385\r\n+b\r\n");
  EXPECT_EQ(names(), (std::vector<std::string>{"GET", "LRANGE", "HELLO", "ZSCORE", "EXISTS", "GET",
                                               "INFO", "SMEMBERS"}));
  EXPECT_EQ(out_[0].response_bytes, bulk(std::string(100000, '*')).size());
  EXPECT_EQ(tracker_.counters().bad_values, 0u);
}

TEST_F(RedisWire, PushesAndAttributesAreNoReplies) {
  send(true, cmd({"CLIENT", "TRACKING", "on"}));
  send(false, kOk);
  send(true, cmd({"GET", "a"}));
  // an invalidation push before the reply, an attribute before the reply
  send(false, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n" +
                  std::string("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n") + bulk("1"));
  send(true, cmd({"GET", "b"}));
  send(false, bulk("2") + ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nb\r\n");
  ASSERT_EQ(out_.size(), 3u);
  EXPECT_EQ(names(), (std::vector<std::string>{"CLIENT", "GET", "GET"}));
  EXPECT_EQ(tracker_.counters().unpaired, 0u);
  EXPECT_EQ(tracker_.counters().pubsub, 0u);
}

// An attribute inside an aggregate precedes an element and is none itself.
TEST_F(RedisWire, NestedAttributesAreNoElements) {
  const std::string reply = "*2\r\n|1\r\n+ttl\r\n:3\r\n:5\r\n:6\r\n";
  send(true, cmd({"MGET", "a", "b"}));
  send(false, reply);
  send(true, cmd({"GET", "c"}));
  send(false, bulk("x"));
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].response_bytes, reply.size());
  EXPECT_EQ(out_[1].response_bytes, bulk("x").size());
  EXPECT_EQ(tracker_.counters().unpaired, 0u);
}

TEST_F(RedisWire, MultiExecPairsEveryCommand) {
  send(true, cmd({"MULTI"}) + cmd({"INCR", "a"}) + cmd({"LPUSH", "a", "x"}) + cmd({"EXEC"}));
  send(false, kOk + kQueued + kQueued + "*2\r\n:1\r\n-WRONGTYPE bad\r\n");
  ASSERT_EQ(out_.size(), 4u);
  EXPECT_EQ(names(), (std::vector<std::string>{"MULTI", "INCR", "LPUSH", "EXEC"}));
  EXPECT_FALSE(out_[0].flags & kRedisTransaction);
  EXPECT_TRUE(out_[1].flags & kRedisTransaction);
  EXPECT_TRUE(out_[2].flags & kRedisTransaction);
  EXPECT_FALSE(out_[3].flags & kRedisTransaction);
  EXPECT_EQ(out_[3].status, SpanStatus::Unset) << "an error inside EXEC's array is the command's";
  send(true, cmd({"MULTI"}) + cmd({"NOPE"}) + cmd({"EXEC"}));
  send(false, kOk + "-ERR unknown command\r\n" + "-EXECABORT Transaction discarded\r\n");
  ASSERT_EQ(out_.size(), 7u);
  EXPECT_EQ(text(out_[6].error_code), "EXECABORT");
  EXPECT_NE(attrs(1).find("\"db.redis.transaction\":true"), std::string::npos);
}

TEST_F(RedisWire, SubscribeStopsPairingCounted) {
  send(true, cmd({"GET", "a"}));
  send(false, bulk("1"));
  send(true, cmd({"SUBSCRIBE", "news"}) + cmd({"PING"}));
  send(false, "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(name(1), "SUBSCRIBE");
  EXPECT_TRUE(out_[1].flags & kRedisPubSub);
  EXPECT_NE(attrs(1).find("\"db.redis.push_mode\":true"), std::string::npos);
  EXPECT_EQ(tracker_.counters().pubsub, 1u);
  EXPECT_EQ(tracker_.counters().lost_requests, 1u) << "the PING after it";
  EXPECT_EQ(control_.stops, 1) << "the kernel stops sending the connection";
  // messages are not replies
  send(false, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
  end();
  EXPECT_EQ(out_.size(), 2u);
}

TEST_F(RedisWire, Resp3SubscribeIsAPush) {
  send(true, cmd({"HELLO", "3"}));
  send(false, "%1\r\n+proto\r\n:3\r\n");
  send(true, cmd({"SUBSCRIBE", "news"}));
  send(false, ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_TRUE(out_[1].flags & kRedisPubSub);
  EXPECT_EQ(tracker_.counters().pubsub, 1u);
}

TEST_F(RedisWire, SelectSetsTheNamespace) {
  send(true, cmd({"SELECT", "3"}));
  send(false, kOk);
  send(true, cmd({"GET", "a"}));
  send(false, bulk("x"));
  send(true, cmd({"SELECT", "99"}));
  send(false, "-ERR DB index is out of range\r\n");
  send(true, cmd({"GET", "a"}));
  send(false, bulk("x"));
  ASSERT_EQ(out_.size(), 4u);
  EXPECT_EQ(text(out_[0].database), "0");
  EXPECT_EQ(text(out_[1].database), "3");
  EXPECT_EQ(text(out_[3].database), "3") << "a failed SELECT changes nothing";
  EXPECT_EQ(text(out_[2].query), "SELECT") << "SELECT's index is no key";
}

TEST_F(RedisWire, InlineCommands) {
  with_key_names();
  send(true, "PING\r\n");
  send(false, "+PONG\r\n");
  send(true, "\r\n");  // an empty line: no command, no reply
  send(true, "get  user:7\r\n");
  send(false, "$-1\r\n");
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(names(), (std::vector<std::string>{"PING", "GET"}));
  EXPECT_EQ(text(out_[1].query), "GET user:7");
  EXPECT_TRUE(out_[1].flags & kRedisInline);
}

TEST_F(RedisWire, UnansweredCommandsAtTheEnd) {
  send(true, cmd({"BLPOP", "q", "0"}));
  end();
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].flags & kRedisNoResponse);
  EXPECT_NE(attrs(0).find("\"db.redis.no_response\":true"), std::string::npos);
}

TEST_F(RedisWire, GarbageGivesTheConnectionUp) {
  send(true, cmd({"GET", "a"}));
  send(false, "?what\r\n");
  EXPECT_EQ(out_.size(), 0u);
  EXPECT_EQ(tracker_.counters().bad_values, 1u);
  EXPECT_EQ(tracker_.counters().lost_requests, 1u);
  EXPECT_EQ(control_.stops, 1);
  send(false, bulk("x"));
  EXPECT_EQ(out_.size(), 0u);
}

TEST_F(RedisWire, HostileLengthsAndDepth) {
  const std::vector<std::string> hostile = {
      "*2\r\n$99999999999999999999\r\n",  // a length that overflows
      "*1\r\n$-5\r\n",                    // a negative bulk length from a client
      "*1\r\n:1\r\n",                     // a client's array holds bulk strings only
      "*1\r\n$3\r\nGETxx",                // no CRLF after the bulk
      "*1\r\n$" + std::string(40, '1'),   // a length line too long
      "*3\r\n*1\r\n",                     // nested arrays from a client
  };
  for (const std::string& h : hostile) {
    RedisTracker t(RedisTrackerOptions(), control_);
    ebpfc_payload_event e{};
    e.l7 = EBPFC_L7_REDIS;
    e.key = key_;
    e.from_client = 1;
    e.sender = 1;
    e.seq = 1000;
    e.flags = EBPFC_PAYLOAD_STREAM_START;
    e.stream_start = 1000;
    e.data_len = e.segment_len = static_cast<uint32_t>(h.size());
    std::memcpy(e.data, h.data(), h.size());
    PgSpanList out;
    t.on_payload(e, clock_, ids_, out);
    EXPECT_EQ(t.counters().bad_values, 1u) << h;
  }
  // replies nested deeper than kRedisMaxDepth
  send(true, cmd({"GET", "a"}));
  std::string deep;
  for (size_t i = 0; i <= kRedisMaxDepth; i++) deep += "*1\r\n";
  send(false, deep);
  EXPECT_EQ(tracker_.counters().bad_values, 1u);
}

TEST_F(RedisWire, PendingBoundGivesUpCounted) {
  std::string batch;
  for (size_t i = 0; i <= kRedisMaxPending; i++) batch += cmd({"PING"});
  send(true, batch);
  EXPECT_EQ(tracker_.counters().pending_bound, 1u);
  EXPECT_EQ(tracker_.counters().lost_requests, kRedisMaxPending);
  EXPECT_EQ(control_.stops, 1);
}

TEST_F(RedisWire, LossResyncsOnAcknowledgements) {
  send(true, cmd({"GET", "a"}));
  send(false, bulk("1"));
  send(true, cmd({"GET", "b"}));
  lose(false, 20);  // the reply to GET b was not seen
  send(true, cmd({"SET", "c", "1"}));
  send(false, kOk);  // first seen after the gap: answers SET (its ack covers it)
  send(true, cmd({"INCR", "d"}));
  send(false, ":5\r\n");
  EXPECT_EQ(names(), (std::vector<std::string>{"GET", "SET", "INCR"}));
  EXPECT_EQ(tracker_.counters().lost_requests, 1u);
  EXPECT_EQ(tracker_.counters().gaps, 1u);
  EXPECT_EQ(tracker_.counters().resyncs, 1u);
}

TEST_F(RedisWire, ClientLossResyncsOnTheNextCommand) {
  send(true, cmd({"GET", "a"}));
  send(false, bulk("1"));
  lose(true, 30);                    // a command not seen
  send(false, bulk("lost"));         // its reply: not paired with anything
  send(true, std::string("x\r\n"));  // the rest of a value: waits
  send(true, cmd({"GET", "b"}));
  send(false, bulk("2"));
  EXPECT_EQ(names(), (std::vector<std::string>{"GET", "GET"}));
  EXPECT_EQ(tracker_.counters().bad_values, 0u);
}

TEST_F(RedisWire, MidStreamConnection) {
  send(false, bulk("old reply"), true);       // the server's first bytes seen: no command waits
  send(true, std::string("alue\r\n"), true);  // the end of a command: waits for a start
  send(true, cmd({"GET", "a"}), true);
  send(false, bulk("1"), true);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(name(0), "GET");
  EXPECT_TRUE(out_[0].flags & kRedisMidStream);
  EXPECT_EQ(text(out_[0].database), "") << "database unknown mid-stream";
  EXPECT_EQ(tracker_.counters().mid_stream, 1u);
}

TEST_F(RedisWire, RetransmissionsAreIgnored) {
  const std::string c = cmd({"GET", "a"});
  send(true, c);
  seq_[0] -= static_cast<uint32_t>(c.size());
  send(true, c);  // the same bytes again
  send(false, bulk("1"));
  EXPECT_EQ(out_.size(), 1u);
  end();
  EXPECT_EQ(out_.size(), 1u);
}

TEST_F(RedisWire, OverTheConnectionBound) {
  RedisTrackerOptions o;
  o.max_connections = 0;
  tracker_.set_options(o);
  send(true, cmd({"GET", "a"}));
  EXPECT_EQ(tracker_.counters().pool_full, 1u);
  EXPECT_EQ(control_.stops, 1);
  EXPECT_EQ(out_.size(), 0u);
}

}  // namespace
}  // namespace ebpfc_test
