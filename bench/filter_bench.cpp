// filter_bench.cpp - what the socket filter costs per frame, measured in this
// machine's kernel with BPF_PROG_TEST_RUN (no PostgreSQL, no network).
//
// It replays short connections (SYN, SYN-ACK, ACK, request, ACK, response,
// FIN, ACK, FIN, ACK: ten frames, IPv4) through the real filter and sums the
// kernel's own per-run durations. Two modes:
//   one-cpu  every frame on CPU 0;
//   two-cpu  the client's frames on CPU 0 and the server's on CPU 1, in the
//            order of the connection, the way a client and a server on two
//            CPUs of one node send them (each frame is filtered on its
//            sender's CPU). This is where a flow entry's cache lines move
//            between CPUs.
//
// A third run, "harness", sends the same frames into a filter that returns at
// its first test: what BPF_PROG_TEST_RUN itself costs per run. The filter's
// own cost is a mode's figure minus the harness's.
//
// Every round checks its result: each replayed connection must come back as
// one close event with its exact byte and packet counts, or the benchmark
// fails.
//
// Usage: make filter-bench [FILTER_BENCH_ARGS="connections-per-round rounds"];
// prints one JSON line per mode. Needs CAP_BPF (root).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "capture.skel.h"
#include "capture_abi.h"
#include "frame_builder.h"

namespace {

using ebpfc_test::Bytes;

struct Frame {
  Bytes data;  // a 14-byte pseudo header, then the Ethernet frame (see run_frame)
  int sender;  // 0: client, 1: server
};

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10;

Frame frame(bool from_client, uint16_t cport, uint32_t seq, uint32_t ack, uint8_t flags,
            size_t payload) {
  ebpfc_test::Ipv4Spec ip;
  ebpfc_test::TcpSpec t;
  ip.src = from_client ? ebpfc_test::Ip4{10, 77, 0, 1} : ebpfc_test::Ip4{10, 77, 0, 2};
  ip.dst = from_client ? ebpfc_test::Ip4{10, 77, 0, 2} : ebpfc_test::Ip4{10, 77, 0, 1};
  t.sport = from_client ? cport : 80;
  t.dport = from_client ? 80 : cport;
  t.seq = seq;
  t.ack = ack;
  t.flags = flags;
  t.payload = ebpfc_test::payload_of(payload);
  // BPF_PROG_TEST_RUN hands a socket filter the frame after eth_type_trans()
  // has pulled an Ethernet header, as if at the network layer. A packet socket
  // runs it from the MAC header, so put a throwaway header in front.
  Bytes out(14, 0);
  out[12] = 0x08;
  Bytes eth = ebpfc_test::tcp4_frame(ip, t);
  out.insert(out.end(), eth.begin(), eth.end());
  return Frame{std::move(out), from_client ? 0 : 1};
}

// One short HTTP/1.1 connection with "Connection: close", as nginx closes it.
void connection(std::vector<Frame>& out, uint16_t cport) {
  const uint32_t c = 1000, s = 5000;
  const size_t req = 61, resp = 178;
  out.push_back(frame(true, cport, c, 0, kSyn, 0));
  out.push_back(frame(false, cport, s, c + 1, kSyn | kAck, 0));
  out.push_back(frame(true, cport, c + 1, s + 1, kAck, 0));
  out.push_back(frame(true, cport, c + 1, s + 1, kPsh | kAck, req));
  out.push_back(frame(false, cport, s + 1, c + 1 + req, kAck, 0));
  out.push_back(frame(false, cport, s + 1, c + 1 + req, kPsh | kAck, resp));
  out.push_back(frame(false, cport, s + 1 + resp, c + 1 + req, kFin | kAck, 0));
  out.push_back(frame(true, cport, c + 1 + req, s + 2 + resp, kAck, 0));
  out.push_back(frame(true, cport, c + 1 + req, s + 2 + resp, kFin | kAck, 0));
  out.push_back(frame(false, cport, s + 2 + resp, c + 2 + req, kAck, 0));
}

uint64_t run_frame(int prog_fd, const Frame& f) {
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f.data.data(),
              .data_size_in = static_cast<__u32>(f.data.size()), .repeat = 1);
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) {
    std::fprintf(stderr, "BPF_PROG_TEST_RUN: %s\n", std::strerror(errno));
    std::exit(1);
  }
  return opts.duration;
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

struct Loaded {
  capture_bpf* skel = nullptr;
  int prog_fd = -1;
  ring_buffer* rb = nullptr;
  size_t closed = 0;
};

// Counts the close events whose counts are exactly those of connection().
int count_close(void* ctx, void* data, size_t size) {
  ebpfc_event e;
  if (size < sizeof(e)) return 0;
  std::memcpy(&e, data, sizeof(e));
  if (e.type != EBPFC_EVENT_FLOW_CLOSED) return 0;
  const ebpfc_flow_dir& c = e.stats.dir[e.stats.client & 1];
  const ebpfc_flow_dir& s = e.stats.dir[(e.stats.client & 1) ^ 1];
  if (c.bytes == 61 && s.bytes == 178 && c.packets == 5 && s.packets == 5 &&
      e.stats.close_reason == EBPFC_CLOSE_FIN)
    ++*static_cast<size_t*>(ctx);
  return 0;
}

Loaded* load(size_t connections, bool early_return) {
  Loaded* lp = new Loaded;
  Loaded& l = *lp;
  l.skel = capture_bpf__open();
  if (!l.skel) std::exit(1);
  // BPF_PROG_TEST_RUN runs on the loopback device (ifindex 1), and its frames
  // are not outgoing: as the bridge device, the filter returns at once.
  if (early_return) l.skel->rodata->bridge_ifindex = 1;
  bpf_map__set_max_entries(l.skel->maps.flows, static_cast<__u32>(connections * 2));
  bpf_map__set_max_entries(l.skel->maps.events, 64u << 20);
  if (capture_bpf__load(l.skel) != 0) {
    std::fprintf(stderr, "cannot load the filter: %s\n", std::strerror(errno));
    std::exit(1);
  }
  l.prog_fd = bpf_program__fd(l.skel->progs.ebpfc_socket_filter);
  l.rb = ring_buffer__new(bpf_map__fd(l.skel->maps.events), count_close, &l.closed, nullptr);
  if (!l.rb) std::exit(1);
  return lp;
}

void unload(Loaded* l) {
  ring_buffer__free(l->rb);
  capture_bpf__destroy(l->skel);
  delete l;
}

// Sums the per-frame durations of one round; frames of one sender run on that
// sender's CPU, in order.
uint64_t round_ns(const std::vector<Frame>& frames, bool two_cpus, bool early_return = false) {
  const size_t connections = frames.size() / 10;
  Loaded* lp = load(connections, early_return);
  Loaded& l = *lp;
  uint64_t total = 0;
  if (!two_cpus) {
    pin(0);
    for (const Frame& f : frames) total += run_frame(l.prog_fd, f);
  } else {
    std::atomic<size_t> next{0};
    uint64_t sums[2] = {0, 0};
    auto worker = [&](int who) {
      pin(who);
      for (;;) {
        size_t i = next.load(std::memory_order_acquire);
        if (i >= frames.size()) return;
        if (frames[i].sender != who) continue;  // the other CPU's frame
        sums[who] += run_frame(l.prog_fd, frames[i]);
        next.store(i + 1, std::memory_order_release);
      }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    total = sums[0] + sums[1];
  }
  ring_buffer__consume(l.rb);
  const size_t closed = l.closed;
  unload(lp);
  if (!early_return && closed != connections) {
    std::fprintf(stderr, "%zu of %zu connections came back closed with their exact counts\n",
                 closed, connections);
    std::exit(1);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t conns = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (std::thread::hardware_concurrency() < 2) {
    std::fprintf(stderr, "two CPUs are needed\n");
    return 1;
  }
  std::vector<Frame> frames;
  frames.reserve(conns * 10);
  if (conns == 0 || conns > 50000 || rounds < 1) {
    std::fprintf(stderr, "usage: filter_bench [connections (1-50000)] [rounds]\n");
    return 1;
  }
  for (size_t i = 0; i < conns; i++) connection(frames, static_cast<uint16_t>(10000 + i));

  // The harness alone: the same frames through the filter's first test.
  {
    std::vector<double> per_frame;
    for (int r = 0; r < rounds; r++)
      per_frame.push_back(static_cast<double>(round_ns(frames, false, true)) / frames.size());
    std::sort(per_frame.begin(), per_frame.end());
    std::printf("{\"mode\": \"harness\", \"ns_per_frame_median\": %.1f}\n",
                per_frame[per_frame.size() / 2]);
  }
  for (bool two : {false, true}) {
    std::vector<double> per_frame;
    for (int r = 0; r < rounds; r++)
      per_frame.push_back(static_cast<double>(round_ns(frames, two)) / frames.size());
    std::sort(per_frame.begin(), per_frame.end());
    std::printf(
        "{\"mode\": \"%s\", \"connections\": %zu, \"rounds\": %d, \"ns_per_frame_median\": %.1f, "
        "\"min\": %.1f, \"max\": %.1f}\n",
        two ? "two-cpu" : "one-cpu", conns, rounds, per_frame[per_frame.size() / 2],
        per_frame.front(), per_frame.back());
  }
  return 0;
}
