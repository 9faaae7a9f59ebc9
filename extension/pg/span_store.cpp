#include "pg/span_store.h"

#include <cstring>

#include "core/span_attributes.h"
#include "core/span_ids.h"
#include "pg/catalog.h"
#include "pg/pg_guard.h"

namespace ebpfc::pg {

namespace {

constexpr int kArgs = 16;

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

Datum make_array(Datum* elems, int n, Oid type) {
  int16 typlen;
  bool typbyval;
  char typalign;
  get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
  return PointerGetDatum(construct_array(elems, n, type, typlen, typbyval, typalign));
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
    const char* sql = psprintf(
        "INSERT INTO %s.spans (trace_id, span_id, name, kind, start_time, end_time, status, "
        "protocol, interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, "
        "bytes_received, packets_sent, packets_received, attributes) "
        "SELECT t, s, 'tcp.connection', 'CLIENT', st, et, status, 'tcp', $1, sa, da, sp, dp, "
        "bs, br, ps, pr, attr::jsonb FROM unnest($2::text[], $3::text[], $4::timestamptz[], "
        "$5::timestamptz[], $6::text[], $7::inet[], $8::inet[], $9::int4[], $10::int4[], "
        "$11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::text[]) "
        "AS u(t, s, st, et, status, sa, da, sp, dp, bs, br, ps, pr, attr)",
        schema);
    Oid types[kArgs - 1] = {
        TEXTOID,      TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
        TEXTARRAYOID, INETARRAYOID, INETARRAYOID, INT4ARRAYOID,        INT4ARRAYOID,
        INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,        TEXTARRAYOID};
    SPIPlanPtr plan = SPI_prepare(sql, kArgs - 1, types);
    if (plan == nullptr)
      elog(ERROR, "ebpf_capture: cannot prepare the span insert: %s",
           SPI_result_code_string(SPI_result));
    SPI_keepplan(plan);
    plan_ = plan;
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
  });
}

bool SpanStore::insert(const Span* spans, size_t count, const char* interface, char* error,
                       size_t error_size) {
  if (count == 0) return true;
  const int n = static_cast<int>(count);
  MemoryContext batch = static_cast<MemoryContext>(batch_context_);
  SPIPlanPtr plan = static_cast<SPIPlanPtr>(plan_);

  bool ok = pg_call_noexcept(
      [&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        MemoryContext old = MemoryContextSwitchTo(batch);
        Datum* cols[kArgs - 2];
        for (auto& c : cols) c = static_cast<Datum*>(palloc(sizeof(Datum) * n));
        char hex[33];
        char attrs[kAttributesMax];
        for (int i = 0; i < n; i++) {
          const Span& s = spans[i];
          to_hex(s.trace_id, 16, hex);
          cols[0][i] = make_text(hex, 32);
          to_hex(s.span_id, 8, hex);
          cols[1][i] = make_text(hex, 16);
          cols[2][i] = TimestampTzGetDatum(to_timestamptz(s.start_unix_us));
          cols[3][i] = TimestampTzGetDatum(to_timestamptz(s.end_unix_us));
          const char* status = status_name(s.status);
          cols[4][i] = make_text(status, strlen(status));
          cols[5][i] = make_inet(s.family, s.src_addr);
          cols[6][i] = make_inet(s.family, s.dst_addr);
          cols[7][i] = Int32GetDatum(s.src_port);
          cols[8][i] = Int32GetDatum(s.dst_port);
          cols[9][i] = Int64GetDatum(static_cast<int64>(s.bytes_sent));
          cols[10][i] = Int64GetDatum(static_cast<int64>(s.bytes_received));
          cols[11][i] = Int64GetDatum(static_cast<int64>(s.packets_sent));
          cols[12][i] = Int64GetDatum(static_cast<int64>(s.packets_received));
          size_t len = format_tcp_attributes(s, attrs, sizeof(attrs));
          cols[13][i] = make_text(attrs, len);
        }
        static const Oid elem_types[kArgs - 2] = {
            TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INETOID, INETOID,
            INT4OID, INT4OID, INT8OID,        INT8OID,        INT8OID, INT8OID, TEXTOID};
        Datum values[kArgs - 1];
        values[0] = make_text(interface, strlen(interface));
        for (int c = 0; c < kArgs - 2; c++) values[c + 1] = make_array(cols[c], n, elem_types[c]);
        MemoryContextSwitchTo(old);

        SPI_connect();
        PushActiveSnapshot(GetTransactionSnapshot());
        pgstat_report_activity(STATE_RUNNING, "ebpf_capture: inserting spans");
        int rc = SPI_execute_plan(plan, values, nullptr, false, 0);
        if (rc != SPI_OK_INSERT)
          elog(ERROR, "ebpf_capture: span insert failed: %s", SPI_result_code_string(rc));
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
