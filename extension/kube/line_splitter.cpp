#include "kube/line_splitter.h"

#include <cstring>

namespace ebpfc::kube {

void LineSplitter::hold(const char* data, size_t size) {
  if (skipping_) return;
  // "+ 1": a line of exactly max_line bytes may still be followed by "\r".
  if (buf_.size() + size > max_line_ + 1) {
    counters_.oversize_lines++;
    skipping_ = true;
    std::string().swap(buf_);  // give the memory back: the line was huge
    return;
  }
  buf_.append(data, size);
}

std::string_view LineSplitter::finish() {
  tail_.clear();
  if (!skipping_) tail_.swap(buf_);
  buf_.clear();
  skipping_ = false;
  std::string_view rest = trim_cr(tail_);
  return rest;
}

void LineSplitter::reset() {
  buf_.clear();
  tail_.clear();
  skipping_ = false;
}

}  // namespace ebpfc::kube
