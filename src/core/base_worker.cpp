#include <edgert/base_worker.hpp>

#include "core/log.hpp"
#include "core/thread_name.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

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

// Shared between the BaseWorker and its thread, so the thread's epilogue never
// touches a destroyed worker (see ~BaseWorker's detach path).
struct BaseWorker::Control {
  std::mutex lifecycle;  // serializes start()/stop()/destructor
  std::mutex mu;         // guards the fields below
  std::condition_variable_any cv;
  std::thread thread;
  std::stop_source source;
  bool exited = true;
  std::string error;
  std::atomic<WorkerState> state{WorkerState::idle};
  std::atomic<std::uint64_t> failures{0};
};

BaseWorker::BaseWorker(std::string name, std::chrono::milliseconds join_timeout)
    : name_(std::move(name)), join_timeout_(join_timeout), control_(std::make_shared<Control>()) {}

BaseWorker::~BaseWorker() {
  stop();
  std::lock_guard lifecycle(control_->lifecycle);
  if (control_->thread.joinable()) {
    detail::log().error("worker '{}': run() still busy at destruction; detaching its thread", name_);
    control_->thread.detach();
  }
}

bool BaseWorker::start() {
  auto& c = *control_;
  std::lock_guard lifecycle(c.lifecycle);
  {
    std::unique_lock lk(c.mu);
    if (c.thread.joinable()) {
      if (!c.exited) return false;  // running or stopping: idempotent
      lk.unlock();
      c.thread.join();  // run() returned on its own; reap it before restarting
      lk.lock();
    }
    c.source = std::stop_source{};
    c.exited = false;
    c.error.clear();
    c.state = WorkerState::running;
  }
  std::stop_token token = c.source.get_token();
  c.thread = std::thread([this, ctl = control_, token, name = name_] {
    detail::set_current_thread_name(name);
    detail::log().info("worker '{}' started", name);
    std::string error;
    bool failed = false;
    try {
      run(token);
    } catch (const std::exception& e) {
      failed = true;
      error = e.what();
    } catch (...) {
      failed = true;
      error = "unknown exception";
    }
    // From here on only `ctl` is touched: the worker may already be gone.
    std::lock_guard lk(ctl->mu);
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
  });
  return true;
}

bool BaseWorker::stop() {
  auto& c = *control_;
  std::lock_guard lifecycle(c.lifecycle);
  std::unique_lock lk(c.mu);
  if (!c.thread.joinable()) return true;  // never started, or already joined
  if (c.state == WorkerState::running) c.state = WorkerState::stopping;
  c.source.request_stop();
  lk.unlock();
  on_stop_requested();
  lk.lock();
  const auto t0 = std::chrono::steady_clock::now();
  if (!c.cv.wait_for(lk, join_timeout_, [&] { return c.exited; })) {
    detail::log().warn("worker '{}': run() did not return within {} ms of stop(); moving on",
                       name_, join_timeout_.count());
    return false;
  }
  lk.unlock();
  c.thread.join();
  detail::log().debug("worker '{}' stopped in {} us", name_,
                      std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - t0).count());
  return true;
}

WorkerState BaseWorker::state() const noexcept { return control_->state.load(); }

std::string BaseWorker::error() const {
  std::lock_guard lk(control_->mu);
  return control_->error;
}

std::uint64_t BaseWorker::failures() const noexcept { return control_->failures.load(); }

bool BaseWorker::wait_for_stop(std::chrono::nanoseconds timeout) {
  std::unique_lock lk(control_->mu);
  const std::stop_token token = control_->source.get_token();
  control_->cv.wait_for(lk, token, timeout, [] { return false; });
  return token.stop_requested();
}

}  // namespace edgert
