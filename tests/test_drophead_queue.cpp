#include <edgert/drophead_queue.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
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
  const auto c = q.counters();
  CHECK(c.pushed == c.popped + c.dropped + c.size);
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

TEST_CASE("invariant under 4 producers x 1 consumer with random overflow", "[queue][stress]") {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 50000;
  std::vector<std::atomic<int>> seen(kProducers * kPerProducer);
  std::atomic<std::uint64_t> dropped_cb{0};
  DropHeadQueue<int> q(8, OverflowPolicy::drop_head, [&](int&& v) {
    seen[static_cast<std::size_t>(v)]++;
    dropped_cb++;
  });

  std::atomic<int> producers_left{kProducers};
  std::uint64_t consumed = 0;
  std::thread consumer([&] {
    std::mt19937 rng(42);
    for (;;) {
      if (auto v = q.pop_for(10ms)) {
        seen[static_cast<std::size_t>(*v)]++;
        consumed++;
        if (rng() % 64 == 0) std::this_thread::sleep_for(50us);  // bursts of overflow
      } else if (producers_left == 0 && q.size() == 0) {
        break;
      }
    }
  });
  std::atomic<int> refused{0};  // Catch2 assertions are not thread-safe: count instead
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        if (!edgert::accepted(q.try_push(p * kPerProducer + i))) refused++;
      }
      producers_left--;
    });
  }
  for (auto& t : producers) t.join();
  consumer.join();
  CHECK(refused == 0);

  const auto c = q.counters();
  CHECK(c.pushed == std::uint64_t(kProducers) * kPerProducer);
  CHECK(c.pushed == c.popped + c.dropped + c.size);
  CHECK(c.size == 0);
  CHECK(c.popped == consumed);
  CHECK(c.dropped == dropped_cb);
  CHECK(c.high_water <= q.capacity());
  int wrong = 0;
  for (auto& s : seen) wrong += s.load() != 1;
  CHECK(wrong == 0);  // every item went exactly once to the consumer or the callback
}

TEST_CASE("block policy loses nothing under 4 producers", "[queue][stress]") {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 20000;
  DropHeadQueue<int> q(4, OverflowPolicy::block);
  std::vector<int> got;
  got.reserve(kProducers * kPerProducer);
  std::thread consumer([&] {
    while (got.size() < std::size_t(kProducers) * kPerProducer) {
      if (auto v = q.pop_for(1s)) got.push_back(*v);
    }
  });
  std::atomic<int> refused{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        if (q.push(p * kPerProducer + i) != PushResult::ok) refused++;
      }
    });
  }
  for (auto& t : producers) t.join();
  consumer.join();
  CHECK(refused == 0);
  CHECK(q.counters().dropped == 0);
  // Per-producer FIFO order holds and nothing is missing.
  std::vector<int> last(kProducers, -1);
  for (int v : got) {
    const int p = v / kPerProducer;
    CHECK(v > last[static_cast<std::size_t>(p)]);
    last[static_cast<std::size_t>(p)] = v;
  }
  std::sort(got.begin(), got.end());
  CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
  CHECK(got.size() == std::size_t(kProducers) * kPerProducer);
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
  CHECK(refused == 0);
  const auto c = q.counters();
  CHECK(c.pushed == std::uint64_t(kItems));
  CHECK(c.pushed == c.popped + c.dropped);
  CHECK(c.popped == consumed);
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
