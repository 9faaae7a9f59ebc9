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

// Parses a frame the way the filter does: its first min(size, head_limit)
// bytes are the head (read at once), the rest is read through EBPFC_LOAD.
// The frame and the head are each a heap block of exactly their size, so that
// a read past either end would be caught by AddressSanitizer.
inline int parse_frame(const uint8_t* data, size_t size, size_t head_limit, ebpfc_packet* p) {
  const size_t head_len = size < head_limit ? size : head_limit;
  std::unique_ptr<uint8_t[]> copy(new uint8_t[size ? size : 1]);
  std::unique_ptr<uint8_t[]> head(new uint8_t[head_len ? head_len : 1]);
  if (size > 0) std::memcpy(copy.get(), data, size);
  if (head_len > 0) std::memcpy(head.get(), data, head_len);
  FrameView view{copy.get(), size};
  return ebpfc_parse_frame(&view, static_cast<uint32_t>(size), head.get(),
                           static_cast<uint32_t>(head_len), p);
}

inline int parse(const std::vector<uint8_t>& frame, ebpfc_packet* p,
                 size_t head_limit = EBPFC_HEAD_LEN) {
  return parse_frame(frame.data(), frame.size(), head_limit, p);
}

}  // namespace ebpfc_test
