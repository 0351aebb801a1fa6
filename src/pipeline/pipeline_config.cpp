// The `streams:` section (docs/configuration.md, "streams"). Host keys are typed
// here; every other key of `capture`, `trigger` and of an instance is kept as the
// plugin's free-form ConfigObject, checked later against the plugin's own schema.
#include "pipeline/pipeline_config.hpp"

#include "core/printable.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace edgert::config {

namespace {

// The member `key` of a JSON object text as canonical JSON ("" when absent or not an object).
std::string json_member_text(const std::string& object_json, const char* key) {
  const auto j = nlohmann::json::parse(object_json, nullptr, false);
  if (!j.is_object()) return "";
  const auto it = j.find(key);
  return it == j.end() ? "" : it->dump();
}

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
        .key("stall_timeout_ms", &CaptureConfig::stall_timeout_ms, between(100, 3600000))
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
        .key("queue_size", &TriggerConfig::queue_size, between(1, 1000))
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
        .key("error_backoff_s", &InstanceConfig::error_backoff_s, number_between(0, 3600))
        .key("max_backoff_s", &InstanceConfig::max_backoff_s, number_between(0, 86400))
        .key("reset_after_good", &InstanceConfig::reset_after_good, between(1, 1000000))
        .key("quarantine_after", &InstanceConfig::quarantine_after, between(1, 1000000))
        .key("stuck_after_s", &InstanceConfig::stuck_after_s, number_between(0.1, 86400))
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
          if (st.trigger && !st.trigger->type.empty() && st.trigger->type != "interval" &&
              st.trigger->type != "manual") {
            ctx.add(map["trigger"]["type"], join_path(path, "trigger.type"),
                    "unknown trigger type '" + st.trigger->type + "' (interval, manual)");
          }
          if (!map["capture"] && !map["trigger"]) {
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

const Table<PipelineSection>& pipeline_table() {
  static const Table<PipelineSection> t = [] {
    Table<PipelineSection> s;
    s.key("outbox", &PipelineSection::outbox)
        .path_key("results_jsonl", &PipelineSection::results_jsonl)
        .key("result_ttl_s", &PipelineSection::result_ttl_s, between(1, 31536000))
        .key("drop_results_per_s", &PipelineSection::drop_results_per_s, number_between(0, 10000))
        .key("monitor_period_ms", &PipelineSection::monitor_period_ms, between(10, 60000));
    return s;
  }();
  return t;
}

void check_streams(const std::vector<StreamConfig>& streams, Context& ctx) {
  // Two streams reading one camera would fight over the device (and double every
  // result): the same capture type and url twice is refused.
  std::map<std::string, std::string> sources;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    const auto& cap = streams[i].capture;
    if (!cap) continue;
    auto url = json_member_text(cap->config.json, "url");
    if (url.empty()) continue;
    // A device index ("0", "00", 0) names /dev/video<N> however it is spelled.
    const auto j = nlohmann::json::parse(url, nullptr, false);
    std::string text = j.is_string() ? j.get<std::string>() : url;
    if (!text.empty() && text.size() <= 3 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      text = "device " + std::to_string(std::stoi(text));
    }
    const std::string key = cap->type + "\n" + text;
    if (auto [it, fresh] = sources.emplace(key, streams[i].where); !fresh) {
      ctx.add(cap->where, "streams[" + std::to_string(i) + "].capture.url",
              "source " + detail::redact_url(text) + " already captured by the stream at " + it->second);
    }
  }
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
