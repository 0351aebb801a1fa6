// The `streams:` section (docs/configuration.md, "streams"). Host keys are typed
// here; every other key of `capture`, `trigger` and of an instance is kept as the
// plugin's free-form ConfigObject, checked later against the plugin's own schema.
#include "pipeline/pipeline_config.hpp"

#include <map>

namespace edgert::config {

namespace {

const Table<CaptureConfig>& capture_table() {
  static const Table<CaptureConfig> t = [] {
    Table<CaptureConfig> s;
    s.key("type", &CaptureConfig::type, non_empty())
        .required()
        .key("live_feed", &CaptureConfig::live_feed)
        .word("reconnectable", &CaptureConfig::reconnectable,
              {{"yes", Reconnect::yes}, {"no", Reconnect::no}, {"keepalive", Reconnect::keepalive}})
        .key("fps", &CaptureConfig::fps, zero_or_between(0.001, 1000, "as fast as the source"))
        .key("max_retries", &CaptureConfig::max_retries, between(0, 1000000))
        .key("sleep_on_error_ms", &CaptureConfig::sleep_on_error_ms, between(1, 3600000))
        .rest_into(&CaptureConfig::config)
        .where_into(&CaptureConfig::where);
    return s;
  }();
  return t;
}

const Table<TriggerConfig>& trigger_table() {
  static const Table<TriggerConfig> t = [] {
    Table<TriggerConfig> s;
    s.key("type", &TriggerConfig::type, non_empty())
        .required()
        .key("period_ms", &TriggerConfig::period_ms, between(1, 86400000))
        .rest_into(&TriggerConfig::config)
        .where_into(&TriggerConfig::where);
    return s;
  }();
  return t;
}

const Table<InstanceConfig>& instance_table() {
  static const Table<InstanceConfig> t = [] {
    Table<InstanceConfig> s;
    s.key("instance_id", &InstanceConfig::instance_id, non_empty())
        .required()
        .key("process_delay", &InstanceConfig::process_delay, number_between(0, 3600))
        .key("allow_empty_inputs", &InstanceConfig::allow_empty_inputs)
        .key("max_inputs_queue_size", &InstanceConfig::max_inputs_queue_size, between(1, 1000000))
        .key("disabled", &InstanceConfig::disabled)
        .rest_into(&InstanceConfig::config)
        .where_into(&InstanceConfig::where);
    return s;
  }();
  return t;
}

const Table<StreamPluginConfig>& plugin_table() {
  static const Table<StreamPluginConfig> t = [] {
    Table<StreamPluginConfig> s;
    s.key("signature", &StreamPluginConfig::signature, non_empty())
        .required()
        .items("instances", &StreamPluginConfig::instances, instance_table())
        .required()
        .where_into(&StreamPluginConfig::where)
        .check([](const StreamPluginConfig& p, const YAML::Node& map, const std::string& path, Context& ctx) {
          if (p.instances.empty() && map["instances"]) {
            ctx.add(map["instances"], join_path(path, "instances"), "must list at least one instance");
          }
        });
    return s;
  }();
  return t;
}

}  // namespace

const Table<StreamConfig>& stream_table() {
  static const Table<StreamConfig> t = [] {
    Table<StreamConfig> s;
    s.key("name", &StreamConfig::name, non_empty())
        .required()
        .optional_section("capture", &StreamConfig::capture, capture_table())
        .optional_section("trigger", &StreamConfig::trigger, trigger_table())
        .items("plugins", &StreamConfig::plugins, plugin_table())
        .where_into(&StreamConfig::where)
        .check([](const StreamConfig& st, const YAML::Node& map, const std::string& path, Context& ctx) {
          if (map["capture"] && map["trigger"]) {
            ctx.add(map["trigger"], join_path(path, "trigger"), "a stream has either capture or trigger, not both");
          } else if (!map["capture"] && !map["trigger"]) {
            ctx.add(map, path, "needs a capture or a trigger");
          }
          // Instance ids name workers and results, so they are unique per stream.
          std::map<std::string, std::string> ids;
          for (std::size_t p = 0; p < st.plugins.size(); ++p) {
            const auto& plugin = st.plugins[p];
            for (std::size_t i = 0; i < plugin.instances.size(); ++i) {
              const auto& inst = plugin.instances[i];
              if (inst.instance_id.empty()) continue;
              if (auto [it, fresh] = ids.emplace(inst.instance_id, inst.where); !fresh) {
                ctx.add(inst.where,
                        path + ".plugins[" + std::to_string(p) + "].instances[" + std::to_string(i) + "].instance_id",
                        "'" + inst.instance_id + "' already used in this stream at " + it->second);
              }
            }
          }
        });
    return s;
  }();
  return t;
}

void check_streams(const std::vector<StreamConfig>& streams, Context& ctx) {
  std::map<std::string, std::string> names;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    if (streams[i].name.empty()) continue;
    if (auto [it, fresh] = names.emplace(streams[i].name, streams[i].where); !fresh) {
      ctx.add(streams[i].where, "streams[" + std::to_string(i) + "].name",
              "'" + streams[i].name + "' already used by the stream at " + it->second);
    }
  }
}

}  // namespace edgert::config
