#include "kube/token_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace ebpfc::kube {

TokenFile::Result TokenFile::reload(uint64_t now_ns, bool force, std::string* error) {
  if (path_.empty()) return Result::Unchanged;
  if (!force && !due(now_ns)) return Result::Unchanged;
  read_once_ = true;
  next_ns_ = now_ns + reload_ns_;
  const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *error = "cannot open token file " + path_ + ": " + std::strerror(errno);
    return Result::Failed;
  }
  struct stat st;
  std::string text;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_size <= static_cast<off_t>(kMaxTokenBytes);
  if (!ok) {
    *error = "token file " + path_ + " is not a regular file of at most 64 KiB";
  } else {
    char buf[4096];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        *error = "cannot read token file " + path_ + ": " + std::strerror(errno);
        ok = false;
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxTokenBytes) {
        *error = "token file " + path_ + " is larger than 64 KiB";
        ok = false;
        break;
      }
    }
  }
  close(fd);
  if (!ok) return Result::Failed;
  size_t b = 0, e = text.size();
  while (b < e && std::strchr(" \t\r\n", text[b]) != nullptr) b++;
  while (e > b && std::strchr(" \t\r\n", text[e - 1]) != nullptr) e--;
  text = text.substr(b, e - b);
  if (text.empty()) {
    *error = "token file " + path_ + " is empty";
    return Result::Failed;
  }
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) {
      *error = "token file " + path_ + " holds characters a bearer token cannot";
      return Result::Failed;
    }
  }
  if (text == token_) return Result::Unchanged;
  token_.swap(text);
  return Result::Changed;
}

}  // namespace ebpfc::kube
