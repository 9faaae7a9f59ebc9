// supervisor.cpp - the one static background worker, registered when the
// library is preloaded. It starts the launcher (a dynamic worker connected to
// ebpf_capture.database, launcher.cpp) and starts it again with back-off when
// it ends, but only while that database exists.
//
// The supervisor itself is connected to no database (it reads only the shared
// catalog pg_database), so nothing done to the capture database ends it: a
// DROP DATABASE ... WITH (FORCE) of that database ends the launcher and the
// capture workers, and the supervisor says once that the database is gone
// instead of a launcher failing to connect every few seconds.
#include <cstring>

#include "core/restart_backoff.h"
#include "pg/bgworker.h"
#include "pg/guc.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"

extern "C" {
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
}

namespace ebpfc::pg {
namespace {

constexpr long kPollMs = 1000;

// Whether database `name` exists; false with the error logged if the
// catalog could not be read. Without a database of its own, the supervisor
// reads pg_database the way the autovacuum launcher does: a heap scan of the
// shared catalog.
bool database_exists(const char* name) {
  volatile bool exists = false;
  char error[kErrorLen];
  const bool ok = pg_call_noexcept(
      [&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        (void)GetTransactionSnapshot();
        Relation rel = table_open(DatabaseRelationId, AccessShareLock);
        TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
        HeapTuple tuple;
        while (!exists && (tuple = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
          const Form_pg_database db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tuple));
          exists = strcmp(NameStr(db->datname), name) == 0;
        }
        table_endscan(scan);
        table_close(rel, AccessShareLock);
        CommitTransactionCommand();
      },
      error, sizeof(error));
  if (!ok) {
    char abort_error[256];
    pg_call_noexcept([] { AbortCurrentTransaction(); }, abort_error, sizeof(abort_error));
    ereport(LOG, (errmsg("ebpf_capture supervisor: cannot read pg_database: %s", error)));
  }
  return exists;
}

bool start_launcher(BackgroundWorkerHandle** handle) {
  // the supervisor restarts it, with back-off
  return start_dynamic_worker("ebpf_capture_launcher_main", "ebpf_capture launcher",
                              "ebpf_capture launcher", Datum(0), handle);
}

}  // namespace
}  // namespace ebpfc::pg

using namespace ebpfc::pg;

EBPFC_BGWORKER_MAIN(ebpf_capture_supervisor_main) {
  (void)arg;
  pqsignal(SIGTERM, die);
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  BackgroundWorkerUnblockSignals();
  BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
  pgstat_report_appname("ebpf_capture supervisor");

  BackgroundWorkerHandle* launcher = nullptr;
  TimestampTz started_at = 0;
  TimestampTz retry_at = 0;
  long backoff_ms = 0;
  bool said_missing = false;
  for (;;) {
    const TimestampTz now = GetCurrentTimestamp();
    if (launcher != nullptr) {
      pid_t pid = 0;
      if (GetBackgroundWorkerPid(launcher, &pid) == BGWH_STOPPED) {
        pfree(launcher);
        launcher = nullptr;
        backoff_ms = ebpfc::RestartBackoff::after_exit(
            backoff_ms,
            TimestampDifferenceExceeds(started_at, now, ebpfc::RestartBackoff::kHealthyMs));
        retry_at = TimestampTzPlusMilliseconds(now, backoff_ms);
      }
    }
    if (launcher == nullptr && now >= retry_at) {
      if (!database_exists(g_database)) {
        if (!said_missing)
          ereport(LOG, (errmsg("ebpf_capture: database \"%s\" (ebpf_capture.database) does not "
                               "exist; captures start once it is created and has the extension",
                               g_database)));
        said_missing = true;
      } else {
        if (said_missing)
          ereport(LOG, (errmsg("ebpf_capture: database \"%s\" exists again", g_database)));
        said_missing = false;
        if (start_launcher(&launcher)) {
          started_at = now;
        } else {
          launcher = nullptr;
          ereport(LOG, (errmsg("ebpf_capture supervisor: no background worker slot for the "
                               "launcher (raise max_worker_processes)")));
          retry_at = TimestampTzPlusMilliseconds(now, ebpfc::RestartBackoff::kNoSlotMs);
        }
      }
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kPollMs,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
    }
  }
}
