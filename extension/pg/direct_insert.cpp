#include "pg/direct_insert.h"

#include "pg/lock_now.h"

#include <cstring>
#include <type_traits>

extern "C" {
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_index.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/partcache.h"
}

namespace ebpfc::pg {

// Held across PostgreSQL calls that may longjmp: nothing to destroy.
static_assert(std::is_trivially_destructible<DirectInsert>::value,
              "DirectInsert must be trivially destructible");

namespace {

// Why the executor is needed to write rel, or nullptr if it is not; on
// nullptr, att[i] is the attribute index of cols[i]. `routed`: rel is a leaf
// the rows were routed to through its parent (its partition constraint holds
// by construction, and its parent's statement triggers are the parent's).
const char* needs_executor(Relation rel, const ColumnSpec* cols, int ncols, int* att, bool routed) {
  const char kind = rel->rd_rel->relkind;
  if (kind != RELKIND_RELATION && (routed || kind != RELKIND_PARTITIONED_TABLE))
    return routed ? "a partition is not a plain table" : "it is not a plain or partitioned table";
  if (rel->rd_rel->relispartition && !routed)
    return "it is a partition of another table (its partition constraint must be checked)";
  if (rel->trigdesc != nullptr) return routed ? "a partition has triggers" : "it has triggers";
  if (rel->rd_rules != nullptr) return "it has rules";
  if (rel->rd_rel->relrowsecurity) return "it has row security";
  TupleDesc desc = RelationGetDescr(rel);
  if (desc->constr != nullptr && desc->constr->num_check > 0) return "it has CHECK constraints";
  if (desc->constr != nullptr && desc->constr->has_generated_stored)
    return "it has generated columns";
  bool listed[MaxHeapAttributeNumber] = {};
  for (int c = 0; c < ncols; c++) {
    att[c] = -1;
    for (int a = 0; a < desc->natts; a++) {
      Form_pg_attribute attr = TupleDescAttr(desc, a);
      if (!attr->attisdropped && strcmp(NameStr(attr->attname), cols[c].name) == 0) {
        att[c] = a;
        break;
      }
    }
    if (att[c] < 0) return "a column it should have is missing";
    Form_pg_attribute attr = TupleDescAttr(desc, att[c]);
    if (attr->atttypid != cols[c].type) return "a column's type was changed";
    if (cols[c].nullable && attr->attnotnull) return "a column was made NOT NULL";
    if (attr->attgenerated != '\0' || attr->attidentity != '\0')
      return "it has generated or identity columns";
    listed[att[c]] = true;
  }
  for (int a = 0; a < desc->natts; a++) {
    Form_pg_attribute attr = TupleDescAttr(desc, a);
    if (attr->attisdropped || listed[a]) continue;
    if (attr->atthasdef || attr->attnotnull || attr->attgenerated != '\0' ||
        attr->attidentity != '\0')
      return "a column added to it has a default or NOT NULL";
  }
  return nullptr;
}

// Why rri's indexes need the executor, or nullptr.
const char* indexes_need_executor(const ResultRelInfo* rri) {
  for (int i = 0; i < rri->ri_NumIndices; i++) {
    Form_pg_index index = rri->ri_IndexRelationDescs[i]->rd_index;
    if (index->indisexclusion) return "it has an exclusion constraint";
    if (!index->indimmediate) return "it has a deferrable unique constraint";
  }
  return nullptr;
}

// Why rows cannot be routed by partition key `key` on column att (0-based)
// of type `type`, or nullptr.
const char* unroutable(PartitionKey key, int att, Oid type) {
  if (key->strategy != PARTITION_STRATEGY_RANGE) return "it is not partitioned by range";
  if (key->partnatts != 1 || key->partattrs[0] != att + 1 || key->parttypid[0] != type)
    return "it is partitioned by something else than its time column";
  return nullptr;
}

}  // namespace

bool DirectInsert::open(Oid relid, const ColumnSpec* cols, int ncols, int route_col,
                        const char** why) {
  if (ncols > kMaxInsertColumns) elog(ERROR, "ebpf_capture: too many columns for a direct insert");
  lock_now(relid, RowExclusiveLock);
  Relation rel = table_open(relid, NoLock);
  int att[kMaxInsertColumns];
  *why = needs_executor(rel, cols, ncols, att, false);
  if (*why == nullptr && rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
    *why = unroutable(RelationGetPartitionKey(rel), att[route_col], cols[route_col].type);
  if (*why != nullptr) {
    table_close(rel, NoLock);  // the INSERT that follows takes the same lock
    return false;
  }
  if (slot_context_ == nullptr) {  // the first batch
    slot_context_ = AllocSetContextCreate(TopMemoryContext, "ebpf_capture direct insert slots",
                                          ALLOCSET_DEFAULT_SIZES);
    rows_context_ = AllocSetContextCreate(TopMemoryContext, "ebpf_capture direct insert rows",
                                          ALLOCSET_DEFAULT_SIZES);
  }
  cols_ = cols;
  ncols_ = ncols;
  root_ = rel;
  estate_ = CreateExecutorState();
  cid_ = GetCurrentCommandId(true);
  MemoryContextReset(rows_context_);  // what an aborted batch left
  if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE) {
    partkey_ = RelationGetPartitionKey(rel);
    // Detached partitions are left out, as an INSERT leaves them out. The
    // descriptor stays valid while the parent is open, even if a partition
    // is attached meanwhile (a row routed to the default partition then
    // fails that ATTACH's check, which the launcher retries).
    partdesc_ = RelationGetPartitionDesc(rel, true);
    return true;
  }
  if (!open_target(rel, why)) {
    close();
    return false;
  }
  return true;
}

int DirectInsert::leaves() const { return partdesc_ == nullptr ? 0 : partdesc_->nparts; }

int DirectInsert::route(Datum key) const {
  PartitionBoundInfo bounds = partdesc_->boundinfo;
  if (bounds == nullptr) return -1;  // no partition at all
  int part = -1;
  if (bounds->ndatums > 0) {
    bool equal = false;
    const int offset = partition_range_datum_bsearch(partkey_->partsupfunc, partkey_->partcollation,
                                                     bounds, 1, &key, &equal);
    // The bound at `offset` is <= key: the one after it is the upper bound
    // of the partition holding key, if there is one.
    part = bounds->indexes[offset + 1];
  }
  if (part < 0) part = bounds->default_index;
  if (part < 0 || !partdesc_->is_leaf[part]) return -1;
  return part;
}

Oid DirectInsert::leaf_oid(int leaf) const { return partdesc_->oids[leaf]; }

bool DirectInsert::begin_leaf(int leaf, const char** why) {
  lock_now(partdesc_->oids[leaf], RowExclusiveLock);
  Relation rel = table_open(partdesc_->oids[leaf], NoLock);
  if (!open_target(rel, why)) {
    table_close(rel, NoLock);
    return false;
  }
  return true;
}

void DirectInsert::end_leaf() {
  write_buffered();
  close_target();
  table_close(rel_, NoLock);
  rel_ = nullptr;
}

bool DirectInsert::open_target(Relation rel, const char** why) {
  const bool routed = rel != root_;
  *why = needs_executor(rel, cols_, ncols_, att_, routed);
  if (*why != nullptr) return false;
  ResultRelInfo* rri = makeNode(ResultRelInfo);
  InitResultRelInfo(rri, rel, 1, nullptr, 0);
  ExecOpenIndices(rri, false);
  *why = indexes_need_executor(rri);
  if (*why != nullptr) {
    ExecCloseIndices(rri);
    return false;
  }
  fit_slots(rel);
  rel_ = rel;
  result_rel_ = rri;
  buffered_ = 0;
  return true;
}

void DirectInsert::close_target() {
  for (int i = 0; i < created_; i++) ExecClearTuple(slots_[i]);  // frees their tuples
  ExecCloseIndices(result_rel_);
  result_rel_ = nullptr;
}

void DirectInsert::fit_slots(Relation rel) {
  TupleDesc desc = RelationGetDescr(rel);
  bool fits = row_type_ != nullptr && row_type_->natts == desc->natts;
  for (int a = 0; fits && a < desc->natts; a++) {
    Form_pg_attribute have = TupleDescAttr(row_type_, a);
    Form_pg_attribute want = TupleDescAttr(desc, a);
    fits = have->atttypid == want->atttypid && have->atttypmod == want->atttypmod &&
           have->attlen == want->attlen && have->attbyval == want->attbyval &&
           have->attalign == want->attalign && have->attisdropped == want->attisdropped;
  }
  if (fits) return;
  // A copy of the row type is not reference-counted: the slots may outlive
  // the transaction (and the relcache entry) they were made in.
  MemoryContextReset(slot_context_);
  created_ = 0;
  MemoryContext old = MemoryContextSwitchTo(slot_context_);
  row_type_ = CreateTupleDescCopy(desc);
  MemoryContextSwitchTo(old);
}

void DirectInsert::add(const Datum* values, const bool* nulls) {
  if (buffered_ == created_) {
    MemoryContext old = MemoryContextSwitchTo(slot_context_);
    slots_[created_++] = MakeSingleTupleTableSlot(row_type_, &TTSOpsHeapTuple);
    MemoryContextSwitchTo(old);
  }
  TupleTableSlot* slot = slots_[buffered_];
  ExecClearTuple(slot);
  // Columns outside the list (and dropped ones) are NULL.
  for (int a = 0; a < row_type_->natts; a++) slot->tts_isnull[a] = true;
  for (int c = 0; c < ncols_; c++) {
    slot->tts_values[att_[c]] = values[c];
    slot->tts_isnull[att_[c]] = nulls[c];
  }
  ExecStoreVirtualTuple(slot);
  if (++buffered_ == kBuffered) write_buffered();
}

void DirectInsert::write_buffered() {
  if (buffered_ == 0) return;
  table_multi_insert(rel_, slots_, buffered_, cid_, 0, nullptr);
  for (int i = 0; i < buffered_ && result_rel_->ri_NumIndices > 0; i++) {
    List* recheck =
        ExecInsertIndexTuples(result_rel_, slots_[i], estate_, false, false, nullptr, NIL);
    list_free(recheck);  // empty: no deferrable index (checked in open_target)
    ResetPerTupleExprContext(estate_);
  }
  buffered_ = 0;
  MemoryContextReset(rows_context_);  // the rows are in the table now
}

void DirectInsert::close() {
  if (rel_ != nullptr && rel_ == root_) {
    write_buffered();
    close_target();
    rel_ = nullptr;
  }
  FreeExecutorState(estate_);
  table_close(root_, NoLock);
  root_ = nullptr;
  partkey_ = nullptr;
  partdesc_ = nullptr;
  estate_ = nullptr;
  CommandCounterIncrement();
}

}  // namespace ebpfc::pg
