// shmem.h - capture slots in shared memory: what every backend can see of
// each capture (state, counters, last error). Plain data only: no pointers,
// no file descriptors.
#pragma once

#include <net/if.h>

#include "pg/pg_headers.h"

namespace ebpfc::pg {

enum class SlotState : int { Free = 0, Starting, Running, Stopping, Stopped, Failed, Paused };

const char* slot_state_name(SlotState s);

constexpr int kErrorLen = 512;

// The most captures ebpf_capture.max_captures may ask for: the launcher keeps
// a fixed array of this many slot controls.
constexpr int kMaxCaptures = 64;

// A capture's counters, in the order capture_status() shows them.
enum SlotCounter : int {
  kPackets,
  kBytes,
  kSpansWritten,
  kSpansDropped,
  kEventsDropped,
  kKernelDrops,
  kFlowTableFull,
  kFlowsTracked,
  kPayloadDropped,
  kHttpConnections,  // followed now
  kHttpBoundHits,    // parser and pool bounds hit
  kPodsKnown,        // pods in the Kubernetes cache
  kPorts,            // bridge ports captured at now (0: one socket on the interface)
  kPortErrors,       // bridge ports whose socket could not be opened
  // Columns added after 0.1 come after capture_status()'s text columns (see
  // ebpf_capture_slots): kFirstLaterCounter is the first of them.
  kNotHttpConnections,  // connections dropped as not HTTP after their first bytes
  kPgConnections,       // connections the filter took for PostgreSQL
  kPgSpans,             // PostgreSQL spans made
  kPgEncrypted,         // PostgreSQL sessions that went encrypted (TLS, GSS): not parsed
  kPgMidStream,         // PostgreSQL connections first seen without their start
  kPgResyncs,           // ... a direction found message boundaries again
  kPgLost,              // requests given up unanswered, connections given up or not followed
  kRedisConnections,    // connections the filter took for Redis
  kRedisSpans,          // Redis spans made
  kRedisMidStream,      // Redis connections first seen without their start
  kRedisResyncs,        // ... a direction found value boundaries again
  kRedisPushMode,       // Redis connections that went to push mode (SUBSCRIBE, MONITOR)
  kRedisLost,           // commands given up unanswered, connections given up or not followed
  kSlotCounterCount
};
constexpr int kFirstLaterCounter = kNotHttpConnections;

// The OTLP exporter's counters (pg/otlp_export.cpp), in the order
// _otlp_slots() shows them.
enum OtlpCounter : int {
  kOtlpExported,     // spans the endpoint accepted
  kOtlpFailed,       // spans it refused for good
  kOtlpDropped,      // spans dropped from the outbox at its size bound
  kOtlpQueued,       // spans in the outbox, waiting to be sent
  kOtlpQueuedBytes,  // their request bodies' bytes
  kOtlpRequests,     // requests made (retries included)
  kOtlpRetries,
  kOtlpCpuUs,  // the worker's CPU time spent exporting (encoding, outbox, sending)
  kOtlpCounterCount
};

// Where a capture is attached (capture_status().mode, pattern, attached,
// failed, skipped), written by its worker (pg/slot_links.h). Lists are
// names or "name (why)" entries separated by '\n'.
struct SlotLinks {
  char mode[16];
  char pattern[IFNAMSIZ];
  char attached[4096];
  char failed[1024];
  char skipped[2048];
};

struct CaptureSlot {
  // Guarded by SharedState::mutex.
  bool in_use;
  char interface[IFNAMSIZ];
  SlotState state;
  pid_t pid;
  TimestampTz started_at;
  bool stop_requested;
  char last_error[kErrorLen];
  char metadata_state[16];   // Kubernetes metadata: disabled/syncing/synced/stale/failing
  char metadata_error[256];  // its last error
  // Written by the slot's worker only; read by anyone.
  pg_atomic_uint64 counters[kSlotCounterCount];
  // The OTLP exporter: state and last error guarded by the mutex, counters
  // written by the worker only.
  char otlp_state[16];
  char otlp_error[kErrorLen];
  pg_atomic_uint64 otlp[kOtlpCounterCount];
  SlotLinks links;  // guarded by SharedState::mutex
};

// What the launcher's storage maintenance did last, and the disk guard's
// state (written by the launcher, read by workers and storage_status()).
struct StorageState {
  // Guarded by SharedState::mutex.
  TimestampTz last_run;
  TimestampTz last_error_at;
  char last_error[kErrorLen];
  char last_dropped[NAMEDATALEN * 2 + 4];  // schema.table of the last partition dropped
  uint64 partitions_made;
  uint64 partitions_dropped;
  uint64 bytes_dropped;
  uint64 late_rows_deleted;
  uint64 disk_free_bytes;
  uint64 disk_total_bytes;
  uint64 min_free_disk_bytes;
  bool disk_low;
  bool writes_paused;  // workers drop spans instead of writing them
};

struct SharedState {
  slock_t mutex;
  pid_t launcher_pid;
  StorageState storage;
  int nslots;
  CaptureSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

// The shared state, or nullptr when the library was not preloaded.
SharedState* shared();
bool preloaded();

void install_shmem_hooks();

void reset_slot_counters(CaptureSlot* slot);

// Copies the slot's error text in under the mutex.
void set_slot_error(int slot, const char* message);

// Wakes a process of ours (launcher or worker) by pid; its SIGUSR1 handler
// sets its latch.
void wake_process(pid_t pid);
void wake_launcher();

}  // namespace ebpfc::pg
