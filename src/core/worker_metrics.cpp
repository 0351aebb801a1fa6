#include <edgert/component_metrics.hpp>
#include <edgert/base_worker.hpp>
namespace edgert {
MetricsRegistration register_worker_metrics(MetricsRegistry&, const BaseWorker&) { return {}; }
}
