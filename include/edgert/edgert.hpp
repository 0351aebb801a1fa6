// Umbrella header: everything a host application needs from libedgert.
// Plugin authors include <edgert/plugin_abi.h> (C) or <edgert/plugin.hpp> instead.
#pragma once

#include <edgert/base_worker.hpp>
#include <edgert/config.hpp>
#include <edgert/drophead_queue.hpp>
#include <edgert/export.hpp>
#include <edgert/log.hpp>
#include <edgert/status.hpp>
#include <edgert/system_runtime.hpp>
#include <edgert/version.hpp>
#include <edgert/frame.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/component_metrics.hpp>
#include <edgert/component_registry.hpp>
#include <edgert/registry_metrics.hpp>
#include <edgert/metrics.hpp>
#include <edgert/node.hpp>
#include <edgert/node_status.hpp>
#include <edgert/queue_metrics.hpp>
