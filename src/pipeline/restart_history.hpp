// Where the supervisor keeps the restarts it made, with their expiry, so a node
// restart neither forgets a crash-looping plugin (its restarts still count against
// the intensity) nor marks healthy parts red (expired entries count for nothing).
//
// The node binds this to the registry.db table (restart_history) when it has one;
// MemoryRestartHistory serves tests and a node without one. Times are wall ms: the
// entries outlive the process, so a steady clock cannot date them.
//
// Threads: implementations are called from any thread (the instances' workers, the
// command thread) and must be safe for that; calls may block on storage briefly.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace edgert::pipeline {

class RestartHistory {
 public:
  virtual ~RestartHistory() = default;
  /// Any thread. Records one restart of `component` (an instance key such as
  /// "cam/threshold/t1") at `wall_ms`, kept until `expires_ms`. Errors are the
  /// implementation's to log: the supervisor goes on without the record.
  virtual void record_restart(const std::string& component, std::int64_t wall_ms, std::int64_t expires_ms,
                              const std::string& reason) = 0;
  /// Any thread. Restarts of `component` recorded at or after `since_ms` (not expired).
  virtual std::int64_t restarts_since(const std::string& component, std::int64_t since_ms) = 0;
  /// Any thread. Drops the entries expired at `now_ms`.
  virtual void prune(std::int64_t now_ms) = 0;
};

/// In memory; forgets everything with the process.
class MemoryRestartHistory final : public RestartHistory {
 public:
  void record_restart(const std::string& component, std::int64_t wall_ms, std::int64_t expires_ms,
                      const std::string&) override {
    std::lock_guard lk(mu_);
    entries_[component].push_back({wall_ms, expires_ms});
  }
  std::int64_t restarts_since(const std::string& component, std::int64_t since_ms) override {
    std::lock_guard lk(mu_);
    std::int64_t n = 0;
    if (auto it = entries_.find(component); it != entries_.end()) {
      for (const auto& e : it->second) n += e.at_ms >= since_ms ? 1 : 0;
    }
    return n;
  }
  void prune(std::int64_t now_ms) override {
    std::lock_guard lk(mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      std::erase_if(it->second, [now_ms](const Entry& e) { return e.expires_ms <= now_ms; });
      it = it->second.empty() ? entries_.erase(it) : std::next(it);
    }
  }

 private:
  struct Entry {
    std::int64_t at_ms, expires_ms;
  };
  std::mutex mu_;
  std::map<std::string, std::vector<Entry>> entries_;
};

}  // namespace edgert::pipeline
