// edgert-node: the example host. Loads a config, runs a SystemRuntime and stops it
// in order on SIGINT/SIGTERM or after --duration.
#include <edgert/edgert.hpp>

#include <CLI/CLI.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
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

int run_node(const std::string& config_path, double duration_s) {
  auto cfg = edgert::load_config(config_path);
  if (!cfg) {
    std::fprintf(stderr, "edgert-node: %s\n", cfg.status().message().c_str());
    return 2;
  }
  if (auto st = edgert::set_log_level(cfg->node.log_level); !st.ok()) {
    std::fprintf(stderr, "edgert-node: %s\n", st.message().c_str());
    return 2;
  }

  const sigset_t sigs = blocked_signals();
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  edgert::RuntimeOptions opts;
  opts.heartbeat_hz = cfg->node.heartbeat_hz;
  opts.stage_timeout = std::chrono::milliseconds(cfg->runtime.stage_timeout_ms);
  opts.task_timeout = std::chrono::milliseconds(cfg->runtime.task_timeout_ms);
  const std::string node_id = cfg->node.id;
  opts.heartbeat_sink = [node_id](const edgert::HeartbeatTick& t) {
    std::printf("heartbeat node=%s seq=%llu uptime_ms=%lld\n", node_id.c_str(),
                static_cast<unsigned long long>(t.seq),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t.uptime).count()));
    std::fflush(stdout);
  };
  edgert::SystemRuntime runtime(opts);
  if (auto st = runtime.start(); !st.ok()) {
    std::fprintf(stderr, "edgert-node: %s\n", st.message().c_str());
    return 1;
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(duration_s);
  int sig = 0;
  while (duration_s <= 0 || std::chrono::steady_clock::now() < deadline) {
    timespec tick{0, 100 * 1000 * 1000};
    sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig > 0) break;
  }
  std::fprintf(stderr, "edgert-node: %s, stopping\n",
               sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "duration reached");
  runtime.stop();
  return 0;
}

edgert::PluginLoaderOptions loader_options(const edgert::Config& cfg) {
  edgert::PluginLoaderOptions o;
  o.search_paths = cfg.plugins.paths;
  o.secured = cfg.plugins.secured;
  o.allow = cfg.plugins.allow;
  return o;
}

// Lists plugins; every file is loaded in a child process so a broken one cannot
// crash the lister. Exit 0 only if every file given (or found) was accepted.
int list_plugins(std::vector<std::string> targets, const std::string& config_path) {
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
  int refused = 0;
  if (!scans.empty()) {
    std::printf("%-24s %-9s %-9s %-4s %s\n", "SIGNATURE", "KIND", "VERSION", "ABI", "FILE");
  }
  for (const auto& s : scans) {
    if (s.accepted) {
      const std::string abi = std::to_string(s.info.abi_version >> 16) + "." + std::to_string(s.info.abi_version & 0xFFFF);
      std::printf("%-24s %-9s %-9s %-4s %s\n", s.info.signature.c_str(), edgert::to_string(s.info.kind),
                  s.info.plugin_version.c_str(), abi.c_str(), s.path.c_str());
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgert-node: example host for the edgert edge runtime"};
  app.set_version_flag("--version", std::string("edgert-node ") + edgert::version_string());
  app.require_subcommand(1);

  std::string config_path;
  double duration = 0;
  auto* run = app.add_subcommand("run", "run a node from a YAML configuration");
  run->add_option("config", config_path, "configuration file (YAML)")->required();
  run->add_option("--duration", duration, "stop after this many seconds (default: until SIGINT/SIGTERM)")
      ->check(CLI::NonNegativeNumber);

  std::vector<std::string> plugin_targets;
  std::string plugins_config;
  auto* plugins = app.add_subcommand("plugins", "list plugins and explain the ones that are refused");
  plugins->add_option("targets", plugin_targets, "plugin files or directories (default: the search paths)");
  plugins->add_option("--config", plugins_config, "node configuration (plugins.paths, secured mode)");

  CLI11_PARSE(app, argc, argv);
  if (run->parsed()) return run_node(config_path, duration);
  if (plugins->parsed()) return list_plugins(plugin_targets, plugins_config);
  return 0;
}
