#include <edgert/drophead_queue.hpp>

#include <catch2/catch.hpp>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::DropHeadQueue;
using edgert::OverflowPolicy;
using edgert::PushResult;

TEST_CASE("capacity 2: pushing 1,2,3 drops exactly item 1", "[queue]") {
  std::vector<int> dropped;
  DropHeadQueue<int> q(2, OverflowPolicy::drop_head, [&](int&& v) { dropped.push_back(v); });
  CHECK(q.try_push(1) == PushResult::ok);
  CHECK(q.try_push(2) == PushResult::ok);
  CHECK(q.try_push(3) == PushResult::dropped_oldest);
  CHECK(dropped == std::vector<int>{1});
  CHECK(q.try_pop() == 2);
  CHECK(q.try_pop() == 3);
  CHECK_FALSE(q.try_pop().has_value());
  const auto c = q.counters();
  CHECK(c.pushed == 3);
  CHECK(c.popped == 2);
  CHECK(c.dropped == 1);
  CHECK(c.size == 0);
  CHECK(c.high_water == 2);
}

TEST_CASE("drop_newest hands the new item to the callback", "[queue]") {
  std::vector<int> dropped;
  DropHeadQueue<int> q(2, OverflowPolicy::drop_newest, [&](int&& v) { dropped.push_back(v); });
  CHECK(q.try_push(1) == PushResult::ok);
  CHECK(q.try_push(2) == PushResult::ok);
  CHECK(q.try_push(3) == PushResult::dropped_newest);
  CHECK(dropped == std::vector<int>{3});
  CHECK(q.try_pop() == 1);
  CHECK(q.try_pop() == 2);
  CHECK_FALSE(q.try_pop().has_value());
  // Compared with what this test counted itself: 3 offered, 2 popped, 1 to the callback.
  const auto c = q.counters();
  CHECK(c.pushed == 3);
  CHECK(c.popped == 2);
  CHECK(c.dropped == 1);
  CHECK(c.size == 0);
}

TEST_CASE("block policy: try_push refuses and leaves the item, push_for times out", "[queue]") {
  DropHeadQueue<std::unique_ptr<int>> q(1, OverflowPolicy::block);
  CHECK(q.try_push(std::make_unique<int>(1)) == PushResult::ok);
  auto item = std::make_unique<int>(2);
  CHECK(q.try_push(std::move(item)) == PushResult::full);
  REQUIRE(item);  // not moved from
  CHECK(*item == 2);
  CHECK(q.push_for(std::move(item), 20ms) == PushResult::full);
  REQUIRE(item);
  CHECK(q.counters().dropped == 0);
}

TEST_CASE("block policy: push_for takes the one free slot at every capacity", "[queue]") {
  for (std::size_t capacity : {1, 2, 3, 4, 5, 8, 16, 63, 64, 100, 1024}) {
    INFO("capacity=" << capacity);
    DropHeadQueue<int> q(capacity, OverflowPolicy::block);
    for (std::size_t i = 0; i + 1 < capacity; ++i) REQUIRE(q.try_push(int(i)) == PushResult::ok);
    CHECK(q.push_for(-1, 200ms) == PushResult::ok);
    CHECK(q.size() == capacity);
    CHECK(q.push_for(-2, 1ms) == PushResult::full);  // now it is full
    CHECK(q.try_pop() == (capacity == 1 ? -1 : 0));
    CHECK(q.push(-3) == PushResult::ok);  // push() too takes a single slot
    CHECK(q.size() == capacity);
  }
}

TEST_CASE("block policy: push_for succeeds when a slot frees up before the deadline", "[queue]") {
  for (std::size_t capacity : {8, 16, 64}) {
    INFO("capacity=" << capacity);
    DropHeadQueue<int> q(capacity, OverflowPolicy::block);
    for (std::size_t i = 0; i < capacity; ++i) REQUIRE(q.try_push(int(i)) == PushResult::ok);
    std::optional<int> popped;
    std::thread consumer([&] {
      std::this_thread::sleep_for(30ms);
      popped = q.try_pop();
    });
    const PushResult r = q.push_for(-1, 10s);
    consumer.join();
    CHECK(r == PushResult::ok);
    CHECK(popped == 0);
  }
}

TEST_CASE("drop policies: push_for and push never wait on a full queue", "[queue]") {
  for (auto policy : {OverflowPolicy::drop_head, OverflowPolicy::drop_newest}) {
    int dropped = 0;
    DropHeadQueue<int> q(4, policy, [&](int&&) { ++dropped; });
    for (int i = 0; i < 4; ++i) REQUIRE(q.try_push(int{i}) == PushResult::ok);
    const auto t0 = std::chrono::steady_clock::now();
    const PushResult r = q.push_for(9, 20s);
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // == try_push: no wait at all
    CHECK(r == (policy == OverflowPolicy::drop_head ? PushResult::dropped_oldest : PushResult::dropped_newest));
    CHECK(dropped == 1);
  }
}

namespace {
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

// A lossless stage behind a slow consumer: the producer must sleep while it waits,
// not spin (the issue measured 91-96% of a core), and take each slot as it frees up.
TEST_CASE("block policy: a producer blocked on a slow consumer sleeps and never times out", "[queue][block]") {
  for (std::size_t capacity : {16, 64}) {
    INFO("capacity=" << capacity);
    constexpr int kPops = 40;  // one every 50 ms: 2 s
    DropHeadQueue<int> q(capacity, OverflowPolicy::block);
    for (std::size_t i = 0; i < capacity; ++i) REQUIRE(q.try_push(int(i)) == PushResult::ok);

    int consumed = 0;  // consumer's own tally
    std::thread consumer([&] {
      for (int i = 0; i < kPops; ++i) {
        std::this_thread::sleep_for(50ms);
        if (q.try_pop()) ++consumed;
      }
    });
    int ok = 0, other = 0;  // producer's own tally
    std::chrono::nanoseconds blocked{0};
    const auto cpu0 = thread_cpu_time();
    for (int i = 0; i < kPops; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const PushResult r = q.push_for(int(capacity) + i, 1s);
      blocked += std::chrono::steady_clock::now() - t0;
      (r == PushResult::ok ? ok : other)++;
    }
    const auto cpu = thread_cpu_time() - cpu0;
    consumer.join();

    CHECK(ok == kPops);
    CHECK(other == 0);
    CHECK(consumed == kPops);
    CHECK(q.size() == capacity);  // prefilled + pushed - consumed
    const double cpu_share = double(cpu.count()) / double(blocked.count());
    INFO("producer cpu " << cpu.count() / 1000 << " us over " << blocked.count() / 1000 << " us blocked");
    CHECK(blocked > 1s);  // it really waited on the consumer
    CHECK(cpu_share < 0.05);
  }
}

// pop_for's spin adapts: a consumer whose items come every 2 ms (a camera, a video file:
// no spin ever catches one) sleeps at once instead of spinning ~100 us per item, CPU a
// 2-core device needs for the decoder (docs/performance.md, file_vs_bare_decode).
TEST_CASE("pop_for: a consumer fed every 2 ms stops spinning before it sleeps", "[queue]") {
  constexpr int kItems = 150;
  DropHeadQueue<int> q(16, OverflowPolicy::block);
  int popped = 0;  // consumer's own tally
  std::chrono::nanoseconds consumer_cpu{0};
  std::thread consumer([&] {
    const auto cpu0 = thread_cpu_time();
    while (popped < kItems && q.pop_for(2s)) ++popped;
    consumer_cpu = thread_cpu_time() - cpu0;
  });
  int pushed = 0;  // producer's own tally
  for (int i = 0; i < kItems; ++i) {
    std::this_thread::sleep_for(2ms);
    if (q.push_for(int(i), 1s) == PushResult::ok) ++pushed;
  }
  consumer.join();
  CHECK(pushed == kItems);
  CHECK(popped == kItems);
  const auto [min_spins, max_spins] = DropHeadQueue<int>::spin_limits();
  REQUIRE(min_spins < max_spins);
  // Every 2 ms gap outlasts any spin: the budget went down to the floor and stayed
  // (one doubling allowed: an item can land during a spin when the consumer was
  // descheduled for a whole gap on a loaded machine).
  CHECK(q.spin_budget() <= 2 * min_spins);
  // The CPU it saves, for the record (too load-dependent to assert: a full spin is
  // 15-150 us depending on the CPU's pause latency, a sleep and wake-up 5-20 us).
  WARN("consumer cpu " << double(consumer_cpu.count()) / 1000.0 / kItems << " us per item");
}

TEST_CASE("non-power-of-two capacity keeps FIFO order across wrap-around", "[queue]") {
  DropHeadQueue<int> q(3);
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 100; ++round) {
    while (q.size() < 3) REQUIRE(q.try_push(next_in++) == PushResult::ok);
    for (int k = 0; k < 2; ++k) REQUIRE(q.try_pop() == next_out++);
  }
}

TEST_CASE("pop_for times out on an empty queue", "[queue]") {
  DropHeadQueue<int> q(4);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(q.pop_for(50ms).has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 45ms);
}

TEST_CASE("close wakes blocked consumers and producers", "[queue]") {
  DropHeadQueue<int> q(1, OverflowPolicy::block);
  REQUIRE(q.try_push(7) == PushResult::ok);
  DropHeadQueue<int> empty(1);

  std::atomic<int> woke{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      if (q.push(8) == PushResult::closed) woke++;
    });
    threads.emplace_back([&] {
      if (!empty.pop_for(30s).has_value()) woke++;
    });
  }
  std::this_thread::sleep_for(50ms);
  const auto t0 = std::chrono::steady_clock::now();
  q.close();
  empty.close();
  for (auto& t : threads) t.join();
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(woke == 6);
  CHECK(q.try_push(9) == PushResult::closed);
  CHECK(q.try_pop() == 7);  // what was queued stays poppable after close
}

namespace {

// What each side of a stress run counted on its own. The queue's counters() are
// compared against these, never against each other: counters() are derived from the
// same positions, so an invariant between them would hold even if items were lost.
struct Tally {
  std::uint64_t handed_over = 0;  // producers: pushes answered other than full/closed
  std::uint64_t refused = 0;      // producers: pushes answered full or closed
  std::uint64_t consumed = 0;     // consumer: items popped
  std::uint64_t overflowed = 0;   // overflow callback: items received
  std::uint64_t drained = 0;      // left queued when the consumer stopped, drained by the test
  std::uint64_t out_of_order = 0; // consumed/drained items older than an earlier one of the same producer
  std::uint64_t not_once = 0;     // items seen by nobody or by more than one receiver
  edgert::QueueCounters counters; // the queue's own view, read after the drain
};

// kProducers threads push kPerProducer distinct ints each (try_push, or push for the
// block policy) while one consumer pops with random pauses. The consumer starts only
// after producer 0 has pushed 100 items, so the drop policies overflow for sure.
Tally stress(OverflowPolicy policy, std::size_t capacity, int producers, int per_producer) {
  const auto total = static_cast<std::size_t>(producers) * static_cast<std::size_t>(per_producer);
  std::vector<std::atomic<int>> seen(total);
  std::atomic<std::uint64_t> overflowed{0};  // the callback runs on every producer thread
  DropHeadQueue<int> q(capacity, policy, [&](int&& v) {
    seen[static_cast<std::size_t>(v)]++;
    overflowed++;
  });
  std::vector<int> last(static_cast<std::size_t>(producers), -1);
  Tally t;
  auto receive = [&](int v) {
    seen[static_cast<std::size_t>(v)]++;
    int& prev = last[static_cast<std::size_t>(v / per_producer)];
    t.out_of_order += v <= prev;
    prev = v;
  };

  std::atomic<bool> started{false};
  std::atomic<int> producers_left{producers};
  std::thread consumer([&] {
    std::mt19937 rng(42);
    if (policy != OverflowPolicy::block) {
      while (!started) std::this_thread::yield();
    }
    std::uint64_t consumed = 0;
    while (producers_left > 0) {
      if (auto v = q.pop_for(10ms)) {
        receive(*v);
        consumed++;
        if (rng() % 64 == 0) std::this_thread::sleep_for(50us);  // bursts of overflow
      }
    }
    t.consumed = consumed;  // read by the test after join
  });
  std::vector<Tally> per(static_cast<std::size_t>(producers));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      Tally& mine = per[static_cast<std::size_t>(p)];
      for (int i = 0; i < per_producer; ++i) {
        const int v = p * per_producer + i;
        const PushResult r = policy == OverflowPolicy::block ? q.push(int{v}) : q.try_push(int{v});
        if (r == PushResult::full || r == PushResult::closed) {
          mine.refused++;
        } else {
          mine.handed_over++;
        }
        if (p == 0 && i == 100) started = true;
      }
      producers_left--;
    });
  }
  for (auto& th : threads) th.join();
  consumer.join();
  t.drained = q.drain([&](int&& v) { receive(v); });
  for (const auto& m : per) {
    t.handed_over += m.handed_over;
    t.refused += m.refused;
  }
  t.overflowed = overflowed;
  for (auto& s : seen) t.not_once += s.load() != 1;
  t.counters = q.counters();
  return t;
}

void check_tally(const Tally& t, OverflowPolicy policy, std::uint64_t total) {
  INFO("handed_over=" << t.handed_over << " consumed=" << t.consumed << " overflowed=" << t.overflowed
                      << " drained=" << t.drained);
  CHECK(t.refused == 0);
  CHECK(t.handed_over == total);
  // Everything handed over reached exactly one receiver: no loss, no duplicate.
  CHECK(t.handed_over == t.consumed + t.overflowed + t.drained);
  CHECK(t.not_once == 0);
  CHECK(t.out_of_order == 0);
  if (policy == OverflowPolicy::block) {
    CHECK(t.overflowed == 0);
  } else {
    CHECK(t.overflowed > 0);  // the overflow path really ran
  }
  // The queue's counters agree with the independent tallies.
  CHECK(t.counters.pushed == t.handed_over);
  CHECK(t.counters.popped == t.consumed + t.drained);
  CHECK(t.counters.dropped == t.overflowed);
  CHECK(t.counters.size == 0);
}

}  // namespace

TEST_CASE("independent counts balance under 4 producers x 1 consumer for every policy", "[queue][stress]") {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  for (auto policy : {OverflowPolicy::drop_head, OverflowPolicy::drop_newest, OverflowPolicy::block}) {
    for (std::size_t capacity : {std::size_t{4}, std::size_t{8}, std::size_t{64}}) {
      INFO("policy=" << int(policy) << " capacity=" << capacity);
      const Tally t = stress(policy, capacity, kProducers, kPerProducer);
      check_tally(t, policy, std::uint64_t(kProducers) * kPerProducer);
      CHECK(t.counters.high_water <= capacity);
    }
  }
}

TEST_CASE("drain hands every leftover to the sink and the destructor frees the rest", "[queue]") {
  auto counter = std::make_shared<int>(0);
  {
    DropHeadQueue<std::shared_ptr<int>> q(4);
    for (int i = 0; i < 4; ++i) REQUIRE(q.try_push(counter) == PushResult::ok);
    CHECK(counter.use_count() == 5);
    std::size_t sunk = 0;
    CHECK(q.drain([&](std::shared_ptr<int>&&) { ++sunk; }) == 4);
    CHECK(sunk == 4);
    REQUIRE(q.try_push(counter) == PushResult::ok);
  }
  CHECK(counter.use_count() == 1);
}

TEST_CASE("one producer: drop_head invariant with a racing consumer on a tiny queue", "[queue][stress]") {
  constexpr int kItems = 200000;
  std::vector<std::atomic<int>> seen(kItems);
  std::uint64_t dropped_cb = 0;  // the callback runs on the single producer thread
  DropHeadQueue<int> q(4, OverflowPolicy::drop_head, [&](int&& v) {
    seen[static_cast<std::size_t>(v)]++;
    dropped_cb++;
  });
  std::atomic<bool> done{false};
  std::uint64_t consumed = 0;
  std::thread consumer([&] {
    for (;;) {
      if (auto v = q.pop_for(5ms)) {
        seen[static_cast<std::size_t>(*v)]++;
        consumed++;
      } else if (done && q.size() == 0) {
        break;
      }
    }
  });
  int refused = 0;
  for (int i = 0; i < kItems; ++i) refused += !edgert::accepted(q.try_push(int{i}));
  done = true;
  consumer.join();
  const auto drained = q.drain([&](int&& v) { seen[static_cast<std::size_t>(v)]++; });
  CHECK(refused == 0);
  CHECK(consumed + dropped_cb + drained == std::uint64_t(kItems));  // tallied by each receiver
  const auto c = q.counters();
  CHECK(c.pushed == std::uint64_t(kItems));
  CHECK(c.popped == consumed + drained);
  CHECK(c.dropped == dropped_cb);
  int wrong = 0;
  for (auto& s : seen) wrong += s.load() != 1;
  CHECK(wrong == 0);
}

TEST_CASE("capacity 1 holds exactly one item under every policy", "[queue]") {
  for (auto policy : {OverflowPolicy::drop_head, OverflowPolicy::drop_newest, OverflowPolicy::block}) {
    int dropped = 0;
    DropHeadQueue<int> q(1, policy, [&](int&&) { ++dropped; });
    CHECK(q.try_push(1) == PushResult::ok);
    const auto second = q.try_push(2);
    CHECK(q.size() == 1);
    CHECK_FALSE(second == PushResult::ok);
    CHECK(q.counters().high_water == 1);
    CHECK(q.try_pop().has_value());
    CHECK_FALSE(q.try_pop().has_value());
    CHECK(dropped == (policy == OverflowPolicy::block ? 0 : 1));
  }
}

TEST_CASE("push_for and pop_for accept a timeout too large to add to now()", "[queue]") {
  DropHeadQueue<int> q(1, OverflowPolicy::block);
  REQUIRE(q.try_push(1) == PushResult::ok);
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    q.close();
  });
  CHECK(q.push_for(2, std::chrono::hours::max()) == PushResult::closed);
  closer.join();
  CHECK(q.pop_for(std::chrono::nanoseconds::max()) == 1);
  CHECK_FALSE(q.pop_for(std::chrono::hours::max()).has_value());  // closed and empty
}
