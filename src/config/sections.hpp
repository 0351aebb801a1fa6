// The key table of every configuration section. Each is defined in its module's
// folder next to the code that uses it; src/config/config.cpp assembles them.
#pragma once

#include "config/schema.hpp"

#include <edgert/mailbox_config.hpp>
#include <edgert/node_config.hpp>
#include <edgert/plugins_config.hpp>
#include <edgert/stream_config.hpp>

namespace edgert::config {

const Table<NodeSection>& node_table();            // src/node/node_config.cpp
const Table<RuntimeSection>& runtime_table();      // src/node/node_config.cpp
const Table<PluginsSection>& plugins_table();      // src/plugins/plugins_config.cpp
const Table<MailboxSection>& mailbox_table();      // src/mailbox/mailbox_config.cpp
const Table<StreamConfig>& stream_table();         // src/pipeline/pipeline_config.cpp
/// Checks across streams (unique names); src/pipeline/pipeline_config.cpp.
void check_streams(const std::vector<StreamConfig>& streams, Context& ctx);

}  // namespace edgert::config
