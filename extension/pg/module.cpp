// module.cpp - _PG_init: configuration, shared memory, and the supervisor
// (which starts the launcher, which starts the capture workers).
#include <cstring>

#include "pg/guc.h"
#include "pg/pg_headers.h"
#include "pg/shmem.h"

extern "C" {
PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

void _PG_init(void) {
  ebpfc::pg::define_gucs(process_shared_preload_libraries_in_progress);
  // Loaded by CREATE EXTENSION alone: the SQL functions work, and
  // capture_start explains what is missing.
  if (!process_shared_preload_libraries_in_progress) return;

  ebpfc::pg::install_shmem_hooks();

  BackgroundWorker w;
  std::memset(&w, 0, sizeof(w));
  w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
  w.bgw_start_time = BgWorkerStart_RecoveryFinished;
  w.bgw_restart_time = 5;
  strlcpy(w.bgw_library_name, "ebpf_capture", BGW_MAXLEN);
  strlcpy(w.bgw_function_name, "ebpf_capture_supervisor_main", BGW_MAXLEN);
  strlcpy(w.bgw_name, "ebpf_capture supervisor", BGW_MAXLEN);
  strlcpy(w.bgw_type, "ebpf_capture supervisor", BGW_MAXLEN);
  RegisterBackgroundWorker(&w);
}
