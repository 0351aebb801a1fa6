// Adapter: a DropHeadQueue's counters, read into a MetricsRegistry at snapshot time.
#pragma once

#include <edgert/drophead_queue.hpp>
#include <edgert/metrics.hpp>

#include <span>
#include <string>
#include <string_view>

namespace edgert {

/// Any thread; takes the registry's lock. Reports, labelled {queue="<queue_name>"}:
///   edgert_queue_pushed_total, edgert_queue_popped_total, edgert_queue_dropped_total
///   (counters) and edgert_queue_size, edgert_queue_high_water, edgert_queue_capacity
///   (gauges), all read from queue.counters() when a snapshot is taken.
/// `queue` must outlive the returned registration: destroy the registration first
/// (declare it after the queue). Throws std::invalid_argument as
/// MetricsRegistry::register_collector does (e.g. the same queue name twice).
template <class T>
[[nodiscard]] MetricsRegistration register_queue_metrics(MetricsRegistry& registry, std::string_view queue_name,
                                                         const DropHeadQueue<T>& queue) {
  const Labels l{{"queue", std::string(queue_name)}};
  return registry.register_collector(
      {
          {"edgert_queue_pushed_total", l, "Items the queue accepted (including ones later dropped).",
           MetricType::counter},
          {"edgert_queue_popped_total", l, "Items taken out by consumers or drains.", MetricType::counter},
          {"edgert_queue_dropped_total", l, "Items handed to the overflow callback.", MetricType::counter},
          {"edgert_queue_size", l, "Items queued now.", MetricType::gauge},
          {"edgert_queue_high_water", l, "Largest size seen after a push.", MetricType::gauge},
          {"edgert_queue_capacity", l, "Configured capacity.", MetricType::gauge},
      },
      [&queue](std::span<double> out) {
        const QueueCounters c = queue.counters();
        out[0] = static_cast<double>(c.pushed);
        out[1] = static_cast<double>(c.popped);
        out[2] = static_cast<double>(c.dropped);
        out[3] = static_cast<double>(c.size);
        out[4] = static_cast<double>(c.high_water);
        out[5] = static_cast<double>(queue.capacity());
      });
}

}  // namespace edgert
