// SystemRuntime: ordered start/stop of a node's components around one shared
// event loop (seed 004 §6-7, DESIGN.md "Threads and ownership").
//
// Components register LifecycleHooks in a Stage. start() runs the stages in
//   config -> build -> processing -> acquisition -> comms -> outputs -> heartbeat -> triggers
// and stop() runs
//   triggers -> acquisition -> processing -> drain -> heartbeat -> outputs -> comms
//   -> build/config teardown -> shutdown_loop()
// so producers stop before consumers, queues are drained into terminal results while
// the outputs still run, and the loop closes last. Within a stage hooks start in
// registration order and stop in reverse.
//
// The loop: one boost::asio::io_context on one thread named "edgert-loop", created
// with the runtime, for timers and I/O (heartbeat, sweepers, retries). Only
// shutdown_loop() closes it. Plugin calls never run on it.
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

enum class Stage : std::uint8_t { config, build, processing, acquisition, comms, outputs, triggers };

/// "config", "build", "processing", "acquisition", "comms", "outputs", "triggers".
EDGERT_API const char* to_string(Stage stage) noexcept;

/// What a component gives the runtime. Every function may be empty.
struct LifecycleHooks {
  std::string name;
  /// Called by start() on the caller's thread. Throwing fails start(): what already
  /// started is stopped in stop order and start() returns the error.
  std::function<void()> start;
  /// Called by stop(). Must be bounded (BaseWorker::stop is); a stage running past
  /// RuntimeOptions::stage_timeout is reported at WARNING. Exceptions are logged.
  std::function<void()> stop;
  /// Called in the drain step, after every processing and acquisition hook stopped
  /// and before outputs stop: turn queued items into terminal results. Returns how
  /// many items it drained.
  std::function<std::size_t()> drain;
};

struct HeartbeatTick {
  std::uint64_t seq = 0;                          // 1, 2, 3, ...
  std::chrono::steady_clock::duration uptime{};   // since start() began
  std::chrono::system_clock::time_point wall{};
};

struct RuntimeOptions {
  double heartbeat_hz = 1.0;  // 0 disables the heartbeat
  /// Receives each tick on the loop thread; must not block.
  std::function<void(const HeartbeatTick&)> heartbeat_sink;
  std::chrono::milliseconds stage_timeout{5000};  // per stop stage, WARNING beyond
  std::chrono::milliseconds task_timeout{2000};   // shutdown_loop waits this long for tasks
  std::chrono::milliseconds loop_timeout{2000};   // and this long for the loop thread
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
  /// the first failing hook's error (after stopping what started), or `closed` after stop().
  Status start();

  /// Any thread; bounded by the stage and task timeouts. Idempotent; a stop() from
  /// inside a hook returns at once; a concurrent stop() waits for the first.
  void stop();

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
  /// rate, no drift) until shutdown_loop(). fn must not block; exceptions are logged.
  bool spawn_periodic(std::string name, std::chrono::nanoseconds period, std::function<void()> fn);

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
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgert
