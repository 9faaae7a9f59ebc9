// line_splitter.h - splits a chunked watch stream into newline-delimited
// events.
//
// The Kubernetes API sends a watch as one JSON object plus "\n" per event, in
// HTTP chunks whose boundaries are not event boundaries: one event may span
// chunks, one chunk may hold many events. feed() takes the bytes as libcurl's
// write callback hands them over and calls back once per complete line
// (without its "\n" or a trailing "\r"; empty lines are not reported).
//
// PostgreSQL-free. Memory is bounded: a line is held at most max_line bytes;
// a longer one is dropped up to its "\n" and counted, and the lines after it
// are reported as usual. A line that lies entirely inside one chunk is
// reported from the chunk itself, without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace ebpfc::kube {

struct LineSplitterCounters {
  uint64_t lines;           // lines reported
  uint64_t oversize_lines;  // lines longer than max_line, dropped
  uint64_t bytes;           // bytes fed
};

class LineSplitter {
 public:
  static constexpr size_t kDefaultMaxLine = 4u << 20;  // 4 MiB

  explicit LineSplitter(size_t max_line = kDefaultMaxLine) : max_line_(max_line) {}

  // Feeds a chunk; on_line(std::string_view) is called for every line it
  // completes. The view is valid during the call only.
  template <typename OnLine>
  void feed(const char* data, size_t size, OnLine&& on_line);

  // The stream ended: returns what is left of a line that had no "\n" (the
  // stream was cut mid-event), and resets. Empty when the stream ended on a
  // line boundary.
  std::string_view finish();

  // Forgets everything held (a new stream starts); counters are kept.
  void reset();

  size_t buffered() const { return buf_.size(); }
  // True while an oversize line is being dropped.
  bool skipping() const { return skipping_; }
  const LineSplitterCounters& counters() const { return counters_; }

 private:
  // Appends data to the held partial line, or starts skipping if it grows
  // past max_line.
  void hold(const char* data, size_t size);
  static std::string_view trim_cr(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  }

  size_t max_line_;
  std::string buf_;   // the partial line carried over from earlier chunks
  std::string tail_;  // what finish() returns
  bool skipping_ = false;
  LineSplitterCounters counters_{};
};

template <typename OnLine>
void LineSplitter::feed(const char* data, size_t size, OnLine&& on_line) {
  counters_.bytes += size;
  size_t pos = 0;
  while (pos < size) {
    const void* nl = std::memchr(data + pos, '\n', size - pos);
    if (nl == nullptr) {
      hold(data + pos, size - pos);
      return;
    }
    const size_t end = static_cast<size_t>(static_cast<const char*>(nl) - data);
    if (skipping_) {
      // The rest of the oversize line: dropped with its "\n".
      skipping_ = false;
    } else if (buf_.empty()) {
      const std::string_view line = trim_cr(std::string_view(data + pos, end - pos));
      if (line.size() > max_line_) {
        counters_.oversize_lines++;
      } else if (!line.empty()) {
        counters_.lines++;
        on_line(line);
      }
    } else {
      hold(data + pos, end - pos);
      if (!skipping_) {
        const std::string_view line = trim_cr(buf_);
        if (line.size() > max_line_) {
          counters_.oversize_lines++;
        } else if (!line.empty()) {
          counters_.lines++;
          on_line(line);
        }
      }
      skipping_ = false;
      buf_.clear();
    }
    pos = end + 1;
  }
}

}  // namespace ebpfc::kube
