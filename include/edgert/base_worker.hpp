// BaseWorker: one named thread running a subclass's run() loop (seed 004 §2, §7).
//
// Lifecycle: idle --start()--> running --stop()--> stopped
//                                  \--run() throws--> failed
// A worker whose run() returned by itself is `stopped`; start() may be called again
// after stopped or failed and runs a fresh thread.
//
// Subclass contract:
//  - override run(std::stop_token) and return soon after the token is stopped;
//    sleep with wait_for_stop() so stop() wakes you at once;
//  - if run() blocks on something else (a queue, a socket), override
//    on_stop_requested() to wake it (close the queue, shut the socket);
//  - call stop() in your own destructor: ~BaseWorker() also stops, but by then the
//    subclass's members are gone.
#pragma once

#include <edgert/export.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>

namespace edgert {

enum class WorkerState : std::uint8_t { idle, running, stopping, stopped, failed };

/// "idle", "running", "stopping", "stopped", "failed".
EDGERT_API const char* to_string(WorkerState state) noexcept;

class EDGERT_API BaseWorker {
 public:
  /// `name` names the thread (first 15 bytes, visible in `top -H`) and log lines.
  /// `join_timeout` bounds how long stop() waits for run() to return.
  explicit BaseWorker(std::string name,
                      std::chrono::milliseconds join_timeout = std::chrono::milliseconds(2000));
  virtual ~BaseWorker();
  BaseWorker(const BaseWorker&) = delete;
  BaseWorker& operator=(const BaseWorker&) = delete;

  /// Any thread. Starts the thread unless already running (idempotent: returns
  /// false and does nothing then). Returns true when a new thread was started.
  /// Throws std::system_error if the OS cannot create a thread.
  bool start();

  /// Any thread, any number of times, concurrently too; blocks at most
  /// join_timeout. Requests stop, wakes the thread and joins it. Returns true if the
  /// thread is gone (or never ran); on timeout logs a WARNING, leaves the state
  /// `stopping` and returns false (a later stop() waits again).
  bool stop();

  /// Any thread; never blocks.
  WorkerState state() const noexcept;
  /// The message of the exception that escaped run() (state `failed`), else "".
  std::string error() const;
  /// How many times run() has thrown over this worker's life.
  std::uint64_t failures() const noexcept;
  const std::string& name() const noexcept { return name_; }

 protected:
  /// Runs on the worker thread. Exceptions are caught, logged at ERROR and counted.
  virtual void run(std::stop_token stop) = 0;

  /// Called by stop() on the stopping thread after the token is stopped. Must not block.
  virtual void on_stop_requested() {}

  /// Worker thread: sleeps up to `timeout`; returns true at once if stop was requested.
  bool wait_for_stop(std::chrono::nanoseconds timeout);

 private:
  struct Control;
  const std::string name_;
  const std::chrono::milliseconds join_timeout_;
  std::shared_ptr<Control> control_;
};

}  // namespace edgert
