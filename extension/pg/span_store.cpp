#include "pg/span_store.h"

#include <cstring>
#include <type_traits>

#include "core/span_attributes.h"
#include "core/span_ids.h"
#include "core/text_sanitize.h"
#include "pg/catalog.h"
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

// Bytes from the wire as valid text.
Datum make_wire_text(const char* s, size_t len) {
  char* clean = static_cast<char*>(palloc(len * 3 + 1));
  size_t n = sanitize_utf8(s, len, clean, len * 3 + 1);
  return make_text(clean, n);
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

constexpr int kTcpArgs = 15;
constexpr int kHttpArgs = 18;

// The parameters of the tcp insert, built in the current memory context.
void tcp_values(const Span* spans, int n, const char* interface, Datum* values) {
  Column trace(n, TEXTOID), span(n, TEXTOID), start(n, TIMESTAMPTZOID), end(n, TIMESTAMPTZOID),
      status(n, TEXTOID), src(n, INETOID), dst(n, INETOID), sport(n, INT4OID), dport(n, INT4OID),
      sent(n, INT8OID), received(n, INT8OID), psent(n, INT8OID), preceived(n, INT8OID),
      attrs(n, TEXTOID);
  char buf[kAttributesMax];
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
    attrs.set(i, make_text(buf, format_tcp_attributes(s, buf, sizeof(buf))));
  }
  const Column* cols[] = {&trace, &span,  &start, &end,      &status, &src,       &dst,
                          &sport, &dport, &sent,  &received, &psent,  &preceived, &attrs};
  values[0] = make_text(interface);
  for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) values[c + 1] = cols[c]->array();
}

// The parameters of the http insert, built in the current memory context.
void http_values(const HttpSpan* spans, int n, const char* interface, Datum* values) {
  Column trace(n, TEXTOID), span(n, TEXTOID), parent(n, TEXTOID), name(n, TEXTOID),
      start(n, TIMESTAMPTZOID), end(n, TIMESTAMPTZOID), status(n, TEXTOID), src(n, INETOID),
      dst(n, INETOID), sport(n, INT4OID), dport(n, INT4OID), sent(n, INT8OID), received(n, INT8OID),
      attrs(n, TEXTOID), method(n, TEXTOID), target(n, TEXTOID), code(n, INT4OID);
  char* buf = static_cast<char*>(palloc(kHttpAttributesMax));
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
    attrs.set(i, make_text(buf, format_http_attributes(s, buf, kHttpAttributesMax)));
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
  }
  const Column* cols[] = {&trace, &span,  &parent, &name,     &start, &end,    &status, &src, &dst,
                          &sport, &dport, &sent,   &received, &attrs, &method, &target, &code};
  values[0] = make_text(interface);
  for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) values[c + 1] = cols[c]->array();
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
    Oid tcp_types[kTcpArgs] = {
        TEXTOID,      TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
        TEXTARRAYOID, INETARRAYOID, INETARRAYOID, INT4ARRAYOID,        INT4ARRAYOID,
        INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,        TEXTARRAYOID};
    tcp_plan_ = prepare_plan(
        psprintf("INSERT INTO %s.spans (trace_id, span_id, name, kind, start_time, end_time, "
                 "status, protocol, interface, src_addr, dst_addr, src_port, dst_port, "
                 "bytes_sent, bytes_received, packets_sent, packets_received, attributes) "
                 "SELECT t, s, 'tcp.connection', 'CLIENT', st, et, status, 'tcp', $1, sa, da, "
                 "sp, dp, bs, br, ps, pr, attr::jsonb FROM unnest($2, $3, $4, $5, $6, $7, $8, "
                 "$9, $10, $11, $12, $13, $14, $15) "
                 "AS u(t, s, st, et, status, sa, da, sp, dp, bs, br, ps, pr, attr)",
                 schema),
        kTcpArgs, tcp_types);
    Oid http_types[kHttpArgs] = {
        TEXTOID,      TEXTARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
        TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
        INETARRAYOID, INETARRAYOID,        INT4ARRAYOID,        INT4ARRAYOID,
        INT8ARRAYOID, INT8ARRAYOID,        TEXTARRAYOID,        TEXTARRAYOID,
        TEXTARRAYOID, INT4ARRAYOID};
    http_plan_ = prepare_plan(
        psprintf("INSERT INTO %s.spans (trace_id, span_id, parent_span_id, name, kind, "
                 "start_time, end_time, status, protocol, interface, src_addr, dst_addr, "
                 "src_port, dst_port, bytes_sent, bytes_received, attributes, http_method, "
                 "http_target, http_status) "
                 "SELECT t, s, p, n, 'SERVER', st, et, status, 'http', $1, sa, da, sp, dp, bs, "
                 "br, attr::jsonb, m, tg, hs FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, "
                 "$11, $12, $13, $14, $15, $16, $17, $18) "
                 "AS u(t, s, p, n, st, et, status, sa, da, sp, dp, bs, br, attr, m, tg, hs)",
                 schema),
        kHttpArgs, http_types);
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
  });
}

bool SpanStore::insert(const Span* tcp, size_t ntcp, const HttpSpan* http, size_t nhttp,
                       const char* interface, char* error, size_t error_size) {
  if (ntcp == 0 && nhttp == 0) return true;
  MemoryContext batch = static_cast<MemoryContext>(batch_context_);
  SPIPlanPtr tcp_plan = static_cast<SPIPlanPtr>(tcp_plan_);
  SPIPlanPtr http_plan = static_cast<SPIPlanPtr>(http_plan_);

  bool ok = pg_call_noexcept(
      [&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        MemoryContext old = MemoryContextSwitchTo(batch);
        Datum tcp_args[kTcpArgs];
        Datum http_args[kHttpArgs];
        if (ntcp > 0) tcp_values(tcp, static_cast<int>(ntcp), interface, tcp_args);
        if (nhttp > 0) http_values(http, static_cast<int>(nhttp), interface, http_args);
        MemoryContextSwitchTo(old);

        SPI_connect();
        PushActiveSnapshot(GetTransactionSnapshot());
        pgstat_report_activity(STATE_RUNNING, "ebpf_capture: inserting spans");
        if (ntcp > 0) execute(tcp_plan, tcp_args);
        if (nhttp > 0) execute(http_plan, http_args);
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
