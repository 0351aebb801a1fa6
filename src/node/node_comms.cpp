#include "node/node_comms.hpp"

#include "core/clock.hpp"
#include <edgert/version.hpp>

#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace edgert::node {
namespace {

using detail::wall_clock_ms;

}  // namespace

ProcessFigures ProcessSampler::sample() {
  ProcessFigures f;
  // /proc/self/stat: fields 14 and 15 are utime and stime in clock ticks; the command
  // name (field 2) may hold spaces, so parse after its closing parenthesis.
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    const auto close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      unsigned long long utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
      }
      const long ticks = sysconf(_SC_CLK_TCK);
      if (ticks > 0) f.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
    }
  }
  const auto now = std::chrono::steady_clock::now();
  if (last_cpu_s_ >= 0) {
    const double wall = std::chrono::duration<double>(now - last_at_).count();
    if (wall > 0) f.cpu_percent = 100.0 * (f.cpu_seconds - last_cpu_s_) / wall;
  }
  last_cpu_s_ = f.cpu_seconds;
  last_at_ = now;
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
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::map<std::string, CommandHandler> builtin_commands(std::function<std::string()> status,
                                                       std::function<Status(const std::string&)> trigger,
                                                       std::string node_id) {
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
  return c;
}

}  // namespace edgert::node
