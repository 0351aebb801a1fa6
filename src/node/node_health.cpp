#include "node/node_health.hpp"

#include <edgert/registry_metrics.hpp>

#include "core/log.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace edgert::node {

namespace {

class HandlePulse final : public WorkerPulse {
 public:
  explicit HandlePulse(ComponentHandle h) : h_(std::move(h)) {}
  void beat() noexcept override { h_.beat(); }
  void progress() noexcept override { h_.progress(); }
  void declare(std::string_view status, std::string_view reason) noexcept override {
    static constexpr ComponentStatus kDeclarable[] = {ComponentStatus::ready,       ComponentStatus::degraded,
                                                      ComponentStatus::offline,     ComponentStatus::restarting,
                                                      ComponentStatus::quarantined, ComponentStatus::stopped,
                                                      ComponentStatus::failed};
    for (ComponentStatus s : kDeclarable) {
      if (to_string(s) != status) continue;
      try {
        h_.set_status(s, reason);
        if (s == ComponentStatus::restarting) h_.add_restart();  // edgert_component_restarts_total
      } catch (const std::exception& e) {
        detail::log().error("component {}: cannot declare {}: {}", h_.id(), status, e.what());
      }
      return;
    }
  }

 private:
  ComponentHandle h_;
};

bool unhealthy(ComponentStatus s) {
  return s == ComponentStatus::stalled || s == ComponentStatus::blocked || s == ComponentStatus::offline;
}

std::string seconds_text(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

ComponentRegistryOptions registry_options(const HealthSection& c) {
  ComponentRegistryOptions o;
  o.heartbeat_period = std::chrono::milliseconds(c.sweep_interval_ms);
  o.stale_after_misses = static_cast<int>(c.stale_after_misses);
  return o;
}

}  // namespace

std::shared_ptr<WorkerPulse> make_pulse(ComponentHandle handle) {
  return std::make_shared<HandlePulse>(std::move(handle));
}

NodeHealth::NodeHealth(const HealthSection& config, MetricsRegistry& metrics)
    : config_(config), registry_(registry_options(config)) {
  for (ComponentStatus s : {ComponentStatus::stalled, ComponentStatus::blocked, ComponentStatus::offline}) {
    const auto i = static_cast<std::size_t>(s);
    const Labels l{{"status", std::string(to_string(s))}};
    entered_[i] = &metrics.counter("edgert_component_unhealthy_total", l,
                                   "Components that turned stalled, blocked or offline (per status entered).");
    recovered_[i] = &metrics.counter("edgert_component_recovered_total", l,
                                     "Components that left stalled, blocked or offline (per status left).");
  }
  counts_metrics_ = register_registry_metrics(metrics, registry_);
  component_metrics_ = metrics.register_family_collector(
      {{"edgert_component_status", "1 for each component's current status (labels kind, name, status).",
        MetricType::gauge},
       {"edgert_component_restarts_total", "Restarts of each component.", MetricType::counter},
       {"edgert_component_heartbeat_age_seconds", "Since each component's last heartbeat.", MetricType::gauge}},
      [this](std::vector<FamilySample>& out) {
        for (const auto& c : registry_.snapshot()) {
          out.push_back({0, {{"kind", c.kind}, {"name", c.name}, {"status", std::string(to_string(c.status))}}, 1});
          out.push_back({1, {{"kind", c.kind}, {"name", c.name}}, static_cast<double>(c.restarts)});
          out.push_back({2, {{"kind", c.kind}, {"name", c.name}}, static_cast<double>(c.heartbeat_age_ms) / 1e3});
        }
      });
  listener_ = registry_.add_listener([this](const ComponentTransition& t) { on_transition(t); });
}

NodeHealth::~NodeHealth() { stop(); }

std::chrono::milliseconds NodeHealth::period() const noexcept {
  return std::chrono::milliseconds(config_.sweep_interval_ms);
}

std::shared_ptr<WorkerPulse> NodeHealth::pulse(const std::string& kind, const std::string& name,
                                               ComponentLabels labels, bool expects_progress,
                                               std::chrono::milliseconds period) {
  RegisterOptions ro;
  ro.expects_progress = expects_progress;
  ro.heartbeat_period = period > this->period() ? period : std::chrono::milliseconds(0);
  try {
    return make_pulse(registry_.register_component(name, kind, std::move(labels), ro));
  } catch (const std::exception& e) {
    detail::log().error("component {}/{} not registered: {}", kind, name, e.what());
    return nullptr;
  }
}

Status NodeHealth::start(SystemRuntime& runtime) {
  std::lock_guard lk(mu_);
  if (sweeper_.active()) return {};
  try {
    loop_ = registry_.register_component("loop", "runtime");
  } catch (const std::exception& e) {
    return {ErrorCode::internal, std::string("health: ") + e.what()};
  }
  // The loop's row beats from the loop itself, then the sweep runs: a loop held up by a
  // blocking callback delays both (the sweep cannot report its own thread; docs/registry.md).
  sweeper_ = runtime.spawn_periodic("health-sweep", period(), [this] {
    loop_.beat();
    registry_.sweep();
  });
  if (!sweeper_.active()) return {ErrorCode::closed, "health: the runtime's loop is closed"};
  return {};
}

void NodeHealth::stop() {
  std::lock_guard lk(mu_);
  sweeper_.cancel();
  loop_.reset();
}

nlohmann::json NodeHealth::heartbeat_section() const {
  nlohmann::json counts = nlohmann::json::object();
  nlohmann::json not_ready = nlohmann::json::array();
  const auto rows = registry_.snapshot();
  for (std::size_t i = 0; i < kComponentStatusCount; ++i) counts[std::string(to_string(static_cast<ComponentStatus>(i)))] = 0;
  for (const auto& c : rows) {
    auto& n = counts[std::string(to_string(c.status))];
    n = n.get<std::uint64_t>() + 1;
    if (c.status != ComponentStatus::ready) {
      not_ready.push_back({{"id", c.id}, {"status", to_string(c.status)}, {"reason", c.reason}});
    }
  }
  return {{"total", rows.size()}, {"counts", std::move(counts)}, {"not_ready", std::move(not_ready)}};
}

void NodeHealth::on_transition(const ComponentTransition& t) {
  const bool to_bad = unhealthy(t.to), from_bad = unhealthy(t.from);
  if (!to_bad && !from_bad) return;
  const auto now = std::chrono::steady_clock::now();
  std::string was;  // how long it was in its previous unhealthy status
  {
    std::lock_guard lk(since_mu_);
    if (from_bad) {
      if (auto it = since_.find(t.id); it != since_.end()) {
        was = seconds_text(now - it->second);
        since_.erase(it);
      }
    }
    if (to_bad) since_[t.id] = now;
  }
  if (from_bad) recovered_[static_cast<std::size_t>(t.from)]->add();
  if (to_bad) {
    entered_[static_cast<std::size_t>(t.to)]->add();
    detail::log().warn("component {}: {} -> {}{}: {}", t.id, to_string(t.from), to_string(t.to),
                       was.empty() ? std::string() : " (after " + was + " " + std::string(to_string(t.from)) + ")",
                       t.reason);
  } else {
    detail::log().info("component {}: {} -> {} after {} {}: {}", t.id, to_string(t.from), to_string(t.to),
                       was.empty() ? std::string("?") : was, to_string(t.from), t.reason);
  }
}

}  // namespace edgert::node
