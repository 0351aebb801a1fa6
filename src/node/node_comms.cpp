#include "node/node_comms.hpp"

#include "core/clock.hpp"
#include <edgert/version.hpp>

#include <sys/statvfs.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <fstream>

namespace edgert::node {
namespace {

using detail::wall_clock_ms;

}  // namespace

ProcessFigures ProcessSampler::sample() {
  ProcessFigures f;
  // The process CPU clock (all threads, user + system) in ns: /proc/self/stat counts
  // 10 ms ticks, too coarse for a short window.
  timespec ts{};
  if (::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0) {
    f.cpu_seconds = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }
  const auto now = std::chrono::steady_clock::now();
  if (window_cpu_s_ < 0) {
    window_cpu_s_ = f.cpu_seconds;
    window_at_ = now;
  } else if (now - window_at_ >= window_) {
    const double wall = std::chrono::duration<double>(now - window_at_).count();
    const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    // The clamp only absorbs clock skew between the two readings: over >= 1 s the CPU
    // time cannot honestly exceed the wall time on every CPU.
    const double top = 100.0 * static_cast<double>(cpus > 0 ? cpus : 1);
    cpu_percent_ = std::clamp(100.0 * (f.cpu_seconds - window_cpu_s_) / wall, 0.0, top);
    window_cpu_s_ = f.cpu_seconds;
    window_at_ = now;
  }
  f.cpu_percent = cpu_percent_;
  std::ifstream statm("/proc/self/statm");
  unsigned long long size = 0, resident = 0;
  if (statm >> size >> resident) {
    f.rss_bytes = resident * static_cast<unsigned long long>(sysconf(_SC_PAGESIZE));
  }
  struct statvfs vfs {};
  if (::statvfs(data_dir_.c_str(), &vfs) == 0) {
    f.disk_free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  return f;
}

std::string heartbeat_json(const HeartbeatInputs& in) {
  nlohmann::json j;
  j["node_id"] = in.node_id;
  j["edgert_version"] = version_string();
  j["status"] = in.status;
  j["seq"] = in.seq;
  j["time_ms"] = wall_clock_ms();
  j["uptime_s"] = static_cast<double>(in.uptime_ms) / 1000.0;
  j["process"] = {{"cpu_percent", in.process.cpu_percent},
                  {"cpu_seconds", in.process.cpu_seconds},
                  {"rss_bytes", in.process.rss_bytes}};
  j["disk"] = {{"free_bytes", in.process.disk_free_bytes}};
  for (const char* section : {"streams", "instances"}) {
    j[section] = in.pipeline.is_object() && in.pipeline.contains(section) ? in.pipeline[section]
                                                                          : nlohmann::json::object();
  }
  if (in.outbox.ok()) {
    const auto& s = in.outbox.value();
    j["outbox"] = {{"messages", s.outbox_rows},
                   {"bytes", s.outbox_bytes},
                   {"oldest_age_ms", s.oldest_pending_age_ms},
                   {"leased", s.leased_now},
                   {"expired", s.counters.expired},
                   {"evicted", s.counters.evicted},
                   {"rejected", s.counters.rejected},
                   {"disk_full", s.counters.disk_full},
                   {"inbox_unacked", s.inbox_unacked},
                   {"dead_letters", s.dead_letter_rows}};
    j["inbox"] = {{"messages", s.inbox_rows},
                  {"bytes", s.inbox_bytes},
                  {"unacked", s.inbox_unacked},
                  {"refused", s.counters.inbox_refused},
                  {"retired", s.counters.inbox_retired},
                  {"conflicts", s.counters.inbox_conflicts},
                  {"duplicates", s.counters.duplicates}};
  } else {
    j["outbox"] = {{"error", in.outbox.status().message()}};
  }
  j["comms"] = in.comms;
  if (!in.components.is_null()) j["components"] = in.components;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::map<std::string, CommandHandler> builtin_commands(
    std::function<std::string()> status, std::function<Status(const std::string&)> trigger, std::string node_id,
    std::function<Result<std::string>(const std::string&)> restart) {
  std::map<std::string, CommandHandler> c;
  c["PING"] = [node_id](const CommandRequest&) -> Result<std::string> {
    return nlohmann::json{{"pong", true}, {"node_id", node_id}, {"time_ms", wall_clock_ms()}}.dump();
  };
  c["STATUS"] = [status](const CommandRequest&) -> Result<std::string> { return status(); };
  c["TRIGGER"] = [trigger](const CommandRequest& r) -> Result<std::string> {
    const auto args = nlohmann::json::parse(r.args_json, nullptr, false);
    if (!args.is_object() || !args.contains("stream") || !args["stream"].is_string()) {
      return Status{ErrorCode::invalid_argument, "TRIGGER needs args {\"stream\": \"<name>\"}"};
    }
    const std::string stream = args["stream"].get<std::string>();
    if (Status st = trigger(stream); !st.ok()) return st;
    return nlohmann::json{{"triggered", stream}}.dump();
  };
  if (restart) {
    c["RESTART"] = [restart](const CommandRequest& r) -> Result<std::string> {
      const auto args = nlohmann::json::parse(r.args_json, nullptr, false);
      if (!args.is_object() || !args.contains("component") || !args["component"].is_string()) {
        return Status{ErrorCode::invalid_argument, "RESTART needs args {\"component\": \"<instance or stream>\"}"};
      }
      return restart(args["component"].get<std::string>());
    };
  }
  return c;
}

}  // namespace edgert::node
