// hub_worker.cpp - the hub worker, and the launcher's side of it.
//
// The worker keeps a hub's view of the node databases in step with the
// Kubernetes API (docs/hub.md):
//  - discovery: an ApiClient lists and watches the pods matching
//    ebpf_capture.hub_selector in ebpf_capture.hub_namespace
//    (kube/hub_discovery.h); every change of the targets it derives is
//    applied to hub_nodes and to the node's postgres_fdw objects
//    (_hub_add_node, _hub_move_node, _hub_drop_node), each node in a
//    subtransaction of its own;
//  - probes: every ebpf_capture.hub_probe_interval each node is asked for
//    the newest minute of its rollup (_hub_probe): the hub's queries read
//    the nodes that answered;
//  - the login: the password file is re-read every minute and on SIGHUP,
//    and the user mappings follow it.
// One WaitEventSet: the latch, postmaster death and the API client's fd.
// SIGTERM is PostgreSQL's die (the hub resumes when the server does),
// SIGHUP reloads. hub_stop() clears the table's switch: the worker drops
// every server it made and exits.
//
// The launcher starts the worker while the switch is on (and, after
// hub_stop(), once more to clean up if it was not running), restarts it
// with back-off, and wakes it when the switch changes.
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "kube/api_client.h"
#include "kube/hub_discovery.h"
#include "kube/kube_config.h"
#include "kube/token_file.h"
#include "core/restart_backoff.h"
#include "pg/catalog.h"
#include "pg/guc.h"
#include "pg/hub.h"
#include "pg/kube_settings.h"
#include "pg/bgworker.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/transaction.h"

namespace ebpfc::pg {
namespace {

constexpr long kPollMs = 1000;
// A worker told to stop that is still there after this long gets SIGTERM.
constexpr long kStopGraceMs = 30000;
// pg_try_advisory_lock key of the one hub worker of a database ("ebpfchub").
constexpr int64 kLockKey = 0x6562706663687562ll;

struct NodeRow {
  std::string uid;
  std::string node;
  std::string host;
  int port = 0;
  std::string database;
  std::string state;
};

struct HubWorker {
  kube::DatabasePodSet pods;
  kube::ApiClient* api = nullptr;
  kube::TokenFile password{""};
  std::string schema;  // the extension's, quoted
  std::string login_user;
  std::string login_password;
  bool login_known = false;
  uint64_t applied_generation = UINT64_MAX;
  std::vector<NodeRow> nodes;                // as hub_nodes holds them
  std::map<std::string, uint64_t> probe_at;  // by uid: when to probe next
  uint64_t next_switch_check_ns = 0;
  std::string published;  // the discovery status last written
  bool reconcile_failed = false;
};

HubWorker* g_hub = nullptr;

uint64_t mono_ns() { return kube::Instant::now().mono_ns; }

// "SELECT <schema>.<call>": SQL text made outside transactions is a
// std::string (palloc'd text would pile up in TopMemoryContext).
std::string select(const char* call) { return "SELECT " + g_hub->schema + "." + call; }

// Runs sql with text arguments (nullptr: NULL) inside a transaction with
// SPI connected; the first column of the first row, if any, into *out.
void run_sql(const char* sql, int nargs, const char* const* args, char** out = nullptr) {
  Oid types[12] = {};
  Datum values[12] = {};
  char nulls[12] = {};
  for (int i = 0; i < nargs; i++) {
    types[i] = TEXTOID;
    values[i] = args[i] ? CStringGetTextDatum(args[i]) : Datum(0);
    nulls[i] = args[i] ? ' ' : 'n';
  }
  const int rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
  if (rc < 0) elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(rc));
  if (out != nullptr) {
    *out = nullptr;
    if (SPI_tuptable != nullptr && SPI_processed > 0)
      *out = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
  }
}

// The namespace to watch: the setting, else the pod's own (its service
// account says), else every namespace.
std::string watched_namespace() {
  if (g_hub_namespace != nullptr && g_hub_namespace[0] != '\0') return g_hub_namespace;
  std::ifstream in(std::string(kube::kServiceAccountDir) + "/namespace");
  std::string ns;
  if (in) std::getline(in, ns);
  while (!ns.empty() && (ns.back() == '\n' || ns.back() == '\r' || ns.back() == ' ')) ns.pop_back();
  return ns;
}

std::vector<kube::WatchedResource> watched() {
  return {kube::WatchedResource{
      kube::database_pods_spec(watched_namespace(), g_hub_selector ? g_hub_selector : ""),
      &g_hub->pods, true}};
}

// Whether the switch is on; false also when the extension or the table is
// gone. `nodes`: whether hub_nodes has rows (something to clean up).
bool read_switch(bool* nodes) {
  char error[kErrorLen];
  volatile bool on = false;
  volatile bool any = false;
  const bool ok = in_transaction(
      "ebpf_capture hub: reading the switch",
      [&] {
        const char* schema = extension_schema_quoted();
        if (schema == nullptr) return;
        if (SPI_execute(psprintf("SELECT pg_catalog.to_regclass('%s.hub') IS NOT NULL", schema),
                        true, 1) != SPI_OK_SELECT ||
            SPI_processed != 1)
          return;
        bool isnull = false;
        if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
          return;
        if (SPI_execute(psprintf("SELECT coalesce((SELECT enabled FROM %s.hub), false), "
                                 "EXISTS (SELECT FROM %s.hub_nodes)",
                                 schema, schema),
                        true, 1) != SPI_OK_SELECT ||
            SPI_processed != 1)
          return;
        on = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
        any = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
      },
      error, sizeof(error));
  if (!ok) ereport(LOG, (errmsg("ebpf_capture hub: cannot read the hub table: %s", error)));
  if (nodes != nullptr) *nodes = any;
  return on;
}

// ---------------------------------------------------------------------------
// the worker

void load_nodes() {
  std::vector<NodeRow>& rows = g_hub->nodes;
  rows.clear();
  char error[kErrorLen];
  const std::string sql = "SELECT pod_uid, node, host, port::text, database, state FROM " +
                          g_hub->schema + ".hub_nodes ORDER BY node";
  const bool ok = in_transaction(
      "ebpf_capture hub: reading hub_nodes",
      [&] {
        if (SPI_execute(sql.c_str(), true, 0) != SPI_OK_SELECT)
          elog(ERROR, "cannot read hub_nodes");
        for (uint64 i = 0; i < SPI_processed; i++) {
          char* v[6];
          for (int c = 0; c < 6; c++)
            v[c] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1);
          rows.push_back(NodeRow{v[0] ? v[0] : "", v[1] ? v[1] : "", v[2] ? v[2] : "",
                                 v[3] ? atoi(v[3]) : 0, v[4] ? v[4] : "", v[5] ? v[5] : ""});
        }
      },
      error, sizeof(error));
  if (!ok) ereport(LOG, (errmsg("ebpf_capture hub: %s", error)));
}

// One change to a node, in a subtransaction: a node that cannot be added
// (a bad address, say) does not hold up the others.
void change_node(const char* what, const char* sql, int nargs, const char* const* args) {
  char error[kErrorLen];
  int sqlstate = 0;
  if (!in_subtransaction([&] { run_sql(sql, nargs, args); }, error, sizeof(error), &sqlstate)) {
    g_hub->reconcile_failed = true;
    ereport(LOG, (errmsg("ebpf_capture hub: %s: %s", what, error)));
  }
}

// Makes hub_nodes and the nodes' servers match the targets.
void reconcile() {
  const std::vector<kube::HubTarget> targets = g_hub->pods.targets();
  load_nodes();
  std::map<std::string, const NodeRow*> by_uid;
  for (const NodeRow& r : g_hub->nodes) by_uid[r.uid] = &r;
  std::map<std::string, const kube::HubTarget*> wanted;
  for (const kube::HubTarget& t : targets) wanted[t.uid] = &t;

  // What to do, worked out before the transaction (no C++ object lives
  // across a PostgreSQL call there).
  struct Change {
    const char* what;
    std::string sql;
    std::vector<std::string> args;
  };
  std::vector<Change> changes;
  for (const NodeRow& r : g_hub->nodes) {
    const auto w = wanted.find(r.uid);
    // gone, or its node now has a newer pod (dropped first: a node has one row)
    if (w == wanted.end() || w->second->node != r.node)
      changes.push_back({"forgetting a node", select("_hub_drop_node($1)"), {r.uid}});
  }
  for (const kube::HubTarget& t : targets) {
    const auto r = by_uid.find(t.uid);
    if (r == by_uid.end() || r->second->node != t.node) {
      changes.push_back(
          {"adding a node",
           select("_hub_add_node($1, $2, $3, $4, $5, $6::int, $7, $8, $9)"),
           {t.uid, t.pod_namespace, t.pod_name, t.node, t.host, std::to_string(t.port), t.database,
            g_hub->login_user, g_hub->login_password}});
    } else if (r->second->host != t.host || r->second->port != t.port ||
               r->second->database != t.database) {
      changes.push_back({"moving a node",
                         select("_hub_move_node($1, $2, $3::int, $4)"),
                         {t.uid, t.host, std::to_string(t.port), t.database}});
    }
  }
  if (changes.empty()) {
    g_hub->applied_generation = g_hub->pods.generation();
    return;
  }
  std::vector<const char*> argv;
  for (Change& c : changes) {
    for (const std::string& a : c.args) argv.push_back(a.c_str());
  }
  g_hub->reconcile_failed = false;
  char error[kErrorLen];
  const bool ok = in_transaction(
      "ebpf_capture hub: following the node databases",
      [&] {
        size_t k = 0;
        for (const Change& c : changes) {
          const int n = static_cast<int>(c.args.size());
          change_node(c.what, c.sql.c_str(), n, argv.data() + k);
          k += n;
        }
      },
      error, sizeof(error));
  if (!ok) {
    g_hub->reconcile_failed = true;
    ereport(LOG, (errmsg("ebpf_capture hub: %s", error)));
  }
  for (const kube::HubTarget& t : targets)
    ereport(DEBUG1, (errmsg("ebpf_capture hub: node \"%s\" at %s:%d", t.node.c_str(),
                            t.host.c_str(), t.port)));
  load_nodes();
  // New (or moved) nodes are probed at once.
  std::map<std::string, uint64_t> next;
  for (const NodeRow& r : g_hub->nodes) {
    const auto it = g_hub->probe_at.find(r.uid);
    next[r.uid] = (it == g_hub->probe_at.end() || r.state == "new") ? 0 : it->second;
  }
  g_hub->probe_at.swap(next);
  // A failed change is tried again on the next pass, through the generation.
  g_hub->applied_generation = g_hub->reconcile_failed ? UINT64_MAX : g_hub->pods.generation();
  ereport(LOG, (errmsg("ebpf_capture hub: reading %zu node databases", g_hub->nodes.size())));
}

void probe_due() {
  const uint64_t interval = static_cast<uint64_t>(g_hub_probe_interval_ms) * 1000000ull;
  const std::string sql = select("_hub_probe($1)");
  for (auto& [uid, at] : g_hub->probe_at) {
    const uint64_t now = mono_ns();
    if (at > now) continue;
    CHECK_FOR_INTERRUPTS();
    char error[kErrorLen];
    char state[16] = "";
    const char* args[1] = {uid.c_str()};
    const bool ok = in_transaction(
        "ebpf_capture hub: asking a node",
        [&] {
          char* v = nullptr;
          run_sql(sql.c_str(), 1, args, &v);
          if (v != nullptr) strlcpy(state, v, sizeof(state));
        },
        error, sizeof(error));
    if (!ok) ereport(LOG, (errmsg("ebpf_capture hub: probing a node: %s", error)));
    for (NodeRow& r : g_hub->nodes) {
      if (r.uid != uid || r.state == state) continue;
      if (strcmp(state, "down") == 0)
        ereport(LOG, (errmsg("ebpf_capture hub: node \"%s\" does not answer (hub_status() says "
                             "why)",
                             r.node.c_str())));
      else if (strcmp(state, "up") == 0)
        ereport(LOG, (errmsg("ebpf_capture hub: node \"%s\" answers", r.node.c_str())));
      r.state = state;
    }
    at = mono_ns() + interval;
  }
}

uint64_t next_probe_ns() {
  uint64_t at = UINT64_MAX;
  for (const auto& [uid, t] : g_hub->probe_at) at = t < at ? t : at;
  return at;
}

// The password file changed (or the role): every mapping follows.
void follow_login() {
  std::string error;
  const kube::TokenFile::Result r = g_hub->password.reload(mono_ns(), false, &error);
  if (r == kube::TokenFile::Result::Failed && !g_hub->login_known) {
    ereport(LOG, (errmsg("ebpf_capture hub: %s", error.c_str())));
  }
  const std::string user = g_hub_user ? g_hub_user : "";
  const std::string& password = g_hub->password.token();
  if (g_hub->login_known && user == g_hub->login_user && password == g_hub->login_password) return;
  g_hub->login_user = user;
  g_hub->login_password = password;
  const bool first = !g_hub->login_known;
  g_hub->login_known = true;
  if (first) return;  // the nodes get it as they are added
  char message[kErrorLen];
  const std::string sql = select("_hub_set_login($1, $2)");
  const char* args[2] = {g_hub->login_user.c_str(),
                         g_hub->login_password.empty() ? nullptr : g_hub->login_password.c_str()};
  if (!in_transaction(
          "ebpf_capture hub: a new login", [&] { run_sql(sql.c_str(), 2, args); }, message,
          sizeof(message)))
    ereport(LOG, (errmsg("ebpf_capture hub: cannot change the login: %s", message)));
  else
    ereport(LOG, (errmsg("ebpf_capture hub: the login to the nodes changed")));
  for (auto& [uid, at] : g_hub->probe_at) at = 0;
}

void publish_discovery(bool started) {
  kube::KubeStatus st;
  g_hub->api->status(&st);
  const std::string state = kube::kube_state_name(st.state);
  const std::string err = st.last_error;
  const std::string pods = std::to_string(g_hub->pods.pods());
  const std::string key = state + "\n" + err + "\n" + pods;
  if (!started && key == g_hub->published) return;
  g_hub->published = key;
  char error[kErrorLen];
  const std::string sql = select(started ? "_hub_set_discovery($1, $2, $3::int, now())"
                                         : "_hub_set_discovery($1, $2, $3::int, NULL)");
  const char* args[3] = {state.c_str(), err.empty() ? nullptr : err.c_str(), pods.c_str()};
  if (!in_transaction(
          "ebpf_capture hub: discovery state", [&] { run_sql(sql.c_str(), 3, args); }, error,
          sizeof(error)))
    ereport(LOG, (errmsg("ebpf_capture hub: %s", error)));
}

// hub_stop(): drop everything made for the nodes, then exit.
[[noreturn]] void clean_up_and_exit() {
  char error[kErrorLen];
  char* dropped = nullptr;
  const std::string sql = select("_hub_drop_unknown(true)");
  if (!in_transaction(
          "ebpf_capture hub: stopping", [&] { run_sql(sql.c_str(), 0, nullptr, &dropped); }, error,
          sizeof(error)))
    ereport(LOG, (errmsg("ebpf_capture hub: cleaning up: %s", error)));
  ereport(LOG, (errmsg("ebpf_capture hub stopped (hub_stop())")));
  proc_exit(0);
}

bool serve_api(bool ready, char* error, size_t size) {
  try {
    const kube::Instant now = kube::Instant::now();
    if (ready) g_hub->api->run(now);
    g_hub->api->tick(now);
    return true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), size);
    return false;
  }
}

bool reconfigure(char* error, size_t size) {
  try {
    g_hub->pods.set_default_database(g_hub_database ? g_hub_database : "postgres");
    const kube::KubeConfig config = kube_config();
    if (config.api_url != g_hub->api->config().api_url ||
        config.enabled != g_hub->api->config().enabled ||
        config.token_file != g_hub->api->config().token_file ||
        config.ca_file != g_hub->api->config().ca_file) {
      g_hub->pods.clear();
      g_hub->api->reconfigure(config);
    }
    std::vector<kube::WatchedResource> w = watched();
    if (w[0].spec.path != g_hub->api->reflector(0)->spec().path ||
        w[0].spec.query != g_hub->api->reflector(0)->spec().query) {
      g_hub->pods.clear();
      g_hub->api->set_resources(std::move(w));
    }
    g_hub->password = kube::TokenFile(g_hub_password_file ? g_hub_password_file : "");
    return true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), size);
    return false;
  }
}

void run() {
  char error[kErrorLen];
  bool ok = true;
  try {
    g_hub->pods.set_default_database(g_hub_database ? g_hub_database : "postgres");
    g_hub->password = kube::TokenFile(g_hub_password_file ? g_hub_password_file : "");
    kube::ApiClientOptions options;
    options.user_agent = "ebpf_capture hub";
    g_hub->api = new kube::ApiClient(kube_config(), options, watched());
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), sizeof(error));
    ok = false;
  }
  if (!ok) ereport(FATAL, (errmsg("ebpf_capture hub: %s", error)));
  follow_login();

  // Servers of nodes hub_nodes does not know (a crash between the two) go.
  char* dropped = nullptr;
  const std::string sql = select("_hub_drop_unknown(false)");
  if (!in_transaction(
          "ebpf_capture hub: starting", [&] { run_sql(sql.c_str(), 0, nullptr, &dropped); }, error,
          sizeof(error)))
    ereport(LOG, (errmsg("ebpf_capture hub: %s", error)));
  load_nodes();
  for (const NodeRow& r : g_hub->nodes) g_hub->probe_at[r.uid] = 0;
  publish_discovery(true);

  WaitEventSet* wes = CreateWaitEventSet(TopMemoryContext, 3);
  AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
  AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
  const int api_fd = g_hub->api->fd();
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, api_fd, nullptr, nullptr);
  ereport(LOG, (errmsg("ebpf_capture hub started: %zu node databases known", g_hub->nodes.size())));

  for (;;) {
    const uint64_t now = mono_ns();
    uint64_t deadline = now + static_cast<uint64_t>(kPollMs) * 1000000ull;
    const uint64_t probe = next_probe_ns();
    if (probe < deadline) deadline = probe;
    const long timeout = deadline <= now ? 0 : static_cast<long>((deadline - now) / 1000000) + 1;
    WaitEvent events[3];
    const int n = WaitEventSetWait(wes, timeout, events, 3, PG_WAIT_EXTENSION);
    bool api_ready = false;
    for (int i = 0; i < n; i++) {
      if (events[i].events & WL_LATCH_SET) {
        ResetLatch(MyLatch);
        g_hub->next_switch_check_ns = 0;  // woken: hub_stop() may have run
      }
      if ((events[i].events & WL_SOCKET_READABLE) && events[i].fd == api_fd) api_ready = true;
    }
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
      if (!reconfigure(error, sizeof(error)))
        ereport(FATAL, (errmsg("ebpf_capture hub: applying the new settings: %s", error)));
    }
    if (mono_ns() >= g_hub->next_switch_check_ns) {
      if (!read_switch(nullptr)) clean_up_and_exit();
      g_hub->next_switch_check_ns = mono_ns() + static_cast<uint64_t>(kPollMs) * 1000000ull;
    }
    if (!serve_api(api_ready, error, sizeof(error)))
      ereport(FATAL, (errmsg("ebpf_capture hub: discovery: %s", error)));
    follow_login();
    // Until the first list has come back, what the hub has is kept.
    if (g_hub->pods.synced() && g_hub->pods.generation() != g_hub->applied_generation) reconcile();
    probe_due();
    publish_discovery(false);
  }
}

// ---------------------------------------------------------------------------
// the launcher's side

struct Control {
  BackgroundWorkerHandle* handle = nullptr;
  TimestampTz started_at = 0;
  TimestampTz retry_at = 0;
  TimestampTz stop_asked_at = 0;
  long backoff_ms = 0;
  bool was_on = false;
};
Control g_control;

bool start_worker() {
  return start_dynamic_worker("ebpf_capture_hub_main", "ebpf_capture hub", "ebpf_capture hub",
                              Datum(0), &g_control.handle);
}

}  // namespace

void hub_launcher_tick() {
  bool nodes = false;
  const bool on = read_switch(&nodes);
  const TimestampTz now = GetCurrentTimestamp();
  Control& c = g_control;
  pid_t pid = 0;
  if (c.handle != nullptr && GetBackgroundWorkerPid(c.handle, &pid) == BGWH_STOPPED) {
    pfree(c.handle);
    c.handle = nullptr;
    pid = 0;
    c.backoff_ms = RestartBackoff::after_exit(
        c.backoff_ms, TimestampDifferenceExceeds(c.started_at, now, RestartBackoff::kHealthyMs));
    c.retry_at = TimestampTzPlusMilliseconds(now, c.backoff_ms);
  }
  if (on != c.was_on) {
    // hub_start() or hub_stop(): at once, and a running worker hears of it
    c.retry_at = 0;
    c.backoff_ms = 0;
    c.stop_asked_at = on ? 0 : now;
    if (pid != 0) wake_process(pid);
    c.was_on = on;
  }
  // On, or off with nodes left to forget (hub_stop() while no worker ran).
  const bool wanted = on || nodes;
  if (wanted && c.handle == nullptr && now >= c.retry_at) {
    if (start_worker()) {
      c.started_at = now;
    } else {
      c.handle = nullptr;
      ereport(LOG, (errmsg("ebpf_capture: no background worker slot for the hub (raise "
                           "max_worker_processes)")));
      c.retry_at = TimestampTzPlusMilliseconds(now, RestartBackoff::kNoSlotMs);
    }
  } else if (!on && c.handle != nullptr && c.stop_asked_at != 0 &&
             TimestampDifferenceExceeds(c.stop_asked_at, now, kStopGraceMs)) {
    TerminateBackgroundWorker(c.handle);
    c.stop_asked_at = 0;
  }
}

}  // namespace ebpfc::pg

using namespace ebpfc::pg;

EBPFC_BGWORKER_MAIN(ebpf_capture_hub_main) {
  (void)arg;
  pqsignal(SIGTERM, die);
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  BackgroundWorkerUnblockSignals();
  BackgroundWorkerInitializeConnection(g_database, nullptr, 0);
  pgstat_report_appname("ebpf_capture hub");
  SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

  g_hub = new HubWorker();  // bad_alloc: FATAL (EBPFC_BGWORKER_MAIN)
  char error[kErrorLen];
  volatile bool locked = false;
  char schema[NAMEDATALEN * 2 + 3] = "";
  const bool ok = in_transaction(
      "ebpf_capture hub: starting",
      [&] {
        const char* s = extension_schema_quoted();
        if (s != nullptr) strlcpy(schema, s, sizeof(schema));
        // One hub worker per database: a launcher that restarted alone may
        // start a second one while the first still runs.
        if (SPI_execute(psprintf("SELECT pg_catalog.pg_try_advisory_lock(%lld)",
                                 static_cast<long long>(kLockKey)),
                        false, 1) == SPI_OK_SELECT &&
            SPI_processed == 1) {
          bool isnull = false;
          locked =
              DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
        }
      },
      error, sizeof(error));
  if (!ok) ereport(FATAL, (errmsg("ebpf_capture hub: %s", error)));
  if (!locked) {
    ereport(LOG, (errmsg("ebpf_capture hub: another hub worker runs in this database")));
    proc_exit(0);
  }
  if (schema[0] == '\0') {
    ereport(LOG, (errmsg("ebpf_capture hub: the extension is not installed")));
    proc_exit(0);
  }
  g_hub->schema = schema;
  if (!read_switch(nullptr)) clean_up_and_exit();
  run();
}
