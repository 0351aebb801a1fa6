// The supervisor's arithmetic (docs/operations.md, "Health and restarts: the
// supervisor"): when the next restart of a failed component is due, and whether its
// intensity (at most K restarts within a window) is spent. Pure: no threads, no
// clock of its own (every call is given "now"), the jitter drawn from a seeded
// generator, so tests pin every number.
//
// Threads: one owner (each supervised component has its own RestartPolicy); not
// thread-safe.
#pragma once

#include <edgert/restart_config.hpp>

#include <cstdint>
#include <random>
#include <string>

namespace edgert::pipeline {

class RestartPolicy {
 public:
  /// Owner's thread; never blocks. `seed` feeds the jitter (0: from random_device).
  explicit RestartPolicy(RestartPolicyConfig config, std::uint64_t seed = 0);

  /// The un-jittered delay of restart `n` in a row (n >= 1; below 1 acts as 1), in ms:
  /// min(backoff_max, backoff_initial * factor^(n-1)).
  [[nodiscard]] std::int64_t base_delay_ms(std::int64_t n) const noexcept;
  /// base_delay_ms(n) scaled by 1 + jitter * (2u - 1) for u in [0, 1] (clamped).
  [[nodiscard]] std::int64_t jittered_delay_ms(std::int64_t n, double u) const noexcept;

  /// What the supervisor does after a failure at steady time `now_ms`, given how many
  /// restarts the history holds within the window.
  struct Decision {
    bool restart = false;        ///< false: give up (or policy never) and stay failed
    std::int64_t delay_ms = 0;   ///< when restart: wait this long first
    std::int64_t attempt = 0;    ///< restart n in a row (1, 2, ...): the back-off step
    std::string why;             ///< when not restart: "policy never", "intensity spent: ..."
  };
  /// Owner's thread. Draws the jitter. Restarts in a row reset to 0 when the last
  /// (re)start is reset_after_s or more before now_ms.
  [[nodiscard]] Decision on_failure(std::int64_t now_ms, std::int64_t restarts_in_window);
  /// Owner's thread. A restart happened at `now_ms` (starts the stability clock).
  void restarted(std::int64_t now_ms) noexcept;
  /// Owner's thread. Forgets the restarts in a row (a RESTART command).
  void clear() noexcept;

  [[nodiscard]] std::int64_t window_ms() const noexcept;
  [[nodiscard]] const RestartPolicyConfig& config() const noexcept { return cfg_; }
  /// Restarts in a row so far (the back-off step of the last decision).
  [[nodiscard]] std::int64_t in_a_row() const noexcept { return in_a_row_; }

 private:
  RestartPolicyConfig cfg_;
  std::mt19937_64 rng_;
  std::int64_t in_a_row_ = 0;
  std::int64_t last_restart_ms_ = INT64_MIN;
};

}  // namespace edgert::pipeline
