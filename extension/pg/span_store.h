// span_store.h - writes chunks of spans into the spans table, one
// transaction per chunk, then pgstat_report_stat. Spans go straight into
// their time partition through the table's access method (DirectInsert, the
// way COPY does) where the partition allows it, else through one saved SPI
// plan per span kind (INSERT ... SELECT unnest(arrays)).
//
// In the same transaction, each in a subtransaction with a short lock wait,
// go the pod changes (_pods_upsert) and the chunk's share of the service map
// rollup (_rollup_add). A lock held on pods or on the rollup never holds up
// the spans: the pod changes are kept for the next chunk, the rollup rows
// are staged (_rollup_stage) and merged in (_rollup_merge_staged) once the
// table is free. The report of open connections replaces the interface's
// rows of open_connections.
#pragma once

#include <cstddef>

#include "core/chunk_resolve.h"
#include "core/span_batch.h"
#include "kube/pod_cache.h"
#include "pg/shmem.h"

namespace ebpfc::pg {

class DirectInsert;

// Something else a chunk's transaction writes, after its spans (the OTLP
// outbox, pg/otlp_export.cpp): called inside the transaction, in a
// subtransaction of its own, so that its failure never holds up the spans.
class ChunkSideWrite {
 public:
  virtual void write_in_transaction() = 0;
  // It failed (its subtransaction was rolled back) with `error`.
  virtual void failed(const char* error) = 0;

 protected:
  ~ChunkSideWrite() = default;
};

class SpanStore {
 public:
  // Prepares and keeps the plans. Call inside the worker, connected to the
  // database, once the extension is at the library's version. Throws PgError.
  void prepare();

  // The extension's schema, quoted for SQL (known once prepared).
  const char* schema() const { return schema_; }

  // What writing a chunk did.
  struct Outcome {
    bool spans_written = false;  // the chunk's spans are in the table
    bool retry = false;          // they are not, for a passing reason (a lock wait gave up)
    bool pods_written = false;   // the pod changes given are in the pods table
    bool rollup_staged = false;  // the chunk's rollup rows were staged
    char error[kErrorLen] = "";  // what failed, if anything did
  };

  // Writes `chunk` (named by `resolved`) and the pod changes in one
  // transaction; see above.
  void write(const SpanBatch::Chunk& chunk, const ResolvedChunk& resolved,
             const kube::PodRecord* pods, size_t npods, const char* interface, Outcome* out,
             ChunkSideWrite* side = nullptr);

  // Whether rollup rows are staged (written, or found at start).
  bool has_staged() const { return staged_; }
  // Merges the staged rollup rows in, in a transaction of its own. Returns
  // false (they stay staged) with the error if it could not.
  bool merge_staged(char* error, size_t error_size);

  // Replaces this interface's rows of open_connections with `open`, the
  // connections open now (none: empties them), named by `resolved`, in one
  // transaction. Returns false with the error text in `error` if it failed;
  // the table then keeps its previous rows.
  bool replace_open(const Span* open, size_t n, const ResolvedChunk& resolved,
                    const char* interface, char* error, size_t error_size);

 private:
  SPIPlanPtr tcp_plan_ = nullptr;
  SPIPlanPtr http_plan_ = nullptr;
  SPIPlanPtr pg_plan_ = nullptr;
  SPIPlanPtr pods_plan_ = nullptr;
  SPIPlanPtr rollup_add_plan_ = nullptr;
  SPIPlanPtr rollup_stage_plan_ = nullptr;
  SPIPlanPtr rollup_merge_plan_ = nullptr;
  SPIPlanPtr open_delete_plan_ = nullptr;
  SPIPlanPtr open_insert_plan_ = nullptr;
  MemoryContext batch_context_ = nullptr;  // reset after every chunk
  unsigned spans_namespace_ = 0;           // Oid of the extension's schema
  const char* schema_ = nullptr;           // its name, quoted (TopMemoryContext)
  DirectInsert* direct_ = nullptr;         // in TopMemoryContext, for the worker's life
  bool staged_ = false;
  // Why the last chunk could not be written directly (nullptr: it was); a
  // change is logged.
  const char* direct_refused_ = nullptr;
};

}  // namespace ebpfc::pg
