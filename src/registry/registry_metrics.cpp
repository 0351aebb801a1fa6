// Adapter: a ComponentRegistry's counts per status and its own counters.
#include <edgert/registry_metrics.hpp>

#include <span>
#include <string>
#include <vector>

namespace edgert {

MetricsRegistration register_registry_metrics(MetricsRegistry& metrics, const ComponentRegistry& registry) {
  std::vector<SeriesSpec> series;
  for (std::size_t i = 0; i < kComponentStatusCount; ++i) {
    series.push_back({"edgert_components",
                      Labels{{"status", std::string(to_string(static_cast<ComponentStatus>(i)))}},
                      "Registered components per status.", MetricType::gauge});
  }
  series.push_back({"edgert_registry_sweeps_total", {}, "Sweeps of the component registry.", MetricType::counter});
  series.push_back({"edgert_registry_transitions_total", {}, "Component status transitions (including new rows).",
                    MetricType::counter});
  series.push_back({"edgert_registry_listener_errors_total", {}, "Registry listener calls that threw.",
                    MetricType::counter});
  series.push_back({"edgert_registry_recreated_total", {}, "Removed rows re-created from a heartbeat.",
                    MetricType::counter});
  return metrics.register_collector(std::move(series), [&registry](std::span<double> out) {
    const ComponentCounts c = registry.counts();
    for (std::size_t i = 0; i < kComponentStatusCount; ++i) out[i] = static_cast<double>(c[i]);
    const RegistryStats s = registry.stats();
    out[kComponentStatusCount + 0] = static_cast<double>(s.sweeps);
    out[kComponentStatusCount + 1] = static_cast<double>(s.transitions);
    out[kComponentStatusCount + 2] = static_cast<double>(s.listener_errors);
    out[kComponentStatusCount + 3] = static_cast<double>(s.recreated);
  });
}

}  // namespace edgert
