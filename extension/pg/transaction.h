// transaction.h - transactions of a background process, run from C++.
#pragma once

#include "pg/pg_guard.h"

extern "C" {
#include "utils/resowner.h"
}

namespace ebpfc::pg {

// Sets a GUC for the rest of the current (sub)transaction, as SET LOCAL does.
inline void set_local(const char* name, const char* value) {
  (void)set_config_option(name, value, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

// Runs body() in a transaction of its own, with SPI connected, a snapshot,
// and `activity` shown in pg_stat_activity; then commits, reports the
// statistics and runs after_commit(). If anything raises a PostgreSQL error,
// the transaction is aborted and false is returned with the message in
// `error` (and its SQLSTATE in *sqlstate, when given). body and after_commit
// hold no objects with destructors (pg_call).
template <class Body, class AfterCommit>
bool in_transaction(const char* activity, Body&& body, AfterCommit&& after_commit, char* error,
                    size_t error_size, int* sqlstate = nullptr) {
  bool ok = pg_call_noexcept(
      [&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        SPI_connect();
        PushActiveSnapshot(GetTransactionSnapshot());
        pgstat_report_activity(STATE_RUNNING, activity);
        body();
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
        pgstat_report_stat(false);
        pgstat_report_activity(STATE_IDLE, nullptr);
        after_commit();
      },
      error, error_size, sqlstate);
  if (!ok) {
    char abort_error[256];
    pg_call_noexcept(
        [&] {
          AbortCurrentTransaction();
          pgstat_report_activity(STATE_IDLE, nullptr);
        },
        abort_error, sizeof(abort_error));
  }
  return ok;
}

template <class Body>
bool in_transaction(const char* activity, Body&& body, char* error, size_t error_size) {
  return in_transaction(
      activity, body, [] {}, error, error_size);
}

// Inside a transaction: runs body() in a subtransaction. On a PostgreSQL
// error the subtransaction is rolled back (what body did is undone, the
// transaction goes on) and false is returned with the message and SQLSTATE.
// An error raised while rolling back is raised on, to the transaction.
template <class Body>
bool in_subtransaction(Body&& body, char* error, size_t error_size, int* sqlstate) {
  MemoryContext context = CurrentMemoryContext;
  ResourceOwner owner = CurrentResourceOwner;
  BeginInternalSubTransaction(nullptr);
  MemoryContextSwitchTo(context);
  const bool ok = pg_call_noexcept(
      [&] {
        body();
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
      },
      error, error_size, sqlstate);
  if (!ok) {
    RollbackAndReleaseCurrentSubTransaction();
    MemoryContextSwitchTo(context);
    CurrentResourceOwner = owner;
  }
  return ok;
}

}  // namespace ebpfc::pg
