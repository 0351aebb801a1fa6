// The node's side of comms (src/comms/): the published heartbeat document and the
// built-in commands PING, STATUS and TRIGGER (docs/operations.md).
#pragma once

#include <edgert/commands.hpp>
#include <edgert/config.hpp>
#include <edgert/mailbox.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <string>

namespace edgert::node {

/// What a heartbeat says about this process and its disk.
struct ProcessFigures {
  double cpu_percent = 0;      // of one core, since the previous call (0 on the first)
  double cpu_seconds = 0;      // user + system since the process started
  std::uint64_t rss_bytes = 0;
  std::uint64_t disk_free_bytes = 0;  // available to this user under data_dir
};

/// Reads /proc/self and statvfs(data_dir); remembers the previous CPU reading.
class ProcessSampler {
 public:
  explicit ProcessSampler(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  ProcessFigures sample();

 private:
  std::string data_dir_;
  double last_cpu_s_ = -1;
  std::chrono::steady_clock::time_point last_at_{};
};

struct HeartbeatInputs {
  std::string node_id;
  std::string status;               // RUNNING, SHUTDOWN
  std::int64_t uptime_ms = 0;
  ProcessFigures process;
  nlohmann::json pipeline;          // {"streams": ..., "instances": ..., "outputs": ...}
  Result<MailboxStats> outbox = Status{ErrorCode::closed, "no mailbox"};
  nlohmann::json comms;
};

/// The document on {root}/{node_id}/heartbeat and STATUS's reply.
std::string heartbeat_json(const HeartbeatInputs& in);

/// PING, STATUS (`status` builds the heartbeat document) and TRIGGER (`trigger` fires
/// the stream named by args {"stream": "..."}).
std::map<std::string, CommandHandler> builtin_commands(std::function<std::string()> status,
                                                       std::function<Status(const std::string&)> trigger,
                                                       std::string node_id);

}  // namespace edgert::node
