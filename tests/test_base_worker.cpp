#include <edgert/base_worker.hpp>

#include <catch2/catch.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;
using edgert::WorkerState;

namespace {

// Sleeps in wait_for_stop until stopped; records its thread name.
class SleepyWorker : public edgert::BaseWorker {
 public:
  explicit SleepyWorker(std::string name = "sleepy") : BaseWorker(std::move(name), 5000ms) {}
  ~SleepyWorker() override { stop(); }
  std::atomic<int> runs{0};
  std::atomic<bool> in_run{false};
  char thread_name[16] = {};

 protected:
  void run(std::stop_token stop) override {
    pthread_getname_np(pthread_self(), thread_name, sizeof thread_name);
    runs++;
    in_run = true;
    while (!stop.stop_requested()) wait_for_stop(10s);
  }
};

class ThrowingWorker : public edgert::BaseWorker {
 public:
  ThrowingWorker() : BaseWorker("thrower") {}
  ~ThrowingWorker() override { stop(); }

 protected:
  void run(std::stop_token) override { throw std::runtime_error("sensor unplugged"); }
};

// Ignores its stop token for `busy`.
class StubbornWorker : public edgert::BaseWorker {
 public:
  explicit StubbornWorker(std::chrono::milliseconds busy) : BaseWorker("stubborn", 100ms), busy_(busy) {}
  ~StubbornWorker() override { stop(); }

 protected:
  void run(std::stop_token) override { std::this_thread::sleep_for(busy_); }

 private:
  std::chrono::milliseconds busy_;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

}  // namespace

TEST_CASE("start twice runs one thread", "[worker]") {
  SleepyWorker w;
  CHECK(w.start());
  CHECK_FALSE(w.start());
  REQUIRE(eventually([&] { return w.in_run.load(); }));
  CHECK(w.state() == WorkerState::running);
  CHECK(w.runs == 1);
  CHECK(w.stop());
  CHECK(w.state() == WorkerState::stopped);
  CHECK(w.runs == 1);
}

TEST_CASE("the thread carries the worker's name", "[worker]") {
  SleepyWorker w("camera-front-left-long");
  w.start();
  REQUIRE(eventually([&] { return w.in_run.load(); }));
  CHECK(std::string(w.thread_name) == "camera-front-le");  // 15-byte kernel limit
}

TEST_CASE("stop before start is harmless", "[worker]") {
  SleepyWorker w;
  CHECK(w.stop());
  CHECK(w.state() == WorkerState::idle);
  CHECK(w.start());
  CHECK(w.stop());
  CHECK(w.stop());
  CHECK(w.state() == WorkerState::stopped);
}

TEST_CASE("stop wakes a worker sleeping in wait_for_stop at once", "[worker]") {
  SleepyWorker w;
  w.start();
  REQUIRE(eventually([&] { return w.in_run.load(); }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(w.stop());
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);  // not the 10 s sleep
}

TEST_CASE("stop from two threads at once", "[worker]") {
  for (int round = 0; round < 20; ++round) {
    SleepyWorker w;
    w.start();
    std::atomic<int> ok{0};
    std::thread a([&] { ok += w.stop(); });
    std::thread b([&] { ok += w.stop(); });
    a.join();
    b.join();
    CHECK(ok == 2);
    CHECK(w.state() == WorkerState::stopped);
  }
}

TEST_CASE("an exception escaping run() marks the worker failed", "[worker]") {
  ThrowingWorker w;
  w.start();
  REQUIRE(eventually([&] { return w.state() == WorkerState::failed; }));
  CHECK(w.error() == "sensor unplugged");
  CHECK(w.failures() == 1);
  CHECK(w.stop());
  CHECK(w.state() == WorkerState::failed);
  // Restartable, and each failure is counted.
  CHECK(w.start());
  REQUIRE(eventually([&] { return w.failures() == 2; }));
}

TEST_CASE("stop is bounded when run() ignores the stop token", "[worker]") {
  StubbornWorker w(1500ms);
  w.start();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(w.stop());  // 100 ms join timeout
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
  CHECK(w.state() == WorkerState::stopping);
  CHECK_FALSE(w.start());  // the old thread is still there
  REQUIRE(eventually([&] { return w.state() == WorkerState::stopped; }));
  CHECK(w.stop());
}

TEST_CASE("a worker whose run() returned can be started again", "[worker]") {
  StubbornWorker w(1ms);
  CHECK(w.start());
  REQUIRE(eventually([&] { return w.state() == WorkerState::stopped; }));
  CHECK(w.start());
  CHECK(w.stop());
}
