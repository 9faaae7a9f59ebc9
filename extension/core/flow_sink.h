// flow_sink.h - what the capture hands to user space, one call per event.
#pragma once

#include "capture_abi.h"
#include "core/span.h"

namespace ebpfc {

// Receives what the kernel reports, in the order user space learns of it:
// connections that ended, and the payload heads of (possibly) HTTP
// connections. The payload's data points into the ring buffer and is valid
// only during the call.
class FlowSink {
 public:
  virtual ~FlowSink() = default;
  virtual void flow_ended(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats,
                          CloseReason reason) = 0;
  virtual void payload(const ebpfc_payload_event& head) = 0;
  // A connection that is still open, as it stands (sweeps that report them).
  virtual void flow_open(const ebpfc_flow_key& key, const ebpfc_flow_stats& stats) = 0;
};

}  // namespace ebpfc
