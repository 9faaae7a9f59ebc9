// segment_script.h - the input the database protocols' fuzzers share: after
// a config byte, records that play one TCP connection (and the ones after
// it) as the kernel reports it. A record is ctl (1 byte) and its operands;
// ctl bit 0 is the direction (1: the client), bits 1-3:
//   0-3  n (2 bytes, little-endian, at most 4096), n bytes: the direction's
//        next bytes, one segment
//   4    a canned message of the protocol (next byte chooses), one segment
//   5    n (1 byte): n*7 bytes are lost (sent, never reported)
//   6    the last segment again (a retransmission)
//   7    the connection closes; a new one starts on the same tracker
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "capture_abi.h"

// Where each direction of the connection being played is.
struct SegmentScript {
  static constexpr uint32_t kClientStart = 1000;
  static constexpr uint32_t kServerStart = 5000;
  uint32_t seq[2] = {kClientStart, kServerStart};  // next byte of each direction
  std::string last[2];                             // the last segment each sent

  // Plays the records of data[at, size):
  //   deliver(role, bytes): reports one segment starting at seq[role];
  //   canned(byte): a canned message of the protocol;
  //   end(): the connection closes;
  //   after(): runs after every record.
  // role 0 is the client, 1 the server.
  template <class Deliver, class Canned, class End, class After>
  void play(const uint8_t* data, size_t size, size_t at, Deliver&& deliver, Canned&& canned,
            End&& end, After&& after) {
    auto send = [&](unsigned role, const std::string& bytes) {
      deliver(role, bytes);
      seq[role] += static_cast<uint32_t>(bytes.size());
      last[role] = bytes;
    };
    while (at < size) {
      const uint8_t ctl = data[at++];
      const unsigned role = (ctl & 1) ? 0 : 1;
      const unsigned op = (ctl >> 1) & 7;
      if (op <= 3) {
        if (at + 2 > size) break;
        size_t n = data[at] | (size_t{data[at + 1]} << 8);
        at += 2;
        if (n > EBPFC_PAYLOAD_MAX) n = EBPFC_PAYLOAD_MAX;
        if (n > size - at) n = size - at;
        send(role, std::string(reinterpret_cast<const char*>(data + at), n));
        at += n;
      } else if (op == 4) {
        if (at >= size) break;
        send(role, canned(data[at++]));
      } else if (op == 5) {
        if (at >= size) break;
        seq[role] += 7u * data[at++];
      } else if (op == 6) {
        if (last[role].empty()) continue;
        seq[role] -= static_cast<uint32_t>(last[role].size());
        send(role, std::string(last[role]));
      } else {
        end();
        seq[0] = kClientStart;
        seq[1] = kServerStart;
        last[0].clear();
        last[1].clear();
      }
      after();
    }
  }
};
