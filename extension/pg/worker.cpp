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

#include <algorithm>
#include <cstring>
#include <vector>

#include "capture/packet_capture.h"
#include "core/flow_span.h"
#include "core/http_tracker.h"
#include "kube/kube_client.h"
#include "kube/kube_config.h"
#include "kube/pod_cache.h"
#include "pg/guc.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/span_store.h"

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

// Finished spans waiting for the next insert, built as the kernel reports
// connections and payload heads.
class SpanBatch final : public FlowSink {
 public:
  void flow_ended(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats,
                  CloseReason reason) override {
    uint8_t connection_span_id[8];
    bool had_http = false;
    if (http != nullptr) {
      const size_t before = http_spans.size();
      had_http = http->on_flow_ended(key, connection_span_id, clock, ids, http_spans);
      after_http(before);
    }
    if (full()) {
      dropped++;
      return;
    }
    note_first();
    spans.emplace_back();
    span_from_flow(key, stats, reason, clock, ids, spans.back());
    // The connection's HTTP spans already refer to this id.
    if (had_http) std::memcpy(spans.back().span_id, connection_span_id, 8);
  }

  void payload(const ebpfc_payload_event& head) override {
    if (http == nullptr) return;
    const size_t before = http_spans.size();
    http->on_payload(head, clock, ids, http_spans);
    after_http(before);
  }

  // A sweep that reports open connections lists them here.
  void flow_open(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats) override {
    open_spans.emplace_back();
    span_from_flow(key, stats, CloseReason::None, clock, ids, open_spans.back());
  }

  // After a drain: connections that ended give their last exchanges.
  void end_of_drain(uint64_t now_ns) {
    if (http == nullptr) return;
    const size_t before = http_spans.size();
    http->end_of_drain(now_ns, clock, ids, http_spans);
    after_http(before);
  }

  void close_all() {
    if (http == nullptr) return;
    const size_t before = http_spans.size();
    http->close_all(clock, ids, http_spans);
    after_http(before);
  }

  // Spans waiting for the next flush.
  size_t waiting() const { return spans.size() + http_spans.size(); }
  // Those and the ones a flush is writing: what the backlog bound counts.
  size_t pending() const { return waiting() + flushing_spans.size() + flushing_http.size(); }

  // A flush takes everything waiting (a swap of buffers: nothing is copied
  // or moved); what arrives while it runs waits in the emptied buffers.
  void begin_flush() {
    std::swap(spans, flushing_spans);
    std::swap(http_spans, flushing_http);
    oldest_ns = 0;
  }
  void end_flush() {
    flushing_spans.clear();
    flushing_http.clear();
  }

  std::vector<Span> spans;  // waiting
  HttpSpanList http_spans;
  std::vector<Span> flushing_spans;  // being written by the flush in progress
  HttpSpanList flushing_http;
  std::vector<Span> open_spans;  // the connections open at the last report's sweep
  HttpTracker* http = nullptr;   // null when HTTP is off
  uint64_t oldest_ns = 0;
  uint64_t dropped = 0;
  WallClock clock;
  SpanIdGenerator ids;

 private:
  bool full() const { return pending() >= static_cast<size_t>(g_max_pending_spans); }
  void note_first() {
    if (waiting() == 0) oldest_ns = WallClock::monotonic_ns();
  }
  // Keeps the new HTTP spans within the backlog bound.
  void after_http(size_t before) {
    if (http_spans.size() > before && before + spans.size() == 0)
      oldest_ns = WallClock::monotonic_ns();
    while (http_spans.size() > before && full()) {
      http_spans.pop_back();
      dropped++;
    }
  }
};

struct Worker {
  int slot = -1;
  char interface[IFNAMSIZ] = {};
  PacketCapture* capture = nullptr;
  HttpTracker* http = nullptr;
  kube::PodCache* pods = nullptr;            // who is behind an address, from the Kubernetes API
  kube::KubeClient* kube = nullptr;          // feeds `pods`; driven by its fd in the wait set
  std::vector<kube::PodRecord> pod_changes;  // to mirror into the pods table
  SpanBatch batch;
  SpanStore store;
  uint64_t spans_written = 0;
  uint64_t port_resyncs = 0;  // last count logged
  uint64_t next_sweep_ns = 0;
  uint64_t next_open_report_ns = 0;
  bool open_report_due = false;  // a sweep listed the open connections: write them
  bool open_rows = false;        // open_connections may hold rows of this capture
  size_t last_drained = 0;       // flows the last drain reported
  bool swept = false;            // a sweep ran since the counters were published
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

// Marks the capture failed with `message`, logs it, and exits (the launcher
// retries with back-off).
[[noreturn]] void fail_and_exit(const char* message) {
  set_slot_error(g_worker->slot, message);
  set_state(SlotState::Failed);
  ereport(LOG,
          (errmsg("ebpf_capture: capture on \"%s\" failed: %s", g_worker->interface, message)));
  proc_exit(1);
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
  if (c.port_resyncs > g_worker->port_resyncs) {
    g_worker->port_resyncs = c.port_resyncs;
    ereport(LOG, (errmsg("ebpf_capture: link notifications on \"%s\" were lost; listed the "
                         "bridge's ports again (%llu times so far)",
                         g_worker->interface, static_cast<unsigned long long>(c.port_resyncs))));
  }
  set(kFlowTableFull, c.filter.flow_table_full);
  set(kFlowsTracked, g_worker->capture->flows_tracked());
  set(kSpansWritten, g_worker->spans_written);
  set(kSpansDropped, g_worker->batch.dropped);
  set(kPayloadDropped, c.filter.payload_dropped);
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
                            h.parser.string_bound + h.parser.reorder_full);
  }
}

// Reads the ring buffer between two insert transactions of one flush: a
// flush of many spans takes long enough for a busy kernel to fill the ring
// buffer (each lost payload head is a lost or incomplete HTTP exchange).
void drain_while_flushing() {
  try {
    g_worker->capture->drain(g_worker->batch);
    g_worker->batch.end_of_drain(WallClock::monotonic_ns());
  } catch (const std::exception&) {
    // the next collect() reports it
  }
}

// Inserts the pending spans in transactions of at most batch_size rows (tcp
// and http rows together), with the pod changes the Kubernetes cache has
// seen. Spans that arrive while it runs (it drains the ring buffer between
// transactions unless `final`) wait for the next flush.
void flush(bool final = false) {
  SpanBatch& b = g_worker->batch;
  const size_t limit = static_cast<size_t>(g_batch_size);
  if (g_worker->pods != nullptr) {
    g_worker->pod_changes.clear();
    g_worker->pods->take_changes(g_worker->pod_changes, limit);
  }
  b.begin_flush();
  const size_t tcp_total = b.flushing_spans.size();
  const size_t http_total = b.flushing_http.size();
  size_t tcp_done = 0, http_done = 0;
  bool pods_pending = !g_worker->pod_changes.empty();
  while (tcp_done < tcp_total || http_done < http_total || pods_pending) {
    SpanStore::Batch batch;
    batch.peers = g_worker->pods;
    batch.tcp = b.flushing_spans.data() + tcp_done;
    batch.ntcp = std::min(tcp_total - tcp_done, limit);
    batch.http = b.flushing_http.data() + http_done;
    batch.nhttp = std::min(http_total - http_done, limit - batch.ntcp);
    if (pods_pending) {
      batch.pods = g_worker->pod_changes.data();
      batch.npods = g_worker->pod_changes.size();
      pods_pending = false;
    }
    char error[kErrorLen];
    if (g_worker->store.insert(batch, g_worker->interface, error, sizeof(error))) {
      g_worker->spans_written += batch.ntcp + batch.nhttp;
    } else {
      // The batch is lost, and counted: retrying a batch the table refuses
      // would stall every span behind it.
      b.dropped += batch.ntcp + batch.nhttp;
      set_slot_error(g_worker->slot, error);
      ereport(WARNING, (errmsg("ebpf_capture: could not insert %zu spans from \"%s\": %s",
                               batch.ntcp + batch.nhttp, g_worker->interface, error)));
    }
    tcp_done += batch.ntcp;
    http_done += batch.nhttp;
    if (!final && (tcp_done < tcp_total || http_done < http_total)) drain_while_flushing();
  }
  b.end_flush();
}

bool flush_due(uint64_t now) {
  const SpanBatch& b = g_worker->batch;
  if (b.waiting() == 0) return g_worker->pods != nullptr && g_worker->pods->pending_changes() > 0;
  return b.waiting() >= static_cast<size_t>(g_batch_size) ||
         now - b.oldest_ns >= static_cast<uint64_t>(g_flush_interval_ms) * 1000000ull;
}

// Drains the ring buffer and, when due or final, sweeps the flows map.
// Returns false with the message in `error` if the kernel side failed.
bool collect(bool final_sweep, char* error, size_t error_size) {
  try {
    g_worker->batch.clock.refresh();
    g_worker->last_drained = g_worker->capture->drain(g_worker->batch);
    const uint64_t now = WallClock::monotonic_ns();
    g_worker->batch.end_of_drain(now);
    if (final_sweep || now >= g_worker->next_sweep_ns) {
      SweepPolicy policy{static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull, kCloseGraceNs,
                         final_sweep};
      policy.report_open = !final_sweep && g_open_connections_interval_ms > 0 &&
                           now >= g_worker->next_open_report_ns;
      if (policy.report_open) g_worker->batch.open_spans.clear();
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
  std::vector<Span>& open = g_worker->batch.open_spans;
  if (none) open.clear();
  char error[kErrorLen];
  if (g_worker->store.replace_open(open.data(), open.size(), g_worker->pods, g_worker->interface,
                                   error, sizeof(error))) {
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

kube::KubeConfig kube_config() {
  kube::KubeSettings settings;
  settings.api_url = g_kube_api_url ? g_kube_api_url : "";
  settings.token_file = g_kube_token_file ? g_kube_token_file : "";
  settings.ca_file = g_kube_ca_file ? g_kube_ca_file : "";
  return kube::resolve_kube_config(settings);
}

HttpTrackerOptions http_options() {
  HttpTrackerOptions o;
  o.max_connections = static_cast<size_t>(g_max_http_connections);
  o.strip_query = g_http_strip_query;
  // An HTTP connection whose close we never see (its flow was reported idle,
  // or events were lost) is given up after the idle timeout, and a bit.
  o.expire_after_ns = static_cast<uint64_t>(g_idle_timeout_ms) * 1000000ull + kCloseGraceNs;
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
    uint64_t flush_at = b.oldest_ns + static_cast<uint64_t>(g_flush_interval_ms) * 1000000ull;
    if (flush_at < deadline) deadline = flush_at;
  }
  if (deadline <= now) return 0;
  return static_cast<long>((deadline - now) / 1000000ull) + 1;
}

void run() {
  char error[kErrorLen];
  bool opened = false;
  try {
    CaptureOptions options;
    options.interface = g_worker->interface;
    options.bridge_ports = g_bridge_ports;
    options.promiscuous = g_promiscuous;
    options.flow_table_size = static_cast<uint32_t>(g_flow_table_size);
    options.ring_buffer_bytes = static_cast<uint32_t>(g_ring_buffer_kb) * 1024u;
    options.http = g_http;
    g_worker->capture = new PacketCapture(options);
    g_worker->batch.spans.reserve(static_cast<size_t>(g_batch_size) * 2);
    g_worker->batch.flushing_spans.reserve(static_cast<size_t>(g_batch_size) * 2);
    if (g_http) {
      g_worker->http = new HttpTracker(http_options(), *g_worker->capture);
      g_worker->batch.http = g_worker->http;
      g_worker->batch.http_spans.reserve(256);
    }
    // One client for the worker's life, even when no API is configured (it
    // then idles and says why in capture_status).
    g_worker->pods = new kube::PodCache();
    g_worker->kube = new kube::KubeClient(kube_config(), *g_worker->pods);
    opened = true;
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), sizeof(error));
  }
  if (!opened) fail_and_exit(error);

  try {
    g_worker->store.prepare();
  } catch (const std::exception& e) {
    strlcpy(error, e.what(), sizeof(error));
    opened = false;
  }
  if (!opened) fail_and_exit(error);

  // Rows a worker of this interface left behind when it ended without its
  // final report (it failed, or was killed; a crash of the server empties
  // the unlogged table anyway).
  write_open_connections(true);

  WaitEventSet* wes = CreateWaitEventSet(TopMemoryContext, 4);
  AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
  AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, g_worker->capture->event_fd(), nullptr, nullptr);
  const int kube_fd = g_worker->kube->fd();
  AddWaitEventToSet(wes, WL_SOCKET_READABLE, kube_fd, nullptr, nullptr);

  publish_counters();  // capture_status shows the metadata state from the start
  set_state(SlotState::Running);
  if (g_worker->capture->at_bridge_ports()) {
    const unsigned ports = g_worker->capture->counters().ports;
    ereport(LOG, (errmsg("ebpf_capture: capturing on bridge \"%s\" at its %u ports",
                         g_worker->interface, ports)));
  } else {
    ereport(LOG, (errmsg("ebpf_capture: capturing on \"%s\"%s", g_worker->interface,
                         g_promiscuous ? " (promiscuous)" : "")));
  }
  g_worker->next_sweep_ns = WallClock::monotonic_ns() + kSweepIntervalNs;

  for (;;) {
    WaitEvent events[4];
    int n = WaitEventSetWait(wes, wait_timeout_ms(WallClock::monotonic_ns()), events, 4,
                             PG_WAIT_EXTENSION);
    bool kube_ready = false;
    for (int i = 0; i < n; i++) {
      if (events[i].events & WL_LATCH_SET) ResetLatch(MyLatch);
      if ((events[i].events & WL_SOCKET_READABLE) && events[i].fd == kube_fd) kube_ready = true;
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
      if (g_worker->http != nullptr) g_worker->http->set_options(http_options());
      if (!reconfigure_kube(error, sizeof(error))) fail_and_exit(error);
    }
    // The Kubernetes client's fd is level-triggered: serve it whenever it fired.
    if (kube_ready && !serve_kube(error, sizeof(error))) fail_and_exit(error);

    if (!collect(false, error, sizeof(error))) fail_and_exit(error);
    if (flush_due(WallClock::monotonic_ns())) flush();
    if (g_worker->open_report_due)
      write_open_connections(false);
    else if (g_worker->open_rows && g_open_connections_interval_ms == 0)
      write_open_connections(true);  // the report was turned off
    if (g_worker->swept) {
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

extern "C" PGDLLEXPORT void ebpf_capture_worker_main(Datum arg);

void ebpf_capture_worker_main(Datum arg) {
  const int slot = DatumGetInt32(arg);
  pqsignal(SIGTERM, die);
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  BackgroundWorkerUnblockSignals();
  schedule_as_batch();

  SharedState* sh = shared();
  if (sh == nullptr || slot < 0 || slot >= sh->nslots)
    ereport(ERROR, (errmsg("ebpf_capture: worker started without its capture slot")));

  bool allocated = false;
  try {
    g_worker = new Worker();
    allocated = true;
  } catch (const std::exception&) {
  }
  if (!allocated) ereport(ERROR, (errmsg("ebpf_capture: out of memory starting the worker")));
  g_worker->slot = slot;
  SpinLockAcquire(&sh->mutex);
  strlcpy(g_worker->interface, sh->slots[slot].interface, sizeof(g_worker->interface));
  sh->slots[slot].pid = MyProcPid;
  SpinLockRelease(&sh->mutex);
  before_shmem_exit(on_worker_exit, 0);

  BackgroundWorkerInitializeConnection(g_database, nullptr, 0);
  pgstat_report_appname("ebpf_capture worker");
  run();
}
