// launcher.cpp - the supervisor: a static background worker that makes the
// running captures match the `captures` table.
//
// capture_start / capture_stop only change the table (transactionally) and
// wake the launcher at commit. The launcher starts a capture worker for every
// enabled interface, asks workers of disabled ones to stop, restarts failed
// workers with exponential back-off, and after a server restart or crash
// recovery resumes every capture that was enabled.
#include <signal.h>

#include <cstring>

#include "core/restart_backoff.h"
#include "pg/bgworker.h"
#include "pg/catalog.h"
#include "pg/guc.h"
#include "pg/hub.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/storage_maintenance.h"
#include "pg/transaction.h"

namespace ebpfc::pg {
namespace {

constexpr long kPollMs = 1000;
// A worker asked to stop that is still there after this long gets SIGTERM.
constexpr long kStopGraceMs = 10000;

struct SlotControl {
  BackgroundWorkerHandle* handle;
  TimestampTz retry_at;
  TimestampTz stop_requested_at;
  long backoff_ms;
};

SlotControl g_control[kMaxCaptures];

// Whether the extension is installed in the database (it was, the last
// time the captures table was read): a drop is logged once.
bool g_installed = false;

// The enabled interfaces from the captures table; n = -1 on error. Without
// the extension there are none.
int read_enabled(char names[][IFNAMSIZ], int max) {
  volatile int n = 0;
  volatile bool installed = false;
  char error[512];
  const bool ok = in_transaction(
      "ebpf_capture: reading captures",
      [&] {
        const char* schema = extension_schema_quoted();
        if (schema == nullptr) return;
        installed = true;
        const char* sql =
            psprintf("SELECT interface FROM %s.captures WHERE enabled ORDER BY interface", schema);
        if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
          elog(ERROR, "ebpf_capture: cannot read the captures table");
        for (uint64 i = 0; i < SPI_processed && n < max; i++) {
          bool isnull = false;
          Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
          if (isnull) continue;
          char* name = TextDatumGetCString(d);
          strlcpy(names[n], name, IFNAMSIZ);
          n = n + 1;
        }
      },
      error, sizeof(error));
  if (!ok) {
    ereport(LOG, (errmsg("ebpf_capture launcher: %s", error)));
    return -1;
  }
  if (g_installed && !installed)
    ereport(LOG, (errmsg("ebpf_capture: the extension was dropped from database \"%s\": its "
                         "captures stop",
                         g_database)));
  g_installed = installed;
  return n;
}

bool start_worker(int slot) {
  char name[BGW_MAXLEN];
  snprintf(name, sizeof(name), "ebpf_capture worker %s", shared()->slots[slot].interface);
  // the launcher restarts it, with back-off
  return start_dynamic_worker("ebpf_capture_worker_main", name, "ebpf_capture worker",
                              Int32GetDatum(slot), &g_control[slot].handle);
}

void reconcile() {
  SharedState* sh = shared();
  char enabled[kMaxCaptures][IFNAMSIZ];
  const int nslots = sh->nslots < kMaxCaptures ? sh->nslots : kMaxCaptures;
  const int n = read_enabled(enabled, kMaxCaptures);
  if (n < 0) return;  // keep things as they are; retry on the next poll
  const TimestampTz now = GetCurrentTimestamp();

  // Give every enabled interface a slot.
  SpinLockAcquire(&sh->mutex);
  for (int e = 0; e < n; e++) {
    int found = -1, free_slot = -1;
    for (int i = 0; i < nslots; i++) {
      CaptureSlot* s = &sh->slots[i];
      if (s->in_use && strcmp(s->interface, enabled[e]) == 0) found = i;
      const bool reusable =
          !s->in_use || (s->state == SlotState::Stopped && g_control[i].handle == nullptr);
      if (reusable && free_slot < 0) free_slot = i;
    }
    if (found < 0 && free_slot >= 0) {
      CaptureSlot* s = &sh->slots[free_slot];
      // A reused slot starts from zero for its new interface.
      if (s->in_use && strcmp(s->interface, enabled[e]) != 0) {
        reset_slot_counters(s);
      }
      s->in_use = true;
      strlcpy(s->interface, enabled[e], IFNAMSIZ);
      s->state = SlotState::Stopped;
      s->last_error[0] = '\0';
      s->pid = 0;
      g_control[free_slot].backoff_ms = 0;
      g_control[free_slot].retry_at = 0;
    }
  }
  SpinLockRelease(&sh->mutex);

  for (int i = 0; i < nslots; i++) {
    SlotControl& ctl = g_control[i];
    SpinLockAcquire(&sh->mutex);
    CaptureSlot* s = &sh->slots[i];
    const bool in_use = s->in_use;
    bool wanted = false;
    for (int e = 0; e < n && in_use; e++)
      if (strcmp(s->interface, enabled[e]) == 0) wanted = true;
    SlotState state = s->state;
    pid_t pid = s->pid;
    SpinLockRelease(&sh->mutex);
    if (!in_use) continue;

    // Has the worker gone?
    if (ctl.handle != nullptr) {
      pid_t hpid = 0;
      if (GetBackgroundWorkerPid(ctl.handle, &hpid) == BGWH_STOPPED) {
        pfree(ctl.handle);
        ctl.handle = nullptr;
        SpinLockAcquire(&sh->mutex);
        if (s->state == SlotState::Starting || s->state == SlotState::Running ||
            s->state == SlotState::Paused) {
          // It died without saying why (the worker records its own errors).
          if (s->last_error[0] == '\0')
            strlcpy(s->last_error, "capture worker exited unexpectedly", kErrorLen);
          s->state = SlotState::Failed;
        } else if (s->state == SlotState::Stopping) {
          s->state = SlotState::Stopped;
        }
        s->pid = 0;
        state = s->state;
        SpinLockRelease(&sh->mutex);
        if (state == SlotState::Failed) {
          ctl.backoff_ms = RestartBackoff::after_failure(ctl.backoff_ms);
          ctl.retry_at = TimestampTzPlusMilliseconds(now, ctl.backoff_ms);
        }
      } else if (state == SlotState::Running || state == SlotState::Paused) {
        ctl.backoff_ms = 0;  // healthy again
      }
    }

    if (wanted && ctl.handle == nullptr) {
      if (state == SlotState::Failed && now < ctl.retry_at) continue;
      SpinLockAcquire(&sh->mutex);
      s->state = SlotState::Starting;
      s->stop_requested = false;
      SpinLockRelease(&sh->mutex);
      if (!start_worker(i)) {
        set_slot_error(i, "no background worker slot available (raise max_worker_processes)");
        SpinLockAcquire(&sh->mutex);
        s->state = SlotState::Failed;
        SpinLockRelease(&sh->mutex);
        ctl.handle = nullptr;
        ctl.backoff_ms = RestartBackoff::kNoSlotMs;
        ctl.retry_at = TimestampTzPlusMilliseconds(now, ctl.backoff_ms);
      }
    } else if (!wanted && ctl.handle != nullptr) {
      if (state != SlotState::Stopping) {
        SpinLockAcquire(&sh->mutex);
        s->stop_requested = true;
        s->state = SlotState::Stopping;
        SpinLockRelease(&sh->mutex);
        ctl.stop_requested_at = now;
        wake_process(pid);
      } else if (TimestampDifferenceExceeds(ctl.stop_requested_at, now, kStopGraceMs)) {
        TerminateBackgroundWorker(ctl.handle);
      }
    } else if (!wanted && ctl.handle == nullptr && state != SlotState::Stopped) {
      SpinLockAcquire(&sh->mutex);
      s->state = SlotState::Stopped;
      SpinLockRelease(&sh->mutex);
    }
  }
}

// A launcher that restarts alone (the server did not) has lost the handles of
// the workers it started: ask them to finish, wait for them, and start over,
// so an interface never has two workers.
void stop_orphans() {
  SharedState* sh = shared();
  for (int waited_ms = 0; waited_ms <= kStopGraceMs; waited_ms += 100) {
    pid_t alive[kMaxCaptures];
    int nalive = 0;
    SpinLockAcquire(&sh->mutex);
    for (int i = 0; i < sh->nslots && i < kMaxCaptures; i++) {
      CaptureSlot* s = &sh->slots[i];
      if (s->pid != 0) {
        s->stop_requested = true;
        alive[nalive++] = s->pid;
      } else if (s->in_use && s->state != SlotState::Failed) {
        s->state = SlotState::Stopped;
      }
    }
    SpinLockRelease(&sh->mutex);
    if (nalive == 0) return;
    // A worker clears its pid on exit; one that died without doing so is gone.
    for (int i = 0; i < nalive; i++) {
      if (kill(alive[i], 0) != 0) {
        SpinLockAcquire(&sh->mutex);
        for (int k = 0; k < sh->nslots; k++)
          if (sh->slots[k].pid == alive[i]) sh->slots[k].pid = 0;
        SpinLockRelease(&sh->mutex);
      } else {
        wake_process(alive[i]);
      }
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
  }
}

void on_launcher_exit(int code, Datum arg) {
  (void)code;
  (void)arg;
  SharedState* sh = shared();
  if (!sh) return;
  SpinLockAcquire(&sh->mutex);
  if (sh->launcher_pid == MyProcPid) sh->launcher_pid = 0;
  SpinLockRelease(&sh->mutex);
}

}  // namespace
}  // namespace ebpfc::pg

using namespace ebpfc::pg;

EBPFC_BGWORKER_MAIN(ebpf_capture_launcher_main) {
  (void)arg;
  pqsignal(SIGTERM, die);
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  BackgroundWorkerUnblockSignals();

  SharedState* sh = shared();
  if (sh == nullptr) ereport(ERROR, (errmsg("ebpf_capture: shared memory is not initialised")));
  std::memset(g_control, 0, sizeof(g_control));
  SpinLockAcquire(&sh->mutex);
  sh->launcher_pid = MyProcPid;
  SpinLockRelease(&sh->mutex);
  before_shmem_exit(on_launcher_exit, 0);
  stop_orphans();

  BackgroundWorkerInitializeConnection(g_database, nullptr, 0);
  pgstat_report_appname("ebpf_capture launcher");
  // Only PostgreSQL's own catalog on the search_path: every statement the
  // launcher runs names the extension's schema.
  SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
  ereport(LOG, (errmsg("ebpf_capture launcher started (database \"%s\")", g_database)));

  for (;;) {
    reconcile();
    storage_tick();
    hub_launcher_tick();
    hub_access_tick();
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kPollMs,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
      storage_settings_changed();
      hub_settings_changed();
    }
  }
}
