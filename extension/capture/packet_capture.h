// packet_capture.h - the kernel side of one capture, seen from user space:
// the AF_PACKET socket on the interface, the socket filter (embedded BPF
// object), its flows map and its ring buffer.
//
// Plain C++: no PostgreSQL headers. Errors are CaptureError exceptions whose
// message says what failed and what to do about it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "capture/link_messages.h"
#include "capture_abi.h"
#include "core/c_boundary.h"
#include "core/flow_sink.h"
#include "core/flow_span.h"
#include "core/http_tracker.h"
#include "core/unique_fd.h"

struct capture_bpf;
struct ring_buffer;

namespace ebpfc {

// A sixteenth of the flows map (at least 64 connections): one pod flooding
// SYNs holds at most two windows' worth, an eighth of the map.
inline uint32_t max_half_open_share(uint32_t flow_table_size) {
  return flow_table_size / 16 > 64 ? flow_table_size / 16 : 64;
}

class CaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CaptureOptions {
  // What to capture: an interface's name; a shell-style pattern of the
  // routed pod interfaces to capture ("cali*": see PacketCapture); or "auto"
  // (choose_capture_target: a bridge with veth ports, or routed pod
  // interfaces sharing a known prefix).
  std::string interface;
  // On a bridge: capture where frames enter it, at each of its ports (and
  // what the host sends out through the bridge device), instead of making
  // the bridge promiscuous. See PacketCapture.
  bool bridge_ports = true;
  // Otherwise (or when the interface is not a bridge): join it promiscuously.
  bool promiscuous = true;
  uint32_t flow_table_size = 65536;  // entries in the flows map
  // One source's share of the flows map: connections it opened whose
  // handshake has not completed, per window (capture.bpf.c, sources); 0: no
  // cap. max_half_open_share() is the worker's choice.
  uint32_t max_half_open_per_source = 0;
  uint64_t half_open_window_ns = 60'000'000'000ull;
  uint32_t ring_buffer_bytes = 16u << 20;  // power of two, >= page size
  // Send the payload heads of HTTP connections (FlowSink::payload).
  bool http = false;
  // Send the payload of PostgreSQL connections (FlowSink::payload, l7 PGSQL).
  bool pgsql = false;
  // Send the payload of Redis connections (FlowSink::payload, l7 REDIS).
  bool redis = false;
};

// Kernel-side counters: the filter's per-CPU counters summed, plus the
// frames the packet sockets dropped (PACKET_STATISTICS, cumulative).
struct CaptureCounters {
  ebpfc_counters filter{};
  uint64_t socket_drops = 0;
  uint32_t ports = 0;          // bridge ports or routed pod interfaces captured at
  uint64_t port_failures = 0;  // ports whose socket could not be opened
  uint64_t port_resyncs = 0;   // times link notifications were lost and the links listed again
};

class LinkWatch;

// Where a capture is attached, for capture_status().
struct CaptureLinks {
  const char* mode = "";              // "bridge_ports", "device" or "routed"
  std::string target;                 // the device or pattern captured ("auto": what it chose)
  std::string why;                    // "auto": what it found
  std::vector<std::string> attached;  // interface names, sorted
  std::vector<std::string> failed;    // "name (error)": could not be attached
  std::vector<std::string> skipped;   // "name (why)": the pattern matched, not a pod interface
};

// One capture. On a device that is not a bridge (or with bridge_ports off) it
// is one packet socket on the device, promiscuous if asked. On a bridge with
// bridge_ports on it sees every frame once, where it enters the bridge:
//   - one socket per port (a pod's veth, ...) with PACKET_IGNORE_OUTGOING:
//     frames a pod sends, to another pod or to the host;
//   - the socket on the bridge device, whose filter keeps only outgoing
//     frames: what the host sends to pods.
// The bridge is then never promiscuous, so frames it forwards between ports
// are not also cloned up the host's stack.
// With a pattern (no bridge: Calico, Cilium, ...) it is one socket per routed
// pod interface whose name matches (routed_skip_reason says which are), each
// seeing both directions; the filter counts a frame between two pods where it
// leaves the sender's pod and not again where it goes out to the receiver's
// (ebpfc_routed_copy in bpf/flow_account.h).
// Ports and pod interfaces are followed through rtnetlink (LinkWatch) as pods
// come and go; a new one is captured from the moment its notification is read
// (within one wake-up of the worker).
class PacketCapture final : public PayloadControl, private PortListener {
 public:
  explicit PacketCapture(const CaptureOptions& options);
  ~PacketCapture() override;
  PacketCapture(const PacketCapture&) = delete;
  PacketCapture& operator=(const PacketCapture&) = delete;

  // Readable when the ring buffer holds events or ports changed.
  int event_fd() const { return epoll_fd_.get(); }

  // Whether the capture is at the bridge's ports (not promiscuous).
  bool at_bridge_ports() const { return mode_ == Mode::BridgePorts; }
  // Whether it is at routed pod interfaces (a pattern).
  bool routed() const { return mode_ == Mode::Routed; }

  // Where it is attached now, and a number that changes whenever that does.
  CaptureLinks links() const;
  uint64_t links_generation() const;

  // Consumes every event in the ring buffer, hands each closed flow to sink,
  // then removes those flows from the map in one batch; also follows port
  // changes. Returns the number of flows reported.
  size_t drain(FlowSink& sink);

  // Walks the flows map: reports and removes idle flows and closed flows whose
  // event was lost (or, on the final sweep, everything), and hands the open
  // ones to sink.flow_open if policy.report_open. Returns the number of flows
  // reported ended.
  size_t sweep(const SweepPolicy& policy, FlowSink& sink);

  // Tells the filter where the parser of connection `key` wants payload again
  // (applied in one batch at the end of the current or next drain).
  void set_l7_control(const ebpfc_flow_key& key, const ebpfc_l7_control& control) override;
  // Forgets the control entry of a connection the parser no longer follows.
  void clear_l7_control(const ebpfc_flow_key& key) override;

  // Number of entries the last sweep saw in the flows map.
  size_t flows_tracked() const { return flows_tracked_; }

  CaptureCounters counters();

 private:
  static int on_event(void* ctx, void* data, size_t size);
  int take_event(void* data, size_t size);
  void delete_batch(int map_fd, std::vector<ebpfc_flow_key>& keys);
  void apply_l7_control();
  // Opens a packet socket on ifindex with the filter attached.
  UniqueFd open_socket(unsigned ifindex, bool ignore_outgoing);
  void read_socket_stats(int fd);
  void port_added(int ifindex) override;
  void port_removed(int ifindex) override;

  // The loaded skeleton and the ring buffer over its events map free
  // themselves (capture_bpf__destroy, ring_buffer__free); the ring is
  // declared after the skeleton so it goes first.
  struct SkeletonDeleter {
    void operator()(capture_bpf* skel) const noexcept;
  };
  struct RingBufferDeleter {
    void operator()(ring_buffer* ring) const noexcept;
  };

  enum class Mode { Device, BridgePorts, Routed };

  CaptureOptions options_;
  Mode mode_ = Mode::Device;
  std::string target_;  // the device or pattern (options_.interface, or what "auto" chose)
  std::string auto_why_;
  std::unique_ptr<capture_bpf, SkeletonDeleter> skel_;
  std::unique_ptr<ring_buffer, RingBufferDeleter> ring_;
  UniqueFd sock_;  // on the device (not in routed mode)
  UniqueFd epoll_fd_;
  int prog_fd_ = -1;  // the skeleton's
  std::unique_ptr<LinkWatch> watch_;
  std::map<int, UniqueFd> port_socks_;      // ifindex -> packet socket
  std::map<int, std::string> port_errors_;  // ifindex -> "name (error)"
  uint64_t port_failures_ = 0;
  uint64_t port_errors_generation_ = 0;
  int flows_fd_ = -1;
  int counters_fd_ = -1;
  int l7_control_fd_ = -1;
  FlowSink* sink_ = nullptr;      // set only during drain()
  CallbackError callback_error_;  // what on_event caught during drain()
  size_t drained_ = 0;
  size_t flows_tracked_ = 0;
  uint64_t socket_drops_ = 0;
  std::vector<ebpfc_flow_key> closed_keys_;  // filled by drain(), reused
  std::vector<ebpfc_flow_key> sweep_keys_;   // buffers for sweep(), reused
  std::vector<ebpfc_flow_stats> sweep_values_;
  std::vector<ebpfc_flow_key> sweep_delete_;
  std::vector<ebpfc_counters> percpu_;
  std::vector<ebpfc_flow_key> control_keys_;  // pending l7_control updates
  std::vector<ebpfc_l7_control> control_values_;
  std::vector<ebpfc_flow_key> control_deletes_;
};

}  // namespace ebpfc
