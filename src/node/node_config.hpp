// Key tables of the `node` and `runtime` sections (src/node/node_config.cpp).
#pragma once

#include "config/schema.hpp"

#include <edgert/health_config.hpp>
#include <edgert/node_config.hpp>

namespace edgert::config {

const Table<NodeSection>& node_table();
const Table<RuntimeSection>& runtime_table();
const Table<HealthSection>& health_table();

}  // namespace edgert::config
