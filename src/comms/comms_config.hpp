// Key table of the `comms` section (src/comms/comms_config.cpp).
#pragma once

#include "config/schema.hpp"

#include <edgert/comms_config.hpp>

namespace edgert::config {

const Table<CommsSection>& comms_table();

}  // namespace edgert::config
