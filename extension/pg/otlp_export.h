// otlp_export.h - the PostgreSQL side of span trees and of the OTLP
// exporter: their settings (ebpf_capture.trace_span_ids, ebpf_capture.otlp_*),
// and the worker's glue between its span batches, the outbox table and the
// PostgreSQL-free exporter (extension/export/).
//
// The guarantee (docs/otlp.md): every span the worker writes while an
// endpoint is set is also written, in the same transaction, into one OTLP
// request in _otlp_outbox; rows are sent in order and deleted once the
// endpoint accepted them (or refused them for good). So what is in spans is
// exported at least once, across restarts and outages, unless the outbox's
// size bound dropped it (counted).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/chunk_resolve.h"
#include "core/span_batch.h"
#include "core/trace_links.h"
#include "export/otlp_client.h"
#include "export/otlp_encode.h"
#include "pg/pg_headers.h"
#include "pg/span_store.h"

namespace ebpfc::pg {

extern int g_trace_span_ids;  // sighup: TraceSpanIds

// Defines the settings above (reloadable ones only).
void define_trace_gucs();

// The span id and parent rules the HTTP tracker applies (trace_links.h).
TraceLinksOptions trace_links_options();

// The worker's exporter. Runs on the worker's main thread only.
class OtlpExport final : public ChunkSideWrite {
 public:
  // Throws std::runtime_error if libcurl cannot be set up.
  OtlpExport(int slot, const char* interface);

  // The exporter's fd, for the worker's WaitEventSet (readable when a socket
  // or a timer needs it).
  int fd() const { return client_.fd(); }

  // Prepares the statements and counts the outbox rows a worker before left
  // (inside the worker, once the extension's schema is known). Throws PgError.
  void prepare(const char* schema);
  // The settings changed (and at start).
  void configure();
  bool enabled() const { return client_.enabled(); }

  // Before a chunk's transaction: its spans as an OTLP request (nothing when
  // export is off). A failure here costs that chunk's export, not its spans.
  void encode(const SpanBatch::Chunk& chunk, const ResolvedChunk& resolved);
  // ChunkSideWrite: the request goes into the outbox in the chunk's transaction.
  void write_in_transaction() override;
  void failed(const char* error) override;
  // After the chunk's transaction: committed or not.
  void chunk_done(bool committed);

  // The fd was readable (or not): serves the endpoint, deletes the rows it
  // is done with, hands it the next one. Writes: call with interrupts held.
  void serve(bool ready);
  // Copies the counters and state into the capture's slot.
  void publish();

 private:
  void read_next();
  void forget(int64_t id);
  void note_error(const char* message);
  uint64_t cpu_ns() const;

  int slot_;
  char interface_[IFNAMSIZ];
  otlp::Client client_;
  otlp::Encoder encoder_;
  otlp::EncodeOptions encode_options_;
  // the chunk being written
  std::vector<uint8_t> body_;
  size_t body_spans_ = 0;
  int64_t body_id_ = 0;         // its row, once inserted
  uint64_t trimmed_spans_ = 0;  // rows the bound removed in the chunk's transaction
  uint64_t trimmed_bytes_ = 0;
  uint64_t trimmed_rows_ = 0;
  // the outbox as the exporter knows it
  uint64_t queued_rows_ = 0;
  uint64_t queued_spans_ = 0;
  uint64_t queued_bytes_ = 0;
  int64_t last_taken_id_ = 0;  // the newest row handed to the client
  uint64_t dropped_ = 0;
  uint64_t cpu_ns_total_ = 0;
  uint64_t max_queue_bytes_ = 0;
  bool prepared_ = false;
  char error_[512] = "";
  SPIPlanPtr insert_plan_ = nullptr;
  SPIPlanPtr trim_plan_ = nullptr;
  SPIPlanPtr next_plan_ = nullptr;
  SPIPlanPtr delete_plan_ = nullptr;
  Oid outbox_ = InvalidOid;
};

}  // namespace ebpfc::pg
