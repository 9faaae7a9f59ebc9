// otlp_export.h - the PostgreSQL side of span trees and of the OTLP
// exporter: their settings (ebpf_capture.trace_span_ids, ebpf_capture.otlp_*),
// and the worker's glue between its span batches, the outbox table and the
// PostgreSQL-free exporter (extension/export/).
#pragma once

#include "core/trace_links.h"

namespace ebpfc::pg {

extern int g_trace_span_ids;  // sighup: TraceSpanIds

// Defines the settings above (reloadable ones only).
void define_trace_gucs();

// The span id and parent rules the HTTP tracker applies (trace_links.h).
TraceLinksOptions trace_links_options();

}  // namespace ebpfc::pg
