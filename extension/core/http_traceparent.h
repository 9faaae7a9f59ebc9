// http_traceparent.h - W3C Trace Context: the traceparent header.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

struct TraceParent {
  uint8_t trace_id[16];
  uint8_t parent_id[8];
  uint8_t flags;
};

// Parses a traceparent value (surrounding whitespace already removed):
// version 00 only, exactly "00-<32 hex>-<16 hex>-<2 hex>" in lowercase hex,
// trace id and parent id not all zero. Returns false (out unspecified) for
// anything else.
bool parse_traceparent(const char* value, size_t len, TraceParent* out);

}  // namespace ebpfc
