// flow_span.h - turns a finished connection (kernel flow record) into a span.
#pragma once

#include <cstdint>

#include "capture_abi.h"
#include "core/span.h"
#include "core/span_ids.h"
#include "core/wall_clock.h"

namespace ebpfc {

// Builds the span of the connection (key, stats). `reason` overrides the
// kernel's close reason for flows that user space ends (idle, capture stop).
void span_from_flow(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats, CloseReason reason,
                    const WallClock& clock, SpanIdGenerator& ids, Span& out);

// What a sweep of the flows map does with one entry.
enum class SweepAction : uint8_t {
  Open,           // still open and active: kept, and listed when open connections are reported
  Keep,           // closed in the kernel; its ring-buffer event is still due: kept
  ReportClosed,   // closed in the kernel, and its ring-buffer event was lost
  ReportIdle,     // open but silent for the idle timeout
  ReportStopped,  // the capture is ending: report it as it stands
};

struct SweepPolicy {
  uint64_t idle_timeout_ns;
  // A closed entry older than this had its ring-buffer event lost: the event
  // path removes closed entries within one loop iteration.
  uint64_t close_grace_ns;
  bool final_sweep;  // the capture is stopping
  // Hand every Open flow to the sink (FlowSink::flow_open): a report of the
  // connections open now is due.
  bool report_open = false;
};

SweepAction sweep_action(const ebpfc_flow_stats& stats, uint64_t now_ns, const SweepPolicy& policy);

}  // namespace ebpfc
