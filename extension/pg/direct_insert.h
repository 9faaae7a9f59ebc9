// direct_insert.h - rows written straight into a table through its access
// method, the way COPY FROM writes them: buffered, one table_multi_insert per
// thousand rows (one WAL record per heap page instead of one per row), then
// each row's index entries. No parse, plan or executor node per batch or row.
//
// Only for a table that needs nothing more of the executor: a plain table
// with no triggers, rules, row security, CHECK constraints, generated or
// identity columns, no column outside the given list that has a default or
// NOT NULL, and no exclusion or deferrable unique index. open() says no
// otherwise, and the caller writes through its SPI plan instead; so a user
// who partitions the spans table or puts a trigger on it loses nothing.
//
// One object serves every batch: its slots (made for a copy of the table's
// row type, in a memory context of its own) are kept from one transaction
// to the next, and made again only when the row type changes. Every method
// may raise a PostgreSQL error: call them inside pg_call. The object holds no
// C++ resources (a longjmp may skip it); an aborted transaction releases
// what open() opened, and the next open() starts afresh.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "nodes/execnodes.h"
#include "utils/rel.h"
}

namespace ebpfc::pg {

// A column a writer fills, by name; `nullable` columns may be given NULL.
struct ColumnSpec {
  const char* name;
  Oid type;
  bool nullable;
};

constexpr int kMaxInsertColumns = 32;

class DirectInsert {
 public:
  // Opens table `relid` for rows of `ncols` columns (values in the order of
  // `cols`). Returns false, having opened nothing, if the table needs the
  // executor (see above); *why then says what it has, for the log.
  bool open(Oid relid, const ColumnSpec* cols, int ncols, const char** why);
  // Where to build the datums of the rows to add: it is emptied each time
  // the buffered rows are written, so a batch's rows reuse the same memory.
  MemoryContext rows_context() const { return rows_context_; }
  // Adds a row: values[i] and nulls[i] for cols[i]. The datums must live
  // until the row is written: made in rows_context(), or longer-lived.
  void add(const Datum* values, const bool* nulls);
  // Writes the rows still buffered, then closes everything open() opened.
  void close();

 private:
  static constexpr int kBuffered = 1000;  // rows per table_multi_insert, as COPY
  void write_buffered();
  // Makes sure the kept slots fit rel's row type.
  void fit_slots(Relation rel);

  Relation rel_ = nullptr;
  ResultRelInfo* result_rel_ = nullptr;
  EState* estate_ = nullptr;
  CommandId cid_ = 0;
  int ncols_ = 0;
  int att_[kMaxInsertColumns] = {};  // attribute index of each column
  int buffered_ = 0;
  // Kept between transactions: the row type the slots were made for (a
  // copy), their memory context, and the slots made so far.
  MemoryContext slot_context_ = nullptr;
  MemoryContext rows_context_ = nullptr;
  TupleDesc row_type_ = nullptr;
  int created_ = 0;
  TupleTableSlot* slots_[kBuffered] = {};
};

}  // namespace ebpfc::pg
