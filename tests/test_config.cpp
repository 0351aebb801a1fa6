#include <edgert/config.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

using Catch::Contains;
using Catch::EndsWith;
using Catch::StartsWith;
using edgert::parse_config;

namespace {

edgert::EnvVars env(std::map<std::string, std::string> vars) { return vars; }
const auto no_env = env({});

}  // namespace

TEST_CASE("an empty document gives the defaults", "[config]") {
  auto cfg = parse_config("", "node.yaml", no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.heartbeat_interval_ms == 10000);
  CHECK(cfg->node.id == "edgert-node");
  CHECK(cfg->runtime.task_timeout_ms == 2000);
  CHECK(cfg->streams.empty());
  CHECK(cfg->source == "node.yaml");
}

TEST_CASE("values are read into typed fields", "[config]") {
  auto cfg = parse_config("node:\n  id: cam-7\n  heartbeat_interval_ms: 2500\nruntime:\n  stop_stage_warn_ms: 64\n",
                          "node.yaml", no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.id == "cam-7");
  CHECK(cfg->node.heartbeat_interval_ms == 2500);
  CHECK(cfg->runtime.stop_stage_warn_ms == 64);
}

TEST_CASE("a wrong type names file, line and key", "[config]") {
  const char* text =
      "# comment\n"
      "node:\n"
      "  id: cam\n"
      "  heartbeat_interval_ms: fast\n";
  auto cfg = parse_config(text, "node.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().code() == edgert::ErrorCode::config_error);
  CHECK(cfg.status().message() == "node.yaml:4: node.heartbeat_interval_ms: expected an integer, got 'fast'");
}

TEST_CASE("an unknown key is an error with a suggestion", "[config]") {
  auto cfg = parse_config("node:\n  hearbeat_interval_ms: 2\n", "node.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), Contains("node.yaml:2") && Contains("unknown key 'node.hearbeat_interval_ms'") &&
                                         Contains("did you mean 'heartbeat_interval_ms'"));
  auto sec = parse_config("\n\nruntme:\n  task_timeout_ms: 3\n", "node.yaml", no_env);
  REQUIRE_FALSE(sec.ok());
  CHECK_THAT(sec.status().message(), Contains("node.yaml:3") && Contains("did you mean 'runtime'"));
  auto far = parse_config("zzzzzzzz: 1\n", "node.yaml", no_env);
  REQUIRE_FALSE(far.ok());
  CHECK_THAT(far.status().message(), Contains("known: node, runtime"));
}

TEST_CASE("validation rejects out-of-range values", "[config]") {
  auto cfg = parse_config("runtime:\n  task_timeout_ms: 0\n", "n.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().message() == "n.yaml:2: runtime.task_timeout_ms: expected within [1, 600000], got 0");
  auto lvl = parse_config("node:\n  log_level: loud\n", "n.yaml", no_env);
  REQUIRE_FALSE(lvl.ok());
  CHECK_THAT(lvl.status().message(), Contains("n.yaml:2: node.log_level"));
  auto shape = parse_config("node: [1, 2]\n", "n.yaml", no_env);
  REQUIRE_FALSE(shape.ok());
  CHECK_THAT(shape.status().message(), Contains("n.yaml:1: node: expected a mapping"));
}

TEST_CASE("YAML syntax errors carry the line", "[config]") {
  auto cfg = parse_config("node:\n  id: [unclosed\n", "bad.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), Contains("bad.yaml:") && Contains("YAML syntax error"));
}

TEST_CASE("environment overrides win over the file and are validated", "[config]") {
  auto cfg = parse_config("node:\n  heartbeat_interval_ms: 1000\n", "node.yaml",
                          env({{"EDGERT_NODE_HEARTBEAT_INTERVAL_MS", "250"}, {"EDGERT_NODE_ID", "from-env"}}));
  REQUIRE(cfg.ok());
  CHECK(cfg->node.heartbeat_interval_ms == 250);
  CHECK(cfg->node.id == "from-env");
  auto bad = parse_config("", "node.yaml", env({{"EDGERT_RUNTIME_TASK_TIMEOUT_MS", "many"}}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "environment variable EDGERT_RUNTIME_TASK_TIMEOUT_MS: runtime.task_timeout_ms: expected an integer, got 'many'");
}

TEST_CASE("load_config reads a real file and names a missing one", "[config]") {
  const auto dir = std::filesystem::temp_directory_path() / ("edgert-cfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "node.yaml").string();
  {
    std::ofstream(path) << "node:\n  id: file-node\n";
  }
  auto cfg = edgert::load_config(path, no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.id == "file-node");
  CHECK(cfg->source == path);
  auto missing = edgert::load_config((dir / "nope.yaml").string(), no_env);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == edgert::ErrorCode::not_found);
  CHECK_THAT(missing.status().message(), Contains("nope.yaml"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("the mailbox section: values, and bad words named with the choices", "[config]") {
  auto cfg = parse_config("mailbox:\n  synchronous: full\n  max_messages: 1000\n  quota_policy: evict_oldest\n",
                          "node.yaml", no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->mailbox.synchronous == "full");
  CHECK(cfg->mailbox.max_messages == 1000);
  CHECK(cfg->mailbox.quota_policy == "evict_oldest");
  CHECK(cfg->mailbox.max_bytes == 0);

  auto bad = parse_config("mailbox:\n  quota_policy: drop_newest\n", "node.yaml", no_env);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "node.yaml:2: mailbox.quota_policy: expected one of reject_new, evict_oldest; got 'drop_newest'");
  auto negative = parse_config("mailbox:\n  max_bytes: -5\n", "node.yaml", no_env);
  REQUIRE_FALSE(negative.ok());
  CHECK_THAT(negative.status().message(), Catch::Contains("mailbox.max_bytes: expected >= 0, got -5"));
}

// ---- issue 8, items 7, 8, 12: each test below failed against the previous loader ----

namespace {

std::filesystem::path scratch_dir(const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("edgert-cfg-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::size_t count_lines(const std::string& s) {
  std::size_t n = s.empty() ? 0 : 1;
  for (char c : s) n += c == '\n' ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("a key given twice in one mapping names both lines", "[config]") {
  auto cfg = parse_config("node:\n  data_dir: /srv/a\n  id: x\n  data_dir: /\n", "node.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().message() == "node.yaml:4: node.data_dir: given twice, first at node.yaml:2");
  auto sec = parse_config("node:\n  id: a\nnode:\n  id: b\n", "node.yaml", no_env);
  REQUIRE_FALSE(sec.ok());
  CHECK(sec.status().message() == "node.yaml:3: node: given twice, first at node.yaml:1");
}

TEST_CASE("a config path that is a directory is an error", "[config]") {
  const auto dir = scratch_dir("dir");
  auto cfg = edgert::load_config(dir.string(), no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().code() == edgert::ErrorCode::io_error);
  CHECK_THAT(cfg.status().message(), Contains(dir.string()) && Contains("is a directory"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("an EDGERT_ variable that matches no key is an error with a did-you-mean", "[config]") {
  auto cfg = parse_config("", "node.yaml", env({{"EDGERT_NODE_HEARTBEAT_INTERVALMS", "2"}}));
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().message() ==
        "environment variable EDGERT_NODE_HEARTBEAT_INTERVALMS: matches no configuration key "
        "(did you mean EDGERT_NODE_HEARTBEAT_INTERVAL_MS?)");
  // Variables edgert reads elsewhere are allowed; others outside the prefix are ignored.
  auto fine = parse_config("", "node.yaml",
                           env({{"EDGERT_PLUGIN_PATH", "/opt/p"},
                                {"EDGERT_PLUGIN_SCANNER", "/opt/edgert/libexec/edgert/edgert-plugin-scan"},
                                {"HOME", "/root"}}));
  INFO(fine.status().message());
  CHECK(fine.ok());
}

TEST_CASE("the heartbeat interval is 0 (off) or within [10, 86400000] ms", "[config]") {
  for (const char* bad : {"-1", "1", "9", "86400001", "9223372036854775807", "1.5", ".inf"}) {
    INFO(bad);
    auto cfg = parse_config(std::string("node:\n  heartbeat_interval_ms: ") + bad + "\n", "n.yaml", no_env);
    REQUIRE_FALSE(cfg.ok());
    CHECK_THAT(cfg.status().message(), StartsWith("n.yaml:2: node.heartbeat_interval_ms: "));
  }
  auto small = parse_config("node:\n  heartbeat_interval_ms: 9\n", "n.yaml", no_env);
  CHECK(small.status().message() ==
        "n.yaml:2: node.heartbeat_interval_ms: expected 0 (off) or within [10, 86400000], got 9");
  for (const char* good : {"0", "10", "1000", "86400000"}) {
    INFO(good);
    auto cfg = parse_config(std::string("node:\n  heartbeat_interval_ms: ") + good + "\n", "n.yaml", no_env);
    CHECK(cfg.ok());
  }
  auto from_env = parse_config("", "n.yaml", env({{"EDGERT_NODE_HEARTBEAT_INTERVAL_MS", "5"}}));
  REQUIRE_FALSE(from_env.ok());
  CHECK_THAT(from_env.status().message(), Contains("EDGERT_NODE_HEARTBEAT_INTERVAL_MS"));
}

TEST_CASE("the old heartbeat keys are refused, naming what they became and how to convert", "[config]") {
  auto hz = parse_config("node:\n  id: n\n  heartbeat_hz: 2\n", "n.yaml", no_env);
  REQUIRE_FALSE(hz.ok());
  CHECK(hz.status().code() == edgert::ErrorCode::config_error);
  CHECK_THAT(hz.status().message(), StartsWith("n.yaml:3: node.heartbeat_hz: ") &&
                                        Contains("node.heartbeat_interval_ms") && Contains("1000 / hz"));
  auto s = parse_config("node:\n  heartbeat_s: 10\n", "n.yaml", no_env);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.status().message(), StartsWith("n.yaml:2: node.heartbeat_s: ") &&
                                       Contains("node.heartbeat_interval_ms") && Contains("seconds x 1000"));
  // Both in one file: both reported.
  auto both = parse_config("node:\n  heartbeat_hz: 1\n  heartbeat_s: 10\n", "n.yaml", no_env);
  REQUIRE_FALSE(both.ok());
  CHECK_THAT(both.status().message(), Contains("n.yaml:2: node.heartbeat_hz") && Contains("n.yaml:3: node.heartbeat_s"));
  auto from_env = parse_config("", "n.yaml", env({{"EDGERT_NODE_HEARTBEAT_HZ", "1"}}));
  REQUIRE_FALSE(from_env.ok());
  CHECK_THAT(from_env.status().message(),
             Contains("EDGERT_NODE_HEARTBEAT_HZ") && Contains("node.heartbeat_interval_ms"));
}

TEST_CASE("durations are range-checked in milliseconds", "[config]") {
  auto big = parse_config("runtime:\n  task_timeout_ms: 9223372036854775807\n", "n.yaml", no_env);
  REQUIRE_FALSE(big.ok());
  CHECK(big.status().message() == "n.yaml:2: runtime.task_timeout_ms: expected within [1, 600000], got 9223372036854775807");
  auto zero = parse_config("runtime:\n  stop_stage_warn_ms: 0\n", "n.yaml", no_env);
  REQUIRE_FALSE(zero.ok());
  CHECK_THAT(zero.status().message(), Contains("runtime.stop_stage_warn_ms: expected within [1, 600000]"));
}

TEST_CASE("renamed and removed keys say what they became", "[config]") {
  auto stage = parse_config("runtime:\n  stage_timeout_ms: 100\n", "n.yaml", no_env);
  REQUIRE_FALSE(stage.ok());
  CHECK_THAT(stage.status().message(),
             Contains("n.yaml:2: runtime.stage_timeout_ms: renamed to runtime.stop_stage_warn_ms"));
  auto queue = parse_config("runtime:\n  queue_capacity: 8\n", "n.yaml", no_env);
  REQUIRE_FALSE(queue.ok());
  CHECK_THAT(queue.status().message(),
             Contains("n.yaml:2: runtime.queue_capacity: removed") && Contains("max_inputs_queue_size"));
  auto env_old = parse_config("", "n.yaml", env({{"EDGERT_RUNTIME_QUEUE_CAPACITY", "8"}}));
  REQUIRE_FALSE(env_old.ok());
  CHECK_THAT(env_old.status().message(), Contains("EDGERT_RUNTIME_QUEUE_CAPACITY") && Contains("removed"));
  auto join = parse_config("runtime:\n  worker_join_timeout_ms: 2000\n", "n.yaml", no_env);
  REQUIRE_FALSE(join.ok());
  CHECK_THAT(join.status().message(), Contains("n.yaml:2: runtime.worker_join_timeout_ms: removed"));
}

TEST_CASE("every error of a file is reported in one run, at most 20", "[config]") {
  auto three = parse_config("node:\n  heartbeat_interval_ms: fast\n  log_level: loud\nmailbox:\n  max_bytes: -1\n",
                            "n.yaml", no_env);
  REQUIRE_FALSE(three.ok());
  CHECK(three.status().message() ==
        "n.yaml:2: node.heartbeat_interval_ms: expected an integer, got 'fast'\n"
        "n.yaml:3: node.log_level: expected one of trace, debug, info, warning, error, critical, off; got 'loud'\n"
        "n.yaml:5: mailbox.max_bytes: expected >= 0, got -1");
  std::string many = "node:\n";
  for (int i = 0; i < 25; ++i) many += "  bad_key_" + std::to_string(i) + ": 1\n";
  auto capped = parse_config(many, "n.yaml", no_env);
  REQUIRE_FALSE(capped.ok());
  CHECK(count_lines(capped.status().message()) == 21);
  CHECK_THAT(capped.status().message(), Contains("n.yaml:21: unknown key 'node.bad_key_19'") &&
                                            EndsWith("\n... and 5 more"));
}

TEST_CASE("relative data_dir and plugin paths resolve against the config file's folder", "[config]") {
  const auto dir = scratch_dir("rel");
  std::filesystem::create_directories(dir / "etc");
  const auto path = dir / "etc" / "node.yaml";
  std::ofstream(path) << "node:\n  data_dir: state\nplugins:\n  paths: [plugins, /abs/p]\n";
  auto cfg = edgert::load_config(path.string(), no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.data_dir == (dir / "etc" / "state").string());
  REQUIRE(cfg->plugins.paths.size() == 2);
  CHECK(cfg->plugins.paths[0] == (dir / "etc" / "plugins").string());
  CHECK(cfg->plugins.paths[1] == "/abs/p");
  std::filesystem::remove_all(dir);
}

TEST_CASE("a YAML nesting-depth error says so", "[config]") {
  std::string deep = "node:\n  id: " + std::string(3000, '[') + std::string(3000, ']') + "\n";
  auto cfg = parse_config(deep, "deep.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), Contains("deep.yaml:2: ") && Contains("nested too deeply"));
  CHECK_THAT(cfg.status().message(), !Contains("bad file"));
}

// ---- streams: lists of mappings and free-form plugin objects --------------------------

TEST_CASE("tests/data/bad_type.yaml keeps the message edgert-node prints", "[config]") {
  auto cfg = edgert::load_config(EDGERT_TEST_DATA_DIR "/bad_type.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), EndsWith("bad_type.yaml:3: node.heartbeat_interval_ms: expected an integer, got 'fast'"));
}

TEST_CASE("streams parse into typed structs with free-form instance objects", "[config]") {
  auto cfg = edgert::load_config(EDGERT_TEST_DATA_DIR "/streams.yaml", no_env);
  INFO(cfg.status().message());
  REQUIRE(cfg.ok());
  REQUIRE(cfg->streams.size() == 2);
  const auto& cam = cfg->streams[0];
  CHECK(cam.name == "cam0");
  CHECK_THAT(cam.where, EndsWith("streams.yaml:5"));
  REQUIRE(cam.capture);
  CHECK_FALSE(cam.trigger);
  CHECK(cam.capture->type == "video");
  CHECK(cam.capture->reconnectable == edgert::Reconnect::no);
  CHECK(cam.capture->max_retries == 3);
  CHECK(cam.capture->config.json == R"({"url":"/path/to/file.avi"})");
  REQUIRE(cam.plugins.size() == 2);
  CHECK(cam.plugins[0].signature == "motion_detector");
  const auto& m1 = cam.plugins[0].instances.at(0);
  CHECK(m1.instance_id == "m1");
  CHECK(m1.max_inputs_queue_size == 16);
  CHECK(m1.config.json == R"({"threshold":25})");
  CHECK(m1.config.path == "streams[0].plugins[0].instances[0]");
  const auto& z1 = cam.plugins[1].instances.at(0);
  CHECK(z1.config.json ==
        R"({"extra":null,"label":"25","ratio":0.5,"threshold":"high","zones":[{"name":"door","points":[[0,0],[10,10]]}]})");
  CHECK(z1.max_inputs_queue_size == 16);  // the default
  const auto& z2 = cam.plugins[1].instances.at(1);
  CHECK(z2.disabled);
  CHECK(z2.allow_empty_inputs);
  CHECK(z2.config.json == "{}");
  const auto& tick = cfg->streams[1];
  REQUIRE(tick.trigger);
  CHECK_FALSE(tick.capture);
  CHECK(tick.trigger->type == "interval");
  CHECK(tick.trigger->period_ms == 500);
  CHECK(tick.plugins.at(0).instances.at(0).instance_id == "r1");
}

TEST_CASE("a free-form object reports file:line for any of its values", "[config]") {
  auto cfg = edgert::load_config(EDGERT_TEST_DATA_DIR "/streams.yaml", no_env);
  REQUIRE(cfg.ok());
  const auto& z1 = cfg->streams.at(0).plugins.at(1).instances.at(0).config;
  // What the pipeline will do once the plugin's schema says threshold is a number:
  CHECK_THAT(z1.error_message("/threshold", "expected a number"),
             EndsWith("streams.yaml:24: streams[0].plugins[1].instances[0].threshold: expected a number"));
  CHECK_THAT(z1.where("/zones/0/name"), EndsWith("streams.yaml:26"));
  CHECK(z1.key_path("/zones/0/points/1") == "streams[0].plugins[1].instances[0].zones[0].points[1]");
  CHECK_THAT(z1.where("/ratio"), EndsWith("streams.yaml:28"));
  // Unknown members fall back to the nearest ancestor, the object itself last.
  CHECK_THAT(z1.where("/ratio/nope"), EndsWith("streams.yaml:28"));
  CHECK_THAT(z1.where("/missing"), EndsWith("streams.yaml:23"));
  CHECK(z1.key_path("/a~1b~0c") == "streams[0].plugins[1].instances[0].a/b~c");
  edgert::ConfigObject by_hand;
  CHECK(by_hand.where("/x").empty());
  CHECK(by_hand.error_message("/x", "bad") == "x: bad");
}

TEST_CASE("errors inside the streams lists name file:line and the full key path", "[config]") {
  auto cfg = edgert::load_config(EDGERT_TEST_DATA_DIR "/bad_streams.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  const std::string msg = cfg.status().message();
  const std::string f = EDGERT_TEST_DATA_DIR "/bad_streams.yaml";
  INFO(msg);
  CHECK_THAT(msg, Contains(f + ":6: streams[0].capture.reconnectable: expected one of yes, no, keepalive; got 'sometimes'"));
  CHECK_THAT(msg, Contains(f + ":8: streams[0].capture.url: given twice, first at " + f + ":7"));
  CHECK_THAT(msg, Contains(f + ":13: streams[0].plugins[0].instances[0].max_inputs_queue_size: expected an integer, got 'lots'"));
  CHECK_THAT(msg, Contains(f + ":14: streams[0].plugins[0].instances[0].threshold: expected a finite number, got '.nan'"));
  CHECK_THAT(msg, Contains(f + ":16: streams[0].plugins[0].instances[1].process_delay: expected within [0, 3600], got -1"));
  CHECK_THAT(msg, Contains(f + ":15: streams[0].plugins[0].instances[1].instance_id: 'm1' already used in this stream at " + f + ":12"));
  CHECK_THAT(msg, Contains(f + ":17: streams[0].plugins[1].signature: must not be empty"));
  CHECK_THAT(msg, Contains(f + ":18: streams[0].plugins[1].instances: must list at least one instance"));
  CHECK_THAT(msg, Contains(f + ":20: streams[1].trigger.period_ms: expected within [1, 86400000], got 0"));
  CHECK_THAT(msg, !Contains("streams[1].trigger: a stream has"));  // capture + trigger: one capture per trigger
  CHECK_THAT(msg, Contains(f + ":23: streams[1].plugins[0].signature: required, not given"));
  CHECK_THAT(msg, Contains(f + ":25: streams[1].plugins[0].instances[1].instance_id: required, not given"));
  CHECK_THAT(msg, Contains(f + ":19: streams[1].name: 'cam0' already used by the stream at " + f + ":3"));
  CHECK_THAT(msg, Contains(f + ":26: streams[2].name: required, not given"));
  // A misspelt host key is kept as plugin config (the plugin's schema rejects it later).
  CHECK_THAT(msg, !Contains("max_input_queue_size"));
  CHECK(msg.find('\n') != std::string::npos);
}

TEST_CASE("free-form objects: duplicate keys, depth and non-finite numbers are refused", "[config]") {
  const std::string head = "streams:\n  - name: s\n    trigger: {type: interval}\n    plugins:\n"
                           "      - signature: p\n        instances:\n          - instance_id: i\n";
  auto dup = parse_config(head + "            a: {b: 1, b: 2}\n", "n.yaml", no_env);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.status().message() ==
        "n.yaml:8: streams[0].plugins[0].instances[0].a.b: given twice, first at n.yaml:8");
  std::string nest = "x";
  for (int i = 0; i < 40; ++i) nest = "[" + nest + "]";
  auto deep = parse_config(head + "            a: " + nest + "\n", "n.yaml", no_env);
  REQUIRE_FALSE(deep.ok());
  CHECK_THAT(deep.status().message(), Contains("n.yaml:8: streams[0].plugins[0].instances[0].a") &&
                                          Contains("nested deeper than 32 levels"));
  auto inf = parse_config(head + "            a: [1, -.inf]\n", "n.yaml", no_env);
  REQUIRE_FALSE(inf.ok());
  CHECK(inf.status().message() ==
        "n.yaml:8: streams[0].plugins[0].instances[0].a[1]: expected a finite number, got '-.inf'");
  auto fine = parse_config(head + "            a: [1, '-.inf', 1e3, 0x10, 2.5e-3]\n", "n.yaml", no_env);
  REQUIRE(fine.ok());
  CHECK(fine->streams[0].plugins[0].instances[0].config.json == R"({"a":[1,"-.inf",1000.0,"0x10",0.0025]})");
}

TEST_CASE("streams cannot be set from the environment, and say so", "[config]") {
  auto cfg = parse_config("", "n.yaml", env({{"EDGERT_STREAMS", "[]"}}));
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), StartsWith("environment variable EDGERT_STREAMS: matches no configuration key"));
}

TEST_CASE("the example node.yaml is valid and shows the defaults", "[config]") {
  auto cfg = edgert::load_config(EDGERT_EXAMPLE_CONFIG, no_env);
  INFO(cfg.status().message());
  REQUIRE(cfg.ok());
  const edgert::Config defaults;
  CHECK(cfg->runtime.stop_stage_warn_ms == defaults.runtime.stop_stage_warn_ms);
  CHECK(cfg->runtime.task_timeout_ms == defaults.runtime.task_timeout_ms);
  CHECK(cfg->mailbox.wal_limit_bytes == defaults.mailbox.wal_limit_bytes);
  CHECK(cfg->node.heartbeat_interval_ms == defaults.node.heartbeat_interval_ms);
}
