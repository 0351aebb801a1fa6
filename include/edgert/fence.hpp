// Asymmetric memory fences: a cheap "light" fence for hot paths paired with an
// expensive "heavy" fence for rare slow paths (Linux membarrier). Used by
// DropHeadQueue so a producer can publish an item and check for a sleeping consumer
// without a full barrier on every push, while a consumer going to sleep pays one
// membarrier syscall instead.
#pragma once

#include <edgert/export.hpp>

#include <atomic>

namespace edgert::detail {

/// Any thread; blocks for a few microseconds (one syscall). Orders, for every thread
/// of the process, the memory accesses around that thread's last light_fence.
/// Falls back to a full fence (and returns false) when membarrier is unavailable.
EDGERT_API bool heavy_fence() noexcept;

/// True if heavy_fence() uses membarrier, so light_fence may be a compiler barrier.
/// Any thread; never blocks; the answer never changes during a process's life.
EDGERT_API bool asymmetric_fences_available() noexcept;

/// A full (sequentially consistent) fence. ThreadSanitizer does not model
/// atomic_thread_fence, so under TSan a seq_cst read-modify-write stands in (a
/// locked instruction, itself a full barrier on x86).
inline void full_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  static std::atomic<unsigned> dummy{0};
  dummy.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

/// The light side. `asymmetric` is asymmetric_fences_available(), cached by the caller.
inline void light_fence(bool asymmetric) noexcept {
  if (asymmetric) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    full_fence();
  }
}

}  // namespace edgert::detail
