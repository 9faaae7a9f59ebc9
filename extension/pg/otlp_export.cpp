#include "pg/otlp_export.h"

#include "pg/pg_headers.h"

namespace ebpfc::pg {

int g_trace_span_ids = static_cast<int>(TraceSpanIds::Caller);

namespace {

const struct config_enum_entry kTraceSpanIds[] = {
    {"caller", static_cast<int>(TraceSpanIds::Caller), false},
    {"own", static_cast<int>(TraceSpanIds::Own), false},
    {nullptr, 0, false}};

}  // namespace

void define_trace_gucs() {
  DefineCustomEnumVariable(
      "ebpf_capture.trace_span_ids",
      "The span id of an HTTP exchange that carries trace context: caller (the id its caller "
      "gave the request, the parent inferred from what entered the calling pod) or own (a "
      "fresh id, the caller's id as parent).",
      "Use own when the callers export their own client spans: theirs already have those ids.",
      &g_trace_span_ids, static_cast<int>(TraceSpanIds::Caller), kTraceSpanIds, PGC_SIGHUP, 0,
      nullptr, nullptr, nullptr);
}

TraceLinksOptions trace_links_options() {
  TraceLinksOptions o;
  o.mode = static_cast<TraceSpanIds>(g_trace_span_ids);
  return o;
}

}  // namespace ebpfc::pg
