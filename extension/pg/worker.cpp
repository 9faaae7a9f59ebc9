// worker.cpp - the capture worker: one background worker per interface.
//
// One WaitEventSet drives it: the process latch, postmaster death and the
// ring buffer's epoll fd. Each wake-up drains the ring buffer (closed
// connections), sweeps the flows map when due (idle connections, lost
// events), and inserts the finished spans in a batch when the batch is big
// or old enough; every open_connections_interval one sweep also lists the
// open connections, which then replace the capture's rows of open_connections.
// SIGTERM is PostgreSQL's `die`, SIGHUP reloads the configuration, and
// CHECK_FOR_INTERRUPTS runs on every iteration.
//
// The C++ state lives on the heap behind `g_worker`, so the loop's own frame
// holds nothing a longjmp or a FATAL exit could skip a destructor of.
#include <sched.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "capture/packet_capture.h"
#include "core/chunk_resolve.h"
#include "core/fault.h"
#include "core/flow_span.h"
#include "core/http_tracker.h"
#include "core/pg_wire.h"
#include "core/redis_wire.h"
#include "core/span_batch.h"
#include "kube/kube_client.h"
#include "kube/kube_config.h"
#include "kube/pod_cache.h"
#include "pg/guc.h"
#include "pg/otlp_export.h"
#include "pg/kube_settings.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/slot_links.h"
#include "pg/span_store.h"
#include "pg/transaction.h"

namespace ebpfc::pg {
namespace {

// How often the flows map is walked for idle connections and lost events,
// and the counters in shared memory are refreshed.
constexpr uint64_t kSweepIntervalNs = 250ull * 1000 * 1000;
// The kernel wakes us only when a sixteenth of the ring buffer is waiting (see
// wakeup_bytes in capture.bpf.c); otherwise the ring buffer is drained this
// often while connections are closing, and at every sweep when none are.
constexpr uint64_t kDrainIntervalNs = 20ull * 1000 * 1000;
// A closed flow still in the map after this long lost its ring-buffer event.
constexpr uint64_t kCloseGraceNs = 1000ull * 1000 * 1000;

struct Worker {
  int slot = -1;
  char interface[IFNAMSIZ] = {};
  PacketCapture* capture = nullptr;
  HttpTracker* http = nullptr;
  PgTracker* pg = nullptr;
  RedisTracker* redis = nullptr;
  kube::PodCache* pods = nullptr;            // who is behind an address, from the Kubernetes API
  kube::KubeClient* kube = nullptr;          // feeds `pods`; driven by its fd in the wait set
  PodPeerKeys* peer_keys = nullptr;          // pods as peers of the trace parent rules
  OtlpExport* otlp = nullptr;                // the OTLP exporter; driven by its fd in the wait set
  std::vector<kube::PodRecord> pod_changes;  // to mirror into the pods table, until written
  SpanBatch batch{static_cast<size_t>(g_max_pending_memory_kb) * 1024};
  ResolvedChunk resolved;  // the chunk being written, or the open connections, named
  SpanStore store;
  uint64_t spans_written = 0;
  uint64_t port_resyncs = 0;          // last count logged
  uint64_t links_generation = ~0ull;  // of the links last published in the slot
  uint64_t next_sweep_ns = 0;
  uint64_t next_open_report_ns = 0;
  bool open_report_due = false;    // a sweep listed the open connections: write them
  bool open_rows = false;          // open_connections may hold rows of this capture
  size_t last_drained = 0;         // flows the last drain reported
  bool swept = false;              // a sweep ran since the counters were published
  bool paused = false;             // spans are dropped: the data directory is short of space
  uint64_t dropped_at_pause = 0;   // batch.dropped() when the pause began
  uint64_t next_merge_ns = 0;      // when staged rollup rows are merged next
  uint64_t next_publish_ns = 0;    // when a long flush publishes the counters next
  bool lock_logged = false;        // a busy lock was logged (once per episode)
  uint64_t refused_logged_ns = 0;  // when a refused chunk was last logged
  uint64_t refused_unlogged = 0;   // chunks refused since
};

Worker* g_worker = nullptr;

CaptureSlot* my_slot() { return &shared()->slots[g_worker->slot]; }

void set_state(SlotState state) {
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  my_slot()->state = state;
  if (state == SlotState::Running) my_slot()->started_at = GetCurrentTimestamp();
  SpinLockRelease(&sh->mutex);
}

bool stop_requested() {
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  bool stop = my_slot()->stop_requested;
  SpinLockRelease(&sh->mutex);
  return stop;
}

// Marks the capture failed with `message` and ends the worker with FATAL
// (the launcher retries with back-off).
[[noreturn]] void fail_and_exit(const char* message) {
  set_slot_error(g_worker->slot, message);
  set_state(SlotState::Failed);
  ereport(FATAL,
          (errmsg("ebpf_capture: capture on \"%s\" failed: %s", g_worker->interface, message)));
  pg_unreachable();
}

// Runs f, which may throw (only C++ runs in it); a C++ exception ends the
// worker with FATAL and the exception's message.
template <class F>
void or_fail(const char* what, F&& f) {
  char error[kErrorLen];
  error[0] = '\0';
  try {
    f();
    return;
  } catch (const std::bad_alloc&) {
    snprintf(error, sizeof(error), "%s: out of memory", what);
  } catch (const std::exception& e) {
    snprintf(error, sizeof(error), "%s: %s", what, e.what());
  }
  fail_and_exit(error);
}

void publish_counters() {
  CaptureSlot* s = my_slot();
  CaptureCounters c{};
  try {
    c = g_worker->capture->counters();
  } catch (const std::exception&) {
    return;
  }
  auto set = [s](SlotCounter k, uint64_t v) { pg_atomic_write_u64(&s->counters[k], v); };
  set(kPackets, c.filter.frames);
  set(kBytes, c.filter.frame_bytes);
  set(kEventsDropped, c.filter.events_dropped);
  set(kKernelDrops, c.socket_drops);
  set(kPorts, c.ports);
  set(kPortErrors, c.port_failures);
  if (g_worker->capture->links_generation() != g_worker->links_generation) {
    g_worker->links_generation = g_worker->capture->links_generation();
    try {
      publish_slot_links(g_worker->slot, g_worker->capture->links());
    } catch (const std::exception&) {
      g_worker->links_generation = ~0ull;  // out of memory: next time
    }
  }
  if (c.port_resyncs > g_worker->port_resyncs) {
    g_worker->port_resyncs = c.port_resyncs;
    ereport(LOG, (errmsg("ebpf_capture: link notifications on \"%s\" were lost; listed the "
                         "ports again (%llu times so far)",
                         g_worker->interface, static_cast<unsigned long long>(c.port_resyncs))));
  }
  // a SYN its source had no share left for is a new connection not tracked
  set(kFlowTableFull, c.filter.flow_table_full + c.filter.source_capped);
  set(kFlowsTracked, g_worker->capture->flows_tracked());
  set(kSpansWritten, g_worker->spans_written);
  set(kSpansDropped, g_worker->batch.dropped());
  set(kPayloadDropped, c.filter.payload_dropped);
  g_worker->otlp->publish();
  if (g_worker->kube != nullptr) {
    kube::KubeStatus k;
    g_worker->kube->status(&k);
    set(kPodsKnown, k.pods_known);
    SharedState* sh = shared();
    SpinLockAcquire(&sh->mutex);
    strlcpy(s->metadata_state, kube::kube_state_name(k.state), sizeof(s->metadata_state));
    strlcpy(s->metadata_error, k.last_error, sizeof(s->metadata_error));
    SpinLockRelease(&sh->mutex);
  }
  if (g_worker->http != nullptr) {
    const HttpTrackerCounters h = g_worker->http->counters();
    set(kHttpConnections, g_worker->http->open_connections());
    set(kHttpBoundHits, h.pool_full + h.parser.header_bound + h.parser.queue_bound +
                            h.parser.string_bound + h.parser.reorder_full +
                            g_worker->batch.heads_shed());
    set(kNotHttpConnections, c.filter.l7_not_http + h.not_http);
  }
  set(kPgConnections, c.filter.l7_pgsql);
  if (g_worker->pg != nullptr) {
    const PgCounters& p = g_worker->pg->counters();
    set(kPgSpans, p.spans);
    set(kPgEncrypted, p.tls_sessions);
    set(kPgMidStream, p.mid_stream);
    set(kPgResyncs, p.resyncs);
    set(kPgLost, p.lost_requests + p.bad_messages + p.pool_full + p.pending_bound);
  }
  set(kRedisConnections, c.filter.l7_redis);
  if (g_worker->redis != nullptr) {
    const RedisCounters& r = g_worker->redis->counters();
    set(kRedisSpans, r.spans);
    set(kRedisMidStream, r.mid_stream);
    set(kRedisResyncs, r.resyncs);
    set(kRedisPushMode, r.pubsub);
    set(kRedisLost, r.lost_requests + r.bad_values + r.pool_full + r.pending_bound);
  }
}

// Whether spans must not be written now: the launcher says the data
// directory's file system is short of space and nothing is left to drop, or
// (should the launcher be busy) free space has fallen below half of
// ebpf_capture.min_free_disk.
bool disk_says_pause() {
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  const bool launcher_says = sh->storage.writes_paused;
  SpinLockRelease(&sh->mutex);
  if (launcher_says) return true;
  struct statvfs fs;
  if (statvfs(".", &fs) != 0) return false;
  const unsigned long long free_bytes = static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize;
  const unsigned long long total = static_cast<unsigned long long>(fs.f_blocks) * fs.f_frsize;
  const unsigned long long threshold = min_free_disk_bytes(total);
  return threshold > 0 && free_bytes < threshold / 2;
}

// Follows the disk guard: pauses or resumes writing, says so once each way.
void follow_disk_guard() {
  const bool pause = disk_says_pause();
  if (pause == g_worker->paused) return;
  g_worker->paused = pause;
  if (pause) {
    g_worker->dropped_at_pause = g_worker->batch.dropped();
    set_state(SlotState::Paused);
    set_slot_error(g_worker->slot,
                   "the data directory's file system is short of space "
                   "(ebpf_capture.min_free_disk): spans are dropped until it has room again");
    ereport(LOG, (errmsg("ebpf_capture: capture on \"%s\" stops writing spans: the data "
                         "directory's file system is short of space",
                         g_worker->interface)));
  } else {
    set_state(SlotState::Running);
    set_slot_error(g_worker->slot, "");
    ereport(LOG, (errmsg("ebpf_capture: capture on \"%s\" writes spans again (%llu dropped "
                         "while the disk was short of space)",
                         g_worker->interface,
                         static_cast<unsigned long long>(g_worker->batch.dropped() -
                                                         g_worker->dropped_at_pause))));
  }
}

// Reads the ring buffer between two insert transactions of one flush: a
// flush of many spans takes long enough for a busy kernel to fill the ring
// buffer (each lost payload head is a lost or incomplete HTTP exchange).
void drain_while_flushing() {
  try {
    g_worker->capture->drain(g_worker->batch);
    const uint64_t now = WallClock::monotonic_ns();
    g_worker->batch.end_of_drain(now);
    // A long flush (a worker short of CPU) still shows its counters moving.
    if (now >= g_worker->next_publish_ns) {
      publish_counters();
      g_worker->next_publish_ns = now + kSweepIntervalNs;
    }
  } catch (const std::exception&) {
    // the next collect() reports it
  }
}

// Staged rollup rows (written while the rollup table was held) are merged
// in at most this often.
constexpr uint64_t kMergeIntervalNs = 1000ull * 1000 * 1000;
// A chunk the table refuses is logged at most this often.
constexpr uint64_t kRefusedLogNs = 60ull * 1000 * 1000 * 1000;

// Writes the spans of a flush in transactions of at most batch_size rows
// (tcp and http rows together), the pod changes the Kubernetes cache has seen
// with the first. A chunk a lock held up stays, with the rest, for the next
// flush; a chunk the table refuses is dropped and counted (retrying it would
// stall every span behind it). Spans that arrive meanwhile (the ring buffer
// is drained between transactions unless `final`) wait for the next flush;
// a final flush writes them too.
void flush(bool final = false) {
  SpanBatch& b = g_worker->batch;
  if (g_worker->paused) {
    b.drop_waiting();
    return;
  }
  const size_t limit = static_cast<size_t>(g_batch_size);
  if (g_worker->pods != nullptr && g_worker->pod_changes.empty()) {
    or_fail("taking the pod changes", [&] {
      fault::at("flush");
      g_worker->pods->take_changes(g_worker->pod_changes, limit);
    });
  }
  bool pods_due = !g_worker->pod_changes.empty();
  b.begin_flush();
  for (;;) {
    const SpanBatch::Chunk chunk = b.next_chunk(limit);
    if (chunk.size() == 0 && !pods_due) {
      if (!final || b.waiting() == 0) break;
      b.end_flush();
      b.begin_flush();  // a final flush takes what arrived meanwhile too
      continue;
    }
    or_fail("naming the spans", [&] { g_worker->resolved.resolve(chunk, g_worker->pods); });
    g_worker->otlp->encode(chunk, g_worker->resolved);
    SpanStore::Outcome out;
    g_worker->store.write(
        chunk, g_worker->resolved, pods_due ? g_worker->pod_changes.data() : nullptr,
        pods_due ? g_worker->pod_changes.size() : 0, g_worker->interface, &out, g_worker->otlp);
    g_worker->otlp->chunk_done(out.spans_written);
    pods_due = false;  // once per flush; kept for the next one if not written
    if (out.spans_written) {
      b.chunk_done(chunk);
      g_worker->spans_written += chunk.size();
      if (out.pods_written) g_worker->pod_changes.clear();
      g_worker->lock_logged = false;
      g_worker->refused_logged_ns = 0;  // the next refusal starts a new episode: logged
    } else if (out.retry && !final) {
      // A lock was not granted in time: this chunk and the rest go first
      // next time. Logged once until a chunk goes in again.
      if (!g_worker->lock_logged)
        ereport(LOG, (errmsg("ebpf_capture: %zu spans from \"%s\" wait: %s", b.left_over(),
                             g_worker->interface, out.error)));
      g_worker->lock_logged = true;
      break;
    } else {
      b.chunk_done(chunk, true);
      set_slot_error(g_worker->slot, out.error);
      // Logged at most once a minute: a table that keeps refusing (dropped,
      // a constraint every span violates) must not flood the log.
      const uint64_t now = WallClock::monotonic_ns();
      if (g_worker->refused_logged_ns == 0 || now - g_worker->refused_logged_ns >= kRefusedLogNs) {
        ereport(WARNING,
                (errmsg("ebpf_capture: could not insert %zu spans from \"%s\": %s", chunk.size(),
                        g_worker->interface, out.error),
                 g_worker->refused_unlogged > 0
                     ? errdetail("%llu more batches were refused since the last such message.",
                                 static_cast<unsigned long long>(g_worker->refused_unlogged))
                     : 0));
        g_worker->refused_logged_ns = now;
        g_worker->refused_unlogged = 0;
      } else {
        g_worker->refused_unlogged++;
      }
    }
    if (out.spans_written && out.error[0] != '\0') {
      // pods or the rollup were held: written later (logged at DEBUG1, as
      // this happens whenever a user refreshes the map)
      ereport(DEBUG1, (errmsg("ebpf_capture: %s", out.error)));
    }
    if (!final && b.left_over() > 0) drain_while_flushing();
  }
  b.end_flush();
  const uint64_t now = WallClock::monotonic_ns();
  if (g_worker->store.has_staged() && (final || now >= g_worker->next_merge_ns)) {
    char error[kErrorLen];
    if (!g_worker->store.merge_staged(error, sizeof(error)))
      ereport(DEBUG1, (errmsg("ebpf_capture: staged rollup rows wait: %s", error)));
    g_worker->next_merge_ns = now + kMergeIntervalNs;
  }
}

bool flush_due(uint64_t now) {
  const SpanBatch& b = g_worker->batch;
  if (b.left_over() > 0 || g_worker->store.has_staged()) return true;
  if (b.waiting() == 0)
    return !g_worker->pod_changes.empty() ||
           (g_worker->pods != nullptr && g_worker->pods->pending_changes() > 0);
  return b.waiting() >= static_cast<size_t>(g_batch_size) ||
         now - b.oldest_ns() >= static_cast<uint64_t>(g_flush_interval_ms) * 1000000ull;
}

// Drains the ring buffer and, when due or final, sweeps the flows map.
// Returns false with the message in `error` if the kernel side failed.
bool collect(bool final_sweep, char* error, size_t error_size) {
  try {
    g_worker->batch.clock().refresh();
    g_worker->last_drained = g_worker->capture->drain(g_worker->batch);
    const uint64_t now = WallClock::monotonic_ns();
    g_worker->batch.end_of_drain(now);
    if (final_sweep || now >= g_worker->next_sweep_ns) {
      SweepPolicy policy{static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull, kCloseGraceNs,
                         final_sweep};
      policy.report_open = !final_sweep && g_open_connections_interval_ms > 0 &&
                           now >= g_worker->next_open_report_ns;
      if (policy.report_open) g_worker->batch.open_spans().clear();
      g_worker->capture->sweep(policy, g_worker->batch);
      if (policy.report_open) {
        g_worker->open_report_due = true;
        g_worker->next_open_report_ns =
            now + static_cast<uint64_t>(g_open_connections_interval_ms) * 1000000ull;
      }
      g_worker->batch.end_of_drain(now);
      if (final_sweep) g_worker->batch.close_all();
      g_worker->next_sweep_ns = now + kSweepIntervalNs;
      g_worker->swept = true;
    }
    return true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), error_size);
    return false;
  }
}

// Replaces the capture's rows of open_connections with the connections the
// last sweep listed, or with none. A failure is logged and leaves the rows
// as they were; the next report tries again.
void write_open_connections(bool none) {
  std::vector<Span>& open = g_worker->batch.open_spans();
  if (none) open.clear();
  char error[kErrorLen];
  or_fail("naming the open connections",
          [&] { g_worker->resolved.resolve_open(open.data(), open.size(), g_worker->pods); });
  if (g_worker->store.replace_open(open.data(), open.size(), g_worker->resolved,
                                   g_worker->interface, error, sizeof(error))) {
    g_worker->open_rows = !open.empty();
  } else {
    set_slot_error(g_worker->slot, error);
    ereport(WARNING, (errmsg("ebpf_capture: could not write the open connections of \"%s\": %s",
                             g_worker->interface, error)));
  }
  open.clear();
  g_worker->open_report_due = false;
}

// The capture is ending (capture_stop or shutdown): report every flow still
// in the kernel, insert everything, with interrupts held so the final insert
// is not cut short by the pending SIGTERM. Its open connections are spans
// now: its rows of open_connections go.
void finish() {
  char error[kErrorLen];
  HOLD_INTERRUPTS();
  if (!collect(true, error, sizeof(error))) set_slot_error(g_worker->slot, error);
  flush(true);
  write_open_connections(true);
  publish_counters();
  RESUME_INTERRUPTS();
}

// The worker's own session settings. Its search_path: PostgreSQL's catalog
// first, then the extension's schema (for triggers a user puts on spans),
// nothing else. Every statement the worker prepares names the schema of
// every function it calls, so nothing a database owner creates can stand in
// for a built-in function in them; pg_catalog first keeps types and
// operators of the same signature the built-in ones. Commits are
// asynchronous unless ebpf_capture.synchronous_commit asks otherwise.
void apply_session_settings() {
  const char* schema = g_worker->store.schema();
  if (schema != nullptr)
    SetConfigOption("search_path", psprintf("pg_catalog, %s, pg_temp", schema), PGC_SUSET,
                    PGC_S_SESSION);
  else
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
  const char* commit =
      g_synchronous_commit ? GetConfigOptionResetString("synchronous_commit") : "off";
  SetConfigOption("synchronous_commit", commit, PGC_SUSET, PGC_S_SESSION);
}

PgTrackerOptions pg_options() {
  PgTrackerOptions o;
  o.max_connections = static_cast<size_t>(g_max_postgresql_connections);
  o.raw_text = g_postgresql_raw_queries;
  o.expire_after_ns = static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull + kCloseGraceNs;
  return o;
}

RedisTrackerOptions redis_options() {
  RedisTrackerOptions o;
  o.max_connections = static_cast<size_t>(g_max_redis_connections);
  o.key_names = g_redis_key_names;
  o.expire_after_ns = static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull + kCloseGraceNs;
  return o;
}

HttpTrackerOptions http_options() {
  HttpTrackerOptions o;
  o.max_connections =
      HttpTracker::connections_within(static_cast<size_t>(g_max_http_memory_kb) * 1024);
  o.query = static_cast<HttpQueryMode>(g_http_query);
  // An HTTP connection whose close we never see (its flow was reported idle,
  // or events were lost) is given up after the idle timeout, and a bit.
  o.expire_after_ns = static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull + kCloseGraceNs;
  o.trace = trace_links_options();
  return o;
}

// Lets the Kubernetes client read its sockets and run its timers. Only
// std::bad_alloc can come out of it.
bool serve_kube(char* error, size_t error_size) {
  try {
    g_worker->kube->on_ready(kube::Instant::now());
    return true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), error_size);
    return false;
  }
}

bool reconfigure_kube(char* error, size_t error_size) {
  try {
    g_worker->kube->reconfigure(kube_config());
    return true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), error_size);
    return false;
  }
}

long wait_timeout_ms(uint64_t now) {
  uint64_t deadline = g_worker->next_sweep_ns;
  if (g_worker->last_drained > 0 && now + kDrainIntervalNs < deadline)
    deadline = now + kDrainIntervalNs;
  const SpanBatch& b = g_worker->batch;
  if (b.waiting() > 0) {
    uint64_t flush_at = b.oldest_ns() + static_cast<uint64_t>(g_flush_interval_ms) * 1000000ull;
    if (flush_at < deadline) deadline = flush_at;
  }
  if (deadline <= now) return 0;
  return static_cast<long>((deadline - now) / 1000000ull) + 1;
}

// The version of the extension's SQL objects in this database ("" if it is
// not installed), into `version`.
void installed_version(char* version, size_t size) {
  char error[kErrorLen];
  version[0] = '\0';
  in_transaction(
      "ebpf_capture: reading the extension's version",
      [&] {
        if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
                        "WHERE extname = 'ebpf_capture'",
                        true, 1) == SPI_OK_SELECT &&
            SPI_processed == 1) {
          const char* v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
          if (v != nullptr) strlcpy(version, v, size);
        }
      },
      error, sizeof(error));
}

// A library newer than the extension's SQL objects (a new image, before its
// ALTER EXTENSION ebpf_capture UPDATE has run) waits for the update, saying
// so, rather than fail and be restarted: the capture starts the moment the
// objects are there.
void wait_for_schema() {
  bool said = false;
  for (;;) {
    char version[NAMEDATALEN];
    installed_version(version, sizeof(version));
    if (strcmp(version, "0.1") != 0) break;  // current, or not installed (prepare says so)
    if (!said) {
      char message[kErrorLen];
      snprintf(message, sizeof(message),
               "the extension's SQL objects are at version %s, older than the library: waiting "
               "for ALTER EXTENSION ebpf_capture UPDATE",
               version);
      set_slot_error(g_worker->slot, message);
      ereport(LOG, (errmsg("ebpf_capture: capture on \"%s\": %s", g_worker->interface, message)));
      said = true;
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    if (stop_requested()) {
      set_state(SlotState::Stopped);
      proc_exit(0);
    }
  }
  if (said) set_slot_error(g_worker->slot, "");
}

void run() {
  char error[kErrorLen];
  bool opened = false;
  wait_for_schema();
  try {
    fault::at("worker_start");
    CaptureOptions options;
    options.interface = g_worker->interface;
    options.bridge_ports = g_bridge_ports;
    options.promiscuous = g_promiscuous;
    options.flow_table_size = static_cast<uint32_t>(g_flow_table_size);
    options.max_half_open_per_source = max_half_open_share(options.flow_table_size);
    options.half_open_window_ns = static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull;
    options.ring_buffer_bytes = static_cast<uint32_t>(g_ring_buffer_kb) * 1024u;
    options.http = g_http;
    options.pgsql = g_postgresql;
    options.redis = g_redis;
    g_worker->capture = new PacketCapture(options);
    if (g_http) {
      g_worker->http = new HttpTracker(http_options(), *g_worker->capture);
      g_worker->batch.set_http(g_worker->http);
    }
    if (g_postgresql) {
      g_worker->pg = new PgTracker(pg_options(), *g_worker->capture);
      g_worker->batch.set_pg(g_worker->pg);
    }
    if (g_redis) {
      g_worker->redis = new RedisTracker(redis_options(), *g_worker->capture);
      g_worker->batch.set_redis(g_worker->redis);
    }
    // One client for the worker's life, even when no API is configured (it
    // then idles and says why in capture_status).
    g_worker->pods = new kube::PodCache();
    g_worker->kube = new kube::KubeClient(kube_config(), *g_worker->pods);
    g_worker->peer_keys = new PodPeerKeys(*g_worker->pods);
    g_worker->otlp = new OtlpExport(g_worker->slot, g_worker->interface);
    if (g_worker->http != nullptr) g_worker->http->set_peer_keys(g_worker->peer_keys);
    opened = true;
  } catch (const std::bad_alloc&) {
    strlcpy(error, "out of memory", sizeof(error));
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), sizeof(error));
  }
  if (!opened) fail_and_exit(error);

  try {
    g_worker->store.prepare();
    g_worker->otlp->prepare(g_worker->store.schema());
    g_worker->otlp->configure();
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), sizeof(error));
    opened = false;
  }
  if (!opened) fail_and_exit(error);
  apply_session_settings();  // now with the extension's schema

  // Rows a worker of this interface left behind when it ended without its
  // final report (it failed, or was killed; a crash of the server empties
  // the unlogged table anyway).
  write_open_connections(true);

  WaitEventSet* wes = CreateWaitEventSet(TopMemoryContext, 5);
  AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
  AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, g_worker->capture->event_fd(), nullptr, nullptr);
  const int kube_fd = g_worker->kube->fd();
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, kube_fd, nullptr, nullptr);
  const int otlp_fd = g_worker->otlp->fd();
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, otlp_fd, nullptr, nullptr);

  publish_counters();  // capture_status shows the metadata state from the start
  set_state(SlotState::Running);
  if (g_worker->capture->at_bridge_ports() || g_worker->capture->routed()) {
    const unsigned ports = g_worker->capture->counters().ports;
    const CaptureLinks links = g_worker->capture->links();
    if (!links.why.empty())
      ereport(LOG,
              (errmsg("ebpf_capture: \"%s\" found %s", g_worker->interface, links.why.c_str())));
    if (g_worker->capture->routed())
      ereport(LOG, (errmsg("ebpf_capture: capturing on \"%s\" at %u routed pod interfaces "
                           "matching \"%s\"",
                           g_worker->interface, ports, links.target.c_str())));
    else
      ereport(LOG, (errmsg("ebpf_capture: capturing on bridge \"%s\" at its %u ports",
                           links.target.c_str(), ports)));
  } else {
    ereport(LOG, (errmsg("ebpf_capture: capturing on \"%s\"%s", g_worker->interface,
                         g_promiscuous ? " (promiscuous)" : "")));
  }
  g_worker->next_sweep_ns = WallClock::monotonic_ns() + kSweepIntervalNs;

  for (;;) {
    WaitEvent events[5];
    int n = WaitEventSetWait(wes, wait_timeout_ms(WallClock::monotonic_ns()), events, 5,
                             PG_WAIT_EXTENSION);
    bool kube_ready = false, otlp_ready = false;
    for (int i = 0; i < n; i++) {
      if (events[i].events & WL_LATCH_SET) ResetLatch(MyLatch);
      if ((events[i].events & WL_SOCKET_READABLE) && events[i].fd == kube_fd) kube_ready = true;
      if ((events[i].events & WL_SOCKET_READABLE) && events[i].fd == otlp_fd) otlp_ready = true;
    }

    if (ProcDiePending || stop_requested()) {
      finish();
      if (stop_requested()) {
        set_state(SlotState::Stopped);
        ereport(LOG, (errmsg("ebpf_capture: capture on \"%s\" stopped", g_worker->interface)));
        proc_exit(0);
      }
    }
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
      apply_session_settings();
      or_fail("applying the new settings", [&] {
        fault::at("sighup");
        if (g_worker->http != nullptr) g_worker->http->set_options(http_options());
        if (g_worker->pg != nullptr) g_worker->pg->set_options(pg_options());
        if (g_worker->redis != nullptr) g_worker->redis->set_options(redis_options());
        g_worker->batch.set_max_bytes(static_cast<size_t>(g_max_pending_memory_kb) * 1024);
        g_worker->otlp->configure();
      });
      if (!reconfigure_kube(error, sizeof(error))) fail_and_exit(error);
    }
    // The Kubernetes client's fd is level-triggered: serve it whenever it fired.
    if (kube_ready && !serve_kube(error, sizeof(error))) fail_and_exit(error);

    if (!collect(false, error, sizeof(error))) fail_and_exit(error);
    // Writes run with interrupts held: a SIGTERM that arrives meanwhile (a
    // fast shutdown, pg_terminate_backend) is seen at the top of the loop,
    // where finish() writes everything first. Their locks are taken without
    // waiting (lock_now.h), so nothing here waits for long.
    HOLD_INTERRUPTS();
    if (flush_due(WallClock::monotonic_ns())) flush();
    if (g_worker->open_report_due && g_worker->paused)
      g_worker->open_report_due = false;
    else if (g_worker->open_report_due)
      write_open_connections(false);
    else if (g_worker->open_rows && g_open_connections_interval_ms == 0)
      write_open_connections(true);  // the report was turned off
    g_worker->otlp->serve(otlp_ready);
    RESUME_INTERRUPTS();
    if (g_worker->swept) {
      follow_disk_guard();
      publish_counters();
      g_worker->swept = false;
    }
  }
}

void on_worker_exit(int code, Datum arg) {
  (void)code;
  (void)arg;
  SharedState* sh = shared();
  if (!sh || !g_worker) return;
  SpinLockAcquire(&sh->mutex);
  my_slot()->pid = 0;
  SpinLockRelease(&sh->mutex);
  clear_slot_links(g_worker->slot);
}

// The worker is a batch consumer: the ring buffer holds seconds of events and
// a span waits for its batch anyway. Under SCHED_BATCH the scheduler still gives
// it its fair share of CPU but does not let its wake-up preempt the task that
// is running, which on a busy node is the traffic being observed. No privilege
// is needed to choose it.
void schedule_as_batch() {
  sched_param param{};
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0)
    ereport(LOG, (errmsg("ebpf_capture: could not set the worker's scheduling policy to "
                         "SCHED_BATCH: %m")));
}

}  // namespace
}  // namespace ebpfc::pg

using namespace ebpfc::pg;

EBPFC_BGWORKER_MAIN(ebpf_capture_worker_main) {
  const int slot = DatumGetInt32(arg);
  pqsignal(SIGTERM, die);
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  BackgroundWorkerUnblockSignals();
  schedule_as_batch();

  SharedState* sh = shared();
  if (sh == nullptr || slot < 0 || slot >= sh->nslots)
    ereport(ERROR, (errmsg("ebpf_capture: worker started without its capture slot")));

  g_worker = new Worker();  // bad_alloc: FATAL (EBPFC_BGWORKER_MAIN)
  g_worker->slot = slot;
  SpinLockAcquire(&sh->mutex);
  strlcpy(g_worker->interface, sh->slots[slot].interface, sizeof(g_worker->interface));
  sh->slots[slot].pid = MyProcPid;
  SpinLockRelease(&sh->mutex);
  before_shmem_exit(on_worker_exit, 0);

  BackgroundWorkerInitializeConnection(g_database, nullptr, 0);
  pgstat_report_appname("ebpf_capture worker");
  apply_session_settings();
  run();
}
