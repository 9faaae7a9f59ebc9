#include "pg/shmem.h"

#include <signal.h>

#include <cstring>

#include "pg/guc.h"

namespace ebpfc::pg {

static SharedState* g_shared = nullptr;
static bool g_preloaded = false;
static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

const char* slot_state_name(SlotState s) {
  switch (s) {
    case SlotState::Starting:
      return "starting";
    case SlotState::Running:
      return "running";
    case SlotState::Stopping:
      return "stopping";
    case SlotState::Stopped:
      return "stopped";
    case SlotState::Failed:
      return "failed";
    case SlotState::Paused:
      return "paused";
    case SlotState::Free:
      break;
  }
  return "free";
}

SharedState* shared() { return g_shared; }
bool preloaded() { return g_preloaded; }

static Size shared_size() {
  return add_size(offsetof(SharedState, slots), mul_size(sizeof(CaptureSlot), g_max_captures));
}

static void request_shmem() {
  if (prev_shmem_request_hook) prev_shmem_request_hook();
  RequestAddinShmemSpace(shared_size());
}

static void startup_shmem() {
  if (prev_shmem_startup_hook) prev_shmem_startup_hook();
  bool found = false;
  LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
  g_shared = static_cast<SharedState*>(ShmemInitStruct("ebpf_capture", shared_size(), &found));
  if (!found) {
    std::memset(g_shared, 0, shared_size());
    SpinLockInit(&g_shared->mutex);
    g_shared->nslots = g_max_captures;
    for (int i = 0; i < g_max_captures; i++) {
      CaptureSlot* s = &g_shared->slots[i];
      for (auto& c : s->counters) pg_atomic_init_u64(&c, 0);
      for (auto& c : s->otlp) pg_atomic_init_u64(&c, 0);
    }
  }
  LWLockRelease(AddinShmemInitLock);
}

void install_shmem_hooks() {
  g_preloaded = true;
  prev_shmem_request_hook = shmem_request_hook;
  shmem_request_hook = request_shmem;
  prev_shmem_startup_hook = shmem_startup_hook;
  shmem_startup_hook = startup_shmem;
}

void reset_slot_counters(CaptureSlot* slot) {
  for (auto& c : slot->counters) pg_atomic_write_u64(&c, 0);
  for (auto& c : slot->otlp) pg_atomic_write_u64(&c, 0);
}

void set_slot_error(int slot, const char* message) {
  SharedState* sh = shared();
  if (!sh || slot < 0 || slot >= sh->nslots) return;
  SpinLockAcquire(&sh->mutex);
  strlcpy(sh->slots[slot].last_error, message, kErrorLen);
  SpinLockRelease(&sh->mutex);
}

void wake_process(pid_t pid) {
  if (pid > 0) kill(pid, SIGUSR1);
}

void wake_launcher() {
  SharedState* sh = shared();
  if (!sh) return;
  SpinLockAcquire(&sh->mutex);
  pid_t pid = sh->launcher_pid;
  SpinLockRelease(&sh->mutex);
  wake_process(pid);
}

}  // namespace ebpfc::pg
