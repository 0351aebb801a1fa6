// One captured item on its way to the business instances of its stream. Copying it
// adds references (to the frame's pixels, to the record's text); nothing is copied.
#pragma once

#include <edgert/frame.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace edgert::pipeline {

struct Input {
  Frame frame;                                // empty for records and empty inputs
  std::shared_ptr<const std::string> record;  // null for frames and empty inputs
  std::uint64_t sequence = 0;                 // per stream, from 1
  std::int64_t captured_wall_ns = 0;          // when captured, wall clock
  std::int64_t captured_mono_ns = 0;          // the same moment, steady clock (latency)
};

/// Steady clock now in ns.
inline std::int64_t mono_ns_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline std::int64_t wall_ns_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace edgert::pipeline
