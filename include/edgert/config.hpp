// Node configuration: a YAML file (see examples/edge_node/node.yaml) loaded into
// typed structs, with EDGERT_<SECTION>_<KEY> environment overrides.
//
// Errors name the place at fault: "node.yaml:12: node.heartbeat_hz: expected a
// number, got 'fast'". Unknown sections and keys are errors with a did-you-mean
// suggestion, so a typo never silently falls back to a default.
//
// Adding a section: add a struct here and a member to Config, then describe its keys
// in src/config/config.cpp (one line per key).
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

struct NodeSection {
  std::string id = "edgert-node";   // this node's id on the wire
  std::string data_dir = "./data";  // where mailbox.db and registry.db live
  std::string log_level = "info";   // trace, debug, info, warning, error, critical, off
  double heartbeat_hz = 1.0;        // 0 disables the heartbeat
};

struct RuntimeSection {
  std::int64_t stage_timeout_ms = 5000;        // per stop stage, WARNING beyond
  std::int64_t task_timeout_ms = 2000;         // shutdown_loop waits this long for tasks
  std::int64_t worker_join_timeout_ms = 2000;  // BaseWorker::stop bound
  std::int64_t queue_capacity = 16;            // default DropHeadQueue capacity
};

struct PluginsSection {
  std::vector<std::string> paths;  // searched before EDGERT_PLUGIN_PATH and the defaults
  bool secured = false;            // load only what `allow` lists
  std::map<std::string, std::string> allow;  // signature -> SHA-256 (hex) of the .so
};

/// The node's mailbox (<node.data_dir>/mailbox.db); see docs/mailbox.md.
struct MailboxSection {
  std::string synchronous = "normal";       // normal: survives a process crash; full: a power loss
  std::int64_t max_messages = 0;            // outbox quota in messages; 0: unlimited
  std::int64_t max_bytes = 0;               // outbox quota in stored bytes; 0: unlimited
  std::string quota_policy = "reject_new";  // reject_new | evict_oldest
  std::int64_t max_payload_bytes = 1 << 20;  // larger payloads are refused
  std::int64_t wal_limit_bytes = 64 << 20;  // the WAL is reset past this (background checkpoints)
};

struct Config {
  NodeSection node;
  RuntimeSection runtime;
  PluginsSection plugins;
  MailboxSection mailbox;
  std::string source;  // the file it came from, or the name given to parse_config
};

/// Looks up an environment variable; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

/// Any thread; blocks on file I/O. Reads `path`, then applies environment overrides.
/// Errors: not_found/io_error naming the file, config_error naming file:line: key.
EDGERT_API Result<Config> load_config(const std::string& path, const EnvLookup& env = {});

/// Any thread; never blocks. Parses YAML text; `source_name` prefixes error messages.
EDGERT_API Result<Config> parse_config(std::string_view yaml, const std::string& source_name,
                                       const EnvLookup& env = {});

}  // namespace edgert
