// The component registry wired into a real Node (issue 21; docs/registry.md, "Wiring
// into the Node"): real configuration, the pl_source/pl_probe test plugins built as
// .so files and loaded through the real loader, a real mosquitto for the comms link.
// Also the pieces it rests on: BaseWorker's pulse and the metrics family collector.
#include <edgert/base_worker.hpp>
#include <edgert/component_registry.hpp>
#include <edgert/config.hpp>
#include <edgert/metrics.hpp>
#include <edgert/node.hpp>
#include <edgert/worker_pulse.hpp>

#include "log_capture.hpp"
#include "mqtt_broker.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::ComponentStatus;
using edgert::testing::wait_until;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// `restart` is the supervisor's policy (health.restart.policy): these cases watch the
// statuses an instance goes through, so by default nothing restarts it behind them.
std::string yaml_head(const fs::path& dir, int sweep_ms, int misses, int heartbeat_ms = 0,
                      const std::string& restart = "never") {
  return "node: {id: health, data_dir: " + (dir / "data").string() +
         ", heartbeat_interval_ms: " + std::to_string(heartbeat_ms) + "}\n" + "plugins: {paths: [" +
         std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "]}\n" + "health: {sweep_interval_ms: " + std::to_string(sweep_ms) +
         ", stale_after_misses: " + std::to_string(misses) + ", restart: {policy: " + restart + "}}\n" +
         "pipeline: {monitor_period_ms: 50}\nstreams:\n";
}

edgert::Config config_of(const std::string& yaml) {
  auto cfg = edgert::parse_config(yaml, "health.yaml", {});
  if (!cfg.ok()) FAIL(cfg.status().message());
  return std::move(cfg).value();
}

std::unique_ptr<edgert::Node> start_node(edgert::Config cfg, edgert::NodeOptions options = {}) {
  auto made = edgert::Node::create(std::move(cfg), std::move(options));
  if (!made.ok()) FAIL(made.status().message());
  auto node = std::move(made).value();
  const auto st = node->start();
  if (!st.ok()) FAIL(st.message());
  return node;
}

std::optional<ComponentStatus> status_of(edgert::Node& node, const std::string& id) {
  auto row = node.components().find(id);
  if (!row) return std::nullopt;
  return row->status;
}

bool is(edgert::Node& node, const std::string& id, ComponentStatus s) { return status_of(node, id) == s; }

void release_blocked_probes() {
  void* h = dlopen((std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "/pl_probe.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(h != nullptr);
  reinterpret_cast<void (*)()>(dlsym(h, "pl_probe_release"))();
  dlclose(h);
}

// Counts what a worker reports, for the BaseWorker cases.
struct CountingPulse final : edgert::WorkerPulse {
  std::atomic<int> beats{0}, progress_calls{0};
  std::mutex mu;
  std::vector<std::string> declared;
  void beat() noexcept override { ++beats; }
  void progress() noexcept override {
    ++beats;
    ++progress_calls;
  }
  void declare(std::string_view status, std::string_view reason) noexcept override {
    std::lock_guard lk(mu);
    declared.push_back(std::string(status) + ": " + std::string(reason));
  }
};

}  // namespace

TEST_CASE("a worker's pulse beats while it sleeps and says failed when run throws", "[registry][health]") {
  auto pulse = std::make_shared<CountingPulse>();
  std::atomic<bool> saw_pulse{false};
  {
    edgert::WorkerOptions o("pulse-sleep");
    o.pulse = pulse;
    edgert::BaseWorker w(std::move(o), [&](std::stop_token stop) {
      saw_pulse = edgert::current_worker_pulse() == pulse.get();
      (void)edgert::wait_for_stop(stop, 550ms);  // beats every kPulseSleepSlice (100 ms)
      edgert::worker_progress();
    });
    REQUIRE(w.start().ok());
    REQUIRE(wait_until([&] { return w.state() == edgert::WorkerState::stopped; }, 10s));
  }
  CHECK(saw_pulse);
  CHECK(pulse->beats >= 6);  // one at start, at least five slices of the sleep, one progress
  CHECK(pulse->progress_calls == 1);
  CHECK(edgert::current_worker_pulse() == nullptr);  // only the worker's thread has it
  {
    edgert::WorkerOptions o("pulse-throw");
    o.pulse = pulse;
    edgert::BaseWorker w(std::move(o), [](std::stop_token) { throw std::runtime_error("boom"); });
    REQUIRE(w.start().ok());
    REQUIRE(wait_until([&] { return w.state() == edgert::WorkerState::failed; }, 10s));
  }
  std::lock_guard lk(pulse->mu);
  REQUIRE(pulse->declared.size() == 1);
  CHECK(pulse->declared[0] == "failed: run() threw: boom");
}

TEST_CASE("a family collector reports the series it produces at each snapshot", "[registry][metrics]") {
  edgert::MetricsRegistry m;
  std::atomic<int> rows{1};
  auto reg = m.register_family_collector(
      {{"test_rows", "rows", edgert::MetricType::gauge}, {"test_restarts_total", "restarts", edgert::MetricType::counter}},
      [&](std::vector<edgert::FamilySample>& out) {
        for (int i = 0; i < rows; ++i) out.push_back({0, {{"name", std::string("r").append(std::to_string(i))}}, 1.0 * i});  // not "r" + ...: gcc 12 -O3's false -Wrestrict
        out.push_back({1, {{"name", "r0"}}, 7});
        out.push_back({1, {{"name", "r0"}}, 8});     // a duplicate: skipped, counted
        out.push_back({5, {{"name", "x"}}, 1});      // no such family: skipped, counted
        out.push_back({0, {{"bad name", "x"}}, 1});  // invalid label: skipped, counted
      });
  auto snap = m.snapshot();
  REQUIRE(snap.family("test_rows") != nullptr);
  CHECK(snap.family("test_rows")->samples.size() == 1);
  rows = 3;
  snap = m.snapshot();
  CHECK(snap.family("test_rows")->samples.size() == 3);
  REQUIRE(snap.find("test_rows", {{"name", "r2"}}) != nullptr);
  CHECK(snap.find("test_rows", {{"name", "r2"}})->value == 2.0);
  CHECK(snap.find("test_restarts_total", {{"name", "r0"}})->value == 7.0);
  CHECK(snap.find("edgert_metrics_collector_errors_total")->value == 6.0);  // 3 per snapshot
  const auto text = edgert::to_prometheus(snap);
  CHECK(text.find("# TYPE test_restarts_total counter") != std::string::npos);
  CHECK(text.find("test_rows{name=\"r1\"} 1") != std::string::npos);
  // The names are the collector's: nobody else may report them while it is registered.
  CHECK_THROWS_AS(m.gauge("test_rows", {{"name", "other"}}), std::invalid_argument);
  CHECK_THROWS_AS(m.register_family_collector({{"test_rows", "", edgert::MetricType::gauge}},
                                              [](std::vector<edgert::FamilySample>&) {}),
                  std::invalid_argument);
  reg.reset();
  CHECK(m.snapshot().family("test_rows") == nullptr);
  CHECK_NOTHROW(m.gauge("test_rows", {{"name", "other"}}));
}

TEST_CASE("the health keys are validated and name the key", "[registry][config]") {
  auto bad = edgert::parse_config("health: {sweep_interval_ms: 5}\n", "node.yaml", {});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("node.yaml:1: health.sweep_interval_ms") != std::string::npos);
  bad = edgert::parse_config("health: {stale_after_misses: 0}\n", "node.yaml", {});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("health.stale_after_misses") != std::string::npos);
  bad = edgert::parse_config("health: {sweep_every_ms: 100}\n", "node.yaml", {});
  REQUIRE(!bad.ok());
  // Each key in range, the window too short for the comms thread's 250 ms beat.
  bad = edgert::parse_config("health: {sweep_interval_ms: 100, stale_after_misses: 4}\n", "node.yaml", {});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("health.sweep_interval_ms x health.stale_after_misses is 400 ms") !=
        std::string::npos);
  auto good = edgert::parse_config("health: {sweep_interval_ms: 250, stale_after_misses: 5}\n", "node.yaml", {});
  REQUIRE(good.ok());
  CHECK(good.value().health.sweep_interval_ms == 250);
  CHECK(good.value().health.stale_after_misses == 5);
  // A Config built in code is checked by Node::create.
  edgert::Config cfg;
  cfg.health.sweep_interval_ms = 1;
  auto made = edgert::Node::create(cfg);
  REQUIRE(!made.ok());
  CHECK(made.status().message().find("health.sweep_interval_ms") != std::string::npos);
}

TEST_CASE("a started node shows its parts as ready rows in metrics and heartbeats", "[registry][node]") {
  edgert::testing::ScratchDir scratch("edgert-health-ready");
  std::string yaml = yaml_head(scratch.dir, 200, 3, 100);
  yaml += "  - name: cam\n    capture: {type: pl_source, fps: 50, live_feed: true}\n"
          "    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p, emit: false}]\n";
  std::mutex mu;
  std::vector<std::string> docs;
  edgert::NodeOptions options;
  options.on_heartbeat = [&](const edgert::NodeHeartbeat& hb) {
    std::lock_guard lk(mu);
    docs.push_back(hb.document);
  };
  auto node = start_node(config_of(yaml), options);
  const std::vector<std::string> ids = {"stream/cam", "instance/cam/pl_probe/p", "mailbox/writer", "runtime/loop",
                                        "store/registry.db"};
  REQUIRE(wait_until(
      [&] {
        for (const auto& id : ids) {
          if (!is(*node, id, ComponentStatus::ready)) return false;
        }
        return true;
      },
      30s, 20ms));
  // A second of sweeps (5 at 200 ms) later they still are: nothing idle or paced by
  // design reads stalled or blocked.
  std::this_thread::sleep_for(1s);
  for (const auto& id : ids) {
    INFO(id);
    CHECK(is(*node, id, ComponentStatus::ready));
  }
  const auto stream = node->components().find("stream/cam");
  REQUIRE(stream);
  CHECK(stream->expects_progress);
  CHECK(stream->progress > 0);
  CHECK(stream->labels.at("capture") == "pl_source");
  CHECK(node->components().find("instance/cam/pl_probe/p")->labels.at("signature") == "pl_probe");
  CHECK(!node->components().find("comms/link"));  // no broker configured: no link row

  const auto text = edgert::to_prometheus(node->metrics().snapshot());
  CHECK(text.find("edgert_component_status{kind=\"stream\",name=\"cam\",status=\"ready\"} 1") != std::string::npos);
  CHECK(text.find("edgert_component_status{kind=\"runtime\",name=\"loop\",status=\"ready\"} 1") != std::string::npos);
  CHECK(text.find("edgert_component_restarts_total{kind=\"instance\",name=\"cam/pl_probe/p\"} 0") !=
        std::string::npos);
  CHECK(text.find("edgert_components{status=\"ready\"} 5") != std::string::npos);
  CHECK(text.find("edgert_registry_sweeps_total") != std::string::npos);

  // The heartbeat document carries the counts and the rows not ready.
  const auto t0 = Clock::now();
  json last;
  REQUIRE(wait_until(
      [&] {
        std::lock_guard lk(mu);
        if (docs.empty()) return false;
        last = json::parse(docs.back());
        return ms_since(t0) > 300 && last.contains("components") && last["components"]["counts"]["ready"] == 5;
      },
      30s, 20ms));
  CHECK(last["components"]["total"] == 5);
  CHECK(last["components"]["counts"]["stalled"] == 0);
  CHECK(last["components"]["not_ready"].empty());
  node->stop();
  // Stopped parts say so (declared by their workers, or their handles released).
  for (const auto& id : ids) {
    INFO(id);
    CHECK(is(*node, id, ComponentStatus::stopped));
  }
}

TEST_CASE("a plugin sleeping in process() reads stalled, then ready again", "[registry][node]") {
  edgert::testing::ScratchDir scratch("edgert-health-stall");
  edgert::testing::LogCapture logs;
  constexpr int kSweepMs = 200, kMisses = 3, kWindowMs = kSweepMs * kMisses, kSleepMs = 3000;
  std::string yaml = yaml_head(scratch.dir, kSweepMs, kMisses, 100);
  yaml += "  - name: t\n    trigger: {type: manual}\n"
          "    plugins:\n      - signature: pl_probe\n"
          "        instances: [{instance_id: slow, sleep_ms: " +
          std::to_string(kSleepMs) + ", emit: false, stuck_after_s: 600}]\n";
  std::mutex mu;
  std::vector<json> docs;
  edgert::NodeOptions options;
  options.on_heartbeat = [&](const edgert::NodeHeartbeat& hb) {
    std::lock_guard lk(mu);
    docs.push_back(json::parse(hb.document));
  };
  auto node = start_node(config_of(yaml), options);
  const std::string id = "instance/t/pl_probe/slow";
  // Idle (waiting for input) is alive: ready, and still ready after several windows.
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::ready); }, 30s, 10ms));
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kWindowMs));
  REQUIRE(is(*node, id, ComponentStatus::ready));

  const auto t0 = Clock::now();
  REQUIRE(node->trigger("t").ok());
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::stalled); }, 30s, 5ms));
  const auto stalled_at = ms_since(t0);
  // The last beat came at most one loop turn (200 ms) before the call began, after the
  // trigger; detection takes the window plus at most one sweep (generous slack for a
  // loaded machine, well inside the 3 s call).
  CHECK(stalled_at >= kWindowMs - 200);
  CHECK(stalled_at <= kWindowMs + kSweepMs + 1500);
  const auto row = node->components().find(id);
  REQUIRE(row);
  CHECK(row->reason.find("no heartbeat for") != std::string::npos);
  // Seen by the heartbeat document while it lasts.
  REQUIRE(wait_until(
      [&] {
        std::lock_guard lk(mu);
        if (docs.empty()) return false;
        const auto& c = docs.back()["components"];
        return c["counts"]["stalled"] == 1 && c["not_ready"].size() == 1 && c["not_ready"][0]["id"] == id &&
               c["not_ready"][0]["status"] == "stalled";
      },
      10s, 10ms));

  // Back to ready once the call returns, not before.
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::ready); }, 30s, 5ms));
  const auto ready_at = ms_since(t0);
  CHECK(ready_at >= kSleepMs);
  CHECK(ready_at <= kSleepMs + kSweepMs + 2000);

  // The lines come from the transition listener, which runs after the row changed
  // (outside the registry's lock): wait for them rather than read once.
  auto logged = [&] {
    bool down = false, up = false;
    for (const auto& w : logs.warnings()) {
      down = down || w.find("component " + id + ": ready -> stalled: no heartbeat for") != std::string::npos;
    }
    for (const auto& l : logs.sink->at(spdlog::level::info)) {
      up = up || (l.find("component " + id + ": stalled -> ready after ") != std::string::npos &&
                  l.find(" s stalled: heartbeats resumed") != std::string::npos);
    }
    return down && up;
  };
  CHECK(wait_until(logged, 10s, 10ms));
  const auto snap = node->metrics().snapshot();
  REQUIRE(snap.find("edgert_component_unhealthy_total", {{"status", "stalled"}}) != nullptr);
  CHECK(snap.find("edgert_component_unhealthy_total", {{"status", "stalled"}})->value >= 1);
  CHECK(snap.find("edgert_component_recovered_total", {{"status", "stalled"}})->value >= 1);
  CHECK(snap.find("edgert_component_unhealthy_total", {{"status", "blocked"}})->value == 0);
}

TEST_CASE("a capture waiting for room in a lossless queue reads blocked not stalled", "[registry][node]") {
  edgert::testing::ScratchDir scratch("edgert-health-blocked");
  constexpr int kSweepMs = 200, kMisses = 3;
  std::string yaml = yaml_head(scratch.dir, kSweepMs, kMisses);
  yaml += "  - name: busy\n    capture: {type: pl_source, live_feed: false, fps: 100}\n"
          "    plugins:\n      - signature: pl_probe\n"
          "        instances: [{instance_id: b, block: true, emit: false, stuck_after_s: 600, max_inputs_queue_size: 1}]\n";
  auto node = start_node(config_of(yaml));
  const std::string stream = "stream/busy", instance = "instance/busy/pl_probe/b";
  REQUIRE(wait_until([&] { return is(*node, stream, ComponentStatus::blocked); }, 30s, 5ms));
  // Held there: it keeps beating while it waits, so it never reads stalled; the
  // instance, inside process(), does not beat at all.
  int stalled_seen = 0;
  const auto t0 = Clock::now();
  while (ms_since(t0) < 4 * kSweepMs * kMisses) {
    stalled_seen += is(*node, stream, ComponentStatus::stalled);
    std::this_thread::sleep_for(5ms);
  }
  CHECK(stalled_seen == 0);
  CHECK(is(*node, stream, ComponentStatus::blocked));
  CHECK(node->components().find(stream)->reason.find("heartbeating but no progress") != std::string::npos);
  CHECK(is(*node, instance, ComponentStatus::stalled));
  release_blocked_probes();
  // Room again: both come back (the next probe instance created would block again, but
  // this one's generation is released for good).
  CHECK(wait_until([&] { return is(*node, stream, ComponentStatus::ready); }, 30s, 5ms));
  CHECK(wait_until([&] { return is(*node, instance, ComponentStatus::ready); }, 30s, 5ms));
  node->stop();
}

TEST_CASE("the comms link row reads offline without a broker and ready with one", "[registry][node][mqtt]") {
  edgert::testing::ScratchDir scratch("edgert-health-comms");
  edgert::testing::MosquittoBroker broker;  // not started yet
  auto cfg = config_of(yaml_head(scratch.dir, 200, 3) + "  []\n");
  cfg.comms.mqtt.host = "127.0.0.1";
  cfg.comms.mqtt.port = broker.port();
  cfg.comms.mqtt.reconnect_min_ms = 50;
  cfg.comms.mqtt.reconnect_max_ms = 200;
  auto node = start_node(std::move(cfg));
  REQUIRE(wait_until([&] { return is(*node, "comms/link", ComponentStatus::offline); }, 30s, 10ms));
  CHECK(node->components().find("comms/link")->reason.find("cannot reach the broker at 127.0.0.1") !=
        std::string::npos);
  broker.start();
  CHECK(wait_until([&] { return is(*node, "comms/link", ComponentStatus::ready); }, 30s, 10ms));
  node->stop();
  CHECK(is(*node, "comms/link", ComponentStatus::stopped));
}

TEST_CASE("a host registers its own component and the sweep judges it", "[registry][node]") {
  edgert::testing::ScratchDir scratch("edgert-health-host");
  auto node = start_node(config_of(yaml_head(scratch.dir, 100, 5) + "  []\n"));
  auto handle = node->components().register_component("uploader", "host", {{"team", "edge"}});
  handle.beat();
  REQUIRE(wait_until([&] { return is(*node, "host/uploader", ComponentStatus::ready); }, 30s, 5ms));
  // No beat for the window (5 x 100 ms): the node's sweeper marks it stalled.
  CHECK(wait_until([&] { return is(*node, "host/uploader", ComponentStatus::stalled); }, 30s, 5ms));
  handle.beat();
  CHECK(wait_until([&] { return is(*node, "host/uploader", ComponentStatus::ready); }, 30s, 5ms));
  const auto text = edgert::to_prometheus(node->metrics().snapshot());
  CHECK(text.find("edgert_component_status{kind=\"host\",name=\"uploader\",status=\"ready\"} 1") !=
        std::string::npos);
  node->stop();
}

TEST_CASE("an instance's back-off reads degraded and its quarantine quarantined", "[registry][node]") {
  edgert::testing::ScratchDir scratch("edgert-health-quarantine");
  std::string yaml = yaml_head(scratch.dir, 200, 3);
  yaml += "  - name: t\n    trigger: {type: manual, queue_size: 10}\n"
          "    plugins:\n      - signature: pl_probe\n"
          "        instances: [{instance_id: bad, fail: error, emit: false, error_backoff_s: 1.5, "
          "quarantine_after: 2}]\n";
  auto node = start_node(config_of(yaml));
  const std::string id = "instance/t/pl_probe/bad";
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::ready); }, 30s, 5ms));
  REQUIRE(node->trigger("t").ok());
  // One failure: a 1.5 s back-off, declared, and not stalled although it sleeps.
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::degraded); }, 30s, 5ms));
  CHECK(node->components().find(id)->reason == "backing off 1.5 s after 1 failed run(s) in a row");
  // After the pause it is ready again, waiting for input.
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::ready); }, 30s, 5ms));
  REQUIRE(node->trigger("t").ok());
  REQUIRE(wait_until([&] { return is(*node, id, ComponentStatus::quarantined); }, 30s, 5ms));
  CHECK_THAT(node->components().find(id)->reason, Catch::StartsWith("2 failed runs in a row; last: "));
  // The owner's word: several windows later the sweep has not overridden it.
  std::this_thread::sleep_for(1500ms);
  CHECK(is(*node, id, ComponentStatus::quarantined));
  const auto text = edgert::to_prometheus(node->metrics().snapshot());
  CHECK(text.find("edgert_component_status{kind=\"instance\",name=\"t/pl_probe/bad\",status=\"quarantined\"} 1") !=
        std::string::npos);
  CHECK(text.find("edgert_components{status=\"quarantined\"} 1") != std::string::npos);
  node->stop();
  // Its worker is gone with the stopped node: the released row reads stopped.
  CHECK(is(*node, id, ComponentStatus::stopped));
}
