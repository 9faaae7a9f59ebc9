// slot_links.h - where a capture is attached, in its slot in shared memory
// (capture_status().mode, pattern, attached, failed, skipped): written by the
// worker, read by _capture_slots().
#pragma once

#include "capture/packet_capture.h"
#include "pg/shmem.h"

namespace ebpfc::pg {

// Copies the capture's links into its slot (lists cut at their room, the
// last entry then saying how many did not fit).
void publish_slot_links(int slot, const CaptureLinks& links);

// Empties the slot's links: the worker is gone, nothing is attached.
void clear_slot_links(int slot);

// The slot's links as the five Datums of _capture_slots' last columns (mode
// and pattern NULL until a worker published them; the lists text[] arrays).
void slot_links_datums(const SlotLinks& links, Datum* values, bool* nulls);

}  // namespace ebpfc::pg
