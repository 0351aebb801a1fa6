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
  double heartbeat_hz = 1.0;        // 0 disables the heartbeat; else [0.001, 100]
};

/// Bounds of the node's start/stop machinery; each in milliseconds, [1, 600000].
struct RuntimeSection {
  std::int64_t stop_stage_warn_ms = 5000;      // a stop stage running longer is logged at WARNING
  std::int64_t task_timeout_ms = 2000;         // shutdown_loop waits this long for tasks
};

}  // namespace edgert
