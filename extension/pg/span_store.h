// span_store.h - writes spans into the spans table, one transaction per
// batch, then pgstat_report_stat. Spans go straight into the table through
// its access method (DirectInsert, the way COPY does) while the table allows
// it, else through one saved SPI plan per span kind (INSERT ... SELECT
// unnest(arrays)). The batch's pod changes and its share of the service map
// rollup are one SPI upsert each. The report of open connections replaces the
// interface's rows of open_connections (a saved DELETE and INSERT).
#pragma once

#include <cstddef>
#include <vector>

#include "core/edge_rollup.h"
#include "core/http_span.h"
#include "core/span.h"
#include "kube/pod_cache.h"

namespace ebpfc::pg {

class DirectInsert;

class SpanStore {
 public:
  // Prepares and keeps the insert plans. Call inside the worker, connected
  // to the database. Throws PgError.
  void prepare();

  // What one transaction writes.
  struct Batch {
    const Span* tcp = nullptr;
    size_t ntcp = 0;
    const HttpSpan* http = nullptr;
    size_t nhttp = 0;
    const kube::PodRecord* pods = nullptr;  // changes to mirror into the pods table
    size_t npods = 0;
    const kube::PodCache* peers = nullptr;  // names both ends of each span; may be null
  };

  // Writes the batch in one transaction. Returns false (with the error text
  // in `error`) if the transaction failed; nothing is half-written.
  bool insert(const Batch& batch, const char* interface, char* error, size_t error_size);

  // Replaces this interface's rows of open_connections with `open`, the
  // connections open now (none: empties them), named by `peers` (may be
  // null), in one transaction. Returns false with the error text in `error`
  // if it failed; the table then keeps its previous rows.
  bool replace_open(const Span* open, size_t n, const kube::PodCache* peers, const char* interface,
                    char* error, size_t error_size);

 private:
  // Looks up who is at both ends of every span, once, into peers_, and
  // folds the batch into rollup_ (C++ only, before the transaction).
  bool resolve_and_fold(const Batch& batch, char* error, size_t error_size) noexcept;

  EdgeRollup<kube::PeerIdentity> rollup_;
  // Per span of the batch, tcp then http: source and destination identity
  // (null: unknown), read by the row builders and the rollup alike.
  std::vector<const kube::PeerIdentity*> peers_;
  void* rollup_plan_ = nullptr;       // SPIPlanPtr
  void* tcp_plan_ = nullptr;          // SPIPlanPtr
  void* http_plan_ = nullptr;         // SPIPlanPtr
  void* pod_plan_ = nullptr;          // SPIPlanPtr
  void* open_delete_plan_ = nullptr;  // SPIPlanPtr
  void* open_insert_plan_ = nullptr;  // SPIPlanPtr
  void* batch_context_ = nullptr;     // MemoryContext, reset after every batch
  unsigned spans_namespace_ = 0;      // Oid of the extension's schema
  DirectInsert* direct_ = nullptr;    // in TopMemoryContext, for the worker's life
  // Why the last batch could not be written directly (nullptr: it was);
  // a change is logged.
  const char* direct_refused_ = nullptr;
};

}  // namespace ebpfc::pg
