// pg_guard.h - the boundary between C++ and PostgreSQL error handling.
//
// PostgreSQL reports errors with longjmp; C++ with exceptions. Neither may
// cross the other:
//  - every extern "C" entry point runs its C++ body inside entry_guard(),
//    which catches C++ exceptions and re-raises them with ereport(ERROR) only
//    after the exception object is gone;
//  - every PostgreSQL call made from code that owns C++ objects runs inside
//    pg_call(), whose PG_TRY frame catches the PostgreSQL error, restores the
//    memory context and error state, and hands back the message, so no
//    destructor is ever skipped by a longjmp.
// Lambdas given to pg_call() hold no objects with destructors.
#pragma once

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "pg/pg_headers.h"

namespace ebpfc::pg {

// A PostgreSQL error turned into a C++ exception.
class PgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Runs f (PostgreSQL calls only). On a PostgreSQL ERROR, copies its message
// into `message` (and its SQLSTATE into *sqlstate, when given), cleans up
// the error state, returns false. A C++ exception thrown by f is caught
// inside the PG_TRY frame (it must not unwind through it: the frame's saved
// error context would be left behind) and reported the same way, with
// SQLSTATE XX000.
template <typename F>
bool pg_call_noexcept(F&& f, char* message, size_t message_size, int* sqlstate = nullptr) {
  MemoryContext ctx = CurrentMemoryContext;
  volatile bool ok = true;
  PG_TRY();
  {
    try {
      f();
    } catch (const std::bad_alloc&) {
      strlcpy(message, "out of memory in ebpf_capture", message_size);
      ok = false;
    } catch (const std::exception& e) {
      strlcpy(message, e.what(), message_size);
      ok = false;
    } catch (...) {
      strlcpy(message, "unknown C++ exception in ebpf_capture", message_size);
      ok = false;
    }
    if (!ok && sqlstate != nullptr) *sqlstate = ERRCODE_INTERNAL_ERROR;
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(ctx);
    ErrorData* edata = CopyErrorData();
    FlushErrorState();
    strlcpy(message, edata->message ? edata->message : "unknown error", message_size);
    if (sqlstate != nullptr) *sqlstate = edata->sqlerrcode;
    FreeErrorData(edata);
    ok = false;
  }
  PG_END_TRY();
  return ok;
}

// Runs f (PostgreSQL calls only); a PostgreSQL ERROR becomes a PgError.
template <typename F>
void pg_call(F&& f) {
  char message[1024];
  if (!pg_call_noexcept(f, message, sizeof(message))) throw PgError(message);
}

// Runs the C++ body of an extern "C" entry point; a C++ exception becomes
// ereport(ERROR) (`level`: FATAL for a background worker's main function)
// once the exception is destroyed.
template <typename F>
auto entry_guard(F&& f, int level = ERROR) -> decltype(f()) {
  char message[1024];
  message[0] = '\0';
  try {
    return f();
  } catch (const std::bad_alloc&) {
    strlcpy(message, "out of memory in ebpf_capture", sizeof(message));
  } catch (const std::exception& e) {
    strlcpy(message, e.what(), sizeof(message));
  } catch (...) {
    strlcpy(message, "unknown C++ exception in ebpf_capture", sizeof(message));
  }
  ereport(level, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("ebpf_capture: %s", message)));
  pg_unreachable();
}

}  // namespace ebpfc::pg

// Defines the SQL-callable C function `name` (V1 calling convention) whose
// body follows the macro; the body runs inside entry_guard, so a C++
// exception in it becomes an ERROR. Every SQL function of the extension is
// defined this way:
//   EBPFC_SQL_FUNCTION(ebpf_capture_wake) { ...; PG_RETURN_VOID(); }
#define EBPFC_SQL_FUNCTION(name)                                                          \
  static Datum name##_body(FunctionCallInfo fcinfo);                                      \
  extern "C" {                                                                            \
  PG_FUNCTION_INFO_V1(name);                                                              \
  }                                                                                       \
  extern "C" Datum name(PG_FUNCTION_ARGS) {                                               \
    return ::ebpfc::pg::entry_guard([fcinfo]() -> Datum { return name##_body(fcinfo); }); \
  }                                                                                       \
  static Datum name##_body(FunctionCallInfo fcinfo)

// Defines the background worker entry point `name` (bgw_function_name)
// whose body follows; a C++ exception in it ends the worker with FATAL.
#define EBPFC_BGWORKER_MAIN(name)                                 \
  static void name##_body(Datum arg);                             \
  extern "C" PGDLLEXPORT void name(Datum arg);                    \
  void name(Datum arg) {                                          \
    ::ebpfc::pg::entry_guard([arg] { name##_body(arg); }, FATAL); \
  }                                                               \
  static void name##_body(Datum arg)
