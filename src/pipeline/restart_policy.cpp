#include "pipeline/restart_policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace edgert::pipeline {

RestartPolicy::RestartPolicy(RestartPolicyConfig config, std::uint64_t seed)
    : cfg_(config), rng_(seed != 0 ? seed : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()) {}

std::int64_t RestartPolicy::base_delay_ms(std::int64_t n) const noexcept {
  const double steps = static_cast<double>(std::max<std::int64_t>(n, 1) - 1);
  // Capped before the power can overflow: factor^steps only matters up to the cap.
  const double first = cfg_.backoff_initial_s * 1000.0;
  const double cap = std::max(cfg_.backoff_max_s * 1000.0, first);
  double d = first;
  for (double i = 0; i < steps && d < cap; ++i) d *= cfg_.backoff_factor;
  return static_cast<std::int64_t>(std::llround(std::min(d, cap)));
}

std::int64_t RestartPolicy::jittered_delay_ms(std::int64_t n, double u) const noexcept {
  u = std::clamp(u, 0.0, 1.0);
  const double scale = 1.0 + cfg_.jitter * (2.0 * u - 1.0);
  return static_cast<std::int64_t>(std::llround(static_cast<double>(base_delay_ms(n)) * scale));
}

std::int64_t RestartPolicy::window_ms() const noexcept {
  return static_cast<std::int64_t>(std::llround(cfg_.window_s * 1000.0));
}

RestartPolicy::Decision RestartPolicy::on_failure(std::int64_t now_ms, std::int64_t restarts_in_window) {
  Decision d;
  if (cfg_.policy == RestartMode::never) {
    d.why = "restart policy never";
    return d;
  }
  if (restarts_in_window >= cfg_.intensity) {
    char window[32];
    std::snprintf(window, sizeof window, "%g", cfg_.window_s);
    d.why = "intensity spent: " + std::to_string(restarts_in_window) + " restarts within " + window +
            " s (intensity " + std::to_string(cfg_.intensity) + ")";
    return d;
  }
  const auto stable_ms = static_cast<std::int64_t>(std::llround(cfg_.reset_after_s * 1000.0));
  if (last_restart_ms_ != INT64_MIN && now_ms - last_restart_ms_ >= stable_ms) in_a_row_ = 0;
  ++in_a_row_;
  d.restart = true;
  d.attempt = in_a_row_;
  d.delay_ms = jittered_delay_ms(in_a_row_, std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
  return d;
}

void RestartPolicy::restarted(std::int64_t now_ms) noexcept { last_restart_ms_ = now_ms; }

void RestartPolicy::clear() noexcept {
  in_a_row_ = 0;
  last_restart_ms_ = INT64_MIN;
}

}  // namespace edgert::pipeline
