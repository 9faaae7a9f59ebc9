// c_boundary.h - the one way C++ code hands control back to C: every
// callback given to a C library (libbpf, libcurl) runs its body through
// c_callback(), which catches every C++ exception (it must never unwind
// through C frames: that is std::terminate, a SIGABRT, and a restart of the
// whole PostgreSQL cluster) and returns the callback's error value instead.
// The message is kept in `error` for the C++ caller on the other side of the
// C library to report.
#pragma once

#include <cstring>
#include <exception>
#include <new>

namespace ebpfc {

// What a callback caught, for the code that called into the C library.
struct CallbackError {
  bool caught = false;
  char message[256] = "";

  void set(const char* what) {
    caught = true;
    std::strncpy(message, what, sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
  }
  void clear() {
    caught = false;
    message[0] = '\0';
  }
};

// Runs body() and returns what it returns; a C++ exception becomes
// `on_error` (and is noted in *error when given).
template <class R, class Body>
R c_callback(R on_error, CallbackError* error, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    if (error != nullptr) error->set("out of memory");
  } catch (const std::exception& e) {
    if (error != nullptr) error->set(e.what());
  } catch (...) {
    if (error != nullptr) error->set("unknown C++ exception");
  }
  return on_error;
}

}  // namespace ebpfc
