// direct_insert.h - rows written straight into a table through its access
// method, the way COPY FROM writes them: buffered, one table_multi_insert per
// thousand rows (one WAL record per heap page instead of one per row), then
// each row's index entries. No parse, plan or executor node per batch or row.
//
// A table partitioned by range of one timestamptz column (spans, by
// start_time) is written the same way, leaf by leaf: route() says which leaf
// a row belongs to, from the parent's partition bounds; the caller groups the
// rows of each leaf and writes them between begin_leaf() and end_leaf().
//
// Only for a table (or leaf) that needs nothing more of the executor: a plain
// table with no triggers, rules, row security, CHECK constraints, generated
// or identity columns, no column outside the given list that has a default or
// NOT NULL, no exclusion or deferrable unique index, and that is not itself a
// partition of a table it was not routed through (its partition constraint
// would go unchecked). open() or begin_leaf() say no otherwise, and the
// caller writes those rows through its SPI plan instead; so a user who puts a
// trigger on the table or on one partition loses nothing.
//
// Locks are taken without waiting (lock_now.h): a table someone else holds
// raises lock_not_available, and the caller writes the batch later.
//
// One object serves every batch: its slots (made for a copy of the row type,
// in a memory context of its own) are kept from one transaction to the next,
// and made again only when the row type changes. Every method may raise a
// PostgreSQL error: call them inside pg_call. The object holds no C++
// resources (a longjmp may skip it); an aborted transaction releases what
// open() opened, and the next open() starts afresh.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "nodes/execnodes.h"
#include "partitioning/partdefs.h"
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
  // `cols`); cols[route_col] is the partition key when the table is
  // partitioned. Returns false, having opened nothing, if the table cannot
  // be written directly at all (see above); *why then says why, for the log.
  bool open(Oid relid, const ColumnSpec* cols, int ncols, int route_col, const char** why);

  // Whether open() found a partitioned table (rows go through route() and
  // begin_leaf()) or a plain one (rows go straight to add()).
  bool partitioned() const { return partdesc_ != nullptr; }
  // The leaf a row whose partition key is `key` belongs to (an index below
  // leaves()), or -1 if it has none or its partition is not a leaf table.
  int route(Datum key) const;
  int leaves() const;
  Oid leaf_oid(int leaf) const;
  // Opens leaf `leaf` for add(). Returns false, having opened nothing, if the
  // leaf needs the executor (*why says why): the caller writes its rows
  // through INSERT.
  bool begin_leaf(int leaf, const char** why);
  // Writes the leaf's buffered rows and closes it.
  void end_leaf();

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
  // Opens `rel` (locked) as the target of add(), if it needs no executor.
  bool open_target(Relation rel, const char** why);
  void close_target();
  void write_buffered();
  // Makes sure the kept slots fit rel's row type.
  void fit_slots(Relation rel);

  const ColumnSpec* cols_ = nullptr;
  int ncols_ = 0;
  Relation root_ = nullptr;           // the table open() opened
  PartitionKey partkey_ = nullptr;    // its key, when partitioned
  PartitionDesc partdesc_ = nullptr;  // its partitions, when partitioned
  Relation rel_ = nullptr;            // the table add() writes: root_ or a leaf
  ResultRelInfo* result_rel_ = nullptr;
  EState* estate_ = nullptr;
  CommandId cid_ = 0;
  int att_[kMaxInsertColumns] = {};  // attribute index of each column in rel_
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
