// Tests of the routed capture's rule for counting each frame once
// (ebpfc_routed_copy / ebpfc_routed_mark_in in bpf/flow_account.h): a frame
// between two pods is seen where it comes in from the sender's pod and again
// where it goes out to the receiver's; frames from the host or another node
// are only seen going out; a Service's DNAT makes the two sightings two
// connections. The filter's path (capture.bpf.c) is replayed over a flows
// table in memory, entries removed as the filter removes them.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "conn_sim.h"

namespace ebpfc_test {
namespace {

constexpr uint8_t kSyn = EBPFC_TCP_SYN;
constexpr uint8_t kAck = EBPFC_TCP_ACK;
constexpr uint8_t kFin = EBPFC_TCP_FIN;
constexpr uint8_t kRst = EBPFC_TCP_RST;
constexpr uint8_t kPsh = EBPFC_TCP_PSH;

std::string key_bytes(const ebpfc_flow_key& k) {
  return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
}

// The socket filter's routed path, over a map instead of the BPF hash map.
class RoutedFilter {
 public:
  // One sighting of a segment: outgoing is the socket's PACKET_OUTGOING.
  void see(const ebpfc_packet& p, bool outgoing) {
    now_ += 1000;
    frames++;
    auto it = flows_.find(key_bytes(p.key));
    ebpfc_flow_stats* v = it == flows_.end() ? nullptr : &it->second;
    if (v && ebpfc_routed_copy(v, &p, outgoing)) {
      copies++;
      frames--;
      return;
    }
    if (!v) {
      if (!ebpfc_starts_flow(&p)) {
        untracked++;
        return;
      }
      ebpfc_flow_stats fresh;
      ebpfc_flow_init(&fresh, &p, now_);
      v = &flows_.emplace(key_bytes(p.key), fresh).first->second;
    }
    ebpfc_flow_stats old{};
    const int result = ebpfc_flow_account(v, &p, now_, &old);
    if (!outgoing) ebpfc_routed_mark_in(v, &p);
    if (result == EBPFC_CLOSED_NOW) {
      closed.push_back(*v);
      if (v->close_reason == EBPFC_CLOSE_FIN) flows_.erase(key_bytes(p.key));
    } else if (result == EBPFC_REOPENED || result == EBPFC_RESTARTED) {
      if (result == EBPFC_REOPENED) closed.push_back(old);
    }
  }

  // The open entry of a connection, or null.
  const ebpfc_flow_stats* flow(const ebpfc_flow_key& k) const {
    auto it = flows_.find(key_bytes(k));
    return it == flows_.end() ? nullptr : &it->second;
  }

  uint64_t frames = 0;  // counted (the filter's `frames` less the copies)
  uint64_t copies = 0;
  uint64_t untracked = 0;
  std::vector<ebpfc_flow_stats> closed;  // close events, in order

 private:
  std::map<std::string, ebpfc_flow_stats> flows_;
  uint64_t now_ = 1000;
};

// Where the two ends of a connection are.
enum class Place { Pod, Outside };  // a pod of the node; the host or another node

// One connection's segments, each seen where the node sees it: coming in
// from a pod's interface (if the sender is a pod), going out to a pod's
// interface (if the receiver is one). `dnat` rewrites what the client sends
// to `to` (the server's real address) after it came in, and the server's
// replies back before they go out: the Service case.
class Route {
 public:
  Route(RoutedFilter& f, Place client, Place server, ConnSim& seen_by_client,
        ConnSim* seen_by_server = nullptr)
      : f_(f), client_(client), server_(server), c_(seen_by_client), s_(seen_by_server) {}

  void send(Who from, uint8_t flags, uint32_t seq, uint32_t ack, size_t len) {
    ConnSim& before = c_;                       // as the client sees it
    ConnSim& after = s_ != nullptr ? *s_ : c_;  // as the server sees it
    const bool from_client = from == Who::Client;
    const Place sender = from_client ? client_ : server_;
    const Place receiver = from_client ? server_ : client_;
    // What comes in is what the sender wrote; what goes out, what the receiver reads.
    ConnSim& in = from_client ? before : after;
    ConnSim& out = from_client ? after : before;
    if (sender == Place::Pod) f_.see(in.packet(from, flags, seq, ack, len), false);
    if (receiver == Place::Pod) f_.see(out.packet(from, flags, seq, ack, len), true);
  }

  // Handshake, a request and a response, FINs from both sides, final ACK.
  void exchange(uint32_t up, uint32_t down, uint32_t c = 1000, uint32_t s = 5000) {
    send(Who::Client, kSyn, c, 0, 0);
    send(Who::Server, kSyn | kAck, s, c + 1, 0);
    send(Who::Client, kAck, c + 1, s + 1, 0);
    send(Who::Client, kPsh | kAck, c + 1, s + 1, up);
    send(Who::Server, kAck, s + 1, c + 1 + up, 0);
    send(Who::Server, kPsh | kAck, s + 1, c + 1 + up, down);
    send(Who::Client, kAck, c + 1 + up, s + 1 + down, 0);
    send(Who::Client, kFin | kAck, c + 1 + up, s + 1 + down, 0);
    send(Who::Server, kFin | kAck, s + 1 + down, c + 2 + up, 0);
    send(Who::Client, kAck, c + 2 + up, s + 2 + down, 0);
  }

 private:
  RoutedFilter& f_;
  Place client_, server_;
  ConnSim& c_;
  ConnSim* s_;
};

// A connection closed by FINs, counted exactly once: every segment once,
// its bytes, no retransmission.
void expect_once(const ebpfc_flow_stats& st, uint16_t client_port, uint64_t up, uint64_t down,
                 const ebpfc_flow_key& key) {
  const unsigned c = st.client & 1, s = c ^ 1;
  EXPECT_EQ(key.port[c], client_port);
  EXPECT_EQ(st.close_reason, EBPFC_CLOSE_FIN);
  EXPECT_EQ(st.dir[c].bytes, up);
  EXPECT_EQ(st.dir[s].bytes, down);
  EXPECT_EQ(st.dir[c].packets, 6u);  // SYN, ACK, data, ACK, FIN, ACK
  EXPECT_EQ(st.dir[s].packets, 4u);  // SYN-ACK, ACK, data, FIN
  EXPECT_EQ(st.dir[c].retransmits, 0u);
  EXPECT_EQ(st.dir[s].retransmits, 0u);
  EXPECT_EQ(st.mid_stream, 0);
  EXPECT_NE(st.syn_ns, 0u);
  EXPECT_NE(st.synack_ns, 0u);
}

// The key of a connection's flow (as the filter computes it from a segment).
ebpfc_flow_key key_of(const ConnSim& conn) { return conn.packet(Who::Client, kAck, 0, 0, 0).key; }

const Endpoint4 kPodA{{10, 213, 1, 1}, 40000};
const Endpoint4 kPodB{{10, 213, 1, 2}, 8080};
const Endpoint4 kHost{{10, 214, 0, 1}, 41000};
const Endpoint4 kVip{{10, 96, 0, 10}, 80};

TEST(RoutedCopies, PodToPodIsCountedWhereItLeavesTheSender) {
  RoutedFilter f;
  ConnSim conn(kPodA, kPodB);
  Route(f, Place::Pod, Place::Pod, conn).exchange(100, 300);
  ASSERT_EQ(f.closed.size(), 1u);
  expect_once(f.closed[0], kPodA.port, 100, 300, key_of(conn));
  // Every segment went out to its receiver too. The copy of the final ACK
  // finds no entry (the filter removed it when the ACK came in) and starts
  // nothing; the others are known copies.
  EXPECT_EQ(f.copies, 9u);
  EXPECT_EQ(f.untracked, 1u);
  EXPECT_EQ(f.frames, 11u);
  EXPECT_EQ(f.flow(key_of(conn)), nullptr);
}

TEST(RoutedCopies, HostOrOtherNodeToPodIsCountedWhereItGoesOut) {
  // the host (or a pod of another node) calls pod B; pod A calls the host
  struct Case {
    Endpoint4 client, server;
    Place client_at, server_at;
  };
  for (const Case& k : {Case{kHost, kPodB, Place::Outside, Place::Pod},
                        Case{kPodA, kHost, Place::Pod, Place::Outside}}) {
    RoutedFilter f;
    ConnSim conn(k.client, k.server);
    Route(f, k.client_at, k.server_at, conn).exchange(70, 900);
    ASSERT_EQ(f.closed.size(), 1u);
    expect_once(f.closed[0], k.client.port, 70, 900, key_of(conn));
    EXPECT_EQ(f.copies, 0u);
    EXPECT_EQ(f.frames, 10u);
  }
}

TEST(RoutedCopies, AServiceIsTheClientsViewAndTheServersViewEachOnce) {
  RoutedFilter f;
  ConnSim client_view(kPodA, kVip);   // what pod A sends and reads
  ConnSim server_view(kPodA, kPodB);  // what pod B reads and sends
  Route(f, Place::Pod, Place::Pod, client_view, &server_view).exchange(120, 4000);
  ASSERT_EQ(f.closed.size(), 2u) << "two connections: pod A to the VIP, and pod A to pod B";
  for (const ebpfc_flow_stats& st : f.closed) {
    const unsigned c = st.client & 1;
    EXPECT_EQ(st.dir[c].bytes, 120u);
    EXPECT_EQ(st.dir[c ^ 1].bytes, 4000u);
    EXPECT_EQ(st.dir[c].packets, 6u);
    EXPECT_EQ(st.dir[c ^ 1].packets, 4u);
    EXPECT_EQ(st.dir[c].retransmits + st.dir[c ^ 1].retransmits, 0u);
    EXPECT_EQ(st.close_reason, EBPFC_CLOSE_FIN);
  }
  EXPECT_EQ(f.copies, 0u) << "no sighting was a copy of another under the same key";
  EXPECT_EQ(f.frames, 20u);
}

TEST(RoutedCopies, ASendersInterfaceCapturedLateTakesOverWithoutCountingTwice) {
  // Pod A's interface is not captured yet when the connection opens: its
  // frames are counted where they go out to pod B. From the moment pod A's
  // interface is captured they count where they come in, and their copies
  // going out do not count again.
  RoutedFilter f;
  ConnSim conn(kPodA, kPodB);
  auto both = [&](Who from, uint8_t flags, uint32_t seq, uint32_t ack, size_t len,
                  bool a_captured) {
    const ebpfc_packet p = conn.packet(from, flags, seq, ack, len);
    if (from == Who::Client) {
      if (a_captured) f.see(p, false);
      f.see(p, true);  // out to pod B
    } else {
      f.see(p, false);  // in from pod B
      if (a_captured) f.see(p, true);
    }
  };
  both(Who::Client, kSyn, 1000, 0, 0, false);
  both(Who::Server, kSyn | kAck, 5000, 1001, 0, false);
  both(Who::Client, kAck, 1001, 5001, 0, false);
  both(Who::Client, kPsh | kAck, 1001, 5001, 50, false);
  both(Who::Server, kPsh | kAck, 5001, 1051, 60, false);
  // pod A's interface is captured from here on
  both(Who::Client, kPsh | kAck, 1051, 5061, 70, true);
  both(Who::Server, kPsh | kAck, 5061, 1121, 80, true);
  both(Who::Client, kFin | kAck, 1121, 5141, 0, true);
  both(Who::Server, kFin | kAck, 5141, 1122, 0, true);
  both(Who::Client, kAck, 1122, 5142, 0, true);
  ASSERT_EQ(f.closed.size(), 1u);
  const ebpfc_flow_stats& st = f.closed[0];
  const unsigned c = st.client & 1;
  EXPECT_EQ(st.dir[c].bytes, 120u);
  EXPECT_EQ(st.dir[c ^ 1].bytes, 140u);
  EXPECT_EQ(st.dir[c].packets, 6u);
  EXPECT_EQ(st.dir[c ^ 1].packets, 4u);
  EXPECT_EQ(st.dir[c].retransmits + st.dir[c ^ 1].retransmits, 0u);
  EXPECT_EQ(st.close_reason, EBPFC_CLOSE_FIN);
}

TEST(RoutedCopies, ANewConnectionOnTheFourTupleStartsWithoutMarks) {
  // Reset, then the client reuses its port before user space removed the
  // closed entry: the SYN restarts the entry (clearing its marks) where it
  // comes in, and marks it again, so its copy does not count twice.
  RoutedFilter f;
  ConnSim conn(kPodA, kPodB);
  Route r(f, Place::Pod, Place::Pod, conn);
  r.send(Who::Client, kSyn, 1000, 0, 0);
  r.send(Who::Server, kSyn | kAck, 5000, 1001, 0);
  r.send(Who::Client, kRst, 1001, 0, 0);
  ASSERT_EQ(f.closed.size(), 1u);
  EXPECT_EQ(f.closed[0].close_reason, EBPFC_CLOSE_RST);
  r.exchange(10, 20, 900000, 700000);
  ASSERT_EQ(f.closed.size(), 2u);
  expect_once(f.closed[1], kPodA.port, 10, 20, key_of(conn));
}

TEST(RoutedCopies, MarksAreKeptPerDirection) {
  ebpfc_flow_stats st{};
  ConnSim conn(kPodA, kPodB);
  const ebpfc_packet from_a = conn.packet(Who::Client, kAck, 1, 1, 0);
  const ebpfc_packet from_b = conn.packet(Who::Server, kAck, 1, 1, 0);
  EXPECT_FALSE(ebpfc_routed_copy(&st, &from_a, 1));
  ebpfc_routed_mark_in(&st, &from_a);
  EXPECT_TRUE(ebpfc_routed_copy(&st, &from_a, 1));
  EXPECT_FALSE(ebpfc_routed_copy(&st, &from_a, 0)) << "what comes in always counts";
  EXPECT_FALSE(ebpfc_routed_copy(&st, &from_b, 1));
  ebpfc_routed_mark_in(&st, &from_b);
  EXPECT_TRUE(ebpfc_routed_copy(&st, &from_b, 1));
  ebpfc_flow_init(&st, &from_a, 5);
  EXPECT_EQ(st.counted_in, 0u) << "a fresh entry has no marks";
}

}  // namespace
}  // namespace ebpfc_test
