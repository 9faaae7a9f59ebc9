// span_store.h - writes spans into the spans table through SPI: one saved
// plan (INSERT ... SELECT FROM unnest(arrays)), one statement and one
// transaction per batch, then pgstat_report_stat.
#pragma once

#include <cstddef>

#include "core/span.h"

namespace ebpfc::pg {

class SpanStore {
 public:
  // Prepares and keeps the insert plan. Call inside the worker, connected to
  // the database. Throws PgError.
  void prepare();

  // Inserts spans[0..n) in one transaction. Returns false (with the error
  // text in `error`) if the transaction failed; nothing is half-written.
  bool insert(const Span* spans, size_t n, const char* interface, char* error, size_t error_size);

 private:
  void* plan_ = nullptr;           // SPIPlanPtr
  void* batch_context_ = nullptr;  // MemoryContext, reset after every batch
};

}  // namespace ebpfc::pg
