// DropHeadQueue<T>: the bounded queue between pipeline stages (docs/runtime.md).
//
// Contract
//  - Bounded: never holds more than capacity() items.
//  - Producers: any number of threads. Consumers: any number of threads (the
//    pipeline uses one per queue).
//  - Overflow policy, chosen at construction:
//      drop_head   : try_push never blocks; when full the OLDEST item is removed
//                    and handed to the overflow callback (on the pushing thread),
//                    so the caller can synthesize an ERROR result for it.
//      drop_newest : try_push never blocks; when full the NEW item goes to the
//                    overflow callback instead.
//      block       : lossless backpressure; try_push returns PushResult::full and
//                    leaves the item alone; push()/push_for() take any free slot,
//                    else spin for at most ~50 us and then sleep until a consumer
//                    frees a slot, close() or the deadline. A blocked producer uses
//                    no CPU while it sleeps.
//  - Nothing is lost silently: every item is either popped, handed to the overflow
//    callback (and counted in dropped), drained, or still queued. At quiescence
//        counters().pushed == popped + dropped + size
//    holds exactly; under concurrent use counters() is a snapshot.
//  - close() wakes every waiter. After close, pushes return PushResult::closed
//    (the item is not moved from) and pops still return what is queued.
//
// Implementation (lock-free on the hot path):
//  - a ring of slots; a slot's `ready` sequence is written only by producers
//    (pos + 1 once the item for `pos` is in it), so consumers never write a line a
//    producer is about to read;
//  - three positions: enq (next push, claimed by CAS among producers; the slot is
//    filled after the claim), deq (next claim: pops and drop-oldest both
//    claim with a CAS, so an item is taken exactly once) and freed (claims whose
//    item has been moved out, advanced in claim order). A push at `pos` has room iff
//    pos < freed + capacity; producers keep a stale copy of `freed` and reread it
//    only when the copy says full;
//  - each slot has its own cache line, and the ring has at least capacity + 1 slots,
//    so the slots being filled and emptied never share a line, full or empty.
// Blocking waits use a mutex and condition variables that the hot path touches only
// when a sleeper is registered: a thread about to sleep registers, issues a heavy
// (membarrier) fence and re-checks; the other side publishes, issues a light
// (compiler) fence and looks for sleepers, so a wake-up cannot be lost
// (edgert/fence.hpp).
#pragma once

#include <edgert/fence.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

namespace edgert {

enum class OverflowPolicy : std::uint8_t { drop_head, drop_newest, block };

enum class PushResult : std::uint8_t {
  ok,              // queued
  dropped_oldest,  // queued; the oldest item went to the overflow callback
  dropped_newest,  // not queued; this item went to the overflow callback
  full,            // not queued (block policy, try_push or push_for timeout); item untouched
  closed,          // not queued: the queue is closed; item untouched
};

/// True when the pushed item is now in the queue.
constexpr bool accepted(PushResult r) noexcept {
  return r == PushResult::ok || r == PushResult::dropped_oldest;
}

struct QueueCounters {
  std::uint64_t pushed = 0;      // items offered and not refused (full/closed are refused)
  std::uint64_t popped = 0;      // items returned by a pop or drain
  std::uint64_t dropped = 0;     // items handed to the overflow callback
  std::uint64_t size = 0;        // items queued now
  std::uint64_t high_water = 0;  // largest size observed after a push
};

namespace detail {
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
inline constexpr std::size_t kCacheLine = 64;
}  // namespace detail

template <class T>
class DropHeadQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "DropHeadQueue<T> requires a nothrow move constructor");

 public:
  using OverflowCallback = std::function<void(T&&)>;

  /// Throws std::invalid_argument if capacity is 0. on_overflow may be empty
  /// (dropped items are then only counted); it runs on the pushing thread and must
  /// not push into this queue.
  explicit DropHeadQueue(std::size_t capacity, OverflowPolicy policy = OverflowPolicy::drop_head,
                         OverflowCallback on_overflow = {})
      : capacity_(capacity),
        ring_(ring_size(capacity)),
        policy_(policy),
        asymmetric_(detail::asymmetric_fences_available()),
        on_overflow_(std::move(on_overflow)) {
    if (capacity == 0) throw std::invalid_argument("DropHeadQueue capacity must be > 0");
    slots_ = std::make_unique<Slot[]>(ring_);
  }

  DropHeadQueue(const DropHeadQueue&) = delete;
  DropHeadQueue& operator=(const DropHeadQueue&) = delete;

  /// Destroys items still queued without calling the overflow callback: drain first
  /// if they matter. No thread may be using the queue.
  ~DropHeadQueue() {
    while (dequeue_one()) {
    }
  }

  /// Any thread; never blocks (drop_head runs the overflow callback inline).
  /// On full/closed the item is not moved from.
  [[nodiscard]] PushResult try_push(T&& item) {
    if (closed_.load(std::memory_order_acquire)) return PushResult::closed;
    PushResult result = PushResult::ok;
    std::uint64_t end;
    while ((end = enqueue_one(item)) == 0) {
      switch (policy_) {
        case OverflowPolicy::block:
          return PushResult::full;
        case OverflowPolicy::drop_newest:
          rejected_.fetch_add(1, std::memory_order_acq_rel);
          overflow(std::move(item));
          return PushResult::dropped_newest;
        case OverflowPolicy::drop_head:
          if (enq_.pos.load(std::memory_order_acquire) - deq_.pos.load(std::memory_order_acquire) < capacity_) {
            detail::cpu_relax();  // a consumer claimed an item and is moving it out: room is coming
          } else if (auto oldest = dequeue_one()) {
            dropped_oldest_.fetch_add(1, std::memory_order_acq_rel);
            overflow(std::move(*oldest));
            result = PushResult::dropped_oldest;
          } else {
            detail::cpu_relax();  // the oldest item is still being written by another producer
          }
          break;
      }
    }
    after_enqueue(end);
    return result;
  }
  /// Any thread; never blocks. Pushes a copy; a throwing copy constructor propagates.
  [[nodiscard]] PushResult try_push(const T& item) {
    T copy(item);
    return try_push(std::move(copy));
  }

  /// Any thread. With the block policy blocks until there is room or close();
  /// otherwise == try_push. On closed the item is not moved from.
  [[nodiscard]] PushResult push(T&& item) {
    if (const PushResult r = try_push(std::move(item)); r != PushResult::full) return r;
    return push_until(std::move(item), std::chrono::steady_clock::time_point::max());
  }

  /// Any thread. Like push() but blocks at most `timeout`; returns full when it expires
  /// (the item is not moved from). Succeeds whenever a slot is free before then.
  template <class Rep, class Period>
  [[nodiscard]] PushResult push_for(T&& item, std::chrono::duration<Rep, Period> timeout) {
    if (const PushResult r = try_push(std::move(item)); r != PushResult::full) return r;
    return push_until(std::move(item), deadline_after(timeout));
  }

  /// Any thread; never blocks. Empty optional when nothing is queued.
  [[nodiscard]] std::optional<T> try_pop() { return dequeue_one(); }

  /// Any thread; waits up to `timeout` for an item. Empty optional on timeout,
  /// or at once when the queue is closed and empty.
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> pop_for(std::chrono::duration<Rep, Period> timeout) {
    if (auto item = dequeue_one()) return item;  // fast path: no clock read
    const auto deadline = deadline_after(timeout);
    for (;;) {
      // Spin before sleeping: sleeping costs a syscall on each side, and a producer
      // that is streaming delivers the next item within microseconds. The spin adapts
      // (spin_budget_): it doubles, up to kSpins, when an item came during it and halves,
      // down to kMinSpins, when the consumer had to sleep anyway; so a consumer fed every
      // millisecond or more (a camera, a video file) does not burn ~100 us of CPU per
      // item, which on 2 cores is taken from the decoder feeding it.
      const int budget = spin_budget_.load(std::memory_order_relaxed);
      for (int spin = 0; spin < budget; ++spin) {
        if (auto item = dequeue_one()) {
          if (spin > 0 && budget < kSpins) spin_budget_.store(std::min(kSpins, budget * 2), std::memory_order_relaxed);
          return item;
        }
        if (closed_.load(std::memory_order_acquire) && is_empty()) return std::nullopt;
        if ((spin & 255) == 255 && std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        detail::cpu_relax();
      }
      if (budget > kMinSpins) spin_budget_.store(std::max(kMinSpins, budget / 2), std::memory_order_relaxed);
      std::unique_lock lock(mutex_);
      consumers_waiting_.fetch_add(1, std::memory_order_seq_cst);
      if (asymmetric_) detail::heavy_fence();  // pairs with light_fence in after_enqueue
      bool expired = false;
      if (is_empty() && !closed_.load(std::memory_order_seq_cst)) {
        expired = not_empty_.wait_until(lock, deadline) == std::cv_status::timeout;
      }
      consumers_waiting_.fetch_sub(1, std::memory_order_relaxed);
      lock.unlock();
      if (auto item = dequeue_one()) return item;
      if (expired || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      if (closed_.load(std::memory_order_acquire) && is_empty()) return std::nullopt;
    }
  }

  /// Any thread; never blocks. Pops every queued item into `sink` and returns how
  /// many; used at shutdown to turn leftovers into terminal results.
  std::size_t drain(const std::function<void(T&&)>& sink) {
    std::size_t n = 0;
    while (auto item = dequeue_one()) {
      sink(std::move(*item));
      ++n;
    }
    return n;
  }

  /// Any thread; never blocks; idempotent. Wakes every waiting producer and consumer.
  void close() {
    closed_.store(true, std::memory_order_seq_cst);
    std::lock_guard lock(mutex_);
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  /// Any thread; never blocks, never fails (also for the three below).
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  std::size_t capacity() const noexcept { return capacity_; }
  /// Any thread: pop_for's current spin, in pause instructions, before it sleeps
  /// (spin_limits(): halved after a spin that ended in a sleep, doubled after one that
  /// caught an item). For tests and diagnostics.
  int spin_budget() const noexcept { return spin_budget_.load(std::memory_order_relaxed); }
  static constexpr std::pair<int, int> spin_limits() noexcept { return {kMinSpins, kSpins}; }
  OverflowPolicy policy() const noexcept { return policy_; }
  /// Approximate under concurrent use; exact at quiescence.
  std::size_t size() const noexcept {
    const auto d = deq_.pos.load(std::memory_order_acquire);
    const auto e = enq_.pos.load(std::memory_order_acquire);
    return e > d ? static_cast<std::size_t>(e - d) : 0;
  }

  /// Any thread; never blocks. A snapshot; exact when no thread is using the queue.
  QueueCounters counters() const noexcept {
    // Every claim is either a pop or a drop-oldest; every refused-but-counted push
    // is a drop-newest. Deriving the counters keeps the hot path free of extra
    // shared writes and makes the invariant hold by construction.
    QueueCounters c;
    const std::uint64_t oldest = dropped_oldest_.load(std::memory_order_acquire);
    const std::uint64_t newest = rejected_.load(std::memory_order_acquire);
    const std::uint64_t deq = deq_.pos.load(std::memory_order_acquire);
    const std::uint64_t enq = enq_.pos.load(std::memory_order_acquire);
    c.dropped = oldest + newest;
    c.popped = deq > oldest ? deq - oldest : 0;
    c.pushed = enq + newest;
    c.size = enq > deq ? enq - deq : 0;
    c.high_water = high_water_.load(std::memory_order_relaxed);
    return c;
  }

 private:
  static constexpr int kSpins = 4096;  // pop_for: about 50-150 us of pause instructions
  static constexpr int kMinSpins = 64;  // pop_for's spin after sleeps in a row: ~1-3 us
  // push/push_for: how long a blocked producer spins before it sleeps.
  static constexpr std::chrono::microseconds kPushSpin{50};

  // One cache line per slot: the producer filling slot n+1 never invalidates the line
  // the consumer is reading slot n from (docs/performance.md).
  struct alignas(detail::kCacheLine) Slot {
    std::atomic<std::uint64_t> ready{0};  // pos + 1 once the item for pos is stored
    alignas(T) unsigned char storage[sizeof(T)];
  };
  struct alignas(detail::kCacheLine) Position {
    std::atomic<std::uint64_t> pos{0};
  };

  static std::size_t ring_size(std::size_t capacity) {
    const std::size_t pad = std::max<std::size_t>(1, detail::kCacheLine / sizeof(Slot));
    std::size_t n = 1;
    while (n < capacity + pad) n <<= 1;
    return n;
  }
  // now + timeout, saturated: a huge timeout (hours::max()) means no deadline
  // instead of an overflow.
  template <class Rep, class Period>
  static std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
    using Clock = std::chrono::steady_clock;
    const auto now = Clock::now();
    if (timeout <= timeout.zero()) return now;
    if (std::chrono::duration<double>(timeout) >= std::chrono::duration<double>(Clock::time_point::max() - now)) {
      return Clock::time_point::max();
    }
    return now + std::chrono::ceil<Clock::duration>(timeout);
  }
  std::size_t index(std::uint64_t pos) const noexcept { return static_cast<std::size_t>(pos & (ring_ - 1)); }
  bool is_empty() const noexcept {
    return enq_.pos.load(std::memory_order_seq_cst) == deq_.pos.load(std::memory_order_seq_cst);
  }
  bool has_room() const noexcept {
    return enq_.pos.load(std::memory_order_seq_cst) - freed_.pos.load(std::memory_order_seq_cst) < capacity_;
  }

  // Producers: is there room for a push at `pos`? Rereads `freed` only when the
  // cached copy says no.
  bool room_for(std::uint64_t pos) noexcept {
    if (pos - freed_cache_.load(std::memory_order_relaxed) < capacity_) return true;
    const std::uint64_t freed = freed_.pos.load(std::memory_order_acquire);
    freed_cache_.store(freed, std::memory_order_relaxed);
    return pos - freed < capacity_;
  }

  // Moves from `item` only on success. Returns the position after the item (>= 1),
  // or 0 when the queue is full.
  std::uint64_t enqueue_one(T& item) noexcept {
    std::uint64_t pos = enq_.pos.load(std::memory_order_relaxed);
    do {
      if (!room_for(pos)) return 0;
    } while (!enq_.pos.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed));
    Slot& slot = slots_[index(pos)];
    ::new (static_cast<void*>(slot.storage)) T(std::move(item));
    slot.ready.store(pos + 1, std::memory_order_release);
    return pos + 1;
  }

  // Claims the oldest item (CAS on deq), moves it out, then marks its slot free in
  // claim order. Used by consumers and by drop_head producers alike.
  std::optional<T> dequeue_one() noexcept {
    std::uint64_t pos = deq_.pos.load(std::memory_order_relaxed);
    Slot* slot;
    for (;;) {
      slot = &slots_[index(pos)];
      if (slot->ready.load(std::memory_order_acquire) != pos + 1) return std::nullopt;  // empty
      if (deq_.pos.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed))
        break;
    }
    T* p = std::launder(reinterpret_cast<T*>(slot->storage));
    std::optional<T> out(std::move(*p));
    p->~T();
    // Free in claim order: `freed` must never pass a slot still being emptied.
    for (int spin = 0; freed_.pos.load(std::memory_order_acquire) != pos; ++spin) {
      if (spin < 64) {
        detail::cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    freed_.pos.store(pos + 1, std::memory_order_release);
    detail::light_fence(asymmetric_);  // the room is published before we look for sleepers
    if (producers_waiting_.load(std::memory_order_relaxed) != 0) {
      // One slot, one producer: a woken producer always tries to take the slot, so
      // if it fails another producer has it, and waking the rest would only make
      // them contend for the mutex and go back to sleep.
      std::lock_guard lock(mutex_);
      not_full_.notify_one();
    }
    return out;
  }

  void overflow(T&& item) {
    if (on_overflow_) on_overflow_(std::move(item));
  }

  void after_enqueue(std::uint64_t end) {
    update_high_water(end);
    detail::light_fence(asymmetric_);  // the item is published before we look for sleepers
    if (consumers_waiting_.load(std::memory_order_relaxed) != 0) {
      std::lock_guard lock(mutex_);
      not_empty_.notify_all();
    }
  }

  // The claim position is another core's hot cache line, so it is read only when a
  // stale copy (which can only overstate the size) suggests a new high-water mark.
  void update_high_water(std::uint64_t end) noexcept {
    const std::uint64_t hw = high_water_.load(std::memory_order_relaxed);
    const std::uint64_t cached = deq_cache_.load(std::memory_order_relaxed);
    if (cached >= end || end - cached <= hw) return;
    const std::uint64_t deq = deq_.pos.load(std::memory_order_acquire);
    deq_cache_.store(deq, std::memory_order_relaxed);
    if (deq >= end) return;
    const std::uint64_t size_now = end - deq;
    std::uint64_t cur = hw;
    while (size_now > cur && !high_water_.compare_exchange_weak(cur, size_now, std::memory_order_relaxed)) {
    }
  }

  // Block policy, after a try_push found the queue full. Any free slot is taken by
  // the end of the spin at the latest, and by the first try_push after a wake-up.
  PushResult push_until(T&& item, std::chrono::steady_clock::time_point deadline) {
    using Clock = std::chrono::steady_clock;
    // Waits for room in a batch while spinning, so that the reads of the consumer's
    // `freed` line do not steal it back on every pop.
    const std::uint64_t batch = std::clamp<std::uint64_t>(capacity_ / 4, 1, 32);
    for (;;) {
      // Spin first, bounded in time rather than in iterations so that its cost does
      // not depend on how long a pause instruction takes: a consumer that is draining
      // frees a batch within microseconds, and sleeping costs a syscall on each side.
      const auto spin_end = std::min(deadline, Clock::now() + kPushSpin);
      for (unsigned spin = 1;; ++spin) {
        const std::uint64_t used =
            enq_.pos.load(std::memory_order_relaxed) - freed_.pos.load(std::memory_order_acquire);
        if (used + batch <= capacity_ || closed_.load(std::memory_order_relaxed)) {
          if (const PushResult r = try_push(std::move(item)); r != PushResult::full) return r;
        }
        if (spin % 16 == 0 && Clock::now() >= spin_end) break;
        for (int k = 0; k < 16; ++k) detail::cpu_relax();
      }
      // A slot or two may be free but fewer than a batch: take one rather than sleep.
      if (const PushResult r = try_push(std::move(item)); r != PushResult::full) return r;
      if (Clock::now() >= deadline) return PushResult::full;

      // Sleep until a consumer frees a slot (dequeue_one notifies while we are
      // registered), close() or the deadline.
      {
        std::unique_lock lock(mutex_);
        producers_waiting_.fetch_add(1, std::memory_order_seq_cst);
        if (asymmetric_) detail::heavy_fence();  // pairs with light_fence in dequeue_one
        while (!has_room() && !closed_.load(std::memory_order_seq_cst)) {
          if (deadline == Clock::time_point::max()) {
            not_full_.wait(lock);
          } else if (not_full_.wait_until(lock, deadline) == std::cv_status::timeout) {
            break;
          }
        }
        producers_waiting_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (const PushResult r = try_push(std::move(item)); r != PushResult::full) return r;
      if (Clock::now() >= deadline) return PushResult::full;
      // Another producer took the slot first: wait again.
    }
  }

  const std::size_t capacity_;
  const std::size_t ring_;  // power of two > capacity
  const OverflowPolicy policy_;
  const bool asymmetric_;
  const OverflowCallback on_overflow_;
  std::unique_ptr<Slot[]> slots_;

  Position enq_;    // producers
  Position deq_;    // claims (consumers, drop-oldest)
  Position freed_;  // completed claims
  // Producer-side, written rarely.
  alignas(detail::kCacheLine) std::atomic<std::uint64_t> freed_cache_{0};
  std::atomic<std::uint64_t> deq_cache_{0};
  std::atomic<std::uint64_t> high_water_{0};
  std::atomic<std::uint64_t> dropped_oldest_{0};
  std::atomic<std::uint64_t> rejected_{0};
  alignas(detail::kCacheLine) std::atomic<std::uint32_t> consumers_waiting_{0};
  std::atomic<int> spin_budget_{kSpins};  // pop_for's current spin, consumers only
  std::atomic<std::uint32_t> producers_waiting_{0};
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
};

}  // namespace edgert
