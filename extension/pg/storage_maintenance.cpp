#include "pg/storage_maintenance.h"

#include <sys/statvfs.h>

#include <cstring>

#include "core/disk_guard.h"
#include "pg/catalog.h"
#include "pg/guc.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/transaction.h"

namespace ebpfc::pg {
namespace {

// Every statement of the maintenance gives up waiting for a lock after this
// long: dropping a partition needs an ACCESS EXCLUSIVE lock on its parent,
// and while it waits, the capture's inserts wait behind it.
constexpr const char* kLockTimeout = "200ms";
// A pass drops at most this many partitions of one kind (the rest next time).
constexpr int kMaxDropsPerPass = 50;
// Late rows deleted per statement, and statements per pass.
constexpr int kTrimBatch = 10000;
constexpr int kMaxTrimsPerPass = 20;
// The same maintenance error is logged at most this often.
constexpr long kErrorLogIntervalMs = 60000;

struct Tables {
  Oid spans = InvalidOid;
  Oid rollup = InvalidOid;
  const char* schema = nullptr;  // quoted, palloc'd in the transaction
};

struct Maintenance {
  TimestampTz next_full = 0;
  DiskGuard guard;
  bool warned_old_version = false;
  TimestampTz last_error_logged = 0;
  char last_error_text[kErrorLen] = {};
};

Maintenance g_maint;

StorageState* storage() { return &shared()->storage; }

// The period of the full maintenance: a sixth of the partition interval,
// between 5 s and a minute.
long full_period_ms() {
  long ms = static_cast<long>(g_partition_interval_min) * 60000L / 6;
  if (ms < 5000) ms = 5000;
  if (ms > 60000) ms = 60000;
  return ms;
}

void record_error(const char* what, const char* message) {
  char text[kErrorLen];
  snprintf(text, sizeof(text), "%s: %s", what, message);
  const TimestampTz now = GetCurrentTimestamp();
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  strlcpy(storage()->last_error, text, sizeof(storage()->last_error));
  storage()->last_error_at = now;
  SpinLockRelease(&sh->mutex);
  if (strcmp(text, g_maint.last_error_text) != 0 ||
      TimestampDifferenceExceeds(g_maint.last_error_logged, now, kErrorLogIntervalMs)) {
    ereport(LOG, (errmsg("ebpf_capture storage maintenance: %s", text)));
    strlcpy(g_maint.last_error_text, text, sizeof(g_maint.last_error_text));
    g_maint.last_error_logged = now;
  }
}

// Free and total bytes of the file systems holding the data directory and
// its WAL (the smaller free space of the two when they differ). The launcher
// runs in the data directory.
bool read_disk(uint64* free_bytes, uint64* total_bytes) {
  struct statvfs data, wal;
  if (statvfs(".", &data) != 0) return false;
  *free_bytes = static_cast<uint64>(data.f_bavail) * data.f_frsize;
  *total_bytes = static_cast<uint64>(data.f_blocks) * data.f_frsize;
  if (statvfs("pg_wal", &wal) == 0 && wal.f_fsid != data.f_fsid) {
    const uint64 wal_free = static_cast<uint64>(wal.f_bavail) * wal.f_frsize;
    if (wal_free < *free_bytes) {
      *free_bytes = wal_free;
      *total_bytes = static_cast<uint64>(wal.f_blocks) * wal.f_frsize;
    }
  }
  return true;
}

// Finds the extension's tables. False if the extension is not installed
// here, or at a version without time partitions (it then says so once).
bool find_tables(Tables* t) {
  const char* version = nullptr;
  Oid nsp = extension_namespace();
  if (!OidIsValid(nsp)) return false;
  if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'ebpf_capture'",
                  true, 1) == SPI_OK_SELECT &&
      SPI_processed == 1)
    version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
  if (version == nullptr || strcmp(version, "0.1") == 0) {
    if (!g_maint.warned_old_version) {
      ereport(LOG, (errmsg("ebpf_capture: the extension is at version %s, which has no time "
                           "partitions; storage maintenance waits for ALTER EXTENSION "
                           "ebpf_capture UPDATE",
                           version ? version : "?")));
      g_maint.warned_old_version = true;
    }
    return false;
  }
  g_maint.warned_old_version = false;
  t->spans = get_relname_relid("spans", nsp);
  t->rollup = get_relname_relid("service_map_minutes", nsp);
  t->schema = schema_quoted(nsp);
  return OidIsValid(t->spans) && OidIsValid(t->rollup);
}

// One step of the maintenance in a transaction of its own, with the short
// lock_timeout: body(tables) runs its SQL. Returns false (recorded and
// logged) if it failed, or if there is nothing to maintain.
template <class Body>
bool step(const char* what, Body body) {
  char error[kErrorLen];
  volatile bool found = false;
  const bool ok = in_transaction(
      what,
      [&] {
        (void)set_config_option("lock_timeout", kLockTimeout, PGC_SUSET, PGC_S_SESSION,
                                GUC_ACTION_LOCAL, true, 0, false);
        Tables t;
        if (!find_tables(&t)) return;
        found = true;
        body(t);
      },
      error, sizeof(error));
  if (!ok) record_error(what, error);
  return ok && found;
}

// Runs sql (with the parameters) and returns its first row's first column
// as an int8 (0 when NULL or no row); the second column's text, if any, in
// *text (palloc'd), or nullptr.
int64 query(const char* sql, int nargs, Oid* types, Datum* values, const char* nulls,
            char** text = nullptr, int64* second = nullptr) {
  const int rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
  if (rc != SPI_OK_SELECT) elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(rc));
  if (text != nullptr) *text = nullptr;
  if (SPI_processed == 0) return -1;
  bool isnull = false;
  Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
  int64 v = 0;
  if (!isnull) {
    const Oid type = SPI_gettypeid(SPI_tuptable->tupdesc, 1);
    v = type == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);
  }
  if (text != nullptr && SPI_tuptable->tupdesc->natts >= 2) {
    *text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
    if (second != nullptr && SPI_tuptable->tupdesc->natts >= 3) {
      Datum b = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
      *second = isnull ? 0 : DatumGetInt64(b);
    }
  }
  return v;
}

// Makes the partitions of the coming `ahead` steps of `which`.
void premake(bool rollup, int step_min, int ahead_steps) {
  step(rollup ? "making rollup partitions" : "making spans partitions", [&](const Tables& t) {
    Oid types[3] = {REGCLASSOID, INT4OID, INT4OID};
    Datum values[3] = {ObjectIdGetDatum(rollup ? t.rollup : t.spans), Int32GetDatum(step_min),
                       Int32GetDatum(step_min * ahead_steps)};
    const int64 made =
        query(psprintf("SELECT pg_catalog.count(*) FROM %s._storage_premake($1, $2 * "
                       "interval '1 minute', $3 * interval '1 minute')",
                       t.schema),
              3, types, values, nullptr);
    if (made > 0) {
      SharedState* sh = shared();
      SpinLockAcquire(&sh->mutex);
      storage()->partitions_made += static_cast<uint64>(made);
      SpinLockRelease(&sh->mutex);
    }
  });
}

// Drops the oldest partition of spans (or of the rollup) that ends before
// now - age_min, or with age_min < 0 the oldest that ends before now, and
// logs it with `why`. Returns whether it dropped one.
bool drop_oldest(bool rollup, int age_min, const char* why) {
  volatile bool dropped = false;
  step(rollup ? "dropping an old rollup partition" : "dropping an old spans partition",
       [&](const Tables& t) {
         Oid types[2] = {REGCLASSOID, INT4OID};
         Datum values[2] = {ObjectIdGetDatum(rollup ? t.rollup : t.spans), Int32GetDatum(age_min)};
         const char nulls[3] = {' ', age_min < 0 ? 'n' : ' ', '\0'};
         char* name = nullptr;
         int64 bytes = 0;
         // The first column is only there to have a number first.
         const int64 row = query(psprintf("SELECT 1::int8, d.dropped, d.bytes FROM "
                                          "%s._storage_drop_oldest($1, pg_catalog.now() - $2 * "
                                          "interval '1 minute') d",
                                          t.schema),
                                 2, types, values, nulls, &name, &bytes);
         if (row < 0 || name == nullptr) return;
         dropped = true;
         SharedState* sh = shared();
         SpinLockAcquire(&sh->mutex);
         storage()->partitions_dropped++;
         storage()->bytes_dropped += static_cast<uint64>(bytes);
         strlcpy(storage()->last_dropped, name, sizeof(storage()->last_dropped));
         SpinLockRelease(&sh->mutex);
         ereport(LOG, (errmsg("ebpf_capture: dropped partition %s (%lld kB): %s", name,
                              static_cast<long long>(bytes / 1024), why)));
       });
  return dropped;
}

// The bytes of every spans partition together (-1 if unknown).
int64 spans_bytes() {
  volatile int64 bytes = -1;
  step("measuring the spans partitions", [&](const Tables& t) {
    Oid types[1] = {REGCLASSOID};
    Datum values[1] = {ObjectIdGetDatum(t.spans)};
    bytes = query(psprintf("SELECT COALESCE(pg_catalog.sum("
                           "pg_catalog.pg_total_relation_size(p.partition)), 0)::int8 "
                           "FROM %s._storage_partitions_of($1) p",
                           t.schema),
                  1, types, values, nullptr);
  });
  return bytes;
}

// Deletes the late rows past the retention, a batch at a time.
void trim_late(bool rollup, int age_min) {
  for (int i = 0; i < kMaxTrimsPerPass; i++) {
    volatile int64 deleted = 0;
    step(rollup ? "trimming late rollup rows" : "trimming late spans", [&](const Tables& t) {
      Oid types[3] = {REGCLASSOID, INT4OID, INT4OID};
      Datum values[3] = {ObjectIdGetDatum(rollup ? t.rollup : t.spans), Int32GetDatum(age_min),
                         Int32GetDatum(kTrimBatch)};
      deleted = query(psprintf("SELECT %s._storage_trim_late($1, pg_catalog.now() - $2 * "
                               "interval '1 minute', $3)",
                               t.schema),
                      3, types, values, nullptr);
    });
    if (deleted <= 0) return;
    SharedState* sh = shared();
    SpinLockAcquire(&sh->mutex);
    storage()->late_rows_deleted += static_cast<uint64>(deleted);
    SpinLockRelease(&sh->mutex);
    if (deleted < kTrimBatch) return;
  }
}

bool prune_pods() {
  return step("pruning the pods table", [&](const Tables& t) {
    query(psprintf("SELECT %s._storage_prune_pods()", t.schema), 0, nullptr, nullptr, nullptr);
  });
}

// Returns false if there was nothing to maintain (no extension here, or one
// without time partitions).
bool full_maintenance() {
  premake(false, g_partition_interval_min, 3);
  premake(true, g_rollup_partition_interval_min, 2);
  if (g_retention_min > 0) {
    for (int i = 0; i < kMaxDropsPerPass &&
                    drop_oldest(false, g_retention_min, "older than ebpf_capture.retention");
         i++) {
    }
    trim_late(false, g_retention_min);
  }
  if (g_max_spans_size_mb > 0) {
    const int64 cap = static_cast<int64>(g_max_spans_size_mb) * 1024 * 1024;
    for (int i = 0; i < kMaxDropsPerPass; i++) {
      const int64 bytes = spans_bytes();
      if (bytes < 0 || bytes <= cap ||
          !drop_oldest(false, -1, "beyond ebpf_capture.max_spans_size"))
        break;
    }
  }
  if (g_rollup_retention_min > 0) {
    for (int i = 0; i < kMaxDropsPerPass && drop_oldest(true, g_rollup_retention_min,
                                                        "older than ebpf_capture.rollup_retention");
         i++) {
    }
    trim_late(true, g_rollup_retention_min);
  }
  return prune_pods();
}

void publish_disk(uint64 free_bytes, uint64 total, uint64 threshold, bool low, bool paused) {
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  storage()->disk_free_bytes = free_bytes;
  storage()->disk_total_bytes = total;
  storage()->min_free_disk_bytes = threshold;
  storage()->disk_low = low;
  storage()->writes_paused = paused;
  SpinLockRelease(&sh->mutex);
}

}  // namespace

void storage_settings_changed() { g_maint.next_full = 0; }

void storage_tick() {
  const TimestampTz now = GetCurrentTimestamp();
  uint64 free_bytes = 0, total = 0;
  const bool measured = read_disk(&free_bytes, &total);
  const uint64 threshold = measured ? min_free_disk_bytes(total) : 0;
  bool can_drop_more = true;
  // Short of space: the oldest spans partitions go first, one at a time,
  // measuring again after each (a dropped table's space is free at commit).
  if (measured && DiskGuard::low(free_bytes, threshold)) {
    for (int i = 0; i < kMaxDropsPerPass && DiskGuard::low(free_bytes, threshold); i++) {
      if (!drop_oldest(false, -1, "free disk space below ebpf_capture.min_free_disk")) {
        can_drop_more = false;
        break;
      }
      read_disk(&free_bytes, &total);
    }
  }
  const bool was_paused = g_maint.guard.paused();
  const bool paused = g_maint.guard.update(free_bytes, threshold, can_drop_more);
  publish_disk(free_bytes, total, threshold, DiskGuard::low(free_bytes, threshold), paused);
  if (paused && !was_paused)
    ereport(LOG, (errmsg("ebpf_capture: %llu MB free on the data directory's file system, "
                         "below ebpf_capture.min_free_disk (%llu MB), and no spans partition "
                         "left to drop: spans are not written until space returns",
                         static_cast<unsigned long long>(free_bytes >> 20),
                         static_cast<unsigned long long>(threshold >> 20))));
  else if (was_paused && !paused)
    ereport(LOG, (errmsg("ebpf_capture: %llu MB free on the data directory's file system: "
                         "spans are written again",
                         static_cast<unsigned long long>(free_bytes >> 20))));

  if (now < g_maint.next_full) return;
  const bool ran = full_maintenance();
  g_maint.next_full = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), full_period_ms());
  if (!ran) return;
  SharedState* sh = shared();
  SpinLockAcquire(&sh->mutex);
  storage()->last_run = now;
  SpinLockRelease(&sh->mutex);
}

}  // namespace ebpfc::pg
