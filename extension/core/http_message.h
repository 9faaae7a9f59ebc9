// http_message.h - the HTTP/1.x message parser of one direction of a
// connection (requests or responses): start line, header fields, body framing.
//
// It is fed the direction's bytes in sequence order, in pieces of any size,
// and is told about bytes it does not see (skip): body bytes the kernel did not
// send. It keeps no line buffer (it is a byte-level state machine); of the
// header fields it keeps only the values it needs (Content-Length,
// Transfer-Encoding, Connection; for requests Host, traceparent, tracestate
// and B3's b3, X-B3-TraceId, X-B3-SpanId, X-B3-Sampled), one at a time, in a fixed buffer.
// Everything it finds is reported to an HttpMessageListener. Bounded work per byte, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/http_exchange.h"

namespace ebpfc {

constexpr size_t kHttpHeaderBlockMax = 16384;  // start line + header fields; also the trailer
constexpr size_t kHttpValueMax = 512;          // a kept header value (longer: truncated)
constexpr size_t kHttpChunkLineMax = 1024;     // a chunk-size line with its extensions
constexpr size_t kHttpLeadingEmptyMax = 16;    // CR/LF bytes tolerated before a start line

// The header fields a parser keeps.
enum class HttpHeader : uint8_t {
  Other,
  Host,
  ContentLength,
  TransferEncoding,
  Connection,
  Traceparent,
  Tracestate,
  B3,         // the single header
  B3TraceId,  // X-B3-TraceId
  B3SpanId,   // X-B3-SpanId
  B3Sampled,  // X-B3-Sampled
};

// Why a message ended before its end.
enum class HttpAbort : uint8_t {
  Gap,          // bytes were lost (HttpMessageParser::gap)
  HeaderBound,  // header block or trailer over kHttpHeaderBlockMax
  Malformed,    // invalid framing: Content-Length, Transfer-Encoding, chunk size...
  Closed,       // the connection ended
};

// How a response's body is framed; the listener decides it from the request
// (HEAD, CONNECT) and the status code.
enum class HttpBody : uint8_t {
  Framed,  // by its header fields: chunked, Content-Length, or the connection's end
  None,    // no body: 1xx, 204, 304, a response to HEAD
  Tunnel,  // 101, or 2xx to CONNECT: the connection stops being HTTP after the header block
};

// A message's facts at its end (or so far).
struct HttpMessageInfo {
  uint64_t body_bytes;  // bytes after the header block, chunk framing included
  uint64_t last_ns;     // time of the last segment that carried bytes of it
  bool end_seen;        // the segment with its last byte was delivered
  bool chunked;
  bool keep_alive;  // its version and Connection header let the connection persist
};

class HttpMessageListener {
 public:
  virtual ~HttpMessageListener() = default;
  // A request line begins: its method token and the time of its first byte.
  // The target follows in pieces; the line is valid only at on_request_line.
  virtual void on_request_begin(const char* method, size_t len, uint64_t ts_ns) = 0;
  virtual void on_request_target(const char* p, size_t n) = 0;
  virtual void on_request_line(uint8_t version) = 0;  // 10 or 11
  // Host, a trace context header of the current request, whitespace
  // trimmed; `truncated`: the value was longer than kHttpValueMax.
  virtual void on_request_header(HttpHeader h, const char* value, size_t len, bool truncated) = 0;
  // The current request's header block ended (its body, if any, follows).
  virtual void on_request_headers() {}
  // A valid status line (its reason phrase follows).
  virtual void on_response_line(uint8_t version, uint16_t status, uint64_t ts_ns) = 0;
  virtual HttpBody on_response_headers() = 0;
  virtual void on_message_end(bool response, const HttpMessageInfo& m) = 0;
  virtual void on_message_abort(bool response, HttpAbort why, const HttpMessageInfo& m) = 0;
  // Bytes where a message should start are not a start line (a request begun
  // with on_request_begin is void). `first`: the direction's first message,
  // so the direction is not HTTP; the parser then ignores everything.
  virtual void on_bad_start(bool response, bool first) = 0;
};

// Whether a segment whose payload begins with p[0..n) may begin a message: a
// request line (an uppercase method token, SP, a target byte) or a status line
// ("HTTP/1." and a digit). `whole`: the n bytes are the whole segment, so a
// prefix of those suffices. (Stricter than what the parser accepts at a known
// message start, any RFC 9110 token as the method: a resynchronisation looks at
// segments that may begin anywhere in a body.)
bool http_plausible_start(bool response, const uint8_t* p, size_t n, bool whole);

class HttpMessageParser {
 public:
  // Starts a direction: at a message start, or `hunting` for one (the capture
  // joined the connection mid-stream).
  void reset(bool response, bool hunting);

  // Parses n contiguous bytes carried by a segment seen at ts_ns; p[0] is
  // the byte at sequence number seq. Returns the bytes consumed: all of them,
  // unless the parser stopped looking at this segment (it is hunting or
  // ignoring the direction).
  size_t feed(const uint8_t* p, size_t n, uint64_t ts_ns, uint32_t seq, HttpMessageListener& l);

  // Consumes up to n bytes that were not seen, and returns how many it could:
  // bytes of a body of known length or of a chunk (at most opaque()), or any
  // number while ignoring, hunting or in a body that ends with the connection.
  // `covered`: a delivered segment carried them (at ts_ns).
  uint64_t skip(uint64_t n, uint64_t ts_ns, bool covered, HttpMessageListener& l);

  // How many bytes skip() would take now: UINT64_MAX when unbounded, 0 when
  // the next bytes must be seen.
  uint64_t opaque() const;

  // Bytes were lost: the message in progress is aborted (HttpAbort::Gap) and
  // the parser hunts for the next message start.
  void gap(HttpMessageListener& l);
  // The connection ended: a body that ends with the connection ends; any
  // other message in progress is aborted (HttpAbort::Closed). Then ignoring.
  void close(HttpMessageListener& l);
  // While hunting: a message starts at the next byte fed.
  void resync();
  // Stops parsing this direction (not HTTP, or a tunnel); says nothing.
  void ignore();

  bool hunting() const { return state_ == kHunt; }
  bool ignoring() const { return state_ == kIgnore; }
  // The listener was told of a message that has not ended yet.
  bool in_message() const { return announced_; }
  // The current message so far.
  HttpMessageInfo progress() const;
  // Sequence numbers of the message begun (valid from on_request_begin or
  // on_response_line on): its first byte, and the first byte the parser read
  // after the previous message ended or after it resynchronised (the empty
  // lines a message may begin with lie between the two).
  uint32_t message_seq() const { return msg_seq_; }
  uint32_t lead_seq() const { return lead_seq_; }

 private:
  enum State : uint8_t {
    kStart,  // optional empty lines, then a start line
    kMethod,
    kTarget,
    kReqVersion,  // "HTTP/1.x"
    kReqLineEnd,  // [CR] LF
    kRespVersion,
    kStatusSp,
    kStatus,
    kStatusEnd,  // SP, or [CR] LF
    kReason,
    kLineStart,  // a header field line, or the empty line
    kName,
    kValueLead,
    kValue,
    kSkipLine,
    kHeadEndLf,
    kBody,       // Content-Length: remaining_ bytes
    kBodyClose,  // until the connection ends
    kChunkSize,
    kChunkExt,
    kChunkData,
    kChunkDataEnd,  // [CR] LF after chunk data
    kTrailerStart,
    kTrailerLine,
    kTrailerEndLf,
    kHunt,
    kIgnore,
  };
  static constexpr size_t kNameMax = 20;  // longer header names are not kept

  bool head_byte(HttpMessageListener& l);
  size_t head_room() const { return kHttpHeaderBlockMax - head_bytes_; }
  void start_message(uint64_t ts_ns);
  void bad_start(HttpMessageListener& l);
  void announce_response(HttpMessageListener& l);
  void request_line_done(HttpMessageListener& l);
  void name_done();
  void value_done(HttpMessageListener& l);
  void headers_done(HttpMessageListener& l);
  void chunk_line_done(HttpMessageListener& l);
  void end_message(HttpMessageListener& l);
  void abort(HttpAbort why, HttpMessageListener& l);
  size_t scan_line(const uint8_t* p, size_t n, size_t room, bool* found);

  State state_;
  bool response_;
  bool first_;      // the current start line is the direction's first
  bool announced_;  // see in_message()
  bool cr_;         // a CR was seen: only LF may follow
  bool end_seen_;
  bool name_long_;
  bool val_bad_;    // a control character in the value
  bool val_trunc_;  // value longer than kHttpValueMax
  bool has_cl_;
  bool cl_bad_;
  bool te_;
  bool te_chunked_;  // chunked is the last transfer coding
  bool conn_close_;
  bool conn_keep_alive_;
  bool chunked_;
  bool chunk_any_;  // a chunk-size digit was seen
  bool lead_set_;   // lead_seq_ is this message's
  HttpHeader header_;
  uint8_t tok_len_;  // method bytes, version bytes matched, status digits, header name bytes
  uint8_t version_;  // 10 or 11
  uint8_t leading_;
  uint8_t chunk_digits_;  // significant digits
  uint16_t status_;
  uint16_t val_len_;
  uint32_t head_bytes_;  // header block (or trailer) bytes so far
  uint32_t line_bytes_;  // target bytes, or chunk-size line bytes
  uint32_t msg_seq_;
  uint32_t lead_seq_;
  uint64_t cl_;
  uint64_t remaining_;  // body or chunk bytes still to come
  uint64_t body_bytes_;
  uint64_t first_ns_;
  uint64_t last_ns_;
  char tok_[kHttpMethodMax + 4];  // method token, or lowercase header name
  char val_[kHttpValueMax];
};

}  // namespace ebpfc
