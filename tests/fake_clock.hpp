// FakeClock and FakeClocks: the clocks a test injects into MailboxOptions (clock_ms, steady_ms) and moves by hand.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace edgert::testing {

/// A wall clock in ms since the epoch (default: November 2023) for MailboxOptions::clock_ms.
struct FakeClock {
  std::atomic<std::int64_t> ms{1'700'000'000'000};
  /// Reads `ms`; the clock must outlive whatever holds the function.
  std::function<std::int64_t()> fn() {
    return [this] { return ms.load(); };
  }
};

/// Both clocks a mailbox reads: the wall clock (schedules, TTLs) and the monotonic one
/// (leases). advance() is time passing (both move); jump() is the wall clock being set
/// (only it moves).
struct FakeClocks {
  std::atomic<std::int64_t> wall;
  std::atomic<std::int64_t> steady{1'000'000};
  explicit FakeClocks(std::int64_t wall_ms = 1'700'000'000'000) : wall(wall_ms) {}
  void advance(std::int64_t ms) {
    wall += ms;
    steady += ms;
  }
  void jump(std::int64_t ms) { wall += ms; }
  /// For MailboxOptions::clock_ms and steady_ms; the clocks must outlive the mailbox.
  std::function<std::int64_t()> wall_fn() {
    return [this] { return wall.load(); };
  }
  std::function<std::int64_t()> steady_fn() {
    return [this] { return steady.load(); };
  }
};

}  // namespace edgert::testing
