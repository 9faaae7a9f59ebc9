// span_attributes.h - the `attributes` JSON object of a TCP connection span.
#pragma once

#include <cstddef>

#include "core/span.h"

namespace ebpfc {

// Writes the span's attributes as a JSON object into buf (NUL-terminated).
// Returns the length written, or 0 if buf is too small (kAttributesMax is
// always enough).
constexpr size_t kAttributesMax = 320;
size_t format_tcp_attributes(const Span& span, char* buf, size_t size);

}  // namespace ebpfc
