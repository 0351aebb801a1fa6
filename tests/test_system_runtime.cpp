#include <edgert/system_runtime.hpp>

#include "log_capture.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::LifecycleHooks;
using edgert::Stage;
using edgert::SystemRuntime;

namespace {

struct Recorder {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lk(mu);
    events.push_back(std::move(e));
  }
  LifecycleHooks hooks(const std::string& name, bool with_drain = false) {
    LifecycleHooks h;
    h.name = name;
    h.start = [this, name] {
      add("start:" + name);
      return edgert::Status{};
    };
    h.stop = [this, name] { add("stop:" + name); };
    if (with_drain) {
      h.drain = [this, name] {
        add("drain:" + name);
        return std::size_t{1};
      };
    }
    return h;
  }
};

edgert::RuntimeOptions quiet() {
  edgert::RuntimeOptions o;
  o.heartbeat_interval = 0ms;
  return o;
}

}  // namespace

TEST_CASE("start follows dependencies and stop is its exact reverse", "[runtime]") {
  Recorder rec;
  auto opts = quiet();
  opts.heartbeat_interval = 1000ms;  // started after outputs, stopped before them
  SystemRuntime rt(opts);
  // Registered out of order on purpose.
  REQUIRE(rt.add_participant(Stage::triggers, rec.hooks("trigger")).ok());
  REQUIRE(rt.add_participant(Stage::outputs, rec.hooks("output")).ok());
  REQUIRE(rt.add_participant(Stage::acquisition, rec.hooks("camera")).ok());
  REQUIRE(rt.add_participant(Stage::comms, rec.hooks("mqtt")).ok());
  REQUIRE(rt.add_participant(Stage::processing, rec.hooks("detect", true)).ok());
  REQUIRE(rt.add_participant(Stage::processing, rec.hooks("business")).ok());
  REQUIRE(rt.add_participant(Stage::storage, rec.hooks("mailbox")).ok());
  REQUIRE(rt.add_participant(Stage::build, rec.hooks("wiring")).ok());
  REQUIRE(rt.add_participant(Stage::config, rec.hooks("config")).ok());

  REQUIRE(rt.start().ok());
  CHECK(rt.running());
  CHECK(rt.start().ok());  // idempotent
  rt.stop();
  rt.stop();  // idempotent
  CHECK_FALSE(rt.running());

  const std::vector<std::string> start_order = {"start:config", "start:wiring",   "start:mailbox",
                                                "start:mqtt",   "start:output",   "start:detect",
                                                "start:business", "start:camera", "start:trigger"};
  const std::vector<std::string> expected_stop = {"stop:trigger", "stop:camera",  "stop:business",
                                                  "stop:detect",  "drain:detect", "stop:output",
                                                  "stop:mqtt",    "stop:mailbox", "stop:wiring",
                                                  "stop:config"};
  REQUIRE(rec.events.size() == start_order.size() + expected_stop.size());
  const std::vector<std::string> starts(rec.events.begin(), rec.events.begin() + 9);
  const std::vector<std::string> stops(rec.events.begin() + 9, rec.events.end());
  CHECK(starts == start_order);
  CHECK(stops == expected_stop);
  // Exactly symmetric: the stops (drain aside) are the starts reversed.
  std::vector<std::string> reversed;
  for (auto it = starts.rbegin(); it != starts.rend(); ++it) reversed.push_back("stop:" + it->substr(6));
  std::vector<std::string> stops_only;
  for (const auto& e : stops) {
    if (e.rfind("stop:", 0) == 0) stops_only.push_back(e);
  }
  CHECK(stops_only == reversed);
  CHECK(rt.start().code() == edgert::ErrorCode::closed);
  CHECK(rt.add_participant(Stage::outputs, rec.hooks("late")).code() == edgert::ErrorCode::invalid_argument);
}

TEST_CASE("stages are named", "[runtime]") {
  CHECK(std::string(edgert::to_string(Stage::storage)) == "storage");
  CHECK(std::string(edgert::to_string(Stage::triggers)) == "triggers");
}

TEST_CASE("a start hook's error reaches the caller unchanged and what started stops in reverse", "[runtime]") {
  Recorder rec;
  SystemRuntime rt(quiet());
  REQUIRE(rt.add_participant(Stage::config, rec.hooks("config")).ok());
  REQUIRE(rt.add_participant(Stage::storage, rec.hooks("mailbox")).ok());
  REQUIRE(rt.add_participant(Stage::processing, rec.hooks("business")).ok());
  REQUIRE(rt.add_participant(Stage::triggers, rec.hooks("trigger")).ok());
  LifecycleHooks bad = rec.hooks("detect");
  bad.start = [&rec] {
    rec.add("start:detect");
    return edgert::Status{edgert::ErrorCode::not_found, "/models/yolo.onnx: no such file"};
  };
  REQUIRE(rt.add_participant(Stage::processing, bad).ok());

  edgert::testing::LogCapture logs;
  const auto st = rt.start();
  CHECK(st.code() == edgert::ErrorCode::not_found);
  CHECK(st.message() == "/models/yolo.onnx: no such file");
  // The log names the component the Status leaves out.
  CHECK(logs.errors() ==
        std::vector<std::string>{
            "runtime start failed: start of 'detect' (processing) failed: /models/yolo.onnx: no such file"});
  // The failing hook is not stopped (it cleans up after itself); the others stop in
  // reverse; nothing after it starts.
  CHECK(rec.events == std::vector<std::string>{"start:config", "start:mailbox", "start:business", "start:detect",
                                               "stop:business", "stop:mailbox", "stop:config"});
  CHECK_FALSE(rt.running());
  CHECK(rt.start().code() == edgert::ErrorCode::closed);
  auto late = rt.run_async([] { return 1; });  // the loop was closed as well
  CHECK_THROWS_WITH(late.get(), Catch::Contains("closed"));
}

TEST_CASE("a start hook that throws fails the start as internal, naming the component", "[runtime]") {
  Recorder rec;
  SystemRuntime rt(quiet());
  REQUIRE(rt.add_participant(Stage::config, rec.hooks("config")).ok());
  REQUIRE(rt.add_participant(Stage::storage, rec.hooks("mailbox")).ok());
  REQUIRE(rt.add_participant(Stage::triggers, rec.hooks("trigger")).ok());
  LifecycleHooks bad = rec.hooks("detect");
  bad.start = []() -> edgert::Status { throw std::runtime_error("model file missing"); };
  REQUIRE(rt.add_participant(Stage::processing, bad).ok());
  LifecycleHooks odd = rec.hooks("odd");  // throws something that is not a std::exception
  odd.start = []() -> edgert::Status { throw 42; };

  edgert::testing::LogCapture logs;
  const auto st = rt.start();
  CHECK(st.code() == edgert::ErrorCode::internal);
  CHECK(st.message() == "start of 'detect' (processing) threw: model file missing");
  CHECK(logs.errors() ==
        std::vector<std::string>{"runtime start failed: start of 'detect' (processing) threw: model file missing"});
  CHECK(rec.events == std::vector<std::string>{"start:config", "start:mailbox", "stop:mailbox", "stop:config"});
  CHECK_FALSE(rt.running());

  SystemRuntime rt2(quiet());
  REQUIRE(rt2.add_participant(Stage::outputs, odd).ok());
  const auto st2 = rt2.start();
  CHECK(st2.code() == edgert::ErrorCode::internal);
  CHECK(st2.message() == "start of 'odd' (outputs) threw an unknown exception");
}

TEST_CASE("a start hook that calls stop() and then fails returns its own error", "[runtime]") {
  Recorder rec;
  SystemRuntime rt(quiet());
  REQUIRE(rt.add_participant(Stage::storage, rec.hooks("mailbox")).ok());
  LifecycleHooks quitter = rec.hooks("quitter");
  quitter.start = [&] {
    rec.add("start:quitter");
    rt.stop();
    return edgert::Status{edgert::ErrorCode::config_error, "node.yaml:3: quitter: bad"};
  };
  REQUIRE(rt.add_participant(Stage::outputs, quitter).ok());
  const auto st = rt.start();
  CHECK(st.code() == edgert::ErrorCode::config_error);
  CHECK(st.message() == "node.yaml:3: quitter: bad");
  // It counts as started (it called stop()), so it is stopped first, once.
  CHECK(rec.events == std::vector<std::string>{"start:mailbox", "start:quitter", "stop:quitter", "stop:mailbox"});
}

TEST_CASE("a start hook's error without a message is named after the component", "[runtime]") {
  SystemRuntime rt(quiet());
  REQUIRE(rt.add_participant(Stage::comms, {"mqtt", [] { return edgert::Status{edgert::ErrorCode::io_error, ""}; },
                                            {}, {}})
              .ok());
  const auto st = rt.start();
  CHECK(st.code() == edgert::ErrorCode::io_error);
  CHECK(st.message() == "start of 'mqtt' (comms) failed");
}

// A stop() from another thread waits for the lifecycle lock the start() holds; a hook
// that then fails must not wait for that stop() in turn (it used to: a deadlock).
TEST_CASE("a start hook that fails while another thread's stop() waits does not deadlock", "[runtime]") {
  for (const bool fail : {true, false}) {
    Recorder rec;
    auto rt = std::make_unique<SystemRuntime>(quiet());
    std::thread stopper;
    std::atomic<bool> stop_returned{false};
    REQUIRE(rt->add_participant(Stage::storage, rec.hooks("mailbox")).ok());
    LifecycleHooks slow = rec.hooks("plugins");
    slow.start = [&, fail] {
      rec.add("start:plugins");
      stopper = std::thread([&] {
        rt->stop();
        stop_returned = true;
      });
      // running() turns false once the stop() has claimed the stop: it now waits
      // for this start() to let go.
      const auto end = std::chrono::steady_clock::now() + 10s;
      while (rt->running() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
      return fail ? edgert::Status{edgert::ErrorCode::io_error, "disk gone"} : edgert::Status{};
    };
    REQUIRE(rt->add_participant(Stage::outputs, slow).ok());
    REQUIRE(rt->add_participant(Stage::triggers, rec.hooks("trigger")).ok());
    auto started = std::async(std::launch::async, [&] { return rt->start(); });
    if (started.wait_for(20s) != std::future_status::ready) {
      FAIL_CHECK("start() deadlocked against a concurrent stop()");
      std::abort();  // the threads cannot be joined: end the run here rather than hang
    }
    const auto st = started.get();
    INFO("the hook " << (fail ? "fails" : "succeeds"));
    CHECK(st.code() == (fail ? edgert::ErrorCode::io_error : edgert::ErrorCode::closed));
    CHECK_FALSE(rt->running());
    // The concurrent stop() stops what started once start() let go, and only then
    // returns; the hook that failed is not stopped, the one that succeeded is.
    stopper.join();
    CHECK(stop_returned);
    CHECK(rec.events == (fail ? std::vector<std::string>{"start:mailbox", "start:plugins", "stop:mailbox"}
                              : std::vector<std::string>{"start:mailbox", "start:plugins", "stop:plugins",
                                                         "stop:mailbox"}));
    CHECK(rt->start().code() == edgert::ErrorCode::closed);
  }
}

TEST_CASE("stop called from inside a stop hook returns at once", "[runtime]") {
  SystemRuntime rt(quiet());
  std::atomic<int> calls{0};
  REQUIRE(rt.add_participant(Stage::outputs, {"reentrant", {}, [&] {
                                                calls++;
                                                rt.stop();
                                              }, {}})
              .ok());
  REQUIRE(rt.start().ok());
  rt.stop();
  CHECK(calls == 1);
}

TEST_CASE("concurrent stop calls both return after one shutdown", "[runtime]") {
  std::atomic<int> stops{0};
  SystemRuntime rt(quiet());
  REQUIRE(rt.add_participant(Stage::outputs, {"slow", {}, [&] {
                                                std::this_thread::sleep_for(50ms);
                                                stops++;
                                              }, {}})
              .ok());
  REQUIRE(rt.start().ok());
  std::thread a([&] { rt.stop(); });
  std::thread b([&] { rt.stop(); });
  a.join();
  b.join();
  CHECK(stops == 1);
}

TEST_CASE("run_async runs on the loop thread and carries results and errors", "[runtime]") {
  SystemRuntime rt(quiet());
  auto caller = std::this_thread::get_id();
  auto f = rt.run_async([caller] { return std::this_thread::get_id() != caller ? 42 : -1; });
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get() == 42);
  auto g = rt.run_async([]() -> int { throw std::logic_error("boom"); });
  CHECK_THROWS_WITH(g.get(), "boom");
  rt.stop();
  auto h = rt.run_async([] { return 1; });
  CHECK_THROWS_WITH(h.get(), Catch::Contains("closed"));
  CHECK_FALSE(rt.spawn_background_task("late", [](std::stop_token) {}));
}

TEST_CASE("cooperative background tasks are cancelled and awaited", "[runtime]") {
  SystemRuntime rt(quiet());
  std::atomic<bool> finished{false};
  REQUIRE(rt.spawn_background_task("poller", [&](std::stop_token st) {
    while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
    finished = true;
  }));
  std::this_thread::sleep_for(20ms);
  CHECK(rt.pending_tasks() == 1);
  rt.stop();
  CHECK(finished);  // awaited, not abandoned
}

TEST_CASE("a task that ignores cancellation does not hang shutdown", "[runtime]") {
  auto opts = quiet();
  opts.task_timeout = 200ms;
  SystemRuntime rt(opts);
  auto release = std::make_shared<std::atomic<bool>>(false);
  REQUIRE(rt.spawn_background_task("stubborn", [release](std::stop_token) {
    const auto end = std::chrono::steady_clock::now() + 1500ms;  // ignores the token
    while (!*release && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
  }));
  const auto t0 = std::chrono::steady_clock::now();
  rt.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 190ms);
  CHECK(took < 1200ms);
  *release = true;  // let the abandoned thread finish before the process exits
  std::this_thread::sleep_for(50ms);
}

TEST_CASE("heartbeat ticks every heartbeat_interval (1 s) into the sink", "[runtime][slow]") {
  std::mutex mu;
  std::vector<edgert::HeartbeatTick> ticks;
  edgert::RuntimeOptions opts;
  opts.heartbeat_interval = 1000ms;
  opts.heartbeat_sink = [&](const edgert::HeartbeatTick& t) {
    std::lock_guard lk(mu);
    ticks.push_back(t);
  };
  SystemRuntime rt(opts);
  REQUIRE(rt.start().ok());
  std::this_thread::sleep_for(3500ms);
  rt.stop();
  std::lock_guard lk(mu);
  // Ticks at ~1 s, 2 s, 3 s; generous bounds for a loaded machine.
  REQUIRE(ticks.size() >= 2);
  CHECK(ticks.size() <= 4);
  CHECK(rt.heartbeats() == ticks.size());
  for (std::size_t i = 0; i < ticks.size(); ++i) CHECK(ticks[i].seq == i + 1);
  const auto first = std::chrono::duration_cast<std::chrono::milliseconds>(ticks[0].uptime);
  CHECK(first >= 900ms);
  CHECK(first < 2500ms);
}

TEST_CASE("periodic tasks keep running after one throws", "[runtime]") {
  SystemRuntime rt(quiet());
  std::atomic<int> calls{0};
  REQUIRE(rt.spawn_periodic("flaky", 5ms, [&] {
    if (++calls == 1) throw std::runtime_error("first call fails");
  }));
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (calls < 3 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
  CHECK(calls >= 3);
  rt.stop();
  const int after = calls;
  std::this_thread::sleep_for(30ms);
  CHECK(calls == after);  // cancelled by shutdown_loop
}

TEST_CASE("stop called from a start hook stops what started, caller included, in reverse, before the loop closes",
          "[runtime]") {
  Recorder rec;
  SystemRuntime rt(quiet());
  auto loop_open_in = [&](const std::string& name) {
    LifecycleHooks h = rec.hooks(name);
    h.stop = [&rec, &rt, name] {
      // The loop must still run tasks while components stop.
      auto f = rt.run_async([] { return 7; });
      bool open = false;
      try {
        open = f.wait_for(5s) == std::future_status::ready && f.get() == 7;
      } catch (const std::exception&) {
        open = false;
      }
      rec.add("stop:" + name + (open ? "" : "(loop closed)"));
    };
    return h;
  };
  REQUIRE(rt.add_participant(Stage::config, loop_open_in("config")).ok());
  REQUIRE(rt.add_participant(Stage::storage, loop_open_in("mailbox")).ok());
  LifecycleHooks quitter = loop_open_in("quitter");
  quitter.start = [&] {
    rec.add("start:quitter");
    rt.stop();
    rec.add("stop returned");
    return edgert::Status{};
  };
  REQUIRE(rt.add_participant(Stage::outputs, quitter).ok());
  REQUIRE(rt.add_participant(Stage::triggers, rec.hooks("trigger")).ok());
  CHECK(rt.start().code() == edgert::ErrorCode::closed);
  CHECK(rec.events == std::vector<std::string>{"start:config", "start:mailbox", "start:quitter", "stop:quitter",
                                               "stop:mailbox", "stop:config", "stop returned"});
  CHECK_FALSE(rt.running());
}

TEST_CASE("the heartbeat never ticks after the outputs it feeds began to stop", "[runtime]") {
  // A fast heartbeat makes an already-expired timer likely at the moment it is cancelled.
  for (int round = 0; round < 40; ++round) {
    auto opts = quiet();
    opts.heartbeat_interval = 1ms;  // the shortest the runtime accepts
    auto outputs_stopped = std::make_shared<std::atomic<bool>>(false);
    auto late_ticks = std::make_shared<std::atomic<int>>(0);
    auto ticks = std::make_shared<std::atomic<int>>(0);
    opts.heartbeat_sink = [outputs_stopped, late_ticks, ticks](const edgert::HeartbeatTick&) {
      ticks->fetch_add(1);
      if (outputs_stopped->load()) late_ticks->fetch_add(1);
    };
    SystemRuntime rt(opts);
    REQUIRE(rt.add_participant(Stage::outputs, {"output", {}, [outputs_stopped] {
                                                  outputs_stopped->store(true);
                                                  std::this_thread::sleep_for(5ms);  // a tick would land here
                                                }, {}})
                .ok());
    REQUIRE(rt.start().ok());
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (ticks->load() < 3 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
    rt.stop();
    INFO("round " << round << ": " << ticks->load() << " ticks");
    REQUIRE(late_ticks->load() == 0);
  }
}

TEST_CASE("a cancelled periodic task never begins another call", "[runtime]") {
  SystemRuntime rt(quiet());
  for (int round = 0; round < 50; ++round) {
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    auto late = std::make_shared<std::atomic<int>>(0);
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto handle = rt.spawn_periodic("fast", 100us, [cancelled, late, calls] {
      calls->fetch_add(1);
      if (cancelled->load()) late->fetch_add(1);
      std::this_thread::sleep_for(50us);
    });
    REQUIRE(handle);
    CHECK(handle.active());
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (calls->load() < 2 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(100us);
    handle.cancel();
    cancelled->store(true);
    CHECK_FALSE(handle.active());
    handle.cancel();  // idempotent
    std::this_thread::sleep_for(2ms);
    REQUIRE(late->load() == 0);
  }
}

TEST_CASE("a periodic task may cancel itself from inside its call", "[runtime]") {
  SystemRuntime rt(quiet());
  struct Shared {
    std::mutex mu;  // the handle is assigned after spawn_periodic returns, maybe after a call began
    edgert::PeriodicHandle handle;
    std::atomic<int> calls{0};
  };
  auto shared = std::make_shared<Shared>();
  auto handle = rt.spawn_periodic("self", 1ms, [weak = std::weak_ptr<Shared>(shared)] {
    auto s = weak.lock();
    if (!s) return;
    if (s->calls.fetch_add(1) >= 2) {
      std::lock_guard lk(s->mu);
      s->handle.cancel();  // returns at once from inside the call; no later call begins
    }
  });
  REQUIRE(handle);
  {
    std::lock_guard lk(shared->mu);
    shared->handle = handle;
  }
  const auto end = std::chrono::steady_clock::now() + 2s;
  while (handle.active() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  CHECK_FALSE(handle.active());
  const int at_cancel = shared->calls.load();
  std::this_thread::sleep_for(20ms);
  CHECK(shared->calls.load() == at_cancel);
  CHECK(at_cancel >= 3);
  rt.stop();
  handle.cancel();  // after the runtime stopped: still safe
}

TEST_CASE("start refuses a heartbeat_interval out of range, naming the field", "[runtime]") {
  using std::chrono::milliseconds;
  for (milliseconds bad : {milliseconds(-1), milliseconds(-86400000), milliseconds(86400001),
                           milliseconds(std::numeric_limits<milliseconds::rep>::max()),
                           milliseconds(std::numeric_limits<milliseconds::rep>::min())}) {
    auto opts = quiet();
    opts.heartbeat_interval = bad;
    CHECK(edgert::validate(opts).code() == edgert::ErrorCode::invalid_argument);
    SystemRuntime rt(opts);
    const auto st = rt.start();
    INFO("heartbeat_interval " << bad.count() << " ms");
    CHECK(st.code() == edgert::ErrorCode::invalid_argument);
    CHECK_THAT(st.message(), Catch::Contains("heartbeat_interval") && Catch::Contains(std::to_string(bad.count())));
    CHECK(rt.heartbeats() == 0);
  }
  for (milliseconds good : {0ms, 1ms, 10ms, 86400000ms}) {
    auto ok = quiet();
    ok.heartbeat_interval = good;
    INFO(good.count());
    CHECK(edgert::validate(ok).ok());
  }
}

TEST_CASE("stop() from a heartbeat callback stops the runtime from another thread", "[runtime]") {
  std::atomic<int> ticks{0};
  std::atomic<int> stops_on_loop{0};
  std::thread::id loop_thread;
  std::mutex mu;
  std::thread::id stop_thread;
  auto opts = quiet();
  opts.heartbeat_interval = 5ms;
  SystemRuntime* self = nullptr;
  opts.heartbeat_sink = [&](const edgert::HeartbeatTick&) {
    {
      std::lock_guard lk(mu);
      loop_thread = std::this_thread::get_id();
    }
    if (++ticks == 2) self->stop();  // returns at once; the stop happens elsewhere
  };
  {
    SystemRuntime rt(opts);
    self = &rt;
    REQUIRE(rt.add_participant(Stage::outputs, {"output", {}, [&] {
                                                  std::lock_guard lk(mu);
                                                  stop_thread = std::this_thread::get_id();
                                                  // The loop still serves tasks while components stop.
                                                  auto f = rt.run_async([] { return 1; });
                                                  if (f.wait_for(5s) != std::future_status::ready) stops_on_loop++;
                                                }, {}})
                .ok());
    REQUIRE(rt.start().ok());
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (rt.running() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
    CHECK_FALSE(rt.running());
  }  // the destructor waits for the helper's stop
  std::lock_guard lk(mu);
  CHECK(ticks >= 2);
  CHECK(stop_thread != std::thread::id{});
  CHECK(stop_thread != loop_thread);
  CHECK(stops_on_loop == 0);
}
