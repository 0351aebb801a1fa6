// metrics_bench: the cost of recording into edgert/metrics.hpp and of a snapshot.
//
//   uncontended : one thread records into one instrument (ns per call);
//   2 threads   : two threads record into the SAME instrument at once (ns per call
//                 per thread; the cache line bounces between the cores);
//   snapshot    : MetricsRegistry::snapshot() of 1,003 series (903 counters, 91
//                 gauges, 10 histograms, 1 of each being timed) plus to_json and to_prometheus of it.
// Histogram values come from an inline xorshift (about 1 ns, included).
// Each case runs `--rounds` times; the median is reported.
// Usage: metrics_bench [--ops N] [--rounds R] [--json]
#include <edgert/metrics.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// 1 us .. ~1 s, spread over many buckets.
inline std::uint64_t next_latency(std::uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return 1000 + (x & ((std::uint64_t{1} << 30) - 1));
}

template <class Op>
double per_op_ns(std::uint64_t ops, Op op) {
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < ops; ++i) op(i);
  return ns_since(t0) / static_cast<double>(ops);
}

// Two threads run `op` `ops` times each, started together; ns per op per thread.
template <class Op>
double two_threads_ns(std::uint64_t ops, Op op) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  double result[2] = {0, 0};
  auto body = [&](int t) {
    ready.fetch_add(1);
    while (!go.load()) {
    }
    result[t] = per_op_ns(ops, op);
  };
  std::thread a(body, 0), b(body, 1);
  while (ready.load() < 2) {
  }
  go = true;
  a.join();
  b.join();
  return (result[0] + result[1]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t ops = 20'000'000;
  int rounds = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--ops") && i + 1 < argc) {
      ops = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--ops N] [--rounds R] [--json]\n", argv[0]);
      return 2;
    }
  }
  if (ops == 0 || rounds < 1) {
    std::fprintf(stderr, "metrics_bench: --ops and --rounds must be positive\n");
    return 2;
  }

  edgert::MetricsRegistry reg;
  auto& counter = reg.counter("bench_events_total", {{"queue", "cam0/motion/m1"}});
  auto& gauge = reg.gauge("bench_depth", {{"queue", "cam0/motion/m1"}});
  auto& hist = reg.histogram("bench_latency_seconds", {{"stage", "process"}});

  // About 1,000 series for the snapshot case.
  for (int i = 0; i < 900; ++i) reg.counter("bench_series_total", {{"id", std::to_string(i)}}).add(i);
  for (int i = 0; i < 90; ++i) reg.gauge("bench_series_gauge", {{"id", std::to_string(i)}}).set(i);
  for (int i = 0; i < 9; ++i) {
    reg.histogram("bench_series_seconds", {{"id", std::to_string(i)}}).record_ns(1000 * static_cast<std::uint64_t>(i + 1));
  }
  // With the three instruments above and the registry's own error counter: 1,003.

  // Baseline: a bare std::atomic fetch_add, measured in the same run, because absolute
  // figures on a shared machine move by 2-3x (docs/performance.md).
  alignas(64) static std::atomic<std::uint64_t> raw{0};
  std::vector<double> base, c1, g1, h1, c2, h2, snap_us, json_us, prom_us;
  std::size_t series = 0, json_bytes = 0, prom_bytes = 0;
  for (int r = 0; r < rounds; ++r) {
    base.push_back(per_op_ns(ops, [&](std::uint64_t) { raw.fetch_add(1, std::memory_order_relaxed); }));
    c1.push_back(per_op_ns(ops, [&](std::uint64_t) { counter.add(); }));
    g1.push_back(per_op_ns(ops, [&](std::uint64_t i) { gauge.set(static_cast<double>(i)); }));
    std::uint64_t x = 88172645463325252ULL;
    h1.push_back(per_op_ns(ops, [&](std::uint64_t) { hist.record_ns(next_latency(x)); }));
    c2.push_back(two_threads_ns(ops / 2, [&](std::uint64_t) { counter.add(); }));
    h2.push_back(two_threads_ns(ops / 2, [&](std::uint64_t i) {
      std::uint64_t y = i * 0x9E3779B97F4A7C15ULL + 1;
      hist.record_ns(next_latency(y));
    }));
    constexpr int kSnaps = 50;
    double s = 0, j = 0, p = 0;
    for (int k = 0; k < kSnaps; ++k) {
      auto t0 = Clock::now();
      const auto snap = reg.snapshot();
      s += ns_since(t0);
      t0 = Clock::now();
      const auto js = edgert::to_json(snap);
      j += ns_since(t0);
      t0 = Clock::now();
      const auto pr = edgert::to_prometheus(snap);
      p += ns_since(t0);
      series = 0;
      for (const auto& f : snap.families) series += f.samples.size();
      json_bytes = js.size();
      prom_bytes = pr.size();
    }
    snap_us.push_back(s / kSnaps / 1000);
    json_us.push_back(j / kSnaps / 1000);
    prom_us.push_back(p / kSnaps / 1000);
  }
  // The recorded totals prove the loops ran (and were not optimised away).
  const std::uint64_t expected_adds = static_cast<std::uint64_t>(rounds) * (ops + 2 * (ops / 2));
  if (counter.value() != expected_adds) {
    std::fprintf(stderr, "metrics_bench: counter reads %llu, expected %llu\n",
                 static_cast<unsigned long long>(counter.value()), static_cast<unsigned long long>(expected_adds));
    return 1;
  }

  if (json) {
    std::printf("{\"ops\": %llu, \"rounds\": %d, \"series\": %zu,\n", static_cast<unsigned long long>(ops), rounds,
                series);
    std::printf("  \"uncontended_ns\": {\"atomic_fetch_add_baseline\": %.2f, \"counter_add\": %.2f, \"gauge_set\": %.2f, "
                "\"histogram_record\": %.2f},\n",
                median(base), median(c1), median(g1), median(h1));
    std::printf("  \"two_threads_ns\": {\"counter_add\": %.2f, \"histogram_record\": %.2f},\n", median(c2),
                median(h2));
    std::printf("  \"snapshot_us\": %.1f, \"to_json_us\": %.1f, \"to_prometheus_us\": %.1f,\n", median(snap_us),
                median(json_us), median(prom_us));
    std::printf("  \"json_bytes\": %zu, \"prometheus_bytes\": %zu}\n", json_bytes, prom_bytes);
    return 0;
  }
  std::printf("metrics_bench: %llu ops, median of %d rounds\n\n", static_cast<unsigned long long>(ops), rounds);
  std::printf("%-28s %10s\n", "case", "ns/op");
  std::printf("%-28s %10.2f\n", "std::atomic fetch_add", median(base));
  std::printf("%-28s %10.2f   (goal < 20)\n", "counter add", median(c1));
  std::printf("%-28s %10.2f\n", "gauge set", median(g1));
  std::printf("%-28s %10.2f   (goal < 20)\n", "histogram record", median(h1));
  std::printf("%-28s %10.2f\n", "counter add, 2 threads", median(c2));
  std::printf("%-28s %10.2f\n", "histogram record, 2 threads", median(h2));
  std::printf("\n%zu series: snapshot %.1f us, to_json %.1f us (%zu B), to_prometheus %.1f us (%zu B)\n", series,
              median(snap_us), median(json_us), json_bytes, median(prom_us), prom_bytes);
  return 0;
}
