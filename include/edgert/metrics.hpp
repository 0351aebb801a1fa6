// One metrics model: counters, gauges and latency histograms, named and labelled in
// Prometheus style (edgert_queue_dropped_total{queue="cam0/motion/m1"}), rendered
// from one Snapshot (edgert/metrics_snapshot.hpp). See docs/metrics.md.
//
// Two ways to feed it:
//  - instruments the registry owns (counter(), gauge(), histogram()): the component
//    keeps the returned reference and records into it on its hot path;
//  - collectors (register_collector()): components that already keep their own
//    figures (DropHeadQueue::counters(), Mailbox::stats()) are read at snapshot time
//    instead of being counted twice. A collector is unregistered when the returned
//    MetricsRegistration is destroyed, and a snapshot never calls a collector after
//    its registration's destructor has returned.
//
// Recording (Counter::add, Gauge::set, Histogram::record) is lock-free and
// allocation-free: relaxed atomic operations on cache-line-aligned words. Values
// written by one thread are visible to a snapshot taken later by another, but a
// snapshot taken while recording goes on is not atomic across series (or across the
// buckets and sum of one histogram).
#pragma once

#include <edgert/export.hpp>
#include <edgert/metrics_snapshot.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

/// A monotonically increasing count. Name it *_total.
class alignas(64) Counter {
 public:
  /// Any thread; never blocks; lock-free, no allocation.
  void add(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  /// Any thread; never blocks.
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

/// A value that goes up and down (sizes, states, ages).
class alignas(64) Gauge {
 public:
  /// Any thread; never blocks; lock-free, no allocation.
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  /// Any thread; never blocks (a compare-exchange loop under contention).
  void add(double d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  /// Any thread; never blocks.
  double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

/// A latency distribution over the fixed buckets of histogram_bucket(). Name it
/// *_seconds: renderers write seconds although values are recorded in nanoseconds.
class alignas(64) Histogram {
 public:
  /// Any thread; never blocks; lock-free, no allocation. Negative durations count as 0.
  void record(std::chrono::nanoseconds d) noexcept {
    record_ns(d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count()));
  }
  /// Any thread; never blocks; lock-free, no allocation.
  void record_ns(std::uint64_t ns) noexcept {
    buckets_[histogram_bucket(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  /// Any thread; never blocks. Not atomic with concurrent record() calls.
  HistogramData data() const noexcept {
    HistogramData d;
    d.buckets.resize(kHistogramBuckets);
    for (std::size_t i = 0; i < kHistogramBuckets; ++i) {
      d.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      d.count += d.buckets[i];
    }
    d.sum_ns = sum_ns_.load(std::memory_order_relaxed);
    return d;
  }

 private:
  std::array<std::atomic<std::uint64_t>, kHistogramBuckets> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// Declares one series a collector reports (counter or gauge only).
struct SeriesSpec {
  std::string name;
  Labels labels;
  std::string help;
  MetricType type = MetricType::gauge;
};

/// Fills one value per declared series, in declaration order. Runs on the thread
/// calling snapshot(), under the registry's lock: it must not call the registry and
/// should not block for long. An exception it throws is caught: its series read NaN
/// and edgert_metrics_collector_errors_total counts it.
using CollectFn = std::function<void(std::span<double> out)>;

/// Declares a whole family a family collector reports (counter or gauge only): its
/// series (label sets) are whatever the collector produces at each snapshot, so rows
/// that come and go (components, connections) need no registration of their own.
struct FamilySpec {
  std::string name;
  std::string help;
  MetricType type = MetricType::gauge;
};

/// One series a family collector reports: `family` indexes its FamilySpec list.
struct FamilySample {
  std::size_t family = 0;
  Labels labels;
  double value = 0;
};

/// Appends this snapshot's series to `out`. Same thread and lock rules as CollectFn.
/// A sample with an out-of-range family, invalid labels or labels already produced
/// this snapshot is skipped and counted in edgert_metrics_collector_errors_total; an
/// exception drops all its samples of this snapshot and is counted the same way.
using FamilyCollectFn = std::function<void(std::vector<FamilySample>& out)>;

namespace detail {
struct MetricsState;
}

/// Keeps a collector registered; destroying or reset()ting it unregisters it.
/// Move-only. May outlive the registry (it then does nothing).
class EDGERT_API MetricsRegistration {
 public:
  MetricsRegistration() = default;
  MetricsRegistration(MetricsRegistration&& other) noexcept;
  MetricsRegistration& operator=(MetricsRegistration&& other) noexcept;
  ~MetricsRegistration();

  /// Any thread; blocks while a snapshot is running (at most one collector pass).
  /// Afterwards no snapshot calls the collector again. Idempotent; never throws.
  /// Deadlocks if called from inside a collector, or while holding a lock that
  /// some collector takes (a snapshot holds the registry's lock while collecting).
  void reset() noexcept;
  /// True while registered.
  bool active() const noexcept { return id_ != 0; }

 private:
  friend class MetricsRegistry;
  MetricsRegistration(std::weak_ptr<detail::MetricsState> state, std::uint64_t id) noexcept;
  std::weak_ptr<detail::MetricsState> state_;
  std::uint64_t id_ = 0;
};

class EDGERT_API MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  /// Any thread; takes the registry's lock (blocks while a snapshot runs). Returns the
  /// counter for name+labels, creating it on first use; the reference stays valid for
  /// the registry's life. `help` is kept from the first registration of the name.
  /// Throws std::invalid_argument naming the series when the name or a label is not
  /// valid Prometheus syntax, a label name repeats, or the name already has another
  /// type or is reported by a collector with these labels.
  Counter& counter(std::string_view name, Labels labels = {}, std::string_view help = {});
  /// As counter(), for a gauge.
  Gauge& gauge(std::string_view name, Labels labels = {}, std::string_view help = {});
  /// As counter(), for a histogram; the label name "le" is reserved.
  Histogram& histogram(std::string_view name, Labels labels = {}, std::string_view help = {});

  /// Any thread; takes the registry's lock. Registers `collect` to report `series`
  /// at each snapshot until the returned registration is destroyed. Throws
  /// std::invalid_argument naming the series for the errors counter() reports, for a
  /// histogram spec, for a series already registered (by anyone), or an empty
  /// `collect`; nothing is registered then.
  [[nodiscard]] MetricsRegistration register_collector(std::vector<SeriesSpec> series, CollectFn collect);

  /// Any thread; takes the registry's lock. Registers `collect` as the only source of
  /// the named families until the returned registration is destroyed; each snapshot
  /// calls it once and takes its series as they are then (sorted by labels). Throws
  /// std::invalid_argument naming the family for an invalid name, a histogram, a name
  /// given twice or already registered by anyone (instrument, collector or family
  /// collector), or an empty `collect`; nothing is registered then. While registered,
  /// counter()/gauge()/register_collector() refuse those names.
  [[nodiscard]] MetricsRegistration register_family_collector(std::vector<FamilySpec> families,
                                                              FamilyCollectFn collect);

  /// Any thread; takes the registry's lock and runs every collector. Throws only
  /// std::bad_alloc.
  Snapshot snapshot() const;

 private:
  std::shared_ptr<detail::MetricsState> state_;
};

/// Checks a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or a label name
/// ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). Any thread; never blocks.
EDGERT_API bool valid_metric_name(std::string_view name) noexcept;
EDGERT_API bool valid_label_name(std::string_view name) noexcept;

}  // namespace edgert
