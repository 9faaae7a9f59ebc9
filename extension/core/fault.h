// fault.h - test-only fault points: a named place in the code that throws
// std::bad_alloc when the tests arm it (ebpf_capture.fault_injection), to
// show that every C++ exception is caught before it could reach C code
// (libbpf, libcurl, PostgreSQL) and ends the worker with a clear error
// instead of std::terminate. Unarmed, a fault point is a load and a branch.
#pragma once

namespace ebpfc::fault {

// Arms the point called `name` (nullptr or "" disarms every point).
void arm(const char* name);

// Throws std::bad_alloc if the point `name` is armed.
void at(const char* name);

}  // namespace ebpfc::fault
