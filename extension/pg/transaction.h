// transaction.h - one transaction of a background process, run from C++.
#pragma once

#include "pg/pg_guard.h"

namespace ebpfc::pg {

// Runs body() in a transaction of its own, with SPI connected, a snapshot,
// and `activity` shown in pg_stat_activity; then commits, reports the
// statistics and runs after_commit(). If anything raises a PostgreSQL error,
// the transaction is aborted and false is returned with the message in
// `error`. body and after_commit hold no objects with destructors (pg_call).
template <class Body, class AfterCommit>
bool in_transaction(const char* activity, Body&& body, AfterCommit&& after_commit, char* error,
                    size_t error_size) {
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
      error, error_size);
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

}  // namespace ebpfc::pg
