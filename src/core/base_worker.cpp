#include <edgert/base_worker.hpp>

#include "core/log.hpp"
#include "core/thread_name.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

namespace edgert {

const char* to_string(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::idle: return "idle";
    case WorkerState::running: return "running";
    case WorkerState::stopping: return "stopping";
    case WorkerState::stopped: return "stopped";
    case WorkerState::failed: return "failed";
  }
  return "unknown";
}

WorkerTask::~WorkerTask() = default;
void WorkerTask::wake() {}

WorkerPulse::~WorkerPulse() = default;

namespace {
// The pulse of the BaseWorker running on this thread (set for the whole run()).
thread_local WorkerPulse* t_pulse = nullptr;
}  // namespace

WorkerPulse* current_worker_pulse() noexcept { return t_pulse; }

void worker_beat() noexcept {
  if (t_pulse) t_pulse->beat();
}

void worker_progress() noexcept {
  if (t_pulse) t_pulse->progress();
}

void worker_declare(std::string_view status, std::string_view reason) noexcept {
  if (t_pulse) t_pulse->declare(status, reason);
}

bool wait_for_stop(const std::stop_token& stop, std::chrono::nanoseconds timeout) noexcept {
  WorkerPulse* pulse = t_pulse;
  try {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lk(m);
    // The stop_callback inside wait_for notifies cv; its destructor waits for a
    // callback already running on the stopping thread, so the locals outlive it.
    if (!pulse) {
      cv.wait_for(lk, stop, timeout, [] { return false; });
    } else {
      // Sleeping by design is being alive: beat every slice (an atomic store).
      const auto end = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        pulse->beat();
        const auto now = std::chrono::steady_clock::now();
        if (now >= end || stop.stop_requested()) break;
        const auto slice = std::min<std::chrono::nanoseconds>(end - now, kPulseSleepSlice);
        if (cv.wait_for(lk, stop, slice, [] { return false; })) break;
      }
    }
  } catch (...) {
    // Locking a fresh local mutex cannot fail in practice; report what we know.
  }
  return stop.stop_requested();
}

// What the thread runs and owns; shared (immutable) by the worker and each thread.
struct BaseWorker::Body {
  WorkerRunFn run;
  WorkerWakeFn wake;
  std::shared_ptr<void> keep_alive;
  std::shared_ptr<WorkerPulse> pulse;  // may be null
};

// Shared between the BaseWorker and its thread, so the thread's epilogue never
// touches a destroyed worker (see ~BaseWorker's detach path).
struct BaseWorker::Control {
  std::mutex mu;  // guards every field below except the atomics
  std::condition_variable cv;  // `busy` released, or `exited` set
  bool busy = false;           // a start()/stop()/destructor owns `thread` and `source`
  std::thread thread;
  std::stop_source source;
  bool exited = true;          // the current thread (if any) has left run() and dropped its Body
  std::string error;
  std::atomic<WorkerState> state{WorkerState::idle};
  std::atomic<std::uint64_t> failures{0};
};

namespace {

// Holds Control::busy for one start()/stop()/destructor. acquire*() take a lock on
// Control::mu; the destructor locks it itself, so destroy the Turn after that lock.
template <class C>
class Turn {
 public:
  explicit Turn(C& c) : c_(c) {}
  bool acquire(std::unique_lock<std::mutex>& lk) {
    c_.cv.wait(lk, [&] { return !c_.busy; });
    return held_ = c_.busy = true;
  }
  bool acquire_until(std::unique_lock<std::mutex>& lk, std::chrono::steady_clock::time_point deadline) {
    if (!c_.cv.wait_until(lk, deadline, [&] { return !c_.busy; })) return false;
    return held_ = c_.busy = true;
  }
  ~Turn() {
    if (!held_) return;
    std::lock_guard lk(c_.mu);
    c_.busy = false;
    c_.cv.notify_all();
  }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  C& c_;
  bool held_ = false;
};

}  // namespace

BaseWorker::BaseWorker(WorkerOptions options, WorkerRunFn run, WorkerWakeFn wake,
                       std::shared_ptr<void> keep_alive)
    : name_(std::move(options.name)),
      join_timeout_(std::max(options.join_timeout, std::chrono::milliseconds(0))),
      spawn_(std::move(options.spawn)),
      body_(run ? std::make_shared<const Body>(
                      Body{std::move(run), std::move(wake), std::move(keep_alive), std::move(options.pulse)})
                : nullptr),
      control_(std::make_shared<Control>()) {}

BaseWorker::BaseWorker(WorkerOptions options, std::shared_ptr<WorkerTask> task)
    : BaseWorker(std::move(options),
                 task ? WorkerRunFn([t = task.get()](std::stop_token stop) { t->run(std::move(stop)); })
                      : WorkerRunFn(),
                 task ? WorkerWakeFn([t = task.get()] { t->wake(); }) : WorkerWakeFn(),
                 task) {}  // the raw pointers are valid while the Body holds `task`

BaseWorker::~BaseWorker() {
  (void)stop();
  auto& c = *control_;
  Turn turn(c);  // declared first: released after `lk` unlocks
  std::unique_lock lk(c.mu);
  turn.acquire(lk);
  if (!c.thread.joinable()) return;
  if (c.exited) {
    lk.unlock();
    c.thread.join();
    return;
  }
  if (c.thread.get_id() != std::this_thread::get_id()) {
    detail::log().error(
        "worker '{}': run() still busy at destruction; detaching its thread, which keeps what "
        "it owns alive until run() returns",
        name_);
  }
  c.thread.detach();
}

Status BaseWorker::start() {
  if (!body_) {
    return {ErrorCode::invalid_argument, "worker '" + name_ + "': no run function or task to start"};
  }
  auto& c = *control_;
  Turn turn(c);  // declared first: released after `lk` unlocks
  std::unique_lock lk(c.mu);
  turn.acquire(lk);
  if (c.thread.joinable()) {
    if (!c.exited) {
      if (c.state == WorkerState::running) return {};  // idempotent
      return {ErrorCode::again, "worker '" + name_ +
                                    "': the previous run() has not returned since stop(); try again later"};
    }
    lk.unlock();
    c.thread.join();  // run() returned on its own; reap it before restarting
    lk.lock();
  }
  c.source = std::stop_source{};
  c.error.clear();

  // `mu` stays locked while the thread is created: its epilogue needs `mu`, so it
  // cannot report stopped/failed before the state below says running.
  auto main = [ctl = control_, body = body_, token = c.source.get_token(), name = name_]() mutable {
    detail::set_current_thread_name(name);
    detail::log().info("worker '{}' started", name);
    std::string error;
    bool failed = false;
    // The pulse is installed for the whole run(): worker_beat() and wait_for_stop() reach it.
    WorkerPulse* const pulse = body->pulse.get();
    t_pulse = pulse;
    if (pulse) pulse->beat();
    try {
      body->run(std::move(token));
    } catch (const std::exception& e) {
      failed = true;
      error = e.what();
    } catch (...) {
      failed = true;
      error = "unknown exception";
    }
    if (pulse && failed) pulse->declare("failed", "run() threw: " + error);
    t_pulse = nullptr;
    // Drop run, wake and keep_alive here, before anyone learns run() returned: when
    // the worker is gone (detached thread) this is the last reference.
    body.reset();
    // From here on only `ctl` is touched: the worker may already be gone.
    std::lock_guard g(ctl->mu);
    if (failed) {
      ctl->failures.fetch_add(1);
      detail::log().error("worker '{}' failed: run() threw: {}", name, error);
      ctl->error = std::move(error);
      ctl->state = WorkerState::failed;
    } else {
      ctl->state = WorkerState::stopped;
    }
    ctl->exited = true;
    ctl->cv.notify_all();
  };

  std::thread thread;
  std::string why;
  try {
    thread = spawn_ ? spawn_(std::move(main)) : std::thread(std::move(main));
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "unknown exception";
  }
  if (!thread.joinable()) {
    if (why.empty()) why = "the thread factory returned no thread";
    c.error = "cannot create thread: " + why;
    c.failures.fetch_add(1);
    c.state = WorkerState::failed;
    detail::log().error("worker '{}' did not start: {}", name_, c.error);
    return {ErrorCode::io_error, "worker '" + name_ + "': " + c.error};
  }
  c.thread = std::move(thread);
  c.exited = false;
  c.state = WorkerState::running;
  return {};
}

Status BaseWorker::stop() {
  auto& c = *control_;
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + join_timeout_;
  auto timed_out = [&] {
    detail::log().warn("worker '{}': run() did not return within {} ms of stop(); moving on", name_,
                       join_timeout_.count());
    return Status(ErrorCode::timeout, "worker '" + name_ + "': run() did not return within " +
                                          std::to_string(join_timeout_.count()) + " ms of stop()");
  };
  Turn turn(c);  // declared first: released after `lk` unlocks
  std::unique_lock lk(c.mu);
  if (!turn.acquire_until(lk, deadline)) return timed_out();
  if (!c.thread.joinable()) return {};  // never started, or already joined
  const bool self = c.thread.get_id() == std::this_thread::get_id();
  if (!c.exited) {
    if (c.state == WorkerState::running) c.state = WorkerState::stopping;
    c.source.request_stop();
    lk.unlock();
    if (body_ && body_->wake) {
      try {
        body_->wake();
      } catch (const std::exception& e) {
        detail::log().error("worker '{}': wake threw: {}", name_, e.what());
      } catch (...) {
        detail::log().error("worker '{}': wake threw a non-standard exception", name_);
      }
    }
    if (self) {
      return {ErrorCode::again, "worker '" + name_ +
                                    "': stop() called from its own run(); stop requested, not joined"};
    }
    lk.lock();
    if (!c.cv.wait_until(lk, deadline, [&] { return c.exited; })) return timed_out();
  }
  if (self) return {};  // exited: the thread is past run(), and cannot join itself
  lk.unlock();
  c.thread.join();
  detail::log().debug("worker '{}' stopped in {} us", name_,
                      std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - t0).count());
  return {};
}

WorkerState BaseWorker::state() const noexcept { return control_->state.load(); }

std::string BaseWorker::error() const {
  std::lock_guard lk(control_->mu);
  return control_->error;
}

std::uint64_t BaseWorker::failures() const noexcept { return control_->failures.load(); }

const std::string& BaseWorker::name() const noexcept { return name_; }

std::chrono::milliseconds BaseWorker::join_timeout() const noexcept { return join_timeout_; }

}  // namespace edgert
