// storage_maintenance.h - the launcher's upkeep of the store: time
// partitions made ahead, retention and the size cap (whole partitions
// dropped), late rows trimmed, old pod history pruned, and the disk guard.
//
// The SQL that does the work is in the extension script (_storage_*); this
// decides when it runs, runs each step in a transaction of its own with a
// short lock_timeout (a drop that would make the capture's inserts queue
// behind it gives up and is retried later), and publishes what happened in
// shared memory for storage_status().
#pragma once

namespace ebpfc::pg {

// Called by the launcher on every pass of its loop (about once a second):
// measures the free disk space, runs the disk guard, and the rest of the
// maintenance when it is due.
void storage_tick();

// The settings may have changed (SIGHUP): run the full maintenance on the
// next tick.
void storage_settings_changed();

}  // namespace ebpfc::pg
