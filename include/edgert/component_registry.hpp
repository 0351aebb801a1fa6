// ComponentRegistry: the node's table of live parts (streams, instances, workers, the
// comms link, host components), each heartbeating from the loop that does its work, and
// a sweep that tells stalled (no heartbeat) from blocked (heartbeats, no progress).
// Shaped after seed 003's runtime table. Guide: docs/registry.md.
//
// Statuses: a row is `starting` until its first heartbeat, then `ready`. The sweep
// derives `stalled` and `blocked` from the clocks; every other status is declared with
// set_status(). Declared `ready`/`degraded` rows are still watched (they may turn
// stalled or blocked and come back to what was declared); declared `offline`,
// `restarting`, `quarantined`, `stopped` and `failed` are the owner's word and the sweep
// never overrides them (a quarantined instance is not expected to beat).
//
// The sweep rule, exactly: with window = stale_after_misses * period (the row's own
// period when it set one), a row is stalled when now - last_heartbeat >= window, and
// blocked (expects_progress only) when it is not stalled and now - last_progress >=
// window. Ages use the steady clock; wall times are only stamped.
//
// Threads: every member function may be called from any thread. beat() and progress()
// are lock-free and allocation-free (atomics in a slot that never moves); everything
// else takes the registry's mutex briefly. Transitions reach listeners in order,
// outside the mutex (see add_listener()).
#pragma once

#include <edgert/export.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

/// The numeric values are the gauge edgert_component_status reports; never renumber.
enum class ComponentStatus : std::uint8_t {
  starting = 0,
  ready = 1,
  degraded = 2,
  stalled = 3,
  blocked = 4,
  offline = 5,
  restarting = 6,
  quarantined = 7,
  stopped = 8,
  failed = 9,
};
inline constexpr std::size_t kComponentStatusCount = 10;

/// Any thread; never blocks. "starting", "ready", ... ("unknown" outside the enum).
EDGERT_API std::string_view to_string(ComponentStatus status) noexcept;

/// One row, as snapshot() and find() copy it.
struct ComponentInfo {
  std::string id;  ///< "<kind>/<name>": unique and stable across restarts of the part
  std::string name;
  std::string kind;
  ComponentStatus status = ComponentStatus::starting;
  std::string reason;  ///< why it has this status (the last transition's reason)
  std::map<std::string, std::string> labels;
  /// Wall ms derived as wall now - heartbeat_age_ms, so a wall clock jump never ages a row.
  std::int64_t last_heartbeat_ms = 0;
  std::int64_t heartbeat_age_ms = 0;  ///< steady clock
  std::int64_t last_progress_ms = 0;
  std::int64_t progress_age_ms = 0;
  bool expects_progress = false;
  std::chrono::milliseconds heartbeat_period{0};  ///< the period this row is judged by
  std::string last_error;
  std::int64_t last_error_ms = 0;  ///< wall; 0 when no error was reported
  std::uint64_t restarts = 0;
  std::uint64_t beats = 0;     ///< beat() + progress() calls over the row's life
  std::uint64_t progress = 0;  ///< progress() calls over the row's life
  std::int64_t created_ms = 0;  ///< wall
  std::int64_t updated_ms = 0;  ///< wall: the last status change or declared fact
  bool attached = false;        ///< a live ComponentHandle owns the row
};

/// One status change, as listeners receive it. A row that did not exist counts as
/// `stopped` (a new row arrives as stopped -> starting "registered").
struct ComponentTransition {
  std::string id;
  std::string name;
  std::string kind;
  ComponentStatus from = ComponentStatus::stopped;
  ComponentStatus to = ComponentStatus::stopped;
  std::string reason;
  std::int64_t wall_ms = 0;
};

struct ComponentRegistryOptions {
  /// How often components are expected to beat (a row may set its own).
  std::chrono::milliseconds heartbeat_period{1000};
  /// Missed periods before a row is stalled (or blocked); below 1 acts as 1.
  int stale_after_misses = 3;
  /// A stopped row without a handle is forgotten by the sweep this long after it
  /// stopped (the bound on the table). 0: kept until remove().
  std::chrono::milliseconds forget_stopped_after{std::chrono::hours(1)};
  /// Monotonic ms (any origin) for ages; injectable for tests. Empty: steady_clock.
  std::function<std::int64_t()> steady_ms;
  /// Wall ms since the epoch for stamps; injectable for tests. Empty: system_clock.
  std::function<std::int64_t()> wall_ms;
};

struct RegisterOptions {
  /// The sweep marks the row blocked when it heartbeats without progress() for a window.
  bool expects_progress = false;
  /// This row's heartbeat period; 0: the registry's.
  std::chrono::milliseconds heartbeat_period{0};
};

using ComponentLabels = std::map<std::string, std::string>;
using ComponentListener = std::function<void(const ComponentTransition&)>;

namespace detail {
struct RegistryState;
struct ComponentSlot;
struct ListenerEntry;
}  // namespace detail

/// The owner's hold on one row. Move-only. Destroying it, or reset(), marks the row
/// `stopped` ("handle released") and detaches it; the row stays visible until remove()
/// or forget_stopped_after. May outlive the registry (its calls then touch only the slot).
class EDGERT_API ComponentHandle {
 public:
  ComponentHandle() = default;
  ComponentHandle(ComponentHandle&&) noexcept;
  ComponentHandle& operator=(ComponentHandle&&) noexcept;
  ~ComponentHandle();

  /// Any thread (meant for the loop doing the work); never blocks, lock-free, no
  /// allocation. After remove() the first beat re-creates the row (takes the mutex
  /// once). No-op on an empty handle.
  void beat() noexcept;
  /// As beat(), and records that work was done (clears `blocked`).
  void progress() noexcept;
  /// Any thread; takes the mutex. Declares a status (not starting, stalled or
  /// blocked: those throw std::invalid_argument). Listeners hear the change.
  void set_status(ComponentStatus status, std::string_view reason);
  /// Any thread; takes the mutex. Keeps the message and its wall time; no transition.
  void report_error(std::string_view message);
  /// Any thread; takes the mutex. Counts one restart of this component.
  void add_restart();
  /// Any thread; takes the mutex. Marks the row stopped and empties the handle.
  void reset() noexcept;

  [[nodiscard]] bool valid() const noexcept { return slot_ != nullptr; }
  /// The row's id ("" when empty).
  [[nodiscard]] const std::string& id() const noexcept;

 private:
  friend class ComponentRegistry;
  ComponentHandle(std::shared_ptr<detail::RegistryState> state, std::shared_ptr<detail::ComponentSlot> slot) noexcept;
  std::shared_ptr<detail::RegistryState> state_;
  std::shared_ptr<detail::ComponentSlot> slot_;
};

/// Keeps a listener subscribed; destroying or reset()ting it unsubscribes. Move-only.
class EDGERT_API ListenerRegistration {
 public:
  ListenerRegistration() = default;
  ListenerRegistration(ListenerRegistration&&) noexcept;
  ListenerRegistration& operator=(ListenerRegistration&&) noexcept;
  ~ListenerRegistration();
  /// Any thread; blocks while the listener is being called, so it is never called
  /// after this returns. Deadlocks if called from inside that same listener.
  void reset() noexcept;

 private:
  friend class ComponentRegistry;
  ListenerRegistration(std::weak_ptr<detail::RegistryState> state, std::shared_ptr<detail::ListenerEntry> entry) noexcept;
  std::weak_ptr<detail::RegistryState> state_;
  std::shared_ptr<detail::ListenerEntry> entry_;
};

/// Per-status row counts, indexed by static_cast<size_t>(ComponentStatus).
using ComponentCounts = std::array<std::size_t, kComponentStatusCount>;

/// The registry's own counters (all since construction).
struct RegistryStats {
  std::uint64_t sweeps = 0;
  std::uint64_t transitions = 0;
  std::uint64_t listener_errors = 0;  ///< listener calls that threw
  std::uint64_t recreated = 0;        ///< rows re-created from a heartbeat
  std::uint64_t forgotten = 0;        ///< stopped rows dropped after forget_stopped_after
};

class EDGERT_API ComponentRegistry {
 public:
  using Options = ComponentRegistryOptions;

  /// Any thread. Throws std::invalid_argument for a period <= 0.
  explicit ComponentRegistry(Options options = {});
  /// Handles and listener registrations may outlive the registry.
  ~ComponentRegistry();
  ComponentRegistry(const ComponentRegistry&) = delete;
  ComponentRegistry& operator=(const ComponentRegistry&) = delete;

  /// "<kind>/<name>". Any thread; never blocks.
  [[nodiscard]] static std::string make_id(std::string_view kind, std::string_view name);

  /// Any thread; takes the mutex. Adds the row `starting` (its clocks start now), or
  /// takes over an existing row without a handle (a re-created part: restarts, beats
  /// and created_ms are kept). Throws std::invalid_argument for an empty name or kind,
  /// a negative period, or an id a live handle already owns.
  [[nodiscard]] ComponentHandle register_component(std::string name, std::string kind, ComponentLabels labels = {},
                                                   RegisterOptions options = {});

  /// Any thread; takes the mutex. As ComponentHandle::set_status, for a row by id
  /// (e.g. a supervisor's). False when no such row.
  bool set_status(std::string_view id, ComponentStatus status, std::string_view reason);
  /// Any thread; takes the mutex. Drops the row; a later beat of its handle re-creates
  /// it. False when no such row. No transition is sent for the removal itself.
  bool remove(std::string_view id);

  /// Any thread (the sweeper timer's); takes the mutex for one pass over the rows, then
  /// delivers the transitions it found. Never throws except std::bad_alloc.
  void sweep();

  /// Any thread; takes the mutex. Rows sorted by id.
  [[nodiscard]] std::vector<ComponentInfo> snapshot() const;
  /// Any thread; takes the mutex.
  [[nodiscard]] std::optional<ComponentInfo> find(std::string_view id) const;
  /// Any thread; takes the mutex.
  [[nodiscard]] ComponentCounts counts() const;
  /// Any thread; never blocks.
  [[nodiscard]] RegistryStats stats() const noexcept;

  /// Any thread. Calls `fn` for every later transition, in order, on the thread that
  /// caused it (the sweeper's, or a set_status caller's) and outside the registry's
  /// mutex: it may call the registry (what it causes is delivered after it returns).
  /// One delivery runs at a time; a caller whose transition is queued behind another's
  /// delivery returns before its listeners ran. An exception is caught and counted
  /// (listener_errors); the other listeners still run. Throws std::invalid_argument for
  /// an empty fn.
  [[nodiscard]] ListenerRegistration add_listener(ComponentListener fn);

 private:
  std::shared_ptr<detail::RegistryState> state_;
};

}  // namespace edgert
