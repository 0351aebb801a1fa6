#include "node/node_store.hpp"

#include <edgert/version.hpp>

#include "core/log.hpp"

#include <algorithm>
#include <filesystem>
#include <span>

namespace edgert::node {

NodeStore::NodeStore(ComponentRegistry& registry, MetricsRegistry& metrics, std::string node_id, std::string data_dir,
                     std::chrono::milliseconds interval)
    : registry_(registry),
      metrics_(metrics),
      node_id_(std::move(node_id)),
      data_dir_(std::move(data_dir)),
      interval_(interval) {}

NodeStore::~NodeStore() {
  view_.store(nullptr);
  store_metrics_.reset();
  self_.reset();
  store_.reset();  // stops its thread and writes the last batch if the stop hook did not
}

LifecycleHooks NodeStore::hooks() {
  LifecycleHooks h;
  h.name = "registry-store";
  h.start = [this] {
    if (data_dir_.empty()) {
      detail::log().info("no node.data_dir: the component registry is not written to disk (edgert-node status "
                         "cannot see this node)");
      return Status{};
    }
    detail::RegistryStoreOptions o;
    o.path = (std::filesystem::path(data_dir_) / "registry.db").string();
    o.node_id = node_id_;
    o.version = version_string();
    o.interval = interval_;
    // The store's own row: beaten by every batch that commits; degraded with the error
    // while writes fail (they are retried; the node goes on).
    // It beats once a batch: its period is the write interval, not the sweep's.
    RegisterOptions ro;
    ro.heartbeat_period = interval_;
    self_ = registry_.register_component("registry.db", "store", {{"path", o.path}}, ro);
    o.after_batch = [this](const Status& st) {
      std::lock_guard lk(self_mu_);  // stop() releases self_ while this thread may be in a batch
      if (st.ok()) {
        self_.beat();
        if (self_state_ != SelfState::writing && self_.valid()) {
          self_.set_status(ComponentStatus::ready,
                           self_state_ == SelfState::failing ? "registry.db written again" : "registry.db written");
        }
        self_state_ = SelfState::writing;
      } else {
        self_.report_error(st.message());
        if (self_state_ != SelfState::failing && self_.valid()) {
          self_.set_status(ComponentStatus::degraded, "registry.db writes fail");
        }
        self_state_ = SelfState::failing;
      }
    };
    store_ = std::make_unique<detail::RegistryStore>(registry_, std::move(o));
    detail::RegistryStore* s = store_.get();
    store_metrics_ = metrics_.register_collector(
        {{"edgert_registry_store_batches_total", {}, "registry.db transactions committed", MetricType::counter},
         {"edgert_registry_store_rows_written_total", {}, "component rows written to registry.db",
          MetricType::counter},
         {"edgert_registry_store_failures_total", {}, "registry.db writes or opens that failed (retried)",
          MetricType::counter},
         {"edgert_registry_store_moved_aside_total", {}, "damaged registry.db files moved aside at open",
          MetricType::counter}},
        [s](std::span<double> out) {
          const auto st = s->stats();
          out[0] = static_cast<double>(st.batches);
          out[1] = static_cast<double>(st.rows_written);
          out[2] = static_cast<double>(st.failures);
          out[3] = static_cast<double>(st.moved_aside);
        });
    store_->start();
    view_.store(s);
    return Status{};
  };
  h.stop = [this] {
    if (!store_) return;
    view_.store(nullptr);
    // Released first, so the last write shows the store's own row stopped too; under
    // self_mu_, since the store's thread may be in after_batch (TSan found the race).
    {
      std::lock_guard lk(self_mu_);
      self_.reset();
    }
    store_->stop();  // the last batch: node `stopped`; its figures stay for the final snapshot
  };
  return h;
}

namespace {

// registry.db first; memory holds the same entries as a fallback for the calls made
// while the store is not running (docs/operations.md, "Health and restarts").
class StoreRestartHistory final : public pipeline::RestartHistory {
 public:
  StoreRestartHistory(NodeStore& owner, std::int64_t keep_ms) : owner_(owner), keep_ms_(keep_ms) {}
  void record_restart(const std::string& component, std::int64_t wall_ms, std::int64_t expires_ms,
                      const std::string& reason) override {
    memory_.record_restart(component, wall_ms, expires_ms, reason);
    if (auto* st = owner_.store()) {
      if (Status s = st->record_restart(component, wall_ms, reason); !s.ok()) {
        detail::log().error("registry.db: restart of {} not recorded (kept in memory): {}", component, s.message());
      }
    }
  }
  std::int64_t restarts_since(const std::string& component, std::int64_t since_ms) override {
    if (auto* st = owner_.store()) {
      if (auto r = st->restarts_since(component, since_ms); r.ok()) {
        return std::max<std::int64_t>(static_cast<std::int64_t>(r.value().size()),
                                      memory_.restarts_since(component, since_ms));
      }
    }
    return memory_.restarts_since(component, since_ms);
  }
  void prune(std::int64_t now_ms) override {
    memory_.prune(now_ms);
    if (auto* st = owner_.store()) (void)st->prune(now_ms - keep_ms_);
  }

 private:
  NodeStore& owner_;
  const std::int64_t keep_ms_;
  pipeline::MemoryRestartHistory memory_;
};

}  // namespace

std::shared_ptr<pipeline::RestartHistory> NodeStore::restart_history(std::int64_t keep_ms) {
  return std::make_shared<StoreRestartHistory>(*this, keep_ms);
}

}  // namespace edgert::node
