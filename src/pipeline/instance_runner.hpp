// One business plugin instance of a stream: its plugin instance, its bounded input
// queue and its worker (docs/pipeline.md, "Instances"). The capture worker offers
// inputs; the instance's worker runs process() with its pacing, back-off and
// quarantine; the pipeline's monitor flags calls that got stuck.
//
// Supervision (docs/operations.md, "Health and restarts", "The supervisor"): a
// quarantined instance is destroyed and re-created through the plugin's destroy/create
// on its worker thread, on the back-off of its RestartPolicy, until the intensity is
// spent; then it stays quarantined until restart() (the RESTART command). A call stuck
// in process() cannot be killed: with replace_stuck the monitor retires its generation
// (the stuck thread destroys its object once the call returns) and a new worker with
// a new instance takes the queue.
//
// Accounting: received, processed, dropped, queued and in_flight change together under
// one mutex, so received == processed + dropped + queued + in_flight holds in every
// snapshot, not only at rest.
#pragma once

#include "pipeline/drop_reporter.hpp"
#include "pipeline/input.hpp"
#include "pipeline/outputs.hpp"
#include "pipeline/restart_history.hpp"

#include <edgert/base_worker.hpp>
#include <edgert/drophead_queue.hpp>
#include <edgert/metrics.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/restart_config.hpp>
#include <edgert/stream_config.hpp>
#include <edgert/worker_pulse.hpp>

#include <atomic>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

namespace edgert::pipeline {

enum class InstanceState : std::uint8_t {
  idle, running, backing_off, stuck, quarantined, stopped, disabled, restarting
};
const char* to_string(InstanceState s) noexcept;

struct InstanceFigures {
  std::uint64_t received = 0, processed = 0, dropped = 0, errors = 0, queued = 0, in_flight = 0;
  double latency_p50_ms = 0, latency_p99_ms = 0;
  double last_progress_age_s = -1;  // -1: never ran
  InstanceState state = InstanceState::idle;
  std::uint64_t restarts = 0;        // re-creations (supervisor, RESTART) and replacements
  std::uint64_t replaced = 0;        // of those, replacements of a stuck instance
  std::int64_t restart_in_ms = -1;   // until the scheduled re-creation; -1: none scheduled
  std::int64_t restart_delay_ms = -1;  // the last back-off drawn; -1: none yet
  bool gave_up = false;              // the intensity is spent: quarantined until RESTART
  std::string last_error;
};

/// What the supervisor needs from the pipeline. Empty clocks: the steady and wall clocks.
struct Supervision {
  RestartPolicyConfig policy;                 // the `instance` kind's (health.restart)
  std::shared_ptr<RestartHistory> history;    // null: a MemoryRestartHistory of its own
  std::function<std::int64_t()> steady_ms;    // back-off deadlines
  std::function<std::int64_t()> wall_ms;      // history stamps
  /// Called (on the instance's worker thread) when the intensity is spent: escalation.
  std::function<void(const std::string& key, const std::string& why)> gave_up;
  std::uint64_t seed = 0;                     // the jitter's; 0: random
};

class InstanceRunner {
 public:
  /// `where` locates the instance in the configuration for error messages.
  InstanceRunner(const StreamConfig& stream, const StreamPluginConfig& plugin, const InstanceConfig& config,
                 std::shared_ptr<Outputs> outputs, double drop_results_per_s, Supervision supervision = {});
  ~InstanceRunner();

  /// Start thread. Creates and starts the plugin instance. Error: the loader's
  /// message prefixed with the configuration location and the instance's name.
  [[nodiscard]] Status create(PluginLoader& loader);
  /// Start thread. Starts the worker, which beats `pulse` (may be null) each time its
  /// loop turns, reports progress when a process() call returns and declares
  /// degraded (backing off), quarantined and stopped. Error: io_error when no thread
  /// can be made.
  [[nodiscard]] Status start(std::shared_ptr<WorkerPulse> pulse = {});
  /// Stop thread; bounded by the worker's join timeout. Inputs still queued stay for drain().
  void stop();
  /// Stop thread, after stop(): turns queued inputs into ERROR results; returns how many.
  std::size_t drain();

  /// Capture thread. Live feed: never blocks; the oldest queued input is dropped when
  /// full. Lossless: waits for room until `stop` is requested, or the instance stops
  /// accepting (stuck, quarantined); then the input is dropped. Returns the ns waited.
  std::int64_t offer(const Input& input, bool live_feed, const std::stop_token& stop);

  /// Monitor thread. Flags a call running longer than stuck_after_s (and replaces the
  /// instance when the policy says so); flushes summaries.
  void check(std::int64_t now_mono_ns);
  /// Any thread (the command thread); never blocks for long. A quarantined instance
  /// is re-created at once with its intensity counted afresh; a stuck one is replaced.
  /// Returns what was done ("restarted", "replaced"); error invalid_argument when it
  /// runs normally, disabled or stopped (the message says which).
  [[nodiscard]] Result<std::string> restart();
  /// Any thread. True when nothing is queued or in a call (or it is quarantined/disabled).
  bool idle() const;
  /// Any thread.
  InstanceFigures figures() const;
  const std::string& key() const noexcept;  // "<stream>/<signature>/<instance_id>"
  bool disabled() const noexcept;
  const ResultOrigin& origin() const noexcept;

  struct State;  // shared with the worker thread (src/pipeline/instance_runner.cpp)

 private:
  [[nodiscard]] Status start_worker();
  [[nodiscard]] Result<std::string> replace_stuck(const char* why);

  std::shared_ptr<State> s_;
  std::mutex workers_mu_;  // worker_ and retired_: start/stop, the monitor, restart()
  std::unique_ptr<BaseWorker> worker_;
  std::shared_ptr<WorkerPulse> pulse_;  // the row's pulse (start()), shared by a replacement
  std::vector<std::unique_ptr<BaseWorker>> retired_;  // replaced workers, stuck in a call
  bool stopped_ = false;
};

}  // namespace edgert::pipeline
