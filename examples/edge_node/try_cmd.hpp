// `edgert-node try SIGNATURE`: runs one plugin instance in a child process and feeds it
// records, frames from a file, or a capture plugin's output (docs/plugins.md, "Testing a
// plugin").
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace edgert_node {

class TryCommand {
 public:
  /// Registers the `try` subcommand and its options on `app`. Main thread, before parsing.
  explicit TryCommand(CLI::App& app);
  /// Whether `try` was given on the command line. After parsing.
  bool parsed() const { return cmd_->parsed(); }
  /// Runs it. Main thread, before any other thread exists (it forks). Blocks until the
  /// child ends. Returns the exit status: 0 clean, 1 the plugin returned errors, 2 bad
  /// usage or configuration, 3 the plugin crashed, called exit() or timed out.
  int run();

  struct Options {
    std::string signature, config, from, from_plugin, from_config, records_file, log_level;
    std::vector<std::string> records, paths;
    int count = 0;  // 0: every input (capture plugins: 5)
    int timeout_ms = 10000;
  };

 private:
  CLI::App* cmd_;
  Options o_;
};

}  // namespace edgert_node
