#include "capture/packet_capture.h"

#include "capture/capture_checks.h"
#include "capture/link_watch.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "capture.skel.h"
#include "core/fault.h"

namespace ebpfc {

namespace {

// libbpf reports verifier logs and load errors through a print callback; keep
// the last few lines so a failed load can say why. libbpf calls it on the
// thread that loads: the worker's only one.
std::string g_libbpf_log;

// A fault here cannot be reported: the line is lost, and the load goes on.
__attribute__((format(printf, 2, 0))) int libbpf_print(enum libbpf_print_level level,
                                                       const char* fmt, va_list args) {
  char line[512];
  vsnprintf(line, sizeof(line), fmt, args);
  return c_callback(0, nullptr, [&] {
    fault::at("libbpf_print");
    if (level == LIBBPF_DEBUG) return 0;
    g_libbpf_log += line;
    if (g_libbpf_log.size() > 4096) g_libbpf_log.erase(0, g_libbpf_log.size() - 4096);
    return 0;
  });
}

std::string take_libbpf_log() {
  std::string out;
  out.swap(g_libbpf_log);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string errno_text(int err) { return std::string(strerror(err)); }

[[noreturn]] void fail(const std::string& what, int err, const std::string& hint = "") {
  std::string msg = what + ": " + errno_text(err);
  if (!hint.empty()) msg += " (" + hint + ")";
  throw CaptureError(msg);
}

// Listens to nothing: the ports of the first list are opened once the
// filter is loaded.
class NoPortListener final : public PortListener {
 public:
  void port_added(int) override {}
  void port_removed(int) override {}
};

}  // namespace

PacketCapture::PacketCapture(const CaptureOptions& options) : options_(options) {
  const std::string problem = capture_target_problem(options.interface);
  if (!problem.empty()) throw CaptureError(problem);
  target_ = options.interface;
  NoPortListener none;
  if (target_ == kAutoTarget) {
    LinkWatch probe(PortRule{}, none, 5000, true);
    const AutoChoice choice = choose_capture_target(probe.dump_links());
    if (choice.target.empty())
      throw CaptureError("auto: " + choice.why +
                         "; start the capture on the pod bridge or a pattern of the pods' "
                         "interfaces instead, e.g. capture_start('cali*')");
    target_ = choice.target;
    auto_why_ = choice.why;
  }

  unsigned ifindex = 0;
  if (is_interface_pattern(target_)) {
    mode_ = Mode::Routed;
    watch_ = std::make_unique<LinkWatch>(PortRule::routed(target_), none);
  } else {
    ifindex = if_nametoindex(target_.c_str());
    if (ifindex == 0) throw CaptureError("interface \"" + target_ + "\" does not exist");
    if (options.bridge_ports) {
      watch_ = std::make_unique<LinkWatch>(PortRule::bridge_ports(static_cast<int>(ifindex)), none);
      if (watch_->is_bridge())
        mode_ = Mode::BridgePorts;
      else
        watch_.reset();  // one socket on the device, as below
    }
  }

  // libbpf's callback type carries no format attribute for GCC to match.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsuggest-attribute=format"
  libbpf_set_print(libbpf_print);
#pragma GCC diagnostic pop
  take_libbpf_log();

  skel_.reset(capture_bpf__open());
  if (!skel_) fail("cannot open the embedded BPF object", errno);
  skel_->rodata->send_payload = options.http ? 1 : 0;
  skel_->rodata->send_pgsql = options.pgsql ? 1 : 0;
  skel_->rodata->send_redis = options.redis ? 1 : 0;
  // The kernel wakes the reader only once a sixteenth of the ring buffer is
  // waiting; below that, the reader's own periodic drain picks events up. A
  // forced wake-up costs the CPU that sends the event an interrupt and the
  // reader a context switch; at the worker's drain period (20 ms) it is only
  // reached at tens of MB of events a second.
  skel_->rodata->wakeup_bytes =
      std::max<__u64>(options.ring_buffer_bytes / 16, sizeof(ebpfc_event));
  skel_->rodata->bridge_ifindex = mode_ == Mode::BridgePorts ? ifindex : 0;
  skel_->rodata->routed = mode_ == Mode::Routed ? 1 : 0;
  skel_->rodata->max_half_open_per_source = options.max_half_open_per_source;
  skel_->rodata->half_open_window_ns = options.half_open_window_ns;
  if (bpf_map__set_max_entries(skel_->maps.flows, options.flow_table_size) != 0 ||
      bpf_map__set_max_entries(skel_->maps.l7_control, options.flow_table_size) != 0 ||
      bpf_map__set_max_entries(skel_->maps.events, options.ring_buffer_bytes) != 0) {
    fail("cannot size the BPF maps", errno);
  }
  if (capture_bpf__load(skel_.get()) != 0) {
    int err = errno;
    std::string log = take_libbpf_log();
    std::string msg = "cannot load the BPF socket filter: " + errno_text(err);
    if (err == EPERM)
      msg +=
          " (the server process lacks CAP_BPF: start it with setpriv --ambient-caps "
          "+bpf,+net_raw,+net_admin,+perfmon, or setcap cap_bpf,cap_net_raw,cap_net_admin,"
          "cap_perfmon+ep on the postgres binary)";
    if (!log.empty()) msg += "; libbpf: " + log;
    throw CaptureError(msg);
  }
  flows_fd_ = bpf_map__fd(skel_->maps.flows);
  counters_fd_ = bpf_map__fd(skel_->maps.counters);
  l7_control_fd_ = bpf_map__fd(skel_->maps.l7_control);
  prog_fd_ = bpf_program__fd(skel_->progs.ebpfc_socket_filter);

  // From here a failure throws and the members close what was opened.
  if (mode_ != Mode::Routed) sock_ = open_socket(ifindex, false);
  if (mode_ == Mode::Device && options.promiscuous) {
    // A bridge passes frames forwarded between its ports up to packet
    // sockets on the bridge device only while it is promiscuous.
    packet_mreq mreq{};
    mreq.mr_ifindex = static_cast<int>(ifindex);
    mreq.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(sock_.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0)
      fail("cannot make \"" + target_ + "\" promiscuous", errno);
  }
  if (watch_)
    for (int port : watch_->tracker().ports()) port_added(port);

  ring_.reset(
      ring_buffer__new(bpf_map__fd(skel_->maps.events), &PacketCapture::on_event, this, nullptr));
  if (!ring_) fail("cannot map the BPF ring buffer", errno);

  // One fd for the worker to wait on: the ring buffer and, on a bridge or
  // a pattern, the link notifications.
  epoll_fd_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_.valid()) fail("cannot create an epoll instance", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, bpf_map__fd(skel_->maps.events), &ev) != 0)
    fail("cannot watch the BPF ring buffer", errno);
  if (watch_ && epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, watch_->fd(), &ev) != 0)
    fail("cannot watch link notifications", errno);

  closed_keys_.reserve(1024);
  sweep_keys_.resize(options.flow_table_size);
  sweep_values_.resize(options.flow_table_size);
  sweep_delete_.reserve(options.flow_table_size);
  const int cpus = libbpf_num_possible_cpus();
  percpu_.resize(cpus > 0 ? static_cast<size_t>(cpus) : 1);
}

PacketCapture::~PacketCapture() = default;

void PacketCapture::SkeletonDeleter::operator()(capture_bpf* skel) const noexcept {
  capture_bpf__destroy(skel);
}

void PacketCapture::RingBufferDeleter::operator()(ring_buffer* ring) const noexcept {
  ring_buffer__free(ring);
}

UniqueFd PacketCapture::open_socket(unsigned ifindex, bool ignore_outgoing) {
  // A socket with protocol 0 receives nothing until bound: attach the filter
  // first, so no unfiltered frame is ever queued.
  UniqueFd fd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid())
    fail("cannot open an AF_PACKET socket", errno,
         errno == EPERM ? "the server process lacks CAP_NET_RAW: grant it with setpriv "
                          "--ambient-caps +net_raw,... or setcap cap_net_raw+ep"
                        : "");
  if (setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_BPF, &prog_fd_, sizeof(prog_fd_)) != 0)
    fail("cannot attach the socket filter (SO_ATTACH_BPF)", errno);
  const int one = 1;
  if (ignore_outgoing &&
      setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0)
    fail("cannot ignore outgoing frames (PACKET_IGNORE_OUTGOING)", errno);
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    char name[IF_NAMESIZE] = "?";
    if_indextoname(ifindex, name);
    fail("cannot bind the packet socket to \"" + std::string(name) + "\"", errno);
  }
  return fd;
}

void PacketCapture::port_added(int ifindex) {
  if (port_socks_.count(ifindex)) return;
  try {
    // A bridge port's socket sees what the pod sends; a routed pod
    // interface's both directions (the filter sorts them out).
    port_socks_.emplace(ifindex,
                        open_socket(static_cast<unsigned>(ifindex), mode_ != Mode::Routed));
  } catch (const CaptureError& e) {
    // Most often the device went away before we got to it (its removal is
    // the next notification); the capture goes on without it.
    port_failures_++;
    port_errors_[ifindex] = watch_->tracker().port_name(ifindex) + " (" + e.what() + ")";
    port_errors_generation_++;
  }
}

void PacketCapture::port_removed(int ifindex) {
  if (port_errors_.erase(ifindex) > 0) port_errors_generation_++;
  auto it = port_socks_.find(ifindex);
  if (it == port_socks_.end()) return;
  read_socket_stats(it->second.get());
  port_socks_.erase(it);
}

uint64_t PacketCapture::links_generation() const {
  return port_errors_generation_ + (watch_ ? watch_->tracker().generation() : 0);
}

CaptureLinks PacketCapture::links() const {
  CaptureLinks out;
  out.mode = mode_ == Mode::Routed        ? "routed"
             : mode_ == Mode::BridgePorts ? "bridge_ports"
                                          : "device";
  out.target = target_;
  out.why = auto_why_;
  if (mode_ != Mode::Routed) out.attached.push_back(target_);
  std::vector<std::string> ports;
  for (const auto& port : port_socks_) ports.push_back(watch_->tracker().port_name(port.first));
  std::sort(ports.begin(), ports.end());
  out.attached.insert(out.attached.end(), ports.begin(), ports.end());
  for (const auto& e : port_errors_) out.failed.push_back(e.second);
  std::sort(out.failed.begin(), out.failed.end());
  if (watch_)
    for (const auto& s : watch_->tracker().skipped()) out.skipped.push_back(s.second);
  std::sort(out.skipped.begin(), out.skipped.end());
  return out;
}

int PacketCapture::on_event(void* ctx, void* data, size_t size) {
  auto* self = static_cast<PacketCapture*>(ctx);
  // libbpf's frames are C: a C++ exception must stop here. A negative return
  // ends ring_buffer__consume, and drain() reports what was caught.
  return c_callback(-1, &self->callback_error_, [&] { return self->take_event(data, size); });
}

int PacketCapture::take_event(void* data, size_t size) {
  fault::at("ring_buffer_callback");
  PacketCapture* self = this;
  uint32_t type = 0;
  if (size < sizeof(type)) return 0;
  std::memcpy(&type, data, sizeof(type));
  if (type == EBPFC_EVENT_FLOW_CLOSED && size >= sizeof(ebpfc_event)) {
    ebpfc_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    self->sink_->flow_ended(ev.key, ev.stats, CloseReason::None);
    // The filter removed the entry itself, or a newer connection holds it.
    if (!(ev.flags & (EBPFC_EVENT_KEEP_ENTRY | EBPFC_EVENT_ENTRY_REMOVED)))
      self->closed_keys_.push_back(ev.key);
    self->drained_++;
  } else if (type == EBPFC_EVENT_FLOW_RESTARTED && size >= sizeof(ebpfc_event)) {
    // A new connection took over a closed entry: if this drain was going to
    // remove it (its close event came earlier in the ring buffer), don't.
    ebpfc_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    auto& keys = self->closed_keys_;
    for (size_t i = keys.size(); i-- > 0;) {
      if (std::memcmp(&keys[i], &ev.key, sizeof(ev.key)) == 0) {
        keys[i] = keys.back();
        keys.pop_back();
        break;
      }
    }
  } else if (type == EBPFC_EVENT_PAYLOAD && size >= EBPFC_PAYLOAD_HEADER_LEN) {
    // Records are variable-length: trust data_len only as far as the record goes.
    const auto* head = static_cast<const ebpfc_payload_event*>(data);
    if (head->data_len <= size - EBPFC_PAYLOAD_HEADER_LEN && head->data_len <= EBPFC_PAYLOAD_MAX)
      self->sink_->payload(*head);
  }
  return 0;
}

void PacketCapture::delete_batch(int map_fd, std::vector<ebpfc_flow_key>& keys) {
  // BPF_MAP_DELETE_BATCH stops at the first key that is not there; skip it
  // and go on.
  size_t done = 0;
  while (done < keys.size()) {
    __u32 count = static_cast<__u32>(keys.size() - done);
    int rc = bpf_map_delete_batch(map_fd, keys.data() + done, &count, nullptr);
    done += count;
    if (rc != 0 && count == 0) done++;
  }
  keys.clear();
}

void PacketCapture::set_l7_control(const ebpfc_flow_key& key, const ebpfc_l7_control& control) {
  control_keys_.push_back(key);
  control_values_.push_back(control);
}

void PacketCapture::clear_l7_control(const ebpfc_flow_key& key) { control_deletes_.push_back(key); }

void PacketCapture::apply_l7_control() {
  if (!control_keys_.empty()) {
    __u32 count = static_cast<__u32>(control_keys_.size());
    // Best effort: a full map only means the filter keeps sending body heads.
    (void)bpf_map_update_batch(l7_control_fd_, control_keys_.data(), control_values_.data(), &count,
                               nullptr);
    control_keys_.clear();
    control_values_.clear();
  }
  if (!control_deletes_.empty()) delete_batch(l7_control_fd_, control_deletes_);
}

size_t PacketCapture::drain(FlowSink& sink) {
  if (watch_) watch_->poll(*this);
  sink_ = &sink;
  drained_ = 0;
  callback_error_.clear();
  int rc = ring_buffer__consume(ring_.get());
  sink_ = nullptr;
  if (callback_error_.caught)
    throw CaptureError(std::string("while reading the ring buffer: ") + callback_error_.message);
  if (rc < 0) fail("cannot read the BPF ring buffer", -rc);
  if (!closed_keys_.empty()) delete_batch(flows_fd_, closed_keys_);
  apply_l7_control();
  return drained_;
}

size_t PacketCapture::sweep(const SweepPolicy& policy, FlowSink& sink) {
  const uint64_t now = WallClock::monotonic_ns();
  size_t reported = 0;
  size_t seen = 0;
  ebpfc_flow_key token{};
  bool first = true;
  for (;;) {
    __u32 count = static_cast<__u32>(sweep_keys_.size() - seen);
    if (count == 0) break;
    int rc =
        bpf_map_lookup_batch(flows_fd_, first ? nullptr : &token, &token, sweep_keys_.data() + seen,
                             sweep_values_.data() + seen, &count, nullptr);
    int err = rc < 0 ? errno : 0;
    seen += count;
    first = false;
    if (rc < 0) {
      if (err == ENOENT) break;  // walked the whole map
      fail("cannot read the flows map", err);
    }
  }
  flows_tracked_ = seen;
  for (size_t i = 0; i < seen; i++) {
    const ebpfc_flow_stats& st = sweep_values_[i];
    switch (sweep_action(st, now, policy)) {
      case SweepAction::Open:
        if (policy.report_open) sink.flow_open(sweep_keys_[i], st);
        continue;
      case SweepAction::Keep:
        continue;
      case SweepAction::ReportClosed:
        sink.flow_ended(sweep_keys_[i], st, CloseReason::None);
        break;
      case SweepAction::ReportIdle:
        sink.flow_ended(sweep_keys_[i], st, CloseReason::Idle);
        break;
      case SweepAction::ReportStopped:
        sink.flow_ended(sweep_keys_[i], st, CloseReason::CaptureStopped);
        break;
    }
    sweep_delete_.push_back(sweep_keys_[i]);
    reported++;
  }
  if (!sweep_delete_.empty()) delete_batch(flows_fd_, sweep_delete_);
  return reported;
}

CaptureCounters PacketCapture::counters() {
  CaptureCounters out;
  __u32 zero = 0;
  // A per-CPU value is read as one struct per possible CPU.
  if (bpf_map_lookup_elem(counters_fd_, &zero, percpu_.data()) == 0) {
    for (const auto& c : percpu_) {
      const __u64* src = reinterpret_cast<const __u64*>(&c);
      __u64* dst = reinterpret_cast<__u64*>(&out.filter);
      for (size_t k = 0; k < sizeof(ebpfc_counters) / sizeof(__u64); k++) dst[k] += src[k];
    }
  }
  if (sock_.valid()) read_socket_stats(sock_.get());
  for (const auto& port : port_socks_) read_socket_stats(port.second.get());
  out.socket_drops = socket_drops_;
  out.ports = static_cast<uint32_t>(port_socks_.size());
  out.port_failures = port_failures_;
  out.port_resyncs = watch_ ? watch_->resyncs() : 0;
  return out;
}

void PacketCapture::read_socket_stats(int fd) {
  tpacket_stats st{};
  socklen_t len = sizeof(st);
  // PACKET_STATISTICS resets on read: accumulate.
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    socket_drops_ += st.tp_drops;
  }
}

}  // namespace ebpfc
