// Tests of extension/kube/reflector.*: list/watch protocol logic, without a
// network (the client feeds it what libcurl receives).
#include <gtest/gtest.h>

#include <map>

#include "kube/reflector.h"
#include "test_kube_fixtures.h"

namespace {

using namespace ebpfc::kube;
using kube_fixtures::json;
using kube_fixtures::PodSpec;

constexpr uint64_t kMs = 1000000;

struct Recorder final : ResourceHandler {
  int begins = 0, ends = 0;
  std::map<std::string, std::string> objects;  // uid -> name
  std::vector<std::string> log;
  void begin_list() override {
    begins++;
    log.push_back("begin");
  }
  void end_list(const Instant&) override {
    ends++;
    log.push_back("end");
  }
  bool apply(EventType type, const json& object, const Instant&, std::string* error) override {
    Pod pod;
    if (!decode_pod(object, &pod, error)) return false;
    log.push_back(std::string(event_type_name(type)) + " " + pod.meta.name);
    if (type == EventType::Deleted)
      objects.erase(pod.meta.uid);
    else
      objects[pod.meta.uid] = pod.meta.name;
    return true;
  }
};

const ResourceSpec kPods = {"pods", "/api/v1/pods", nullptr};

json pod_obj(const std::string& name, const std::string& rv) {
  PodSpec s;
  s.name = name;
  s.uid = "uid-" + name;
  s.rv = rv;
  return kube_fixtures::pod_json(s);
}

std::string page(const std::vector<std::string>& names, const std::string& rv,
                 const std::string& cont) {
  json items = json::array();
  for (const auto& n : names) items.push_back(pod_obj(n, rv));
  json meta = {{"resourceVersion", rv}};
  if (!cont.empty()) meta["continue"] = cont;
  return json{{"kind", "PodList"}, {"metadata", meta}, {"items", items}}.dump();
}

std::string event(const std::string& type, const std::string& name, const std::string& rv) {
  return json{{"type", type}, {"object", pod_obj(name, rv)}}.dump() + "\n";
}

std::string bookmark(const std::string& rv) {
  return json{{"type", "BOOKMARK"},
              {"object", {{"kind", "Pod"}, {"metadata", {{"resourceVersion", rv}}}}}}
             .dump() +
         "\n";
}

std::string expired_event() {
  return R"J({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (100)","reason":"Expired","code":410}})J"
         "\n";
}

class ReflectorTest : public ::testing::Test {
 protected:
  ReflectorTest() : rng(42), r(kPods, options(), rec, counters, rng) {}

  static ReflectorOptions options() {
    ReflectorOptions o;
    o.page_limit = 2;
    return o;
  }

  Instant at(uint64_t ms) const {
    return Instant{1000 * kMs + ms * kMs, 1700000000000000 + static_cast<int64_t>(ms) * 1000};
  }

  // One whole response.
  HttpRequest respond(uint64_t ms, int code, const std::string& body,
                      TransferResult::Kind kind = TransferResult::Kind::Ok, double retry_after = -1,
                      size_t chunk = 0) {
    EXPECT_TRUE(r.due(at(ms).mono_ns)) << "not due at " << ms;
    HttpRequest req = r.begin(at(ms));
    r.on_status(code, retry_after);
    size_t pos = 0;
    bool go = true;
    while (go && pos < body.size()) {
      const size_t n = chunk == 0 ? body.size() : std::min(chunk, body.size() - pos);
      go = r.on_body(body.data() + pos, n, at(ms));
      pos += n;
    }
    TransferResult res;
    res.kind = go ? kind : TransferResult::Kind::Aborted;
    if (kind != TransferResult::Kind::Ok) res.message = "connection reset";
    r.on_done(res, at(ms + (req.watch ? 5000 : 10)));
    return req;
  }

  // Lists three pods in two pages and starts watching at rv 10.
  void sync(uint64_t ms = 0) {
    respond(ms, 200, page({"a", "b"}, "10", "c1"));
    respond(ms + 10, 200, page({"c"}, "10", ""));
    ASSERT_TRUE(r.synced());
  }

  Recorder rec;
  KubeCounters counters{};
  std::mt19937_64 rng;
  Reflector r;
};

TEST_F(ReflectorTest, ListsPageByPageThenWatchesFromTheListsVersion) {
  HttpRequest req = respond(0, 200, page({"a", "b"}, "10", "tok/en+1="));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=2");
  EXPECT_FALSE(req.watch);
  EXPECT_FALSE(r.synced());
  // a short page, then an empty one: only `continue` means more
  req = respond(10, 200, page({"c"}, "10", "c2"));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=2&continue=tok%2Fen%2B1%3D");
  req = respond(20, 200, page({}, "10", "c3"));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=2&continue=c2");
  EXPECT_FALSE(r.synced());
  req = respond(30, 200, page({"d"}, "10", ""));
  EXPECT_TRUE(r.synced());
  EXPECT_EQ(rec.begins, 1);
  EXPECT_EQ(rec.ends, 1);
  EXPECT_EQ(rec.objects.size(), 4u);
  EXPECT_EQ(r.resource_version(), "10");
  EXPECT_EQ(counters.lists, 4u);

  ASSERT_TRUE(r.due(at(40).mono_ns));
  req = r.begin(at(40));
  EXPECT_TRUE(req.watch);
  const std::string prefix =
      "/api/v1/pods?watch=1&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=";
  ASSERT_EQ(req.path_and_query.rfind(prefix, 0), 0u) << req.path_and_query;
  const int timeout = std::stoi(req.path_and_query.substr(prefix.size()));
  EXPECT_GE(timeout, 300);
  EXPECT_LE(timeout, 600);
  EXPECT_GT(req.timeout_s, timeout);
}

TEST_F(ReflectorTest, WatchTimeoutsAreRandomised) {
  std::set<std::string> seen;
  sync();
  for (int i = 0; i < 20; i++) {
    const HttpRequest req = respond(100 + i * 10000, 200, bookmark(std::to_string(20 + i)));
    seen.insert(req.path_and_query.substr(req.path_and_query.find("timeoutSeconds")));
  }
  EXPECT_GT(seen.size(), 5u);
}

TEST_F(ReflectorTest, WatchEventsAcrossChunksAndBookmarks) {
  sync();
  const std::string stream = event("ADDED", "d", "11") + event("MODIFIED", "a", "12") +
                             event("DELETED", "b", "13") + bookmark("20");
  HttpRequest req = respond(100, 200, stream, TransferResult::Kind::Ok, -1, 7);
  EXPECT_TRUE(req.watch);
  EXPECT_EQ(counters.events, 3u);
  EXPECT_EQ(counters.bookmarks, 1u);
  EXPECT_EQ(rec.objects.size(), 3u);  // a, c, d
  EXPECT_EQ(rec.objects.count("uid-b"), 0u);
  EXPECT_EQ(r.resource_version(), "20");  // the bookmark moved it
  // the watch ended cleanly: resumed at once from the last version
  ASSERT_TRUE(r.due(at(5100).mono_ns));
  req = r.begin(at(5100));
  EXPECT_NE(req.path_and_query.find("resourceVersion=20&"), std::string::npos);
  EXPECT_EQ(counters.relists, 0u);
  EXPECT_FALSE(r.failing());
}

TEST_F(ReflectorTest, ResourceVersionIsOpaque) {
  respond(0, 200, page({"a"}, "abc/=&é", ""));
  const HttpRequest req = r.begin(at(10));
  EXPECT_NE(req.path_and_query.find("resourceVersion=abc%2F%3D%26%C3%A9&"), std::string::npos);
}

TEST_F(ReflectorTest, ExpiredWatchRelists) {
  sync();
  const HttpRequest req = respond(
      100, 200, event("ADDED", "d", "11") + expired_event() + event("ADDED", "ignored", "12"));
  EXPECT_TRUE(req.watch);
  EXPECT_EQ(counters.relists, 1u);
  EXPECT_EQ(rec.objects.count("uid-ignored"), 0u);  // nothing after the ERROR is applied
  // at once, a fresh list
  ASSERT_TRUE(r.due(at(5100).mono_ns));
  const HttpRequest list = respond(5100, 200, page({"a"}, "30", ""));
  EXPECT_EQ(list.path_and_query, "/api/v1/pods?limit=2");
  EXPECT_EQ(rec.begins, 2);
  EXPECT_EQ(r.resource_version(), "30");
  EXPECT_FALSE(r.failing());
}

TEST_F(ReflectorTest, WatchRefusedWith410Relists) {
  sync();
  respond(100, 410, R"({"kind":"Status","code":410,"reason":"Gone"})");
  EXPECT_EQ(counters.relists, 1u);
  EXPECT_FALSE(r.begin(at(5100)).watch);
}

TEST_F(ReflectorTest, ExpiredContinueRestartsTheList) {
  respond(0, 200, page({"a", "b"}, "10", "c1"));
  respond(
      10, 410,
      R"({"kind":"Status","status":"Failure","message":"The provided continue parameter is too old","reason":"Expired","code":410})");
  EXPECT_EQ(counters.relists, 1u);
  const HttpRequest req = respond(20, 200, page({"a"}, "15", ""));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=2");  // no continue
  EXPECT_EQ(rec.begins, 2);
  EXPECT_TRUE(r.synced());
}

TEST_F(ReflectorTest, RepeatedExpiryBacksOff) {
  sync();
  respond(100, 410, "");  // the watch: relist at once
  EXPECT_TRUE(r.due(at(5100).mono_ns));
  respond(5100, 410, "");  // the list: again at once
  EXPECT_TRUE(r.due(at(5110).mono_ns));
  respond(5110, 410, "");  // a third time: back off
  EXPECT_FALSE(r.due(at(5120).mono_ns));
  EXPECT_TRUE(r.failing());
  EXPECT_EQ(counters.relists, 3u);
}

TEST_F(ReflectorTest, BrokenWatchResumesFromTheLastVersionAfterBackoff) {
  sync();
  respond(100, 200, event("ADDED", "d", "11") + "{\"type\":\"MODIF", TransferResult::Kind::Network);
  EXPECT_EQ(counters.failures[kFailNetwork], 1u);
  EXPECT_EQ(counters.bad_events, 0u);  // a cut event in a broken stream is not a bad event
  EXPECT_TRUE(r.failing());
  // 0.8 s to 1 s later (from the end of the transfer at 5100 ms)
  EXPECT_FALSE(r.due(at(5100 + 799).mono_ns));
  EXPECT_TRUE(r.due(at(5100 + 1000).mono_ns));
  const HttpRequest req = r.begin(at(6100));
  EXPECT_TRUE(req.watch);
  EXPECT_NE(req.path_and_query.find("resourceVersion=11&"), std::string::npos);
  EXPECT_EQ(counters.relists, 0u);
  r.on_status(200, -1);
  EXPECT_FALSE(r.failing());  // streaming again
}

TEST_F(ReflectorTest, ShortEmptyWatchBacksOff) {
  sync();
  HttpRequest req = r.begin(at(100));
  r.on_status(200, -1);
  r.on_done(TransferResult{}, at(400));
  EXPECT_EQ(counters.failures[kFailShortWatch], 1u);
  EXPECT_FALSE(r.due(at(400 + 799).mono_ns));
  EXPECT_TRUE(r.due(at(400 + 1000).mono_ns));
  // short but with an event: fine
  req = r.begin(at(2000));
  r.on_status(200, -1);
  const std::string b = bookmark("99");
  r.on_body(b.data(), b.size(), at(2000));
  r.on_done(TransferResult{}, at(2100));
  EXPECT_TRUE(r.due(at(2100).mono_ns));
  EXPECT_EQ(counters.failures[kFailShortWatch], 1u);
}

TEST_F(ReflectorTest, ExponentialBackoffWithJitterCappedAndReset) {
  uint64_t t = 0;
  std::vector<double> delays;
  for (int i = 0; i < 9; i++) {
    ASSERT_TRUE(r.due(t * kMs));
    r.begin(Instant{t * kMs, 0});
    r.on_status(0, -1);
    TransferResult res{TransferResult::Kind::Network, "refused"};
    r.on_done(res, Instant{t * kMs, 0});
    const uint64_t d = r.due_ns() - t * kMs;
    delays.push_back(static_cast<double>(d) / 1e9);
    t += d / kMs + 1;
  }
  const double base[] = {0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30};
  for (int i = 0; i < 9; i++) {
    EXPECT_GE(delays[i], base[i] - 1e-6) << i;
    EXPECT_LE(delays[i], base[i] * 1.25 + 1e-6) << i;
  }
  EXPECT_EQ(counters.failures[kFailNetwork], 9u);
  // two quiet minutes later: back to 0.8 s
  t += 121000;
  r.begin(Instant{t * kMs, 0});
  r.on_status(0, -1);
  r.on_done(TransferResult{TransferResult::Kind::Network, "x"}, Instant{t * kMs, 0});
  EXPECT_LE(r.due_ns() - t * kMs, 1000 * kMs);
}

TEST_F(ReflectorTest, TooManyRequestsHonoursRetryAfter) {
  respond(0, 429, "Too many requests, please try again later.\n", TransferResult::Kind::Ok, 3);
  EXPECT_EQ(counters.failures[kFailThrottled], 1u);
  EXPECT_FALSE(r.due(at(10 + 2999).mono_ns));
  EXPECT_TRUE(r.due(at(10 + 3300).mono_ns));
  EXPECT_NE(r.last_error().find("HTTP 429: Too many requests"), std::string::npos)
      << r.last_error();
  // without Retry-After: back-off
  respond(3400, 429, "");
  EXPECT_TRUE(r.due(at(3410 + 1000).mono_ns));
  // a 503 with Retry-After too
  respond(5000, 503, "", TransferResult::Kind::Ok, 5);
  EXPECT_FALSE(r.due(at(5010 + 4999).mono_ns));
  EXPECT_EQ(counters.failures[kFailServer], 1u);
}

TEST_F(ReflectorTest, HttpErrorsAreCountedByKindWithTheStatusMessage) {
  const std::pair<int, FailureKind> cases[] = {{401, kFailUnauthorized}, {403, kFailForbidden},
                                               {404, kFailNotFound},     {500, kFailServer},
                                               {504, kFailServer},       {418, kFailOtherHttp}};
  uint64_t t = 0;
  for (const auto& c : cases) {
    t += 100000;
    respond(t, c.first,
            json{{"kind", "Status"},
                 {"code", c.first},
                 {"reason", "Because"},
                 {"message", "pods is forbidden: User cannot list"}}
                .dump());
    EXPECT_EQ(counters.failures[c.second], c.second == kFailServer && c.first == 504 ? 2u : 1u);
    EXPECT_NE(r.last_error().find("pods list: HTTP " + std::to_string(c.first) +
                                  " Because: pods is forbidden"),
              std::string::npos)
        << r.last_error();
    EXPECT_EQ(r.last_unauthorized(), c.first == 401);
    EXPECT_FALSE(r.synced());
  }
}

TEST_F(ReflectorTest, RetryNowAfterANewToken) {
  respond(0, 401, R"({"kind":"Status","code":401,"reason":"Unauthorized"})");
  EXPECT_FALSE(r.due(at(20).mono_ns));
  r.retry_now(at(20));
  EXPECT_TRUE(r.due(at(20).mono_ns));
  // only after a 401
  respond(20, 500, "");
  r.retry_now(at(40));
  EXPECT_FALSE(r.due(at(40).mono_ns));
}

TEST_F(ReflectorTest, BadEventsAreCountedAndSkipped) {
  ReflectorOptions o = options();
  o.max_line = 2000;
  r.set_options(o);
  sync();
  PodSpec nostatus;
  nostatus.name = "bare";
  nostatus.uid = "uid-bare";
  json nostatus_obj = kube_fixtures::pod_json(nostatus);
  nostatus_obj.erase("status");
  const std::string stream =
      "{not json\n" + event("ADDED", "d", "11") +
      R"({"type":"SURPRISE","object":{"metadata":{"resourceVersion":"12"}}})"
      "\n" +
      std::string(5000, 'x') + "\n" +
      R"({"type":"ADDED","object":{"metadata":{"name":"no-uid","namespace":"d"}}})"
      "\n" +
      json{{"type", "ADDED"}, {"object", nostatus_obj}}.dump() + "\n" + event("ADDED", "e", "14");
  respond(100, 200, stream, TransferResult::Kind::Ok, -1, 100);
  EXPECT_EQ(counters.bad_events, 3u);  // not json, unknown type, no uid
  EXPECT_EQ(counters.oversize_lines, 1u);
  EXPECT_EQ(counters.events, 3u);  // d, bare, e
  EXPECT_EQ(rec.objects.count("uid-e"), 1u);
  EXPECT_EQ(rec.objects.count("uid-bare"), 1u);
  EXPECT_EQ(r.resource_version(), "14");
  EXPECT_FALSE(r.failing());
  // a stream that ends inside an event
  respond(6000, 200, event("ADDED", "f", "15") + "{\"type\":\"ADD");
  EXPECT_EQ(counters.bad_events, 4u);
}

TEST_F(ReflectorTest, OtherErrorEventsBackOffAndRewatch) {
  sync();
  respond(
      100, 200,
      R"({"type":"ERROR","object":{"kind":"Status","code":500,"reason":"InternalError","message":"etcd"}})"
      "\n");
  EXPECT_EQ(counters.failures[kFailServer], 1u);
  EXPECT_EQ(counters.relists, 0u);
  EXPECT_NE(r.last_error().find("InternalError"), std::string::npos);
  EXPECT_FALSE(r.due(at(5100).mono_ns));
  EXPECT_TRUE(r.begin(at(7000)).watch);
}

TEST_F(ReflectorTest, BadListsAreRetriedPageByPage) {
  respond(0, 200, page({"a", "b"}, "10", "c1"));
  respond(10, 200, "{\"kind\":\"PodList\",\"items\":[");  // cut short
  EXPECT_EQ(counters.failures[kFailDecode], 1u);
  const HttpRequest req = respond(2000, 200, page({"c"}, "10", ""));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=2&continue=c1");
  EXPECT_TRUE(r.synced());
  EXPECT_EQ(rec.begins, 1);
}

TEST_F(ReflectorTest, ListWithoutResourceVersionIsAFailure) {
  respond(0, 200, R"({"kind":"PodList","metadata":{},"items":[]})");
  EXPECT_FALSE(r.synced());
  EXPECT_EQ(counters.failures[kFailDecode], 1u);
}

TEST_F(ReflectorTest, AHugeListPageHalvesThePageSize) {
  ReflectorOptions o;
  o.page_limit = 500;
  o.max_list_body = 1000;
  r.set_options(o);
  respond(0, 200, page({"a", "b", "c", "d"}, "10", ""), TransferResult::Kind::Ok, -1, 100);
  EXPECT_EQ(r.page_limit(), 250u);
  EXPECT_EQ(counters.failures[kFailDecode], 1u);
  const HttpRequest req = r.begin(at(5000));
  EXPECT_EQ(req.path_and_query, "/api/v1/pods?limit=250");
}

TEST(KubeUrl, Escape) {
  EXPECT_EQ(url_escape("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(url_escape("a b/c?d=e&f+g"), "a%20b%2Fc%3Fd%3De%26f%2Bg");
  EXPECT_EQ(url_escape(""), "");
}

}  // namespace
