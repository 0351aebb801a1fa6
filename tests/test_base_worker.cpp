#include <edgert/base_worker.hpp>

#include "wait_until.hpp"

#include <catch2/catch.hpp>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::BaseWorker;
using edgert::ErrorCode;
using edgert::WorkerOptions;
using edgert::WorkerState;
using edgert::testing::wait_until;

namespace {

// A one-way gate: wait() blocks until open() (or `limit`), ignoring any stop token.
class Gate {
 public:
  void open() {
    std::lock_guard lk(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds limit = 10s) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Counts its own destruction and whether the run() that used it had returned by then.
struct Owned {
  std::atomic<int>* destroyed = nullptr;
  std::atomic<bool>* run_returned = nullptr;
  std::atomic<bool>* destroyed_after_run = nullptr;
  int touches = 0;
  ~Owned() {
    destroyed_after_run->store(run_returned->load());
    destroyed->fetch_add(1);
  }
};

// Sleeps in wait_for_stop until stopped; keeps its own tallies.
struct Sleeper {
  std::atomic<int> runs{0};
  std::atomic<int> returns{0};
  std::atomic<bool> in_run{false};
  char thread_name[16] = {};

  BaseWorker make(std::string name = "sleepy", std::chrono::milliseconds timeout = 5000ms) {
    return BaseWorker(WorkerOptions{std::move(name), timeout, {}}, [this](std::stop_token stop) {
      pthread_getname_np(pthread_self(), thread_name, sizeof thread_name);
      runs++;
      in_run = true;
      while (!stop.stop_requested()) edgert::wait_for_stop(stop, 10s);
      in_run = false;
      returns++;
    });
  }
};

}  // namespace

TEST_CASE("start twice runs one thread", "[worker]") {
  Sleeper s;
  BaseWorker w = s.make();
  CHECK(w.start().ok());
  CHECK(w.start().ok());  // idempotent
  REQUIRE(wait_until([&] { return s.in_run.load(); }));
  CHECK(w.state() == WorkerState::running);
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::stopped);
  CHECK(s.runs == 1);
  CHECK(s.returns == 1);
}

TEST_CASE("the thread carries the worker's name", "[worker]") {
  Sleeper s;
  BaseWorker w = s.make("camera-front-left-long");
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return s.in_run.load(); }));
  CHECK(std::string(s.thread_name) == "camera-front-le");  // 15-byte kernel limit
  CHECK(w.name() == "camera-front-left-long");
}

TEST_CASE("stop before start is harmless", "[worker]") {
  Sleeper s;
  BaseWorker w = s.make();
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::idle);
  CHECK(w.start().ok());
  CHECK(w.stop().ok());
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::stopped);
}

TEST_CASE("stop wakes a worker sleeping in wait_for_stop at once", "[worker]") {
  Sleeper s;
  BaseWorker w = s.make();
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return s.in_run.load(); }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(w.stop().ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);  // not the 10 s sleep
}

TEST_CASE("a failed thread creation leaves the worker failed, and start() says so", "[worker]") {
  std::atomic<bool> refuse{true};
  std::atomic<int> spawned{0};
  std::atomic<int> runs{0};
  WorkerOptions opts{"no-threads", 5000ms, [&](std::function<void()> body) {
                       if (refuse) throw std::system_error(EAGAIN, std::generic_category(), "pthread_create");
                       spawned++;
                       return std::thread(std::move(body));
                     }};
  BaseWorker w(opts, [&](std::stop_token stop) {
    runs++;
    while (!stop.stop_requested()) edgert::wait_for_stop(stop, 10s);
  });

  const edgert::Status st = w.start();
  CHECK(st.code() == ErrorCode::io_error);
  CHECK_THAT(st.message(), Catch::Contains("no-threads") && Catch::Contains("cannot create thread"));
  CHECK(w.state() == WorkerState::failed);
  CHECK_THAT(w.error(), Catch::Contains("pthread_create"));
  CHECK(w.failures() == 1);
  CHECK(w.stop().ok());  // nothing to stop
  CHECK(w.state() == WorkerState::failed);
  CHECK(runs == 0);

  // Restart after the failure, once threads can be made again.
  refuse = false;
  REQUIRE(w.start().ok());
  CHECK(w.state() == WorkerState::running);
  CHECK(w.error().empty());
  REQUIRE(wait_until([&] { return runs.load() == 1; }));
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::stopped);
  CHECK(spawned == 1);
  CHECK(runs == 1);
}

TEST_CASE("a thread factory returning no thread is a failed start", "[worker]") {
  std::atomic<int> runs{0};
  BaseWorker w(WorkerOptions{"empty-factory", 1000ms, [](std::function<void()>) { return std::thread(); }},
               [&](std::stop_token) { runs++; });
  CHECK(w.start().code() == ErrorCode::io_error);
  CHECK(w.state() == WorkerState::failed);
  CHECK_THAT(w.error(), Catch::Contains("returned no thread"));
  CHECK(runs == 0);
}

TEST_CASE("a worker without a run function reports it on start", "[worker]") {
  BaseWorker a(WorkerOptions{"no-run", 100ms, {}}, edgert::WorkerRunFn{});
  CHECK(a.start().code() == ErrorCode::invalid_argument);
  CHECK(a.state() == WorkerState::idle);
  BaseWorker b(WorkerOptions{"no-task", 100ms, {}}, std::shared_ptr<edgert::WorkerTask>{});
  const edgert::Status st = b.start();
  CHECK(st.code() == ErrorCode::invalid_argument);
  CHECK_THAT(st.message(), Catch::Contains("no-task"));
  CHECK(b.stop().ok());
}

TEST_CASE("an abandoned worker's owned objects outlive its run()", "[worker][ownership]") {
  std::atomic<int> destroyed{0};
  std::atomic<bool> run_returned{false};
  std::atomic<bool> destroyed_after_run{false};
  std::atomic<bool> in_run{false};
  std::atomic<int> touched{0};
  Gate release;

  auto owned = std::make_shared<Owned>();
  owned->destroyed = &destroyed;
  owned->run_returned = &run_returned;
  owned->destroyed_after_run = &destroyed_after_run;
  Owned* raw = owned.get();  // run() uses it through the raw pointer: keep_alive must hold it

  auto w = std::make_unique<BaseWorker>(
      WorkerOptions{"abandoned", 50ms, {}},
      [raw, &release, &in_run, &touched, &run_returned](std::stop_token) {
        in_run = true;
        release.wait();  // ignores stop, like a plugin stuck in a call
        raw->touches++;  // ASan: a use-after-free here if the worker let `owned` go
        touched = raw->touches;
        run_returned = true;
      },
      edgert::WorkerWakeFn{}, owned);
  REQUIRE(w->start().ok());
  REQUIRE(wait_until([&] { return in_run.load(); }));

  owned.reset();  // the owner's reference
  CHECK(w->stop().code() == ErrorCode::timeout);
  CHECK(w->state() == WorkerState::stopping);
  w.reset();  // ~BaseWorker times out again and detaches
  CHECK(destroyed == 0);  // still held by the thread

  release.open();
  REQUIRE(wait_until([&] { return destroyed.load() == 1; }));
  CHECK(touched == 1);
  CHECK(destroyed_after_run);
}

namespace {
// The subclassing form, blocking on its own condition variable rather than the token.
class Channel : public edgert::WorkerTask {
 public:
  std::atomic<int> runs{0};
  std::atomic<int> returns{0};
  std::atomic<int> wakes{0};
  std::atomic<bool> in_run{false};
  std::atomic<int>* destroyed = nullptr;  // optional tallies that outlive the task
  std::atomic<int>* returned = nullptr;
  ~Channel() override {
    if (destroyed) destroyed->fetch_add(1);
  }

  void run(std::stop_token) override {
    runs++;
    std::unique_lock lk(mu_);
    closed_ = false;
    in_run = true;
    cv_.wait_for(lk, 30s, [&] { return closed_; });  // only wake() ends this early
    in_run = false;
    returns++;
    if (returned) returned->fetch_add(1);
  }
  void wake() override {
    wakes++;
    std::lock_guard lk(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
};
}  // namespace

TEST_CASE("a WorkerTask's run and wake: stop wakes a run blocked elsewhere", "[worker]") {
  auto task = std::make_shared<Channel>();
  BaseWorker w(WorkerOptions{"task", 5000ms, {}}, task);
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return task->in_run.load(); }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(w.stop().ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);  // not the 5 s join timeout
  CHECK(task->wakes == 1);
  CHECK(task->returns == 1);
  // Restart after stop: a fresh run.
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return task->runs.load() == 2 && task->in_run.load(); }));
  CHECK(w.stop().ok());
  CHECK(task->returns == 2);
}

TEST_CASE("destroying a worker with a blocked run calls wake first", "[worker]") {
  std::atomic<int> destroyed{0};
  std::atomic<int> returned{0};
  auto task = std::make_shared<Channel>();
  task->destroyed = &destroyed;
  task->returned = &returned;
  std::weak_ptr<Channel> watch = task;
  const auto t0 = std::chrono::steady_clock::now();
  {
    BaseWorker w(WorkerOptions{"dtor-wakes", 5000ms, {}}, task);
    REQUIRE(w.start().ok());
    REQUIRE(wait_until([&] { return task->in_run.load(); }));
    task.reset();  // the worker (and its thread) own it now
    // no stop(): ~BaseWorker must wake run() and join it
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);  // woken, not the 5 s join timeout
  CHECK(returned == 1);   // run() had returned when the destructor did: joined, not detached
  CHECK(destroyed == 1);  // and the last reference went with the worker
  CHECK(watch.expired());
}

TEST_CASE("an abandoned WorkerTask outlives its run()", "[worker][ownership]") {
  struct Stuck : edgert::WorkerTask {
    Gate* release = nullptr;
    std::atomic<bool>* in_run = nullptr;
    std::atomic<bool>* run_returned = nullptr;
    std::atomic<bool>* destroyed_after_run = nullptr;
    std::atomic<int>* destroyed = nullptr;
    std::vector<int> data = std::vector<int>(64, 1);
    ~Stuck() override {
      destroyed_after_run->store(run_returned->load());
      destroyed->fetch_add(1);
    }
    void run(std::stop_token) override {
      *in_run = true;
      release->wait();
      data[7] += 1;  // ASan: use-after-free if the task died with its worker
      *run_returned = true;
    }
  };
  Gate release;
  std::atomic<bool> in_run{false}, run_returned{false}, destroyed_after_run{false};
  std::atomic<int> destroyed{0};
  auto task = std::make_shared<Stuck>();
  task->release = &release;
  task->in_run = &in_run;
  task->run_returned = &run_returned;
  task->destroyed_after_run = &destroyed_after_run;
  task->destroyed = &destroyed;
  {
    BaseWorker w(WorkerOptions{"stuck-task", 50ms, {}}, std::move(task));
    REQUIRE(w.start().ok());
    REQUIRE(wait_until([&] { return in_run.load(); }));
  }  // ~BaseWorker: stop() times out, the thread is detached
  CHECK(destroyed == 0);
  release.open();
  REQUIRE(wait_until([&] { return destroyed.load() == 1; }));
  CHECK(destroyed_after_run);
}

TEST_CASE("stop from many threads at once", "[worker]") {
  for (int round = 0; round < 10; ++round) {
    std::atomic<int> wakes{0};
    std::atomic<int> runs{0};
    BaseWorker w(
        WorkerOptions{"many-stops", 5000ms, {}},
        [&](std::stop_token stop) {
          runs++;
          while (!stop.stop_requested()) edgert::wait_for_stop(stop, 10s);
        },
        [&] { wakes++; });
    REQUIRE(w.start().ok());
    std::atomic<int> ok{0};
    std::vector<std::thread> stoppers;
    for (int i = 0; i < 8; ++i) stoppers.emplace_back([&] { ok += w.stop().ok(); });
    for (auto& t : stoppers) t.join();
    CHECK(ok == 8);
    CHECK(w.state() == WorkerState::stopped);
    CHECK(runs == 1);
    CHECK(wakes >= 1);
    CHECK(wakes <= 8);
  }
}

TEST_CASE("concurrent stops of a stuck run each wait at most the join timeout", "[worker]") {
  Gate release;
  std::atomic<bool> in_run{false};
  BaseWorker w(WorkerOptions{"stuck-stops", 300ms, {}}, [&](std::stop_token) {
    in_run = true;
    release.wait();
  });
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return in_run.load(); }));
  std::atomic<int> timeouts{0};
  std::atomic<long long> slowest_ms{0};
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 8; ++i) {
    stoppers.emplace_back([&] {
      const auto t0 = std::chrono::steady_clock::now();
      if (w.stop().code() == ErrorCode::timeout) timeouts++;
      const long long ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      long long prev = slowest_ms.load();
      while (ms > prev && !slowest_ms.compare_exchange_weak(prev, ms)) {
      }
    });
  }
  for (auto& t : stoppers) t.join();
  CHECK(timeouts == 8);
  // One after another they would take 8 x 300 ms = 2.4 s; each call is bounded on its own.
  CHECK(slowest_ms < 1500);
  CHECK(w.state() == WorkerState::stopping);
  release.open();
  CHECK(wait_until([&] { return w.state() == WorkerState::stopped; }));
  CHECK(w.stop().ok());
}

TEST_CASE("an exception escaping run() marks the worker failed; it can restart", "[worker]") {
  std::atomic<int> runs{0};
  BaseWorker w(WorkerOptions{"thrower", 2000ms, {}}, [&](std::stop_token) {
    runs++;
    throw std::runtime_error("sensor unplugged");
  });
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return w.state() == WorkerState::failed; }));
  CHECK(w.error() == "sensor unplugged");
  CHECK(w.failures() == 1);
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::failed);
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return w.failures() == 2; }));
  CHECK(runs == 2);
}

TEST_CASE("stop is bounded when run() ignores the stop token; start waits for it", "[worker]") {
  Gate release;
  std::atomic<int> runs{0};
  BaseWorker w(WorkerOptions{"stubborn", 100ms, {}}, [&](std::stop_token) {
    runs++;
    release.wait();
  });
  REQUIRE(w.start().ok());
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(w.stop().code() == ErrorCode::timeout);  // 100 ms join timeout
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
  CHECK(w.state() == WorkerState::stopping);
  CHECK(w.start().code() == ErrorCode::again);  // the old thread is still there
  release.open();
  REQUIRE(wait_until([&] { return w.state() == WorkerState::stopped; }));
  CHECK(w.stop().ok());
  CHECK(runs == 1);
}

TEST_CASE("a worker whose run() returned can be started again", "[worker]") {
  std::atomic<int> runs{0};
  std::atomic<int> stale_tokens{0};
  BaseWorker w(WorkerOptions{"one-shot", 1000ms, {}}, [&](std::stop_token stop) {
    if (stop.stop_requested()) stale_tokens++;  // each start must have a fresh token
    runs++;
  });
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return w.state() == WorkerState::stopped; }));
  REQUIRE(w.start().ok());
  REQUIRE(wait_until([&] { return runs.load() == 2; }));
  CHECK(w.stop().ok());
  REQUIRE(w.start().ok());  // after a stop(): the new token must not be the stopped one
  REQUIRE(wait_until([&] { return runs.load() == 3; }));
  CHECK(w.stop().ok());
  CHECK(stale_tokens == 0);
}

TEST_CASE("stop() from inside run() requests stop without joining itself", "[worker]") {
  std::atomic<int> code{-1};
  std::atomic<int> returns{0};
  std::atomic<bool> saw_stop{false};
  std::atomic<BaseWorker*> self{nullptr};
  BaseWorker w(WorkerOptions{"self-stop", 1000ms, {}}, [&](std::stop_token stop) {
    while (self.load() == nullptr) std::this_thread::sleep_for(1ms);
    code = static_cast<int>(self.load()->stop().code());
    saw_stop = stop.stop_requested();
    returns++;
  });
  REQUIRE(w.start().ok());
  self = &w;
  REQUIRE(wait_until([&] { return returns.load() == 1; }));
  CHECK(code == static_cast<int>(ErrorCode::again));
  CHECK(saw_stop);
  CHECK(w.stop().ok());
  CHECK(w.state() == WorkerState::stopped);
}

TEST_CASE("wait_for_stop times out without a stop and returns at once with one", "[worker]") {
  std::stop_source src;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(edgert::wait_for_stop(src.get_token(), 20ms));
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  src.request_stop();
  CHECK(edgert::wait_for_stop(src.get_token(), 10s));
}
