// Internal: the wall clock in milliseconds since the epoch, the one reading every
// area stamps messages and schedules with. Header-only; any area may use it.
#pragma once

#include <chrono>
#include <cstdint>

namespace edgert::detail {

/// Any thread; never blocks.
inline std::int64_t wall_clock_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace edgert::detail
