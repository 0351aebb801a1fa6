// The `node:` and `runtime:` configuration sections (docs/configuration.md).
// Ranges are enforced by load_config(); values read from a Config are in range.
#pragma once

#include <cstdint>
#include <string>

namespace edgert {

struct NodeSection {
  std::string id = "edgert-node";   // this node's id on the wire; not empty
  std::string data_dir = "./data";  // mailbox.db, registry.db; relative: to the config file's folder
  std::string log_level = "info";   // trace, debug, info, warning, error, critical, off
  double heartbeat_hz = 1.0;        // the local heartbeat (on_heartbeat); 0 disables it; else [0.001, 100]
  double heartbeat_s = 10;          // period of the heartbeat published over comms; 0 disables it; else [1, 86400]
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
