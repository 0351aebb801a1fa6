// The supervisor (docs/operations.md, "Health and restarts", "The supervisor"): the
// restart policy's arithmetic (RestartPolicy, compiled in), the `health.restart`
// configuration, and through a real node with the pl_source/pl_probe plugins: a
// crash-looping instance re-created on its back-off schedule (injected clocks) until its
// intensity is spent, RESTART, what a crash loop costs its neighbours, and a stuck
// process() replaced while the stuck object lives until its call returns.
#include <edgert/config.hpp>
#include <edgert/node.hpp>

#include "fake_clock.hpp"
#include "pipeline/restart_history.hpp"
#include "pipeline/restart_policy.hpp"
#include "pipeline_test_util.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using edgert::RestartMode;
using edgert::RestartPolicyConfig;
using edgert::pipeline::MemoryRestartHistory;
using edgert::pipeline::RestartPolicy;
using edgert::testing::FakeClocks;
using edgert::testing::Scratch;
using nlohmann::json;

namespace {

template <class Fn>
Fn probe_fn(const char* name) {
  void* h = dlopen((std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "/pl_probe.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(h != nullptr);
  auto* fn = reinterpret_cast<Fn>(dlsym(h, name));
  REQUIRE(fn != nullptr);
  dlclose(h);  // RTLD_NOLOAD took one more reference: the node's stays
  return fn;
}
int probe_count(const char* name) { return probe_fn<int (*)()>(name)(); }

struct Node {
  std::unique_ptr<edgert::Node> node;
  Node(const std::string& yaml, edgert::NodeOptions options = {}) {
    auto cfg = edgert::parse_config(yaml, "test.yaml", {});
    if (!cfg.ok()) FAIL(cfg.status().message());
    auto made = edgert::Node::create(std::move(cfg).value(), std::move(options));
    REQUIRE(made.ok());
    node = std::move(made).value();
    const auto st = node->start();
    if (!st.ok()) FAIL(st.message());
  }
  json instance(const std::string& key) const { return json::parse(node->stats_json())["instances"][key]; }
  bool wait(const std::string& key, const std::function<bool(const json&)>& pred,
            std::chrono::milliseconds limit = 30s) const {
    return edgert::testing::wait_until([&] { return pred(instance(key)); }, limit, 5ms);
  }
};

}  // namespace

TEST_CASE("back-off doubles from 1 s to the 60 s cap", "[supervisor]") {
  RestartPolicy p(RestartPolicyConfig{}, 1);
  const std::int64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (int n = 1; n <= 8; ++n) CHECK(p.base_delay_ms(n) == want[n - 1]);
  CHECK(p.base_delay_ms(0) == 1000);
  CHECK(p.base_delay_ms(1000000) == 60000);  // no overflow far past the cap
  CHECK(p.jittered_delay_ms(1, 0.0) == 900);
  CHECK(p.jittered_delay_ms(1, 1.0) == 1100);
  CHECK(p.jittered_delay_ms(3, 0.5) == 4000);
}

TEST_CASE("jitter stays inside its band and spreads across it", "[supervisor]") {
  RestartPolicyConfig c;
  c.intensity = 1000;
  RestartPolicy p(c, 42);
  std::int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    p.clear();
    const auto d = p.on_failure(0, 0);
    REQUIRE(d.restart);
    REQUIRE(d.attempt == 1);
    lo = std::min(lo, d.delay_ms);
    hi = std::max(hi, d.delay_ms);
  }
  CHECK(lo >= 900);
  CHECK(hi <= 1100);
  CHECK(lo < 920);  // the draws cover the band, not one point
  CHECK(hi > 1080);
}

TEST_CASE("intensity spent or policy never: no restart and why", "[supervisor]") {
  RestartPolicyConfig c;
  c.intensity = 3;
  RestartPolicy p(c, 7);
  CHECK(p.on_failure(0, 2).restart);
  const auto d = p.on_failure(0, 3);
  CHECK_FALSE(d.restart);
  CHECK(d.why == "intensity spent: 3 restarts within 600 s (intensity 3)");
  c.policy = RestartMode::never;
  RestartPolicy never(c, 7);
  const auto n = never.on_failure(0, 0);
  CHECK_FALSE(n.restart);
  CHECK(n.why == "restart policy never");
}

TEST_CASE("ten stable minutes start the back-off over", "[supervisor]") {
  RestartPolicyConfig c;
  c.jitter = 0;
  RestartPolicy p(c, 3);
  CHECK(p.on_failure(0, 0).delay_ms == 1000);
  p.restarted(1000);
  CHECK(p.on_failure(5000, 1).delay_ms == 2000);
  p.restarted(7000);
  CHECK(p.on_failure(7000 + 599999, 2).delay_ms == 4000);  // one ms short of stable
  p.restarted(7000 + 604000);
  const auto d = p.on_failure(7000 + 604000 + 600000, 3);
  CHECK(d.attempt == 1);
  CHECK(d.delay_ms == 1000);
}

TEST_CASE("memory restart history counts a window and prunes expired", "[supervisor]") {
  MemoryRestartHistory h;
  h.record_restart("s/p/a", 1000, 2000, "x");
  h.record_restart("s/p/a", 1500, 2500, "x");
  h.record_restart("s/p/b", 1500, 2500, "x");
  CHECK(h.restarts_since("s/p/a", 0) == 2);
  CHECK(h.restarts_since("s/p/a", 1200) == 1);
  CHECK(h.restarts_since("nope", 0) == 0);
  h.prune(2000);
  CHECK(h.restarts_since("s/p/a", 0) == 1);
  h.prune(2500);
  CHECK(h.restarts_since("s/p/a", 0) == 0);
  CHECK(h.restarts_since("s/p/b", 0) == 0);
}

TEST_CASE("health.restart is read with per-kind sections and checked", "[supervisor]") {
  auto ok = edgert::parse_config(R"(
health:
  restart:
    policy: always
    intensity: 7
    window_s: 60
    backoff_initial_s: 0.5
    backoff_max_s: 30
    jitter: 0.2
    replace_stuck: true
    escalate_to_node: true
    stream: {intensity: 2}
)", "h.yaml", {});
  REQUIRE(ok.ok());
  const auto& r = ok.value().health.restart;
  CHECK(r.policy == RestartMode::always);
  CHECK(r.policy_of("instance").intensity == 7);
  CHECK(r.policy_of("instance").backoff_initial_s == 0.5);
  CHECK(r.policy_of("stream").intensity == 2);
  CHECK(r.policy_of("stream").backoff_initial_s == 1);  // a kind's section: built-in defaults
  CHECK(r.replace_stuck);
  CHECK(r.escalate_to_node);

  auto bad = edgert::parse_config("health: {restart: {jitter: 0.9, policy: sometimes, backoff_max_s: 0.1}}\n",
                                  "h.yaml", {});
  REQUIRE_FALSE(bad.ok());
  const std::string m = bad.status().message();
  INFO(m);
  CHECK(m.find("health.restart.jitter") != std::string::npos);
  CHECK(m.find("health.restart.policy: expected one of never, on_failure, always; got 'sometimes'") !=
        std::string::npos);
  CHECK(m.find("health.restart.backoff_max_s: must not be below backoff_initial_s") != std::string::npos);
  auto unknown = edgert::parse_config("health: {restart: {instance: {intensty: 3}}}\n", "h.yaml", {});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().message().find("health.restart.instance.intensty") != std::string::npos);
}

TEST_CASE("a crash-looping instance restarts on back-off until quarantined", "[supervisor]") {
  Scratch s;
  FakeClocks clocks;
  edgert::NodeOptions o;
  o.supervisor_steady_ms = clocks.steady_fn();
  o.supervisor_wall_ms = clocks.wall_fn();
  Node n(edgert::testing::pipeline_yaml(s.dir, R"(
  - name: s1
    capture: {type: pl_source, fps: 200, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: bad, fail: error, quarantine_after: 2, error_backoff_s: 0}
          - {instance_id: good, emit: false}
)", "health: {restart: {intensity: 3, window_s: 600, backoff_initial_s: 1, backoff_max_s: 60, jitter: 0.1}}\n"),
         std::move(o));
  const std::string bad = "s1/pl_probe/bad";
  const int created0 = probe_count("pl_probe_created");
  const int destroyed0 = probe_count("pl_probe_destroyed");
  for (int i = 1; i <= 3; ++i) {
    INFO("restart " << i);
    REQUIRE(n.wait(bad, [](const json& f) { return f["state"] == "quarantined" && f["restart_in_ms"] >= 0; }));
    const auto f = n.instance(bad);
    CHECK(f["restarts"] == i - 1);
    // The clock stands still: restart_in_ms is the delay drawn.
    const std::int64_t delay = f["restart_in_ms"];
    const double base = 1000.0 * (1 << (i - 1));
    CHECK(delay >= static_cast<std::int64_t>(base * 0.9));
    CHECK(delay <= static_cast<std::int64_t>(base * 1.1));
    CHECK(f["restart_delay_ms"] == delay);
    // One ms early: no restart, however long we wait.
    clocks.advance(delay - 1);
    std::this_thread::sleep_for(150ms);
    CHECK(n.instance(bad)["restarts"] == i - 1);
    CHECK(n.instance(bad)["state"] == "quarantined");
    clocks.advance(1);
    REQUIRE(n.wait(bad, [i](const json& j) { return j["restarts"] == i; }));
  }
  // The fourth quarantine within the window: the intensity is spent.
  REQUIRE(n.wait(bad, [](const json& f) { return f["gave_up"] == true; }));
  auto f = n.instance(bad);
  CHECK(f["state"] == "quarantined");
  CHECK(f["restart_in_ms"] == -1);
  CHECK(f["last_error"].get<std::string>().find("pl_probe fails on purpose") != std::string::npos);
  clocks.advance(120000);
  std::this_thread::sleep_for(150ms);
  CHECK(n.instance(bad)["restarts"] == 3);
  CHECK(n.instance(bad)["state"] == "quarantined");
  // Re-created through the plugin's destroy and create, three times.
  CHECK(probe_count("pl_probe_created") - created0 == 3);
  CHECK(probe_count("pl_probe_destroyed") - destroyed0 == 3);
  CHECK(n.instance("s1/pl_probe/good")["restarts"] == 0);

  // RESTART: names what it restarted, and the intensity counts afresh.
  auto r = n.node->restart("s1/bad");
  REQUIRE(r.ok());
  const auto reply = json::parse(r.value());
  REQUIRE(reply["restarted"].size() == 1);
  CHECK(reply["restarted"][0]["component"] == bad);
  CHECK(reply["restarted"][0]["done"] == "restarted");
  CHECK(n.instance(bad)["restarts"] == 4);
  // It fails again: quarantined, and scheduled again (not given up).
  REQUIRE(n.wait(bad, [](const json& j) { return j["state"] == "quarantined" && j["restart_in_ms"] >= 0; }));
  CHECK(n.instance(bad)["gave_up"] == false);
  CHECK(n.instance(bad)["restart_in_ms"] <= 1100);  // the back-off starts over too

  auto running = n.node->restart("s1/pl_probe/good");
  REQUIRE_FALSE(running.ok());
  CHECK(running.status().message() ==
        "s1/pl_probe/good is running, not quarantined or stuck: nothing to restart");
  auto none = n.node->restart("nope");
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == edgert::ErrorCode::not_found);
}

TEST_CASE("a crash loop costs its neighbours little of their rate", "[supervisor]") {
  // The good instances' own tallies: processed per second over the same window, with
  // the crash-looper disabled and then crash-looping (re-created every 10-20 ms, about
  // 40 times a second: far past any real policy). The goal is under 1%; the bound is
  // generous (10%) because the two runs are measured one after the other on a shared
  // machine under sanitizers. The good instances must also lose no input.
  auto rate = [](bool looping, std::uint64_t* restarts) {
    Scratch s;
    const std::string bad = looping ? "fail: error, quarantine_after: 1, error_backoff_s: 0" : "disabled: true";
    Node n(edgert::testing::pipeline_yaml(s.dir, R"(
  - name: s1
    capture: {type: pl_source, fps: 250, live_feed: false}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: bad, )" + bad + R"(}
          - {instance_id: g1, emit: false}
          - {instance_id: g2, emit: false}
)", "health: {restart: {intensity: 1000, window_s: 1, backoff_initial_s: 0.01, backoff_max_s: 0.02}}\n"));
    std::this_thread::sleep_for(500ms);  // warm up
    auto processed = [&] {
      return n.instance("s1/pl_probe/g1")["processed"].get<double>() +
             n.instance("s1/pl_probe/g2")["processed"].get<double>();
    };
    const auto t0 = std::chrono::steady_clock::now();
    const double p0 = processed();
    std::this_thread::sleep_for(3s);
    const double p1 = processed();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *restarts = n.instance("s1/pl_probe/bad")["restarts"].get<std::uint64_t>();
    CHECK(n.instance("s1/pl_probe/g1")["dropped"] == 0);
    CHECK(n.instance("s1/pl_probe/g2")["dropped"] == 0);
    return (p1 - p0) / secs;
  };
  std::uint64_t r0 = 0, r1 = 0;
  const double quiet = rate(false, &r0);
  const double loud = rate(true, &r1);
  INFO("quiet " << quiet << "/s, crash-looping " << loud << "/s, " << r1 << " restarts");
  CHECK(r0 == 0);
  CHECK(r1 >= 50);  // it really crash-looped
  CHECK(quiet > 2 * 250 * 0.8);
  CHECK(loud >= quiet * 0.9);
}

TEST_CASE("a stuck process() is replaced and destroyed after it returns", "[supervisor]") {
  Scratch s;
  Node n(edgert::testing::pipeline_yaml(s.dir, R"(
  - name: s2
    capture: {type: pl_source, fps: 100, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: sticky, block_once: true, stuck_after_s: 0.2, emit: false}
)", "pipeline: {monitor_period_ms: 20}\nhealth: {restart: {replace_stuck: true}}\n"));
  const std::string key = "s2/pl_probe/sticky";
  const int destroyed0 = probe_count("pl_probe_destroyed");
  // The first object to run blocks; once it is reported stuck, a replacement processes.
  REQUIRE(n.wait(key, [](const json& f) { return f["replaced"] == 1; }));
  const auto processed0 = n.instance(key)["processed"].get<std::uint64_t>();
  REQUIRE(n.wait(key, [processed0](const json& f) { return f["processed"].get<std::uint64_t>() >= processed0 + 20; }));
  CHECK(n.instance(key)["state"] == "running");
  // The stuck object is alive while its call runs...
  std::this_thread::sleep_for(200ms);
  CHECK(probe_count("pl_probe_destroyed") == destroyed0);
  // ...and destroyed once it returns, never during the call.
  probe_fn<void (*)()>("pl_probe_release")();
  REQUIRE(edgert::testing::wait_until([&] { return probe_count("pl_probe_destroyed") == destroyed0 + 1; }, 30s));
  CHECK(probe_count("pl_probe_destroyed_in_call") == 0);
  // The replacement still runs.
  const auto processed1 = n.instance(key)["processed"].get<std::uint64_t>();
  REQUIRE(n.wait(key, [processed1](const json& f) { return f["processed"].get<std::uint64_t>() >= processed1 + 10; }));
  const auto f = n.instance(key);
  CHECK(f["received"].get<std::uint64_t>() == f["processed"].get<std::uint64_t>() +
                                                 f["dropped"].get<std::uint64_t>() + f["queued"].get<std::uint64_t>());
}

TEST_CASE("an instance giving up escalates through its stream to the node", "[supervisor]") {
  for (const bool escalate : {true, false}) {
    INFO("escalate_to_node " << escalate);
    Scratch s;
    Node n(edgert::testing::pipeline_yaml(s.dir, R"(
  - name: s1
    capture: {type: pl_source, fps: 100, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: bad, fail: error, quarantine_after: 1, error_backoff_s: 0}
)", std::string("health: {restart: {escalate_to_node: ") + (escalate ? "true" : "false") +
               ", instance: {intensity: 1, backoff_initial_s: 0.01, backoff_max_s: 0.01}, stream: {intensity: 1}}}\n"));
    REQUIRE(n.wait("s1/pl_probe/bad", [](const json& f) { return f["gave_up"] == true; }));
    CHECK(n.instance("s1/pl_probe/bad")["restarts"] == 1);
    if (escalate) {
      REQUIRE(edgert::testing::wait_until([&] { return !n.node->shutdown_reason().empty(); }, 10s));
      const auto why = n.node->shutdown_reason();
      INFO(why);
      CHECK(why.rfind("supervisor: stream 's1': 1 instance give-ups within 600 s (intensity 1); last: s1/pl_probe/bad: "
                      "intensity spent: 1 restarts within 600 s (intensity 1)",
                      0) == 0);
    } else {
      std::this_thread::sleep_for(200ms);
      CHECK(n.node->shutdown_reason().empty());
    }
  }
}
