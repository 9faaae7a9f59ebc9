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
// into `message`, cleans up the error state, returns false.
template <typename F>
bool pg_call_noexcept(F&& f, char* message, size_t message_size) {
  MemoryContext ctx = CurrentMemoryContext;
  volatile bool ok = true;
  PG_TRY();
  { f(); }
  PG_CATCH();
  {
    MemoryContextSwitchTo(ctx);
    ErrorData* edata = CopyErrorData();
    FlushErrorState();
    strlcpy(message, edata->message ? edata->message : "unknown error", message_size);
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
// ereport(ERROR) once the exception is destroyed.
template <typename F>
auto entry_guard(F&& f) -> decltype(f()) {
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
  ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s", message)));
  pg_unreachable();
}

}  // namespace ebpfc::pg
