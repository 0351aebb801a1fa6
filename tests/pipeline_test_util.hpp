// Shared by the pipeline tests: a node configuration around a `streams:` list, with the
// pl_source/pl_probe test plugins (EDGERT_PIPELINE_PLUGIN_DIR) on the search path.
#pragma once

#include <edgert/config.hpp>
#include <edgert/node.hpp>

#include "scratch_dir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace edgert::testing {

/// node (heartbeat off, data_dir under `dir`), plugins, then `extra` sections, then `streams`.
inline std::string pipeline_yaml(const std::filesystem::path& dir, const std::string& streams,
                                 const std::string& extra = "") {
  return "node: {id: pipe-test, data_dir: " + (dir / "data").string() + ", heartbeat_interval_ms: 0}\n" +
         "plugins: {paths: [" + std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "]}\n" + extra + "streams:\n" + streams;
}

/// A created (not started) node; fails the test with the configuration's errors.
inline std::unique_ptr<Node> make_pipeline_node(const std::string& yaml) {
  auto cfg = parse_config(yaml, "test.yaml", {});
  if (!cfg.ok()) FAIL(cfg.status().message());
  auto made = Node::create(std::move(cfg).value());
  REQUIRE(made.ok());
  return std::move(made).value();
}

}  // namespace edgert::testing
