// edgert-node: the example host, a thin CLI over edgert::Node. `run` loads a config,
// runs the node and stops it in order on SIGINT/SIGTERM or after --duration.
#include "progress.hpp"
#include "try_cmd.hpp"

#include <edgert/edgert.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <filesystem>
#include <ctime>
#include <string>
#include <vector>

namespace {

// Signals are blocked in every thread (the mask is inherited) and taken
// synchronously here, so no handler runs in an arbitrary thread.
sigset_t blocked_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Writes `text` to `path` atomically (a temporary file renamed over it), so a reader
// never sees half a snapshot.
bool write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !written) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

struct RunOptions {
  double duration_s = 0;
  std::string stats_json;
  bool exit_when_done = false;
  bool progress = false;
};

int run_node(const std::string& config_path, const RunOptions& run) {
  const double duration_s = run.duration_s;
  const std::string& stats_json = run.stats_json;
  // Signals are blocked before anything starts a thread (plugin constructors
  // included), so every thread inherits the mask and only sigtimedwait below sees them.
  const sigset_t sigs = blocked_signals();
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto cfg = edgert::load_config(config_path);
  if (!cfg) {
    std::fprintf(stderr, "edgert-node: %s\n", cfg.status().message().c_str());
    return 2;
  }
  if (auto st = edgert::set_log_level(cfg->node.log_level); !st.ok()) {
    std::fprintf(stderr, "edgert-node: %s\n", st.message().c_str());
    return 2;
  }
  const edgert::Config config = cfg.value();
  edgert::NodeOptions options;
  if (!run.progress) options.on_heartbeat = [](const edgert::NodeHeartbeat& hb) {
    std::printf("heartbeat node=%s seq=%llu uptime_ms=%lld\n", hb.node_id.c_str(),
                static_cast<unsigned long long>(hb.tick.seq),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(hb.tick.uptime).count()));
    std::fflush(stdout);
  };
  auto created = edgert::Node::create(std::move(cfg).value(), std::move(options));
  if (!created) {
    std::fprintf(stderr, "edgert-node: %s\n", created.status().message().c_str());
    return 2;
  }
  auto node = std::move(created).value();
  if (auto st = node->start(); !st.ok()) {
    std::fprintf(stderr, "edgert-node: %s\n", st.message().c_str());
    return 1;
  }

  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(duration_s);
  edgert_node::ProgressPrinter progress(stdout, 5.0);
  int sig = 0;
  bool done = false;
  std::string shutdown;  // the node asked to be stopped (node.work_offline: false)
  while (duration_s <= 0 || std::chrono::steady_clock::now() < deadline) {
    timespec tick{0, 100 * 1000 * 1000};
    sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig > 0) break;
    if (run.progress) {
      progress.update(node->stats_json(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (run.exit_when_done && node->pipeline_done()) {
      done = true;
      break;
    }
    if (shutdown = node->shutdown_reason(); !shutdown.empty()) break;
  }
  std::fprintf(stderr, "edgert-node: %s, stopping\n",
               sig == SIGINT    ? "SIGINT"
               : sig == SIGTERM ? "SIGTERM"
               : done           ? "every stream ended and every queue drained"
               : !shutdown.empty() ? shutdown.c_str()
                                : "duration reached");
  node->stop();
  if (run.progress) {
    std::fputs(edgert_node::final_summary(node->stats_json(), config).c_str(), stdout);
    std::fflush(stdout);
  }
  // --exit-when-done tells a script whether the job went through: 1 when a stream
  // failed (gave up, or could not open) or an instance ended quarantined or stuck.
  int failed = 0;
  if (done) {
    const auto stats = nlohmann::json::parse(node->stats_json(), nullptr, false);
    if (stats.is_object()) {
      const auto streams = stats.value("streams", nlohmann::json::object());
      const auto instances = stats.value("instances", nlohmann::json::object());
      for (const auto& [name, f] : streams.items()) {
        if (f.value("state", "") == "failed") {
          std::fprintf(stderr, "edgert-node: stream '%s' failed (see the log)\n", name.c_str());
          ++failed;
        }
      }
      for (const auto& [name, f] : instances.items()) {
        const auto state = f.value("state", "");
        if (state == "quarantined" || state == "stuck") {
          std::fprintf(stderr, "edgert-node: instance %s ended %s\n", name.c_str(), state.c_str());
          ++failed;
        }
      }
    }
  }
  if (!stats_json.empty()) {
    if (!write_file_atomically(stats_json, node->stats_json() + "\n")) {
      std::fprintf(stderr, "edgert-node: cannot write --stats-json %s: %s\n", stats_json.c_str(), std::strerror(errno));
      return 1;
    }
  }
  return failed > 0 || !shutdown.empty() ? 1 : 0;
}

edgert::PluginLoaderOptions loader_options(const edgert::Config& cfg) {
  edgert::PluginLoaderOptions o;
  o.search_paths = cfg.plugins.paths;
  o.secured = cfg.plugins.secured;
  o.allow = cfg.plugins.allow;
  return o;
}

// `plugins --schema SIGNATURE`: the plugin's config_schema as a table, one row per key
// (dot paths for nested keys). Exit 2 with one line when no scanned file has it.
int print_schema(const std::vector<edgert::PluginScan>& scans, const std::string& signature,
                 const std::vector<std::string>& targets) {
  const edgert::PluginScan* found = nullptr;
  for (const auto& s : scans) {
    if (s.accepted && s.info.signature == signature) found = &s;
  }
  if (found == nullptr) {
    std::string where;
    for (const auto& t : targets) where += (where.empty() ? "" : ", ") + t;
    std::fprintf(stderr, "edgert-node: no plugin '%s' in %s\n", signature.c_str(), where.empty() ? "(no search path)" : where.c_str());
    return 2;
  }
  auto rows = edgert::describe_config_schema(found->info.config_schema);
  if (!rows) {
    std::fprintf(stderr, "edgert-node: plugin '%s': %s\n", signature.c_str(), rows.status().message().c_str());
    return 2;
  }
  if (rows->empty()) {
    std::printf("plugin '%s' (%s) declares no config keys%s\n", signature.c_str(), found->path.c_str(),
                found->info.config_schema.empty() ? " (no config_schema: any JSON object is passed through)" : "");
    return 0;
  }
  auto line = [](const std::string& key, const std::string& type, const std::string& def, const std::string& range,
                 const std::string& description) {
    char buf[1024];
    std::snprintf(buf, sizeof buf, "%-20s %-8s %-14s %-20s %s", key.c_str(), type.c_str(), def.c_str(), range.c_str(),
                  description.c_str());
    std::string text = buf;
    text.erase(text.find_last_not_of(' ') + 1);
    std::printf("%s\n", text.c_str());
  };
  line("KEY", "TYPE", "DEFAULT", "RANGE/ENUM", "DESCRIPTION");
  for (const auto& r : rows.value()) line(r.key, r.type, r.default_json.empty() ? "-" : r.default_json, r.range, r.description);
  std::fflush(stdout);
  return 0;
}

// Lists plugins; every file is loaded in a child process so a broken one cannot
// crash the lister. Exit 0 only if every file given (or found) was accepted or
// shadowed (its signature comes from an earlier folder).
// With `schema_of`, prints that plugin's config_schema instead (print_schema).
int list_plugins(std::vector<std::string> targets, const std::string& config_path, const std::string& schema_of) {
  edgert::Config cfg;
  if (!config_path.empty()) {
    auto loaded = edgert::load_config(config_path);
    if (!loaded) {
      std::fprintf(stderr, "edgert-node: %s\n", loaded.status().message().c_str());
      return 2;
    }
    cfg = std::move(loaded).value();
  }
  const auto options = loader_options(cfg);
  if (targets.empty()) {  // the search paths that exist
    for (const auto& dir : edgert::PluginLoader(options).search_paths()) {
      std::error_code ec;
      if (std::filesystem::is_directory(dir, ec)) targets.push_back(dir);
    }
  }
  const auto scans = edgert::scan_plugins_isolated(targets, options);
  if (!schema_of.empty()) return print_schema(scans, schema_of, targets);
  int refused = 0;
  if (!scans.empty()) {
    std::printf("%-24s %-9s %-9s %-4s %s\n", "SIGNATURE", "KIND", "VERSION", "ABI", "FILE");
  }
  for (const auto& s : scans) {
    if (s.accepted) {
      const std::string abi = std::to_string(s.info.abi_version >> 16) + "." + std::to_string(s.info.abi_version & 0xFFFF);
      std::printf("%-24s %-9s %-9s %-4s %s\n", s.info.signature.c_str(), edgert::to_string(s.info.kind),
                  s.info.plugin_version.c_str(), abi.c_str(), s.path.c_str());
    } else if (s.shadowed) {  // an earlier folder provides it: not loaded, not an error
      std::printf("SHADOWED %s: %s\n", s.path.c_str(), s.reason.c_str());
    } else {
      ++refused;
      std::printf("REFUSED %s: %s\n", s.path.c_str(), s.reason.c_str());
    }
  }
  if (scans.empty()) {
    std::string where;
    for (const auto& t : targets) where += (where.empty() ? "" : ", ") + t;
    std::printf("no plugin files found in: %s\n", where.c_str());
  }
  std::fflush(stdout);
  return refused == 0 ? 0 : 1;
}

// `edgert-node mailbox check|stats|backup FILE|restore FILE (--data-dir DIR | --config
// node.yaml)` (docs/mailbox.md, "The mailbox command"). check, stats and backup use
// read-only connections and are safe beside a running node; restore takes the data_dir
// lock, so it refuses while a node runs. Exit 0 when done; any error is one line on
// stderr and exit 2.
int mailbox_failed(const std::string& message) {
  std::fprintf(stderr, "edgert-node: mailbox: %s\n", message.c_str());
  return 2;
}

int mailbox_command(const std::string& action, std::string data_dir, const std::string& config_path,
                    const std::string& file) {
  if (!config_path.empty()) {
    if (!data_dir.empty()) return mailbox_failed("give --data-dir or --config, not both");
    auto cfg = edgert::load_config(config_path);
    if (!cfg) return mailbox_failed(cfg.status().message());
    data_dir = cfg->node.data_dir;
  }
  if (data_dir.empty()) data_dir = "./data";
  const std::string db = (std::filesystem::path(data_dir) / "mailbox.db").string();
  if (action == "check") {
    const auto st = edgert::Mailbox::check(data_dir);
    if (!st.ok()) return mailbox_failed(st.message());
    std::printf("ok\n");
    return 0;
  }
  if (action == "backup" || action == "restore") {
    if (file.empty()) return mailbox_failed(action + " needs a " + (action == "backup" ? "DEST" : "BACKUP") + " file");
  }
  if (action == "backup") {
    const auto st = edgert::Mailbox::backup(data_dir, file);
    if (!st.ok()) return mailbox_failed(st.message());
    std::printf("backed up %s to %s\n", db.c_str(), file.c_str());
    return 0;
  }
  if (action == "restore") {
    const auto aside = edgert::Mailbox::restore(data_dir, file);
    if (!aside.ok()) return mailbox_failed(aside.status().message());
    std::printf("restored %s from %s; %s\n", db.c_str(), file.c_str(),
                aside.value().empty() ? "there was no previous mailbox"
                                      : ("the previous one was moved to " + aside.value()).c_str());
    return 0;
  }
  // stats: a read-only connection; WAL lets it share the file with a running node.
  auto st = edgert::Mailbox::read_stats(data_dir);
  if (!st.ok()) return mailbox_failed(st.status().message());
  const auto& s = st.value();
  nlohmann::ordered_json j;
  j["path"] = db;
  j["outbox_rows"] = s.outbox_rows;
  j["outbox_bytes"] = s.outbox_bytes;
  j["inbox_rows"] = s.inbox_rows;
  j["inbox_bytes"] = s.inbox_bytes;
  j["inbox_unacked"] = s.inbox_unacked;
  j["oldest_pending_age_ms"] = s.oldest_pending_age_ms;
  // A data_dir need not be UTF-8: replace what is not rather than throw.
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

// `edgert-node status (--data-dir DIR | --config node.yaml) [--json]` (docs/operations.md,
// "Health and restarts: `edgert-node status`"): reads <data_dir>/registry.db read-only,
// without the data_dir lock, so it works beside a running node. Exit 0 running and every
// component ready, 1 running with some not ready, 2 not running, 3 no registry.db or it
// cannot be read (one line on stderr naming the file).
int status_failed(const std::string& message) {
  std::fprintf(stderr, "edgert-node: status: %s\n", message.c_str());
  return 3;
}

int status_command(std::string data_dir, const std::string& config_path, bool json) {
  if (!config_path.empty()) {
    if (!data_dir.empty()) return status_failed("give --data-dir or --config, not both");
    auto cfg = edgert::load_config(config_path);
    if (!cfg) return status_failed(cfg.status().message());
    data_dir = cfg->node.data_dir;
  }
  if (data_dir.empty()) data_dir = "./data";
  auto st = edgert::read_node_status(data_dir);
  if (!st.ok()) return status_failed(st.status().message());
  const std::string text = json ? st->to_json() + "\n" : st->to_table();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return st->exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgert-node: example host for the edgert edge runtime"};
  app.set_version_flag("--version", std::string("edgert-node ") + edgert::version_string());
  app.require_subcommand(1);

  std::string config_path;
  RunOptions run_opts;
  double& duration = run_opts.duration_s;
  std::string& stats_json = run_opts.stats_json;
  auto* run = app.add_subcommand("run", "run a node from a YAML configuration");
  run->add_option("config", config_path, "configuration file (YAML)")->required();
  run->add_option("--duration", duration, "stop after this many seconds (default: until SIGINT/SIGTERM)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            double v = 0;
            try {
              std::size_t used = 0;
              v = std::stod(text, &used);
              if (used != text.size()) return "not a number: " + text;
            } catch (const std::exception&) {
              return "not a number: " + text;
            }
            // nan and inf would never stop (or overflow the deadline); a year is plenty.
            if (!std::isfinite(v) || v < 0 || v > 366.0 * 24 * 3600) {
              return "must be a finite number of seconds in [0, 31622400], got " + text;
            }
            return {};
          },
          "SECONDS"));
  run->add_option("--stats-json", stats_json,
                  "write the metrics snapshot with the streams/instances/mailbox figures (JSON) to this file at exit");
  run->add_flag("--exit-when-done", run_opts.exit_when_done,
                "exit 0 once every finite stream has ended and every queue has drained");
  run->add_flag("--progress", run_opts.progress,
                "show live figures (redrawn in place on a terminal, every 5 s otherwise) and a summary at exit");

  std::vector<std::string> plugin_targets;
  std::string plugins_config;
  auto* plugins = app.add_subcommand("plugins", "list plugins and explain the ones that are refused");
  plugins->add_option("targets", plugin_targets, "plugin files or directories (default: the search paths)");
  plugins->add_option("--config", plugins_config, "node configuration (plugins.paths, secured mode)");
  std::string plugins_schema;
  plugins->add_option("--schema", plugins_schema, "print this plugin's configuration keys as a table")
      ->option_text("SIGNATURE");

  edgert_node::TryCommand tryc(app);  // examples/edge_node/try_cmd.cpp

  std::string mb_action, mb_file, mb_dir, mb_config;
  auto* mailbox = app.add_subcommand("mailbox", "inspect, back up or restore a node's mailbox");
  mailbox->add_option("action", mb_action,
                      "check | stats | backup DEST | restore BACKUP (check, stats and backup are safe while the "
                      "node runs; restore refuses while it runs)")
      ->required()
      ->check(CLI::IsMember({"check", "stats", "backup", "restore"}));
  mailbox->add_option("file", mb_file, "backup: the file to write; restore: the backup to restore");
  mailbox->add_option("--data-dir", mb_dir, "the node's data_dir (default ./data)");
  mailbox->add_option("--config", mb_config, "read the data_dir from this node configuration (node.data_dir)");

  std::string st_dir, st_config;
  bool st_json = false;
  auto* status = app.add_subcommand("status", "show a node's components and mailbox, read from its data_dir (safe "
                                              "while the node runs); exit 0 all ready, 1 some not ready, 2 not "
                                              "running, 3 no readable registry.db");
  status->add_option("--data-dir", st_dir, "the node's data_dir (default ./data)");
  status->add_option("--config", st_config, "read the data_dir from this node configuration (node.data_dir)");
  status->add_flag("--json", st_json, "one JSON document: {\"node\", \"components\", \"mailbox\"}");

  CLI11_PARSE(app, argc, argv);
  if (status->parsed()) {
    try {
      return status_command(st_dir, st_config, st_json);
    } catch (const std::exception& e) {  // a last resort: the command never aborts
      return status_failed(e.what());
    }
  }
  if (mailbox->parsed()) {
    try {
      return mailbox_command(mb_action, mb_dir, mb_config, mb_file);
    } catch (const std::exception& e) {  // a last resort: the command never aborts
      return mailbox_failed(e.what());
    }
  }
  if (tryc.parsed()) return tryc.run();
  if (run->parsed()) return run_node(config_path, run_opts);
  if (plugins->parsed()) return list_plugins(plugin_targets, plugins_config, plugins_schema);
  return 0;
}
