// span_attributes.h - the `attributes` object of a TCP connection span.
#pragma once

#include <cstddef>

#include "core/attribute_sink.h"
#include "core/span.h"

namespace ebpfc {

// Emits the span's attributes into a sink.
void tcp_attributes(const Span& span, AttributeSink& out);

}  // namespace ebpfc
