// db_fuzz_run.h - the body the database protocols' fuzzers share: plays the
// records of segment_script.h through a tracker (PostgreSQL's or Redis's) as
// the kernel would report one connection after another, shows every segment
// to the filter's classifier too, and checks the spans made after each step
// and that the connections followed stay bounded and end closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "capture_abi.h"
#include "core/http_tracker.h"
#include "core/pg_wire.h"
#include "fuzz_check.h"
#include "l7_classify.h"
#include "segment_script.h"

namespace ebpfc_fuzz {

// A payload control that ignores what the tracker asks of the kernel.
class NullControl final : public ebpfc::PayloadControl {
 public:
  void set_l7_control(const ebpfc_flow_key&, const ebpfc_l7_control&) override {}
  void clear_l7_control(const ebpfc_flow_key&) override {}
};

// What differs between the protocols.
struct DbFuzzProtocol {
  __u8 l7;          // EBPFC_L7_*
  __u16 port;       // the server's
  bool acks;        // every segment acknowledges all the other direction sent
  bool mid_stream;  // the capture joined mid-stream (no stream starts)
};

// data[0] is the fuzzer's config byte, the records start at data[1].
//   classify(head, head_len, segment_len, at_stream_start): the filter's
//     classifier on the segment's first bytes (must never read past them);
//   canned(byte): a canned message of the protocol;
//   check(out, from): checks the spans out[from..].
template <class Tracker, class Classify, class Canned, class Check>
void run_db_fuzz(const uint8_t* data, size_t size, Tracker& tracker, size_t max_connections,
                 const DbFuzzProtocol& proto, Classify&& classify, Canned&& canned,
                 Check&& check) {
  ebpfc::WallClock clock;
  ebpfc::SpanIdGenerator ids(1);
  ebpfc::PgSpanList out;
  ebpfc_payload_event e{};
  e.type = EBPFC_EVENT_PAYLOAD;
  e.l7 = proto.l7;
  e.key.family = 4;
  e.key.port[0] = proto.port;
  e.key.port[1] = 40000;
  SegmentScript script;
  const uint32_t* seq = script.seq;
  uint64_t now = 1;
  uint64_t first = 1;

  auto deliver = [&](unsigned role, const std::string& bytes) {
    __u8 head[EBPFC_L7_BUF_LEN] = {};
    const size_t n = bytes.size() < EBPFC_L7_PROBE_LEN ? bytes.size() : EBPFC_L7_PROBE_LEN;
    std::memcpy(head, bytes.data(), n);
    classify(head, static_cast<__u32>(n), static_cast<__u32>(bytes.size()),
             seq[role] == (role == 0 ? SegmentScript::kClientStart : SegmentScript::kServerStart));
    e.sender = role == 0 ? 1 : 0;
    e.from_client = role == 0;
    e.flags = (proto.acks ? EBPFC_PAYLOAD_ACK : 0) |
              (proto.mid_stream ? 0 : EBPFC_PAYLOAD_STREAM_START);
    e.stream_start = role == 0 ? SegmentScript::kClientStart : SegmentScript::kServerStart;
    e.ack = proto.acks ? seq[role ^ 1] : 0;
    e.flow_first_ns = first;
    e.ts_ns = now += 1000;
    e.seq = seq[role];
    e.data_len = e.segment_len = static_cast<uint32_t>(bytes.size());
    std::memcpy(e.data, bytes.data(), bytes.size());
    const size_t before = out.size();
    tracker.on_payload(e, clock, ids, out);
    check(out, before);
  };

  script.play(
      data, size, 1, deliver, canned,
      [&] {
        uint8_t id[8];
        const size_t before = out.size();
        tracker.on_flow_ended(e.key, id, clock, ids, out);
        tracker.end_of_drain(now, clock, ids, out);
        check(out, before);
        CHECK(tracker.open_connections() == 0);
        first++;
      },
      [&] { CHECK(tracker.open_connections() <= max_connections); });
  const size_t before = out.size();
  tracker.close_all(clock, ids, out);
  check(out, before);
  CHECK(tracker.open_connections() == 0);
}

}  // namespace ebpfc_fuzz
