#include "core/log.hpp"

#include <edgert/log.hpp>
#include <edgert/version.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace edgert {
namespace detail {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("edgert")) return existing;  // the host set one up
    auto l = spdlog::stderr_color_mt("edgert");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%t] %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *logger;
}

}  // namespace detail

Status set_log_level(std::string_view level) {
  std::string name(level);
  if (name == "warning") name = "warn";
  if (name == "critical" || name == "fatal") name = "critical";
  const auto lvl = spdlog::level::from_str(name);
  // from_str maps unknown names to `off`; only accept `off` when asked for it.
  if (lvl == spdlog::level::off && name != "off") {
    return {ErrorCode::invalid_argument,
            "unknown log level '" + std::string(level) +
                "' (expected trace, debug, info, warning, error, critical or off)"};
  }
  detail::log().set_level(lvl);
  return {};
}

std::string_view log_level() noexcept {
  const auto sv = spdlog::level::to_string_view(detail::log().level());
  return {sv.data(), sv.size()};
}

const char* version_string() noexcept { return EDGERT_VERSION_STRING; }

}  // namespace edgert
