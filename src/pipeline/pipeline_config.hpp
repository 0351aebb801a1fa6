// Key table of one `streams` item, and the checks across streams
// (src/pipeline/pipeline_config.cpp).
#pragma once

#include "config/schema.hpp"

#include <edgert/restart_config.hpp>
#include <edgert/stream_config.hpp>

#include <vector>

namespace edgert::config {

const Table<StreamConfig>& stream_table();
const Table<PipelineSection>& pipeline_table();
/// `health.restart` (src/pipeline/restart_config.cpp).
const Table<RestartSection>& restart_table();
/// Checks across streams (unique names).
void check_streams(const std::vector<StreamConfig>& streams, Context& ctx);

}  // namespace edgert::config
