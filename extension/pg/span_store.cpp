#include "pg/span_store.h"

#include <cstring>
#include <new>
#include <type_traits>

#include "core/span_attributes.h"
#include "core/span_ids.h"
#include "core/text_sanitize.h"
#include "kube/pod_cache.h"
#include "pg/catalog.h"
#include "pg/jsonb_attributes.h"
#include "pg/pg_guard.h"

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
// one array parameter of the insert.
class Column {
 public:
  Column(int n, Oid type) : type_(type), n_(n) {
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
  Oid type_;
  int n_;
  Datum* values_;
  bool* nulls_;
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

void execute(SPIPlanPtr plan, Datum* values) {
  int rc = SPI_execute_plan(plan, values, nullptr, false, 0);
  if (rc != SPI_OK_INSERT)
    elog(ERROR, "ebpf_capture: span insert failed: %s", SPI_result_code_string(rc));
}

constexpr int kPeerColumns = 10;
constexpr int kTcpArgs = 15 + kPeerColumns;
constexpr int kHttpArgs = 18 + kPeerColumns;
constexpr int kPodArgs = 14;
constexpr int kRollupArgs = 2 + 2 * 6 + 4;

// Who is at each end of a span (src_pod ... dst_node), looked up in the pod
// cache by address at the span's start.
class PeerColumns {
 public:
  explicit PeerColumns(int n) {
    for (auto& c : cols_) c = static_cast<Column*>(palloc(sizeof(Column)));
    for (auto& c : cols_) new (c) Column(n, TEXTOID);
  }
  void set(int i, const kube::PeerIdentity* src, const kube::PeerIdentity* dst) {
    set_side(i, 0, src);
    set_side(i, 5, dst);
  }
  // Appends the 10 array parameters at values[0..10).
  void arrays(Datum* values) const {
    for (int c = 0; c < kPeerColumns; c++) values[c] = cols_[c]->array();
  }

 private:
  void set_one(int i, int col, std::string_view v) {
    if (v.empty())
      cols_[col]->set_null(i);
    else
      cols_[col]->set(i, make_wire_text(v.data(), v.size()));
  }
  void set_side(int i, int base, const kube::PeerIdentity* id) {
    if (id == nullptr) {
      for (int c = 0; c < 5; c++) cols_[base + c]->set_null(i);
      return;
    }
    set_one(i, base + 0, id->pod);
    set_one(i, base + 1, id->ns);
    set_one(i, base + 2, id->workload);
    set_one(i, base + 3, id->workload_kind);
    set_one(i, base + 4, id->node);
  }
  Column* cols_[kPeerColumns];
};
static_assert(std::is_trivially_destructible<PeerColumns>::value,
              "PeerColumns must be trivially destructible");

// The names of the peer columns and of their parameters from $first on.
const char* kPeerNames =
    "src_pod, src_namespace, src_workload, src_workload_kind, src_node, "
    "dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node";

// The parameters of the tcp insert, built in the current memory context.
// who_at holds each span's source and destination identity (2 per span).
void tcp_values(const Span* spans, int n, const char* interface,
                const kube::PeerIdentity* const* who_at, Datum* values) {
  PeerColumns who(n);
  Column trace(n, TEXTOID), span(n, TEXTOID), start(n, TIMESTAMPTZOID), end(n, TIMESTAMPTZOID),
      status(n, TEXTOID), src(n, INETOID), dst(n, INETOID), sport(n, INT4OID), dport(n, INT4OID),
      sent(n, INT8OID), received(n, INT8OID), psent(n, INT8OID), preceived(n, INT8OID),
      attrs(n, JSONBOID);
  for (int i = 0; i < n; i++) {
    const Span& s = spans[i];
    trace.set(i, make_hex(s.trace_id, 16));
    span.set(i, make_hex(s.span_id, 8));
    start.set(i, TimestampTzGetDatum(to_timestamptz(s.start_unix_us)));
    end.set(i, TimestampTzGetDatum(to_timestamptz(s.end_unix_us)));
    status.set(i, make_text(status_name(s.status)));
    src.set(i, make_inet(s.family, s.src_addr));
    dst.set(i, make_inet(s.family, s.dst_addr));
    sport.set(i, Int32GetDatum(s.src_port));
    dport.set(i, Int32GetDatum(s.dst_port));
    sent.set(i, Int64GetDatum(static_cast<int64>(s.bytes_sent)));
    received.set(i, Int64GetDatum(static_cast<int64>(s.bytes_received)));
    psent.set(i, Int64GetDatum(static_cast<int64>(s.packets_sent)));
    preceived.set(i, Int64GetDatum(static_cast<int64>(s.packets_received)));
    JsonbAttributes attributes;
    tcp_attributes(s, attributes);
    attrs.set(i, attributes.finish());
    who.set(i, who_at[2 * i], who_at[2 * i + 1]);
  }
  const Column* cols[] = {&trace, &span,  &start, &end,      &status, &src,       &dst,
                          &sport, &dport, &sent,  &received, &psent,  &preceived, &attrs};
  constexpr size_t ncols = sizeof(cols) / sizeof(cols[0]);
  values[0] = make_text(interface);
  for (size_t c = 0; c < ncols; c++) values[c + 1] = cols[c]->array();
  who.arrays(values + 1 + ncols);
}

// The parameters of the http insert, built in the current memory context.
void http_values(const HttpSpan* spans, int n, const char* interface,
                 const kube::PeerIdentity* const* who_at, Datum* values) {
  PeerColumns who(n);
  Column trace(n, TEXTOID), span(n, TEXTOID), parent(n, TEXTOID), name(n, TEXTOID),
      start(n, TIMESTAMPTZOID), end(n, TIMESTAMPTZOID), status(n, TEXTOID), src(n, INETOID),
      dst(n, INETOID), sport(n, INT4OID), dport(n, INT4OID), sent(n, INT8OID), received(n, INT8OID),
      attrs(n, JSONBOID), method(n, TEXTOID), target(n, TEXTOID), code(n, INT4OID);
  for (int i = 0; i < n; i++) {
    const HttpSpan& s = spans[i];
    const HttpExchange& ex = s.exchange;
    trace.set(i, make_hex(s.trace_id, 16));
    span.set(i, make_hex(s.span_id, 8));
    if (s.has_parent)
      parent.set(i, make_hex(s.parent_span_id, 8));
    else
      parent.set_null(i);
    name.set(i, make_text(http_span_name(ex)));
    start.set(i, TimestampTzGetDatum(to_timestamptz(s.start_unix_us)));
    end.set(i, TimestampTzGetDatum(to_timestamptz(s.end_unix_us)));
    status.set(i, make_text(status_name(s.status)));
    src.set(i, make_inet(s.family, s.src_addr));
    dst.set(i, make_inet(s.family, s.dst_addr));
    sport.set(i, Int32GetDatum(s.src_port));
    dport.set(i, Int32GetDatum(s.dst_port));
    sent.set(i, Int64GetDatum(static_cast<int64>(ex.request_body_bytes)));
    received.set(i, Int64GetDatum(static_cast<int64>(ex.response_body_bytes)));
    JsonbAttributes attributes;
    http_attributes(s, attributes);
    attrs.set(i, attributes.finish());
    if (ex.method == HttpMethod::None) {
      method.set_null(i);
      target.set_null(i);
    } else {
      method.set(i, make_wire_text(ex.method_text, ex.method_len));
      target.set(i, make_wire_text(ex.target, ex.target_len));
    }
    if (ex.status != 0)
      code.set(i, Int32GetDatum(ex.status));
    else
      code.set_null(i);
    who.set(i, who_at[2 * i], who_at[2 * i + 1]);
  }
  const Column* cols[] = {&trace, &span,  &parent, &name,     &start, &end,    &status, &src, &dst,
                          &sport, &dport, &sent,   &received, &attrs, &method, &target, &code};
  constexpr size_t ncols = sizeof(cols) / sizeof(cols[0]);
  values[0] = make_text(interface);
  for (size_t c = 0; c < ncols; c++) values[c + 1] = cols[c]->array();
  who.arrays(values + 1 + ncols);
}

using Rollup = EdgeRollup<kube::PeerIdentity>;

// The parameters of the rollup upsert, built in the current memory context:
// per entry its minute, bucket, both ends (identity columns and address;
// the address is NULL when an identity names the end) and totals.
void rollup_values(const Rollup& rollup, Datum* values) {
  const auto& entries = rollup.entries();
  int n = static_cast<int>(entries.size());
  PeerColumns who(n);
  Column minute(n, TIMESTAMPTZOID), bucket(n, INT2OID), src(n, INETOID), dst(n, INETOID),
      spans(n, INT8OID), errors(n, INT8OID), sent(n, INT8OID), received(n, INT8OID);
  auto addr = [](Column& c, int i, const Rollup::End& e) {
    if (e.who != nullptr)
      c.set_null(i);
    else
      c.set(i, make_inet(e.family, e.addr));
  };
  for (int i = 0; i < n; i++) {
    const Rollup::Entry& e = entries[i];
    minute.set(i, TimestampTzGetDatum(to_timestamptz(e.key.minute_unix_us)));
    bucket.set(i, Int16GetDatum(static_cast<int16>(e.key.bucket)));
    who.set(i, e.key.src.who, e.key.dst.who);
    addr(src, i, e.key.src);
    addr(dst, i, e.key.dst);
    spans.set(i, Int64GetDatum(static_cast<int64>(e.totals.spans)));
    errors.set(i, Int64GetDatum(static_cast<int64>(e.totals.errors)));
    sent.set(i, Int64GetDatum(static_cast<int64>(e.totals.bytes_sent)));
    received.set(i, Int64GetDatum(static_cast<int64>(e.totals.bytes_received)));
  }
  Datum peer[kPeerColumns];
  who.arrays(peer);
  int k = 0;
  values[k++] = minute.array();
  values[k++] = bucket.array();
  for (int c = 0; c < 5; c++) values[k++] = peer[c];
  values[k++] = src.array();
  for (int c = 5; c < 10; c++) values[k++] = peer[c];
  values[k++] = dst.array();
  values[k++] = spans.array();
  values[k++] = errors.array();
  values[k++] = sent.array();
  values[k++] = received.array();
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

// "unnest($from) AS a0, unnest($from+1) AS a1, ..." for the space-separated
// aliases: arrays zipped row by row. In the target list (ProjectSet) rather
// than FROM unnest(...) (a function scan): no tuplestore in between, about
// 0.5 us less per row.
char* unnest_list(int from, const char* aliases) {
  StringInfoData out;
  initStringInfo(&out);
  int i = 0;
  for (const char* p = aliases; *p != '\0';) {
    const char* end = strchr(p, ' ');
    int len = end ? static_cast<int>(end - p) : static_cast<int>(strlen(p));
    appendStringInfo(&out, "%sunnest($%d) AS %.*s", i > 0 ? ", " : "", from + i, len, p);
    i++;
    p += len;
    while (*p == ' ') p++;
  }
  return out.data;
}

// "$from, $from+1, ..., $from+n-1"
char* params(int from, int n) {
  StringInfoData out;
  initStringInfo(&out);
  for (int i = 0; i < n; i++) appendStringInfo(&out, "%s$%d", i > 0 ? ", " : "", from + i);
  return out.data;
}

void fill_types(Oid* types, int from, int n, Oid type) {
  for (int i = 0; i < n; i++) types[from + i] = type;
}

}  // namespace

void SpanStore::prepare() {
  pg_call([&] {
    batch_context_ =
        AllocSetContextCreate(TopMemoryContext, "ebpf_capture span batch", ALLOCSET_DEFAULT_SIZES);
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    SPI_connect();
    PushActiveSnapshot(GetTransactionSnapshot());
    const char* schema = extension_schema_quoted();
    if (schema == nullptr) elog(ERROR, "extension \"ebpf_capture\" is not installed");
    const char* peer_aliases = "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9";
    const char* peer_names = "p0 p1 p2 p3 p4 p5 p6 p7 p8 p9";

    Oid tcp_types[kTcpArgs] = {
        TEXTOID,      TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
        TEXTARRAYOID, INETARRAYOID, INETARRAYOID, INT4ARRAYOID,        INT4ARRAYOID,
        INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,        JSONBARRAYOID};
    fill_types(tcp_types, kTcpArgs - kPeerColumns, kPeerColumns, TEXTARRAYOID);
    tcp_plan_ = prepare_plan(
        psprintf("INSERT INTO %s.spans (trace_id, span_id, name, kind, start_time, end_time, "
                 "status, protocol, interface, src_addr, dst_addr, src_port, dst_port, "
                 "bytes_sent, bytes_received, packets_sent, packets_received, attributes, %s) "
                 "SELECT t, s, 'tcp.connection', 'CLIENT', st, et, status, 'tcp', $1, sa, da, "
                 "sp, dp, bs, br, ps, pr, attr, %s FROM (SELECT %s, %s) AS u",
                 schema, kPeerNames, peer_aliases,
                 unnest_list(2, "t s st et status sa da sp dp bs br ps pr attr"),
                 unnest_list(2 + kTcpArgs - 1 - kPeerColumns, peer_names)),
        kTcpArgs, tcp_types);

    Oid http_types[kHttpArgs] = {
        TEXTOID,      TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
        TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
        INETARRAYOID, INETARRAYOID,        INT4ARRAYOID,        INT4ARRAYOID,
        INT8ARRAYOID, INT8ARRAYOID,        JSONBARRAYOID,       TEXTARRAYOID,
        TEXTARRAYOID, INT4ARRAYOID};
    fill_types(http_types, kHttpArgs - kPeerColumns, kPeerColumns, TEXTARRAYOID);
    http_plan_ = prepare_plan(
        psprintf("INSERT INTO %s.spans (trace_id, span_id, parent_span_id, name, kind, "
                 "start_time, end_time, status, protocol, interface, src_addr, dst_addr, "
                 "src_port, dst_port, bytes_sent, bytes_received, attributes, http_method, "
                 "http_target, http_status, %s) "
                 "SELECT t, s, p, n, 'SERVER', st, et, status, 'http', $1, sa, da, sp, dp, bs, "
                 "br, attr, m, tg, hs, %s FROM (SELECT %s, %s) AS u",
                 schema, kPeerNames, peer_aliases,
                 unnest_list(2, "t s p n st et status sa da sp dp bs br attr m tg hs"),
                 unnest_list(2 + kHttpArgs - 1 - kPeerColumns, peer_names)),
        kHttpArgs, http_types);

    // The pods table mirrors the cache's change feed; a pod may appear more
    // than once in a batch: the last record of a uid wins.
    Oid pod_types[kPodArgs] = {TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
                               TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
                               TEXTARRAYOID,        TEXTARRAYOID,        BOOLARRAYOID,
                               TEXTARRAYOID,        TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
                               TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
    pod_plan_ = prepare_plan(
        psprintf("INSERT INTO %s.pods AS p (uid, namespace, name, ips, node, workload, "
                 "workload_kind, phase, host_network, labels, created_at, first_seen, "
                 "last_seen, deleted_at) "
                 "SELECT DISTINCT ON (u) u, ns, n, string_to_array(ips, ',')::inet[], node, w, "
                 "wk, ph, hn, l::jsonb, ca, coalesce(fs, now()), coalesce(ls, now()), da "
                 "FROM unnest(%s) WITH ORDINALITY "
                 "AS x(u, ns, n, ips, node, w, wk, ph, hn, l, ca, fs, ls, da, ord) "
                 "ORDER BY u, ord DESC "
                 "ON CONFLICT (uid) DO UPDATE SET namespace = EXCLUDED.namespace, "
                 "name = EXCLUDED.name, ips = EXCLUDED.ips, node = EXCLUDED.node, "
                 "workload = EXCLUDED.workload, workload_kind = EXCLUDED.workload_kind, "
                 "phase = EXCLUDED.phase, host_network = EXCLUDED.host_network, "
                 "labels = EXCLUDED.labels, created_at = EXCLUDED.created_at, "
                 "first_seen = least(p.first_seen, EXCLUDED.first_seen), "
                 "last_seen = greatest(p.last_seen, EXCLUDED.last_seen), "
                 "deleted_at = EXCLUDED.deleted_at",
                 schema, params(1, kPodArgs)),
        kPodArgs, pod_types);

    // The batch's share of the per-minute service map rollup. Node ids,
    // titles and subtitles come from the same SQL functions the map reads
    // raw spans with; rows are upserted in key order so that two workers
    // never wait on each other's rows in opposite orders.
    Oid rollup_types[kRollupArgs] = {
        TIMESTAMPTZARRAYOID, INT2ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
        TEXTARRAYOID,        INETARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
        TEXTARRAYOID,        INETARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
    rollup_plan_ = prepare_plan(
        psprintf("INSERT INTO %1$s.service_map_minutes AS m (minute, src_id, dst_id, bucket, "
                 "src_title, src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, "
                 "bytes_received) "
                 "SELECT mi, %1$s._service_map_node_id(sns, sw, sp, sn, sa), "
                 "%1$s._service_map_node_id(dns, dw, dp, dn, da), b, "
                 "min(%1$s._service_map_node_title(sw, sp, sn, sa)), "
                 "min(%1$s._service_map_node_subtitle(sns, sw, swk, sp, sn)), "
                 "min(%1$s._service_map_node_title(dw, dp, dn, da)), "
                 "min(%1$s._service_map_node_subtitle(dns, dw, dwk, dp, dn)), "
                 "sum(n), sum(e), sum(bs), sum(br) "
                 "FROM (SELECT %2$s) AS u "
                 "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
                 "ON CONFLICT (minute, src_id, dst_id, bucket) DO UPDATE "
                 "SET spans = m.spans + EXCLUDED.spans, errors = m.errors + EXCLUDED.errors, "
                 "bytes_sent = m.bytes_sent + EXCLUDED.bytes_sent, "
                 "bytes_received = m.bytes_received + EXCLUDED.bytes_received",
                 schema, unnest_list(1, "mi b sp sns sw swk sn sa dp dns dw dwk dn da n e bs br")),
        kRollupArgs, rollup_types);
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
  });
}

bool SpanStore::resolve_and_fold(const Batch& b, char* error, size_t error_size) noexcept {
  try {
    rollup_.clear();
    peers_.clear();
    auto who = [&](const uint8_t addr[16], int64_t at_us) {
      const kube::PeerIdentity* id = b.peers ? b.peers->lookup(addr, at_us) : nullptr;
      peers_.push_back(id);
      return id;
    };
    for (size_t i = 0; i < b.ntcp; i++) {
      const Span& s = b.tcp[i];
      const auto* src = who(s.src_addr, s.start_unix_us);
      const auto* dst = who(s.dst_addr, s.start_unix_us);
      rollup_.add_connection(s.start_unix_us, Rollup::end(src, s.family, s.src_addr),
                             Rollup::end(dst, s.family, s.dst_addr), s.status == SpanStatus::Error,
                             s.bytes_sent, s.bytes_received);
    }
    for (size_t i = 0; i < b.nhttp; i++) {
      const HttpSpan& s = b.http[i];
      const auto* src = who(s.src_addr, s.start_unix_us);
      const auto* dst = who(s.dst_addr, s.start_unix_us);
      rollup_.add_request(s.start_unix_us, s.end_unix_us, Rollup::end(src, s.family, s.src_addr),
                          Rollup::end(dst, s.family, s.dst_addr), s.status == SpanStatus::Error);
    }
    return true;
  } catch (const std::bad_alloc&) {
    rollup_.clear();
    peers_.clear();
    strlcpy(error, "out of memory folding the batch into the service map rollup", error_size);
    return false;
  }
}

bool SpanStore::insert(const Batch& b, const char* interface, char* error, size_t error_size) {
  if (b.ntcp == 0 && b.nhttp == 0 && b.npods == 0) return true;
  MemoryContext batch = static_cast<MemoryContext>(batch_context_);
  SPIPlanPtr tcp_plan = static_cast<SPIPlanPtr>(tcp_plan_);
  SPIPlanPtr http_plan = static_cast<SPIPlanPtr>(http_plan_);
  SPIPlanPtr pod_plan = static_cast<SPIPlanPtr>(pod_plan_);
  SPIPlanPtr rollup_plan = static_cast<SPIPlanPtr>(rollup_plan_);
  if (!resolve_and_fold(b, error, error_size)) return false;

  bool ok = pg_call_noexcept(
      [&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        MemoryContext old = MemoryContextSwitchTo(batch);
        Datum tcp_args[kTcpArgs];
        Datum http_args[kHttpArgs];
        Datum pod_args[kPodArgs];
        Datum rollup_args[kRollupArgs];
        if (b.ntcp > 0)
          tcp_values(b.tcp, static_cast<int>(b.ntcp), interface, peers_.data(), tcp_args);
        if (b.nhttp > 0)
          http_values(b.http, static_cast<int>(b.nhttp), interface, peers_.data() + 2 * b.ntcp,
                      http_args);
        if (b.npods > 0) pod_values(b.pods, static_cast<int>(b.npods), pod_args);
        if (rollup_.size() > 0) rollup_values(rollup_, rollup_args);
        MemoryContextSwitchTo(old);

        SPI_connect();
        PushActiveSnapshot(GetTransactionSnapshot());
        pgstat_report_activity(STATE_RUNNING, "ebpf_capture: inserting spans");
        if (b.ntcp > 0) execute(tcp_plan, tcp_args);
        if (b.nhttp > 0) execute(http_plan, http_args);
        if (b.npods > 0) execute(pod_plan, pod_args);
        if (rollup_.size() > 0) execute(rollup_plan, rollup_args);
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
        pgstat_report_stat(false);
        pgstat_report_activity(STATE_IDLE, nullptr);
      },
      error, error_size);
  if (!ok) {
    char abort_error[256];
    pg_call_noexcept(
        [&] {
          AbortCurrentTransaction();
          pgstat_report_activity(STATE_IDLE, nullptr);
        },
        abort_error, sizeof(abort_error));
  }
  MemoryContextReset(batch);
  return ok;
}

}  // namespace ebpfc::pg
