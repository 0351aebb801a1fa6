// Node configuration: a YAML file (see examples/edge_node/node.yaml) loaded into
// typed sections, with EDGERT_<SECTION>_<KEY> environment overrides. Every section,
// key, default and range is listed in docs/configuration.md.
//
// Errors name the place at fault, one per line, every error of the file at once (at
// most 20, then "... and N more"):
//   node.yaml:12: node.heartbeat_interval_ms: expected an integer, got 'fast'
//   node.yaml:23: streams[0].plugins[1].instances[0].threshold: expected a number
// Unknown sections, keys and EDGERT_ variables, keys given twice and out-of-range
// values are errors, so a typo never silently falls back to a default.
//
// Each module declares its own section: a struct in its header (node_config.hpp,
// plugins_config.hpp, mailbox_config.hpp, stream_config.hpp) and a key table in its
// source folder (src/<area>/<area>_config.cpp).
#pragma once

#include <edgert/comms_config.hpp>
#include <edgert/config_object.hpp>
#include <edgert/export.hpp>
#include <edgert/health_config.hpp>
#include <edgert/mailbox_config.hpp>
#include <edgert/node_config.hpp>
#include <edgert/plugins_config.hpp>
#include <edgert/status.hpp>
#include <edgert/stream_config.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

struct Config {
  NodeSection node;
  RuntimeSection runtime;
  PluginsSection plugins;
  MailboxSection mailbox;
  PipelineSection pipeline;
  CommsSection comms;
  HealthSection health;
  std::vector<StreamConfig> streams;
  std::string source;  // the file it came from, or the name given to parse_config
};

/// Environment variables by name. Only names starting with EDGERT_ are looked at:
/// each must be a configuration override or one of the variables edgert reads
/// elsewhere (EDGERT_PLUGIN_PATH); any other EDGERT_ name is an error.
using EnvVars = std::map<std::string, std::string>;

/// Any thread; never blocks. The process's EDGERT_* variables (a snapshot of environ;
/// do not call while another thread runs setenv).
[[nodiscard]] EDGERT_API EnvVars process_environment();

/// Any thread; blocks on file I/O. Reads `path`, resolves relative node.data_dir and
/// plugins.paths against the file's folder, then applies `env` overrides.
/// Errors: not_found / io_error (missing, unreadable, a directory) naming the file;
/// config_error listing every problem as "file:line: key: what".
[[nodiscard]] EDGERT_API Result<Config> load_config(const std::string& path,
                                                    const EnvVars& env = process_environment());

/// Any thread; never blocks. Parses YAML text; `source_name` prefixes error messages.
/// Relative paths are kept as written (relative to the current directory).
/// Errors: config_error as for load_config.
[[nodiscard]] EDGERT_API Result<Config> parse_config(std::string_view yaml, const std::string& source_name,
                                                     const EnvVars& env = process_environment());

}  // namespace edgert
