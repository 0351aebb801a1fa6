// The `node:` and `runtime:` configuration sections (docs/configuration.md).
// Ranges are enforced by load_config(); values read from a Config are in range.
#pragma once

#include <cstdint>
#include <string>

namespace edgert {

inline constexpr std::int64_t kMinHeartbeatIntervalMs = 10;        // faster floods the loop and the broker
inline constexpr std::int64_t kMaxHeartbeatIntervalMs = 86400000;  // one a day: slower looks dead

struct NodeSection {
  std::string id = "edgert-node";   // this node's id on the wire; not empty
  std::string data_dir = "./data";  // mailbox.db, registry.db; relative: to the config file's folder
  std::string log_level = "info";   // trace, debug, info, warning, error, critical, off
  /// The node's one heartbeat: every beat builds one document, handed to
  /// NodeOptions::on_heartbeat and published on {root}/{id}/heartbeat. 0 disables it;
  /// else [kMinHeartbeatIntervalMs, kMaxHeartbeatIntervalMs]. Replaces heartbeat_hz
  /// and heartbeat_s (the config loader refuses those, saying how to convert).
  std::int64_t heartbeat_interval_ms = 10000;
  /// true: the node keeps running whatever the broker does (results wait in the outbox);
  /// false: after comms.mqtt.max_retry_iters failed connection attempts in a row the node
  /// asks to be stopped (Node::shutdown_reason()).
  bool work_offline = true;
};

/// The component registry's sweeper (docs/registry.md, "Wiring into the Node").
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
};

/// Bounds of the node's start/stop machinery; each in milliseconds, [1, 600000].
struct RuntimeSection {
  std::int64_t stop_stage_warn_ms = 5000;      // a stop stage running longer is logged at WARNING
  std::int64_t task_timeout_ms = 2000;         // shutdown_loop waits this long for tasks
};

}  // namespace edgert
