// The `health:` configuration section (docs/configuration.md, "health").
#pragma once

#include <edgert/restart_config.hpp>

namespace edgert {

struct HealthSection {
  RestartSection restart;  ///< `health.restart`: the supervisor's policies
};

}  // namespace edgert
