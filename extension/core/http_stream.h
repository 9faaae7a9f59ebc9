// http_stream.h - the HTTP/1.x exchanges of one TCP connection, from what the
// kernel reports of its payload.
//
// Direction 0 is client -> server (requests), 1 is server -> client
// (responses). For each payload segment the kernel reports the sequence number
// of its first byte, its length, and the first data_len bytes of it (a bounded
// head); segments may come duplicated, reordered, overlapping, or not at all.
//
// Per direction the stream reassembles by sequence number: every byte is
// counted once; a segment beyond a hole waits in a bounded out-of-order buffer
// (HttpReorderBuffer) until the hole fills; when it cannot (the buffer is full,
// the hole is older than kHttpHoleTimeoutNs, the other side acknowledged its
// bytes, or the connection ends), the
// bytes are lost: the message in progress ends incomplete and the direction
// hunts for the next message at the start of a later segment (a request line
// in direction 0, "HTTP/1." in direction 1). Bytes the parser does not need
// (a body of known length, a chunk's data, a body that ends with the
// connection) need not be delivered: they are counted from sequence numbers,
// and skip_until() tells the kernel where delivery is needed again.
//
// Requests and responses are paired first in, first out while both
// directions are known to be aligned: from the connection's start, as long as
// no direction lost bytes its parser needed. Pipelining pairs exactly then.
// Loss shows as a hole before a later segment, or as an acknowledgement
// number (each segment's says how much of the other direction its sender had
// received) beyond the bytes reported. After a loss (or when the capture
// joined mid-stream) each direction resynchronises at its next message head,
// and a response is paired only when its request is certain (see
// bind_in_doubt() in http_stream.cpp): the one request whose client, when it
// sent it, had received the server's bytes exactly up to where this response
// begins, sent after a request the capture saw (not behind a lost one), on a
// connection not seen pipelining, with every request seen before it able to
// have had its answer earlier. That pairing aligns the stream again. A
// response in doubt is emitted without a request and the requests it may
// answer without a response, both with kHttpUnpaired: an exchange never gets
// another exchange's status. Each exchange is handed to an HttpExchangeSink
// when its final response ends (or when it is given up). A direction whose
// first bytes are not a start line is not HTTP: it (and the other direction,
// unless that one already carried a valid message) is ignored from then on;
// if the other direction did carry one, it hunts for its next message head.
//
// Everything is inside the object: sizeof(HttpStream) is 30,992 bytes on
// x86-64 (GCC and Clang; at most 32 KiB, checked below): 2 x 8,456 for the
// out-of-order buffers, 8 KiB for the strings of open exchanges, 33 open
// exchanges, 2 x 624 for the two message parsers, 32 positions of responses
// emitted unpaired. No allocation, ever; the worker pools these objects and
// reuses them with reset().
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/http_exchange.h"
#include "core/http_message.h"
#include "core/http_reorder.h"

namespace ebpfc {

constexpr size_t kHttpOpenMax = 32;        // open exchanges (requests without a final response)
constexpr size_t kHttpStringBytes = 8192;  // targets, Host and tracestate of open exchanges
constexpr uint64_t kHttpHoleTimeoutNs = 2000ull * 1000 * 1000;  // a hole older than this is lost
constexpr uint32_t kHttpSkipMax = 1u << 30;  // skip_until() is at most this far ahead
// A stream joined mid-stream is given up as not HTTP when, before any valid
// message, this many segment starts in each direction (or this many in all)
// were not message starts.
constexpr uint32_t kHttpHuntEachMax = 16;
constexpr uint32_t kHttpHuntTotalMax = 1024;

class HttpStream final : private HttpMessageListener {
 public:
  HttpStream() { reset(); }
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  // Starts a new connection (cheap: buffers are not cleared). `mid_stream`:
  // the capture joined an established connection, so both directions hunt
  // for a message start instead of judging their first bytes.
  void reset(bool mid_stream = false);

  // Optional, before the direction's first segment: the sequence number of
  // its first payload byte (the SYN's sequence number + 1). Without it (and
  // without set_stream_unknown), the first segment seen is taken as the
  // direction's start.
  void set_stream_start(unsigned dir, uint32_t seq);
  // Or: the direction's start was not seen (the capture joined the
  // connection mid-stream): it hunts for a message start, and pairing waits
  // for certainty. Ignored once the direction started.
  void set_stream_unknown(unsigned dir);

  // One payload segment of direction `dir` (0 or 1), seen at ts_ns: it holds
  // segment_len bytes from sequence number seq, of which `data` has the first
  // data_len. A caller may also report a piece of a segment (seq advanced
  // past bytes it does not send, when those precede skip_until()). `ack`
  // (when has_ack): the segment's acknowledgement number, the sequence number
  // up to which its sender had received the other direction.
  void on_segment(unsigned dir, uint32_t seq, const uint8_t* data, uint32_t data_len,
                  uint32_t segment_len, uint64_t ts_ns, HttpExchangeSink& sink, uint32_t ack = 0,
                  bool has_ack = false);

  // Optional: the kernel saw direction `dir`'s payload up to end_seq
  // (exclusive) by ts_ns, and did not report what was before skip_until().
  // Ends a body of known length whose last segment was not reported; counts
  // the bytes of a body that ends with the connection (e.g. before on_close).
  void on_progress(unsigned dir, uint32_t end_seq, uint64_t ts_ns, HttpExchangeSink& sink);

  // The connection ended (FIN, RST, idle): holes are given up, a response
  // that ends with the connection ends, and every open exchange is emitted.
  // Later calls are ignored until reset().
  void on_close(HttpExchangeSink& sink);

  // Skip hint: while has_skip(dir), the bytes of `dir` before skip_until(dir)
  // are body bytes the parser does not need to see. A segment that ends
  // before it may be left out entirely; the segment that reaches it should
  // still be reported (a head of 0 bytes will do): its time is the body's
  // end. Correct whether or not the kernel follows the hint.
  bool has_skip(unsigned dir) const;
  uint32_t skip_until(unsigned dir) const;
  // Nothing more of `dir`'s payload is needed: it is not HTTP, it became a
  // tunnel (CONNECT, 101 Switching Protocols), or the connection ended.
  bool skip_all(unsigned dir) const;
  // Nothing more will come out of this stream: both directions are ignored
  // and no exchange is open (or it was closed). The worker may release it.
  bool done() const;
  // A valid request or status line was seen in some direction.
  bool is_http() const { return dirs_[0].validated || dirs_[1].validated; }
  // Requests and responses are paired by order (no loss since the start, or
  // realigned since).
  bool aligned() const { return aligned_; }

  size_t open_exchanges() const { return open_count_; }
  const HttpCounters& counters() const { return counters_; }
  void clear_counters() { counters_ = HttpCounters{}; }

 private:
  struct Direction {
    HttpMessageParser parser;
    HttpReorderBuffer reorder;
    uint32_t next;         // sequence number of the next byte to parse
    uint32_t hunt_misses;  // segment starts that were not message starts (mid-stream)
    bool started;          // `next` is known
    uint32_t ack;          // of the segment being parsed (has_ack)
    bool has_ack;
    bool start_unknown;  // started mid-stream: what came before `next` is unknown
    bool validated;      // a valid start line was seen
    bool busy;           // being parsed: not to be re-entered (see give_up_hole)
    bool skip_holes;     // holes are being given up: hunting goes past them
  };

  // An exchange whose final response has not ended yet.
  struct Open {
    uint64_t request_start_ns;
    uint64_t last_ns;  // last byte seen of it
    uint64_t request_body;
    uint32_t id;
    uint32_t seq;            // of the request's first byte
    uint32_t ack;            // the client's acknowledgement number then: the server's bytes it had
    uint32_t strings_begin;  // its strings start here in strings_ (monotonic offsets)
    uint32_t target_off;
    uint32_t host_off;
    uint32_t tracestate_off;
    uint16_t target_len;
    uint16_t host_len;
    uint16_t tracestate_len;
    uint16_t incomplete;
    uint16_t flags;
    uint16_t status;
    HttpMethod method;
    uint8_t method_len;
    uint8_t request_version;
    uint8_t response_version;
    uint8_t interim;
    uint8_t trace_flags;
    uint8_t trace_id[16];
    uint8_t parent_id[8];
    char method_text[kHttpMethodMax];
    bool has_request;
    bool request_done;
    bool request_keep_alive;
    bool response_started;
    bool traceparent_seen;
    bool has_traceparent;
    bool host_seen;
    bool has_ack;
    // The request before it in the stream is known: no request byte was lost
    // between their starts, and the client received something in between
    // (not sent behind it without reading: pipelined). Or it is the first.
    bool after_known;
    bool doubt;  // a response it may have been the request of was emitted unpaired
    uint8_t b3;  // B3 headers found valid (kB3* bits); their ids are in trace_id/parent_id
    TraceIds ids;
  };

  // HttpMessageListener
  void on_request_begin(const char* method, size_t len, uint64_t ts_ns) override;
  void on_request_target(const char* p, size_t n) override;
  void on_request_line(uint8_t version) override;
  void on_request_header(HttpHeader h, const char* value, size_t len, bool truncated) override;
  void on_request_headers() override;
  void on_response_line(uint8_t version, uint16_t status, uint64_t ts_ns) override;
  HttpBody on_response_headers() override;
  void on_message_end(bool response, const HttpMessageInfo& m) override;
  void on_message_abort(bool response, HttpAbort why, const HttpMessageInfo& m) override;
  void on_bad_start(bool response, bool first) override;

  bool process(unsigned dir, HttpSegment s);
  void drain(unsigned dir, const HttpSegment* before);
  void lost_bytes(unsigned dir, uint32_t end);
  void lost(unsigned dir);
  void misaligned();
  void acked(unsigned dir, uint32_t ack, uint64_t ts_ns);
  void bind_in_doubt(uint64_t ts_ns);
  bool earlier_answerable(uint32_t cand_index, uint32_t at) const;
  void give_up_hole(unsigned dir);
  void hunt_miss(unsigned dir);
  void not_http(unsigned dir);

  Open* entry(uint32_t id);
  Open& push_back();
  void pop_front();
  void void_request();
  void evict_front();
  Open* response_entry();
  void bind_no_request(uint64_t ts_ns, uint16_t incomplete);
  void finish_response(const HttpMessageInfo* m, uint16_t incomplete);
  void emit(const Open& e, bool queued, const HttpMessageInfo* response);
  bool append(uint32_t* off, uint16_t* len, size_t max, const char* p, size_t n);
  void copy_string(uint32_t off, uint16_t len, char* out) const;
  void add_tracestate(Open& e, const char* v, size_t len, bool truncated);
  // B3 headers found valid (Open::b3).
  enum : uint8_t { kB3Single = 1, kB3Trace = 2, kB3Span = 4, kB3Sampled = 8, kB3NotSampled = 16 };
  void add_b3(Open& e, HttpHeader h, const char* v, size_t len);
  static TraceOrigin origin_of(const Open& e, uint8_t* flags);

  // What the response being parsed belongs to.
  enum class Bind : uint8_t {
    None,       // between responses
    Entry,      // the open exchange resp_id_ (the front of the queue while it is open)
    NoRequest,  // no request: no_request_
    Orphan,     // the exchange was emitted early (queue bound): the response is dropped
  };

  Direction dirs_[2];
  Open open_[kHttpOpenMax];  // a ring: requests in order, oldest at open_head_
  Open no_request_;
  uint32_t open_head_;
  uint32_t open_count_;
  uint32_t next_id_;
  uint32_t req_id_;          // the entry of the request being parsed, while req_live_
  uint32_t resp_id_;         // see Bind::Entry
  uint32_t skip_responses_;  // responses whose entry was emitted early (queue bound)
  uint32_t str_head_;        // strings_ in use: [str_head_, str_tail_) (monotonic)
  uint32_t str_tail_;
  uint16_t resp_status_;
  bool req_live_;
  Bind bind_;  // set by a status line, kept across 1xx, cleared when a final response ends
  bool mid_stream_;
  bool closed_;
  // Pairing (see the top of the file). While !aligned_, what happened in the
  // response direction since alignment was lost: where its latest lost (or
  // unread) bytes end, and where the responses emitted unpaired began (at most
  // kHttpOpenMax: the oldest are forgotten, which only makes pairing rarer).
  bool aligned_;
  bool pipelines_;         // a request was seen sent before an earlier one's response
  bool req_contiguous_;    // no request byte lost since the latest request began
  bool last_req_has_ack_;  // of the latest request begun
  bool resp_lost_;         // resp_lost_end_ is valid
  uint32_t last_req_ack_;
  uint32_t resp_lost_end_;
  uint32_t evicted_;      // requests emitted early (queue bound) whose response may come
  uint32_t evicted_ack_;  // the latest one's acknowledgement number
  bool evicted_has_ack_;
  uint32_t unpaired_count_;  // entries of unpaired_seq_ in use (a ring)
  uint32_t unpaired_seq_[kHttpOpenMax];
  HttpExchangeSink* sink_;  // during a call only
  HttpCounters counters_;
  char strings_[kHttpStringBytes];
};

static_assert((kHttpStringBytes & (kHttpStringBytes - 1)) == 0, "a power of two");
static_assert(sizeof(void*) != 8 || sizeof(HttpStream) <= 32 * 1024,
              "per-connection parser state is bounded (see the comment at the top)");

}  // namespace ebpfc
