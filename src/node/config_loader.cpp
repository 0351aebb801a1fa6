// Loader: YAML text -> Config through the section tables (each declared in its module's folder),
// then environment overrides. Every error is collected; see docs/configuration.md.
#include <edgert/config.hpp>

#include "comms/comms_config.hpp"
#include "mailbox/mailbox_config.hpp"
#include "node/node_config.hpp"
#include "pipeline/pipeline_config.hpp"
#include "plugins/environment.hpp"
#include "plugins/plugins_config.hpp"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

extern char** environ;  // NOLINT: POSIX

namespace edgert {
namespace {

using config::Context;
using config::Table;

// EDGERT_ variables read by edgert outside the configuration; never "unknown".
const auto& kNonConfigVariables = detail::kPluginEnvironment;

const Table<Config>& root_table() {
  static const Table<Config> t = [] {
    Table<Config> s("section");
    s.section("node", &Config::node, config::node_table())
        .section("runtime", &Config::runtime, config::runtime_table())
        .section("plugins", &Config::plugins, config::plugins_table())
        .section("mailbox", &Config::mailbox, config::mailbox_table())
        .section("pipeline", &Config::pipeline, config::pipeline_table())
        .section("comms", &Config::comms, config::comms_table())
        .section("health", &Config::health, config::health_table())
        .items("streams", &Config::streams, config::stream_table())
        .check([](const Config& cfg, const YAML::Node&, const std::string&, Context& ctx) {
          config::check_streams(cfg.streams, ctx);
        });
    return s;
  }();
  return t;
}

void apply_environment(Config& cfg, const EnvVars& env, Context& ctx) {
  std::vector<config::EnvSlot> slots;
  root_table().env_slots(cfg, "EDGERT", "", slots);
  std::vector<std::string> names;
  for (const auto& s : slots) names.push_back(s.var);
  for (const auto& [name, value] : env) {
    if (name.rfind("EDGERT_", 0) != 0) continue;
    if (std::find(std::begin(kNonConfigVariables), std::end(kNonConfigVariables), name) !=
        std::end(kNonConfigVariables)) {
      continue;
    }
    ctx.set_location_override("environment variable " + name);
    auto slot = std::find_if(slots.begin(), slots.end(), [&](const config::EnvSlot& s) { return s.var == name; });
    if (slot != slots.end()) {
      slot->apply(value, ctx);
    } else {
      const auto best = config::closest(name, names);
      ctx.add("", "",
              "matches no configuration key" + (best.empty() ? std::string(" (see docs/configuration.md)")
                                                             : " (did you mean " + best + "?)"));
    }
    ctx.set_location_override(std::nullopt);
  }
}

// Across sections, after the environment: a signed command young enough to pass the
// freshness check must still be in the inbox, or a replay of it inside the window would
// run again (docs/operations.md, "Signed commands").
void check_replay_window(const Config& cfg, const std::string& source_name, Context& ctx) {
  const std::int64_t window = cfg.comms.security.command_window_s, kept = cfg.mailbox.inbox_retention_s;
  if (window <= kept) return;
  ctx.add(source_name, "comms.security.command_window_s",
          std::to_string(window) + " s is longer than mailbox.inbox_retention_s (" + std::to_string(kept) +
              " s): a replayed signed command still inside the window would no longer be in the inbox to be "
              "recognised; shorten the window or keep the inbox longer");
}

Result<Config> parse(std::string_view yaml, const std::string& source_name, const EnvVars& env,
                     const std::filesystem::path& base_dir) {
  Config cfg;
  cfg.source = source_name;
  Context ctx(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::DeepRecursion& e) {
    return Status{ErrorCode::config_error, source_name + ":" + std::to_string(e.mark.line + 1) +
                                               ": YAML nested too deeply (the parser stops at " + std::to_string(e.depth()) +
                                               " levels of lists and mappings)"};
  } catch (const YAML::ParserException& e) {
    return Status{ErrorCode::config_error,
                  source_name + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg};
  }
  try {
    if (root && !root.IsNull()) {  // an empty file means all defaults
      if (root.IsMap()) {
        root_table().read(root, cfg, "", ctx);
      } else {
        ctx.add(root, "", "expected a mapping of sections at the top level, got " + config::describe(root));
      }
    }
  } catch (const YAML::Exception& e) {
    ctx.add(source_name + ":" + std::to_string(e.mark.line + 1), "", e.msg);
  }
  if (!base_dir.empty()) root_table().resolve(cfg, base_dir);
  apply_environment(cfg, env, ctx);
  check_replay_window(cfg, source_name, ctx);
  if (Status st = ctx.status(); !st.ok()) return st;
  return cfg;
}

}  // namespace

EnvVars process_environment() {
  EnvVars out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("EDGERT_", 0) != 0) continue;
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

Result<Config> parse_config(std::string_view yaml, const std::string& source_name, const EnvVars& env) {
  return parse(yaml, source_name, env, {});
}

Result<Config> load_config(const std::string& path, const EnvVars& env) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status{ErrorCode::io_error, path + ": is a directory, expected a YAML configuration file"};
  }
  std::ifstream in(path);
  if (!in) {
    const int err = errno;  // set by the failed open
    return Status{err == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                  path + ": cannot open configuration file: " + std::strerror(err)};
  }
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status{ErrorCode::io_error, path + ": read error"};
  auto dir = std::filesystem::absolute(std::filesystem::path(path), ec).parent_path();
  if (ec) return Status{ErrorCode::io_error, path + ": " + ec.message()};
  return parse(buf.str(), path, env, dir);
}

}  // namespace edgert
