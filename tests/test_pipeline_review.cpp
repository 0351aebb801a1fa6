// Review of the pipeline (issue 11): each test reproduces one suspected defect and
// fails against the code it was written for. Same harness as tests/test_pipeline.cpp.
#include <edgert/config.hpp>
#include <edgert/node.hpp>

#include "log_capture.hpp"
#include "pipeline_test_util.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Scratch = edgert::testing::MadeScratch;
using edgert::testing::pipeline_yaml;


// Keeps the .so mapped (so its globals survive the node) and releases blocked probes.
struct ProbeHandle {
  void* h = dlopen((std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "/pl_probe.so").c_str(), RTLD_NOW);
  ~ProbeHandle() {
    if (h) dlclose(h);
  }
  void release() const {
    auto* fn = reinterpret_cast<void (*)()>(dlsym(h, "pl_probe_release"));
    REQUIRE(fn != nullptr);
    fn();
  }
};

}  // namespace

// Pipeline::streams_ / instances_ are read by Node::trigger() and Node::pipeline_done()
// ("any thread") without a lock while Pipeline::destroy() (node stop) clears them.
TEST_CASE("review: trigger() and pipeline_done() from a host thread race with stop()", "[pipeline][review]") {
  Scratch s;
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: snap
    trigger: {type: manual, queue_size: 4}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p, emit: false}]
)"));
  REQUIRE(node->start().ok());
  std::atomic<bool> quit{false};
  std::atomic<std::uint64_t> calls{0};
  std::thread host([&] {
    while (!quit.load()) {
      (void)node->trigger("snap");
      (void)node->pipeline_done();
      calls.fetch_add(1);
    }
  });
  std::this_thread::sleep_for(200ms);
  node->stop();
  quit.store(true);
  host.join();
  CHECK(calls.load() > 0);
}

// StreamRunner::State::who() puts the capture url into every log line as configured:
// a password in an RTSP url is written to the log in clear (the video plugin masks it,
// docs/plugins.md; the host does not).
TEST_CASE("review: a password in a capture url never reaches the log", "[pipeline][review]") {
  Scratch s;
  edgert::testing::LogCapture logs;
  {
    auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, url: "rtsp://admin:s3cretpw@127.0.0.1:9/live", fail_open: true, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)"));
    REQUIRE(node->start().ok());
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (json::parse(node->stats_json())["streams"]["cam0"]["state"] != "failed" &&
           std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(20ms);
    }
    node->stop();
  }
  const auto errors = logs.errors();
  REQUIRE(!errors.empty());
  for (const auto& e : errors) {
    INFO(e);
    CHECK(e.find("s3cretpw") == std::string::npos);
  }
}

// check_streams compares the url's text, but `video` reads any url of 1-3 digits as a
// device index (std::stoi): "0" and "00" are both /dev/video0, opened by two streams.
TEST_CASE("review: one camera given as url \"0\" and url \"00\" is refused as a duplicate", "[pipeline][review]") {
  const auto cfg = edgert::parse_config(R"(
streams:
  - name: a
    capture: {type: video, url: "0"}
  - name: b
    capture: {type: video, url: "00"}
)", "dup.yaml", {});
  CHECK(!cfg.ok());
}

// A duplicate-url error quotes the url as written, password included.
TEST_CASE("review: the duplicate-url error does not quote the password", "[pipeline][review]") {
  const auto cfg = edgert::parse_config(R"(
streams:
  - name: a
    capture: {type: video, url: "rtsp://admin:s3cretpw@10.0.0.1/cam"}
  - name: b
    capture: {type: video, url: "rtsp://admin:s3cretpw@10.0.0.1/cam"}
)", "dup.yaml", {});
  REQUIRE(!cfg.ok());
  CHECK(cfg.status().message().find("s3cretpw") == std::string::npos);
}

// StreamRunner::check() measures "no item for stall_timeout_ms" from the last item, but
// run_source() itself sleeps until the next item is due when `fps` paces the source: a
// healthy stream slower than 1/stall_timeout (fps: 0.1 against the 5 s default) is
// flagged `stalled` (WARNING + a notification in the outbox) before every item.
TEST_CASE("review: a source paced by a low fps is not reported stalled while it keeps its rate",
          "[pipeline][review]") {
  Scratch s;
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: slow
    capture: {type: pl_source, fps: 0.5, stall_timeout_ms: 1000, live_feed: true}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p, emit: false}]
)", "pipeline: {monitor_period_ms: 50}\n"));
  std::atomic<int> stalled_notes{0};
  node->add_result_sink([&](const edgert::PipelineResult& r) {
    if (r.payload_type == "notification" && r.payload.find("source stalled") != std::string::npos) {
      stalled_notes.fetch_add(1);
    }
  });
  REQUIRE(node->start().ok());
  bool seen_stalled = false;
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < end) {
    seen_stalled = seen_stalled || json::parse(node->stats_json())["streams"]["slow"]["state"] == "stalled";
    std::this_thread::sleep_for(50ms);
  }
  const auto captured = json::parse(node->stats_json())["streams"]["slow"]["captured"].get<int>();
  node->stop();
  CHECK(captured >= 2);  // it did keep its 0.5 fps
  CHECK(!seen_stalled);
  CHECK(stalled_notes.load() == 0);
}

// Node::trigger() is documented "never blocks", but a full trigger queue's overflow
// callback runs DropReporter::dropped -> Outputs::publish_error -> every host sink, the
// JSONL write and mailbox send_async (which blocks while the writer queue is full), on
// the caller's thread. The interval trigger and the monitor run on the runtime loop,
// whose spawn_periodic callbacks "must not block".
TEST_CASE("review: trigger() does not block on the result sinks when it drops a trigger", "[pipeline][review]") {
  Scratch s;
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: snap
    capture: {type: pl_source, fps: 1}
    trigger: {type: manual, queue_size: 1}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p, emit: false}]
)"));
  node->add_result_sink([](const edgert::PipelineResult& r) {
    if (r.error) std::this_thread::sleep_for(500ms);  // a slow host: a network forwarder, a UI
  });
  REQUIRE(node->start().ok());
  std::chrono::steady_clock::duration longest{};
  for (int i = 0; i < 6; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(node->trigger("snap").ok());
    longest = std::max(longest, std::chrono::steady_clock::now() - t0);
  }
  node->stop();
  INFO("longest trigger() call: " << std::chrono::duration_cast<std::chrono::milliseconds>(longest).count() << " ms");
  CHECK(longest < 250ms);
}

// When a triggered stream's capture fails for good (or its finite source ends), the
// capture worker returns but the trigger queue stays open: the interval trigger keeps
// firing into it, and once it is full every firing drops the oldest trigger as an
// ERROR result "trigger queue overflow", for as long as the node runs.
TEST_CASE("review: a triggered stream that failed does not keep producing trigger-overflow ERROR results",
          "[pipeline][review]") {
  Scratch s;
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: snap
    capture: {type: pl_source, fail_open: true, reconnectable: no}
    trigger: {type: interval, period_ms: 20, queue_size: 2}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)"));
  std::atomic<std::uint64_t> overflow_drops{0};
  node->add_result_sink([&](const edgert::PipelineResult& r) {
    if (r.error && r.payload.find("trigger queue overflow") != std::string::npos) {
      overflow_drops.fetch_add(json::parse(r.payload)["dropped"].get<std::uint64_t>());
    }
  });
  REQUIRE(node->start().ok());
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (json::parse(node->stats_json())["streams"]["snap"]["state"] != "failed" &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(20ms);
  }
  const auto at_failure = overflow_drops.load();
  std::this_thread::sleep_for(3s);
  const auto stats = json::parse(node->stats_json());
  node->stop();
  INFO(stats["streams"]["snap"].dump());
  CHECK(overflow_drops.load() - at_failure <= 2);  // at most what sat in the queue when it failed
}

// Pipeline::stop_instances() stops the instance workers one after the other, each
// waiting its full join timeout (2 s) when its call is stuck, and ~BaseWorker waits
// again in destroy(): the node's stop grows by ~4 s per stuck instance (4 stuck
// instances: ~16 s), where requesting every stop first and then joining would bound it
// by one timeout.
TEST_CASE("review: stopping a node with several stuck instances takes one join timeout in total",
          "[pipeline][review]") {
  Scratch s;
  ProbeHandle probe;
  REQUIRE(probe.h != nullptr);
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, fps: 50, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: s1, block: true, stuck_after_s: 60}
          - {instance_id: s2, block: true, stuck_after_s: 60}
          - {instance_id: s3, block: true, stuck_after_s: 60}
          - {instance_id: s4, block: true, stuck_after_s: 60}
)"));
  REQUIRE(node->start().ok());
  std::this_thread::sleep_for(1s);
  const auto before = json::parse(node->stats_json());
  for (const char* id : {"s1", "s2", "s3", "s4"}) {
    INFO(id);
    REQUIRE(before["instances"][std::string("cam0/pl_probe/") + id]["processed"] == 0);  // really blocked
  }
  const auto t0 = std::chrono::steady_clock::now();
  node->stop();
  node.reset();
  const auto took = std::chrono::steady_clock::now() - t0;
  probe.release();
  std::this_thread::sleep_for(1s);
  INFO("stop + destroy took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 8s);
}

// InstanceRunner::idle() counts a call in flight, also one reported stuck (its queue was
// drained and it is no longer fed): with one stuck instance pipeline_done() never turns
// true, so `edgert-node run --exit-when-done` on a finite file never exits.
TEST_CASE("review: exit-when-done fires when a finite stream ended and an instance is stuck",
          "[pipeline][review]") {
  Scratch s;
  ProbeHandle probe;
  REQUIRE(probe.h != nullptr);
  auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, frames: 20, live_feed: true, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: ok}
          - {instance_id: stuck, block: true, stuck_after_s: 0.5}
)", "pipeline: {monitor_period_ms: 50}\n"));
  REQUIRE(node->start().ok());
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!node->pipeline_done() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(50ms);
  const auto stats = json::parse(node->stats_json());
  const bool done = node->pipeline_done();
  probe.release();
  node->stop();
  INFO(stats["instances"].dump());
  CHECK(stats["streams"]["cam0"]["state"] == "ended");
  CHECK(stats["instances"]["cam0/pl_probe/stuck"]["state"] == "stuck");
  CHECK(done);
}

// Last: it leaves a detached worker that logs once its call returns; no later test
// may be changing the logger's sinks (LogCapture) by then.
// Outputs::close() keeps sinks_; a process() call that outlives the node (stuck, its
// worker detached) emits through InstanceRunner::State::Sink -> Outputs::publish ->
// every host sink, after Node's destructor returned: the host's callback (and whatever
// it captured) may be gone by then.
TEST_CASE("review: no host result sink is called after the node is destroyed", "[pipeline][review]") {
  Scratch s;
  ProbeHandle probe;
  REQUIRE(probe.h != nullptr);
  struct Tally {
    std::atomic<bool> node_gone{false};
    std::atomic<int> after{0};
    std::atomic<int> before{0};
  };
  auto tally = std::make_shared<Tally>();
  {
    auto node = edgert::testing::make_pipeline_node(pipeline_yaml(s.dir, R"(
  - name: cam0
    capture: {type: pl_source, fps: 50, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: stuck, block: true, stuck_after_s: 60}
)"));
    node->add_result_sink([tally](const edgert::PipelineResult&) {
      (tally->node_gone.load() ? tally->after : tally->before).fetch_add(1);
    });
    REQUIRE(node->start().ok());
    // The probe is inside its first process() call once one input was received.
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (json::parse(node->stats_json())["instances"]["cam0/pl_probe/stuck"]["queued"] == 0 &&
           std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(20ms);
    }
    node->stop();
  }
  tally->node_gone.store(true);
  probe.release();  // the stuck call returns and emits its "probe" result
  std::this_thread::sleep_for(1500ms);
  CHECK(tally->after.load() == 0);
}
