// SystemRuntime: ordered start/stop of a node's components around one shared
// event loop (docs/runtime.md, "SystemRuntime").
//
// Components register LifecycleHooks in a Stage. start() follows dependencies, so
// nothing starts before what it feeds:
//   config -> build -> storage -> comms -> outputs -> [heartbeat] -> processing
//   -> acquisition -> triggers
// and stop() is the exact reverse, with the drain step where queues are turned into
// terminal results while the outputs still run:
//   triggers -> acquisition -> processing -> [drain] -> [heartbeat] -> outputs -> comms
//   -> storage -> build -> config -> shutdown_loop()
// Within a stage hooks start in registration order and stop in reverse.
//
// The loop: one boost::asio::io_context on one thread named "edgert-loop", created
// with the runtime, for timers and I/O (heartbeat, sweepers, retries). Only
// shutdown_loop() closes it; every stop hook runs while it is still open. Plugin
// calls never run on it.
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

namespace edgert {

namespace detail {
struct RuntimeAccess;  // src/core: lets edgert's own components reach the loop
}

/// Declared in start order; stop() runs them in reverse.
enum class Stage : std::uint8_t {
  config,       // configuration holders
  build,        // wiring: plugin loading, object graphs
  storage,      // durable state (the mailbox, the registry): first up, last down
  comms,        // transports that read storage (MQTT)
  outputs,      // what results flow into (OutputManager, sinks)
  processing,   // serving and business plugin workers
  acquisition,  // capture sources
  triggers,     // what makes sources capture
};

/// "config", "build", "storage", "comms", "outputs", "processing", "acquisition", "triggers".
EDGERT_API const char* to_string(Stage stage) noexcept;

/// What a component gives the runtime. Every function may be empty.
struct LifecycleHooks {
  std::string name;
  /// Thread: start()'s caller. Blocking: may block while the component opens (files,
  /// plugins, a database); a stop() from another thread waits for it to return, so it
  /// should be bounded. Errors: return the component's own Status (its ErrorCode and
  /// message reach start()'s caller unchanged, and Node::start's); an ok Status means
  /// started. On an error, what already started is stopped in reverse order (not this
  /// hook: it cleans up after itself before returning). A hook that throws fails
  /// start() too, reported as `internal` naming the component ("start of 'name'
  /// (stage) threw: ..."), since a throw is a bug, not a reported failure. A start
  /// hook that calls stop() counts as started: it is stopped first, and start()
  /// returns `closed`, or the hook's error if it returns one.
  std::function<Status()> start;
  /// Thread: stop()'s caller (or the helper thread of a stop() called on the loop),
  /// while the loop still runs. Blocking: must be bounded (BaseWorker::stop is); a
  /// stage running past RuntimeOptions::stop_stage_warn is reported at WARNING (it
  /// is not interrupted). Errors: none to return; the component logs its own, and an
  /// exception is logged at ERROR naming the component and the next hook still runs.
  std::function<void()> stop;
  /// Thread and errors as `stop`. Called in the drain step, after every processing and
  /// acquisition hook stopped and before outputs stop: turn queued items into
  /// terminal results. Returns how many items it drained. Must be bounded.
  std::function<std::size_t()> drain;
};

struct HeartbeatTick {
  std::uint64_t seq = 0;                          // 1, 2, 3, ...
  std::chrono::steady_clock::duration uptime{};   // since start() began
  std::chrono::system_clock::time_point wall{};
};

struct RuntimeOptions {
  /// Time between heartbeat ticks; 0 disables the heartbeat; otherwise within
  /// [min_heartbeat_interval, max_heartbeat_interval] (start() refuses other values
  /// with invalid_argument naming `heartbeat_interval`). The default is the node's
  /// (node.heartbeat_interval_ms, docs/configuration.md).
  std::chrono::milliseconds heartbeat_interval{10000};
  /// Receives each tick on the loop thread; must not block. Never called once the
  /// stop step for the heartbeat has returned (before any outputs hook stops).
  std::function<void(const HeartbeatTick&)> heartbeat_sink;
  std::chrono::milliseconds stop_stage_warn{5000};  // a stop stage slower than this is logged at WARNING
  std::chrono::milliseconds task_timeout{2000};   // shutdown_loop waits this long for tasks
  std::chrono::milliseconds loop_timeout{2000};   // and this long for the loop thread

  // The runtime can tick every millisecond (tests do); a Node narrows this to
  // [10 ms, 24 h] (node.heartbeat_interval_ms). Slower than a day looks dead.
  static constexpr std::chrono::milliseconds min_heartbeat_interval{1};
  static constexpr std::chrono::milliseconds max_heartbeat_interval{86400000};
};

/// Any thread; never blocks. invalid_argument naming the field when start() would
/// refuse these options (a heartbeat_interval out of range; a negative timeout).
EDGERT_API Status validate(const RuntimeOptions& options);

namespace detail {
struct PeriodicState;
}

/// A periodic task started by SystemRuntime::spawn_periodic. Copyable; all copies
/// refer to one task. Dropping every handle does not cancel the task (shutdown_loop
/// does); an empty handle means the loop was already closed.
class EDGERT_API PeriodicHandle {
 public:
  PeriodicHandle() = default;
  /// Any thread; never throws. After it returns no call of the task's fn begins, and
  /// fn is released. If a call is running on the loop it waits for that call to end
  /// (fn must not block), except when called from inside fn itself, which returns at
  /// once. Idempotent; safe after the runtime is gone.
  void cancel() noexcept;
  /// Any thread; never blocks. False once cancelled or the loop closed.
  bool active() const noexcept;
  explicit operator bool() const noexcept { return state_ != nullptr; }

 private:
  friend class SystemRuntime;
  explicit PeriodicHandle(std::shared_ptr<detail::PeriodicState> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::PeriodicState> state_;
};

class EDGERT_API SystemRuntime {
 public:
  /// Creates the loop and its thread. Throws std::system_error if no thread can be made.
  explicit SystemRuntime(RuntimeOptions options = {});
  /// Calls stop() (bounded).
  ~SystemRuntime();
  SystemRuntime(const SystemRuntime&) = delete;
  SystemRuntime& operator=(const SystemRuntime&) = delete;

  /// Any thread, before start(). Returns invalid_argument once start() was called.
  Status add_participant(Stage stage, LifecycleHooks hooks);

  /// Any thread; blocks while hooks run. Idempotent: ok if already running. Returns
  /// the first failing hook's Status unchanged (after stopping what started; the
  /// component is named in the ERROR log line), `internal` naming the component for
  /// a hook that threw, invalid_argument for unusable RuntimeOptions, or `closed`
  /// after stop() (also when a start hook or another thread called stop() while it
  /// ran). Whatever it returns other than ok, nothing it started is left running,
  /// except while a stop() another thread began meanwhile still runs: that stop()
  /// waited for start() and does the stopping as soon as start() returns.
  Status start();

  /// Any thread; as bounded as the stop hooks, plus task_timeout and loop_timeout.
  /// Idempotent. From inside a stop hook it returns at once; from inside a start
  /// hook it stops what started (that hook first) and closes the loop before
  /// returning; a concurrent stop() waits for the first. On the loop thread (a timer
  /// or heartbeat callback) it starts the stop on a helper thread and returns at
  /// once (logged at WARNING); the destructor waits for that stop.
  void stop();

  /// Any thread; never blocks for long. True between a successful start() and stop().
  bool running() const noexcept;

  /// Any thread; never blocks. Runs fn on the loop thread; the future carries its
  /// result or exception, or a std::runtime_error if the loop is already closed.
  template <class F>
  auto run_async(F&& fn) -> std::future<std::invoke_result_t<std::decay_t<F>>> {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    auto future = task->get_future();
    if (!post([task] { (*task)(); })) {
      std::promise<R> failed;
      failed.set_exception(std::make_exception_ptr(std::runtime_error("edgert loop is closed")));
      return failed.get_future();
    }
    return future;
  }

  /// Any thread; never blocks. Runs fn(stop_token) on its own named thread, tracked by
  /// the runtime: shutdown_loop() requests stop and waits up to task_timeout; a task
  /// still running then is reported at INFO and abandoned (its thread is detached, so
  /// fn must only touch state it owns). Returns false if the loop is closed.
  bool spawn_background_task(std::string name, std::function<void(std::stop_token)> fn);

  /// Any thread; never blocks. Calls fn on the loop thread every `period` (fixed
  /// rate, no drift; a late call is not repeated to catch up) until the handle's
  /// cancel() or shutdown_loop(). fn must not block; exceptions are logged. Returns
  /// an empty handle if the loop is closed or period is not positive.
  PeriodicHandle spawn_periodic(std::string name, std::chrono::nanoseconds period, std::function<void()> fn);

  /// Any thread except the loop's; bounded by task_timeout + loop_timeout. Cancels
  /// periodic tasks, stops and awaits background tasks, stops the loop and joins its
  /// thread. Pending tasks are reported at INFO, a clean close at DEBUG. Idempotent;
  /// stop() calls it last.
  void shutdown_loop();

  /// Background tasks still running. Any thread.
  std::size_t pending_tasks() const;
  /// Heartbeat ticks emitted so far. Any thread.
  std::uint64_t heartbeats() const noexcept;

 private:
  friend struct detail::RuntimeAccess;
  struct Impl;
  bool post(std::function<void()> fn);
  void stop_locked();
  void stop_during_start();
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgert
