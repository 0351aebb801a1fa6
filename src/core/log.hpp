// Internal: the "edgert" spdlog logger. Never include from a public header.
#pragma once

#include <spdlog/spdlog.h>

namespace edgert::detail {

/// The process-wide logger (stderr). Any thread; created on first use.
spdlog::logger& log();

}  // namespace edgert::detail
