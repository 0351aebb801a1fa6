#include <edgert/component_metrics.hpp>
#include <edgert/plugin_host.hpp>
namespace edgert {
MetricsRegistration register_plugin_metrics(MetricsRegistry&, const PluginInstance&) { return {}; }
}
