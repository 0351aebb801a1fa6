// The registry's rules: how a row's shown status follows from its clocks and its
// declared status, the sweep that applies them, and in-order delivery to listeners.
#include "registry/registry_state.hpp"

#include <core/clock.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

namespace edgert::detail {

namespace {

bool owner_managed(ComponentStatus s) noexcept {
  switch (s) {
    case ComponentStatus::offline:
    case ComponentStatus::restarting:
    case ComponentStatus::quarantined:
    case ComponentStatus::stopped:
    case ComponentStatus::failed:
      return true;
    default:
      return false;
  }
}

}  // namespace

RegistryState::RegistryState(ComponentRegistryOptions o) : options(std::move(o)) {
  if (options.heartbeat_period.count() <= 0) throw std::invalid_argument("ComponentRegistry: heartbeat_period must be > 0");
  period_ms = options.heartbeat_period.count();
  misses = options.stale_after_misses < 1 ? 1 : options.stale_after_misses;
  injected_steady = static_cast<bool>(options.steady_ms);
}

std::int64_t RegistryState::steady() const noexcept {
  if (injected_steady) return options.steady_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t RegistryState::wall() const noexcept {
  return options.wall_ms ? options.wall_ms() : wall_clock_ms();
}

ComponentStatus RegistryState::derive(const ComponentSlot& s, std::int64_t now, std::string& reason) const {
  if (owner_managed(s.declared)) return s.declared;
  const std::int64_t window = window_ms(s);
  const std::int64_t beat_age = now - s.last_beat.load(std::memory_order_relaxed);
  if (beat_age >= window) {
    reason = "no heartbeat for ";
    reason.append(std::to_string(beat_age)).append(" ms (stale after ").append(std::to_string(misses));
    reason.append(" x ").append(std::to_string(window / misses)).append(" ms)");
    return ComponentStatus::stalled;
  }
  const std::int64_t progress_age = now - s.last_progress.load(std::memory_order_relaxed);
  if (s.expects_progress && progress_age >= window) {
    reason = "heartbeating but no progress for ";
    reason.append(std::to_string(progress_age)).append(" ms");
    return ComponentStatus::blocked;
  }
  if (s.declared == ComponentStatus::starting) {
    if (s.beats.load(std::memory_order_relaxed) == s.beats_at_start) return ComponentStatus::starting;
    reason = "first heartbeat";
    return ComponentStatus::ready;
  }
  if (s.status == ComponentStatus::stalled) reason = "heartbeats resumed";
  if (s.status == ComponentStatus::blocked) reason = "progress resumed";
  return s.declared;
}

void RegistryState::queue(const ComponentSlot& s, ComponentStatus from, ComponentStatus to, std::string reason,
                          std::int64_t wall_now) {
  pending.push_back(ComponentTransition{s.id, s.name, s.kind, from, to, std::move(reason), wall_now});
  transitions.fetch_add(1, std::memory_order_relaxed);
}

void RegistryState::change(ComponentSlot& s, ComponentStatus to, std::string reason, std::int64_t wall_now) {
  if (to == s.status) return;
  const ComponentStatus from = s.status;
  s.status = to;
  s.reason = reason;
  s.updated_ms = wall_now;
  queue(s, from, to, std::move(reason), wall_now);
}

void RegistryState::declare(ComponentSlot& s, ComponentStatus status, std::string_view reason) {
  const std::int64_t now = steady();
  const std::int64_t wall_now = wall();
  s.declared = status;
  if (status == ComponentStatus::stopped) s.stopped_at = now;
  std::string why;
  const ComponentStatus shown = derive(s, now, why);
  s.updated_ms = wall_now;
  change(s, shown, shown == status ? std::string(reason) : why, wall_now);
}

void RegistryState::deliver(std::unique_lock<std::mutex> lk) {
  if (delivering) return;  // that thread's loop delivers ours too, in order
  delivering = true;
  try {
    while (!pending.empty()) {
      std::deque<ComponentTransition> batch;
      batch.swap(pending);
      lk.unlock();
      std::vector<std::shared_ptr<ListenerEntry>> ls;
      {
        std::lock_guard g(listeners_mu);
        ls = listeners;
      }
      for (const ComponentTransition& t : batch) {
        for (const auto& l : ls) {
          std::lock_guard g(l->mu);
          if (!l->alive) continue;
          try {
            l->fn(t);
          } catch (...) {
            listener_errors.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
      lk.lock();
    }
  } catch (...) {  // bad_alloc copying the list: the batch is lost, the next delivery works
    if (!lk.owns_lock()) lk.lock();
    delivering = false;
    throw;
  }
  delivering = false;
}

void RegistryState::recreate(const std::shared_ptr<ComponentSlot>& slot) {
  std::unique_lock lk(mu);
  if (slot->placement.load(std::memory_order_relaxed) != SlotPlacement::removed) return;  // another beat won
  if (rows.count(slot->id) != 0) {  // registered again meanwhile: that row is the component now
    slot->placement.store(SlotPlacement::detached, std::memory_order_relaxed);
    return;
  }
  const std::int64_t now = steady();
  const std::int64_t wall_now = wall();
  rows.emplace(slot->id, slot);
  slot->placement.store(SlotPlacement::listed, std::memory_order_relaxed);
  slot->last_progress.store(now, std::memory_order_relaxed);  // a fresh row: its progress window starts now
  slot->declared = ComponentStatus::ready;
  slot->status = ComponentStatus::ready;
  slot->reason = "re-created from a heartbeat";
  slot->created_ms = wall_now;
  slot->updated_ms = wall_now;
  recreated.fetch_add(1, std::memory_order_relaxed);
  queue(*slot, ComponentStatus::stopped, ComponentStatus::ready, slot->reason, wall_now);
  deliver(std::move(lk));
}

void check_declarable(ComponentStatus status) {
  if (status == ComponentStatus::starting || status == ComponentStatus::stalled ||
      status == ComponentStatus::blocked || static_cast<std::size_t>(status) >= kComponentStatusCount) {
    std::string m = "ComponentRegistry: status '";
    m.append(to_string(status)).append("' is derived by the sweep and cannot be declared");
    throw std::invalid_argument(m);
  }
}

}  // namespace edgert::detail

namespace edgert {

void ComponentRegistry::sweep() {
  detail::RegistryState& st = *state_;
  std::unique_lock lk(st.mu);
  st.sweeps.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t now = st.steady();
  const std::int64_t wall_now = st.wall();
  const std::int64_t forget = st.options.forget_stopped_after.count();
  for (auto it = st.rows.begin(); it != st.rows.end();) {
    detail::ComponentSlot& s = *it->second;
    if (!s.attached && s.status == ComponentStatus::stopped && forget > 0 && now - s.stopped_at >= forget) {
      s.placement.store(detail::SlotPlacement::detached, std::memory_order_relaxed);
      it = st.rows.erase(it);
      st.forgotten.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::string reason;
    const ComponentStatus to = st.derive(s, now, reason);
    if (to != s.status) {
      if (s.declared == ComponentStatus::starting && to == ComponentStatus::ready) s.declared = to;
      st.change(s, to, std::move(reason), wall_now);
    }
    ++it;
  }
  st.deliver(std::move(lk));
}

}  // namespace edgert
