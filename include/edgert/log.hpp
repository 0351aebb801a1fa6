// Process-wide logging controls. edgert logs through spdlog to stderr under the
// logger name "edgert"; a host that has its own spdlog setup may replace the sink.
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <string_view>

namespace edgert {

/// Sets the minimum level: trace, debug, info, warning (or warn), error, critical, off.
/// Any thread; never blocks. An unknown name returns invalid_argument and keeps the level.
EDGERT_API Status set_log_level(std::string_view level);

/// The current minimum level's name. Any thread; never blocks.
EDGERT_API std::string_view log_level() noexcept;

}  // namespace edgert
