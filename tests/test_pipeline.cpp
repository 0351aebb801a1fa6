// The pipeline (docs/pipeline.md) end to end through a real Node: real plugin .so files
// (tests/plugins/pipeline_plugins.cpp) loaded by the real loader, a real mailbox, results
// collected by an in-process sink. Counts are kept independently: the source emits one
// result per frame it made, the probe one per input it saw, the sink counts both, and
// these are compared with the host's own figures.
#include <edgert/config.hpp>
#include <edgert/frame.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/node.hpp>

#include "pipeline_test_util.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Scratch = edgert::testing::MadeScratch;
using edgert::testing::pipeline_yaml;


// Every result, kept by the sink (its own tally, independent of the pipeline's counters).
struct Results {
  mutable std::mutex mu;
  std::vector<edgert::PipelineResult> all;

  void add(const edgert::PipelineResult& r) {
    std::lock_guard lk(mu);
    all.push_back(r);
  }
  std::vector<edgert::PipelineResult> where(const std::function<bool(const edgert::PipelineResult&)>& f) const {
    std::lock_guard lk(mu);
    std::vector<edgert::PipelineResult> out;
    for (const auto& r : all) {
      if (f(r)) out.push_back(r);
    }
    return out;
  }
  std::size_t count(const std::string& instance, const std::string& type) const {
    return where([&](const auto& r) { return r.instance_id == instance && r.payload_type == type; }).size();
  }
};

struct Running {
  std::unique_ptr<edgert::Node> node;
  Results results;

  explicit Running(const std::string& yaml) {
    node = edgert::testing::make_pipeline_node(yaml);
    node->add_result_sink([this](const edgert::PipelineResult& r) { results.add(r); });
    const auto st = node->start();
    if (!st.ok()) FAIL(st.message());
  }
  json stats() const { return json::parse(node->stats_json()); }
  bool wait_until(const std::function<bool(const json&)>& pred, std::chrono::seconds limit = 60s) const {
    return edgert::testing::wait_until([&] { return pred(stats()); }, limit, 20ms);
  }
};

// received == processed + dropped + queued for every instance, in one snapshot.
void check_identity(const json& stats) {
  for (const auto& [key, f] : stats["instances"].items()) {
    INFO(key << ": " << f.dump());
    CHECK(f["received"].get<std::uint64_t>() ==
          f["processed"].get<std::uint64_t>() + f["dropped"].get<std::uint64_t>() + f["queued"].get<std::uint64_t>());
  }
}

void release_blocked_probe() {
  void* h = dlopen((std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "/pl_probe.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(h != nullptr);
  auto* release = reinterpret_cast<void (*)()>(dlsym(h, "pl_probe_release"));
  REQUIRE(release != nullptr);
  release();
  dlclose(h);
}

}  // namespace

TEST_CASE("three instances get every frame by reference and the accounting identity holds throughout",
          "[pipeline]") {
  Scratch s;
  const auto copied_before = edgert::Frame::copied_bytes();
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 300, width: 640, height: 480, emit_ptr: true, live_feed: false, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: a}
          - {instance_id: b, sleep_ms: 1}
          - {instance_id: c, max_inputs_queue_size: 1}
)"));
  // While frames flow, every snapshot satisfies the identity.
  int snapshots = 0;
  while (!run.node->pipeline_done() && snapshots < 5000) {
    check_identity(run.stats());
    ++snapshots;
  }
  REQUIRE(run.wait_until([&](const json&) { return run.node->pipeline_done(); }));
  run.node->stop();
  const auto stats = run.stats();
  check_identity(stats);
  CHECK(stats["streams"]["cam0"]["captured"] == 300);
  CHECK(stats["streams"]["cam0"]["state"] == "ended");

  // Independent tallies: the source's own results, each probe's own results.
  std::map<std::uint64_t, std::string> made;  // sequence -> pixel address at capture
  for (const auto& r : run.results.where([](const auto& r) { return r.payload_type == "source.frame"; })) {
    made[json::parse(r.payload)["n"].get<std::uint64_t>()] = json::parse(r.payload)["ptr"];
  }
  REQUIRE(made.size() == 300);
  for (const char* id : {"a", "b", "c"}) {
    INFO("instance " << id);
    const auto seen = run.results.where([&](const auto& r) { return r.instance_id == id && r.payload_type == "probe"; });
    CHECK(seen.size() == 300);  // lossless: every frame, counted by the plugin itself
    CHECK(stats["instances"][std::string("cam0/pl_probe/") + id]["processed"] == seen.size());
    CHECK(stats["instances"][std::string("cam0/pl_probe/") + id]["dropped"] == 0);
    std::size_t same_pixels = 0;
    for (const auto& r : seen) {
      const auto p = json::parse(r.payload);
      const auto seq = p["seq"].get<std::uint64_t>();
      CHECK(p["sequence"] == seq);  // the envelope's sequence is the input's
      if (made.count(seq) && made[seq] == p["ptr"].get<std::string>()) ++same_pixels;
    }
    CHECK(same_pixels == 300);  // the pixels each instance read are the capture's own buffer
  }
  CHECK(edgert::Frame::copied_bytes() == copied_before);
  // Everything the sink saw was also stored in the outbox.
  CHECK(stats["outputs"]["stored"] == stats["outputs"]["results"]);
  CHECK(stats["mailbox"]["enqueued"] == stats["outputs"]["results"]);
}

TEST_CASE("a slow instance under live_feed drops the oldest inputs, each counted and reported with the seed's fields",
          "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 200, fps: 200, live_feed: true, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: fast, max_inputs_queue_size: 64}
          - {instance_id: slow, sleep_ms: 30, max_inputs_queue_size: 2}
)", "pipeline: {drop_results_per_s: 1000}\n"));
  REQUIRE(run.wait_until([&](const json&) { return run.node->pipeline_done(); }));
  run.node->stop();
  const auto stats = run.stats();
  check_identity(stats);
  const auto& slow = stats["instances"]["cam0/pl_probe/slow"];
  const auto& fast = stats["instances"]["cam0/pl_probe/fast"];
  CHECK(fast["processed"] == 200);
  CHECK(fast["dropped"] == 0);
  CHECK(slow["dropped"].get<std::uint64_t>() > 50);
  CHECK(slow["processed"].get<std::uint64_t>() + slow["dropped"].get<std::uint64_t>() == 200);
  const auto errors = run.results.where([](const auto& r) { return r.instance_id == "slow" && r.error; });
  CHECK(errors.size() == slow["dropped"].get<std::size_t>());  // one ERROR result per drop below the rate
  for (const auto& e : errors) {
    const auto p = json::parse(e.payload);
    CHECK(p["result"] == "ERROR");
    CHECK(p["message"].get<std::string>().rfind("Error: queue overflow", 0) == 0);
    CHECK(p["captured_at"].get<std::int64_t>() > 0);
    CHECK(p["detected_at"].get<std::int64_t>() >= p["captured_at"].get<std::int64_t>());
    CHECK(e.payload_type == "pipeline.error");
  }
  CHECK(run.results.count("slow", "probe") == slow["processed"].get<std::size_t>());
}

TEST_CASE("drop results are rate limited into summaries that carry the count", "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 400, live_feed: true, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: slow, sleep_ms: 20, max_inputs_queue_size: 1}
)", "pipeline: {drop_results_per_s: 2}\n"));
  REQUIRE(run.wait_until([&](const json&) { return run.node->pipeline_done(); }));
  run.node->stop();
  const auto stats = run.stats();
  const auto dropped = stats["instances"]["cam0/pl_probe/slow"]["dropped"].get<std::uint64_t>();
  REQUIRE(dropped > 100);
  std::uint64_t reported = 0;
  const auto errors = run.results.where([](const auto& r) { return r.error; });
  for (const auto& e : errors) reported += json::parse(e.payload)["dropped"].get<std::uint64_t>();
  CHECK(reported == dropped);          // every drop is in some result
  CHECK(errors.size() < dropped / 10);  // but not one result each
}

TEST_CASE("an instance blocked forever is reported stuck and not fed; the others keep the full rate", "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 300, fps: 100, live_feed: true, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: ok1, max_inputs_queue_size: 8}
          - {instance_id: ok2, max_inputs_queue_size: 8}
          - {instance_id: stuck, block: true, stuck_after_s: 0.5, max_inputs_queue_size: 4}
)", "pipeline: {monitor_period_ms: 50}\n"));
  REQUIRE(run.wait_until([](const json& st) { return st["instances"]["cam0/pl_probe/stuck"]["state"] == "stuck"; }));
  REQUIRE(run.wait_until([](const json& st) { return st["streams"]["cam0"]["state"] == "ended"; }));
  REQUIRE(run.wait_until([](const json& st) {
    return st["instances"]["cam0/pl_probe/ok1"]["queued"] == 0 && st["instances"]["cam0/pl_probe/ok2"]["queued"] == 0;
  }));
  const auto stats = run.stats();
  check_identity(stats);
  for (const char* id : {"ok1", "ok2"}) {
    INFO(id);
    CHECK(stats["instances"][std::string("cam0/pl_probe/") + id]["processed"].get<std::uint64_t>() >= 297);  // >= 99%
    CHECK(run.results.count(id, "probe") >= 297);
  }
  const auto& stuck = stats["instances"]["cam0/pl_probe/stuck"];
  CHECK(stuck["processed"] == 0);
  CHECK(stuck["dropped"].get<std::uint64_t>() >= 290);
  CHECK(stuck["last_progress_age_s"].get<double>() < 0);  // never returned
  const auto notes = run.results.where([](const auto& r) { return r.payload_type == "notification"; });
  CHECK(!notes.empty());
  release_blocked_probe();
  run.node->stop();
}

TEST_CASE("an erroring and a throwing instance back off and are quarantined; the others are undisturbed",
          "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 100, fps: 200, live_feed: false, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: good}
          - {instance_id: err, fail: error, error_backoff_s: 0.01, quarantine_after: 4}
          - {instance_id: thr, fail: throw, error_backoff_s: 0.01, quarantine_after: 4}
          - {instance_id: flaky, fail: error, fail_count: 2, error_backoff_s: 0.01, quarantine_after: 4}
)", "health: {restart: {policy: never}}\n"));  // quarantined for good (the supervisor: test_supervisor.cpp)
  REQUIRE(run.wait_until([&](const json&) { return run.node->pipeline_done(); }));
  run.node->stop();
  const auto stats = run.stats();
  check_identity(stats);
  CHECK(stats["instances"]["cam0/pl_probe/good"]["processed"] == 100);
  CHECK(run.results.count("good", "probe") == 100);
  for (const char* id : {"err", "thr"}) {
    INFO(id);
    const auto& f = stats["instances"][std::string("cam0/pl_probe/") + id];
    CHECK(f["state"] == "quarantined");
    CHECK(f["errors"] == 4);
    CHECK(f["processed"] == 4);
    CHECK(f["dropped"].get<std::uint64_t>() == 96);
    const auto notes = run.results.where(
        [&](const auto& r) { return r.instance_id == id && r.payload_type == "notification"; });
    REQUIRE(notes.size() == 1);
    CHECK(json::parse(notes[0].payload)["message"].get<std::string>().find("quarantined") != std::string::npos);
  }
  const auto& flaky = stats["instances"]["cam0/pl_probe/flaky"];
  CHECK(flaky["errors"] == 2);  // two failures, backed off, recovered
  CHECK(flaky["processed"] == 100);
  CHECK(flaky["state"] != "quarantined");
}

TEST_CASE("stopping a lossless run turns every queued input into a terminal result", "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, live_feed: false, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: slow, sleep_ms: 5, max_inputs_queue_size: 50}
)", "pipeline: {drop_results_per_s: 0}\n"));
  REQUIRE(run.wait_until([](const json& st) { return st["instances"]["cam0/pl_probe/slow"]["processed"] >= 20; }));
  run.node->stop();
  const auto stats = run.stats();
  const auto& f = stats["instances"]["cam0/pl_probe/slow"];
  CHECK(f["queued"] == 0);
  CHECK(f["received"].get<std::uint64_t>() == f["processed"].get<std::uint64_t>() + f["dropped"].get<std::uint64_t>());
  CHECK(f["received"] == stats["streams"]["cam0"]["captured"]);
  std::uint64_t reported = 0;
  for (const auto& e : run.results.where([](const auto& r) { return r.error; })) {
    const auto p = json::parse(e.payload);
    CHECK(p["reason"] == "not processed before stop");
    reported += p["dropped"].get<std::uint64_t>();
  }
  CHECK(reported == f["dropped"].get<std::uint64_t>());
  CHECK(run.results.count("slow", "probe") == f["processed"].get<std::size_t>());
}

TEST_CASE("a source that cannot open is retried with back-off, then given up, naming the stream; others run",
          "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: broken
    capture: {type: pl_source, url: "rtsp://127.0.0.1:9/none", fail_open: true, max_retries: 2, sleep_on_error_ms: 10}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p1}]
  - name: healthy
    capture: {type: pl_source, frames: 50, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p2}]
)"));
  REQUIRE(run.wait_until([&](const json&) { return run.node->pipeline_done(); }));
  run.node->stop();
  const auto stats = run.stats();
  CHECK(stats["streams"]["broken"]["state"] == "failed");
  CHECK(stats["streams"]["broken"]["errors"] == 3);      // the first open and two retries
  CHECK(stats["streams"]["broken"]["reconnects"] == 2);
  CHECK(stats["streams"]["healthy"]["captured"] == 50);
  CHECK(run.results.count("p2", "probe") == 50);
  const auto notes = run.results.where([](const auto& r) { return r.stream == "broken" && r.payload_type == "notification"; });
  CHECK(!notes.empty());
}

TEST_CASE("a source that goes silent is flagged stalled", "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: quiet
    capture: {type: pl_source, stall_after: 3, stall_timeout_ms: 300}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)", "pipeline: {monitor_period_ms: 50}\n"));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(run.wait_until([](const json& st) { return st["streams"]["quiet"]["state"] == "stalled"; }, 30s));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(run.stats()["streams"]["quiet"]["captured"] == 3);
  run.node->stop();
}

TEST_CASE("triggers faster than capture drop the oldest trigger with an ERROR result", "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: snap
    capture: {type: pl_source, fps: 10}
    trigger: {type: manual, queue_size: 2}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
  - name: timer
    trigger: {type: interval, period_ms: 20}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: t}]
)"));
  CHECK(run.node->trigger("nope").code() == edgert::ErrorCode::not_found);
  for (int i = 0; i < 20; ++i) REQUIRE(run.node->trigger("snap").ok());
  REQUIRE(run.wait_until([](const json& st) { return st["instances"]["timer/pl_probe/t"]["processed"] >= 5; }));
  REQUIRE(run.wait_until([](const json& st) {
    const auto& f = st["streams"]["snap"];
    return f["captured"].get<std::uint64_t>() + f["triggers_dropped"].get<std::uint64_t>() == 20;
  }));
  run.node->stop();
  const auto stats = run.stats();
  const auto dropped = stats["streams"]["snap"]["triggers_dropped"].get<std::uint64_t>();
  CHECK(dropped >= 15);  // 20 triggers at once, a queue of 2, one capture per 100 ms
  std::uint64_t reported = 0;
  for (const auto& e : run.results.where([](const auto& r) { return r.stream == "snap" && r.error; })) {
    const auto p = json::parse(e.payload);
    CHECK(p["message"].get<std::string>().rfind("Error: trigger queue overflow", 0) == 0);
    reported += p["dropped"].get<std::uint64_t>();
  }
  CHECK(reported == dropped);
  for (const auto& r : run.results.where([](const auto& r) { return r.instance_id == "t" && r.payload_type == "probe"; })) {
    CHECK(json::parse(r.payload)["kind"] == "record");
  }
}

TEST_CASE("an instance whose config the plugin refuses stops the node from starting, naming the place", "[pipeline]") {
  Scratch s;
  auto cfg = edgert::parse_config(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p, sleep_ms: "slow"}]
)"), "test.yaml", {});
  REQUIRE(cfg.ok());
  auto node = edgert::Node::create(std::move(cfg).value());
  REQUIRE(node.ok());
  const auto st = node.value()->start();
  REQUIRE(!st.ok());
  CHECK_THAT(st.message(), Catch::Contains("test.yaml:") && Catch::Contains("instance 'cam0/pl_probe/p'") &&
                               Catch::Contains("sleep_ms"));
}

TEST_CASE("two streams on one camera url are refused at config time", "[pipeline]") {
  const auto cfg = edgert::parse_config(R"(
streams:
  - name: a
    capture: {type: video, url: "rtsp://10.0.0.1/cam"}
  - name: b
    capture: {type: video, url: "rtsp://10.0.0.1/cam"}
)", "dup.yaml", {});
  REQUIRE(!cfg.ok());
  CHECK_THAT(cfg.status().message(), Catch::Contains("streams[1].capture.url") && Catch::Contains("already captured"));
}

TEST_CASE("allow_empty_inputs runs an instance on a timer without input; a disabled instance is never created",
          "[pipeline]") {
  Scratch s;
  Running run(pipeline_yaml(s.dir, R"(
  - name: idle
    trigger: {type: manual}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: timer, allow_empty_inputs: true, process_delay: 0.05}
          - {instance_id: off, disabled: true}
)"));
  REQUIRE(run.wait_until([&](const json&) { return run.results.count("timer", "probe") >= 5; }));
  run.node->stop();
  for (const auto& r : run.results.where([](const auto& r) { return r.instance_id == "timer"; })) {
    CHECK(json::parse(r.payload)["kind"] == "empty");
  }
  const auto stats = run.stats();
  CHECK(stats["instances"]["idle/pl_probe/timer"]["received"] == 0);  // empty runs are not inputs
  CHECK(stats["instances"]["idle/pl_probe/off"]["state"] == "disabled");
  CHECK(run.results.count("off", "probe") == 0);
}
