// restart_backoff.h - how long a background worker that ended waits before it
// is started again (the supervisor's launcher, the launcher's captures, the
// hub's worker): 1 s, doubling up to 60 s while its runs keep failing; 1 s
// again after a run that lasted a minute (a healthy one that ended).
#pragma once

namespace ebpfc {

struct RestartBackoff {
  static constexpr long kMinMs = 1000;
  static constexpr long kMaxMs = 60000;
  // A run at least this long was healthy: the next wait starts over.
  static constexpr long kHealthyMs = 60000;
  // When no background worker slot was free: try again in 15 s.
  static constexpr long kNoSlotMs = kMaxMs / 4;

  // The wait after a failed run, given the previous wait (0: none yet).
  static long after_failure(long last_ms) {
    return last_ms <= 0 ? kMinMs : (last_ms > kMaxMs / 2 ? kMaxMs : last_ms * 2);
  }
  // The wait after a run ended; `ran_healthy`: it lasted kHealthyMs or more.
  static long after_exit(long last_ms, bool ran_healthy) {
    return ran_healthy ? kMinMs : after_failure(last_ms);
  }
};

}  // namespace ebpfc
