#include "core/pg_wire.h"

#include <algorithm>
#include <cstring>

#include "core/db_connections_impl.h"
#include "core/pg_query.h"
#include "core/stream_cursor.h"
#include "core/redis_wire.h"

namespace ebpfc {

namespace {

constexpr uint32_t kProtocol3 = 0x00030000u;
constexpr uint32_t kSslRequest = 80877103u;
constexpr uint32_t kGssEncRequest = 80877104u;
constexpr uint32_t kCancelRequest = 80877102u;
constexpr uint32_t kStartupMax = 10000;          // PostgreSQL's own bound
constexpr uint32_t kMessageMax = 0x40000000u;    // 1 GiB: PostgreSQL's bound on a message
constexpr size_t kKeepQuery = kPgTextMax + 200;  // a Parse also names its statement
constexpr size_t kKeepSmall = 256;               // CommandComplete, ErrorResponse, Bind, ...
constexpr size_t kKeepStartup = 1024;

uint32_t be32(const uint8_t* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

bool client_type(uint8_t t) {
  switch (t) {
    case 'Q':
    case 'P':
    case 'B':
    case 'E':
    case 'D':
    case 'C':
    case 'H':
    case 'S':
    case 'X':
    case 'F':
    case 'd':
    case 'c':
    case 'f':
    case 'p':
      return true;
    default:
      return false;
  }
}

bool server_type(uint8_t t) {
  switch (t) {
    case 'R':
    case 'S':
    case 'K':
    case 'Z':
    case 'T':
    case 'D':
    case 'C':
    case 'E':
    case 'N':
    case '1':
    case '2':
    case '3':
    case 'n':
    case 't':
    case 's':
    case 'I':
    case 'A':
    case 'G':
    case 'H':
    case 'W':
    case 'd':
    case 'c':
    case 'v':
    case 'V':
      return true;
    default:
      return false;
  }
}

// The length a fixed-size message must have (after its type byte), 0: any.
uint32_t fixed_len(uint8_t t, bool from_client) {
  if (from_client) return t == 'S' || t == 'H' || t == 'X' || t == 'c' ? 4 : 0;
  switch (t) {
    case '1':
    case '2':
    case '3':
    case 'n':
    case 's':
    case 'I':
    case 'c':
      return 4;
    case 'Z':
      return 5;
    default:
      return 0;
  }
}

// The bytes worth keeping of a message's body.
size_t keep_of(uint8_t t, bool from_client) {
  if (from_client) {
    switch (t) {
      case 'Q':
      case 'P':
        return kKeepQuery;
      case 'B':
      case 'E':
      case 'C':
        return kKeepSmall;
      default:
        return 0;
    }
  }
  switch (t) {
    case 'C':
    case 'E':
    case 'Z':
      return kKeepSmall;
    default:
      return 0;
  }
}

// A NUL-terminated string at b[*at..n): its length; *at moves past it. -1
// when it is not terminated within n.
long cstring(const char* b, size_t n, size_t* at) {
  const size_t start = *at;
  const void* z = start < n ? std::memchr(b + start, '\0', n - start) : nullptr;
  if (z == nullptr) return -1;
  const size_t len = static_cast<const char*>(z) - (b + start);
  *at = start + len + 1;
  return static_cast<long>(len);
}

// Does `data` start a chain of messages of the protocol (the direction's
// types, plausible lengths) that ends at its end or runs past it after at
// least one whole header? Used to find message boundaries again.
bool plausible_chain(const uint8_t* data, size_t n, bool from_client) {
  size_t off = 0;
  unsigned msgs = 0;
  while (off + 5 <= n && msgs < 64) {
    const uint8_t t = data[off];
    if (!(from_client ? client_type(t) : server_type(t))) return false;
    const uint32_t len = be32(data + off + 1);
    if (len < 4 || len > kMessageMax) return false;
    const uint32_t fixed = fixed_len(t, from_client);
    if (fixed != 0 && len != fixed) return false;
    if (t == 'Z' && !from_client && off + 5 < n && data[off + 5] != 'I' && data[off + 5] != 'T' &&
        data[off + 5] != 'E')
      return false;
    msgs++;
    off += 1 + size_t{len};
  }
  return msgs > 0 && (off == n || off > n);
}

}  // namespace

// ----------------------------------------------------------------------------
// One connection.

class PgConnection {
 public:
  // Strings grow to their use (at most kPgTextMax each) and keep it while
  // the connection object is pooled.
  PgConnection() {
    ops_.resize(kPgMaxPending);
    for (auto& d : dir_) d.keep.resize(kKeepQuery);
  }

  void reset(const ebpfc_payload_event& head, SpanIdGenerator& ids) {
    key = head.key;
    client = head.from_client ? head.sender : head.sender ^ 1;
    ids.span_id(span_id);
    last_ns = head.ts_ns;
    stopped = false;
    mid_stream = false;
    database[0] = user[0] = '\0';
    for (auto& d : dir_) d.clear();
    dir_[0].untyped = true;  // the client starts with a startup packet
    for (auto& st : stmts_) st.used = 0;
    for (auto& p : portals_) p.used = false;
    unnamed_portal_ = -1;
    stmt_clock_ = 0;
    op_head_ = op_count_ = 0;
    group_open_ = false;
    group_bytes_ = 0;
  }

  ebpfc_flow_key key;
  uint8_t client;
  uint8_t span_id[8];
  uint64_t last_ns;
  bool stopped;  // nothing more is parsed (encrypted, cancel, not the protocol)
  bool mid_stream;
  char database[kPgNameMax];
  char user[kPgNameMax];

  // Context of one on_segment call.
  struct Ctx {
    const WallClock* clock;
    SpanIdGenerator* ids;
    PgSpanList* out;
    PgCounters* counters;
    const PgTrackerOptions* options;
  };

  void on_segment(unsigned role, const ebpfc_payload_event& h, const Ctx& ctx) {
    if (stopped) return;
    Dir& d = dir_[role];
    const SegmentNews n = d.cursor.take(h);
    if (n.repeat) return;
    if (n.first) {
      const bool at_start = (h.flags & EBPFC_PAYLOAD_STREAM_START) && h.stream_start == h.seq;
      if (!at_start) {
        if (!mid_stream) ctx.counters->mid_stream++;
        mid_stream = true;
        d.mode = Mode::Resync;
      }
    }
    if (n.hole > 0) gap(role, n.hole, ctx);
    if (n.beyond_head) return;
    if (d.mode == Mode::Resync) {
      if (n.len == 0 || !plausible_chain(n.data, n.len, role == 0)) return;
      d.mode = Mode::Messages;
      d.untyped = false;
      d.hdr_len = 0;
      d.remaining = 0;
      d.in_body = false;
      ctx.counters->resyncs++;
    }
    feed(role, n.data, n.len, h.ts_ns, ctx);
    if (!stopped && n.wire_len > n.len) gap(role, static_cast<uint32_t>(n.wire_len - n.len), ctx);
  }

  // Everything still waiting becomes a span (the connection ended).
  void close(uint64_t now_ns, const Ctx& ctx) {
    while (op_count_ > 0) {
      Op& op = front();
      if (op.kind != OpKind::Sync) {
        op.flags |= kPgNoResponse;
        emit(op, now_ns, ctx);
      }
      pop();
    }
  }

 private:
  enum class Mode : uint8_t { Messages, Resync, SslAnswer, Off };
  enum class OpKind : uint8_t { Query, Execute, Sync };

  struct Dir {
    Mode mode;
    StreamCursor cursor;
    bool untyped;  // the next message is a startup packet (no type byte)
    bool in_body;
    uint8_t hdr[8];
    uint8_t hdr_len;
    uint8_t type;
    uint32_t body_len;
    uint32_t remaining;
    size_t keep_cap;
    size_t kept;
    uint64_t msg_start_ns;
    std::vector<char> keep;
    void clear() {
      mode = Mode::Messages;
      cursor.reset();
      untyped = in_body = false;
      hdr_len = 0;
      type = 0;
      body_len = remaining = 0;
      keep_cap = kept = 0;
      msg_start_ns = 0;
    }
  };

  struct Statement {
    uint64_t used;  // 0: free; else when it was last defined (for eviction)
    std::string name;
    std::string text;
    PgQuerySummary summary;
  };
  struct Portal {
    bool used;
    std::string name;
    int stmt;  // -1: its statement is not known
  };
  struct Op {
    OpKind kind;
    uint16_t flags;
    SpanStatus status;
    uint64_t start_ns;
    uint64_t rows;
    uint64_t request_bytes;
    uint64_t response_bytes;
    char sqlstate[6];
    std::string text;
    PgQuerySummary summary;
  };

  Op& front() { return ops_[op_head_]; }
  void pop() {
    op_head_ = (op_head_ + 1) % kPgMaxPending;
    op_count_--;
    if (op_count_ == 0) op_head_ = 0;  // a client that waits for each answer uses one slot
  }
  Op* push(OpKind kind, uint64_t start_ns, const Ctx& ctx) {
    if (op_count_ == kPgMaxPending) {
      // More requests in flight than followed: the responses to come could
      // no longer be paired exactly. The connection is given up (counted),
      // its waiting requests with it.
      ctx.counters->pending_bound++;
      ctx.counters->lost_requests += pending_requests();
      op_head_ = op_count_ = 0;
      stopped = true;
      return nullptr;
    }
    Op& op = ops_[(op_head_ + op_count_) % kPgMaxPending];
    op_count_++;
    op.kind = kind;
    op.flags = mid_stream ? kPgMidStream : 0;
    op.status = SpanStatus::Unset;
    op.start_ns = start_ns;
    op.rows = 0;
    op.request_bytes = op.response_bytes = 0;
    op.sqlstate[0] = '\0';
    op.text.clear();
    std::memset(&op.summary, 0, sizeof(op.summary));
    return &op;
  }

  // Bytes of a direction were not seen: its message boundaries are lost
  // (unless the bytes lie inside the message being skipped), and so is the
  // pairing of requests and responses: those waiting are given up.
  void gap(unsigned role, uint32_t bytes, const Ctx& ctx) {
    Dir& d = dir_[role];
    if (d.mode == Mode::Messages && d.in_body && d.remaining >= bytes && d.kept >= d.keep_cap) {
      d.remaining -= bytes;  // inside a body whose rest is not kept anyway
      if (d.remaining == 0) {
        d.in_body = false;
        d.hdr_len = 0;
        // the message's end was not seen: its content was not kept either way
        on_message(role, d.msg_start_ns, d.msg_start_ns, ctx);
      }
      return;
    }
    ctx.counters->gaps++;
    if (d.mode == Mode::Off) return;
    d.mode = Mode::Resync;
    d.in_body = false;
    d.hdr_len = 0;
    ctx.counters->lost_requests += pending_requests();
    op_head_ = op_count_ = 0;
    group_open_ = false;
  }

  size_t pending_requests() const {
    size_t n = 0;
    for (size_t i = 0; i < op_count_; i++)
      if (ops_[(op_head_ + i) % kPgMaxPending].kind != OpKind::Sync) n++;
    return n;
  }

  void give_up(const Ctx& ctx) {
    ctx.counters->bad_messages++;
    ctx.counters->lost_requests += pending_requests();
    op_head_ = op_count_ = 0;
    stopped = true;
  }

  void feed(unsigned role, const uint8_t* data, size_t len, uint64_t ts, const Ctx& ctx) {
    Dir& d = dir_[role];
    const bool from_client = role == 0;
    while (len > 0 && !stopped) {
      if (d.mode == Mode::SslAnswer) {
        const uint8_t answer = data[0];
        data++;
        len--;
        if (answer == 'S' || answer == 'G') {
          encrypted(answer == 'G', ts, ctx);
          return;
        }
        if (answer != 'N' && answer != 'E') {
          give_up(ctx);
          return;
        }
        if (answer == 'E') {  // an old server's ErrorResponse: parse it as one
          d.mode = Mode::Messages;
          d.hdr[0] = 'E';
          d.hdr_len = 1;
          d.msg_start_ns = ts;
          continue;
        }
        d.mode = Mode::Messages;  // 'N': the client goes on in the clear
        continue;
      }
      if (d.mode != Mode::Messages) return;
      if (!d.in_body) {
        const size_t need = d.untyped ? 4 : 5;
        if (d.hdr_len == 0) d.msg_start_ns = ts;
        const size_t take = std::min(len, need - d.hdr_len);
        std::memcpy(d.hdr + d.hdr_len, data, take);
        d.hdr_len = static_cast<uint8_t>(d.hdr_len + take);
        data += take;
        len -= take;
        if (d.hdr_len < need) return;
        uint32_t msg_len;
        if (d.untyped) {
          d.type = 0;
          msg_len = be32(d.hdr);
          if (msg_len < 8 || msg_len > kStartupMax) {
            give_up(ctx);
            return;
          }
          d.keep_cap = kKeepStartup;
        } else {
          d.type = d.hdr[0];
          msg_len = be32(d.hdr + 1);
          const uint32_t fixed = fixed_len(d.type, from_client);
          if (!(from_client ? client_type(d.type) : server_type(d.type)) || msg_len < 4 ||
              msg_len > kMessageMax || (fixed != 0 && msg_len != fixed)) {
            give_up(ctx);
            return;
          }
          d.keep_cap = keep_of(d.type, from_client);
        }
        d.body_len = msg_len - 4;
        d.remaining = d.body_len;
        d.kept = 0;
        d.in_body = true;
      }
      const size_t take = std::min<size_t>(len, d.remaining);
      if (d.kept < d.keep_cap) {
        const size_t k = std::min(take, d.keep_cap - d.kept);
        std::memcpy(d.keep.data() + d.kept, data, k);
        d.kept += k;
      }
      data += take;
      len -= take;
      d.remaining -= static_cast<uint32_t>(take);
      if (d.remaining == 0) {
        d.in_body = false;
        d.hdr_len = 0;
        on_message(role, d.msg_start_ns, ts, ctx);
      }
    }
  }

  void on_message(unsigned role, uint64_t start_ns, uint64_t end_ns, const Ctx& ctx) {
    if (role == 0)
      client_message(start_ns, ctx);
    else
      server_message(end_ns, ctx);
  }

  void encrypted(bool gss, uint64_t ts, const Ctx& ctx) {
    ctx.counters->tls_sessions++;
    Op* op = push(OpKind::Query, dir_[0].msg_start_ns, ctx);
    if (op != nullptr) {
      op->flags |= gss ? kPgGssEncrypted : kPgTls;
      emit(*op, ts, ctx);
      pop();
    }
    stopped = true;
  }

  void client_message(uint64_t start_ns, const Ctx& ctx) {
    Dir& d = dir_[0];
    const char* b = d.keep.data();
    const size_t n = d.kept;
    const bool cut = d.kept < d.body_len;
    const uint64_t bytes = (d.untyped ? 0 : 1) + 4 + uint64_t{d.body_len};
    if (d.untyped) {
      startup(b, n, ctx);
      return;
    }
    const uint8_t t = d.type;
    if (t != 'S' && t != 'H' && t != 'X' && !group_open_) {
      group_open_ = true;
      group_start_ns_ = start_ns;
      group_bytes_ = 0;
    }
    group_bytes_ += bytes;
    switch (t) {
      case 'Q': {
        Op* op = push(OpKind::Query, start_ns, ctx);
        if (op == nullptr) break;
        op->request_bytes = bytes;
        summarize(b, n, cut, *op, ctx);
        group_open_ = false;
        break;
      }
      case 'P': {
        size_t at = 0;
        const long name_len = cstring(b, n, &at);
        if (name_len < 0) break;  // a statement name longer than we keep
        const char* q = b + at;
        size_t qn = n - at;
        const void* z = std::memchr(q, '\0', qn);
        const bool q_cut = z == nullptr;
        if (z != nullptr) qn = static_cast<const char*>(z) - q;
        define_statement(b, static_cast<size_t>(name_len), q, qn, q_cut, ctx);
        break;
      }
      case 'B': {
        size_t at = 0;
        const long portal_len = cstring(b, n, &at);
        const size_t stmt_at = at;
        const long stmt_len = portal_len < 0 ? -1 : cstring(b, n, &at);
        if (stmt_len < 0) break;
        bind(b, static_cast<size_t>(portal_len), b + stmt_at, static_cast<size_t>(stmt_len));
        break;
      }
      case 'E': {
        size_t at = 0;
        const long portal_len = cstring(b, n, &at);
        Op* op = push(OpKind::Execute, group_open_ ? group_start_ns_ : start_ns, ctx);
        group_open_ = false;
        if (op == nullptr) break;
        op->request_bytes = group_bytes_;
        const int stmt = portal_len < 0 ? -1 : portal_statement(b, static_cast<size_t>(portal_len));
        if (stmt < 0) {
          op->flags |= kPgUnknownStatement;
        } else {
          const Statement& st = stmts_[stmt];
          op->text.assign(st.text);
          op->summary = st.summary;
        }
        break;
      }
      case 'S':
        push(OpKind::Sync, start_ns, ctx);
        group_open_ = false;
        break;
      case 'C': {  // Close: a statement ('S') or a portal ('P') is gone
        if (n >= 2 && b[0] == 'S') {
          size_t at = 1;
          const long name_len = cstring(b, n, &at);
          if (name_len >= 0) {
            const int i = find_statement(b + 1, static_cast<size_t>(name_len));
            if (i >= 0) stmts_[i].used = 0;
          }
        }
        break;
      }
      default:
        break;
    }
  }

  void startup(const char* b, size_t n, const Ctx& ctx) {
    Dir& d = dir_[0];
    if (n < 4) {
      give_up(ctx);
      return;
    }
    const uint32_t code = be32(reinterpret_cast<const uint8_t*>(b));
    if (code == kSslRequest || code == kGssEncRequest) {
      if (d.body_len != 4) {
        give_up(ctx);
        return;
      }
      dir_[1].mode = Mode::SslAnswer;  // the server answers one byte; then a startup packet
      return;
    }
    if (code == kCancelRequest) {  // a connection of its own that only cancels
      stopped = true;
      return;
    }
    if (code != kProtocol3) {
      give_up(ctx);
      return;
    }
    d.untyped = false;
    size_t at = 4;
    while (at < n) {
      const size_t key_at = at;
      const long key_len = cstring(b, n, &at);
      if (key_len <= 0) break;
      const size_t value_at = at;
      const long value_len = cstring(b, n, &at);
      if (value_len < 0) break;
      const std::string_view k(b + key_at, static_cast<size_t>(key_len));
      char* dst = k == "user" ? user : k == "database" ? database : nullptr;
      if (dst != nullptr) {
        const size_t len = std::min<size_t>(static_cast<size_t>(value_len), kPgNameMax - 1);
        std::memcpy(dst, b + value_at, len);
        dst[len] = '\0';
      }
    }
    if (database[0] == '\0') std::memcpy(database, user, sizeof(database));
  }

  void summarize(const char* q, size_t n, bool cut, Op& op, const Ctx& ctx) {
    while (n > 0 && q[n - 1] == '\0') n--;
    if (std::memchr(q, '\0', n) != nullptr) n = strnlen(q, n);
    op.text.resize(kPgTextMax);
    pg_summarize_query(q, n, cut, ctx.options->raw_text, &op.text[0], kPgTextMax, &op.summary);
    op.text.resize(op.summary.text_len);
    if (op.summary.truncated) op.flags |= kPgTextTruncated;
  }

  int find_statement(const char* name, size_t len) const {
    for (size_t i = 0; i < kPgMaxStatements; i++)
      if (stmts_[i].used != 0 && stmts_[i].name.size() == len &&
          std::memcmp(stmts_[i].name.data(), name, len) == 0)
        return static_cast<int>(i);
    return -1;
  }

  void define_statement(const char* name, size_t name_len, const char* q, size_t qn, bool cut,
                        const Ctx& ctx) {
    if (name_len >= kPgNameMax) return;
    int i = find_statement(name, name_len);
    if (i < 0) {
      size_t oldest = 0;
      for (size_t k = 0; k < kPgMaxStatements; k++) {
        if (stmts_[k].used == 0) {
          oldest = k;
          break;
        }
        if (stmts_[k].used < stmts_[oldest].used) oldest = k;
      }
      if (stmts_[oldest].used != 0) ctx.counters->statement_bound++;
      i = static_cast<int>(oldest);
      stmts_[i].name.assign(name, name_len);
    }
    Statement& st = stmts_[i];
    st.used = ++stmt_clock_;
    st.text.resize(kPgTextMax);
    pg_summarize_query(q, qn, cut, ctx.options->raw_text, &st.text[0], kPgTextMax, &st.summary);
    st.text.resize(st.summary.text_len);
  }

  void bind(const char* portal, size_t portal_len, const char* stmt, size_t stmt_len) {
    const int s = find_statement(stmt, stmt_len);
    if (portal_len == 0) {
      unnamed_portal_ = s;
      return;
    }
    if (portal_len >= kPgNameMax) return;
    Portal* slot = nullptr;
    for (auto& p : portals_)
      if (p.used && p.name.size() == portal_len &&
          std::memcmp(p.name.data(), portal, portal_len) == 0)
        slot = &p;
    if (slot == nullptr)
      for (auto& p : portals_)
        if (!p.used) {
          slot = &p;
          break;
        }
    if (slot == nullptr) slot = &portals_[0];  // the bound: the first one makes room
    slot->used = true;
    slot->name.assign(portal, portal_len);
    slot->stmt = s;
  }

  int portal_statement(const char* portal, size_t len) const {
    if (len == 0) return unnamed_portal_;
    for (const auto& p : portals_)
      if (p.used && p.name.size() == len && std::memcmp(p.name.data(), portal, len) == 0)
        return p.stmt;
    return -1;
  }

  void server_message(uint64_t end_ns, const Ctx& ctx) {
    Dir& d = dir_[1];
    const char* b = d.keep.data();
    const size_t n = d.kept;
    const uint64_t bytes = 5 + uint64_t{d.body_len};
    if (op_count_ > 0) front().response_bytes += bytes;
    switch (d.type) {
      case 'C': {
        if (op_count_ == 0) {
          ctx.counters->unpaired++;
          break;
        }
        Op& op = front();
        uint64_t rows;
        if (op.kind != OpKind::Sync && pg_tag_rows(b, n, &rows)) {
          op.rows = rows;
          op.flags |= kPgRowsKnown;
        }
        if (op.kind == OpKind::Execute) finish_front(end_ns, ctx);
        break;
      }
      case 'I':
      case 's':
        if (op_count_ > 0 && front().kind == OpKind::Execute) finish_front(end_ns, ctx);
        break;
      case 'E': {
        if (op_count_ == 0) break;  // a startup failure, or an error between queries
        Op& op = front();
        if (op.kind == OpKind::Sync) break;  // a cycle with no Execute (a Parse failed)
        error_fields(b, n, op);
        if (op.kind == OpKind::Execute) finish_front(end_ns, ctx);
        break;
      }
      case 'Z':
        // Ends the Query in front, or the cycle up to its Sync: an Execute
        // still waiting there was skipped after an error of its cycle.
        while (op_count_ > 0) {
          Op& op = front();
          if (op.kind == OpKind::Sync) {
            pop();
            break;
          }
          if (op.kind == OpKind::Execute) {
            op.flags |= kPgSkipped;
            op.status = SpanStatus::Error;
            finish_front(end_ns, ctx);
            continue;
          }
          finish_front(end_ns, ctx);
          break;
        }
        break;
      default:
        break;
    }
  }

  void error_fields(const char* b, size_t n, Op& op) {
    op.status = SpanStatus::Error;
    size_t at = 0;
    while (at < n && b[at] != '\0') {
      const char field = b[at++];
      const size_t value_at = at;
      const long len = cstring(b, n, &at);
      if (len < 0) break;
      if (field == 'C' && len == 5) {
        std::memcpy(op.sqlstate, b + value_at, 5);
        op.sqlstate[5] = '\0';
      }
    }
  }

  void finish_front(uint64_t end_ns, const Ctx& ctx) {
    emit(front(), end_ns, ctx);
    pop();
  }

  void emit(const Op& op, uint64_t end_ns, const Ctx& ctx) {
    PgSpanList& out = *ctx.out;
    PgSpan& s = out.append();
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
    s.rows = op.rows;
    s.request_bytes = op.request_bytes;
    s.response_bytes = op.response_bytes;
    std::memcpy(s.sqlstate, op.sqlstate, sizeof(s.sqlstate));
    s.operation =
        out.put(op.summary.operation, strnlen(op.summary.operation, sizeof(op.summary.operation)));
    s.collection = out.put(op.summary.collection,
                           strnlen(op.summary.collection, sizeof(op.summary.collection)));
    s.query = out.put(op.text.data(), op.text.size());
    s.database = out.put(database, strnlen(database, sizeof(database)));
    s.user = out.put(user, strnlen(user, sizeof(user)));
    ctx.counters->spans++;
  }

  Dir dir_[2];  // by role: 0 the client, 1 the server
  Statement stmts_[kPgMaxStatements];
  Portal portals_[kPgMaxPortals];
  int unnamed_portal_ = -1;
  uint64_t stmt_clock_ = 0;
  std::vector<Op> ops_;  // a ring of kPgMaxPending
  size_t op_head_ = 0;
  size_t op_count_ = 0;
  bool group_open_ = false;  // client messages of an Execute's group were seen
  uint64_t group_start_ns_ = 0;
  uint64_t group_bytes_ = 0;
};

// ----------------------------------------------------------------------------
// Spans.

PgSpan& PgSpanList::append() {
  text_marks_.push_back(text_.size());
  spans_.emplace_back();
  PgSpan& s = spans_.back();
  std::memset(&s, 0, sizeof(s));
  return s;
}

TextRef PgSpanList::put(const char* s, size_t len) {
  if (len > 0xffff) len = 0xffff;
  TextRef ref{static_cast<uint32_t>(text_.size()), static_cast<uint16_t>(len)};
  text_.insert(text_.end(), s, s + len);
  return ref;
}

void PgSpanList::pop_back() {
  spans_.pop_back();
  text_.resize(text_marks_.back());
  text_marks_.pop_back();
}

void PgSpanList::clear() {
  spans_.clear();
  text_.clear();
  text_marks_.clear();
}

void PgSpanList::swap(PgSpanList& other) {
  spans_.swap(other.spans_);
  text_.swap(other.text_);
  text_marks_.swap(other.text_marks_);
}

void PgSpanList::release() {
  std::vector<PgSpan>().swap(spans_);
  std::vector<char>().swap(text_);
  std::vector<size_t>().swap(text_marks_);
}

void PgSpanList::reserve(size_t bytes) {
  spans_.reserve(bytes / sizeof(PgSpan) / 4);
  text_.reserve(bytes / 4);
  text_marks_.reserve(bytes / sizeof(PgSpan) / 4);
}

const char* pg_span_name(const PgSpan& span, const char* text, char* buf, size_t cap) {
  if (span.system == DbSystem::Redis) return redis_span_name(span, text, buf, cap);
  const std::string_view op = text_of(text, span.operation);
  const std::string_view coll = text_of(text, span.collection);
  if (span.flags & (kPgTls | kPgGssEncrypted)) return span.flags & kPgTls ? "TLS" : "GSSENC";
  if (op.empty()) return "postgresql";
  if (coll.empty())
    snprintf(buf, cap, "%.*s", static_cast<int>(op.size()), op.data());
  else
    snprintf(buf, cap, "%.*s %.*s", static_cast<int>(op.size()), op.data(),
             static_cast<int>(coll.size()), coll.data());
  return buf;
}

void pg_attributes(const PgSpan& s, const char* text, AttributeSink& j) {
  if (s.system == DbSystem::Redis) {
    redis_attributes(s, text, j);
    return;
  }
  auto str = [&](const char* key, TextRef ref) {
    if (ref.len > 0) j.string(key, text + ref.offset, ref.len);
  };
  j.string("db.system.name", "postgresql", 10);
  str("db.namespace", s.database);
  str("db.user", s.user);
  str("db.operation.name", s.operation);
  str("db.collection.name", s.collection);
  str("db.query.text", s.query);
  if (s.sqlstate[0] != '\0') {
    j.string("db.response.status_code", s.sqlstate, strnlen(s.sqlstate, 5));
    j.string("error.type", s.sqlstate, strnlen(s.sqlstate, 5));
  }
  if (s.flags & kPgRowsKnown) j.number("db.response.returned_rows", s.rows);
  if (s.flags & kPgTls) j.boolean("tls", true);
  if (s.flags & kPgGssEncrypted) j.boolean("gss_encrypted", true);
  if (s.flags & kPgTextTruncated) j.boolean("db.query.text_truncated", true);
  if (s.flags & kPgSkipped) j.boolean("db.postgresql.skipped", true);
  if (s.flags & kPgNoResponse) j.boolean("db.postgresql.no_response", true);
  if (s.flags & kPgMidStream) j.boolean("db.postgresql.mid_stream", true);
  if (s.flags & kPgUnknownStatement) j.boolean("db.postgresql.unknown_statement", true);
  j.hex("tcp.span_id", s.connection_span_id, 8);
}

// ----------------------------------------------------------------------------
// The tracker.

template class DbConnections<PgConnection, PgTrackerOptions, PgCounters>;

}  // namespace ebpfc
