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

/// Bounds of the node's start/stop machinery; each in milliseconds, [1, 600000].
struct RuntimeSection {
  std::int64_t stop_stage_warn_ms = 5000;      // a stop stage running longer is logged at WARNING
  std::int64_t task_timeout_ms = 2000;         // shutdown_loop waits this long for tasks
};

}  // namespace edgert
