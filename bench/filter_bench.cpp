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
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "filter_harness.h"

namespace {

using ebpfc_test::LoadedFilter;
using ebpfc_test::ReplayFrame;

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Close events whose counts are exactly those of short_connection().
size_t exact_closes(const std::vector<ebpfc_event>& events) {
  size_t n = 0;
  for (const ebpfc_event& e : events) {
    const ebpfc_flow_dir& c = e.stats.dir[e.stats.client & 1];
    const ebpfc_flow_dir& s = e.stats.dir[(e.stats.client & 1) ^ 1];
    if (e.type == EBPFC_EVENT_FLOW_CLOSED && e.stats.close_reason == EBPFC_CLOSE_FIN &&
        c.bytes == ebpfc_test::kReplayRequest && s.bytes == ebpfc_test::kReplayResponse &&
        c.packets == 5 && s.packets == 5)
      n++;
  }
  return n;
}

// Sums the per-frame durations of one round; frames of one sender run on that
// sender's CPU, in order.
uint64_t round_ns(const std::vector<ReplayFrame>& frames, bool two_cpus, bool early_return) {
  const size_t connections = frames.size() / 10;
  LoadedFilter::Options options;
  options.flow_table_size = static_cast<uint32_t>(connections * 2);
  options.ring_buffer_bytes = 64u << 20;
  options.early_return = early_return;
  LoadedFilter filter(options);
  uint64_t total = 0;
  if (!two_cpus) {
    pin(0);
    for (const ReplayFrame& f : frames) total += filter.run(f);
  } else {
    std::atomic<size_t> next{0};
    uint64_t sums[2] = {0, 0};
    auto worker = [&](int who) {
      pin(who);
      for (;;) {
        size_t i = next.load(std::memory_order_acquire);
        if (i >= frames.size()) return;
        if (frames[i].sender != who) continue;  // the other CPU's frame
        sums[who] += filter.run(frames[i]);
        next.store(i + 1, std::memory_order_release);
      }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    total = sums[0] + sums[1];
  }
  const size_t closed = exact_closes(filter.events());
  if (!early_return && closed != connections) {
    std::fprintf(stderr, "%zu of %zu connections came back closed with their exact counts\n",
                 closed, connections);
    std::exit(1);
  }
  return total;
}

double median_ns_per_frame(const std::vector<ReplayFrame>& frames, int rounds, bool two_cpus,
                           bool early_return, double* lo, double* hi) {
  std::vector<double> per_frame;
  for (int r = 0; r < rounds; r++)
    per_frame.push_back(static_cast<double>(round_ns(frames, two_cpus, early_return)) /
                        static_cast<double>(frames.size()));
  std::sort(per_frame.begin(), per_frame.end());
  *lo = per_frame.front();
  *hi = per_frame.back();
  return per_frame[per_frame.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const size_t conns = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (conns == 0 || conns > 50000 || rounds < 1) {
    std::fprintf(stderr, "usage: filter_bench [connections (1-50000)] [rounds]\n");
    return 1;
  }
  if (std::thread::hardware_concurrency() < 2) {
    std::fprintf(stderr, "two CPUs are needed\n");
    return 1;
  }
  std::vector<ReplayFrame> frames;
  frames.reserve(conns * 10);
  for (size_t i = 0; i < conns; i++)
    ebpfc_test::short_connection(frames, static_cast<uint16_t>(10000 + i));

  try {
    double lo, hi;
    const double harness = median_ns_per_frame(frames, rounds, false, true, &lo, &hi);
    std::printf("{\"mode\": \"harness\", \"ns_per_frame_median\": %.1f}\n", harness);
    for (bool two : {false, true}) {
      const double med = median_ns_per_frame(frames, rounds, two, false, &lo, &hi);
      std::printf(
          "{\"mode\": \"%s\", \"connections\": %zu, \"rounds\": %d, \"ns_per_frame_median\": "
          "%.1f, \"min\": %.1f, \"max\": %.1f, \"filter_ns_per_frame\": %.1f}\n",
          two ? "two-cpu" : "one-cpu", conns, rounds, med, lo, hi, med - harness);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "filter_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
