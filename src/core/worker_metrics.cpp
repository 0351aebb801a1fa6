// Adapter: a BaseWorker's state and failure count, read at snapshot time.
#include <edgert/base_worker.hpp>
#include <edgert/component_metrics.hpp>

#include <span>

namespace edgert {

MetricsRegistration register_worker_metrics(MetricsRegistry& registry, const BaseWorker& worker) {
  const Labels l{{"worker", worker.name()}};
  return registry.register_collector(
      {
          {"edgert_worker_state", l, "Worker state: 0 idle, 1 running, 2 stopping, 3 stopped, 4 failed.",
           MetricType::gauge},
          {"edgert_worker_failures_total", l, "Times run() threw or no thread could be created.", MetricType::counter},
      },
      [&worker](std::span<double> out) {
        out[0] = static_cast<double>(static_cast<int>(worker.state()));
        out[1] = static_cast<double>(worker.failures());
      });
}

}  // namespace edgert
