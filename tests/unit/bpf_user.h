// bpf_user.h - the shared BPF headers (frame_parse.h, flow_account.h) compiled
// in user space, with a bounds-checked EBPFC_LOAD over an in-memory frame.
//
// Used by the unit tests and by the libFuzzer target (tests/fuzz).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace ebpfc_test {

// What EBPFC_LOAD reads from: the frame bytes, exactly `len` of them.
struct FrameView {
  const uint8_t* data;
  size_t len;
};

// bpf_skb_load_bytes semantics: copies len bytes at off, or fails (< 0)
// without touching dst when the frame is shorter than off + len.
inline int load_bytes(void* ctx, uint32_t off, void* dst, uint32_t len) {
  const FrameView* f = static_cast<const FrameView*>(ctx);
  if (static_cast<uint64_t>(off) + len > f->len) return -1;
  std::memcpy(dst, f->data + off, len);
  return 0;
}

}  // namespace ebpfc_test

#define EBPFC_LOAD(ctx, off, dst, len) ::ebpfc_test::load_bytes((ctx), (off), (dst), (len))
#include "flow_account.h"

namespace ebpfc_test {

// Parses a frame held in a heap block of exactly its size, so that a read
// past the end that slipped past EBPFC_LOAD would be caught by AddressSanitizer.
inline int parse(const std::vector<uint8_t>& frame, ebpfc_packet* p) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[frame.size() ? frame.size() : 1]);
  if (!frame.empty()) std::memcpy(copy.get(), frame.data(), frame.size());
  FrameView view{copy.get(), frame.size()};
  return ebpfc_parse_frame(&view, static_cast<uint32_t>(frame.size()), p);
}

}  // namespace ebpfc_test
