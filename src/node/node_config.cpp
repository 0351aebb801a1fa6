// The `node:` and `runtime:` sections (docs/configuration.md).
#include "node/node_config.hpp"

#include "pipeline/pipeline_config.hpp"

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
        .key("heartbeat_interval_ms", &NodeSection::heartbeat_interval_ms,
             zero_or_range(kMinHeartbeatIntervalMs, kMaxHeartbeatIntervalMs, "off"))
        // The two heartbeats (a local one in Hz, a published one in seconds) became one.
        .removed("heartbeat_hz",
                 "became node.heartbeat_interval_ms, the one heartbeat (on_heartbeat and the published "
                 "document): milliseconds between beats, 1000 / hz (1 Hz -> 1000); 0 still disables it")
        .removed("heartbeat_s",
                 "became node.heartbeat_interval_ms, the one heartbeat (on_heartbeat and the published "
                 "document): seconds x 1000 (10 -> 10000); 0 still disables it")
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

const Table<HealthSection>& health_table() {
  static const Table<HealthSection> t = [] {
    Table<HealthSection> s;
    s.key("sweep_interval_ms", &HealthSection::sweep_interval_ms, between(kMinSweepIntervalMs, kMaxSweepIntervalMs))
        .key("stale_after_misses", &HealthSection::stale_after_misses, between(1, kMaxStaleAfterMisses))
        .section("restart", &HealthSection::restart, restart_table());
    return s;
  }();
  return t;
}

}  // namespace edgert::config
