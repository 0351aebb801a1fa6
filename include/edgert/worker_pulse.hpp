// WorkerPulse: where a worker says "my loop turned" (beat) and "a piece of work is done"
// (progress), and where its owner declares states it manages itself (quarantined,
// backing off, ended). The Node adapts it to a ComponentRegistry row (src/node/
// node_health.cpp); core and the areas below the node only see this interface.
//
// A BaseWorker given a pulse (WorkerOptions::pulse) installs it as its thread's current
// pulse for the whole run(): worker_beat() / worker_progress() reach it from any code on
// that thread without passing it around, and wait_for_stop() beats while it sleeps (so a
// worker waiting by design stays alive; one stuck inside a plugin call does not beat).
// Guide: docs/registry.md ("Wiring into the Node").
#pragma once

#include <edgert/export.hpp>

#include <string_view>

namespace edgert {

class EDGERT_API WorkerPulse {
 public:
  virtual ~WorkerPulse();
  /// Any thread (meant for the worker's); never blocks, never throws: an atomic store.
  virtual void beat() noexcept = 0;
  /// As beat(), and records that work completed (an item processed, a frame delivered).
  virtual void progress() noexcept = 0;
  /// Any thread; may take a lock briefly; never throws (failures are swallowed). Declares
  /// an owner-managed status by name: "ready", "degraded", "offline", "restarting",
  /// "quarantined", "stopped" or "failed"; another name is ignored. "restarting" also
  /// counts one restart of the row.
  virtual void declare(std::string_view status, std::string_view reason) noexcept = 0;
};

/// Any thread; never blocks. The pulse BaseWorker installed on this thread, or null.
EDGERT_API WorkerPulse* current_worker_pulse() noexcept;
/// Any thread; never blocks; lock-free. Beats this thread's pulse; no-op without one.
EDGERT_API void worker_beat() noexcept;
/// Any thread; never blocks; lock-free. progress() on this thread's pulse; no-op without one.
EDGERT_API void worker_progress() noexcept;
/// Any thread; never throws. declare() on this thread's pulse; no-op without one.
EDGERT_API void worker_declare(std::string_view status, std::string_view reason) noexcept;

}  // namespace edgert
