// The main job (docs/pipeline.md): every configured stream, its capture worker and its
// business instances, and where their results go. Built and driven by edgert::Node,
// which registers these calls with its SystemRuntime stages:
//   build (after plugins)  create()   business instances created and started
//   outputs                open()     JSONL file opened, the outbox attached
//   processing             start_instances() / stop_instances()
//   acquisition            start_streams() / stop_streams()
//   triggers               start_triggers() / stop_triggers()
//   drain                  drain()    queued inputs -> ERROR results
//   outputs (stop)         close()
#pragma once

#include "pipeline/instance_runner.hpp"
#include "pipeline/outputs.hpp"
#include "pipeline/restart_history.hpp"
#include "pipeline/stream_runner.hpp"

#include <edgert/metrics.hpp>
#include <edgert/pipeline.hpp>
#include <edgert/restart_config.hpp>
#include <edgert/stream_config.hpp>
#include <edgert/base_worker.hpp>
#include <edgert/system_runtime.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace edgert::pipeline {

/// What the node registers for each worker the pipeline starts (docs/registry.md).
struct PulseRequest {
  std::string kind;  // "stream" (its capture worker) or "instance"
  std::string name;  // the stream's name, or the instance's key "<stream>/<signature>/<instance_id>"
  std::map<std::string, std::string> labels;
  bool expects_progress = false;     // a continuous capture: heartbeats without items read `blocked`
  std::chrono::milliseconds period{0};  // 0: the registry's
};
/// Start thread. Returns the worker's pulse, or null (no registry).
using PulseFactory = std::function<std::shared_ptr<WorkerPulse>(const PulseRequest&)>;

class Pipeline {
 public:
  /// `streams` and `section` must outlive the pipeline (the node's Config does).
  Pipeline(std::string node_id, const PipelineSection& section, const std::vector<StreamConfig>& streams);
  ~Pipeline();

  /// What the supervisor works with (docs/operations.md, "Health and restarts: the
  /// supervisor"): the policies, the restart history (null: in memory), its clocks
  /// (empty: steady and wall) and how to ask the host to stop the node (escalation).
  struct SupervisorSetup {
    RestartSection restart;
    std::shared_ptr<RestartHistory> history;
    std::function<std::int64_t()> steady_ms, wall_ms;
    std::function<void(const std::string& reason)> request_shutdown;
  };
  /// Before create(); the start thread.
  void set_supervisor(SupervisorSetup setup);

  /// Before open(). See Outputs::add_sink.
  void add_sink(ResultSink sink);
  /// Before start_instances(). Each instance and stream worker started gets a pulse
  /// from `factory` (the node's component registry rows).
  void set_pulse_factory(PulseFactory factory);
  /// Start thread. Creates every enabled instance (plugins are loaded once, here, off
  /// the frame path) and registers the metrics. Error: the first instance that cannot
  /// be created, named with its configuration location; nothing is left created.
  [[nodiscard]] Status create(PluginLoader& loader, MetricsRegistry& metrics);
  [[nodiscard]] Status open(Mailbox* mailbox);
  [[nodiscard]] Status start_instances();
  void stop_instances();
  [[nodiscard]] Status start_streams();
  void stop_streams();
  /// Interval triggers run on the runtime's loop (they only queue a trigger, never
  /// block); the monitor (stalls, stuck calls, drop summaries) on its own thread, since
  /// it publishes results.
  void start_triggers(SystemRuntime& runtime);
  void stop_triggers();
  std::size_t drain();
  void close();
  /// Releases the instances and metrics registrations (before the loader goes).
  void destroy();

  /// Any thread. Fires one trigger of `stream`. Errors: not_found (no such stream),
  /// invalid_argument (it has no trigger), closed (stopped).
  [[nodiscard]] Status trigger(const std::string& stream);
  /// Any thread (the command thread); blocks up to a few seconds while a quarantined
  /// instance is re-created. `component` names an instance ("<stream>/<signature>/<id>",
  /// "<stream>/<id>" or with an "instance/" prefix) or a stream ("<stream>" or
  /// "stream/<stream>": its quarantined and stuck instances). Returns JSON
  /// {"restarted": [...], "not_restarted": {"<key>": "<why>"}}; not_found when nothing
  /// has that name, invalid_argument when nothing named needed a restart.
  [[nodiscard]] Result<std::string> restart(const std::string& component);
  /// Any thread. True when every stream has ended and every queue is empty: false
  /// while any stream is endless (live, triggered) or there are no streams.
  bool done() const;
  /// Any thread. {"streams": {...}, "instances": {...}, "outputs": {...}} as
  /// docs/pipeline.md describes; after close(), the figures as they were then.
  std::string summary_json() const;

 private:
  std::string live_summary_json() const;
  void monitor();
  void escalate(const std::string& stream, const std::string& key, const std::string& why);

  const PipelineSection& section_;
  const std::vector<StreamConfig>& stream_configs_;
  std::shared_ptr<Outputs> outputs_;
  // Written by create() and destroy() (start/stop thread); read under a shared lock by
  // the calls any thread may make (trigger, done, summary_json) and by the monitor.
  mutable std::shared_mutex runners_mu_;
  std::vector<std::shared_ptr<InstanceRunner>> instances_;
  std::vector<std::unique_ptr<StreamRunner>> streams_;
  std::unique_ptr<BaseWorker> monitor_;
  PluginLoader* loader_ = nullptr;
  PulseFactory pulses_;
  std::vector<MetricsRegistration> registrations_;
  SupervisorSetup supervisor_;
  std::vector<PeriodicHandle> periodic_;
  mutable std::mutex final_mu_;
  std::string final_summary_;
};

}  // namespace edgert::pipeline
