// wait_until: polls a condition until it holds or a time limit passes, for tests that wait on other threads.
#pragma once

#include <chrono>
#include <thread>

namespace edgert::testing {

/// Calls `pred` every `poll` until it returns true (then true) or `limit` has passed
/// (then one last call decides). The limit bounds a failing run only: a passing one
/// returns as soon as the condition holds, so generous limits cost nothing on a loaded
/// machine.
template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds limit = std::chrono::seconds(60),
                std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(poll);
  }
  return static_cast<bool>(pred());
}

}  // namespace edgert::testing
