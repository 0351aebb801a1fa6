// Internal: a rate limit for per-message log lines (docs/operations.md, "Logs"), so a
// peer or a flood can never grow the log without bound. Header-only; any area may use it.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace edgert::detail {

/// Lets through the first `burst` lines of each `window`; the rest are counted, and the
/// first line let through after a window with suppressed lines carries their number.
/// One LogLimit per kind of line (a "duplicate message" line, an "eviction" line...).
///
///   static LogLimit dup{10, std::chrono::seconds(60)};
///   if (auto n = dup.admit(); n.log) log().info("duplicate {}{}", id, n.suffix());
///
/// Thread-safe; never blocks beyond a short mutex.
class LogLimit {
 public:
  struct Verdict {
    bool log = false;                // write this line
    std::uint64_t suppressed = 0;    // lines withheld since the last one written
    /// " (and N more like this not logged in the last window)" or "".
    std::string suffix() const {
      if (suppressed == 0) return {};
      return " (and " + std::to_string(suppressed) + " more like this not logged since the last one)";
    }
  };

  LogLimit(std::uint64_t burst, std::chrono::steady_clock::duration window) : burst_(burst), window_(window) {}

  /// Any thread; never blocks beyond a short mutex. Counts the line and says whether to write it.
  Verdict admit() {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(mu_);
    ++total_;
    if (started_ == std::chrono::steady_clock::time_point{} || now - started_ >= window_) {
      started_ = now;
      in_window_ = 0;
    }
    if (in_window_ >= burst_) {
      ++suppressed_;
      return {};
    }
    ++in_window_;
    Verdict v{true, suppressed_};
    suppressed_ = 0;
    return v;
  }
  /// Lines withheld and not yet reported by a later line. Any thread.
  std::uint64_t pending_suppressed() const {
    std::lock_guard lk(mu_);
    return suppressed_;
  }
  /// Every admit() call so far, written or not. Any thread.
  std::uint64_t total() const {
    std::lock_guard lk(mu_);
    return total_;
  }

 private:
  const std::uint64_t burst_;
  const std::chrono::steady_clock::duration window_;
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point started_{};
  std::uint64_t in_window_ = 0, suppressed_ = 0, total_ = 0;
};

}  // namespace edgert::detail
