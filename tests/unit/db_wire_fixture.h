// db_wire_fixture.h - what the PostgreSQL and Redis trackers' tests share:
// one TCP connection between the client 10.0.0.3:40000 and a server
// 10.0.0.2:<port>, played segment by segment as the kernel reports it, and
// the spans the tracker makes of it, read back as text.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "capture_abi.h"
#include "core/pg_wire.h"
#include "json_text_sink.h"

namespace ebpfc_test {

// Records how often the tracker told the kernel to stop sending a
// connection's payload.
class NullControl final : public ebpfc::PayloadControl {
 public:
  void set_l7_control(const ebpfc_flow_key&, const ebpfc_l7_control& c) override {
    stops += c.not_http;
  }
  void clear_l7_control(const ebpfc_flow_key&) override {}
  int stops = 0;
};

template <class Tracker, class Options>
class DbWireFixture : public ::testing::Test {
 protected:
  // acks: every segment carries the acknowledgement of all the other side
  // sent (the tracker may resync with it).
  DbWireFixture(uint16_t server_port, uint8_t l7, bool acks)
      : tracker_(Options(), control_), ids_(7), l7_(l7), acks_(acks) {
    std::memset(&key_, 0, sizeof(key_));
    key_.family = 4;
    key_.addr[0][10] = key_.addr[0][11] = 0xff;
    key_.addr[0][12] = 10;
    key_.addr[0][15] = 2;  // the server
    key_.addr[1][10] = key_.addr[1][11] = 0xff;
    key_.addr[1][12] = 10;
    key_.addr[1][15] = 3;
    key_.port[0] = server_port;
    key_.port[1] = 40000;
    seq_[0] = start_[0];  // the client's
    seq_[1] = start_[1];
  }

  // What one side sends, as one segment, split into records of at most
  // `piece` bytes (as the kernel does at EBPFC_PAYLOAD_MAX).
  void send(bool from_client, const std::string& bytes, bool mid_stream = false,
            size_t piece = EBPFC_PAYLOAD_MAX) {
    const unsigned role = from_client ? 0 : 1;
    size_t off = 0;
    do {
      const size_t n = std::min<size_t>(bytes.size() - off, piece);
      ebpfc_payload_event e{};
      e.type = EBPFC_EVENT_PAYLOAD;
      e.sender = from_client ? 1 : 0;
      e.from_client = from_client;
      e.l7 = l7_;
      e.key = key_;
      e.ts_ns = now_ += 1000;
      e.flow_first_ns = 1;
      e.seq = seq_[role] + static_cast<uint32_t>(off);
      e.segment_len = static_cast<uint32_t>(n);
      e.data_len = static_cast<uint32_t>(n);
      if (acks_) {
        e.flags = EBPFC_PAYLOAD_ACK;
        e.ack = seq_[role ^ 1];
      }
      if (!mid_stream) {
        e.flags |= EBPFC_PAYLOAD_STREAM_START;
        e.stream_start = start_[role];
      }
      std::memcpy(e.data, bytes.data() + off, n);
      tracker_.on_payload(e, clock_, ids_, out_);
      off += n;
    } while (off < bytes.size());
    seq_[role] += static_cast<uint32_t>(bytes.size());
  }
  // Bytes of one side that the capture did not see.
  void lose(bool from_client, size_t n) { seq_[from_client ? 0 : 1] += static_cast<uint32_t>(n); }
  void end() {
    uint8_t id[8];
    tracker_.on_flow_ended(key_, id, clock_, ids_, out_);
    tracker_.end_of_drain(now_, clock_, ids_, out_);
  }
  std::string text(ebpfc::TextRef r) const { return std::string(ebpfc::text_of(out_.text(), r)); }
  std::string attrs(size_t i) const {
    char buf[4096];
    ebpfc::JsonTextSink sink(buf, sizeof(buf));
    ebpfc::pg_attributes(out_[i], out_.text(), sink);
    sink.finish();
    return buf;
  }
  std::string name(size_t i) const {
    char buf[128];
    return ebpfc::pg_span_name(out_[i], out_.text(), buf, sizeof(buf));
  }

  NullControl control_;
  Tracker tracker_;
  ebpfc::WallClock clock_;
  ebpfc::SpanIdGenerator ids_;
  ebpfc::PgSpanList out_;
  ebpfc_flow_key key_;
  uint32_t start_[2] = {1000, 9000};
  uint32_t seq_[2];
  uint64_t now_ = 1000000;
  uint8_t l7_;
  bool acks_;
};

}  // namespace ebpfc_test
