#include "pg/span_store.h"

#include <cstring>
#include <new>
#include <type_traits>

#include "core/chunk_resolve.h"
#include "core/span_attributes.h"
#include "core/span_ids.h"
#include "core/text_sanitize.h"
#include "kube/pod_cache.h"
#include "pg/catalog.h"
#include "pg/direct_insert.h"
#include "pg/guc.h"
#include "pg/jsonb_attributes.h"
#include "pg/lock_now.h"
#include "pg/pg_guard.h"
#include "pg/transaction.h"

namespace ebpfc::pg {

namespace {

// Unix microseconds to PostgreSQL's timestamp epoch (2000-01-01).
TimestampTz to_timestamptz(int64_t unix_us) {
  return unix_us - static_cast<int64_t>(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}

Datum make_inet(uint8_t family, const uint8_t addr[16]) {
  inet* dst = static_cast<inet*>(palloc0(sizeof(inet)));
  if (family == 4) {
    ip_family(dst) = PGSQL_AF_INET;
    ip_bits(dst) = 32;
    std::memcpy(ip_addr(dst), addr + 12, 4);
  } else {
    ip_family(dst) = PGSQL_AF_INET6;
    ip_bits(dst) = 128;
    std::memcpy(ip_addr(dst), addr, 16);
  }
  SET_INET_VARSIZE(dst);
  return PointerGetDatum(dst);
}

Datum make_text(const char* s, size_t len) {
  return PointerGetDatum(cstring_to_text_with_len(s, static_cast<int>(len)));
}

Datum make_text(const char* s) { return make_text(s, strlen(s)); }

// Bytes from the wire as valid text, sanitized straight into the text datum.
Datum make_wire_text(const char* s, size_t len) {
  text* t = static_cast<text*>(palloc(VARHDRSZ + len * 3 + 1));
  size_t n = sanitize_utf8(s, len, VARDATA(t), len * 3 + 1);
  SET_VARSIZE(t, VARHDRSZ + n);
  return PointerGetDatum(t);
}

Datum make_hex(const uint8_t* bytes, size_t n) {
  char hex[33];
  to_hex(bytes, n, hex);
  return make_text(hex, 2 * n);
}

// One column of a batch: a palloc'd array of values (and nulls) that becomes
// one array parameter of an insert.
class Column {
 public:
  Column(int n, Oid type) { init(n, type); }
  Column() = default;
  void init(int n, Oid type) {
    type_ = type;
    n_ = n;
    values_ = static_cast<Datum*>(palloc(sizeof(Datum) * n));
    nulls_ = static_cast<bool*>(palloc0(sizeof(bool) * n));
  }
  void set(int i, Datum v) { values_[i] = v; }
  void set_null(int i) {
    values_[i] = 0;
    nulls_[i] = true;
    has_nulls_ = true;
  }
  Datum array() const {
    int16 typlen;
    bool typbyval;
    char typalign;
    get_typlenbyvalalign(type_, &typlen, &typbyval, &typalign);
    int dims[1] = {n_};
    int lbs[1] = {1};
    return PointerGetDatum(construct_md_array(values_, has_nulls_ ? nulls_ : nullptr, 1, dims, lbs,
                                              type_, typlen, typbyval, typalign));
  }

 private:
  Oid type_ = InvalidOid;
  int n_ = 0;
  Datum* values_ = nullptr;
  bool* nulls_ = nullptr;
  bool has_nulls_ = false;
};

// Columns live between PostgreSQL calls that may longjmp: nothing to destroy.
static_assert(std::is_trivially_destructible<Column>::value,
              "Column must be trivially destructible");

SPIPlanPtr prepare_plan(const char* sql, int nargs, Oid* types) {
  SPIPlanPtr plan = SPI_prepare(sql, nargs, types);
  if (plan == nullptr)
    elog(ERROR, "ebpf_capture: cannot prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
  SPI_keepplan(plan);
  return plan;
}

void execute(SPIPlanPtr plan, Datum* values, int expected = SPI_OK_INSERT) {
  int rc = SPI_execute_plan(plan, values, nullptr, false, 0);
  if (rc != expected)
    elog(ERROR, "ebpf_capture: writing to the table failed: %s", SPI_result_code_string(rc));
}

constexpr int kPeerColumns = 10;
constexpr int kPodArgs = 14;
constexpr int kRollupArgs = 2 + 2 * 6 + 4;

// The columns of a span row, in the order the row builders fill them: the
// kind's ids, the columns every kind has, the kind's own, then who is at each
// end (src_pod ... dst_node) from the pod cache, NULL where no pod is known.
const ColumnSpec kPeerSpecs[kPeerColumns] = {
    {"src_pod", TEXTOID, true},           {"src_namespace", TEXTOID, true},
    {"src_workload", TEXTOID, true},      {"src_workload_kind", TEXTOID, true},
    {"src_node", TEXTOID, true},          {"dst_pod", TEXTOID, true},
    {"dst_namespace", TEXTOID, true},     {"dst_workload", TEXTOID, true},
    {"dst_workload_kind", TEXTOID, true}, {"dst_node", TEXTOID, true}};

constexpr int kCommonColumns = 13;
const ColumnSpec kCommonSpecs[kCommonColumns] = {{"name", TEXTOID, false},
                                                 {"kind", TEXTOID, false},
                                                 {"start_time", TIMESTAMPTZOID, false},
                                                 {"end_time", TIMESTAMPTZOID, false},
                                                 {"status", TEXTOID, false},
                                                 {"protocol", TEXTOID, false},
                                                 {"interface", TEXTOID, false},
                                                 {"src_addr", INETOID, false},
                                                 {"dst_addr", INETOID, false},
                                                 {"src_port", INT4OID, false},
                                                 {"dst_port", INT4OID, false},
                                                 {"bytes_sent", INT8OID, false},
                                                 {"bytes_received", INT8OID, false}};

const ColumnSpec kTcpIds[] = {{"trace_id", TEXTOID, false}, {"span_id", TEXTOID, false}};
const ColumnSpec kTcpOwn[] = {{"packets_sent", INT8OID, false},
                              {"packets_received", INT8OID, false},
                              {"attributes", JSONBOID, false}};
const ColumnSpec kHttpIds[] = {
    {"trace_id", TEXTOID, false}, {"span_id", TEXTOID, false}, {"parent_span_id", TEXTOID, true}};
const ColumnSpec kHttpOwn[] = {{"attributes", JSONBOID, false},
                               {"http_method", TEXTOID, true},
                               {"http_target", TEXTOID, true},
                               {"http_status", INT4OID, true}};

template <size_t N>
constexpr int count(const ColumnSpec (&)[N]) {
  return static_cast<int>(N);
}

// A kind's ids, the common columns, the kind's own and the peer columns.
struct SpanColumns {
  ColumnSpec spec[kMaxInsertColumns];
  int n = 0;
  int own = 0;         // where the kind's own columns start
  int peers = 0;       // where the peer columns start
  int start_time = 0;  // the column spans are partitioned by
  SpanColumns(const ColumnSpec* ids, int nids, const ColumnSpec* own_cols, int nown) {
    auto add = [&](const ColumnSpec* c, int k) {
      for (int i = 0; i < k; i++) spec[n++] = c[i];
    };
    add(ids, nids);
    start_time = n + 2;  // kCommonSpecs: name, kind, start_time, ...
    add(kCommonSpecs, kCommonColumns);
    own = n;
    add(own_cols, nown);
    peers = n;
    add(kPeerSpecs, kPeerColumns);
  }
};

const SpanColumns kTcpColumns(kTcpIds, count(kTcpIds), kTcpOwn, count(kTcpOwn));
const SpanColumns kHttpColumns(kHttpIds, count(kHttpIds), kHttpOwn, count(kHttpOwn));
const ColumnSpec kPgOwn[] = {{"attributes", JSONBOID, false}};
const SpanColumns kPgColumns(kTcpIds, count(kTcpIds), kPgOwn, count(kPgOwn));
static_assert(3 + kCommonColumns + 4 + kPeerColumns <= kMaxInsertColumns, "too many span columns");

// A row of open_connections: the connection as it stands, then who is at
// each end.
constexpr int kOpenOwnColumns = 12;
constexpr int kOpenColumns = kOpenOwnColumns + kPeerColumns;
const ColumnSpec kOpenSpecs[kOpenColumns] = {{"interface", TEXTOID, false},
                                             {"start_time", TIMESTAMPTZOID, false},
                                             {"last_seen", TIMESTAMPTZOID, false},
                                             {"src_addr", INETOID, false},
                                             {"dst_addr", INETOID, false},
                                             {"src_port", INT4OID, false},
                                             {"dst_port", INT4OID, false},
                                             {"bytes_sent", INT8OID, false},
                                             {"bytes_received", INT8OID, false},
                                             {"packets_sent", INT8OID, false},
                                             {"packets_received", INT8OID, false},
                                             {"attributes", JSONBOID, false},
                                             kPeerSpecs[0],
                                             kPeerSpecs[1],
                                             kPeerSpecs[2],
                                             kPeerSpecs[3],
                                             kPeerSpecs[4],
                                             kPeerSpecs[5],
                                             kPeerSpecs[6],
                                             kPeerSpecs[7],
                                             kPeerSpecs[8],
                                             kPeerSpecs[9]};
static_assert(kOpenColumns <= kMaxInsertColumns, "too many open_connections columns");

// Fills the 10 peer values of one row (or of one rollup entry).
void peer_values(const kube::PeerIdentity* src, const kube::PeerIdentity* dst, Datum* v,
                 bool* null) {
  auto side = [&](int base, const kube::PeerIdentity* id) {
    const std::string_view parts[5] = {
        id ? std::string_view(id->pod) : std::string_view(),
        id ? std::string_view(id->ns) : std::string_view(),
        id ? std::string_view(id->workload) : std::string_view(),
        id ? std::string_view(id->workload_kind) : std::string_view(),
        id ? std::string_view(id->node) : std::string_view()};
    for (int c = 0; c < 5; c++) {
      null[base + c] = parts[c].empty();
      v[base + c] = null[base + c] ? Datum(0) : make_wire_text(parts[c].data(), parts[c].size());
    }
  };
  side(0, src);
  side(5, dst);
}

// Text values every row of a batch shares, made once per batch.
struct RowConstants {
  Datum interface, tcp_name, client_kind, tcp_protocol, server_kind, http_protocol, pg_protocol,
      redis_protocol;
  Datum status[3];  // by SpanStatus
  explicit RowConstants(const char* iface)
      : interface(make_text(iface)),
        tcp_name(make_text("tcp.connection")),
        client_kind(make_text("CLIENT")),
        tcp_protocol(make_text("tcp")),
        server_kind(make_text("SERVER")),
        http_protocol(make_text("http")),
        pg_protocol(make_text("postgresql")),
        redis_protocol(make_text("redis")),
        status{make_text(status_name(SpanStatus::Unset)), make_text(status_name(SpanStatus::Ok)),
               make_text(status_name(SpanStatus::Error))} {}
  Datum status_of(SpanStatus s) const { return status[static_cast<int>(s) % 3]; }
};

// The kCommonSpecs values of a span (Span and HttpSpan share these fields).
template <class S>
void common_values(const S& s, Datum name, Datum kind, Datum protocol, uint64_t sent,
                   uint64_t received, const RowConstants& k, Datum* v) {
  v[0] = name;
  v[1] = kind;
  v[2] = TimestampTzGetDatum(to_timestamptz(s.start_unix_us));
  v[3] = TimestampTzGetDatum(to_timestamptz(s.end_unix_us));
  v[4] = k.status_of(s.status);
  v[5] = protocol;
  v[6] = k.interface;
  v[7] = make_inet(s.family, s.src_addr);
  v[8] = make_inet(s.family, s.dst_addr);
  v[9] = Int32GetDatum(s.src_port);
  v[10] = Int32GetDatum(s.dst_port);
  v[11] = Int64GetDatum(static_cast<int64>(sent));
  v[12] = Int64GetDatum(static_cast<int64>(received));
}

// One tcp row in kTcpColumns order.
void tcp_row(const Span& s, const RowConstants& k, const kube::PeerIdentity* const* who, Datum* v,
             bool* null) {
  std::memset(null, 0, sizeof(bool) * kTcpColumns.n);
  v[0] = make_hex(s.trace_id, 16);
  v[1] = make_hex(s.span_id, 8);
  common_values(s, k.tcp_name, k.client_kind, k.tcp_protocol, s.bytes_sent, s.bytes_received, k,
                v + 2);
  Datum* own = v + kTcpColumns.own;
  own[0] = Int64GetDatum(static_cast<int64>(s.packets_sent));
  own[1] = Int64GetDatum(static_cast<int64>(s.packets_received));
  JsonbAttributes attributes;
  tcp_attributes(s, attributes);
  own[2] = attributes.finish();
  peer_values(who[0], who[1], v + kTcpColumns.peers, null + kTcpColumns.peers);
}

// One open_connections row in kOpenSpecs order.
void open_row(const Span& s, const RowConstants& k, const kube::PeerIdentity* const* who, Datum* v,
              bool* null) {
  std::memset(null, 0, sizeof(bool) * kOpenColumns);
  v[0] = k.interface;
  v[1] = TimestampTzGetDatum(to_timestamptz(s.start_unix_us));
  v[2] = TimestampTzGetDatum(to_timestamptz(s.end_unix_us));
  v[3] = make_inet(s.family, s.src_addr);
  v[4] = make_inet(s.family, s.dst_addr);
  v[5] = Int32GetDatum(s.src_port);
  v[6] = Int32GetDatum(s.dst_port);
  v[7] = Int64GetDatum(static_cast<int64>(s.bytes_sent));
  v[8] = Int64GetDatum(static_cast<int64>(s.bytes_received));
  v[9] = Int64GetDatum(static_cast<int64>(s.packets_sent));
  v[10] = Int64GetDatum(static_cast<int64>(s.packets_received));
  JsonbAttributes attributes;
  tcp_attributes(s, attributes);
  v[11] = attributes.finish();
  peer_values(who[0], who[1], v + kOpenOwnColumns, null + kOpenOwnColumns);
}

// One http row in kHttpColumns order; `text` holds the span's strings.
void http_row(const HttpSpan& s, const char* text, const RowConstants& k,
              const kube::PeerIdentity* const* who, Datum* v, bool* null) {
  std::memset(null, 0, sizeof(bool) * kHttpColumns.n);
  v[0] = make_hex(s.trace_id, 16);
  v[1] = make_hex(s.span_id, 8);
  null[2] = !s.has_parent;
  v[2] = s.has_parent ? make_hex(s.parent_span_id, 8) : Datum(0);
  common_values(s, make_text(http_span_name(s)), k.server_kind, k.http_protocol,
                s.request_body_bytes, s.response_body_bytes, k, v + 3);
  const int own = kHttpColumns.own;
  JsonbAttributes attributes;
  http_attributes(s, text, attributes);
  v[own] = attributes.finish();
  const bool has_request = s.method != HttpMethod::None;
  null[own + 1] = null[own + 2] = !has_request;
  v[own + 1] =
      has_request ? make_wire_text(text + s.method_text.offset, s.method_text.len) : Datum(0);
  v[own + 2] = has_request ? make_wire_text(text + s.target.offset, s.target.len) : Datum(0);
  null[own + 3] = s.http_status == 0;
  v[own + 3] = Int32GetDatum(s.http_status);
  peer_values(who[0], who[1], v + kHttpColumns.peers, null + kHttpColumns.peers);
}

// One postgresql (or redis) row in kPgColumns order; `text` holds the span's
// strings.
void pg_row(const PgSpan& s, const char* text, const RowConstants& k,
            const kube::PeerIdentity* const* who, Datum* v, bool* null) {
  std::memset(null, 0, sizeof(bool) * kPgColumns.n);
  v[0] = make_hex(s.trace_id, 16);
  v[1] = make_hex(s.span_id, 8);
  char buf[128];
  const char* name = pg_span_name(s, text, buf, sizeof(buf));
  common_values(s, make_wire_text(name, strlen(name)), k.client_kind,
                s.system == DbSystem::Redis ? k.redis_protocol : k.pg_protocol, s.request_bytes,
                s.response_bytes, k, v + 2);
  JsonbAttributes attributes;
  pg_attributes(s, text, attributes);
  v[kPgColumns.own] = attributes.finish();
  peer_values(who[0], who[1], v + kPgColumns.peers, null + kPgColumns.peers);
}

// Rows gathered column by column into array parameters, for the SPI insert.
class ArrayRows {
 public:
  ArrayRows(const ColumnSpec* cols, int ncols, int nrows) : ncols_(ncols) {
    for (int c = 0; c < ncols_; c++) cols_[c].init(nrows, cols[c].type);
  }
  void add(const Datum* v, const bool* null) {
    for (int c = 0; c < ncols_; c++) {
      if (null[c])
        cols_[c].set_null(row_);
      else
        cols_[c].set(row_, v[c]);
    }
    row_++;
  }
  void arrays(Datum* out) const {
    for (int c = 0; c < ncols_; c++) out[c] = cols_[c].array();
  }

 private:
  int ncols_;
  int row_ = 0;
  Column cols_[kMaxInsertColumns];
};
static_assert(std::is_trivially_destructible<ArrayRows>::value,
              "ArrayRows must be trivially destructible");

// The rollup upsert's parameters, one array each: minute, bucket, the source
// (pod, namespace, workload, workload kind, node, address), the destination
// (the same six) and the totals.
const ColumnSpec kRollupSpecs[kRollupArgs] = {
    {"minute", TIMESTAMPTZOID, false}, {"bucket", INT2OID, false},
    {"src_pod", TEXTOID, true},        {"src_namespace", TEXTOID, true},
    {"src_workload", TEXTOID, true},   {"src_workload_kind", TEXTOID, true},
    {"src_node", TEXTOID, true},       {"src_addr", INETOID, true},
    {"dst_pod", TEXTOID, true},        {"dst_namespace", TEXTOID, true},
    {"dst_workload", TEXTOID, true},   {"dst_workload_kind", TEXTOID, true},
    {"dst_node", TEXTOID, true},       {"dst_addr", INETOID, true},
    {"spans", INT8OID, false},         {"errors", INT8OID, false},
    {"bytes_sent", INT8OID, false},    {"bytes_received", INT8OID, false}};

// The parameters of the rollup upsert, built in the current memory context.
// An end's address is NULL when an identity names it.
void rollup_values(const Rollup& rollup, Datum* values) {
  const auto& entries = rollup.entries();
  ArrayRows rows(kRollupSpecs, kRollupArgs, static_cast<int>(entries.size()));
  for (const Rollup::Entry& e : entries) {
    Datum v[kRollupArgs];
    bool null[kRollupArgs] = {};
    Datum peer[kPeerColumns];
    bool peer_null[kPeerColumns];
    peer_values(e.key.src.who, e.key.dst.who, peer, peer_null);
    v[0] = TimestampTzGetDatum(to_timestamptz(e.key.minute_unix_us));
    v[1] = Int16GetDatum(static_cast<int16>(e.key.bucket));
    for (int side = 0; side < 2; side++) {
      const Rollup::End& end = side == 0 ? e.key.src : e.key.dst;
      const int base = 2 + 6 * side;
      for (int c = 0; c < 5; c++) {
        v[base + c] = peer[5 * side + c];
        null[base + c] = peer_null[5 * side + c];
      }
      null[base + 5] = end.who != nullptr;
      v[base + 5] = end.who != nullptr ? Datum(0) : make_inet(end.family, end.addr);
    }
    v[14] = Int64GetDatum(static_cast<int64>(e.totals.spans));
    v[15] = Int64GetDatum(static_cast<int64>(e.totals.errors));
    v[16] = Int64GetDatum(static_cast<int64>(e.totals.bytes_sent));
    v[17] = Int64GetDatum(static_cast<int64>(e.totals.bytes_received));
    rows.add(v, null);
  }
  rows.arrays(values);
}

Datum timestamp_or_null(int64_t unix_us, bool* isnull) {
  *isnull = unix_us == kube::kNoTime;
  return *isnull ? Datum(0) : TimestampTzGetDatum(to_timestamptz(unix_us));
}

// The parameters of the pods upsert, built in the current memory context.
void pod_values(const kube::PodRecord* pods, int n, Datum* values) {
  Column uid(n, TEXTOID), ns(n, TEXTOID), name(n, TEXTOID), ips(n, TEXTOID), node(n, TEXTOID),
      workload(n, TEXTOID), kind(n, TEXTOID), phase(n, TEXTOID), host(n, BOOLOID),
      labels(n, TEXTOID), created(n, TIMESTAMPTZOID), first(n, TIMESTAMPTZOID),
      last(n, TIMESTAMPTZOID), deleted(n, TIMESTAMPTZOID);
  auto text_or_null = [](Column& c, int i, const std::string& v) {
    if (v.empty())
      c.set_null(i);
    else
      c.set(i, make_wire_text(v.data(), v.size()));
  };
  auto time_col = [](Column& c, int i, int64_t us) {
    bool isnull;
    Datum d = timestamp_or_null(us, &isnull);
    if (isnull)
      c.set_null(i);
    else
      c.set(i, d);
  };
  for (int i = 0; i < n; i++) {
    const kube::PodRecord& p = pods[i];
    uid.set(i, make_wire_text(p.uid.data(), p.uid.size()));
    ns.set(i, make_wire_text(p.ns.data(), p.ns.size()));
    name.set(i, make_wire_text(p.name.data(), p.name.size()));
    // addresses as "a,b" (string_to_array in SQL): an unnest of a 2-D array would flatten
    StringInfoData joined;
    initStringInfo(&joined);
    for (size_t k = 0; k < p.ips.size(); k++) {
      if (k > 0) appendStringInfoChar(&joined, ',');
      appendBinaryStringInfo(&joined, p.ips[k].data(), static_cast<int>(p.ips[k].size()));
    }
    ips.set(i, make_wire_text(joined.data, static_cast<size_t>(joined.len)));
    text_or_null(node, i, p.node);
    text_or_null(workload, i, p.workload);
    text_or_null(kind, i, p.workload_kind);
    text_or_null(phase, i, p.phase);
    host.set(i, BoolGetDatum(p.host_network));
    if (p.labels_json.empty())
      labels.set(i, make_text("{}"));
    else
      labels.set(i, make_wire_text(p.labels_json.data(), p.labels_json.size()));
    time_col(created, i, p.created_us);
    time_col(first, i, p.first_seen_us);
    time_col(last, i, p.last_seen_us);
    time_col(deleted, i, p.deleted_us);
  }
  const Column* cols[] = {&uid,   &ns,   &name,   &ips,     &node,  &workload, &kind,
                          &phase, &host, &labels, &created, &first, &last,     &deleted};
  for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) values[c] = cols[c]->array();
}

// "$from, $from+1, ..., $from+n-1"
char* params(int from, int n) {
  StringInfoData out;
  initStringInfo(&out);
  for (int i = 0; i < n; i++) appendStringInfo(&out, "%s$%d", i > 0 ? ", " : "", from + i);
  return out.data;
}

// INSERT INTO schema.table (columns) SELECT unnest($1), ..., one array
// parameter per column: the fallback insert of one span kind, and the insert
// of open connections.
SPIPlanPtr prepare_array_insert(const char* schema, const char* table, const ColumnSpec* cols,
                                int n) {
  StringInfoData sql;
  initStringInfo(&sql);
  appendStringInfo(&sql, "INSERT INTO %s.%s (", schema, table);
  for (int c = 0; c < n; c++)
    appendStringInfo(&sql, "%s%s", c > 0 ? ", " : "", quote_identifier(cols[c].name));
  appendStringInfoString(&sql, ") SELECT ");
  Oid types[kMaxInsertColumns];
  for (int c = 0; c < n; c++) {
    appendStringInfo(&sql, "%spg_catalog.unnest($%d)", c > 0 ? ", " : "", c + 1);
    types[c] = get_array_type(cols[c].type);
  }
  return prepare_plan(sql.data, n, types);
}

// Writes the rows of a partitioned table's leaves directly, leaf by leaf,
// and marks in `fallback` the rows no leaf could take (none fits, or its
// leaf needs the executor). Returns how many those are.
template <class S, class Row>
int write_leaves(const S* spans, int n, DirectInsert& direct, Row row, bool* fallback,
                 const char** why) {
  const int nleaves = direct.leaves();
  // A counting sort of the rows by leaf (bucket nleaves: no leaf), keeping
  // their order within a leaf.
  int* leaf = static_cast<int*>(palloc(sizeof(int) * n));
  int* start = static_cast<int*>(palloc0(sizeof(int) * (nleaves + 2)));
  for (int i = 0; i < n; i++) {
    const int l = direct.route(TimestampTzGetDatum(to_timestamptz(spans[i].start_unix_us)));
    leaf[i] = l < 0 ? nleaves : l;
    start[leaf[i] + 1]++;
  }
  for (int l = 0; l <= nleaves; l++) start[l + 1] += start[l];
  int* order = static_cast<int*>(palloc(sizeof(int) * n));
  int* next = static_cast<int*>(palloc(sizeof(int) * (nleaves + 1)));
  std::memcpy(next, start, sizeof(int) * (nleaves + 1));
  for (int i = 0; i < n; i++) order[next[leaf[i]]++] = i;

  Datum v[kMaxInsertColumns];
  bool null[kMaxInsertColumns];
  int nfallback = start[nleaves + 1] - start[nleaves];
  for (int k = start[nleaves]; k < start[nleaves + 1]; k++) fallback[order[k]] = true;
  if (nfallback > 0) *why = "a span has no partition it can be written to directly";
  for (int l = 0; l < nleaves; l++) {
    if (start[l] == start[l + 1]) continue;
    const char* leaf_why = nullptr;
    if (!direct.begin_leaf(l, &leaf_why)) {
      for (int k = start[l]; k < start[l + 1]; k++) fallback[order[k]] = true;
      nfallback += start[l + 1] - start[l];
      *why = leaf_why;
      continue;
    }
    for (int k = start[l]; k < start[l + 1]; k++) {
      MemoryContext batch = MemoryContextSwitchTo(direct.rows_context());
      row(spans[order[k]], order[k], v, null);
      MemoryContextSwitchTo(batch);
      direct.add(v, null);
    }
    direct.end_leaf();
  }
  return nfallback;
}

// Writes n spans of one kind: straight into the table (or, when it is
// partitioned, into each span's leaf) where it allows (DirectInsert), the
// rest through the kind's SPI plan. row(span, i, v, null) builds one row.
// *why says why some rows could not be written directly (nullptr: all were).
template <class S, class Row>
void write_spans(const S* spans, int n, const SpanColumns& cols, SPIPlanPtr plan,
                 DirectInsert& direct, Oid relid, bool direct_ok, Row row, const char** why) {
  if (n == 0) return;
  Datum v[kMaxInsertColumns];
  bool null[kMaxInsertColumns];
  bool* fallback = nullptr;  // null: every row goes through the plan
  int nfallback = n;
  if (direct_ok && OidIsValid(relid) &&
      direct.open(relid, cols.spec, cols.n, cols.start_time, why)) {
    if (direct.partitioned()) {
      fallback = static_cast<bool*>(palloc0(sizeof(bool) * n));
      nfallback = write_leaves(spans, n, direct, row, fallback, why);
    } else {
      for (int i = 0; i < n; i++) {
        MemoryContext batch = MemoryContextSwitchTo(direct.rows_context());
        row(spans[i], i, v, null);
        MemoryContextSwitchTo(batch);
        direct.add(v, null);
      }
      nfallback = 0;
    }
    direct.close();
  }
  if (nfallback == 0) return;
  // INSERT routes rows itself and would wait for a partition's lock.
  if (OidIsValid(relid)) lock_tree_now(relid, RowExclusiveLock);
  ArrayRows rows(cols.spec, cols.n, nfallback);
  for (int i = 0; i < n; i++) {
    if (fallback != nullptr && !fallback[i]) continue;
    row(spans[i], i, v, null);
    rows.add(v, null);
  }
  Datum args[kMaxInsertColumns];
  rows.arrays(args);
  execute(plan, args);
}

// A transaction whose rows are built in the batch context `rows`, which is
// reset after it either way.
template <class Body, class AfterCommit>
bool batch_transaction(MemoryContext rows, const char* activity, Body body,
                       AfterCommit after_commit, char* error, size_t error_size,
                       int* sqlstate = nullptr) {
  const bool ok = in_transaction(
      activity,
      [&] {
        MemoryContext old = MemoryContextSwitchTo(rows);
        body();
        MemoryContextSwitchTo(old);
      },
      after_commit, error, error_size, sqlstate);
  MemoryContextReset(rows);
  return ok;
}

}  // namespace

void SpanStore::prepare() {
  pg_call([&] {
    batch_context_ =
        AllocSetContextCreate(TopMemoryContext, "ebpf_capture span batch", ALLOCSET_DEFAULT_SIZES);
    direct_ = new (MemoryContextAlloc(TopMemoryContext, sizeof(DirectInsert))) DirectInsert();
  });
  char error[1024];
  const bool ok = in_transaction(
      "ebpf_capture: preparing the inserts",
      [&] {
        spans_namespace_ = extension_namespace();
        if (!OidIsValid(spans_namespace_))
          elog(ERROR, "extension \"ebpf_capture\" is not installed");
        const char* schema = schema_quoted(spans_namespace_);
        schema_ = MemoryContextStrdup(TopMemoryContext, schema);
        tcp_plan_ = prepare_array_insert(schema, "spans", kTcpColumns.spec, kTcpColumns.n);
        http_plan_ = prepare_array_insert(schema, "spans", kHttpColumns.spec, kHttpColumns.n);
        pg_plan_ = prepare_array_insert(schema, "spans", kPgColumns.spec, kPgColumns.n);
        open_insert_plan_ =
            prepare_array_insert(schema, "open_connections", kOpenSpecs, kOpenColumns);
        Oid text_type[1] = {TEXTOID};
        open_delete_plan_ = prepare_plan(
            psprintf("DELETE FROM %s.open_connections WHERE interface = $1", schema), 1, text_type);
        Oid pod_types[kPodArgs] = {TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
                                   TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
                                   TEXTARRAYOID,        TEXTARRAYOID,        BOOLARRAYOID,
                                   TEXTARRAYOID,        TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
                                   TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
        pods_plan_ =
            prepare_plan(psprintf("SELECT %s._pods_upsert(%s)", schema, params(1, kPodArgs)),
                         kPodArgs, pod_types);
        Oid rollup_types[kRollupArgs] = {
            TIMESTAMPTZARRAYOID, INT2ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
            TEXTARRAYOID,        TEXTARRAYOID, INETARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
            TEXTARRAYOID,        TEXTARRAYOID, TEXTARRAYOID, INETARRAYOID, INT8ARRAYOID,
            INT8ARRAYOID,        INT8ARRAYOID, INT8ARRAYOID};
        rollup_add_plan_ =
            prepare_plan(psprintf("SELECT %s._rollup_add(%s)", schema, params(1, kRollupArgs)),
                         kRollupArgs, rollup_types);
        rollup_stage_plan_ =
            prepare_plan(psprintf("SELECT %s._rollup_stage(%s)", schema, params(1, kRollupArgs)),
                         kRollupArgs, rollup_types);
        rollup_merge_plan_ =
            prepare_plan(psprintf("SELECT %s._rollup_merge_staged()", schema), 0, nullptr);
        // Rows a worker staged before it ended are merged at the first chance.
        if (SPI_execute(psprintf("SELECT 1 FROM %s._service_map_staged LIMIT 1", schema), true,
                        1) == SPI_OK_SELECT)
          staged_ = SPI_processed > 0;
      },
      error, sizeof(error));
  if (!ok) throw PgError(error);
}

namespace {

bool is_lock_busy(int sqlstate) { return sqlstate == ERRCODE_LOCK_NOT_AVAILABLE; }

// The table `name` of the extension's schema `nsp`, locked for writing now
// (with its partitions), or lock_not_available.
void lock_table_now(const char* name, Oid nsp) {
  const Oid relid = get_relname_relid(name, nsp);
  if (OidIsValid(relid)) lock_tree_now(relid, RowExclusiveLock);
}

}  // namespace

void SpanStore::write(const SpanBatch::Chunk& chunk, const ResolvedChunk& resolved,
                      const kube::PodRecord* pods, size_t npods, const char* interface,
                      Outcome* out, ChunkSideWrite* side) {
  *out = Outcome();
  if (chunk.size() == 0 && npods == 0) {
    out->spans_written = out->pods_written = true;
    return;
  }
  const char* why = g_direct_insert ? nullptr : "ebpf_capture.direct_insert is off";
  const Rollup& rollup = resolved.rollup();
  char side_error[kErrorLen];
  side_error[0] = '\0';
  volatile bool pods_ok = npods == 0;
  volatile bool staged = false;
  int sqlstate = 0;
  const bool ok = batch_transaction(
      batch_context_, "ebpf_capture: inserting spans",
      [&] {
        const Oid spans = get_relname_relid("spans", spans_namespace_);
        if (!OidIsValid(spans))
          ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                          errmsg("the extension's schema has no spans table")));
        const RowConstants k(interface);
        const kube::PeerIdentity* const* who = resolved.peers();
        write_spans(
            chunk.tcp, static_cast<int>(chunk.ntcp), kTcpColumns, tcp_plan_, *direct_, spans,
            g_direct_insert,
            [&](const Span& s, int i, Datum* v, bool* null) {
              tcp_row(s, k, who + 2 * i, v, null);
            },
            &why);
        who += 2 * chunk.ntcp;
        write_spans(
            chunk.http, static_cast<int>(chunk.nhttp), kHttpColumns, http_plan_, *direct_, spans,
            g_direct_insert,
            [&](const HttpSpan& s, int i, Datum* v, bool* null) {
              http_row(s, chunk.http_text, k, who + 2 * i, v, null);
            },
            &why);
        who += 2 * chunk.nhttp;
        write_spans(
            chunk.pg, static_cast<int>(chunk.npg), kPgColumns, pg_plan_, *direct_, spans,
            g_direct_insert,
            [&](const PgSpan& s, int i, Datum* v, bool* null) {
              pg_row(s, chunk.pg_text, k, who + 2 * i, v, null);
            },
            &why);
        int side_state = 0;
        if (side != nullptr) {
          char side_write_error[kErrorLen];
          if (!in_subtransaction([&] { side->write_in_transaction(); }, side_write_error,
                                 sizeof(side_write_error), &side_state))
            side->failed(side_write_error);
        }
        if (npods > 0) {
          Datum pod_args[kPodArgs];
          pod_values(pods, static_cast<int>(npods), pod_args);
          pods_ok = in_subtransaction(
              [&] {
                lock_table_now("pods", spans_namespace_);
                execute(pods_plan_, pod_args, SPI_OK_SELECT);
              },
              side_error, sizeof(side_error), &side_state);
        }
        if (rollup.size() > 0) {
          Datum rollup_args[kRollupArgs];
          rollup_values(rollup, rollup_args);
          const bool added = in_subtransaction(
              [&] {
                lock_table_now("service_map_minutes", spans_namespace_);
                execute(rollup_add_plan_, rollup_args, SPI_OK_SELECT);
              },
              side_error, sizeof(side_error), &side_state);
          // The rollup table is held: the rows wait in the staging table,
          // written with their spans.
          if (!added) {
            lock_table_now("_service_map_staged", spans_namespace_);
            execute(rollup_stage_plan_, rollup_args, SPI_OK_SELECT);
            staged = true;
          }
        }
      },
      [&] {
        // A batch of pod changes alone says nothing about how spans go in.
        if (chunk.size() > 0 && why != direct_refused_) {
          if (why != nullptr)
            elog(LOG, "ebpf_capture: spans are written through INSERT because %s", why);
          else if (direct_refused_ != nullptr)
            elog(LOG, "ebpf_capture: spans are written directly again");
          direct_refused_ = why;
        }
      },
      out->error, sizeof(out->error), &sqlstate);
  if (!ok) {
    out->retry = is_lock_busy(sqlstate);
    return;
  }
  out->spans_written = true;
  out->pods_written = pods_ok;
  out->rollup_staged = staged;
  if (staged) staged_ = true;
  if (side_error[0] != '\0') strlcpy(out->error, side_error, sizeof(out->error));
}

bool SpanStore::merge_staged(char* error, size_t error_size) {
  if (!staged_) return true;
  const bool ok = batch_transaction(
      batch_context_, "ebpf_capture: merging the staged rollup",
      [&] {
        lock_table_now("_service_map_staged", spans_namespace_);
        lock_table_now("service_map_minutes", spans_namespace_);
        execute(rollup_merge_plan_, nullptr, SPI_OK_SELECT);
      },
      [] {}, error, error_size);
  if (ok) staged_ = false;
  return ok;
}

bool SpanStore::replace_open(const Span* open, size_t n, const ResolvedChunk& resolved,
                             const char* interface, char* error, size_t error_size) {
  return batch_transaction(
      batch_context_, "ebpf_capture: reporting open connections",
      [&] {
        lock_table_now("open_connections", spans_namespace_);
        const RowConstants k(interface);
        Datum iface[1] = {k.interface};
        execute(open_delete_plan_, iface, SPI_OK_DELETE);
        if (n == 0) return;
        ArrayRows rows(kOpenSpecs, kOpenColumns, static_cast<int>(n));
        Datum v[kOpenColumns];
        bool null[kOpenColumns];
        for (size_t i = 0; i < n; i++) {
          open_row(open[i], k, resolved.peers() + 2 * i, v, null);
          rows.add(v, null);
        }
        Datum args[kOpenColumns];
        rows.arrays(args);
        execute(open_insert_plan_, args);
      },
      [] {}, error, error_size);
}

}  // namespace ebpfc::pg
