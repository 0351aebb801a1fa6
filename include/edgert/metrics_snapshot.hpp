// A point-in-time copy of a MetricsRegistry and its two renderers.
//
// One Snapshot serves every consumer: the --stats-json file and the status command
// (to_json), the heartbeat document, and a Prometheus /metrics endpoint
// (to_prometheus). A Snapshot is plain data: it owns copies of every name, label and
// value, refers to nothing in the registry, and may be kept, copied or sent to
// another thread. See docs/metrics.md.
#pragma once

#include <edgert/export.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgert {

/// Label pairs of one series, e.g. {{"queue", "cam0/motion/m1"}}. The registry
/// stores them sorted by label name, so the order given at registration is irrelevant.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType : std::uint8_t { counter, gauge, histogram };

/// "counter", "gauge", "histogram".
EDGERT_API const char* to_string(MetricType type) noexcept;

/// Latency histogram layout: fixed log-linear buckets over nanoseconds.
///  - bucket 0 holds [0, 1024 ns);
///  - buckets 1..108 split each octave [2^e, 2^(e+1)) ns, e = 10..36, into four equal
///    parts, so a bucket's upper bound is at most 1.25x its lower bound;
///  - bucket 109 holds [2^37 ns, inf) (2^37 ns is about 137 s).
inline constexpr std::size_t kHistogramBuckets = 110;
inline constexpr unsigned kHistogramMinExp = 10;  // 2^10 ns ~ 1 us
inline constexpr unsigned kHistogramMaxExp = 37;  // 2^37 ns ~ 137 s

/// Bucket of a value in nanoseconds. Any thread, never blocks.
constexpr std::size_t histogram_bucket(std::uint64_t ns) noexcept {
  if (ns < (std::uint64_t{1} << kHistogramMinExp)) return 0;
  const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(ns));
  if (e >= kHistogramMaxExp) return kHistogramBuckets - 1;
  const unsigned sub = static_cast<unsigned>(ns >> (e - 2)) & 3u;
  return 1 + (e - kHistogramMinExp) * 4 + sub;
}

/// Lower bound (inclusive) of bucket `i`, in nanoseconds.
constexpr std::uint64_t histogram_bucket_lower(std::size_t i) noexcept {
  if (i == 0) return 0;
  if (i >= kHistogramBuckets - 1) return std::uint64_t{1} << kHistogramMaxExp;
  const unsigned e = kHistogramMinExp + static_cast<unsigned>((i - 1) / 4);
  const std::uint64_t sub = (i - 1) % 4;
  return (std::uint64_t{1} << e) + sub * (std::uint64_t{1} << (e - 2));
}

/// Upper bound (exclusive) of bucket `i` in nanoseconds; UINT64_MAX for the last.
constexpr std::uint64_t histogram_bucket_upper(std::size_t i) noexcept {
  return i + 1 >= kHistogramBuckets ? UINT64_MAX : histogram_bucket_lower(i + 1);
}

/// The recorded state of one histogram series.
struct HistogramData {
  /// Per bucket, not cumulative: kHistogramBuckets entries (empty in a
  /// default-constructed value, which then reads as no records).
  std::vector<std::uint64_t> buckets;
  std::uint64_t count = 0;   // sum of buckets
  std::uint64_t sum_ns = 0;  // sum of recorded values

  /// Estimate of quantile q (0 < q <= 1) in seconds; 0 when count is 0.
  /// Takes the nearest-rank sample (the ceil(q * count)-th smallest) and returns the
  /// midpoint of its bucket. For values in [1.024 us, 137 s) the estimate is within
  /// 12.5% of that sample; below 1.024 us it returns 0.512 us (within 0.512 us), at
  /// or above 137 s it returns 137.4 s (the bucket's lower bound).
  EDGERT_API double quantile(double q) const noexcept;
};

/// One series: a name plus one set of label values.
struct MetricSample {
  Labels labels;
  double value = 0;         // counter and gauge; NaN when its collector failed
  HistogramData histogram;  // histogram only (empty buckets otherwise)
};

/// All series of one name. Every series of a name has the same type and help.
struct MetricFamily {
  std::string name;
  MetricType type = MetricType::counter;
  std::string help;
  std::vector<MetricSample> samples;  // sorted by labels
};

struct Snapshot {
  std::vector<MetricFamily> families;  // sorted by name

  /// The series with exactly this name and these labels (any order), or nullptr.
  EDGERT_API const MetricSample* find(std::string_view name, Labels labels = {}) const;
  EDGERT_API const MetricFamily* family(std::string_view name) const;
};

/// JSON for --stats-json, the status command and the heartbeat document:
///   {"edgert_queue_dropped_total": {"type": "counter", "help": "...",
///     "series": [{"labels": {"queue": "cam0/motion/m1"}, "value": 3}]}, ...}
/// A histogram series has "count", "sum_seconds", "p50_seconds", "p90_seconds",
/// "p99_seconds" and "buckets": [[upper_bound_seconds, count], ...] for its non-empty
/// buckets (the last bound is null: +Inf). NaN values are written as null.
/// Any thread; never blocks; throws only std::bad_alloc.
EDGERT_API std::string to_json(const Snapshot& snapshot);

/// Prometheus text exposition format 0.0.4 (Content-Type
/// "text/plain; version=0.0.4"). Histograms are written with cumulative buckets at
/// the octave bounds (le = 2^e ns in seconds, e = 10..37, then +Inf), _sum (seconds)
/// and _count. Any thread; never blocks; throws only std::bad_alloc.
EDGERT_API std::string to_prometheus(const Snapshot& snapshot);

}  // namespace edgert
