#include "core/fault.h"

#include <cstring>
#include <new>

namespace ebpfc::fault {
namespace {

char g_armed[64] = "";

}  // namespace

void arm(const char* name) {
  if (name == nullptr) name = "";
  std::strncpy(g_armed, name, sizeof(g_armed) - 1);
  g_armed[sizeof(g_armed) - 1] = '\0';
}

void at(const char* name) {
  if (g_armed[0] != '\0' && std::strcmp(g_armed, name) == 0) throw std::bad_alloc();
}

}  // namespace ebpfc::fault
