// ComponentRegistry: the sweep rule at its exact boundary, stalled vs blocked, declared
// statuses, auto-recreate, listeners, metrics, and beats from many threads.
#include <edgert/component_registry.hpp>
#include <edgert/metrics.hpp>
#include <edgert/registry_metrics.hpp>

#include "fake_clock.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using edgert::ComponentRegistry;
using edgert::ComponentStatus;
using edgert::ComponentTransition;
using edgert::RegisterOptions;
using namespace std::chrono_literals;

namespace {

/// A registry on fake clocks (period 1000 ms, 3 misses: a 3000 ms window) and a
/// listener that records every transition on the main thread's behalf.
struct Fixture {
  edgert::testing::FakeClocks clocks;
  ComponentRegistry reg;
  std::mutex mu;
  std::vector<ComponentTransition> seen;
  edgert::ListenerRegistration listening;

  explicit Fixture(std::chrono::milliseconds period = 1000ms)
      : reg(make_options(clocks, period)), listening(reg.add_listener([this](const ComponentTransition& t) {
          std::lock_guard g(mu);
          seen.push_back(t);
        })) {}

  static ComponentRegistry::Options make_options(edgert::testing::FakeClocks& c, std::chrono::milliseconds period) {
    ComponentRegistry::Options o;
    o.heartbeat_period = period;
    o.stale_after_misses = 3;
    o.steady_ms = c.steady_fn();
    o.wall_ms = c.wall_fn();
    return o;
  }
  ComponentStatus status(const std::string& id) {
    auto i = reg.find(id);
    return i ? i->status : ComponentStatus::stopped;
  }
  ComponentTransition last() {
    std::lock_guard g(mu);
    return seen.empty() ? ComponentTransition{} : seen.back();
  }
};

}  // namespace

TEST_CASE("registry: stale exactly after the misses, ready again on a beat") {
  Fixture f;
  auto h = f.reg.register_component("cam0", "stream");
  CHECK(h.id() == "stream/cam0");
  CHECK(f.status("stream/cam0") == ComponentStatus::starting);
  h.beat();
  f.reg.sweep();
  CHECK(f.status("stream/cam0") == ComponentStatus::ready);
  CHECK(f.last().reason == "first heartbeat");

  f.clocks.advance(2999);  // one ms before the window: still ready
  f.reg.sweep();
  CHECK(f.status("stream/cam0") == ComponentStatus::ready);
  f.clocks.advance(1);  // now - last_beat == 3 * 1000: stalled
  f.reg.sweep();
  CHECK(f.status("stream/cam0") == ComponentStatus::stalled);
  const auto t = f.last();
  CHECK(t.from == ComponentStatus::ready);
  CHECK(t.to == ComponentStatus::stalled);
  CHECK(t.id == "stream/cam0");
  CHECK(t.wall_ms == f.clocks.wall.load());
  CHECK(f.reg.find("stream/cam0")->heartbeat_age_ms == 3000);

  h.beat();
  f.reg.sweep();
  CHECK(f.status("stream/cam0") == ComponentStatus::ready);
  CHECK(f.last().reason == "heartbeats resumed");
}

TEST_CASE("registry: a row that never beats goes starting -> stalled") {
  Fixture f;
  auto h = f.reg.register_component("link", "comms");
  f.clocks.advance(2999);
  f.reg.sweep();
  CHECK(f.status("comms/link") == ComponentStatus::starting);
  f.clocks.advance(1);
  f.reg.sweep();
  CHECK(f.status("comms/link") == ComponentStatus::stalled);
}

TEST_CASE("registry: stalled and blocked are told apart") {
  Fixture f;
  RegisterOptions po;
  po.expects_progress = true;
  auto sleeper = f.reg.register_component("slow", "instance", {}, po);  // stuck inside a call: no beats
  auto waiter = f.reg.register_component("cap", "capture", {}, po);     // beats, waits for room
  sleeper.progress();
  waiter.progress();
  f.reg.sweep();
  for (int i = 0; i < 3; ++i) {
    f.clocks.advance(1000);
    waiter.beat();
  }
  f.reg.sweep();
  CHECK(f.status("instance/slow") == ComponentStatus::stalled);
  CHECK(f.status("capture/cap") == ComponentStatus::blocked);
  CHECK(f.reg.find("capture/cap")->reason.find("no progress for 3000 ms") != std::string::npos);
  CHECK(f.reg.find("instance/slow")->reason.find("no heartbeat for 3000 ms") != std::string::npos);

  waiter.progress();
  sleeper.progress();
  f.reg.sweep();
  CHECK(f.status("instance/slow") == ComponentStatus::ready);
  CHECK(f.status("capture/cap") == ComponentStatus::ready);
  CHECK(f.reg.find("capture/cap")->reason == "progress resumed");
}

TEST_CASE("registry: a per-component period override") {
  Fixture f;
  RegisterOptions fast;
  fast.heartbeat_period = 200ms;
  auto a = f.reg.register_component("fast", "worker", {}, fast);
  auto b = f.reg.register_component("slow", "worker");
  a.beat();
  b.beat();
  f.clocks.advance(599);
  f.reg.sweep();
  CHECK(f.status("worker/fast") == ComponentStatus::ready);
  f.clocks.advance(1);
  f.reg.sweep();
  CHECK(f.status("worker/fast") == ComponentStatus::stalled);
  CHECK(f.status("worker/slow") == ComponentStatus::ready);
  CHECK(f.reg.find("worker/fast")->heartbeat_period == 200ms);
}

TEST_CASE("registry: a heartbeat re-creates a removed row") {
  Fixture f;
  auto h = f.reg.register_component("m1", "instance", {{"plugin", "motion"}});
  h.beat();
  f.reg.sweep();
  REQUIRE(f.reg.remove("instance/m1"));
  CHECK_FALSE(f.reg.find("instance/m1").has_value());
  CHECK_FALSE(f.reg.remove("instance/m1"));
  f.clocks.advance(10);
  h.beat();
  const auto row = f.reg.find("instance/m1");
  REQUIRE(row.has_value());
  CHECK(row->status == ComponentStatus::ready);
  CHECK(row->reason == "re-created from a heartbeat");
  CHECK(row->labels.at("plugin") == "motion");
  CHECK(row->created_ms == f.clocks.wall.load());
  const auto t = f.last();
  CHECK(t.from == ComponentStatus::stopped);
  CHECK(t.to == ComponentStatus::ready);
  CHECK(t.reason == "re-created from a heartbeat");
  CHECK(f.reg.stats().recreated == 1);
  h.beat();
  CHECK(f.reg.stats().recreated == 1);
}

TEST_CASE("registry: a throwing listener is counted, others still run") {
  Fixture f;
  auto thrower = f.reg.add_listener([](const ComponentTransition&) { throw std::runtime_error("listener bug"); });
  std::atomic<int> after{0};
  auto counter = f.reg.add_listener([&after](const ComponentTransition&) { ++after; });
  auto h = f.reg.register_component("x", "host");  // stopped -> starting
  h.beat();
  f.reg.sweep();  // starting -> ready
  f.clocks.advance(3000);
  f.reg.sweep();  // ready -> stalled
  CHECK(after.load() == 3);
  CHECK(f.reg.stats().listener_errors == 3);
  CHECK(f.reg.stats().transitions == 3);
  CHECK(f.seen.size() == 3);
  thrower.reset();
  h.beat();
  f.reg.sweep();
  CHECK(after.load() == 4);
  CHECK(f.reg.stats().listener_errors == 3);
}

TEST_CASE("registry: declared statuses and the sweep") {
  Fixture f;
  auto q = f.reg.register_component("bad", "instance");
  auto d = f.reg.register_component("meh", "instance");
  q.beat();
  d.beat();
  f.reg.sweep();
  q.set_status(ComponentStatus::quarantined, "5 errors in a row");
  d.set_status(ComponentStatus::degraded, "dropping frames");
  CHECK(f.last().reason == "dropping frames");
  f.clocks.advance(5000);  // neither beats
  f.reg.sweep();
  CHECK(f.status("instance/bad") == ComponentStatus::quarantined);  // owner's word: kept
  CHECK(f.status("instance/meh") == ComponentStatus::stalled);      // watched: stalled
  d.beat();
  f.reg.sweep();
  CHECK(f.status("instance/meh") == ComponentStatus::degraded);  // back to what was declared
  CHECK_THROWS_AS(q.set_status(ComponentStatus::stalled, "no"), std::invalid_argument);
  CHECK_THROWS_AS(q.set_status(ComponentStatus::blocked, "no"), std::invalid_argument);
  CHECK(f.reg.set_status("instance/bad", ComponentStatus::ready, "RESTART"));
  CHECK(f.status("instance/bad") == ComponentStatus::stalled);  // ready, but it has not beaten
  q.beat();
  f.reg.sweep();
  CHECK(f.status("instance/bad") == ComponentStatus::ready);
  CHECK_FALSE(f.reg.set_status("instance/none", ComponentStatus::ready, ""));
}

TEST_CASE("registry: a released handle leaves a stopped row until forgotten") {
  Fixture f;
  {
    auto h = f.reg.register_component("w", "worker");
    h.add_restart();
    h.report_error("boom");
    CHECK_THROWS_AS(f.reg.register_component("w", "worker"), std::invalid_argument);
  }
  auto row = f.reg.find("worker/w");
  REQUIRE(row.has_value());
  CHECK(row->status == ComponentStatus::stopped);
  CHECK(row->reason == "handle released");
  CHECK_FALSE(row->attached);
  CHECK(row->last_error == "boom");
  {
    auto again = f.reg.register_component("w", "worker");  // a re-created part keeps its history
    CHECK(f.status("worker/w") == ComponentStatus::starting);
    CHECK(f.reg.find("worker/w")->restarts == 1);
  }
  f.clocks.advance(3'600'000 - 1);
  f.reg.sweep();
  CHECK(f.reg.find("worker/w").has_value());
  f.clocks.advance(1);
  f.reg.sweep();
  CHECK_FALSE(f.reg.find("worker/w").has_value());
  CHECK(f.reg.stats().forgotten == 1);
}

TEST_CASE("registry: a listener may call the registry") {
  Fixture f;
  auto h = f.reg.register_component("s", "stream");
  auto l = f.reg.add_listener([&f](const ComponentTransition& t) {
    if (t.to == ComponentStatus::stalled) (void)f.reg.set_status(t.id, ComponentStatus::restarting, "supervisor");
  });
  f.clocks.advance(3000);
  f.reg.sweep();
  CHECK(f.status("stream/s") == ComponentStatus::restarting);
  CHECK(f.last().reason == "supervisor");
}

TEST_CASE("registry: counts and metrics") {
  Fixture f;
  edgert::MetricsRegistry metrics;
  auto a = f.reg.register_component("a", "k");
  auto b = f.reg.register_component("b", "k");
  a.beat();
  f.reg.sweep();
  auto reg = edgert::register_registry_metrics(metrics, f.reg);
  const auto c = f.reg.counts();
  CHECK(c[static_cast<std::size_t>(ComponentStatus::ready)] == 1);
  CHECK(c[static_cast<std::size_t>(ComponentStatus::starting)] == 1);
  const auto snap = metrics.snapshot();
  const auto* ready = snap.find("edgert_components", {{"status", "ready"}});
  REQUIRE(ready != nullptr);
  CHECK(ready->value == 1.0);
  const auto* sweeps = snap.find("edgert_registry_sweeps_total");
  REQUIRE(sweeps != nullptr);
  CHECK(sweeps->value == 1.0);
  CHECK(snap.find("edgert_registry_transitions_total")->value == 3.0);
  CHECK(edgert::to_string(ComponentStatus::quarantined) == "quarantined");
}

TEST_CASE("registry: beats from many threads match their own tallies") {
  // Real clocks; the workers only beat and count (no Catch2 off the main thread).
  ComponentRegistry reg;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 8;
  struct Tally {
    std::uint64_t beats = 0, progress = 0;
  };
  std::vector<std::vector<Tally>> tallies(kThreads, std::vector<Tally>(kPerThread));
  std::vector<std::vector<edgert::ComponentHandle>> handles(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      RegisterOptions o;
      o.expects_progress = (i % 2) == 0;
      handles[t].push_back(reg.register_component(std::string("c").append(std::to_string(t * kPerThread + i)), "worker", {}, o));
    }
  }
  std::atomic<int> done{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int round = 0; round < 100000; ++round) {
        const int i = round % kPerThread;
        if (round % 3 == 0) {
          handles[t][i].progress();
          ++tallies[t][i].progress;
        } else {
          handles[t][i].beat();
        }
        ++tallies[t][i].beats;
      }
      ++done;
    });
  }
  std::size_t rows_seen = 0;
  std::uint64_t sweeps_during = 0;
  while (done.load() < kThreads) {
    reg.sweep();
    ++sweeps_during;
    rows_seen = reg.snapshot().size();
    (void)reg.counts();
  }
  for (auto& w : workers) w.join();
  CHECK(rows_seen == kThreads * kPerThread);
  CHECK(sweeps_during >= 1);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const auto row = reg.find(handles[t][i].id());
      REQUIRE(row.has_value());
      CHECK(row->beats == tallies[t][i].beats);
      CHECK(row->progress == tallies[t][i].progress);
    }
  }
}
