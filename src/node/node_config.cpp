// The `node:` and `runtime:` sections (docs/configuration.md).
#include "node/node_config.hpp"

namespace edgert::config {

namespace {
// Shutdown bounds: at least 1 ms, at most 10 minutes (a stop that waits longer is a hang).
constexpr std::int64_t kMaxStopMs = 600000;

std::string log_level_name(const std::string& v, const std::string&) {
  static const char* names[] = {"trace", "debug", "info", "warning", "warn", "error", "critical", "off"};
  for (const char* n : names) {
    if (v == n) return "";
  }
  return "expected one of trace, debug, info, warning, error, critical, off; got '" + v + "'";
}
}  // namespace

const Table<NodeSection>& node_table() {
  static const Table<NodeSection> t = [] {
    Table<NodeSection> s;
    s.key("id", &NodeSection::id, non_empty())
        .path_key("data_dir", &NodeSection::data_dir, non_empty())
        .key<std::string>("log_level", &NodeSection::log_level, log_level_name)
        // 1/heartbeat_hz is the tick period: beyond 100 Hz it floods the loop, below
        // 0.001 Hz (one per 16 min) it overflows nothing but is indistinguishable from off.
        .key("heartbeat_hz", &NodeSection::heartbeat_hz, zero_or_between(0.001, 100, "off"))
        .key("heartbeat_s", &NodeSection::heartbeat_s, zero_or_between(1, 86400, "off"))
        .key("work_offline", &NodeSection::work_offline);
    return s;
  }();
  return t;
}

const Table<RuntimeSection>& runtime_table() {
  static const Table<RuntimeSection> t = [] {
    Table<RuntimeSection> s;
    s.key("stop_stage_warn_ms", &RuntimeSection::stop_stage_warn_ms, between(1, kMaxStopMs))
        .key("task_timeout_ms", &RuntimeSection::task_timeout_ms, between(1, kMaxStopMs))
        .removed("stage_timeout_ms", "renamed to runtime.stop_stage_warn_ms (it only logs a WARNING)")
        .removed("worker_join_timeout_ms",
                 "removed: it bounded nothing yet; workers will take their stop bound from the "
                 "pipeline's own settings when it arrives")
        .removed("queue_capacity",
                 "removed: queue capacity is set per plugin instance as "
                 "streams[].plugins[].instances[].max_inputs_queue_size");
    return s;
  }();
  return t;
}

}  // namespace edgert::config
