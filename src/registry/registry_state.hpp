// Internal: the shared state behind ComponentRegistry, its handles and listener
// registrations. Handles and registrations hold it by shared_ptr, so they may outlive
// the registry object.
#pragma once

#include <edgert/component_registry.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace edgert::detail {

/// Where a slot stands in the table; read by beat() on its fast path.
enum class SlotPlacement : std::uint8_t {
  listed,    ///< in the table: beats just store
  removed,   ///< dropped by remove(): the next beat re-creates the row
  detached,  ///< no table will take it back (another row owns its id): beats are ignored
};

/// One row. Never moves (held by shared_ptr), so a handle's beats reach it without the
/// mutex. The atomics are written by beat()/progress(); the rest is guarded by
/// RegistryState::mu.
struct ComponentSlot {
  // Hot, lock-free: the owning loop writes these every turn.
  std::atomic<std::int64_t> last_beat{0};      ///< steady ms
  std::atomic<std::int64_t> last_progress{0};  ///< steady ms
  std::atomic<std::uint64_t> beats{0};
  std::atomic<std::uint64_t> progress_count{0};
  std::atomic<SlotPlacement> placement{SlotPlacement::listed};

  // Immutable after registration.
  std::string id, name, kind;

  // Guarded by RegistryState::mu.
  ComponentLabels labels;
  bool expects_progress = false;
  std::int64_t period_ms = 0;            ///< this row's period (0: the registry's)
  ComponentStatus status = ComponentStatus::starting;    ///< what the table shows
  ComponentStatus declared = ComponentStatus::starting;  ///< the owner's last word
  std::string reason;
  std::string last_error;
  std::int64_t last_error_ms = 0;
  std::uint64_t restarts = 0;
  std::uint64_t beats_at_start = 0;  ///< `beats` when it became starting
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::int64_t stopped_at = 0;  ///< steady ms it became stopped
  bool attached = false;
};

/// A subscribed listener. `mu` is held while it is called, so reset() can wait it out.
struct ListenerEntry {
  std::mutex mu;
  bool alive = true;
  ComponentListener fn;
};

struct RegistryState {
  explicit RegistryState(ComponentRegistryOptions o);

  ComponentRegistryOptions options;
  std::int64_t period_ms = 1000;
  std::int64_t misses = 3;
  bool injected_steady = false;

  /// Steady ms: the injected clock or steady_clock. Any thread; never blocks.
  std::int64_t steady() const noexcept;
  /// Wall ms: the injected clock or system_clock.
  std::int64_t wall() const noexcept;

  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<ComponentSlot>, std::less<>> rows;  // guarded by mu
  std::deque<ComponentTransition> pending;                                  // guarded by mu
  bool delivering = false;                                                  // guarded by mu

  std::mutex listeners_mu;
  std::vector<std::shared_ptr<ListenerEntry>> listeners;  // guarded by listeners_mu

  std::atomic<std::uint64_t> sweeps{0}, transitions{0}, listener_errors{0}, recreated{0}, forgotten{0};

  /// The stale window of a row, in ms. Caller holds mu.
  std::int64_t window_ms(const ComponentSlot& s) const noexcept { return (s.period_ms > 0 ? s.period_ms : period_ms) * misses; }

  /// What the table should show for `s` at steady time `now`, with the reason for a
  /// change. Caller holds mu. Never throws except bad_alloc.
  ComponentStatus derive(const ComponentSlot& s, std::int64_t now, std::string& reason) const;

  /// Sets s.status to `to` and queues the transition when it changes. Caller holds mu.
  void change(ComponentSlot& s, ComponentStatus to, std::string reason, std::int64_t wall_now);
  /// Queues a transition that is not a change of a listed row's status (a new row).
  void queue(const ComponentSlot& s, ComponentStatus from, ComponentStatus to, std::string reason, std::int64_t wall_now);

  /// Delivers the queued transitions unless another thread is already doing so. Takes
  /// `lk` (holding mu) and releases it around each listener call; returns unlocked.
  void deliver(std::unique_lock<std::mutex> lk);

  /// The re-create path of beat() for a slot whose placement is not `listed`.
  void recreate(const std::shared_ptr<ComponentSlot>& slot);
  /// Declared status for a listed row. Caller holds mu.
  void declare(ComponentSlot& s, ComponentStatus status, std::string_view reason);
};

/// Throws std::invalid_argument unless `status` may be declared.
void check_declarable(ComponentStatus status);

}  // namespace edgert::detail
