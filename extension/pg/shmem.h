// shmem.h - capture slots in shared memory: what every backend can see of
// each capture (state, counters, last error). Plain data only: no pointers,
// no file descriptors.
#pragma once

#include <net/if.h>

#include "pg/pg_headers.h"

namespace ebpfc::pg {

enum class SlotState : int { Free = 0, Starting, Running, Stopping, Stopped, Failed };

const char* slot_state_name(SlotState s);

constexpr int kErrorLen = 512;

struct CaptureSlot {
  // Guarded by SharedState::mutex.
  bool in_use;
  char interface[IFNAMSIZ];
  SlotState state;
  pid_t pid;
  TimestampTz started_at;
  bool stop_requested;
  char last_error[kErrorLen];
  // Written by the slot's worker only; read by anyone.
  pg_atomic_uint64 packets;
  pg_atomic_uint64 bytes;
  pg_atomic_uint64 spans_written;
  pg_atomic_uint64 spans_dropped;
  pg_atomic_uint64 events_dropped;
  pg_atomic_uint64 kernel_drops;
  pg_atomic_uint64 flow_table_full;
  pg_atomic_uint64 flows_tracked;
  pg_atomic_uint64 malformed;
  pg_atomic_uint64 payload_dropped;   // payload heads lost: ring buffer full
  pg_atomic_uint64 http_connections;  // HTTP connections followed now
  pg_atomic_uint64 http_bound_hits;   // parser and pool bounds hit (see README)
};

struct SharedState {
  slock_t mutex;
  pid_t launcher_pid;
  int nslots;
  CaptureSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

// The shared state, or nullptr when the library was not preloaded.
SharedState* shared();
bool preloaded();

void install_shmem_hooks();

// Copies the slot's error text in under the mutex.
void set_slot_error(int slot, const char* message);

// Wakes a process of ours (launcher or worker) by pid; its SIGUSR1 handler
// sets its latch.
void wake_process(pid_t pid);
void wake_launcher();

}  // namespace ebpfc::pg
