// http_message.cpp - the HTTP/1.x message parser of one direction.
//
// RFC 9112 framing, read leniently where leniency cannot change where a
// message ends (bare LF line ends, header lines that are not fields are
// skipped) and strictly where it can (Content-Length, Transfer-Encoding,
// chunk sizes): a message whose end cannot be trusted is aborted.
#include "core/http_message.h"

#include <cstring>

namespace ebpfc {

namespace {

constexpr char kVersionPrefix[] = "HTTP/1.";
constexpr uint8_t kVersionPrefixLen = 7;

bool is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
bool is_method_char(uint8_t c) { return is_upper(c) || is_digit(c) || c == '-' || c == '_'; }
// Visible ASCII, or a byte >= 0x80 (seen in the wild, passed on as is).
bool is_target_char(uint8_t c) { return c > 0x20 && c != 0x7f; }
bool is_ows(char c) { return c == ' ' || c == '\t'; }
char lower(uint8_t c) { return static_cast<char>(is_upper(c) ? c + ('a' - 'A') : c); }

// RFC 9110 tchar: the characters of a header field name.
bool is_tchar(uint8_t c) {
  if (is_upper(c) || is_digit(c) || (c >= 'a' && c <= 'z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

int hex_value(uint8_t c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool equals_ci(const char* s, size_t n, const char* lit) {
  const size_t len = std::strlen(lit);
  if (n != len) return false;
  for (size_t i = 0; i < n; i++)
    if (lower(static_cast<uint8_t>(s[i])) != lit[i]) return false;
  return true;
}

void trim(const char** s, size_t* n) {
  while (*n && is_ows(**s)) ++*s, --*n;
  while (*n && is_ows((*s)[*n - 1])) --*n;
}

// Calls f(element, len) for each element of a comma-separated list, trimmed.
template <class F>
void for_each_element(const char* v, size_t n, F f) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && v[i] != ',') continue;
    const char* e = v + start;
    size_t len = i - start;
    trim(&e, &len);
    f(e, len);
    start = i + 1;
  }
}

// Content-Length: digits, or a list of identical values ("5, 5"); at most 19
// significant digits (fits in 64 bits). Anything else is invalid.
bool parse_content_length(const char* v, size_t n, uint64_t* out) {
  bool ok = n > 0, any = false;
  uint64_t value = 0;
  for_each_element(v, n, [&](const char* e, size_t len) {
    if (len == 0) {
      ok = false;
      return;
    }
    uint64_t x = 0;
    int digits = 0;
    for (size_t i = 0; i < len; i++) {
      if (!is_digit(static_cast<uint8_t>(e[i]))) {
        ok = false;
        return;
      }
      if (x == 0 && e[i] == '0') continue;
      if (++digits > 19) {
        ok = false;
        return;
      }
      x = x * 10 + static_cast<uint64_t>(e[i] - '0');
    }
    if (any && x != value) ok = false;
    value = x;
    any = true;
  });
  *out = value;
  return ok && any;
}

// Whether the last transfer coding of a Transfer-Encoding value is chunked.
bool last_coding_chunked(const char* v, size_t n) {
  size_t start = n;
  while (start > 0 && v[start - 1] != ',') start--;
  const char* e = v + start;
  size_t len = n - start;
  for (size_t i = 0; i < len; i++)
    if (e[i] == ';') len = i;  // transfer parameters
  trim(&e, &len);
  return equals_ci(e, len, "chunked");
}

struct KnownHeader {
  const char* name;  // lowercase
  HttpHeader header;
  bool request_only;
};

constexpr KnownHeader kKnownHeaders[] = {
    {"host", HttpHeader::Host, true},
    {"content-length", HttpHeader::ContentLength, false},
    {"transfer-encoding", HttpHeader::TransferEncoding, false},
    {"connection", HttpHeader::Connection, false},
    {"traceparent", HttpHeader::Traceparent, true},
    {"tracestate", HttpHeader::Tracestate, true},
    {"b3", HttpHeader::B3, true},
    {"x-b3-traceid", HttpHeader::B3TraceId, true},
    {"x-b3-spanid", HttpHeader::B3SpanId, true},
    {"x-b3-sampled", HttpHeader::B3Sampled, true},
};

}  // namespace

bool http_plausible_start(bool response, const uint8_t* p, size_t n, bool whole) {
  if (n == 0) return false;
  if (response) {
    const size_t m = n < kVersionPrefixLen ? n : kVersionPrefixLen;
    if (std::memcmp(p, kVersionPrefix, m) != 0) return false;
    if (n > kVersionPrefixLen) return is_digit(p[kVersionPrefixLen]);
    return whole;
  }
  if (!is_upper(p[0])) return false;
  size_t i = 1;
  while (i < n && i <= kHttpMethodMax && is_method_char(p[i])) i++;
  if (i == n) return whole && i <= kHttpMethodMax;
  if (p[i] != ' ' || i > kHttpMethodMax) return false;
  if (++i == n) return whole;
  return is_target_char(p[i]);
}

void HttpMessageParser::reset(bool response, bool hunting) {
  response_ = response;
  state_ = hunting ? kHunt : kStart;
  first_ = !hunting;
  announced_ = false;
  leading_ = 0;
  lead_set_ = false;
  msg_seq_ = lead_seq_ = 0;
  start_message(0);
}

void HttpMessageParser::start_message(uint64_t ts_ns) {
  cr_ = false;
  end_seen_ = false;
  name_long_ = false;
  val_bad_ = false;
  val_trunc_ = false;
  has_cl_ = false;
  cl_bad_ = false;
  te_ = false;
  te_chunked_ = false;
  conn_close_ = false;
  conn_keep_alive_ = false;
  chunked_ = false;
  chunk_any_ = false;
  header_ = HttpHeader::Other;
  tok_len_ = 0;
  version_ = 0;
  chunk_digits_ = 0;
  status_ = 0;
  val_len_ = 0;
  head_bytes_ = 0;
  line_bytes_ = 0;
  cl_ = 0;
  remaining_ = 0;
  body_bytes_ = 0;
  first_ns_ = ts_ns;
  last_ns_ = ts_ns;
}

HttpMessageInfo HttpMessageParser::progress() const {
  HttpMessageInfo m;
  m.body_bytes = body_bytes_;
  m.last_ns = last_ns_;
  m.end_seen = end_seen_;
  m.chunked = chunked_;
  // a body that ends with the connection ends the connection
  m.keep_alive =
      state_ != kBodyClose && (version_ >= 11 ? !conn_close_ : (conn_keep_alive_ && !conn_close_));
  return m;
}

uint64_t HttpMessageParser::opaque() const {
  switch (state_) {
    case kHunt:
    case kIgnore:
    case kBodyClose:
      return UINT64_MAX;
    case kBody:
    case kChunkData:
      return remaining_;
    default:
      return 0;
  }
}

void HttpMessageParser::resync() {
  if (state_ != kHunt) return;
  state_ = kStart;
  first_ = false;
  leading_ = 0;
  lead_set_ = false;
}

void HttpMessageParser::ignore() {
  state_ = kIgnore;
  announced_ = false;
}

void HttpMessageParser::gap(HttpMessageListener& l) {
  if (state_ == kIgnore) return;
  if (announced_) {
    abort(HttpAbort::Gap, l);
    return;
  }
  state_ = kHunt;  // a start line in progress, or nothing yet: no message to end
  first_ = false;
}

void HttpMessageParser::close(HttpMessageListener& l) {
  if (state_ == kIgnore) return;
  if (announced_) {
    if (state_ == kBodyClose) {
      end_seen_ = true;
      end_message(l);
    } else {
      abort(HttpAbort::Closed, l);
    }
  }
  ignore();
}

void HttpMessageParser::end_message(HttpMessageListener& l) {
  const HttpMessageInfo m = progress();
  announced_ = false;
  state_ = kStart;
  first_ = false;
  leading_ = 0;
  lead_set_ = false;
  l.on_message_end(response_, m);
}

void HttpMessageParser::abort(HttpAbort why, HttpMessageListener& l) {
  const HttpMessageInfo m = progress();
  const bool announced = announced_;
  announced_ = false;
  state_ = why == HttpAbort::Closed ? kIgnore : kHunt;
  first_ = false;
  if (announced) l.on_message_abort(response_, why, m);
}

void HttpMessageParser::bad_start(HttpMessageListener& l) {
  const bool first = first_;
  announced_ = false;
  state_ = first ? kIgnore : kHunt;
  first_ = false;
  l.on_bad_start(response_, first);
}

// Counts one byte of the header block; false (and the message aborted) when
// the block would exceed its bound.
bool HttpMessageParser::head_byte(HttpMessageListener& l) {
  if (head_bytes_ >= kHttpHeaderBlockMax) {
    abort(HttpAbort::HeaderBound, l);
    return false;
  }
  head_bytes_++;
  return true;
}

// Consumes bytes up to and including the next LF, at most `room` of them.
size_t HttpMessageParser::scan_line(const uint8_t* p, size_t n, size_t room, bool* found) {
  const size_t lim = n < room ? n : room;
  const void* lf = std::memchr(p, '\n', lim);
  *found = lf != nullptr;
  return lf ? static_cast<size_t>(static_cast<const uint8_t*>(lf) - p) + 1 : lim;
}

void HttpMessageParser::request_line_done(HttpMessageListener& l) {
  state_ = kLineStart;
  l.on_request_line(version_);
}

void HttpMessageParser::announce_response(HttpMessageListener& l) {
  if (status_ < 100 || status_ > 599) {
    bad_start(l);
    return;
  }
  announced_ = true;
  l.on_response_line(version_, status_, first_ns_);
}

void HttpMessageParser::name_done() {
  header_ = HttpHeader::Other;
  if (!name_long_) {
    for (const KnownHeader& k : kKnownHeaders) {
      if (response_ && k.request_only) continue;
      if (std::strlen(k.name) == tok_len_ && std::memcmp(k.name, tok_, tok_len_) == 0) {
        header_ = k.header;
        break;
      }
    }
  }
  val_len_ = 0;
  val_bad_ = false;
  val_trunc_ = false;
  state_ = header_ == HttpHeader::Other ? kSkipLine : kValueLead;
}

void HttpMessageParser::value_done(HttpMessageListener& l) {
  while (val_len_ > 0 && is_ows(val_[val_len_ - 1])) val_len_--;
  state_ = kLineStart;
  switch (header_) {
    case HttpHeader::ContentLength: {
      uint64_t v = 0;
      if (val_bad_ || val_trunc_ || !parse_content_length(val_, val_len_, &v) ||
          (has_cl_ && v != cl_))
        cl_bad_ = true;
      else
        cl_ = v;
      has_cl_ = true;
      break;
    }
    case HttpHeader::TransferEncoding:
      te_ = true;
      if (val_len_ > 0)
        te_chunked_ = !val_bad_ && !val_trunc_ && last_coding_chunked(val_, val_len_);
      break;
    case HttpHeader::Connection:
      for_each_element(val_, val_len_, [this](const char* e, size_t len) {
        if (equals_ci(e, len, "close")) conn_close_ = true;
        if (equals_ci(e, len, "keep-alive")) conn_keep_alive_ = true;
      });
      break;
    case HttpHeader::Host:
    case HttpHeader::Traceparent:
    case HttpHeader::Tracestate:
    case HttpHeader::B3:
    case HttpHeader::B3TraceId:
    case HttpHeader::B3SpanId:
    case HttpHeader::B3Sampled:
      if (!val_bad_) l.on_request_header(header_, val_, val_len_, val_trunc_);
      break;
    case HttpHeader::Other:
      break;
  }
}

void HttpMessageParser::headers_done(HttpMessageListener& l) {
  if (!response_) l.on_request_headers();
  if (response_) {
    const HttpBody rule = l.on_response_headers();
    if (rule != HttpBody::Framed) {
      end_seen_ = true;
      end_message(l);
      if (rule == HttpBody::Tunnel) ignore();
      return;
    }
  }
  if (te_) {
    if (te_chunked_) {
      chunked_ = true;
      state_ = kChunkSize;
      remaining_ = 0;
      chunk_any_ = false;
      chunk_digits_ = 0;
      line_bytes_ = 0;
      cr_ = false;
    } else if (response_) {
      state_ = kBodyClose;  // RFC 9112 6.3: read until the connection closes
    } else {
      abort(HttpAbort::Malformed, l);  // a request's length cannot be determined
    }
    return;
  }
  if (has_cl_) {
    if (cl_bad_) {
      abort(HttpAbort::Malformed, l);
    } else if (cl_ == 0) {
      end_seen_ = true;
      end_message(l);
    } else {
      remaining_ = cl_;
      state_ = kBody;
    }
    return;
  }
  if (response_) {
    state_ = kBodyClose;
  } else {
    end_seen_ = true;
    end_message(l);
  }
}

void HttpMessageParser::chunk_line_done(HttpMessageListener& l) {
  cr_ = false;
  line_bytes_ = 0;
  if (!chunk_any_) {
    abort(HttpAbort::Malformed, l);
  } else if (remaining_ == 0) {
    state_ = kTrailerStart;
    head_bytes_ = 0;
  } else {
    state_ = kChunkData;
  }
}

uint64_t HttpMessageParser::skip(uint64_t n, uint64_t ts_ns, bool covered, HttpMessageListener& l) {
  switch (state_) {
    case kHunt:
    case kIgnore:
      return n;
    case kBodyClose:
      body_bytes_ += n;
      if (covered) last_ns_ = ts_ns;
      return n;
    case kBody:
    case kChunkData: {
      const uint64_t take = n < remaining_ ? n : remaining_;
      body_bytes_ += take;
      remaining_ -= take;
      if (covered) last_ns_ = ts_ns;
      if (remaining_ == 0) {
        if (state_ == kBody) {
          end_seen_ = covered;
          end_message(l);
        } else {
          state_ = kChunkDataEnd;
          cr_ = false;
        }
      }
      return take;
    }
    default:
      return 0;
  }
}

size_t HttpMessageParser::feed(const uint8_t* p, size_t n, uint64_t ts_ns, uint32_t seq,
                               HttpMessageListener& l) {
  if (state_ != kStart && state_ != kHunt && state_ != kIgnore) last_ns_ = ts_ns;
  size_t i = 0;
  while (i < n) {
    switch (state_) {
      case kHunt:
      case kIgnore:
        return i;

      case kStart: {
        if (!lead_set_) {
          lead_set_ = true;
          lead_seq_ = seq + static_cast<uint32_t>(i);
        }
        const uint8_t c = p[i++];
        if (c == '\r' || c == '\n') {
          if (++leading_ > kHttpLeadingEmptyMax) bad_start(l);
          break;
        }
        start_message(ts_ns);
        msg_seq_ = seq + static_cast<uint32_t>(i - 1);
        head_bytes_ = 1;
        if (response_ && c == 'H') {
          state_ = kRespVersion;
          tok_len_ = 1;
        } else if (!response_ && is_tchar(c)) {
          state_ = kMethod;
          tok_[0] = static_cast<char>(c);
          tok_len_ = 1;
        } else {
          bad_start(l);
        }
        break;
      }

      case kMethod: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (c == ' ') {
          announced_ = true;
          state_ = kTarget;
          line_bytes_ = 0;
          l.on_request_begin(tok_, tok_len_, first_ns_);
        } else if (is_tchar(c) && tok_len_ < kHttpMethodMax) {
          tok_[tok_len_++] = static_cast<char>(c);
        } else {
          bad_start(l);
        }
        break;
      }

      case kTarget: {
        const size_t room = head_room();
        if (room == 0) {
          abort(HttpAbort::HeaderBound, l);
          break;
        }
        const size_t lim = i + (n - i < room ? n - i : room);
        size_t j = i;
        while (j < lim && is_target_char(p[j])) j++;
        if (j > i) {
          l.on_request_target(reinterpret_cast<const char*>(p + i), j - i);
          line_bytes_ += static_cast<uint32_t>(j - i);
          head_bytes_ += static_cast<uint32_t>(j - i);
          i = j;
        }
        if (j == lim) break;
        head_bytes_++;
        i++;
        if (p[j] == ' ' && line_bytes_ > 0) {
          state_ = kReqVersion;
          tok_len_ = 0;
        } else {
          bad_start(l);
        }
        break;
      }

      case kReqVersion:
      case kRespVersion: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (tok_len_ < kVersionPrefixLen) {
          if (c == static_cast<uint8_t>(kVersionPrefix[tok_len_]))
            tok_len_++;
          else
            bad_start(l);
        } else if (is_digit(c)) {
          version_ = c == '0' ? 10 : 11;  // RFC 9112 2.3: 1.x (x > 1) is read as 1.1
          state_ = state_ == kReqVersion ? kReqLineEnd : kStatusSp;
          cr_ = false;
        } else {
          bad_start(l);
        }
        break;
      }

      case kReqLineEnd: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (c == '\n')
          request_line_done(l);
        else if (c == '\r' && !cr_)
          cr_ = true;
        else
          bad_start(l);
        break;
      }

      case kStatusSp: {
        if (!head_byte(l)) break;
        if (p[i++] == ' ') {
          state_ = kStatus;
          tok_len_ = 0;
          status_ = 0;
        } else {
          bad_start(l);
        }
        break;
      }

      case kStatus: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (!is_digit(c)) {
          bad_start(l);
          break;
        }
        status_ = static_cast<uint16_t>(status_ * 10 + (c - '0'));
        if (++tok_len_ == 3) state_ = kStatusEnd;
        break;
      }

      case kStatusEnd: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (c != ' ' && c != '\r' && c != '\n') {
          bad_start(l);
          break;
        }
        announce_response(l);
        if (announced_) state_ = c == '\n' ? kLineStart : kReason;
        break;
      }

      case kReason:
      case kSkipLine:
      case kTrailerLine: {
        if (head_room() == 0) {
          abort(HttpAbort::HeaderBound, l);
          break;
        }
        bool found;
        const size_t k = scan_line(p + i, n - i, head_room(), &found);
        i += k;
        head_bytes_ += static_cast<uint32_t>(k);
        if (state_ == kTrailerLine) {
          body_bytes_ += k;
          if (found) state_ = kTrailerStart;
        } else if (found) {
          state_ = kLineStart;
        }
        break;
      }

      case kLineStart: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (c == '\n') {
          headers_done(l);
        } else if (c == '\r') {
          state_ = kHeadEndLf;
        } else if (is_tchar(c)) {
          state_ = kName;
          tok_[0] = lower(c);
          tok_len_ = 1;
          name_long_ = false;
        } else {
          state_ = kSkipLine;  // a folded line, or not a field: ignored
        }
        break;
      }

      case kName: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        if (c == ':') {
          name_done();
        } else if (is_tchar(c)) {
          if (tok_len_ < kNameMax)
            tok_[tok_len_++] = lower(c);
          else
            name_long_ = true;
        } else {
          state_ = c == '\n' ? kLineStart : kSkipLine;  // not a field: ignored
        }
        break;
      }

      case kValueLead: {
        if (!is_ows(static_cast<char>(p[i]))) {
          state_ = kValue;
          break;
        }
        if (!head_byte(l)) break;
        i++;
        break;
      }

      case kValue: {
        const size_t room = head_room();
        if (room == 0) {
          abort(HttpAbort::HeaderBound, l);
          break;
        }
        const size_t lim = i + (n - i < room ? n - i : room);
        while (i < lim) {
          uint8_t c = p[i++];
          head_bytes_++;
          if (c == '\n') {
            value_done(l);
            break;
          }
          if (c == '\r') c = ' ';  // RFC 9112 2.2: a bare CR may be read as SP
          if ((c < 0x20 && c != '\t') || c == 0x7f) val_bad_ = true;
          if (val_len_ < kHttpValueMax)
            val_[val_len_++] = static_cast<char>(c);
          else
            val_trunc_ = true;
        }
        break;
      }

      case kHeadEndLf: {
        if (!head_byte(l)) break;
        if (p[i++] == '\n')
          headers_done(l);
        else
          abort(HttpAbort::Malformed, l);
        break;
      }

      case kBody:
      case kChunkData: {
        const uint64_t avail = n - i;
        const uint64_t take = avail < remaining_ ? avail : remaining_;
        i += static_cast<size_t>(take);
        body_bytes_ += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (state_ == kBody) {
            end_seen_ = true;
            end_message(l);
          } else {
            state_ = kChunkDataEnd;
            cr_ = false;
          }
        }
        break;
      }

      case kBodyClose:
        body_bytes_ += n - i;
        i = n;
        break;

      case kChunkSize: {
        if (++line_bytes_ > kHttpChunkLineMax) {
          abort(HttpAbort::Malformed, l);
          break;
        }
        const uint8_t c = p[i++];
        body_bytes_++;
        const int v = hex_value(c);
        if (cr_) {
          if (c == '\n')
            chunk_line_done(l);
          else
            abort(HttpAbort::Malformed, l);
        } else if (v >= 0) {
          chunk_any_ = true;
          if (remaining_ == 0 && v == 0) break;  // leading zero
          if (++chunk_digits_ > 15) {
            abort(HttpAbort::Malformed, l);  // over 2^60 bytes: not a real chunk
            break;
          }
          remaining_ = remaining_ << 4 | static_cast<uint64_t>(v);
        } else if (c == '\n') {
          chunk_line_done(l);
        } else if (c == '\r') {
          cr_ = true;
        } else if ((c == ';' || c == ' ' || c == '\t') && chunk_any_) {
          state_ = kChunkExt;
        } else {
          abort(HttpAbort::Malformed, l);
        }
        break;
      }

      case kChunkExt: {
        if (line_bytes_ >= kHttpChunkLineMax) {
          abort(HttpAbort::Malformed, l);
          break;
        }
        bool found;
        const size_t k = scan_line(p + i, n - i, kHttpChunkLineMax - line_bytes_, &found);
        i += k;
        line_bytes_ += static_cast<uint32_t>(k);
        body_bytes_ += k;
        if (found) chunk_line_done(l);
        break;
      }

      case kChunkDataEnd: {
        const uint8_t c = p[i++];
        body_bytes_++;
        if (c == '\n') {
          state_ = kChunkSize;
          remaining_ = 0;
          chunk_any_ = false;
          chunk_digits_ = 0;
          line_bytes_ = 0;
          cr_ = false;
        } else if (c == '\r' && !cr_) {
          cr_ = true;
        } else {
          abort(HttpAbort::Malformed, l);
        }
        break;
      }

      case kTrailerStart: {
        if (!head_byte(l)) break;
        const uint8_t c = p[i++];
        body_bytes_++;
        if (c == '\n') {
          end_seen_ = true;
          end_message(l);
        } else {
          state_ = c == '\r' ? kTrailerEndLf : kTrailerLine;
        }
        break;
      }

      case kTrailerEndLf: {
        if (!head_byte(l)) break;
        body_bytes_++;
        if (p[i++] == '\n') {
          end_seen_ = true;
          end_message(l);
        } else {
          abort(HttpAbort::Malformed, l);
        }
        break;
      }
    }
  }
  return i;
}

}  // namespace ebpfc
