// The node's health wiring (issue 21; docs/registry.md, "Wiring into the Node"): the
// Node's ComponentRegistry, the pulses handed to the parts that heartbeat (pipeline
// workers, the mailbox writer, the comms link, the runtime loop), the sweeper on the
// runtime's loop, the transition log lines and counters, the per-component metrics and
// the heartbeat document's "components" section.
#pragma once

#include <edgert/component_registry.hpp>
#include <edgert/metrics.hpp>
#include <edgert/health_config.hpp>
#include <edgert/node_config.hpp>
#include <edgert/system_runtime.hpp>
#include <edgert/worker_pulse.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace edgert::node {

/// A registry row seen as a WorkerPulse (what the areas below the node are given).
/// declare() maps the status names of edgert/worker_pulse.hpp; an unknown one is ignored.
std::shared_ptr<WorkerPulse> make_pulse(ComponentHandle handle);

class NodeHealth {
 public:
  /// Any thread. Registers the metrics (counts per status, the per-component families,
  /// the transition counters) and the transition listener. `metrics` must outlive this.
  NodeHealth(const HealthSection& config, MetricsRegistry& metrics);
  ~NodeHealth();
  NodeHealth(const NodeHealth&) = delete;
  NodeHealth& operator=(const NodeHealth&) = delete;

  ComponentRegistry& registry() noexcept { return registry_; }
  /// The period components are expected to beat at (health.sweep_interval_ms).
  std::chrono::milliseconds period() const noexcept;

  /// Any thread; takes the registry's mutex. Registers (or takes over) the row
  /// "<kind>/<name>" and returns its pulse. `period` below the registry's counts as the
  /// registry's. Null (logged at ERROR) when the registry refuses it (a live duplicate).
  std::shared_ptr<WorkerPulse> pulse(const std::string& kind, const std::string& name, ComponentLabels labels = {},
                                     bool expects_progress = false, std::chrono::milliseconds period = {});

  /// Start thread (the `storage` stage). Registers the `runtime/loop` row and starts
  /// the sweeper on the runtime's loop: every sweep_interval_ms it beats the loop's row
  /// and sweeps. Idempotent.
  Status start(SystemRuntime& runtime);
  /// Stop thread. Cancels the sweeper and releases the loop's row. Idempotent.
  void stop();

  /// Any thread; takes the registry's mutex. {"counts": {"<status>": n, ...},
  /// "not_ready": [{"id", "status", "reason"}, ...]} (rows not `ready`, sorted by id).
  nlohmann::json heartbeat_section() const;

 private:
  void on_transition(const ComponentTransition& t);

  const HealthSection config_;
  ComponentRegistry registry_;
  // Guards loop_ and sweeper_ (start/stop). Never taken by the sweep or the listener:
  // stop() holds it while cancel() waits for a sweep in progress.
  std::mutex mu_;
  ComponentHandle loop_;
  PeriodicHandle sweeper_;
  // When a row entered stalled/blocked/offline (steady), for the recovery log line.
  std::mutex since_mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> since_;
  std::array<Counter*, kComponentStatusCount> entered_{};    // edgert_component_unhealthy_total{status}
  std::array<Counter*, kComponentStatusCount> recovered_{};  // edgert_component_recovered_total{status}
  // Declared last: unregistered first, while the registry they read still exists.
  MetricsRegistration counts_metrics_;
  MetricsRegistration component_metrics_;
  ListenerRegistration listener_;
};

}  // namespace edgert::node
