// span_attributes.h - the `attributes` object of a TCP connection span.
#pragma once

#include <cstddef>

#include "core/attribute_sink.h"
#include "core/span.h"

namespace ebpfc {

// Emits the span's attributes into a sink.
void tcp_attributes(const Span& span, AttributeSink& out);

// The same as a JSON object text in buf (NUL-terminated). Returns the length
// written, or 0 if buf is too small (kAttributesMax is always enough).
constexpr size_t kAttributesMax = 400;
size_t format_tcp_attributes(const Span& span, char* buf, size_t size);

}  // namespace ebpfc
