// Adapter: a plugin instance's error count, read at snapshot time.
#include <edgert/component_metrics.hpp>
#include <edgert/plugin_host.hpp>

#include <span>

namespace edgert {

MetricsRegistration register_plugin_metrics(MetricsRegistry& registry, const PluginInstance& instance) {
  const Labels l{{"plugin", instance.plugin().signature}, {"instance", instance.name()}};
  return registry.register_collector(
      {{"edgert_plugin_errors_total", l,
        "Plugin calls that returned an error, plus host-service calls the host refused.", MetricType::counter}},
      [&instance](std::span<double> out) { out[0] = static_cast<double>(instance.errors()); });
}

}  // namespace edgert
