// token_file.h - the bearer token, re-read from its file.
//
// The kubelet rotates a projected service account token (about every 48
// minutes) by swapping a symlink, so the path is opened anew on every read.
// It is read at least every `reload_ns` (one minute) and whenever a request
// was refused with 401; a failed read (file gone, empty, unreadable) keeps
// the token we had.
//
// Reading a small local file is the only blocking call the client makes.
#pragma once

#include <cstdint>
#include <string>

namespace ebpfc::kube {

class TokenFile {
 public:
  enum class Result { Unchanged, Changed, Failed };

  explicit TokenFile(std::string path, uint64_t reload_ns = 60ull * 1000 * 1000 * 1000)
      : path_(std::move(path)), reload_ns_(reload_ns) {}

  // Reads the file if due at now_ns (or if forced).
  Result reload(uint64_t now_ns, bool force, std::string* error);
  bool due(uint64_t now_ns) const { return !read_once_ || now_ns >= next_ns_; }
  uint64_t next_due_ns() const { return read_once_ ? next_ns_ : 0; }

  const std::string& token() const { return token_; }
  const std::string& path() const { return path_; }
  bool enabled() const { return !path_.empty(); }

  static constexpr size_t kMaxTokenBytes = 64 * 1024;

 private:
  std::string path_;
  uint64_t reload_ns_;
  uint64_t next_ns_ = 0;
  bool read_once_ = false;
  std::string token_;
};

}  // namespace ebpfc::kube
