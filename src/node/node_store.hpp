// Internal: the Node's registry store (<data_dir>/registry.db, docs/registry.md,
// "registry.db"): started in the storage stage after the mailbox (which creates the
// data_dir and holds its lock, so one node writes one registry.db), stopped before it,
// with a last write that marks the node `stopped`.
#pragma once

#include <edgert/component_registry.hpp>
#include <edgert/metrics.hpp>
#include <edgert/system_runtime.hpp>

#include "pipeline/restart_history.hpp"
#include "registry/registry_store.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace edgert::node {

class NodeStore {
 public:
  /// Does no I/O. `registry` and `metrics` must outlive this object.
  NodeStore(ComponentRegistry& registry, MetricsRegistry& metrics, std::string node_id, std::string data_dir,
            std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  ~NodeStore();
  NodeStore(const NodeStore&) = delete;
  NodeStore& operator=(const NodeStore&) = delete;

  /// The storage-stage participant "registry-store". Its start never fails the node:
  /// without a data_dir it does nothing; a registry.db that cannot be written is
  /// logged, counted and retried by the store (the row `store/registry.db` turns
  /// `degraded` with the error meanwhile).
  LifecycleHooks hooks();
  /// Any thread. The running store (for the supervisor's restart history), else null
  /// (before the storage stage started it, after it stopped it, without a data_dir).
  /// A pointer obtained stays valid until this object is destroyed (with the Node);
  /// after the stop its calls reopen the file for their own transaction.
  detail::RegistryStore* store() noexcept { return view_.load(); }
  /// The supervisor's restart history over registry.db's restart_history table, so a
  /// node restart remembers a crash-looping plugin. Entries older than `keep_ms` (the
  /// longest restart window) are pruned. While the store is not running (before the
  /// storage stage, without a data_dir, or a failed call) the entries also go to an
  /// in-memory history, which answers then. This object must outlive the result's use.
  std::shared_ptr<pipeline::RestartHistory> restart_history(std::int64_t keep_ms);

 private:
  ComponentRegistry& registry_;
  MetricsRegistry& metrics_;
  const std::string node_id_;
  const std::string data_dir_;
  const std::chrono::milliseconds interval_;
  std::unique_ptr<detail::RegistryStore> store_;
  std::atomic<detail::RegistryStore*> view_{nullptr};
  std::mutex self_mu_;  // self_ and self_state_: the store's thread (after_batch) and stop()
  ComponentHandle self_;
  enum class SelfState { fresh, writing, failing };
  SelfState self_state_ = SelfState::fresh;  // only touched by after_batch (one batch at a time)
  MetricsRegistration store_metrics_;
};

}  // namespace edgert::node
