// hub_access.cpp - a node's side of the hub: with ebpf_capture.hub_access
// on, the launcher keeps the role the hub logs in as (ebpf_capture.hub_user)
// able to log in with the password in ebpf_capture.hub_password_file (a
// mounted Kubernetes Secret, re-read every minute) and to read spans and
// the rollup, nothing else (_hub_node_access in the extension script).
// The password reaches SQL only as a SCRAM secret, made here.
#include <string>

#include "kube/kube_time.h"
#include "kube/token_file.h"
#include "pg/catalog.h"
#include "pg/guc.h"
#include "pg/hub.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/transaction.h"

// libpq/scram.h (it pulls in GSSAPI's headers through libpq-be.h).
extern "C" char* pg_be_scram_build_secret(const char* password);

namespace ebpfc::pg {
namespace {

constexpr uint64_t kRecheckNs = 60ull * 1000 * 1000 * 1000;
constexpr uint64_t kRetryNs = 1000ull * 1000 * 1000;

struct Access {
  kube::TokenFile password{""};
  std::string applied;  // role + "\n" + password last applied ("" = nothing, or off)
  bool applied_off = false;
  bool due = true;  // settings changed: apply whatever they say now
  uint64_t next_ns = 0;
  std::string said;  // the last message logged (said once)
};

Access* g_access = nullptr;

void say_once(const std::string& message) {
  if (message == g_access->said) return;
  g_access->said = message;
  ereport(LOG, (errmsg("ebpf_capture: %s", message.c_str())));
}

}  // namespace

void hub_settings_changed() {
  if (g_access != nullptr) g_access->due = true;
}

void hub_access_tick() {
  if (g_access == nullptr) {
    try {
      g_access = new Access();
    } catch (const std::bad_alloc&) {
      return;
    }
  }
  Access& a = *g_access;
  const uint64_t now = kube::Instant::now().mono_ns;
  if (!a.due && now < a.next_ns) return;
  a.next_ns = now + kRecheckNs;
  const bool was_due = a.due;
  a.due = false;
  const std::string role = g_hub_user ? g_hub_user : "";
  if (!g_hub_access) {
    if (a.applied_off) return;  // said once; turned on again it is made anew
  } else {
    const std::string path = g_hub_password_file ? g_hub_password_file : "";
    if (path.empty()) {
      say_once(
          "ebpf_capture.hub_access is on but ebpf_capture.hub_password_file is empty: "
          "the hub's role is not made");
      return;
    }
    if (was_due || a.password.path() != path) a.password = kube::TokenFile(path, kRecheckNs);
    std::string error;
    if (a.password.reload(now, true, &error) == kube::TokenFile::Result::Failed ||
        a.password.token().empty()) {
      say_once("the hub's role: " + (error.empty() ? path + " is empty" : error));
      return;
    }
    if (!was_due && a.applied == role + "\n" + a.password.token()) return;
  }
  const std::string password = g_hub_access ? a.password.token() : "";
  char error[kErrorLen];
  char outcome[32] = "";
  const bool on = g_hub_access;
  const bool ok = in_transaction(
      "ebpf_capture: the hub's role",
      [&] {
        const char* schema = extension_schema_quoted();
        if (schema == nullptr) return;
        if (SPI_execute(psprintf("SELECT pg_catalog.to_regprocedure('%s._hub_node_access(text, "
                                 "text, boolean)') IS NOT NULL",
                                 schema),
                        true, 1) != SPI_OK_SELECT ||
            SPI_processed != 1)
          return;
        bool isnull = false;
        if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
          return;  // an older version of the extension's objects
        Oid types[3] = {TEXTOID, TEXTOID, BOOLOID};
        Datum values[3] = {CStringGetTextDatum(role.c_str()), Datum(0), BoolGetDatum(on)};
        char nulls[3] = {' ', 'n', ' '};
        if (on) {
          values[1] = CStringGetTextDatum(pg_be_scram_build_secret(password.c_str()));
          nulls[1] = ' ';
        }
        if (SPI_execute_with_args(psprintf("SELECT %s._hub_node_access($1, $2, $3)", schema), 3,
                                  types, values, nulls, false, 1) != SPI_OK_SELECT)
          elog(ERROR, "_hub_node_access failed");
        if (SPI_processed == 1) {
          char* v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
          if (v != nullptr) strlcpy(outcome, v, sizeof(outcome));
        }
      },
      error, sizeof(error));
  if (!ok) {
    say_once(std::string("the hub's role: ") + error);
    a.due = true;  // try again on the next pass of the minute
    return;
  }
  if (outcome[0] == '\0') {  // no extension (yet): on, look again in a second
    if (on) a.next_ns = now + kRetryNs;
    return;
  }
  const std::string what = outcome;
  if (what == "foreign") {
    say_once("the role \"" + role +
             "\" (ebpf_capture.hub_user) exists and was not made by ebpf_capture: it is left "
             "as it is, and the hub logs in with whatever it allows");
  } else if (what == "made" || what == "updated") {
    say_once("the hub's role \"" + role + "\" may log in and read spans and the rollup (" + what +
             ")");
  } else if (what == "disabled") {
    say_once("the hub's role \"" + role +
             "\" can no longer log in (ebpf_capture.hub_access "
             "is off)");
  }
  a.applied = on ? role + "\n" + password : "";
  a.applied_off = !on;
}

}  // namespace ebpfc::pg
