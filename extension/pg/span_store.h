// span_store.h - writes spans into the spans table through SPI: one saved
// plan per span kind (INSERT ... SELECT FROM unnest(arrays)), one statement
// per kind and one transaction per batch, then pgstat_report_stat.
#pragma once

#include <cstddef>

#include "core/http_span.h"
#include "core/span.h"

namespace ebpfc::pg {

class SpanStore {
 public:
  // Prepares and keeps the insert plans. Call inside the worker, connected
  // to the database. Throws PgError.
  void prepare();

  // Inserts tcp[0..ntcp) and http[0..nhttp) in one transaction. Returns
  // false (with the error text in `error`) if the transaction failed;
  // nothing is half-written.
  bool insert(const Span* tcp, size_t ntcp, const HttpSpan* http, size_t nhttp,
              const char* interface, char* error, size_t error_size);

 private:
  void* tcp_plan_ = nullptr;       // SPIPlanPtr
  void* http_plan_ = nullptr;      // SPIPlanPtr
  void* batch_context_ = nullptr;  // MemoryContext, reset after every batch
};

}  // namespace ebpfc::pg
