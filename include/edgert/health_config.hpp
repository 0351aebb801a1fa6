// The `health:` configuration section (docs/configuration.md, "health"): the component
// registry's sweep (docs/registry.md, "Wiring into the Node") and the supervisor's
// restart policies (docs/operations.md, "Health and restarts", "The supervisor").
// Ranges are enforced by load_config(); values read from a Config are in range.
#pragma once

#include <edgert/restart_config.hpp>

#include <cstdint>

namespace edgert {

inline constexpr std::int64_t kMinSweepIntervalMs = 100;     // below this the loop does little else
inline constexpr std::int64_t kMaxSweepIntervalMs = 600000;  // 10 minutes
inline constexpr std::int64_t kMaxStaleAfterMisses = 1000;
/// sweep_interval_ms x stale_after_misses at least this: the slowest loops (the comms
/// thread) beat every 250 ms, so a shorter window would read them stalled while healthy.
inline constexpr std::int64_t kMinStaleWindowMs = 500;

struct HealthSection {
  /// How often the sweep runs, and the period every component is expected to beat at
  /// (a paced capture: its frame interval when longer). [kMinSweepIntervalMs, kMaxSweepIntervalMs].
  std::int64_t sweep_interval_ms = 1000;
  /// Missed periods before a component reads `stalled` (no heartbeat) or `blocked`
  /// (heartbeats, no progress). [1, kMaxStaleAfterMisses].
  std::int64_t stale_after_misses = 3;
  RestartSection restart;  ///< `health.restart`: the supervisor's policies
};

}  // namespace edgert
