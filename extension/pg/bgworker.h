// bgworker.h - starting a dynamic background worker of the extension.
#pragma once

#include <cstring>

#include "pg/pg_headers.h"

namespace ebpfc::pg {

// Registers the worker `function` of this library, connected to a database,
// started once recovery is over, never restarted by the postmaster (its
// starter restarts it, with back-off), reporting to this process. False if
// no background worker slot was free.
inline bool start_dynamic_worker(const char* function, const char* name, const char* type,
                                 Datum arg, BackgroundWorkerHandle** handle) {
  BackgroundWorker w;
  std::memset(&w, 0, sizeof(w));
  w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
  w.bgw_start_time = BgWorkerStart_RecoveryFinished;
  w.bgw_restart_time = BGW_NEVER_RESTART;
  strlcpy(w.bgw_library_name, "ebpf_capture", BGW_MAXLEN);
  strlcpy(w.bgw_function_name, function, BGW_MAXLEN);
  strlcpy(w.bgw_name, name, BGW_MAXLEN);
  strlcpy(w.bgw_type, type, BGW_MAXLEN);
  w.bgw_main_arg = arg;
  w.bgw_notify_pid = MyProcPid;
  return RegisterDynamicBackgroundWorker(&w, handle);
}

}  // namespace ebpfc::pg
