// BaseWorker: one named thread running a run(std::stop_token) function, with an
// idempotent start(), a bounded stop(), and a thread that owns what it uses.
// Guide: docs/runtime.md ("Workers").
//
// Lifecycle: idle --start()--> running --stop()--> stopping --run() returns--> stopped
//                                  \--run() throws--> failed
//            idle/stopped/failed --start(), no thread could be created--> failed
// A worker whose run() returned by itself is `stopped`; start() may be called again
// after stopped or failed and runs a fresh thread with a fresh stop token.
//
// Ownership: from start() until run() returns, the worker thread holds its own
// references to the run and wake functions and to `keep_alive`, and drops them on the
// worker thread right after run() returns. So an owner may destroy a BaseWorker whose
// run() ignores stop: stop() gives up after join_timeout, the thread is detached, and
// everything run() uses (captured by value or held in keep_alive, e.g. a plugin
// instance and its library) stays alive until run() is done with it.
// Capture by reference only what outlives every run() (or nothing).
//
// Composition, not inheritance: BaseWorker is final. Components pass functions, or
// subclass WorkerTask and hand it over as a shared_ptr; no subclass destructor can
// run while the thread is inside run().
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>
#include <edgert/worker_pulse.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

namespace edgert {

enum class WorkerState : std::uint8_t { idle, running, stopping, stopped, failed };

/// Any thread; never blocks. "idle", "running", "stopping", "stopped", "failed".
EDGERT_API const char* to_string(WorkerState state) noexcept;

/// Runs on the worker thread. Return soon after `stop` is requested; sleep with
/// wait_for_stop() so stop() wakes you at once. Exceptions are caught (state `failed`).
using WorkerRunFn = std::function<void(std::stop_token stop)>;
/// Runs on the thread calling stop(), after the token is stopped, concurrently with
/// run(): wake whatever run() blocks on (close its queue, shut its socket). Must not
/// block; may be called more than once. Exceptions are caught and logged.
using WorkerWakeFn = std::function<void()>;
/// Creates the worker's thread running `body`. Throws (e.g. std::system_error) or
/// returns a non-joinable thread if it cannot; start() then reports the failure.
using WorkerThreadFactory = std::function<std::thread(std::function<void()> body)>;

struct WorkerOptions {
  /// Any thread; never blocks. `WorkerOptions{"cam-front", std::chrono::milliseconds(500)}`.
  /// (A constructor, not an aggregate, so callers' -Wextra stays quiet about `spawn`.)
  WorkerOptions() = default;
  explicit WorkerOptions(std::string worker_name,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(2000),
                         WorkerThreadFactory factory = {})
      : name(std::move(worker_name)), join_timeout(timeout), spawn(std::move(factory)) {}

  /// Names the thread (first 15 bytes, visible in `top -H`) and log lines.
  std::string name = "worker";
  /// How long one stop() call waits for run() to return (negative counts as 0).
  std::chrono::milliseconds join_timeout{2000};
  /// Empty: std::thread. Must run `body` on a new thread and return that thread
  /// joinable. Tests inject failures here; hosts may pin or tag threads.
  WorkerThreadFactory spawn;
  /// Optional: the worker's heartbeat (edgert/worker_pulse.hpp). Installed as the
  /// thread's current pulse for the whole run(): beaten once as run() starts, by
  /// wait_for_stop() while it sleeps and by worker_beat()/worker_progress() where the
  /// loop turns; declared "failed" with the exception's text when run() throws. The
  /// thread holds its own reference until run() returns.
  std::shared_ptr<WorkerPulse> pulse;
};

/// The subclassing form: override run() (and wake() if run() blocks on something
/// other than wait_for_stop()). Hand it to BaseWorker as a shared_ptr: the thread
/// keeps it alive until run() returns, so it is never destroyed under its own run().
class EDGERT_API WorkerTask {
 public:
  virtual ~WorkerTask();
  /// Worker thread; same contract as WorkerRunFn.
  virtual void run(std::stop_token stop) = 0;
  /// Stopping thread; same contract as WorkerWakeFn. The default does nothing.
  virtual void wake();
};

/// Worker thread (any thread holding `stop`): sleeps up to `timeout`, returning at once
/// when stop is requested. Returns true if stop was requested. Never throws. On a thread
/// with a pulse (WorkerOptions::pulse) it beats before sleeping and every
/// kPulseSleepSlice while it sleeps: a worker waiting by design is alive.
EDGERT_API bool wait_for_stop(const std::stop_token& stop, std::chrono::nanoseconds timeout) noexcept;
/// How often wait_for_stop() beats a pulse while it sleeps.
inline constexpr std::chrono::milliseconds kPulseSleepSlice{100};

class EDGERT_API BaseWorker final {
 public:
  /// Any thread; never blocks, never throws except std::bad_alloc. An empty `run`
  /// is reported by start(). `keep_alive` is held by the thread as described above;
  /// it must not own this worker (a cycle that is never freed).
  BaseWorker(WorkerOptions options, WorkerRunFn run, WorkerWakeFn wake = {},
             std::shared_ptr<void> keep_alive = {});
  /// Any thread; never blocks. A null `task` is reported by start().
  BaseWorker(WorkerOptions options, std::shared_ptr<WorkerTask> task);
  /// Owner's thread; blocks at most join_timeout. Calls stop() (so wake runs first);
  /// if run() is still busy after that, logs an ERROR and detaches the thread, which
  /// keeps what it owns alive until run() returns.
  ~BaseWorker();
  BaseWorker(const BaseWorker&) = delete;
  BaseWorker& operator=(const BaseWorker&) = delete;

  /// Any thread; blocks only while a concurrent stop() waits (at most join_timeout).
  /// ok: a thread is running run() (a new one, or the one already running: start()
  /// is idempotent). Errors, each leaving no new thread:
  /// io_error when the thread cannot be created (state `failed`, error() says why);
  /// again while a timed-out stop() still waits for the previous run() (`stopping`);
  /// invalid_argument when there is no run function or task (state unchanged).
  [[nodiscard]] Status start();

  /// Any thread, any number of times, concurrently too; blocks at most join_timeout
  /// per call. Requests stop, calls wake and joins the thread. ok: no thread is left
  /// (or none ever ran). timeout: run() has not returned; logged at WARNING, the
  /// state stays `stopping` and a later stop() waits again. Called from run() itself
  /// it requests stop, does not wait, and returns `again`.
  [[nodiscard]] Status stop();

  /// Any thread; never blocks.
  WorkerState state() const noexcept;
  /// Any thread; never blocks for long. Why the worker is `failed` (the exception
  /// escaping run(), or why no thread could be created); "" in other states.
  std::string error() const;
  /// Any thread; never blocks. How often run() threw or no thread could be created.
  std::uint64_t failures() const noexcept;
  /// Any thread; never blocks.
  const std::string& name() const noexcept;
  /// Any thread; never blocks.
  std::chrono::milliseconds join_timeout() const noexcept;

 private:
  struct Body;
  struct Control;
  const std::string name_;
  const std::chrono::milliseconds join_timeout_;
  const WorkerThreadFactory spawn_;
  std::shared_ptr<const Body> body_;
  std::shared_ptr<Control> control_;
};

}  // namespace edgert
