// alloc_hooks.h - counts the allocations made while g_counting is set, through
// the sanitizer runtime's allocation hooks (sanitizer/allocator_interface.h,
// which is not installed with the compiler here): the HTTP fuzz targets check
// that the parser never allocates. install_alloc_hooks() once, at start.
#pragma once

#include <cstddef>

#include "fuzz_check.h"

extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));

namespace {

bool g_counting = false;
size_t g_allocations = 0;

void on_malloc(const volatile void*, size_t) {
  if (g_counting) g_allocations++;
}
void on_free(const volatile void*) {}

void install_alloc_hooks() { CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free)); }

}  // namespace
