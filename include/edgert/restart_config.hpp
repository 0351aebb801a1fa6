// The `health.restart` configuration: how the supervisor restarts what failed
// (docs/configuration.md, "health.restart"; docs/operations.md, "Health and restarts:
// the supervisor"). Ranges are enforced by load_config(); values read from a Config
// are in range.
#pragma once

#include <cstdint>
#include <optional>

namespace edgert {

/// When a failed component is restarted.
enum class RestartMode : std::uint8_t {
  never,       ///< never: a quarantined instance waits for a RESTART command
  on_failure,  ///< after it failed (quarantined), within the intensity
  always,      ///< as on_failure, and a stuck call counts as a failure too (replace_stuck)
};

/// One kind's restart policy. The back-off of restart n (1, 2, ...) in a row is
/// min(backoff_max_s, backoff_initial_s * backoff_factor^(n-1)), times a factor drawn
/// uniformly from [1 - jitter, 1 + jitter]. At most `intensity` restarts within
/// `window_s` (OTP's intensity/period): one more failure and the component stays
/// failed (quarantined) until a RESTART command. Running `reset_after_s` without a
/// failure starts the back-off at backoff_initial_s again.
struct RestartPolicyConfig {
  RestartMode policy = RestartMode::on_failure;
  std::int64_t intensity = 5;      ///< [1, 1000] restarts allowed within window_s
  double window_s = 600;           ///< [1, 604800]
  double backoff_initial_s = 1;    ///< [0.001, 3600]
  double backoff_max_s = 60;       ///< [0.001, 86400], not below backoff_initial_s
  double backoff_factor = 2;       ///< [1, 16]
  double jitter = 0.1;             ///< [0, 0.5]: the delay is scaled by [1 - jitter, 1 + jitter]
  double reset_after_s = 600;      ///< [1, 604800] stable this long: the back-off starts over
  /// An instance stuck in process() gets a replacement instance that takes its input;
  /// the stuck object is destroyed once its call returns (it cannot be killed).
  bool replace_stuck = false;
};

/// `health.restart`: the policy of every kind (its own keys), with optional per-kind
/// sections `instance:` and `stream:` that replace it for that kind (a per-kind
/// section's unset keys take the built-in defaults above, not the section's).
struct RestartSection : RestartPolicyConfig {
  std::optional<RestartPolicyConfig> instance;  ///< business plugin instances
  std::optional<RestartPolicyConfig> stream;    ///< a stream: counts its instances' give-ups
  /// true: a stream whose instances gave up more than its intensity within its window
  /// asks the host to stop the node (Node::shutdown_reason), as work_offline: false does.
  bool escalate_to_node = false;

  /// Any thread; never blocks. The policy of `kind` ("instance", "stream").
  const RestartPolicyConfig& policy_of(const char* kind) const noexcept {
    const std::optional<RestartPolicyConfig>* own = nullptr;
    if (kind[0] == 'i') own = &instance;
    if (kind[0] == 's') own = &stream;
    return own && *own ? **own : static_cast<const RestartPolicyConfig&>(*this);
  }
};

}  // namespace edgert
