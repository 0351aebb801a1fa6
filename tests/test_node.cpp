// edgert::Node, the composition root: components in the right stages, errors that
// name the component, the heartbeat document and the metrics snapshot.
#include <edgert/config.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/metrics.hpp>
#include <edgert/node.hpp>
#include <edgert/plugin_host.hpp>

#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using Scratch = edgert::testing::MadeScratch;

edgert::Config config_in(const fs::path& dir) {
  edgert::Config cfg;
  cfg.node.id = "node-under-test";
  cfg.node.data_dir = (dir / "data").string();
  cfg.node.heartbeat_interval_ms = 0;
  cfg.plugins.paths = {(dir / "no-plugins").string()};
  return cfg;
}

}  // namespace

TEST_CASE("a node opens its mailbox in storage, before outputs, and closes it after them", "[node]") {
  Scratch s;
  auto node = edgert::Node::create(config_in(s.dir));
  REQUIRE(node.ok());
  auto& n = *node.value();
  CHECK(n.mailbox() == nullptr);
  std::vector<std::string> seen;
  std::mutex mu;
  edgert::LifecycleHooks output;
  output.name = "host-output";
  output.start = [&] {
    std::lock_guard lk(mu);
    seen.push_back(n.mailbox() != nullptr ? "start: mailbox open" : "start: no mailbox");
    seen.push_back(n.plugins() != nullptr ? "start: plugins loaded" : "start: no plugins");
    return edgert::Status{};
  };
  output.stop = [&] {
    std::lock_guard lk(mu);
    seen.push_back(n.mailbox() != nullptr ? "stop: mailbox open" : "stop: no mailbox");
  };
  REQUIRE(n.runtime().add_participant(edgert::Stage::outputs, output).ok());
  REQUIRE(n.start().ok());
  CHECK(n.running());
  REQUIRE(n.mailbox() != nullptr);
  CHECK(fs::exists(s.dir / "data" / "mailbox.db"));
  REQUIRE(n.mailbox()->send({"", "node-under-test", "", "test", R"({"x":1})", 0}).ok());
  n.stop();
  CHECK_FALSE(n.running());
  CHECK(n.mailbox() == nullptr);
  CHECK(seen == std::vector<std::string>{"start: mailbox open", "start: plugins loaded", "stop: mailbox open"});
}

TEST_CASE("the stats snapshot carries the mailbox figures", "[node]") {
  Scratch s;
  auto node = edgert::Node::create(config_in(s.dir));
  REQUIRE(node.ok());
  auto& n = *node.value();
  REQUIRE(n.start().ok());
  int sent = 0;
  for (int i = 0; i < 3; ++i) sent += n.mailbox()->send({"", "node-under-test", "", "test", R"({"i":1})", 0}).ok();
  REQUIRE(sent == 3);
  const auto doc = nlohmann::json::parse(n.stats_json());
  INFO(doc.dump(2));
  REQUIRE(doc.contains("edgert_mailbox_outbox_rows"));
  const auto& rows = doc["edgert_mailbox_outbox_rows"]["series"];
  REQUIRE(rows.size() == 1);
  CHECK(rows[0]["value"].get<double>() == sent);  // what the senders counted
  CHECK(doc["edgert_mailbox_sent_total"]["series"][0]["value"].get<double>() == sent);
  n.stop();
  // After stop the mailbox is closed; the snapshot taken as it closed remains.
  const auto after = nlohmann::json::parse(n.stats_json());
  REQUIRE(after.contains("edgert_mailbox_outbox_rows"));
  CHECK(after["edgert_mailbox_outbox_rows"]["series"][0]["value"].get<double>() == sent);
}

TEST_CASE("the mailbox section's input limits reach the node's mailbox", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.mailbox.max_json_depth = 3;
  cfg.mailbox.max_id_bytes = 16;
  auto node = edgert::Node::create(cfg);
  REQUIRE(node.ok());
  auto& n = *node.value();
  REQUIRE(n.start().ok());
  auto* mb = n.mailbox();
  REQUIRE(mb != nullptr);
  CHECK(mb->send({"", "node-under-test", "", "test", "[[[1]]]", 0}).ok());
  const auto deep = mb->send({"", "node-under-test", "", "test", "[[[[1]]]]", 0});
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.status().code() == edgert::ErrorCode::invalid_argument);
  CHECK(mb->send({std::string(16, 'a'), "node-under-test", "", "test", "{}", 0}).ok());
  const auto long_id = mb->send({std::string(17, 'b'), "node-under-test", "", "test", "{}", 0});
  REQUIRE_FALSE(long_id.ok());
  CHECK(long_id.status().code() == edgert::ErrorCode::invalid_argument);
  n.stop();
}

TEST_CASE("a node that cannot open its mailbox refuses to start and says why", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  std::ofstream(s.dir / "data") << "a file where the data directory should be";
  auto node = edgert::Node::create(cfg);
  REQUIRE(node.ok());
  const auto st = node.value()->start();
  REQUIRE_FALSE(st.ok());
  // The mailbox's own error, not `internal`: the host can tell an operator's problem
  // from a bug in edgert.
  CHECK(st.code() == edgert::ErrorCode::io_error);
  CHECK_THAT(st.message(), Catch::Contains(cfg.node.data_dir) && Catch::Contains("cannot create data dir"));
  CHECK_FALSE(node.value()->running());
  CHECK(node.value()->plugins() == nullptr);  // stopped again
}

TEST_CASE("a data_dir another mailbox holds reaches the host as the mailbox's own error", "[node]") {
  Scratch s;
  const auto cfg = config_in(s.dir);
  edgert::MailboxOptions mo;
  mo.data_dir = cfg.node.data_dir;
  // The lock is a flock on an open file description, so a second opener in this very
  // process is refused like another process (docs/mailbox.md).
  std::string expected;  // what Mailbox::open says to a second opener, as the mailbox says it
  {
    auto holder = edgert::Mailbox::open(mo);
    REQUIRE(holder.ok());
    const auto second = edgert::Mailbox::open(mo);
    REQUIRE_FALSE(second.ok());
    REQUIRE(second.status().code() == edgert::ErrorCode::io_error);
    expected = second.status().message();

    std::vector<std::string> seen;  // a host's components beside the mailbox
    auto node = edgert::Node::create(cfg);
    REQUIRE(node.ok());
    auto& n = *node.value();
    REQUIRE(n.runtime().add_participant(edgert::Stage::build, {"host-build", [&] {
                                                                 seen.push_back("start:host-build");
                                                                 return edgert::Status{};
                                                               },
                                                               [&] { seen.push_back("stop:host-build"); }, {}})
                .ok());
    REQUIRE(n.runtime().add_participant(edgert::Stage::outputs, {"host-output", [&] {
                                                                   seen.push_back("start:host-output");
                                                                   return edgert::Status{};
                                                                 },
                                                                 {}, {}})
                .ok());
    const auto st = n.start();
    CHECK(st.code() == edgert::ErrorCode::io_error);  // not internal ("a bug in edgert")
    CHECK(st.message() == expected);                  // unchanged
    CHECK_THAT(st.message(), Catch::Contains(cfg.node.data_dir) && Catch::Contains("in use by"));
    CHECK_FALSE(n.running());
    CHECK(n.mailbox() == nullptr);
    CHECK(n.plugins() == nullptr);  // what started before the mailbox was stopped again
    CHECK(seen == std::vector<std::string>{"start:host-build", "stop:host-build"});

    // A running Node holds the lock the same way: a second Node on its data_dir gets
    // the same error, and the first keeps running.
    holder.value().reset();  // closes the mailbox, releasing the lock
    auto first = edgert::Node::create(cfg);
    REQUIRE(first.ok());
    REQUIRE(first.value()->start().ok());
    auto second_node = edgert::Node::create(cfg);
    REQUIRE(second_node.ok());
    const auto st2 = second_node.value()->start();
    CHECK(st2.code() == edgert::ErrorCode::io_error);
    CHECK(st2.message() == expected);
    CHECK(first.value()->running());
    REQUIRE(first.value()->mailbox() != nullptr);
    CHECK(first.value()->mailbox()->send({"", "node-under-test", "", "test", R"({"x":1})", 0}).ok());
    first.value()->stop();
  }
}

// on_heartbeat may call Node::stop(); during start() that stop() waits for start() on
// the heartbeat publisher's thread, which the publisher's stop hook joins. A hook that
// fails then must neither wait for that stop() nor run it itself (both deadlocked).
TEST_CASE("a start that fails while on_heartbeat's stop() waits returns the error and the node stops", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.node.heartbeat_interval_ms = 10;
  edgert::Node* self = nullptr;
  std::atomic<bool> stop_returned{false};
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat&) {
    self->stop();
    stop_returned = true;
  };
  auto node = edgert::Node::create(cfg, opts);
  REQUIRE(node.ok());
  self = node.value().get();
  // triggers start after the heartbeat publisher (processing): by then ticks flow.
  REQUIRE(self->runtime().add_participant(edgert::Stage::triggers, {"host-trigger", [&] {
                                                                       const auto end =
                                                                           std::chrono::steady_clock::now() + 10s;
                                                                       while (self->running() &&
                                                                              std::chrono::steady_clock::now() < end) {
                                                                         std::this_thread::sleep_for(1ms);
                                                                       }
                                                                       return edgert::Status{
                                                                           edgert::ErrorCode::unsupported,
                                                                           "host-trigger: no camera"};
                                                                     },
                                                                     {}, {}})
              .ok());
  auto started = std::async(std::launch::async, [&] { return self->start(); });
  if (started.wait_for(30s) != std::future_status::ready) {
    FAIL_CHECK("Node::start() deadlocked against on_heartbeat's stop()");
    std::abort();  // the threads cannot be joined: end the run here rather than hang
  }
  const auto st = started.get();
  CHECK(st.code() == edgert::ErrorCode::unsupported);
  CHECK(st.message() == "host-trigger: no camera");
  self->stop();  // waits for the stop on_heartbeat began
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (!stop_returned && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  CHECK(stop_returned);
  CHECK_FALSE(self->running());
  CHECK(self->mailbox() == nullptr);
  CHECK(self->plugins() == nullptr);
}

TEST_CASE("create refuses a heartbeat interval out of the node's range, naming the key", "[node]") {
  Scratch s;
  // The runtime accepts 1 ms; the node's range is [10, 86400000] ms, a Config built in
  // code included.
  for (std::int64_t ms : {std::int64_t{-1}, std::int64_t{1}, std::int64_t{9}, std::int64_t{86400001},
                          std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()}) {
    auto cfg = config_in(s.dir);
    cfg.node.heartbeat_interval_ms = ms;
    auto node = edgert::Node::create(cfg);
    INFO(ms);
    REQUIRE_FALSE(node.ok());
    CHECK(node.status().code() == edgert::ErrorCode::invalid_argument);
    CHECK_THAT(node.status().message(),
               Catch::Contains("node.heartbeat_interval_ms") && Catch::Contains(std::to_string(ms)));
  }
  for (std::int64_t ms : {0, 10, 86400000}) {
    auto cfg = config_in(s.dir);
    cfg.node.heartbeat_interval_ms = ms;
    INFO(ms);
    CHECK(edgert::Node::create(cfg).ok());
  }
}

TEST_CASE("on_heartbeat fires every heartbeat_interval_ms", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.node.heartbeat_interval_ms = 250;
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> at;  // this test's own tally
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat&) {
    std::lock_guard lk(mu);
    at.push_back(std::chrono::steady_clock::now());
  };
  auto node = edgert::Node::create(cfg, opts);
  REQUIRE(node.ok());
  auto& n = *node.value();
  REQUIRE(n.start().ok());
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(2100ms);
  n.stop();
  std::lock_guard lk(mu);
  // Beats at ~0.25 s, 0.5 s, ... 2.0 s: 8. Generous bounds for a loaded machine
  // under ASan; a 1 Hz or 10 Hz clock (a unit mixed up) falls outside them.
  INFO(at.size() << " beats");
  CHECK(at.size() >= 4);
  CHECK(at.size() <= 10);
  REQUIRE(at.size() >= 2);
  const auto first = std::chrono::duration_cast<std::chrono::milliseconds>(at.front() - t0);
  CHECK(first < 1000ms);
  const auto span = std::chrono::duration_cast<std::chrono::milliseconds>(at.back() - at.front());
  const auto mean = span / static_cast<int>(at.size() - 1);
  INFO("mean gap " << mean.count() << " ms");
  CHECK(mean >= 150ms);
  CHECK(mean <= 500ms);
}

TEST_CASE("heartbeats carry the node's heartbeat document, and stop before the mailbox closes", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.node.heartbeat_interval_ms = 20;
  std::mutex mu;
  std::vector<std::string> docs;
  std::atomic<bool> mailbox_closing{false};
  std::atomic<int> late{0};
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat& hb) {
    if (mailbox_closing) late++;
    std::lock_guard lk(mu);
    docs.push_back(hb.document);
  };
  auto node = edgert::Node::create(cfg, opts);
  REQUIRE(node.ok());
  auto& n = *node.value();
  // Outputs stop before the storage: no document may be handed over once they begin.
  REQUIRE(n.runtime().add_participant(edgert::Stage::outputs, {"watch", {}, [&] { mailbox_closing = true; }, {}}).ok());
  REQUIRE(n.start().ok());
  const auto end = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    {
      std::lock_guard lk(mu);
      if (docs.size() >= 3 || std::chrono::steady_clock::now() > end) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  n.stop();
  CHECK(late == 0);
  std::lock_guard lk(mu);
  REQUIRE(docs.size() >= 3);
  const auto doc = nlohmann::json::parse(docs.back());
  CHECK(doc["node_id"] == "node-under-test");
  CHECK(doc["seq"].get<int>() >= 3);
  CHECK(doc["status"] == "RUNNING");
  // The published document's fields (node::heartbeat_json, the one builder).
  for (const char* key : {"edgert_version", "time_ms", "uptime_s", "process", "disk", "streams", "instances",
                          "outbox", "inbox", "comms"}) {
    INFO(key);
    CHECK(doc.contains(key));
  }
  CHECK(doc["outbox"].contains("messages"));
}

// The publisher runs from the outputs up to their stop (issue 20 follow-up): a
// pipeline's drain (or a slow instance stop) is when a fleet most needs to see the
// node alive. A host participant's drain stands in for a slow pipeline drain here.
TEST_CASE("heartbeats keep coming while the pipeline drains at stop", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.node.heartbeat_interval_ms = 50;
  std::atomic<bool> draining{false};
  std::atomic<int> beats{0}, during_drain{0};  // this test's own tally
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat&) {
    ++beats;
    if (draining) ++during_drain;
  };
  auto node = edgert::Node::create(cfg, opts);
  REQUIRE(node.ok());
  auto& n = *node.value();
  edgert::LifecycleHooks slow;
  slow.name = "slow-drain";
  slow.drain = [&]() -> std::size_t {
    draining = true;
    std::this_thread::sleep_for(1500ms);  // ~30 beat periods
    draining = false;
    return 0;
  };
  REQUIRE(n.runtime().add_participant(edgert::Stage::processing, std::move(slow)).ok());
  REQUIRE(n.start().ok());
  REQUIRE(edgert::testing::wait_until([&] { return beats >= 2; }, 10s));
  n.stop();
  INFO(beats.load() << " beats, " << during_drain.load() << " during the drain");
  // ~30 expected; a loaded machine under ASan still manages a few.
  CHECK(during_drain >= 3);
}

TEST_CASE("on_heartbeat runs off the loop and may stop the node", "[node]") {
  Scratch s;
  auto cfg = config_in(s.dir);
  cfg.node.heartbeat_interval_ms = 10;
  std::atomic<int> calls{0};
  edgert::Node* self = nullptr;
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat& hb) {
    CHECK(hb.tick.seq >= 1);
    if (++calls == 2) self->stop();  // stops the node from the heartbeat thread
  };
  auto node = edgert::Node::create(cfg, opts);
  REQUIRE(node.ok());
  self = node.value().get();
  REQUIRE(self->start().ok());
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (self->running() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
  CHECK_FALSE(self->running());
  self->stop();  // returns once the stop begun on the heartbeat thread has finished
  CHECK(self->mailbox() == nullptr);
  const auto stats = nlohmann::json::parse(self->stats_json());
  INFO(stats.dump());
  // The publisher's own tally, its worker and its queue are in the snapshot.
  CHECK(stats["edgert_heartbeats_published_total"]["series"][0]["value"].get<double>() >= 1);
  CHECK(stats.contains("edgert_queue_pushed_total"));
  CHECK(stats.contains("edgert_worker_state"));
  CHECK(calls >= 2);
}

TEST_CASE("a node loads only the plugins its streams use; the others are scanned, not mapped", "[node][plugins]") {
  Scratch s;
  const std::string bundled = EDGERT_BUNDLED_PLUGIN_DIR;
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(bundled)) files += e.path().extension() == ".so";
  REQUIRE(files >= 1);
  const std::string yaml = "node: {id: lazy, data_dir: " + (s.dir / "data").string() +
                           ", heartbeat_interval_ms: 0}\n"
                           "plugins: {paths: [" + bundled + "]}\n"
                           "pipeline: {outbox: false}\n"
                           "streams:\n"
                           "  - name: records\n"
                           "    trigger: {type: manual}\n"
                           "    plugins:\n"
                           "      - signature: threshold\n"
                           "        instances: [{instance_id: t}]\n";
  auto cfg = edgert::parse_config(yaml, "lazy.yaml", {});
  REQUIRE(cfg.ok());
  // What this process maps from the bundled folder, read independently of the loader.
  auto mapped = [&] {
    std::set<std::string> out;
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
      const auto at = line.find(bundled + "/");
      if (at != std::string::npos) out.insert(fs::path(line.substr(at)).filename().string());
    }
    return out;
  };
  REQUIRE(mapped().empty());
  for (int round = 0; round < 2; ++round) {  // the second start answers the scan from the cache
    INFO("start " << round + 1);
    auto node = edgert::Node::create(cfg.value());
    REQUIRE(node.ok());
    auto& n = *node.value();
    const auto st = n.start();
    REQUIRE(st.ok());
    std::vector<std::string> loaded;
    for (const auto& p : n.plugins()->plugins()) loaded.push_back(p.signature);
    CHECK(loaded == std::vector<std::string>{"threshold"});
    CHECK(mapped() == std::set<std::string>{"threshold.so"});
    const auto doc = nlohmann::json::parse(n.stats_json());
    CHECK(doc["edgert_plugins_loaded"]["series"][0]["value"].get<double>() == 1);
    CHECK(doc["edgert_plugins_unused"]["series"][0]["value"].get<double>() == double(files - 1));
    CHECK(fs::exists(s.dir / "data" / "plugin-scan-cache.json"));
    n.stop();
  }
  CHECK(mapped().empty());  // unloaded with the node
}
