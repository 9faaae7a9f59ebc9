#include "pg/otlp_export.h"

#include <time.h>

#include <cstring>

#include "pg/catalog.h"
#include "pg/lock_now.h"
#include "pg/pg_guard.h"
#include "pg/shmem.h"
#include "pg/transaction.h"

namespace ebpfc::pg {

int g_trace_span_ids = static_cast<int>(TraceSpanIds::Caller);

namespace {

char* g_otlp_endpoint = nullptr;
int g_otlp_protocol = static_cast<int>(otlp::Format::Protobuf);
int g_otlp_compression = static_cast<int>(otlp::Compression::Gzip);
char* g_otlp_headers_file = nullptr;
char* g_otlp_ca_file = nullptr;
bool g_otlp_tls_verify = true;
int g_otlp_timeout_ms = 10000;
int g_otlp_max_queue_kb = 64 * 1024;
bool g_otlp_connection_spans = true;

const struct config_enum_entry kTraceSpanIds[] = {
    {"caller", static_cast<int>(TraceSpanIds::Caller), false},
    {"own", static_cast<int>(TraceSpanIds::Own), false},
    {nullptr, 0, false}};
const struct config_enum_entry kProtocols[] = {
    {"http/protobuf", static_cast<int>(otlp::Format::Protobuf), false},
    {"http/json", static_cast<int>(otlp::Format::Json), false},
    {nullptr, 0, false}};
const struct config_enum_entry kCompressions[] = {
    {"gzip", static_cast<int>(otlp::Compression::Gzip), false},
    {"none", static_cast<int>(otlp::Compression::None), false},
    {nullptr, 0, false}};

uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

SPIPlanPtr keep_plan(const char* sql, int nargs, Oid* types) {
  SPIPlanPtr plan = SPI_prepare(sql, nargs, types);
  if (plan == nullptr)
    elog(ERROR, "ebpf_capture: cannot prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
  SPI_keepplan(plan);
  return plan;
}

int64 int8_at(int row, int col) {
  bool isnull = false;
  const Datum d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
  return isnull ? 0 : DatumGetInt64(d);
}

int32 int4_at(int row, int col) {
  bool isnull = false;
  const Datum d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
  return isnull ? 0 : DatumGetInt32(d);
}

}  // namespace

void define_trace_gucs() {
  DefineCustomEnumVariable(
      "ebpf_capture.trace_span_ids",
      "The span id of an HTTP exchange that carries trace context: caller (the id its caller "
      "gave the request, the parent inferred from what entered the calling pod) or own (a "
      "fresh id, the caller's id as parent).",
      "Use own when the callers export their own client spans: theirs already have those ids.",
      &g_trace_span_ids, static_cast<int>(TraceSpanIds::Caller), kTraceSpanIds, PGC_SIGHUP, 0,
      nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.otlp_endpoint",
      "OTLP/HTTP endpoint the spans are exported to (empty: no export).",
      "http://collector:4318 gets /v1/traces; a URL with a path is used as is.", &g_otlp_endpoint,
      "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomEnumVariable("ebpf_capture.otlp_protocol",
                           "OTLP encoding: http/protobuf or http/json.", nullptr, &g_otlp_protocol,
                           static_cast<int>(otlp::Format::Protobuf), kProtocols, PGC_SIGHUP, 0,
                           nullptr, nullptr, nullptr);
  DefineCustomEnumVariable("ebpf_capture.otlp_compression",
                           "Compression of OTLP requests: gzip or none.", nullptr,
                           &g_otlp_compression, static_cast<int>(otlp::Compression::Gzip),
                           kCompressions, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.otlp_headers_file",
      "File of \"Name: value\" lines sent as headers of every OTLP request (an authorization "
      "token); re-read every minute and after a 401 or 403.",
      nullptr, &g_otlp_headers_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomStringVariable(
      "ebpf_capture.otlp_ca_file",
      "CA bundle that signs an https OTLP endpoint's certificate (empty: the system's).", nullptr,
      &g_otlp_ca_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable(
      "ebpf_capture.otlp_tls_verify", "Verify an https OTLP endpoint's certificate and host name.",
      nullptr, &g_otlp_tls_verify, true, PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("ebpf_capture.otlp_timeout",
                          "Longest an OTLP request may take before it is retried.", nullptr,
                          &g_otlp_timeout_ms, 10000, 100, 600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable(
      "ebpf_capture.otlp_max_queue_size",
      "Largest size of the requests waiting in the outbox per capture; beyond it the oldest "
      "are dropped and counted.",
      nullptr, &g_otlp_max_queue_kb, 64 * 1024, 1024, INT_MAX, PGC_SIGHUP, GUC_UNIT_KB, nullptr,
      nullptr, nullptr);
  DefineCustomBoolVariable("ebpf_capture.otlp_connection_spans",
                           "Export connection (tcp) spans too, not only HTTP spans.", nullptr,
                           &g_otlp_connection_spans, true, PGC_SIGHUP, 0, nullptr, nullptr,
                           nullptr);
}

TraceLinksOptions trace_links_options() {
  TraceLinksOptions o;
  o.mode = static_cast<TraceSpanIds>(g_trace_span_ids);
  return o;
}

// ---- the worker's exporter ---------------------------------------------------

OtlpExport::OtlpExport(int slot, const char* interface) : slot_(slot) {
  strlcpy(interface_, interface, sizeof(interface_));
  encode_options_.interface = interface;
}

uint64_t OtlpExport::cpu_ns() const {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void OtlpExport::note_error(const char* message) { strlcpy(error_, message, sizeof(error_)); }

void OtlpExport::configure() {
  otlp::ClientOptions o;
  o.endpoint = g_otlp_endpoint ? g_otlp_endpoint : "";
  o.headers_file = g_otlp_headers_file ? g_otlp_headers_file : "";
  o.ca_file = g_otlp_ca_file ? g_otlp_ca_file : "";
  o.verify_tls = g_otlp_tls_verify;
  o.timeout_ms = g_otlp_timeout_ms;
  o.connect_timeout_ms = std::min(g_otlp_timeout_ms, 5000);
  client_.configure(o, mono_ns());
  encode_options_.format = static_cast<otlp::Format>(g_otlp_protocol);
  encode_options_.compression = static_cast<otlp::Compression>(g_otlp_compression);
  encode_options_.connection_spans = g_otlp_connection_spans;
  max_queue_bytes_ = static_cast<uint64_t>(g_otlp_max_queue_kb) * 1024;
}

void OtlpExport::prepare(const char* schema) {
  char error[1024];
  const bool ok = in_transaction(
      "ebpf_capture: preparing the OTLP outbox",
      [&] {
        outbox_ = get_relname_relid("_otlp_outbox", extension_namespace());
        if (!OidIsValid(outbox_)) elog(ERROR, "the extension has no _otlp_outbox table");
        Oid insert_types[5] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, BYTEAOID};
        insert_plan_ =
            keep_plan(psprintf("INSERT INTO %s._otlp_outbox (interface, spans, content_type, "
                               "content_encoding, body) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                               schema),
                      5, insert_types);
        Oid trim_types[2] = {TEXTOID, INT8OID};
        trim_plan_ = keep_plan(
            psprintf("DELETE FROM %s._otlp_outbox WHERE id = (SELECT o.id FROM %s._otlp_outbox o "
                     "WHERE o.interface = $1 AND o.id <> $2 ORDER BY o.id LIMIT 1) "
                     "RETURNING spans, pg_catalog.octet_length(body)",
                     schema, schema),
            2, trim_types);
        next_plan_ = keep_plan(
            psprintf("SELECT id, spans, content_type, content_encoding, body FROM %s._otlp_outbox "
                     "WHERE interface = $1 AND id > $2 ORDER BY id LIMIT 1",
                     schema),
            2, trim_types);
        Oid id_type[1] = {INT8OID};
        delete_plan_ = keep_plan(psprintf("DELETE FROM %s._otlp_outbox WHERE id = $1 "
                                          "RETURNING spans, pg_catalog.octet_length(body)",
                                          schema),
                                 1, id_type);
        Datum iface[1] = {CStringGetTextDatum(interface_)};
        Oid text_type[1] = {TEXTOID};
        if (SPI_execute_with_args(
                psprintf("SELECT pg_catalog.count(*), pg_catalog.sum(spans)::int8, "
                         "pg_catalog.sum(pg_catalog.octet_length(body))::int8 "
                         "FROM %s._otlp_outbox WHERE interface = $1",
                         schema),
                1, text_type, iface, nullptr, true, 1) == SPI_OK_SELECT &&
            SPI_processed == 1) {
          queued_rows_ = static_cast<uint64_t>(int8_at(0, 1));
          queued_spans_ = static_cast<uint64_t>(int8_at(0, 2));
          queued_bytes_ = static_cast<uint64_t>(int8_at(0, 3));
        }
      },
      error, sizeof(error));
  if (!ok) throw PgError(error);
  prepared_ = true;
}

void OtlpExport::encode(const SpanBatch::Chunk& chunk, const ResolvedChunk& resolved) {
  body_.clear();
  body_spans_ = 0;
  body_id_ = 0;
  if (!prepared_ || !client_.enabled() || chunk.size() == 0) return;
  const uint64_t t0 = cpu_ns();
  try {
    body_spans_ = encoder_.encode(chunk, resolved.peers(), encode_options_, body_);
  } catch (const std::exception& e) {
    body_.clear();
    dropped_ += chunk.size();
    body_spans_ = 0;
    note_error(e.what());
  }
  cpu_ns_total_ += cpu_ns() - t0;
}

void OtlpExport::write_in_transaction() {
  trimmed_spans_ = trimmed_bytes_ = trimmed_rows_ = 0;
  body_id_ = 0;
  if (body_spans_ == 0) return;
  const uint64_t t0 = cpu_ns();
  lock_now(outbox_, RowExclusiveLock);
  // Room for the new request: the oldest rows go (never the one being sent).
  uint64_t bytes = queued_bytes_;
  while (bytes + body_.size() > max_queue_bytes_ && queued_rows_ > trimmed_rows_) {
    Datum args[2] = {CStringGetTextDatum(interface_), Int64GetDatum(client_.held_id())};
    if (SPI_execute_plan(trim_plan_, args, nullptr, false, 1) != SPI_OK_DELETE_RETURNING ||
        SPI_processed != 1)
      break;
    trimmed_rows_++;
    trimmed_spans_ += static_cast<uint64_t>(int4_at(0, 1));
    const uint64_t b = static_cast<uint64_t>(int4_at(0, 2));
    trimmed_bytes_ += b;
    bytes -= std::min(bytes, b);
  }
  if (bytes + body_.size() <= max_queue_bytes_) {
    bytea* body = static_cast<bytea*>(palloc(VARHDRSZ + body_.size()));
    SET_VARSIZE(body, VARHDRSZ + body_.size());
    std::memcpy(VARDATA(body), body_.data(), body_.size());
    const char* encoding = otlp::content_encoding(encode_options_.compression);
    Datum args[5] = {CStringGetTextDatum(interface_),
                     Int32GetDatum(static_cast<int32>(body_spans_)),
                     CStringGetTextDatum(otlp::content_type(encode_options_.format)),
                     encoding ? CStringGetTextDatum(encoding) : Datum(0), PointerGetDatum(body)};
    const char nulls[5] = {' ', ' ', ' ', encoding ? ' ' : 'n', ' '};
    if (SPI_execute_plan(insert_plan_, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
        SPI_processed != 1)
      elog(ERROR, "ebpf_capture: could not queue an OTLP request");
    body_id_ = int8_at(0, 1);
  }
  cpu_ns_total_ += cpu_ns() - t0;
}

void OtlpExport::failed(const char* error) {
  char message[600];
  snprintf(message, sizeof(message), "could not queue %zu spans for export: %s", body_spans_,
           error);
  note_error(message);
  body_id_ = 0;
  trimmed_spans_ = trimmed_bytes_ = trimmed_rows_ = 0;
}

void OtlpExport::chunk_done(bool committed) {
  if (!committed || body_spans_ == 0) {
    body_spans_ = 0;
    return;
  }
  // What the transaction trimmed is gone; what it queued is there.
  queued_rows_ -= std::min(queued_rows_, trimmed_rows_);
  queued_spans_ -= std::min(queued_spans_, trimmed_spans_);
  queued_bytes_ -= std::min(queued_bytes_, trimmed_bytes_);
  dropped_ += trimmed_spans_;
  if (body_id_ == 0) {
    dropped_ += body_spans_;  // it did not fit, or could not be queued
    if (error_[0] == '\0')
      note_error("an OTLP request larger than ebpf_capture.otlp_max_queue_size");
  } else {
    queued_rows_++;
    queued_spans_ += body_spans_;
    queued_bytes_ += body_.size();
    // Nothing older waits: it goes out from memory, not read back.
    if (client_.wants_batch() && queued_rows_ == 1 && body_id_ > last_taken_id_) {
      otlp::Batch b;
      b.id = body_id_;
      b.spans = static_cast<uint32_t>(body_spans_);
      b.format = encode_options_.format;
      b.compression = encode_options_.compression;
      b.body.swap(body_);
      last_taken_id_ = body_id_;
      client_.send(std::move(b), mono_ns());
    }
  }
  body_spans_ = 0;
  body_id_ = 0;
}

void OtlpExport::forget(int64_t id) {
  char error[kErrorLen];
  const bool ok = in_transaction(
      "ebpf_capture: removing a sent OTLP request",
      [&] {
        lock_now(outbox_, RowExclusiveLock);
        Datum args[1] = {Int64GetDatum(id)};
        if (SPI_execute_plan(delete_plan_, args, nullptr, false, 1) == SPI_OK_DELETE_RETURNING &&
            SPI_processed == 1) {
          queued_rows_ -= std::min<uint64_t>(queued_rows_, 1);
          queued_spans_ -= std::min<uint64_t>(queued_spans_, static_cast<uint64_t>(int4_at(0, 1)));
          queued_bytes_ -= std::min<uint64_t>(queued_bytes_, static_cast<uint64_t>(int4_at(0, 2)));
        }
      },
      error, sizeof(error));
  // Not deleted (a lock held): it is sent again after the next start, at
  // worst: at least once.
  if (!ok) note_error(error);
}

void OtlpExport::read_next() {
  if (queued_rows_ == 0 || !client_.wants_batch()) return;
  otlp::Batch b;
  char error[kErrorLen];
  bool found = false;
  const bool ok = in_transaction(
      "ebpf_capture: reading the OTLP outbox",
      [&] {
        lock_now(outbox_, AccessShareLock);
        Datum args[2] = {CStringGetTextDatum(interface_), Int64GetDatum(last_taken_id_)};
        if (SPI_execute_plan(next_plan_, args, nullptr, true, 1) != SPI_OK_SELECT ||
            SPI_processed != 1)
          return;
        HeapTuple row = SPI_tuptable->vals[0];
        TupleDesc desc = SPI_tuptable->tupdesc;
        b.id = int8_at(0, 1);
        b.spans = static_cast<uint32_t>(int4_at(0, 2));
        const char* type = SPI_getvalue(row, desc, 3);
        const char* encoding = SPI_getvalue(row, desc, 4);
        b.format = type != nullptr && strcmp(type, "application/json") == 0
                       ? otlp::Format::Json
                       : otlp::Format::Protobuf;
        b.compression = encoding != nullptr && strcmp(encoding, "gzip") == 0
                            ? otlp::Compression::Gzip
                            : otlp::Compression::None;
        bool isnull = false;
        const Datum d = SPI_getbinval(row, desc, 5, &isnull);
        if (isnull) return;
        bytea* body = DatumGetByteaPP(d);
        const char* p = VARDATA_ANY(body);
        b.body.assign(p, p + VARSIZE_ANY_EXHDR(body));
        found = true;
      },
      error, sizeof(error));
  if (!ok) {
    note_error(error);
    return;
  }
  if (!found) {
    // The count was off (rows removed by hand): nothing newer waits.
    queued_rows_ = queued_spans_ = queued_bytes_ = 0;
    return;
  }
  last_taken_id_ = b.id;
  client_.send(std::move(b), mono_ns());
}

void OtlpExport::serve(bool ready) {
  if (!prepared_) return;
  const uint64_t t0 = cpu_ns();
  if (ready) client_.on_ready(mono_ns());
  otlp::Finished f;
  while (client_.take_finished(&f)) forget(f.id);
  if (client_.enabled()) read_next();
  cpu_ns_total_ += cpu_ns() - t0;
}

void OtlpExport::publish() {
  SharedState* sh = shared();
  if (sh == nullptr || slot_ < 0 || slot_ >= sh->nslots) return;
  CaptureSlot* s = &sh->slots[slot_];
  const otlp::ClientCounters& c = client_.counters();
  auto set = [s](OtlpCounter k, uint64_t v) { pg_atomic_write_u64(&s->otlp[k], v); };
  set(kOtlpExported, c.exported_spans);
  set(kOtlpFailed, c.failed_spans);
  set(kOtlpDropped, dropped_);
  set(kOtlpQueued, queued_spans_);
  set(kOtlpQueuedBytes, queued_bytes_);
  set(kOtlpRequests, c.requests);
  set(kOtlpRetries, c.retries);
  set(kOtlpCpuUs, cpu_ns_total_ / 1000);
  const std::string& client_error = client_.last_error();
  SpinLockAcquire(&sh->mutex);
  strlcpy(s->otlp_state, client_.state_name(), sizeof(s->otlp_state));
  // the newer of the two: the client's errors come from the endpoint
  strlcpy(s->otlp_error, !client_error.empty() ? client_error.c_str() : error_,
          sizeof(s->otlp_error));
  SpinLockRelease(&sh->mutex);
}

}  // namespace ebpfc::pg

// _otlp_slots(): the exporters' state, one row per capture slot in use.
EBPFC_SQL_FUNCTION(ebpf_capture_otlp_slots) {
  using namespace ebpfc::pg;
  ReturnSetInfo* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  InitMaterializedSRF(fcinfo, 0);
  SharedState* sh = shared();
  if (sh == nullptr) PG_RETURN_VOID();
  for (int i = 0; i < sh->nslots; i++) {
    CaptureSlot* s = &sh->slots[i];
    char interface[IFNAMSIZ], state[16], error[kErrorLen];
    SpinLockAcquire(&sh->mutex);
    const bool in_use = s->in_use;
    std::memcpy(interface, s->interface, sizeof(interface));
    std::memcpy(state, s->otlp_state, sizeof(state));
    std::memcpy(error, s->otlp_error, sizeof(error));
    SpinLockRelease(&sh->mutex);
    if (!in_use) continue;
    constexpr int kColumns = 3 + kOtlpCounterCount;
    static_assert(kColumns == 11, "OTLP slot columns: see _otlp_slots in the SQL script");
    Datum values[kColumns];
    bool nulls[kColumns] = {false};
    values[0] = CStringGetTextDatum(interface);
    values[1] = CStringGetTextDatum(state[0] != '\0' ? state : "off");
    for (int k = 0; k < kOtlpCounterCount; k++)
      values[2 + k] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->otlp[k])));
    values[kColumns - 1] = CStringGetTextDatum(error);
    nulls[kColumns - 1] = error[0] == '\0';
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
  }
  PG_RETURN_VOID();
}
