// lock_now.h - table locks the capture worker takes without waiting.
//
// The worker writes with interrupts held (a SIGTERM must not cut a flush
// short: the spans it holds would be lost), and a lock wait cannot time out
// while interrupts are held. So it never waits for a table lock: it asks
// for it, and if someone holds a conflicting one (VACUUM FULL, a partition
// being dropped, a long service_map_refresh) it raises lock_not_available at
// once, and what it was writing is written later.
#pragma once

#include "pg/pg_headers.h"

extern "C" {
#include "catalog/pg_inherits.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
}

namespace ebpfc::pg {

// Takes `mode` on relation `relid` if it can be had now; else raises
// lock_not_available naming the table.
inline void lock_now(Oid relid, LOCKMODE mode) {
  if (ConditionalLockRelationOid(relid, mode)) return;
  const char* name = get_rel_name(relid);
  ereport(ERROR, (errcode(ERRCODE_LOCK_NOT_AVAILABLE),
                  errmsg("table \"%s\" is locked by another session", name ? name : "?")));
}

// The same for a table and, if it is partitioned, every partition under it.
inline void lock_tree_now(Oid relid, LOCKMODE mode) {
  lock_now(relid, mode);
  if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE) return;
  List* all = find_all_inheritors(relid, NoLock, nullptr);
  ListCell* cell;
  foreach (cell, all) {
    const Oid child = lfirst_oid(cell);
    if (child != relid) lock_now(child, mode);
  }
  list_free(all);
}

}  // namespace ebpfc::pg
