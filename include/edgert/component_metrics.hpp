// Adapters: figures that workers, the mailbox and plugin instances already keep,
// read into a MetricsRegistry at snapshot time (nothing is counted twice).
// Each returns a registration; the component must outlive it, so declare the
// registration after the component (or reset() it in the owner's destructor).
// All: any thread; take the registry's lock; throw std::invalid_argument as
// MetricsRegistry::register_collector does (e.g. the same component name twice).
// For DropHeadQueue see edgert/queue_metrics.hpp.
#pragma once

#include <edgert/export.hpp>
#include <edgert/metrics.hpp>

#include <string_view>

namespace edgert {

class BaseWorker;
class Mailbox;
class PluginInstance;

/// Labelled {worker="<worker.name()>"}: edgert_worker_state (gauge: 0 idle, 1 running,
/// 2 stopping, 3 stopped, 4 failed), edgert_worker_failures_total (counter).
[[nodiscard]] EDGERT_API MetricsRegistration register_worker_metrics(MetricsRegistry& registry, const BaseWorker& worker);

/// Labelled {mailbox="<name>"}: every MailboxCounters field as
/// edgert_mailbox_<field>_total, and the gauges edgert_mailbox_outbox_rows,
/// edgert_mailbox_outbox_bytes, edgert_mailbox_inbox_rows, edgert_mailbox_inbox_bytes,
/// edgert_mailbox_inbox_unacked, edgert_mailbox_oldest_pending_age_seconds.
/// A snapshot calls mailbox.stats() once (a few SQLite reads); when that fails the
/// series read NaN and edgert_metrics_collector_errors_total counts it.
[[nodiscard]] EDGERT_API MetricsRegistration register_mailbox_metrics(MetricsRegistry& registry, std::string_view name,
                                                        Mailbox& mailbox);

/// Labelled {plugin="<signature>", instance="<instance.name()>"}:
/// edgert_plugin_errors_total (counter; calls that returned an error).
[[nodiscard]] EDGERT_API MetricsRegistration register_plugin_metrics(MetricsRegistry& registry, const PluginInstance& instance);

}  // namespace edgert
