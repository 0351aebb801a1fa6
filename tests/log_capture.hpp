// Captures what the library's "edgert" logger writes, for tests that check log lines.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace edgert::testing {

/// A sink keeping every line (level, text). Thread-safe (spdlog's base_sink mutex).
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  /// The lines logged at exactly `level`, in order.
  std::vector<std::string> at(spdlog::level::level_enum level) {
    std::lock_guard lk(mutex_);
    std::vector<std::string> out;
    for (const auto& [l, text] : lines_) {
      if (l == level) out.push_back(text);
    }
    return out;
  }
  void clear() {
    std::lock_guard lk(mutex_);
    lines_.clear();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    lines_.emplace_back(m.level, std::string(m.payload.data(), m.payload.size()));
  }
  void flush_() override {}

 private:
  std::vector<std::pair<spdlog::level::level_enum, std::string>> lines_;
};

/// Adds a CaptureSink to the "edgert" logger for its lifetime.
struct LogCapture {
  std::shared_ptr<CaptureSink> sink = std::make_shared<CaptureSink>();
  std::shared_ptr<spdlog::logger> logger;
  LogCapture() {
    logger = spdlog::get("edgert");
    if (!logger) logger = spdlog::stderr_color_mt("edgert");
    logger->sinks().push_back(sink);
  }
  ~LogCapture() {
    auto& s = logger->sinks();
    s.erase(std::remove(s.begin(), s.end(), sink), s.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  std::vector<std::string> errors() { return sink->at(spdlog::level::err); }
  std::vector<std::string> warnings() { return sink->at(spdlog::level::warn); }
};

}  // namespace edgert::testing
