#include <edgert/config.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

using Catch::Contains;
using edgert::parse_config;

namespace {

edgert::EnvLookup env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}
const auto no_env = env({});

}  // namespace

TEST_CASE("an empty document gives the defaults", "[config]") {
  auto cfg = parse_config("", "node.yaml", no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.heartbeat_hz == 1.0);
  CHECK(cfg->node.id == "edgert-node");
  CHECK(cfg->runtime.queue_capacity == 16);
  CHECK(cfg->source == "node.yaml");
}

TEST_CASE("values are read into typed fields", "[config]") {
  auto cfg = parse_config("node:\n  id: cam-7\n  heartbeat_hz: 2.5\nruntime:\n  queue_capacity: 64\n",
                          "node.yaml", no_env);
  REQUIRE(cfg.ok());
  CHECK(cfg->node.id == "cam-7");
  CHECK(cfg->node.heartbeat_hz == 2.5);
  CHECK(cfg->runtime.queue_capacity == 64);
}

TEST_CASE("a wrong type names file, line and key", "[config]") {
  const char* text =
      "# comment\n"
      "node:\n"
      "  id: cam\n"
      "  heartbeat_hz: fast\n";
  auto cfg = parse_config(text, "node.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().code() == edgert::ErrorCode::config_error);
  CHECK(cfg.status().message() == "node.yaml:4: node.heartbeat_hz: expected a number, got 'fast'");
}

TEST_CASE("an unknown key is an error with a suggestion", "[config]") {
  auto cfg = parse_config("node:\n  hearbeat_hz: 2\n", "node.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK_THAT(cfg.status().message(), Contains("node.yaml:2") && Contains("unknown key 'node.hearbeat_hz'") &&
                                         Contains("did you mean 'heartbeat_hz'"));
  auto sec = parse_config("\n\nruntme:\n  queue_capacity: 3\n", "node.yaml", no_env);
  REQUIRE_FALSE(sec.ok());
  CHECK_THAT(sec.status().message(), Contains("node.yaml:3") && Contains("did you mean 'runtime'"));
  auto far = parse_config("zzzzzzzz: 1\n", "node.yaml", no_env);
  REQUIRE_FALSE(far.ok());
  CHECK_THAT(far.status().message(), Contains("known: node, runtime"));
}

TEST_CASE("validation rejects out-of-range values", "[config]") {
  auto cfg = parse_config("runtime:\n  queue_capacity: 0\n", "n.yaml", no_env);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.status().message() == "n.yaml:2: runtime.queue_capacity: must be > 0");
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
  auto cfg = parse_config("node:\n  heartbeat_hz: 1\n", "node.yaml",
                          env({{"EDGERT_NODE_HEARTBEAT_HZ", "4"}, {"EDGERT_NODE_ID", "from-env"}}));
  REQUIRE(cfg.ok());
  CHECK(cfg->node.heartbeat_hz == 4.0);
  CHECK(cfg->node.id == "from-env");
  auto bad = parse_config("", "node.yaml", env({{"EDGERT_RUNTIME_QUEUE_CAPACITY", "many"}}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "environment variable EDGERT_RUNTIME_QUEUE_CAPACITY: runtime.queue_capacity: expected an integer, got 'many'");
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
                          "node.yaml");
  REQUIRE(cfg.ok());
  CHECK(cfg->mailbox.synchronous == "full");
  CHECK(cfg->mailbox.max_messages == 1000);
  CHECK(cfg->mailbox.quota_policy == "evict_oldest");
  CHECK(cfg->mailbox.max_bytes == 0);

  auto bad = parse_config("mailbox:\n  quota_policy: drop_newest\n", "node.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "node.yaml:2: mailbox.quota_policy: expected one of reject_new, evict_oldest; got 'drop_newest'");
  auto negative = parse_config("mailbox:\n  max_bytes: -5\n", "node.yaml");
  REQUIRE_FALSE(negative.ok());
  CHECK_THAT(negative.status().message(), Catch::Contains("mailbox.max_bytes: must be >= 0"));
}
