// kube_time.h - the two clocks of the Kubernetes client, and RFC 3339 times.
//
// Timers (back-off, token reloads, watch durations) run on CLOCK_MONOTONIC;
// what the cache records about pods (first seen, deleted at, address
// ownership) is on the wall clock, in microseconds since the Unix epoch, the
// scale spans use (Span::start_unix_us).
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

namespace ebpfc::kube {

// "No time" / "open": the earliest and latest representable instants.
constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();
constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

struct Instant {
  uint64_t mono_ns;  // CLOCK_MONOTONIC
  int64_t unix_us;   // CLOCK_REALTIME
  static Instant now();
  Instant plus_ms(uint64_t ms) const {
    return Instant{mono_ns + ms * 1000000ull, unix_us + static_cast<int64_t>(ms) * 1000};
  }
};

// Parses an RFC 3339 time as the API writes it ("2024-05-01T12:00:00Z",
// optionally with a fraction and a numeric offset) to microseconds since
// the epoch. False on anything else.
bool parse_rfc3339(std::string_view text, int64_t* unix_us);

// Formats microseconds since the epoch as "2024-05-01T12:00:00.123456Z"
// (always 27 characters plus NUL; out must hold 32).
void format_rfc3339(int64_t unix_us, char out[32]);

}  // namespace ebpfc::kube
