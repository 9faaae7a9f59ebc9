// filter_harness.h - the capture's socket filter loaded from its embedded
// object into this machine's kernel and fed frames with BPF_PROG_TEST_RUN:
// no socket, no network, no PostgreSQL, but the real verifier, the real maps
// and the real ring buffer.
//
// Used by the filter's tests (tests/filter) and its benchmark
// (bench/filter_bench.cpp). Needs CAP_BPF.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "capture.skel.h"
#include "capture_abi.h"
#include "frame_builder.h"

namespace ebpfc_test {

// One frame of a replayed connection, ready for BPF_PROG_TEST_RUN.
struct ReplayFrame {
  Bytes data;  // a 14-byte throwaway header, then the Ethernet frame
  int sender;  // 0: the client, 1: the server
};

constexpr uint8_t kReplayFin = 0x01, kReplaySyn = 0x02, kReplayRst = 0x04, kReplayPsh = 0x08,
                  kReplayAck = 0x10;

// A TCP/IPv4 frame between 10.77.0.1:cport (the client) and 10.77.0.2:80.
inline ReplayFrame replay_frame(bool from_client, uint16_t cport, uint32_t seq, uint32_t ack,
                                uint8_t flags, const Bytes& payload, uint16_t window = 65535) {
  Ipv4Spec ip;
  TcpSpec t;
  ip.src = from_client ? Ip4{10, 77, 0, 1} : Ip4{10, 77, 0, 2};
  ip.dst = from_client ? Ip4{10, 77, 0, 2} : Ip4{10, 77, 0, 1};
  t.sport = from_client ? cport : 80;
  t.dport = from_client ? 80 : cport;
  t.seq = seq;
  t.ack = ack;
  t.flags = flags;
  t.window = window;
  t.payload = payload;
  // BPF_PROG_TEST_RUN hands a socket filter the frame after eth_type_trans()
  // has pulled an Ethernet header, as if at the network layer; a packet
  // socket runs it from the MAC header. So a throwaway header goes first.
  Bytes out(14, 0);
  out[12] = 0x08;
  Bytes eth = tcp4_frame(ip, t);
  out.insert(out.end(), eth.begin(), eth.end());
  return ReplayFrame{std::move(out), from_client ? 0 : 1};
}

// ... carrying `payload` bytes of filler.
inline ReplayFrame replay_frame(bool from_client, uint16_t cport, uint32_t seq, uint32_t ack,
                                uint8_t flags, size_t payload, uint16_t window = 65535) {
  return replay_frame(from_client, cport, seq, ack, flags, payload_of(payload), window);
}

// Byte counts of short_connection().
constexpr uint64_t kReplayRequest = 61, kReplayResponse = 178;

// An HTTP request and response of exactly those lengths (for a filter that
// sends HTTP payload heads).
inline Bytes replay_http_payload(bool request) {
  std::string text;
  if (request) {
    const std::string start = "GET / HTTP/1.1\r\nHost: pod2\r\nX-Pad: ";
    text = start + std::string(kReplayRequest - start.size() - 4, 'p') + "\r\n\r\n";
  } else {
    const std::string start = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Pad: ";
    text = start + std::string(kReplayResponse - start.size() - 4 - 100, 'p') + "\r\n\r\n" +
           std::string(100, 'b');
  }
  return Bytes(text.begin(), text.end());
}

// A short HTTP/1.1 exchange with "Connection: close", closed the way nginx
// closes it (server FIN first): SYN, SYN-ACK, ACK, request, ACK, response,
// FIN, ACK, FIN, ACK. The last frame closes the flow.
// With http, the payloads are replay_http_payload()'s.
inline void short_connection(std::vector<ReplayFrame>& out, uint16_t cport, uint32_t c = 1000,
                             uint32_t s = 5000, bool http = false) {
  const uint32_t req = kReplayRequest, resp = kReplayResponse;
  out.push_back(replay_frame(true, cport, c, 0, kReplaySyn, 0));
  out.push_back(replay_frame(false, cport, s, c + 1, kReplaySyn | kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1, s + 1, kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1, s + 1, kReplayPsh | kReplayAck,
                             http ? replay_http_payload(true) : payload_of(req)));
  out.push_back(replay_frame(false, cport, s + 1, c + 1 + req, kReplayAck, 0));
  out.push_back(replay_frame(false, cport, s + 1, c + 1 + req, kReplayPsh | kReplayAck,
                             http ? replay_http_payload(false) : payload_of(resp)));
  out.push_back(replay_frame(false, cport, s + 1 + resp, c + 1 + req, kReplayFin | kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1 + req, s + 2 + resp, kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1 + req, s + 2 + resp, kReplayFin | kReplayAck, 0));
  out.push_back(replay_frame(false, cport, s + 2 + resp, c + 2 + req, kReplayAck, 0));
}

inline Bytes text_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// A connection that carries `request` and `response` (any bytes), opened by
// a handshake and closed by FINs like short_connection(); the request and
// the response are one segment each.
inline void exchange_connection(std::vector<ReplayFrame>& out, uint16_t cport,
                                const std::string& request, const std::string& response,
                                uint32_t c = 1000, uint32_t s = 5000) {
  const uint32_t req = static_cast<uint32_t>(request.size());
  const uint32_t resp = static_cast<uint32_t>(response.size());
  out.push_back(replay_frame(true, cport, c, 0, kReplaySyn, 0));
  out.push_back(replay_frame(false, cport, s, c + 1, kReplaySyn | kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1, s + 1, kReplayAck, 0));
  out.push_back(
      replay_frame(true, cport, c + 1, s + 1, kReplayPsh | kReplayAck, text_bytes(request)));
  out.push_back(replay_frame(false, cport, s + 1, c + 1 + req, kReplayPsh | kReplayAck,
                             text_bytes(response)));
  out.push_back(replay_frame(false, cport, s + 1 + resp, c + 1 + req, kReplayFin | kReplayAck, 0));
  out.push_back(replay_frame(true, cport, c + 1 + req, s + 2 + resp, kReplayFin | kReplayAck, 0));
  out.push_back(replay_frame(false, cport, s + 2 + resp, c + 2 + req, kReplayAck, 0));
}

// The filter, loaded; destroyed with the object.
class LoadedFilter {
 public:
  struct Options {
    uint32_t flow_table_size = 1024;
    uint32_t ring_buffer_bytes = 1u << 20;
    bool early_return = false;  // returns at its first test (the harness's own cost)
    bool http = false;          // send payload heads of HTTP connections
    // one source's share of the flows map (0: none): what the worker sets
    // for a table of flow_table_size entries (max_half_open_share)
    uint32_t max_half_open_per_source = 64;
    bool pgsql = false;   // send the payload of PostgreSQL connections
    bool routed = false;  // at routed pod interfaces (capture_start('cali*'))
    bool redis = false;   // send the payload of Redis connections
  };

  explicit LoadedFilter(const Options& o) {
    skel_ = capture_bpf__open();
    if (!skel_) throw std::runtime_error("cannot open the embedded BPF object");
    // BPF_PROG_TEST_RUN runs on the loopback device (ifindex 1) and its
    // frames are not outgoing: as the bridge device, the filter returns at once.
    if (o.early_return) skel_->rodata->bridge_ifindex = 1;
    skel_->rodata->send_payload = o.http ? 1 : 0;
    skel_->rodata->max_half_open_per_source = o.max_half_open_per_source;
    skel_->rodata->send_pgsql = o.pgsql ? 1 : 0;
    skel_->rodata->routed = o.routed ? 1 : 0;
    skel_->rodata->send_redis = o.redis ? 1 : 0;
    bpf_map__set_max_entries(skel_->maps.flows, o.flow_table_size);
    bpf_map__set_max_entries(skel_->maps.events, o.ring_buffer_bytes);
    if (capture_bpf__load(skel_) != 0) {
      const int err = errno;
      capture_bpf__destroy(skel_);
      throw std::runtime_error(std::string("cannot load the filter: ") + std::strerror(err));
    }
    prog_fd_ = bpf_program__fd(skel_->progs.ebpfc_socket_filter);
    ring_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), on_event, this, nullptr);
    if (!ring_) {
      capture_bpf__destroy(skel_);
      throw std::runtime_error("cannot open the ring buffer");
    }
  }
  ~LoadedFilter() {
    ring_buffer__free(ring_);
    capture_bpf__destroy(skel_);
  }
  LoadedFilter(const LoadedFilter&) = delete;
  LoadedFilter& operator=(const LoadedFilter&) = delete;

  // Instructions the verifier processed to accept the program (its bound is
  // one million: BPF_COMPLEXITY_LIMIT_INSNS).
  uint32_t verified_insns() const {
    bpf_prog_info info = {};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd_, &info, &len) != 0)
      throw std::runtime_error(std::string("BPF_OBJ_GET_INFO_BY_FD: ") + std::strerror(errno));
    return info.verified_insns;
  }

  // Runs the filter on one frame; returns the kernel's duration of the run (ns).
  uint64_t run(const ReplayFrame& f) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f.data.data(),
                .data_size_in = static_cast<__u32>(f.data.size()), .repeat = 1);
    if (bpf_prog_test_run_opts(prog_fd_, &opts) != 0)
      throw std::runtime_error(std::string("BPF_PROG_TEST_RUN: ") + std::strerror(errno));
    return opts.duration;
  }

  // A payload head: its header, and its first bytes (at most 64).
  struct PayloadHead {
    bool from_client;
    uint64_t flow_first_ns;
    uint32_t seq;
    uint32_t segment_len;
    uint32_t ack;
    uint32_t stream_start;
    uint32_t peer_start;
    uint8_t flags;  // EBPFC_PAYLOAD_*
    std::string data;
    uint8_t l7;  // enum ebpfc_l7: the connection's class when it was sent
  };

  // The events the ring buffer holds now, oldest first; payload heads go to
  // payloads().
  std::vector<ebpfc_event> events() {
    events_.clear();
    ring_buffer__consume(ring_);
    return events_;
  }

  // The payload heads read by events() since the last call.
  std::vector<PayloadHead> payloads() { return std::move(payloads_); }

  // Writes an l7_control entry, as user space does.
  void set_l7_control(const ebpfc_flow_key& key, const ebpfc_l7_control& control) {
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.l7_control), &key, &control, BPF_ANY) != 0)
      throw std::runtime_error(std::string("l7_control update: ") + std::strerror(errno));
  }

  // The flows map's entries now.
  std::vector<std::pair<ebpfc_flow_key, ebpfc_flow_stats>> flows() const {
    std::vector<std::pair<ebpfc_flow_key, ebpfc_flow_stats>> out;
    const int fd = bpf_map__fd(skel_->maps.flows);
    ebpfc_flow_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      ebpfc_flow_stats st{};
      if (bpf_map_lookup_elem(fd, &next, &st) == 0) out.emplace_back(next, st);
      key = next;
      prev = &key;
    }
    return out;
  }

  // The per-CPU counters, summed.
  ebpfc_counters counters() const {
    const int ncpu = libbpf_num_possible_cpus();
    std::vector<ebpfc_counters> per(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
    const __u32 zero = 0;
    ebpfc_counters sum{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.counters), &zero, per.data()) != 0) return sum;
    constexpr size_t n = sizeof(sum) / sizeof(__u64);
    for (const auto& c : per) {
      const auto* from = reinterpret_cast<const __u64*>(&c);
      auto* to = reinterpret_cast<__u64*>(&sum);
      for (size_t i = 0; i < n; i++) to[i] += from[i];
    }
    return sum;
  }

 private:
  static int on_event(void* ctx, void* data, size_t size) {
    auto* self = static_cast<LoadedFilter*>(ctx);
    __u32 type = 0;
    if (size >= sizeof(type)) std::memcpy(&type, data, sizeof(type));
    if (type == EBPFC_EVENT_PAYLOAD && size >= EBPFC_PAYLOAD_HEADER_LEN) {
      ebpfc_payload_event p;
      std::memcpy(&p, data, EBPFC_PAYLOAD_HEADER_LEN);
      const size_t n = std::min<size_t>({p.data_len, size - EBPFC_PAYLOAD_HEADER_LEN, 64});
      self->payloads_.push_back(
          {p.from_client != 0, p.flow_first_ns, p.seq, p.segment_len, p.ack, p.stream_start,
           p.peer_start, p.flags,
           std::string(static_cast<const char*>(data) + EBPFC_PAYLOAD_HEADER_LEN, n), p.l7});
      return 0;
    }
    ebpfc_event e;
    if (size < sizeof(e)) return 0;
    std::memcpy(&e, data, sizeof(e));
    if (e.type == EBPFC_EVENT_FLOW_CLOSED || e.type == EBPFC_EVENT_FLOW_RESTARTED)
      self->events_.push_back(e);
    return 0;
  }

  capture_bpf* skel_ = nullptr;
  int prog_fd_ = -1;
  ring_buffer* ring_ = nullptr;
  std::vector<ebpfc_event> events_;
  std::vector<PayloadHead> payloads_;
};

}  // namespace ebpfc_test
