// One stream: its capture worker (or trigger-only record source), its trigger queue,
// and the business instances it feeds (docs/pipeline.md, "Streams").
//
// The capture worker creates the capture plugin's instance on its own thread, so a
// source that is slow to open never holds up the node; it reopens as `reconnectable`,
// `max_retries` and `sleep_on_error_ms` say (jittered, doubling back-off). Each item
// is offered to every consumer by reference. The pipeline's monitor tells "source
// stalled" (no item for stall_timeout_ms) from "consumers blocked" (a lossless stream
// waiting that long for room).
#pragma once

#include "pipeline/drop_reporter.hpp"
#include "pipeline/instance_runner.hpp"
#include "pipeline/outputs.hpp"

#include <edgert/base_worker.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/stream_config.hpp>
#include <edgert/worker_pulse.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace edgert::pipeline {

enum class StreamState : std::uint8_t {
  idle, opening, running, stalled, consumers_blocked, reconnecting, ended, failed, stopped
};
const char* to_string(StreamState s) noexcept;

struct StreamFigures {
  std::uint64_t captured = 0, errors = 0, reconnects = 0, triggers = 0, triggers_dropped = 0;
  double fps = 0;             // items per second over the last monitor window of about a second
  double capture_wait_s = 0;  // time spent waiting for room in lossless queues
  double longest_call_ms = 0; // the longest create/start/capture() call of the source
  StreamState state = StreamState::idle;
};

class StreamRunner {
 public:
  StreamRunner(StreamConfig config, std::vector<std::shared_ptr<InstanceRunner>> consumers,
               std::shared_ptr<Outputs> outputs, double drop_results_per_s);
  ~StreamRunner();

  /// Start thread. Starts the capture worker, which creates the capture instance from
  /// `loader` (it must outlive stop()). The worker beats `pulse` (may be null) each
  /// time its loop turns and while it waits for room, reports progress once an item is
  /// delivered to every consumer, and declares degraded (reopening), failed and
  /// stopped. Error: io_error when no thread can be made.
  [[nodiscard]] Status start(PluginLoader& loader, std::shared_ptr<WorkerPulse> pulse = {});
  /// Stop thread; bounded by the worker's join timeout (a capture() call that ignores
  /// its read timeout keeps its thread, detached, until it returns).
  void stop();
  /// Any thread; never blocks. Queues one trigger. Error: invalid_argument when the
  /// stream has no trigger; closed once stopped. A full queue drops its oldest trigger
  /// (an ERROR result, counted) and still returns ok.
  [[nodiscard]] Status trigger();
  bool triggered() const noexcept;
  std::int64_t trigger_period_ms() const noexcept;
  /// Monitor thread. Updates fps and the stalled / consumers-blocked states.
  void check(std::int64_t now_mono_ns);
  /// Any thread. True once a finite source ended (or the stream failed for good).
  bool ended() const noexcept;
  StreamFigures figures() const;
  const std::string& name() const noexcept;
  const StreamConfig& config() const noexcept;

  struct State;

 private:
  std::shared_ptr<State> s_;
  std::unique_ptr<BaseWorker> worker_;
};

}  // namespace edgert::pipeline
