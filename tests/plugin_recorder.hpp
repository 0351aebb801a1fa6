// A PluginSink that keeps what instances emit (payload type, parsed JSON), for tests.
#pragma once

#include <edgert/plugin_host.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgert::testing {

/// Thread-safe: plugins may emit from any thread. Lock `mu` to read `emitted` directly.
struct Recorder : PluginSink {
  std::mutex mu;
  std::vector<std::pair<std::string, nlohmann::json>> emitted;
  void on_emit(const std::string&, std::string_view type, std::string_view json) override {
    std::lock_guard lk(mu);
    emitted.emplace_back(std::string(type), nlohmann::json::parse(json));
  }
  std::size_t size() {
    std::lock_guard lk(mu);
    return emitted.size();
  }
  /// The last payload, or null when nothing was emitted.
  nlohmann::json last() {
    std::lock_guard lk(mu);
    return emitted.empty() ? nlohmann::json() : emitted.back().second;
  }
};

}  // namespace edgert::testing
