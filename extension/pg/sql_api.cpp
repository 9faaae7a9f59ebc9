// sql_api.cpp - the C functions behind the SQL API (see sql/ebpf_capture--0.1.sql,
// where capture_start, capture_stop and capture_status are defined on top of
// these).
#include <fnmatch.h>
#include <net/if.h>

#include <cstring>
#include <string>
#include <vector>

#include "capture/capture_checks.h"
#include "pg/guc.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/slot_links.h"

namespace ebpfc::pg {
namespace {

bool g_wake_at_commit = false;
bool g_callback_registered = false;

void wake_on_commit(XactEvent event, void* arg) {
  (void)arg;
  if (event == XACT_EVENT_COMMIT && g_wake_at_commit) wake_launcher();
  if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) g_wake_at_commit = false;
}

enum class Problem {
  None,
  NotPreloaded,
  NotUtf8,
  WrongDatabase,
  BadName,
  NoSuchInterface,
  MissingCaps
};

// Whether any interface of this network namespace has a name matching pattern.
bool any_interface_matches(const char* pattern) {
  struct if_nameindex* all = if_nameindex();
  if (all == nullptr) return true;  // cannot tell: say nothing
  bool found = false;
  for (struct if_nameindex* i = all; i->if_index != 0 && !found; i++)
    found = fnmatch(pattern, i->if_name, 0) == 0;
  if_freenameindex(all);
  return found;
}

}  // namespace
}  // namespace ebpfc::pg

using namespace ebpfc::pg;

// _capture_check_start(interface text): raises the error that stops a capture
// on `interface` from starting, if there is one.
EBPFC_SQL_FUNCTION(ebpf_capture_check_start) {
  if (PG_ARGISNULL(0))
    ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                    errmsg("invalid interface name: it is NULL")));
  char* name = text_to_cstring(PG_GETARG_TEXT_PP(0));
  char* dbname = get_database_name(MyDatabaseId);

  char message[512] = "";
  char detail[512] = "";
  Problem problem = Problem::None;
  bool nothing_matches = false;
  entry_guard([&] {
    if (!preloaded() || shared() == nullptr) {
      problem = Problem::NotPreloaded;
      return;
    }
    // Spans carry text from the wire made valid UTF-8; stored in another
    // encoding it would be converted, or refused, row by row.
    if (GetDatabaseEncoding() != PG_UTF8) {
      problem = Problem::NotUtf8;
      return;
    }
    if (dbname == nullptr || strcmp(dbname, g_database) != 0) {
      problem = Problem::WrongDatabase;
      return;
    }
    // An interface's name, a pattern of pod interfaces, or "auto".
    std::string bad = ebpfc::capture_target_problem(name);
    if (!bad.empty()) {
      problem = Problem::BadName;
      strlcpy(message, bad.c_str(), sizeof(message));
      return;
    }
    if (ebpfc::is_interface_pattern(name)) {
      // Pods may come later: the capture attaches to them as they do.
      nothing_matches = !any_interface_matches(name);
    } else if (strcmp(name, ebpfc::kAutoTarget) != 0 && if_nametoindex(name) == 0) {
      problem = Problem::NoSuchInterface;
      return;
    }
    std::vector<std::string> missing = ebpfc::missing_capabilities();
    if (!missing.empty()) {
      problem = Problem::MissingCaps;
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "" : " and ") + m;
      strlcpy(detail, list.c_str(), sizeof(detail));
    }
  });

  switch (problem) {
    case Problem::None:
      if (nothing_matches)
        ereport(NOTICE,
                (errmsg("no interface matches \"%s\" yet", name),
                 errdetail("The capture attaches to the matching pod interfaces as they appear."),
                 errhint("The server sees the interfaces of its own network namespace; list "
                         "them with: ip link show")));
      break;
    case Problem::NotPreloaded:
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("ebpf_capture is not loaded via shared_preload_libraries"),
                      errhint("Add shared_preload_libraries = 'ebpf_capture' to postgresql.conf "
                              "(keep any libraries already listed there) and restart the "
                              "server.")));
      break;
    case Problem::NotUtf8:
      ereport(ERROR,
              (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
               errmsg("captures need a UTF-8 database; \"%s\" is %s", dbname ? dbname : "?",
                      GetDatabaseEncodingName()),
               errhint("Create the database with ENCODING 'UTF8' (and TEMPLATE template0) and "
                       "point ebpf_capture.database at it.")));
      break;
    case Problem::WrongDatabase:
      ereport(ERROR,
              (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
               errmsg("captures run in database \"%s\" (ebpf_capture.database), not in \"%s\"",
                      g_database, dbname ? dbname : "?"),
               errhint("Connect to database \"%s\", or set ebpf_capture.database in "
                       "postgresql.conf and restart the server.",
                       g_database)));
      break;
    case Problem::BadName:
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", message)));
      break;
    case Problem::NoSuchInterface:
      ereport(ERROR,
              (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("interface \"%s\" does not exist", name),
               errhint("The server sees the interfaces of its own network namespace; "
                       "list them with: ip link show")));
      break;
    case Problem::MissingCaps:
      ereport(ERROR,
              (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
               errmsg("the PostgreSQL server process lacks capability %s", detail),
               errhint("Start the server with the capabilities it needs, e.g. setpriv "
                       "--inh-caps=+bpf,+net_raw,+net_admin,+perfmon "
                       "--ambient-caps=+bpf,+net_raw,+net_admin,+perfmon pg_ctl ..., or grant "
                       "them to the postgres binary with setcap "
                       "cap_bpf,cap_net_raw,cap_net_admin,cap_perfmon+ep.")));
      break;
  }
  PG_RETURN_VOID();
}

// _capture_wake(): wakes the launcher when the current transaction commits.
EBPFC_SQL_FUNCTION(ebpf_capture_wake) {
  (void)fcinfo;
  if (!g_callback_registered) {
    RegisterXactCallback(wake_on_commit, nullptr);
    g_callback_registered = true;
  }
  g_wake_at_commit = true;
  PG_RETURN_VOID();
}

// _capture_slots(): the capture slots in shared memory, one row per slot in use.
EBPFC_SQL_FUNCTION(ebpf_capture_slots) {
  ReturnSetInfo* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  InitMaterializedSRF(fcinfo, 0);
  SharedState* sh = shared();
  if (sh == nullptr) PG_RETURN_VOID();

  for (int i = 0; i < sh->nslots; i++) {
    CaptureSlot* s = &sh->slots[i];
    CaptureSlot copy;
    SpinLockAcquire(&sh->mutex);
    const bool in_use = s->in_use;
    std::memcpy(copy.interface, s->interface, sizeof(copy.interface));
    copy.state = s->state;
    copy.pid = s->pid;
    copy.started_at = s->started_at;
    std::memcpy(copy.last_error, s->last_error, sizeof(copy.last_error));
    std::memcpy(copy.metadata_state, s->metadata_state, sizeof(copy.metadata_state));
    std::memcpy(copy.metadata_error, s->metadata_error, sizeof(copy.metadata_error));
    std::memcpy(&copy.links, &s->links, sizeof(copy.links));
    SpinLockRelease(&sh->mutex);
    if (!in_use) continue;

    // interface, pid, state, started_at, the 0.1 counters, metadata state
    // and error, last error, the counters added since, then where it is
    // attached (mode, pattern, attached, failed, skipped): see _capture_slots
    // in the SQL scripts
    constexpr int kLinkColumns = 5;
    constexpr int kColumns = 4 + kSlotCounterCount + 3 + kLinkColumns;
    constexpr int kText = 4 + kFirstLaterCounter;    // metadata_state
    constexpr int kLinks = kColumns - kLinkColumns;  // mode
    static_assert(kColumns == 39, "capture slot columns: see _capture_slots in the SQL script");
    Datum values[kColumns];
    bool nulls[kColumns] = {false};
    values[0] = CStringGetTextDatum(copy.interface);
    values[1] = Int32GetDatum(copy.pid);
    nulls[1] = copy.pid == 0;
    values[2] = CStringGetTextDatum(slot_state_name(copy.state));
    values[3] = TimestampTzGetDatum(copy.started_at);
    nulls[3] = copy.started_at == 0;
    for (int k = 0; k < kSlotCounterCount; k++) {
      const int column = k < kFirstLaterCounter ? 4 + k : kText + 3 + (k - kFirstLaterCounter);
      values[column] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->counters[k])));
    }
    values[kText] = CStringGetTextDatum(copy.metadata_state);
    nulls[kText] = copy.metadata_state[0] == '\0';
    values[kText + 1] = CStringGetTextDatum(copy.metadata_error);
    nulls[kText + 1] = copy.metadata_error[0] == '\0';
    values[kText + 2] = CStringGetTextDatum(copy.last_error);
    nulls[kText + 2] = copy.last_error[0] == '\0';
    slot_links_datums(copy.links, values + kLinks, nulls + kLinks);
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
  }
  PG_RETURN_VOID();
}

// _storage_state(): what the launcher's storage maintenance did last and the
// disk guard's state; see _storage_state in the SQL script for the columns.
EBPFC_SQL_FUNCTION(ebpf_capture_storage_state) {
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    ereport(ERROR, (errmsg("ebpf_capture: _storage_state must return a record")));
  constexpr int kColumns = 13;
  Datum values[kColumns];
  bool nulls[kColumns] = {};
  SharedState* sh = shared();
  if (sh == nullptr) {
    for (bool& n : nulls) n = true;
  } else {
    StorageState st;
    SpinLockAcquire(&sh->mutex);
    st = sh->storage;
    SpinLockRelease(&sh->mutex);
    auto text_or_null = [&](int i, const char* s) {
      nulls[i] = s[0] == '\0';
      values[i] = nulls[i] ? Datum(0) : CStringGetTextDatum(s);
    };
    values[0] = TimestampTzGetDatum(st.last_run);
    nulls[0] = st.last_run == 0;
    text_or_null(1, st.last_error);
    values[2] = TimestampTzGetDatum(st.last_error_at);
    nulls[2] = st.last_error_at == 0;
    values[3] = Int64GetDatum(static_cast<int64>(st.partitions_made));
    values[4] = Int64GetDatum(static_cast<int64>(st.partitions_dropped));
    values[5] = Int64GetDatum(static_cast<int64>(st.bytes_dropped));
    values[6] = Int64GetDatum(static_cast<int64>(st.late_rows_deleted));
    text_or_null(7, st.last_dropped);
    values[8] = Int64GetDatum(static_cast<int64>(st.disk_free_bytes));
    values[9] = Int64GetDatum(static_cast<int64>(st.disk_total_bytes));
    values[10] = Int64GetDatum(static_cast<int64>(st.min_free_disk_bytes));
    values[11] = BoolGetDatum(st.disk_low);
    values[12] = BoolGetDatum(st.writes_paused);
    nulls[8] = nulls[9] = nulls[10] = st.disk_total_bytes == 0;
  }
  if (desc->natts != kColumns)
    ereport(ERROR, (errmsg("ebpf_capture: _storage_state has %d columns, the library %d",
                           desc->natts, kColumns),
                    errhint("Run ALTER EXTENSION ebpf_capture UPDATE.")));
  PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
