// Key table of the `plugins` section (src/plugins/plugins_config.cpp).
#pragma once

#include "config/schema.hpp"

#include <edgert/plugins_config.hpp>

namespace edgert::config {

const Table<PluginsSection>& plugins_table();

}  // namespace edgert::config
