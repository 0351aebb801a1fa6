// Futex wait/wake on a 32-bit atomic (Linux), without what std::atomic::wait adds
// in libstdc++ 12: a spin of sched_yield calls before sleeping (a syscall each, so a
// blocked thread keeps burning CPU; figures in docs/performance.md, mailbox section)
// and a waiter table shared between addresses.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace edgert::detail {

static_assert(sizeof(std::atomic<std::int32_t>) == sizeof(std::int32_t) &&
                  std::atomic<std::int32_t>::is_always_lock_free,
              "a futex word must be a plain 32-bit integer");

/// Sleeps while `word` holds `expected`; may return spuriously (callers loop).
inline void futex_wait(std::atomic<std::int32_t>& word, std::int32_t expected) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::int32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

/// Wakes every thread sleeping on `word`.
inline void futex_wake_all(std::atomic<std::int32_t>& word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::int32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace edgert::detail
