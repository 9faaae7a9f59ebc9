#include "core/redis_wire.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "core/db_connections_impl.h"
#include "core/http_span.h"  // text_of
#include "core/stream_cursor.h"

namespace ebpfc {

namespace {

constexpr size_t kLineKeep = 48;               // bytes of a header or error line kept
constexpr uint64_t kNumberLineMax = 32;        // a length or count line longer is not RESP
constexpr uint64_t kLineMax = 1u << 20;        // a simple string or inline command longer: give up
constexpr int64_t kBulkMax = 1ll << 32;        // Redis: proto-max-bulk-len is at most 4 GiB
constexpr int64_t kCountMax = 1ll << 32;       // elements of one aggregate
constexpr size_t kKeepArg = kRedisKeyMax + 1;  // one more: tells a cut name

bool is_reply_type(uint8_t t) {
  switch (t) {
    case '+':
    case '-':
    case ':':
    case '$':
    case '*':  // RESP2
    case '_':
    case ',':
    case '#':
    case '!':
    case '=':
    case '(':  // RESP3 scalars
    case '%':
    case '~':
    case '>':
    case '|':  // RESP3 aggregates
      return true;
    default:
      return false;
  }
}

// Whether the type's header line is a number (a length or a count).
bool numeric_line(uint8_t t) {
  return t == '$' || t == '*' || t == '!' || t == '=' || t == '%' || t == '~' || t == '>' ||
         t == '|';
}

bool is_bulk(uint8_t t) { return t == '$' || t == '!' || t == '='; }

// A decimal integer (optional '-'), the whole of [b, b+n).
bool parse_int(const char* b, size_t n, int64_t* out) {
  size_t i = 0;
  bool neg = false;
  if (n > 0 && b[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i == n || n - i > 18) return false;
  int64_t v = 0;
  for (; i < n; i++) {
    if (b[i] < '0' || b[i] > '9') return false;
    v = v * 10 + (b[i] - '0');
  }
  *out = neg ? -v : v;
  return true;
}

// Commands whose first argument is a key: only these may show it (with the
// key names setting on). Any other command's first argument (AUTH's
// password, ECHO's message, CONFIG SET's value, a script) is never kept.
const char* const kKeyCommands[] = {
    "APPEND",        "BITCOUNT", "BITPOS",     "BLMOVE",       "BLPOP",       "BRPOP",
    "BZPOPMAX",      "BZPOPMIN", "COPY",       "DECR",         "DECRBY",      "DEL",
    "DUMP",          "EXISTS",   "EXPIRE",     "EXPIREAT",     "EXPIRETIME",  "GEOADD",
    "GEODIST",       "GEOHASH",  "GEOPOS",     "GEOSEARCH",    "GET",         "GETBIT",
    "GETDEL",        "GETEX",    "GETRANGE",   "GETSET",       "HDEL",        "HEXISTS",
    "HGET",          "HGETALL",  "HINCRBY",    "HINCRBYFLOAT", "HKEYS",       "HLEN",
    "HMGET",         "HMSET",    "HRANDFIELD", "HSCAN",        "HSET",        "HSETNX",
    "HSTRLEN",       "HVALS",    "INCR",       "INCRBY",       "INCRBYFLOAT", "LINDEX",
    "LINSERT",       "LLEN",     "LMOVE",      "LPOP",         "LPOS",        "LPUSH",
    "LPUSHX",        "LRANGE",   "LREM",       "LSET",         "LTRIM",       "MGET",
    "MSET",          "MSETNX",   "PERSIST",    "PEXPIRE",      "PEXPIREAT",   "PFADD",
    "PFCOUNT",       "PSETEX",   "PTTL",       "RENAME",       "RENAMENX",    "RPOP",
    "RPOPLPUSH",     "RPUSH",    "RPUSHX",     "SADD",         "SCARD",       "SDIFF",
    "SET",           "SETBIT",   "SETEX",      "SETNX",        "SETRANGE",    "SINTER",
    "SISMEMBER",     "SMEMBERS", "SMISMEMBER", "SMOVE",        "SPOP",        "SRANDMEMBER",
    "SREM",          "SSCAN",    "STRLEN",     "SUNION",       "TOUCH",       "TTL",
    "TYPE",          "UNLINK",   "WATCH",      "XACK",         "XADD",        "XDEL",
    "XLEN",          "XRANGE",   "XREVRANGE",  "XTRIM",        "ZADD",        "ZCARD",
    "ZCOUNT",        "ZINCRBY",  "ZMSCORE",    "ZPOPMAX",      "ZPOPMIN",     "ZRANGE",
    "ZRANGEBYSCORE", "ZRANK",    "ZREM",       "ZREVRANGE",    "ZREVRANK",    "ZSCAN",
    "ZSCORE",
};

bool key_command(std::string_view name) {
  for (const char* k : kKeyCommands)
    if (name == k) return true;
  return false;
}

bool push_mode_command(std::string_view name) {
  return name == "SUBSCRIBE" || name == "PSUBSCRIBE" || name == "SSUBSCRIBE" || name == "MONITOR";
}

// Does a segment start a plausible value (after a gap, or mid-stream)? A
// client's: an array of bulk strings "*<n>\r\n$". A server's: a type byte
// and a header line of its shape.
bool plausible_start(const uint8_t* d, size_t n, bool from_client) {
  if (n < 3) return false;
  const uint8_t t = d[0];
  if (from_client ? t != '*' : !is_reply_type(t)) return false;
  size_t i = 1;
  const size_t lim = std::min<size_t>(n, 24);
  if (numeric_line(t) || t == ':' || t == '(') {
    if (i < lim && d[i] == '-') i++;
    const size_t digits = i;
    while (i < lim && d[i] >= '0' && d[i] <= '9') i++;
    if (i == digits || i + 1 >= n || d[i] != '\r' || d[i + 1] != '\n') return false;
    if (from_client) return i + 2 < n && d[i + 2] == '$';
    return true;
  }
  while (i < lim && d[i] >= ' ' && d[i] < 0x7f) i++;
  return i == lim || (i + 1 < n && d[i] == '\r' && d[i + 1] == '\n');
}

}  // namespace

// ----------------------------------------------------------------------------
// One connection.

class RedisConnection {
 public:
  RedisConnection() { ops_.resize(8); }

  void reset(const ebpfc_payload_event& head, SpanIdGenerator& ids) {
    key = head.key;
    client = head.from_client ? head.sender : head.sender ^ 1;
    ids.span_id(span_id);
    last_ns = head.ts_ns;
    stopped = false;
    mid_stream = false;
    db_known_ = false;
    db_ = 0;
    in_multi_ = false;
    for (auto& d : dir_) d.clear();
    op_head_ = op_count_ = 0;
  }

  ebpfc_flow_key key;
  uint8_t client;
  uint8_t span_id[8];
  uint64_t last_ns;
  bool stopped;  // nothing more is parsed (push mode, not the protocol, a bound)
  bool mid_stream;

  struct Ctx {
    const WallClock* clock;
    SpanIdGenerator* ids;
    PgSpanList* out;
    RedisCounters* counters;
    const RedisTrackerOptions* options;
  };

  void on_segment(unsigned role, const ebpfc_payload_event& h, const Ctx& ctx) {
    if (stopped) return;
    Dir& d = dir_[role];
    const SegmentNews n = d.cursor.take(h);
    if (n.repeat) return;
    if (n.first) {
      const bool at_start = (h.flags & EBPFC_PAYLOAD_STREAM_START) && h.stream_start == h.seq;
      if (!at_start) {
        if (!mid_stream) {
          ctx.counters->mid_stream++;
          db_known_ = false;
        }
        mid_stream = true;
        d.mode = Mode::Resync;
      } else if (role == 0 && !mid_stream) {
        db_known_ = true;  // a new connection starts in database 0
      }
    }
    if (n.hole > 0) gap(role, ctx);
    if (n.beyond_head) return;
    const uint8_t* data = n.data;
    const size_t len = n.len;
    if (d.mode == Mode::Resync) {
      if (len == 0 || !plausible_start(data, len, role == 0)) return;
      if (role == 1) {
        // The replies from here on answer commands the server had read
        // when it sent this segment (its acknowledgement): the last one of
        // those whose end it acknowledged, and those after it. Earlier
        // ones were answered in bytes not seen (exact for a client that
        // waits for each reply).
        if (!(h.flags & EBPFC_PAYLOAD_ACK)) return;
        if (op_count_ > 0) {
          size_t last = op_count_;
          for (size_t i = 0; i < op_count_; i++)
            if (static_cast<int32_t>(op_at(i).end_seq - h.ack) <= 0) last = i;
          // every waiting command ends after the acknowledged bytes: this
          // segment answers commands not seen
          if (last == op_count_) return;
          for (size_t i = 0; i < last; i++) pop();
          ctx.counters->lost_requests += last;
        }
      }
      d.mode = Mode::Values;
      d.reset_value();
      ctx.counters->resyncs++;
    }
    feed(role, data, len, n.seq, h.ts_ns, ctx);
    if (!stopped && n.wire_len > len) gap(role, ctx);
  }

  // Everything still waiting becomes a span (the connection ended).
  void close(uint64_t now_ns, const Ctx& ctx) {
    while (op_count_ > 0) {
      Op& op = front();
      op.flags |= kRedisNoResponse;
      emit(op, now_ns, ctx);
      pop();
    }
  }

 private:
  enum class Mode : uint8_t { Values, Resync };
  enum class State : uint8_t { Type, Line, Bulk, Inline };

  struct Dir {
    Mode mode;
    StreamCursor cursor;
    State st;
    uint8_t type;      // of the value being read
    uint8_t top_type;  // of the top-level value being read
    char line[kLineKeep];
    size_t line_kept;
    uint64_t line_total;
    uint64_t bulk_left;  // body bytes and the final CRLF
    uint64_t bulk_len;
    size_t depth;
    int64_t left[kRedisMaxDepth];  // elements left at each level
    bool attr[kRedisMaxDepth];     // the level is an attribute (not an element)
    uint64_t elem;                 // client: index of the element being read
    uint64_t value_bytes;
    uint64_t value_start_ns;
    bool in_value;
    char arg0[kRedisNameMax];
    size_t arg0_len;
    char arg1[kKeepArg];
    size_t arg1_len;
    bool arg1_cut;
    char err[kRedisErrorMax];
    size_t err_len;
    void clear() {
      mode = Mode::Values;
      cursor.reset();
      reset_value();
    }
    void reset_value() {
      st = State::Type;
      type = top_type = 0;
      line_kept = 0;
      line_total = 0;
      bulk_left = bulk_len = 0;
      depth = 0;
      elem = 0;
      value_bytes = 0;
      value_start_ns = 0;
      in_value = false;
      arg0_len = arg1_len = err_len = 0;
      arg1_cut = false;
    }
  };

  struct Op {
    uint16_t flags;
    SpanStatus status;
    bool select;       // SELECT: its argument becomes the database when it succeeds
    bool push_mode;    // SUBSCRIBE, MONITOR
    uint32_t end_seq;  // the client's stream after the command
    uint64_t start_ns;
    uint64_t request_bytes;
    uint64_t response_bytes;
    char name[kRedisNameMax];
    uint8_t name_len;
    char arg[kRedisKeyMax];
    uint8_t arg_len;
    bool show_arg;
    char err[kRedisErrorMax];
    uint8_t err_len;
    int64_t db;  // the database when the command was sent (-1: not known)
  };

  Op& op_at(size_t i) { return ops_[(op_head_ + i) % ops_.size()]; }
  Op& front() { return ops_[op_head_]; }
  void pop() {
    op_head_ = (op_head_ + 1) % ops_.size();
    op_count_--;
    if (op_count_ == 0) op_head_ = 0;
  }
  // A slot for a command, the ring grown (up to kRedisMaxPending) if full.
  Op* push(const Ctx& ctx) {
    if (op_count_ == ops_.size()) {
      if (ops_.size() >= kRedisMaxPending) {
        ctx.counters->pending_bound++;
        ctx.counters->lost_requests += op_count_;
        op_head_ = op_count_ = 0;
        stopped = true;
        return nullptr;
      }
      std::vector<Op> grown(std::min(ops_.size() * 2, kRedisMaxPending));
      for (size_t i = 0; i < op_count_; i++) grown[i] = op_at(i);
      ops_.swap(grown);
      op_head_ = 0;
    }
    Op& op = ops_[(op_head_ + op_count_) % ops_.size()];
    op_count_++;
    return &op;
  }

  // Bytes of a direction were not seen: its value boundaries are lost. The
  // server's direction looks for replies again, at a segment whose
  // acknowledgement tells which waiting command it answers (on_segment).
  // Commands lost in the client's bytes will be answered too, in order with
  // those waiting: the waiting ones are given up (counted).
  void gap(unsigned role, const Ctx& ctx) {
    ctx.counters->gaps++;
    dir_[role].mode = Mode::Resync;
    dir_[role].reset_value();
    if (role == 0) {
      in_multi_ = false;
      ctx.counters->lost_requests += op_count_;
      op_head_ = op_count_ = 0;
    }
    if (dir_[1].mode == Mode::Values) {
      dir_[1].mode = Mode::Resync;
      dir_[1].reset_value();
    }
  }

  void give_up(const Ctx& ctx) {
    ctx.counters->bad_values++;
    ctx.counters->lost_requests += op_count_;
    op_head_ = op_count_ = 0;
    stopped = true;
  }

  static void keep(char* buf, size_t cap, size_t* kept, const uint8_t* data, size_t n) {
    const size_t k = std::min(n, cap - *kept);
    std::memcpy(buf + *kept, data, k);
    *kept += k;
  }

  void feed(unsigned role, const uint8_t* data, size_t len, uint32_t seq, uint64_t ts,
            const Ctx& ctx) {
    Dir& d = dir_[role];
    const bool from_client = role == 0;
    const uint8_t* const begin = data;
    while (len > 0 && !stopped) {
      if (!d.in_value) {
        d.in_value = true;
        d.value_start_ns = ts;
        d.value_bytes = 0;
      }
      switch (d.st) {
        case State::Type: {
          const uint8_t t = data[0];
          if (d.depth == 0) {
            if (from_client && t != '*') {
              // an inline command: the line is the command
              d.st = State::Inline;
              d.line_kept = 0;
              d.line_total = 0;
              continue;
            }
            d.top_type = t;
          }
          if (from_client ? (d.depth == 0 ? t != '*' : t != '$') : !is_reply_type(t)) {
            give_up(ctx);
            return;
          }
          d.type = t;
          d.st = State::Line;
          d.line_kept = 0;
          d.line_total = 0;
          data++;
          len--;
          d.value_bytes++;
          break;
        }
        case State::Line:
        case State::Inline: {
          const void* nl = std::memchr(data, '\n', len);
          const size_t upto = nl ? static_cast<const uint8_t*>(nl) - data : len;
          keep(d.line, sizeof(d.line), &d.line_kept, data, upto);
          d.line_total += upto;
          const size_t used = nl ? upto + 1 : upto;
          data += used;
          len -= used;
          d.value_bytes += used;
          const bool numeric = d.st == State::Line && (numeric_line(d.type) || d.type == ':');
          if (d.line_total > (numeric ? kNumberLineMax : kLineMax)) {
            give_up(ctx);
            return;
          }
          if (nl == nullptr) break;
          // the line without its CR
          size_t n = std::min<size_t>(d.line_kept, d.line_total);
          if (d.line_total > 0 && d.line_kept == d.line_total && d.line[n - 1] == '\r') n--;
          if (d.st == State::Inline) {
            d.st = State::Type;
            inline_command(d, n, seq + static_cast<uint32_t>(data - begin), ctx);
            break;
          }
          header(role, d, n, seq + static_cast<uint32_t>(data - begin), ts, ctx);
          break;
        }
        case State::Bulk: {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(len, d.bulk_left));
          const uint64_t pos = d.bulk_len + 2 - d.bulk_left;  // offset of data[0] in the body
          if (pos < d.bulk_len) {
            const size_t body = static_cast<size_t>(std::min<uint64_t>(take, d.bulk_len - pos));
            if (from_client && d.elem == 0 && d.depth == 1)
              keep(d.arg0, sizeof(d.arg0), &d.arg0_len, data, body);
            else if (from_client && d.elem == 1 && d.depth == 1)
              keep(d.arg1, sizeof(d.arg1), &d.arg1_len, data, body);
            else if (!from_client && d.depth == 0 && d.type == '!')
              keep(d.err, sizeof(d.err), &d.err_len, data, body);
          }
          // the final CRLF
          for (uint64_t p = std::max(pos, d.bulk_len); p < pos + take; p++) {
            if (data[p - pos] != (p == d.bulk_len ? '\r' : '\n')) {
              give_up(ctx);
              return;
            }
          }
          data += take;
          len -= take;
          d.value_bytes += take;
          d.bulk_left -= take;
          if (d.bulk_left == 0) {
            d.st = State::Type;
            element_done(role, d, seq + static_cast<uint32_t>(data - begin), ts, ctx);
          }
          break;
        }
      }
    }
  }

  // A header line (type byte and line) was read.
  void header(unsigned role, Dir& d, size_t n, uint32_t end_seq, uint64_t ts, const Ctx& ctx) {
    const uint8_t t = d.type;
    d.st = State::Type;
    if (numeric_line(t)) {
      int64_t v;
      if (d.line_kept < d.line_total || !parse_int(d.line, n, &v)) {
        give_up(ctx);
        return;
      }
      if (is_bulk(t)) {
        if (v < 0) {  // $-1: null
          if (t != '$' || role == 0) {
            give_up(ctx);
            return;
          }
          element_done(role, d, end_seq, ts, ctx);
          return;
        }
        if (v > kBulkMax) {
          give_up(ctx);
          return;
        }
        d.bulk_len = static_cast<uint64_t>(v);
        d.bulk_left = d.bulk_len + 2;
        d.st = State::Bulk;
        return;
      }
      // an aggregate
      if (v > kCountMax || v < -1 || (v < 0 && t != '*')) {
        give_up(ctx);
        return;
      }
      if (t == '%' || t == '|') v *= 2;
      if (v <= 0) {  // empty, or *-1 (null); a client's: no command
        element_done(role, d, end_seq, ts, ctx);
        return;
      }
      if (d.depth == kRedisMaxDepth || (role == 0 && d.depth > 0)) {
        give_up(ctx);
        return;
      }
      d.left[d.depth] = v;
      d.attr[d.depth] = t == '|';
      d.depth++;
      return;
    }
    if (t == ':' || t == '(' || t == ',' || t == '#' || t == '_') {
      element_done(role, d, end_seq, ts, ctx);
      return;
    }
    // '+' or '-': a simple string or error
    if (t == '-' && d.depth == 0) {
      const size_t k = std::min(n, sizeof(d.err));
      std::memcpy(d.err, d.line, k);
      d.err_len = k;
    }
    element_done(role, d, end_seq, ts, ctx);
  }

  // A value was read: the element of its aggregate, or the top-level value.
  void element_done(unsigned role, Dir& d, uint32_t end_seq, uint64_t ts, const Ctx& ctx) {
    if (role == 0 && d.depth > 0) d.elem++;
    while (d.depth > 0) {
      if (--d.left[d.depth - 1] > 0) return;
      d.depth--;
      if (d.attr[d.depth]) return;  // an attribute comes before a value: not an element
    }
    if (d.top_type == '|') {  // a top-level attribute: the reply follows
      d.top_type = 0;
      return;
    }
    if (role == 0)
      command(d, end_seq, ctx);
    else
      reply(d, ts, ctx);
    d.reset_value();
  }

  static void upper(char* s, size_t n) {
    for (size_t i = 0; i < n; i++)
      if (s[i] >= 'a' && s[i] <= 'z') s[i] = static_cast<char>(s[i] - 'a' + 'A');
  }

  void inline_command(Dir& d, size_t n, uint32_t end_seq, const Ctx& ctx) {
    // words separated by spaces: the first is the command, the second its key
    size_t i = 0;
    auto word = [&](char* out, size_t cap, size_t* len) {
      while (i < n && (d.line[i] == ' ' || d.line[i] == '\t')) i++;
      const size_t from = i;
      while (i < n && d.line[i] != ' ' && d.line[i] != '\t') i++;
      *len = std::min(i - from, cap);
      std::memcpy(out, d.line + from, *len);
    };
    word(d.arg0, sizeof(d.arg0), &d.arg0_len);
    word(d.arg1, sizeof(d.arg1), &d.arg1_len);
    const bool cut = d.line_kept < d.line_total;
    if (d.arg0_len == 0) {  // an empty line: Redis ignores it
      d.reset_value();
      return;
    }
    d.arg1_cut = cut && i >= n;  // the key may go on past what was kept
    command(d, end_seq, ctx, true);
    d.reset_value();
  }

  void command(Dir& d, uint32_t end_seq, const Ctx& ctx, bool is_inline = false) {
    if (d.elem == 0 && !is_inline) return;  // *0: no command
    upper(d.arg0, d.arg0_len);
    const std::string_view name(d.arg0, d.arg0_len);
    const bool multi = name == "MULTI";
    const bool ends_multi = name == "EXEC" || name == "DISCARD";
    Op* op = push(ctx);
    if (op == nullptr) return;
    op->flags =
        static_cast<uint16_t>((mid_stream ? kRedisMidStream : 0) | (is_inline ? kRedisInline : 0) |
                              (in_multi_ && !ends_multi ? kRedisTransaction : 0));
    op->status = SpanStatus::Unset;
    op->select = name == "SELECT";
    op->push_mode = push_mode_command(name);
    op->end_seq = end_seq;
    op->start_ns = d.value_start_ns;
    op->request_bytes = d.value_bytes;
    op->response_bytes = 0;
    op->name_len = static_cast<uint8_t>(d.arg0_len);
    std::memcpy(op->name, d.arg0, d.arg0_len);
    const bool has_arg = is_inline ? d.arg1_len > 0 : d.elem >= 2;
    op->show_arg = ctx.options->key_names && key_command(name) && has_arg;
    op->arg_len = 0;
    if (op->show_arg || (op->select && has_arg)) {
      const size_t k = std::min(d.arg1_len, kRedisKeyMax);
      if (op->show_arg && (d.arg1_len > kRedisKeyMax || d.arg1_cut))
        op->flags |= kRedisKeyTruncated;
      std::memcpy(op->arg, d.arg1, k);
      op->arg_len = static_cast<uint8_t>(k);
    }
    op->err_len = 0;
    op->db = db_known_ ? db_ : -1;
    if (multi) in_multi_ = true;
    if (ends_multi) in_multi_ = false;
  }

  void reply(Dir& d, uint64_t ts, const Ctx& ctx) {
    const bool push = d.top_type == '>';
    if (op_count_ == 0) {
      if (!push) ctx.counters->unpaired++;
      return;
    }
    Op& op = front();
    if (push && !op.push_mode) return;  // a push (an invalidation, a message) is no reply
    op.response_bytes = d.value_bytes;
    if (d.top_type == '-' || d.top_type == '!') {
      op.status = SpanStatus::Error;
      // the prefix: the error's first word
      size_t n = 0;
      while (n < d.err_len && d.err[n] != ' ' && d.err[n] != '\r') n++;
      std::memcpy(op.err, d.err, n);
      op.err_len = static_cast<uint8_t>(n);
    } else if (op.select) {
      int64_t v;
      if (parse_int(op.arg, op.arg_len, &v) && v >= 0) {
        db_ = v;
        db_known_ = true;
      }
    }
    const bool to_push_mode = op.push_mode && op.status != SpanStatus::Error;
    if (to_push_mode) op.flags |= kRedisPubSub;
    emit(op, ts, ctx);
    pop();
    if (to_push_mode) {
      // Messages and confirmations follow as pushes no command asked for:
      // the connection is no longer paired (counted).
      ctx.counters->pubsub++;
      ctx.counters->lost_requests += op_count_;
      op_head_ = op_count_ = 0;
      stopped = true;
    }
  }

  void emit(const Op& op, uint64_t end_ns, const Ctx& ctx) {
    PgSpanList& out = *ctx.out;
    PgSpan& s = out.append();
    s.system = DbSystem::Redis;
    const uint64_t start = op.start_ns != 0 ? op.start_ns : end_ns;
    s.start_unix_us = ctx.clock->to_unix_us(start);
    s.end_unix_us = ctx.clock->to_unix_us(end_ns < start ? start : end_ns);
    ctx.ids->trace_id(s.trace_id, s.start_unix_us);
    ctx.ids->span_id(s.span_id);
    s.family = key.family;
    const unsigned c = client & 1;
    std::memcpy(s.src_addr, key.addr[c], 16);
    std::memcpy(s.dst_addr, key.addr[c ^ 1], 16);
    s.src_port = key.port[c];
    s.dst_port = key.port[c ^ 1];
    std::memcpy(s.connection_span_id, span_id, 8);
    s.status = op.status;
    s.flags = op.flags;
    s.request_bytes = op.request_bytes;
    s.response_bytes = op.response_bytes;
    s.operation = out.put(op.name, op.name_len);
    char query[kRedisNameMax + 1 + kRedisKeyMax];
    size_t qn = op.name_len;
    std::memcpy(query, op.name, qn);
    if (op.show_arg && op.arg_len > 0) {
      query[qn++] = ' ';
      std::memcpy(query + qn, op.arg, op.arg_len);
      qn += op.arg_len;
    }
    s.query = out.put(query, qn);
    if (op.db >= 0) {
      char db[24];
      const int n = snprintf(db, sizeof(db), "%lld", static_cast<long long>(op.db));
      s.database = out.put(db, static_cast<size_t>(n));
    }
    s.error_code = out.put(op.err, op.err_len);
    ctx.counters->spans++;
  }

  Dir dir_[2];           // by role: 0 the client, 1 the server
  std::vector<Op> ops_;  // a ring, grown up to kRedisMaxPending
  size_t op_head_ = 0;
  size_t op_count_ = 0;
  bool db_known_ = false;
  int64_t db_ = 0;
  bool in_multi_ = false;
};

// ----------------------------------------------------------------------------
// Spans.

const char* redis_span_name(const PgSpan& span, const char* text, char* buf, size_t cap) {
  const std::string_view op = text_of(text, span.operation);
  if (op.empty()) return "redis";
  snprintf(buf, cap, "%.*s", static_cast<int>(op.size()), op.data());
  return buf;
}

void redis_attributes(const PgSpan& s, const char* text, AttributeSink& j) {
  auto str = [&](const char* key, TextRef ref) {
    if (ref.len > 0) j.string(key, text + ref.offset, ref.len);
  };
  j.string("db.system.name", "redis", 5);
  str("db.namespace", s.database);
  str("db.operation.name", s.operation);
  str("db.query.text", s.query);
  if (s.error_code.len > 0) {
    str("db.response.status_code", s.error_code);
    str("error.type", s.error_code);
  } else if (s.status == SpanStatus::Error) {
    j.string("error.type", "error", 5);
  }
  if (s.flags & kRedisNoResponse) j.boolean("db.redis.no_response", true);
  if (s.flags & kRedisMidStream) j.boolean("db.redis.mid_stream", true);
  if (s.flags & kRedisPubSub) j.boolean("db.redis.push_mode", true);
  if (s.flags & kRedisTransaction) j.boolean("db.redis.transaction", true);
  if (s.flags & kRedisKeyTruncated) j.boolean("db.query.text_truncated", true);
  if (s.flags & kRedisInline) j.boolean("db.redis.inline", true);
  j.hex("tcp.span_id", s.connection_span_id, 8);
}

// ----------------------------------------------------------------------------
// The tracker.

template class DbConnections<RedisConnection, RedisTrackerOptions, RedisCounters>;

}  // namespace ebpfc
