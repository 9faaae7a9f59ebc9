#include "export/otlp_policy.h"

#include <algorithm>
#include <cstring>

namespace ebpfc::otlp {

Disposition classify(long s) {
  if (s >= 200 && s < 300) return Disposition::Delivered;
  if (s == 0 || s == 429 || s == 502 || s == 503 || s == 504) return Disposition::Retry;
  return Disposition::Rejected;
}

namespace {

constexpr size_t kReadMax = 64 * 1024;

// A protobuf reader over [p, end): just what the response needs.
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) {
        ok = false;
        return 0;
      }
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  // Skips a field of `wire` type; false if it cannot.
  bool skip(uint64_t wire) {
    switch (wire) {
      case 0:
        varint();
        return ok;
      case 1:
        if (end - p < 8) return ok = false;
        p += 8;
        return true;
      case 2: {
        const uint64_t n = varint();
        if (!ok || n > static_cast<uint64_t>(end - p)) return ok = false;
        p += n;
        return true;
      }
      case 5:
        if (end - p < 4) return ok = false;
        p += 4;
        return true;
      default:
        return ok = false;
    }
  }
};

// "key": the value after it in a flat JSON text: a number (possibly quoted)
// or a string. Good enough for {"partialSuccess":{"rejectedSpans":"2",
// "errorMessage":"..."}}, which is all an OTLP response holds.
bool json_value(std::string_view text, std::string_view key, std::string* out) {
  const std::string quoted = "\"" + std::string(key) + "\"";
  size_t at = text.find(quoted);
  if (at == std::string_view::npos) return false;
  at = text.find(':', at + quoted.size());
  if (at == std::string_view::npos) return false;
  at++;
  while (at < text.size() && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n')) at++;
  if (at >= text.size()) return false;
  out->clear();
  if (text[at] == '"') {
    for (size_t i = at + 1; i < text.size(); i++) {
      if (text[i] == '\\' && i + 1 < text.size()) {
        out->push_back(text[++i]);
      } else if (text[i] == '"') {
        return true;
      } else {
        out->push_back(text[i]);
      }
    }
    return false;
  }
  while (at < text.size() && (text[at] == '-' || (text[at] >= '0' && text[at] <= '9')))
    out->push_back(text[at++]);
  return !out->empty();
}

}  // namespace

bool parse_partial_success(const uint8_t* body, size_t n, bool json, PartialSuccess* out) {
  *out = PartialSuccess();
  n = std::min(n, kReadMax);
  if (json) {
    const std::string_view text(reinterpret_cast<const char*>(body), n);
    if (text.find("\"partialSuccess\"") == std::string_view::npos) return false;
    std::string v;
    if (json_value(text, "rejectedSpans", &v))
      out->rejected_spans = std::strtoll(v.c_str(), nullptr, 10);
    if (json_value(text, "errorMessage", &v)) out->error_message = v;
    return out->rejected_spans != 0 || !out->error_message.empty();
  }
  // ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
  // ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }
  Reader r{body, body + n};
  bool found = false;
  while (r.ok && r.p < r.end) {
    const uint64_t tag = r.varint();
    if (!r.ok) break;
    if (tag >> 3 == 1 && (tag & 7) == 2) {
      const uint64_t len = r.varint();
      if (!r.ok || len > static_cast<uint64_t>(r.end - r.p)) break;
      Reader m{r.p, r.p + len};
      r.p += len;
      while (m.ok && m.p < m.end) {
        const uint64_t t = m.varint();
        if (!m.ok) break;
        if (t >> 3 == 1 && (t & 7) == 0) {
          out->rejected_spans = static_cast<int64_t>(m.varint());
        } else if (t >> 3 == 2 && (t & 7) == 2) {
          const uint64_t sl = m.varint();
          if (!m.ok || sl > static_cast<uint64_t>(m.end - m.p)) break;
          out->error_message.assign(reinterpret_cast<const char*>(m.p), std::min<size_t>(sl, 512));
          m.p += sl;
        } else if (!m.skip(t & 7)) {
          break;
        }
      }
      found = true;
    } else if (!r.skip(tag & 7)) {
      break;
    }
  }
  return found && (out->rejected_spans != 0 || !out->error_message.empty());
}

bool parse_headers_file(std::string_view text, std::vector<std::string>* out, std::string* error) {
  out->clear();
  size_t line_no = 0;
  while (!text.empty()) {
    line_no++;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t b = 0;
    while (b < line.size() && (line[b] == ' ' || line[b] == '\t')) b++;
    line = line.substr(b);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    auto bad = [&](const char* why) {
      *error = "line " + std::to_string(line_no) + ": " + why;
      return false;
    };
    if (colon == std::string_view::npos || colon == 0) return bad("not \"Name: value\"");
    for (size_t i = 0; i < colon; i++) {
      const char c = line[i];
      const bool tchar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
      if (!tchar) return bad("the header name is not an HTTP token");
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    for (const char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return bad("the value has a control character");
    out->push_back(std::string(line.substr(0, colon)) + ": " + std::string(value));
  }
  return true;
}

std::string traces_url(const std::string& endpoint) {
  size_t b = endpoint.find("://");
  b = b == std::string::npos ? 0 : b + 3;
  const size_t slash = endpoint.find('/', b);
  if (slash == std::string::npos) return endpoint + "/v1/traces";
  if (slash == endpoint.size() - 1) return endpoint + "v1/traces";
  return endpoint;
}

}  // namespace ebpfc::otlp
