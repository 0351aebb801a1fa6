// ComponentRegistry's table operations, ComponentHandle and ListenerRegistration.
// The status rules and the sweep are in sweep.cpp.
#include "registry/registry_state.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace edgert {

using detail::ComponentSlot;
using detail::SlotPlacement;

std::string_view to_string(ComponentStatus status) noexcept {
  switch (status) {
    case ComponentStatus::starting: return "starting";
    case ComponentStatus::ready: return "ready";
    case ComponentStatus::degraded: return "degraded";
    case ComponentStatus::stalled: return "stalled";
    case ComponentStatus::blocked: return "blocked";
    case ComponentStatus::offline: return "offline";
    case ComponentStatus::restarting: return "restarting";
    case ComponentStatus::quarantined: return "quarantined";
    case ComponentStatus::stopped: return "stopped";
    case ComponentStatus::failed: return "failed";
  }
  return "unknown";
}

namespace {

ComponentInfo info_of(const detail::RegistryState& st, const ComponentSlot& s, std::int64_t now, std::int64_t wall_now) {
  ComponentInfo i;
  i.id = s.id;
  i.name = s.name;
  i.kind = s.kind;
  i.status = s.status;
  i.reason = s.reason;
  i.labels = s.labels;
  i.heartbeat_age_ms = now - s.last_beat.load(std::memory_order_relaxed);
  i.last_heartbeat_ms = wall_now - i.heartbeat_age_ms;
  i.progress_age_ms = now - s.last_progress.load(std::memory_order_relaxed);
  i.last_progress_ms = wall_now - i.progress_age_ms;
  i.expects_progress = s.expects_progress;
  i.heartbeat_period = std::chrono::milliseconds(st.window_ms(s) / st.misses);
  i.last_error = s.last_error;
  i.last_error_ms = s.last_error_ms;
  i.restarts = s.restarts;
  i.beats = s.beats.load(std::memory_order_relaxed);
  i.progress = s.progress_count.load(std::memory_order_relaxed);
  i.created_ms = s.created_ms;
  i.updated_ms = s.updated_ms;
  i.attached = s.attached;
  return i;
}

}  // namespace

// ---- ComponentRegistry ----------------------------------------------------------------

ComponentRegistry::ComponentRegistry(Options options)
    : state_(std::make_shared<detail::RegistryState>(std::move(options))) {}

ComponentRegistry::~ComponentRegistry() = default;

std::string ComponentRegistry::make_id(std::string_view kind, std::string_view name) {
  std::string id(kind);
  id.append("/").append(name);
  return id;
}

ComponentHandle ComponentRegistry::register_component(std::string name, std::string kind, ComponentLabels labels,
                                                      RegisterOptions options) {
  if (name.empty() || kind.empty()) throw std::invalid_argument("ComponentRegistry: a component needs a name and a kind");
  if (options.heartbeat_period.count() < 0) throw std::invalid_argument("ComponentRegistry: negative heartbeat_period");
  detail::RegistryState& st = *state_;
  std::string id = make_id(kind, name);
  std::unique_lock lk(st.mu);
  const std::int64_t now = st.steady();
  const std::int64_t wall_now = st.wall();
  std::shared_ptr<ComponentSlot> slot;
  if (auto it = st.rows.find(id); it != st.rows.end()) {
    slot = it->second;
    if (slot->attached) {
      std::string m = "ComponentRegistry: component '";
      m.append(id).append("' is already registered");
      throw std::invalid_argument(m);
    }
  }
  const bool fresh = slot == nullptr;
  if (fresh) {
    slot = std::make_shared<ComponentSlot>();
    slot->id = std::move(id);
    slot->name = std::move(name);
    slot->kind = std::move(kind);
    slot->created_ms = wall_now;
  }
  slot->labels = std::move(labels);
  slot->expects_progress = options.expects_progress;
  slot->period_ms = options.heartbeat_period.count();
  slot->last_beat.store(now, std::memory_order_relaxed);
  slot->last_progress.store(now, std::memory_order_relaxed);
  slot->beats_at_start = slot->beats.load(std::memory_order_relaxed);
  slot->declared = ComponentStatus::starting;
  slot->attached = true;
  if (fresh) {
    slot->status = ComponentStatus::starting;
    slot->reason = "registered";
    slot->updated_ms = wall_now;
    st.rows.emplace(slot->id, slot);
    st.queue(*slot, ComponentStatus::stopped, ComponentStatus::starting, "registered", wall_now);
  } else {
    st.change(*slot, ComponentStatus::starting, "registered again", wall_now);
  }
  ComponentHandle h(state_, slot);
  st.deliver(std::move(lk));
  return h;
}

bool ComponentRegistry::set_status(std::string_view id, ComponentStatus status, std::string_view reason) {
  detail::check_declarable(status);
  detail::RegistryState& st = *state_;
  std::unique_lock lk(st.mu);
  auto it = st.rows.find(id);
  if (it == st.rows.end()) return false;
  st.declare(*it->second, status, reason);
  st.deliver(std::move(lk));
  return true;
}

bool ComponentRegistry::remove(std::string_view id) {
  detail::RegistryState& st = *state_;
  std::lock_guard lk(st.mu);
  auto it = st.rows.find(id);
  if (it == st.rows.end()) return false;
  // A row with a handle may come back from its next beat; one without never will.
  it->second->placement.store(it->second->attached ? SlotPlacement::removed : SlotPlacement::detached,
                              std::memory_order_relaxed);
  st.rows.erase(it);
  return true;
}

std::vector<ComponentInfo> ComponentRegistry::snapshot() const {
  const detail::RegistryState& st = *state_;
  std::lock_guard lk(st.mu);
  const std::int64_t now = st.steady();
  const std::int64_t wall_now = st.wall();
  std::vector<ComponentInfo> out;
  out.reserve(st.rows.size());
  for (const auto& [id, slot] : st.rows) out.push_back(info_of(st, *slot, now, wall_now));
  return out;
}

std::optional<ComponentInfo> ComponentRegistry::find(std::string_view id) const {
  const detail::RegistryState& st = *state_;
  std::lock_guard lk(st.mu);
  auto it = st.rows.find(id);
  if (it == st.rows.end()) return std::nullopt;
  return info_of(st, *it->second, st.steady(), st.wall());
}

ComponentCounts ComponentRegistry::counts() const {
  const detail::RegistryState& st = *state_;
  ComponentCounts c{};
  std::lock_guard lk(st.mu);
  for (const auto& [id, slot] : st.rows) ++c[static_cast<std::size_t>(slot->status)];
  return c;
}

RegistryStats ComponentRegistry::stats() const noexcept {
  const detail::RegistryState& st = *state_;
  return RegistryStats{st.sweeps.load(), st.transitions.load(), st.listener_errors.load(), st.recreated.load(),
                       st.forgotten.load()};
}

ListenerRegistration ComponentRegistry::add_listener(ComponentListener fn) {
  if (!fn) throw std::invalid_argument("ComponentRegistry: empty listener");
  auto entry = std::make_shared<detail::ListenerEntry>();
  entry->fn = std::move(fn);
  {
    std::lock_guard g(state_->listeners_mu);
    state_->listeners.push_back(entry);
  }
  return ListenerRegistration(state_, std::move(entry));
}

// ---- ComponentHandle -------------------------------------------------------------------

ComponentHandle::ComponentHandle(std::shared_ptr<detail::RegistryState> state,
                                 std::shared_ptr<ComponentSlot> slot) noexcept
    : state_(std::move(state)), slot_(std::move(slot)) {}

ComponentHandle::ComponentHandle(ComponentHandle&& o) noexcept = default;

ComponentHandle& ComponentHandle::operator=(ComponentHandle&& o) noexcept {
  if (this != &o) {
    reset();
    state_ = std::move(o.state_);
    slot_ = std::move(o.slot_);
  }
  return *this;
}

ComponentHandle::~ComponentHandle() { reset(); }

namespace {

// The hot path of beat() and progress(): one clock read, relaxed stores and adds.
void record_beat(detail::RegistryState& st, const std::shared_ptr<ComponentSlot>& slot, bool progressed) noexcept {
  const std::int64_t now = st.steady();
  if (progressed) {
    slot->last_progress.store(now, std::memory_order_relaxed);
    slot->progress_count.fetch_add(1, std::memory_order_relaxed);
  }
  slot->last_beat.store(now, std::memory_order_relaxed);
  slot->beats.fetch_add(1, std::memory_order_relaxed);
  if (slot->placement.load(std::memory_order_relaxed) == SlotPlacement::removed) [[unlikely]] {
    try {
      st.recreate(slot);
    } catch (...) {  // bad_alloc: the next beat tries again
    }
  }
}

}  // namespace

void ComponentHandle::beat() noexcept {
  if (slot_) record_beat(*state_, slot_, false);
}

void ComponentHandle::progress() noexcept {
  if (slot_) record_beat(*state_, slot_, true);
}

void ComponentHandle::set_status(ComponentStatus status, std::string_view reason) {
  if (!slot_) return;
  detail::check_declarable(status);
  std::unique_lock lk(state_->mu);
  // A removed row is not re-created by a declaration (only a beat does that).
  if (slot_->placement.load(std::memory_order_relaxed) != SlotPlacement::listed) return;
  state_->declare(*slot_, status, reason);
  state_->deliver(std::move(lk));
}

void ComponentHandle::report_error(std::string_view message) {
  if (!slot_) return;
  std::lock_guard lk(state_->mu);
  slot_->last_error.assign(message);
  slot_->last_error_ms = state_->wall();
  slot_->updated_ms = slot_->last_error_ms;
}

void ComponentHandle::add_restart() {
  if (!slot_) return;
  std::lock_guard lk(state_->mu);
  ++slot_->restarts;
  slot_->updated_ms = state_->wall();
}

void ComponentHandle::reset() noexcept {
  if (!slot_) return;
  try {
    std::unique_lock lk(state_->mu);
    slot_->attached = false;
    if (slot_->placement.load(std::memory_order_relaxed) == SlotPlacement::listed) {
      state_->declare(*slot_, ComponentStatus::stopped, "handle released");
      state_->deliver(std::move(lk));
    } else {
      slot_->placement.store(SlotPlacement::detached, std::memory_order_relaxed);
    }
  } catch (...) {  // bad_alloc queueing the transition: the row is still detached
  }
  slot_.reset();
  state_.reset();
}

const std::string& ComponentHandle::id() const noexcept {
  static const std::string empty;
  return slot_ ? slot_->id : empty;
}

// ---- ListenerRegistration ----------------------------------------------------------------

ListenerRegistration::ListenerRegistration(std::weak_ptr<detail::RegistryState> state,
                                           std::shared_ptr<detail::ListenerEntry> entry) noexcept
    : state_(std::move(state)), entry_(std::move(entry)) {}

ListenerRegistration::ListenerRegistration(ListenerRegistration&&) noexcept = default;

ListenerRegistration& ListenerRegistration::operator=(ListenerRegistration&& o) noexcept {
  if (this != &o) {
    reset();
    state_ = std::move(o.state_);
    entry_ = std::move(o.entry_);
  }
  return *this;
}

ListenerRegistration::~ListenerRegistration() { reset(); }

void ListenerRegistration::reset() noexcept {
  if (!entry_) return;
  if (auto st = state_.lock()) {
    std::lock_guard g(st->listeners_mu);
    auto& ls = st->listeners;
    ls.erase(std::remove(ls.begin(), ls.end(), entry_), ls.end());
  }
  {
    std::lock_guard g(entry_->mu);  // waits out a call in progress
    entry_->alive = false;
  }
  entry_.reset();
  state_.reset();
}

}  // namespace edgert
