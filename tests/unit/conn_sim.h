// conn_sim.h - drives one TCP connection through the shared decoder and flow
// accounting the way the socket filter does: each segment is built as a real
// frame, parsed, looked up (created by ebpfc_flow_init if it may start a
// flow) and accounted.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "bpf_user.h"
#include "frame_builder.h"

namespace ebpfc_test {

struct Endpoint4 {
  Ip4 addr;
  uint16_t port;
};

enum class Who { Client, Server };

// A flow key as the filter stores it: endpoint 0 is 10.0.0.1:port0, endpoint 1
// 10.0.0.2:port1, both IPv4-mapped.
inline ebpfc_flow_key ipv4_flow_key(uint16_t port0, uint16_t port1) {
  ebpfc_flow_key k{};
  for (int i = 0; i < 2; i++) {
    k.addr[i][10] = k.addr[i][11] = 0xff;
    k.addr[i][12] = 10;
    k.addr[i][15] = static_cast<uint8_t>(i + 1);
  }
  k.port[0] = port0;
  k.port[1] = port1;
  k.family = 4;
  return k;
}

// What ConnSim::send returns when the segment neither found nor started a
// flow (the filter's `untracked` counter).
constexpr int kUntracked = -1;

class ConnSim {
 public:
  ConnSim(Endpoint4 client, Endpoint4 server) : client_(client), server_(server) {}

  ebpfc_packet packet(Who from, uint8_t flags, uint32_t seq, uint32_t ack, size_t len,
                      uint16_t window = 65535) const {
    const Endpoint4& src = from == Who::Client ? client_ : server_;
    const Endpoint4& dst = from == Who::Client ? server_ : client_;
    Ipv4Spec ip;
    ip.src = src.addr;
    ip.dst = dst.addr;
    TcpSpec t;
    t.sport = src.port;
    t.dport = dst.port;
    t.seq = seq;
    t.ack = ack;
    t.flags = flags;
    t.window = window;
    t.payload = payload_of(len);
    ebpfc_packet p{};
    const Bytes frame = tcp4_frame(ip, t, {}, 60);
    EXPECT_EQ(parse(frame, &p), EBPFC_PARSE_TCP);
    EXPECT_EQ(p.payload_len, len);
    EXPECT_EQ(p.window, window);
    return p;
  }

  // The socket filter's path for one segment: returns an
  // enum ebpfc_account_result, or kUntracked.
  int send(Who from, uint8_t flags, uint32_t seq, uint32_t ack, size_t len, uint64_t now,
           uint16_t window = 65535) {
    const ebpfc_packet p = packet(from, flags, seq, ack, len, window);
    if (!tracked) {
      if (!ebpfc_starts_flow(&p)) return kUntracked;
      key = p.key;
      ebpfc_flow_init(&st, &p, now);
      tracked = true;
    } else {
      EXPECT_EQ(std::memcmp(&key, &p.key, sizeof(key)), 0) << "both directions share one key";
    }
    return ebpfc_flow_account(&st, &p, now, &old);
  }

  // Endpoint index (in the key) of each side.
  uint8_t idx(Who w) const {
    const ebpfc_packet p = packet(w, EBPFC_TCP_ACK, 0, 0, 0);
    return p.sender;
  }
  const ebpfc_flow_dir& dir(Who w) const { return st.dir[idx(w)]; }

  bool tracked = false;
  ebpfc_flow_key key{};
  ebpfc_flow_stats st{};
  ebpfc_flow_stats old{};  // the previous connection's record after EBPFC_REOPENED

 private:
  Endpoint4 client_;
  Endpoint4 server_;
};

inline std::string result_name(int r) {
  switch (r) {
    case EBPFC_ACCOUNTED:
      return "ACCOUNTED";
    case EBPFC_CLOSED_NOW:
      return "CLOSED_NOW";
    case EBPFC_LATE:
      return "LATE";
    case EBPFC_REOPENED:
      return "REOPENED";
    case EBPFC_RESTARTED:
      return "RESTARTED";
    case kUntracked:
      return "UNTRACKED";
  }
  return "result " + std::to_string(r);
}

}  // namespace ebpfc_test
