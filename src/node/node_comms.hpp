// The node's side of comms (src/comms/): the published heartbeat document and the
// built-in commands PING, STATUS, TRIGGER and RESTART (docs/operations.md).
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
  /// Of one core, averaged over the last completed sampling window (ProcessSampler):
  /// within [0, 100 x online CPUs]; 0 until the first window completes.
  double cpu_percent = 0;
  double cpu_seconds = 0;      // user + system since the process started
  std::uint64_t rss_bytes = 0;
  std::uint64_t disk_free_bytes = 0;  // available to this user under data_dir
};

/// Reads the process CPU clock, /proc/self/statm and statvfs(data_dir). cpu_percent is
/// computed over fixed windows of at least `window`: a call closes the window only
/// once that much time has passed, and every call in between returns the last
/// computed value. So bursts of STATUS commands and heartbeats neither shorten the
/// interval (a 10 ms CPU tick over a 1 ms wall gap read as 1,000%) nor disturb each
/// other. Not thread-safe: one owner, or callers serialise (Node holds a mutex).
class ProcessSampler {
 public:
  explicit ProcessSampler(std::string data_dir, std::chrono::milliseconds window = std::chrono::seconds(1))
      : data_dir_(std::move(data_dir)), window_(window) {}
  ProcessFigures sample();

 private:
  std::string data_dir_;
  std::chrono::steady_clock::duration window_;
  double window_cpu_s_ = -1;  // CPU seconds when the current window opened; -1: none yet
  std::chrono::steady_clock::time_point window_at_{};
  double cpu_percent_ = 0;    // of the last completed window
};

struct HeartbeatInputs {
  std::string node_id;
  std::string status;               // RUNNING, SHUTDOWN
  std::uint64_t seq = 0;            // the beat's number (1, 2, ...); STATUS and SHUTDOWN: the last beat's
  std::int64_t uptime_ms = 0;
  ProcessFigures process;
  nlohmann::json pipeline;          // {"streams": ..., "instances": ..., "outputs": ...}
  Result<MailboxStats> outbox = Status{ErrorCode::closed, "no mailbox"};
  nlohmann::json comms;
  nlohmann::json components;        // NodeHealth::heartbeat_section(); null: left out
};

/// The one heartbeat document: each beat's (NodeHeartbeat::document, published on
/// {root}/{node_id}/heartbeat), the SHUTDOWN heartbeat's and STATUS's reply.
std::string heartbeat_json(const HeartbeatInputs& in);

/// PING, STATUS (`status` builds the heartbeat document), TRIGGER (`trigger` fires
/// the stream named by args {"stream": "..."}) and RESTART (`restart` restarts the
/// component named by args {"component": "..."}; Node::restart).
std::map<std::string, CommandHandler> builtin_commands(
    std::function<std::string()> status, std::function<Status(const std::string&)> trigger, std::string node_id,
    std::function<Result<std::string>(const std::string&)> restart = {});

}  // namespace edgert::node
