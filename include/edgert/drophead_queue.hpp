// DropHeadQueue<T>: the bounded queue between pipeline stages (seed 004 §3).
//
// Contract
//  - Bounded: never holds more than capacity() items.
//  - Producers: any number of threads. Consumers: any number of threads
//    (the pipeline uses one per queue).
//  - Overflow policy, chosen at construction:
//      drop_head   : try_push never blocks; when full the OLDEST item is removed
//                    and handed to the overflow callback (on the pushing thread),
//                    so the caller can synthesize an ERROR result for it.
//      drop_newest : try_push never blocks; when full the NEW item goes to the
//                    overflow callback instead.
//      block       : lossless backpressure; push()/push_for() wait for room,
//                    try_push returns PushResult::full and leaves the item alone.
//  - Nothing is lost silently: every item is either popped, handed to the overflow
//    callback (and counted in dropped), drained, or still queued. At quiescence
//        counters().pushed == popped + dropped + size
//    holds exactly; under concurrent use counters() is a snapshot.
//  - close() wakes every waiter. After close, pushes return PushResult::closed
//    (the item is not moved from) and pops still return what is queued.
//
// Implementation: a bounded ring of sequence-numbered slots (the design published
// by Dmitry Vyukov), lock-free on the hot path. A slot's sequence is 2*pos when it
// is free for the push at `pos` and 2*pos+1 once that push filled it; doubling keeps
// the two states distinct even at capacity 1. Blocking waits use a mutex and
// condition variables that the hot path touches only when a waiter is registered;
// the registration and the position counters are sequentially consistent so a
// wake-up cannot be lost (see wait_for_data / notify_consumers).
#pragma once

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
  /// (dropped items are then only counted) and must not call back into this queue's
  /// push functions.
  explicit DropHeadQueue(std::size_t capacity, OverflowPolicy policy = OverflowPolicy::drop_head,
                         OverflowCallback on_overflow = {})
      : capacity_(capacity),
        mask_(is_pow2(capacity) ? capacity - 1 : 0),
        policy_(policy),
        on_overflow_(std::move(on_overflow)) {
    if (capacity == 0) throw std::invalid_argument("DropHeadQueue capacity must be > 0");
    slots_ = std::make_unique<Slot[]>(capacity);
    for (std::size_t i = 0; i < capacity; ++i) slots_[i].seq.store(2 * i, std::memory_order_relaxed);
  }

  DropHeadQueue(const DropHeadQueue&) = delete;
  DropHeadQueue& operator=(const DropHeadQueue&) = delete;

  /// Destroys items still queued without calling the overflow callback: drain first
  /// if they matter. No thread may be using the queue.
  ~DropHeadQueue() {
    while (dequeue_one()) {
    }
  }

  /// Any thread; never blocks (drop_head may run the overflow callback inline).
  /// On full/closed the item is not moved from.
  [[nodiscard]] PushResult try_push(T&& item) {
    if (closed_.load(std::memory_order_acquire)) return PushResult::closed;
    PushResult result = PushResult::ok;
    while (!enqueue_one(item)) {
      switch (policy_) {
        case OverflowPolicy::block:
          return PushResult::full;
        case OverflowPolicy::drop_newest:
          rejected_.fetch_add(1, std::memory_order_acq_rel);
          overflow(std::move(item));
          return PushResult::dropped_newest;
        case OverflowPolicy::drop_head:
          if (auto oldest = dequeue_one()) {
            dropped_oldest_.fetch_add(1, std::memory_order_acq_rel);
            notify_producers();
            overflow(std::move(*oldest));
            result = PushResult::dropped_oldest;
          } else {
            detail::cpu_relax();  // a consumer is mid-pop: room is about to appear
          }
          break;
      }
    }
    after_enqueue();
    return result;
  }
  [[nodiscard]] PushResult try_push(const T& item) { T copy(item); return try_push(std::move(copy)); }

  /// Any thread. With the block policy waits for room or close(); otherwise == try_push.
  [[nodiscard]] PushResult push(T&& item) {
    return push_until(std::move(item), std::chrono::steady_clock::time_point::max());
  }

  /// Any thread. Like push() but waits at most `timeout`; returns full when it expires.
  template <class Rep, class Period>
  [[nodiscard]] PushResult push_for(T&& item, std::chrono::duration<Rep, Period> timeout) {
    return push_until(std::move(item), std::chrono::steady_clock::now() + timeout);
  }

  /// Any thread; never blocks. Empty optional when nothing is queued.
  [[nodiscard]] std::optional<T> try_pop() {
    auto item = dequeue_one();
    if (item) notify_producers();
    return item;
  }

  /// Any thread; waits up to `timeout` for an item. Empty optional on timeout,
  /// or at once when the queue is closed and empty.
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> pop_for(std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (int spin = 0; spin < kSpins; ++spin) {
        if (auto item = try_pop()) return item;
        if (is_empty() && closed_.load(std::memory_order_acquire)) return std::nullopt;
        detail::cpu_relax();
      }
      std::unique_lock lock(mutex_);
      consumers_waiting_.fetch_add(1, std::memory_order_seq_cst);
      bool expired = false;
      if (is_empty() && !closed_.load(std::memory_order_seq_cst)) {
        expired = not_empty_.wait_until(lock, deadline) == std::cv_status::timeout;
      }
      consumers_waiting_.fetch_sub(1, std::memory_order_relaxed);
      lock.unlock();
      if (auto item = try_pop()) return item;
      if (expired || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      if (is_empty() && closed_.load(std::memory_order_acquire)) return std::nullopt;
    }
  }

  /// Any thread; never blocks. Pops every queued item into `sink` and returns how
  /// many; used at shutdown to turn leftovers into terminal results.
  std::size_t drain(const std::function<void(T&&)>& sink) {
    std::size_t n = 0;
    while (auto item = try_pop()) {
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

  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  std::size_t capacity() const noexcept { return capacity_; }
  OverflowPolicy policy() const noexcept { return policy_; }
  /// Approximate under concurrent use; exact at quiescence.
  std::size_t size() const noexcept {
    const auto d = deq_.pos.load(std::memory_order_acquire);
    const auto e = enq_.pos.load(std::memory_order_acquire);
    return e > d ? static_cast<std::size_t>(e - d) : 0;
  }

  /// Any thread; never blocks. A snapshot; exact when no thread is using the queue.
  QueueCounters counters() const noexcept {
    QueueCounters c;
    // Every dequeue is either a pop or a drop-oldest; every refused-but-counted
    // push is a drop-newest. Deriving the counters keeps the hot path free of
    // extra shared writes and makes the invariant hold by construction.
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
  static constexpr int kSpins = 128;

  struct Slot {
    std::atomic<std::uint64_t> seq{0};
    alignas(T) unsigned char storage[sizeof(T)];
  };
  struct alignas(detail::kCacheLine) Position {
    std::atomic<std::uint64_t> pos{0};
  };

  static constexpr bool is_pow2(std::size_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }
  std::size_t index(std::uint64_t pos) const noexcept {
    return mask_ ? static_cast<std::size_t>(pos & mask_) : static_cast<std::size_t>(pos % capacity_);
  }
  bool is_empty() const noexcept {
    return enq_.pos.load(std::memory_order_seq_cst) == deq_.pos.load(std::memory_order_seq_cst);
  }
  bool has_room() const noexcept {
    return enq_.pos.load(std::memory_order_seq_cst) - deq_.pos.load(std::memory_order_seq_cst) < capacity_;
  }

  // Moves from `item` only on success.
  bool enqueue_one(T& item) noexcept {
    std::uint64_t pos = enq_.pos.load(std::memory_order_relaxed);
    Slot* slot;
    for (;;) {
      slot = &slots_[index(pos)];
      const std::uint64_t seq = slot->seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::int64_t>(seq - 2 * pos);
      if (dif == 0) {
        // seq_cst: pairs with the waiter registration in pop_for (no lost wake-up).
        if (enq_.pos.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
          break;
      } else if (dif < 0) {
        return false;  // full
      } else {
        pos = enq_.pos.load(std::memory_order_relaxed);
      }
    }
    ::new (static_cast<void*>(slot->storage)) T(std::move(item));
    slot->seq.store(2 * pos + 1, std::memory_order_release);
    return true;
  }

  std::optional<T> dequeue_one() noexcept {
    std::uint64_t pos = deq_.pos.load(std::memory_order_relaxed);
    Slot* slot;
    for (;;) {
      slot = &slots_[index(pos)];
      const std::uint64_t seq = slot->seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::int64_t>(seq - (2 * pos + 1));
      if (dif == 0) {
        if (deq_.pos.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
          break;
      } else if (dif < 0) {
        return std::nullopt;  // empty (or the next item is still being written)
      } else {
        pos = deq_.pos.load(std::memory_order_relaxed);
      }
    }
    T* p = std::launder(reinterpret_cast<T*>(slot->storage));
    std::optional<T> out(std::move(*p));
    p->~T();
    slot->seq.store(2 * (pos + capacity_), std::memory_order_release);
    return out;
  }

  void overflow(T&& item) {
    if (on_overflow_) on_overflow_(std::move(item));
  }

  void after_enqueue() {
    // High-water mark, sampled after each push (includes pushes in flight).
    const std::uint64_t sz = size();
    std::uint64_t hw = high_water_.load(std::memory_order_relaxed);
    while (sz > hw && !high_water_.compare_exchange_weak(hw, sz, std::memory_order_relaxed)) {
    }
    if (consumers_waiting_.load(std::memory_order_seq_cst) != 0) {
      std::lock_guard lock(mutex_);
      not_empty_.notify_all();
    }
  }

  void notify_producers() {
    if (producers_waiting_.load(std::memory_order_seq_cst) != 0) {
      std::lock_guard lock(mutex_);
      not_full_.notify_all();
    }
  }

  PushResult push_until(T&& item, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const PushResult r = try_push(std::move(item));
      if (r != PushResult::full) return r;
      std::unique_lock lock(mutex_);
      producers_waiting_.fetch_add(1, std::memory_order_seq_cst);
      bool expired = false;
      if (!has_room() && !closed_.load(std::memory_order_seq_cst)) {
        if (deadline == std::chrono::steady_clock::time_point::max())
          not_full_.wait(lock);
        else
          expired = not_full_.wait_until(lock, deadline) == std::cv_status::timeout;
      }
      producers_waiting_.fetch_sub(1, std::memory_order_relaxed);
      if (expired) {
        lock.unlock();
        return try_push(std::move(item));  // one last chance; full if still no room
      }
    }
  }

  const std::size_t capacity_;
  const std::size_t mask_;
  const OverflowPolicy policy_;
  const OverflowCallback on_overflow_;
  std::unique_ptr<Slot[]> slots_;

  Position enq_;
  Position deq_;
  // Written only on overflow (rare) and by producers after a push.
  alignas(detail::kCacheLine) std::atomic<std::uint64_t> dropped_oldest_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> high_water_{0};
  alignas(detail::kCacheLine) std::atomic<std::uint32_t> consumers_waiting_{0};
  std::atomic<std::uint32_t> producers_waiting_{0};
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
};

}  // namespace edgert
