// Adapter: a ComponentRegistry's figures, read into a MetricsRegistry at snapshot time
// (the pattern of edgert/component_metrics.hpp). The registry must outlive the
// returned registration: declare the registration after the registry.
#pragma once

#include <edgert/component_registry.hpp>
#include <edgert/export.hpp>
#include <edgert/metrics.hpp>

namespace edgert {

/// Any thread; takes the metrics registry's lock; throws std::invalid_argument as
/// MetricsRegistry::register_collector does (e.g. registered twice). Reports:
///  - edgert_components{status="<status>"} (gauge): rows per status, all ten statuses;
///  - edgert_registry_sweeps_total, edgert_registry_transitions_total,
///    edgert_registry_listener_errors_total, edgert_registry_recreated_total (counters).
/// A snapshot takes the component registry's mutex once (counts()).
/// Per-component series (edgert_component_status{component,kind},
/// edgert_component_restarts_total) are not here: a collector's series are fixed when
/// it registers, and rows come and go (docs/registry.md, "Metrics").
[[nodiscard]] EDGERT_API MetricsRegistration register_registry_metrics(MetricsRegistry& metrics,
                                                                       const ComponentRegistry& registry);

}  // namespace edgert
