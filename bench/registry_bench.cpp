// registry_bench: the cost of ComponentRegistry at node scale (issue 21).
//
//   heartbeat  : one thread calls beat() (and progress()) round-robin over all handles;
//                ns per call by the thread's CPU time, and what that is as a share of
//                one core at N components x 1 Hz;
//   sweep      : `--sweeps` sweeps of N fresh rows (no transitions: the steady state);
//                median and max in ms;
//   sweep_stale: one sweep that turns all N rows stalled (N transitions, one listener),
//                on a fake clock; ms;
//   snapshot   : one snapshot() of N rows; ms.
// registry.db (the batched SQLite writer) is not built yet: its cost is reported as null.
// Usage: registry_bench [--components N] [--beats N] [--sweeps N] [--json]
#include <edgert/component_registry.hpp>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<edgert::ComponentHandle> register_all(edgert::ComponentRegistry& reg, std::size_t n) {
  std::vector<edgert::ComponentHandle> hs;
  hs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    edgert::RegisterOptions o;
    o.expects_progress = (i % 2) == 0;
    std::string name("c");
    name.append(std::to_string(i));
    hs.push_back(reg.register_component(std::move(name), i % 3 == 0 ? "instance" : "stream",
                                        {{"stream", "s"}}, o));
  }
  return hs;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t components = 10'000;
  std::uint64_t beats = 10'000'000;
  int sweeps = 100;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--components") && i + 1 < argc) {
      components = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--beats") && i + 1 < argc) {
      beats = std::strtoull(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--sweeps") && i + 1 < argc) {
      sweeps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: registry_bench [--components N] [--beats N] [--sweeps N] [--json]\n");
      return 2;
    }
  }
  if (components == 0 || beats == 0 || sweeps <= 0) {
    std::fprintf(stderr, "registry_bench: counts must be > 0\n");
    return 2;
  }

  // Heartbeats and steady-state sweeps on the real clocks.
  edgert::ComponentRegistry reg;
  auto hs = register_all(reg, components);
  const double b0 = thread_cpu_ns();
  for (std::uint64_t i = 0; i < beats; ++i) hs[i % components].beat();
  const double beat_ns = (thread_cpu_ns() - b0) / static_cast<double>(beats);
  const double p0 = thread_cpu_ns();
  for (std::uint64_t i = 0; i < beats; ++i) hs[i % components].progress();
  const double progress_ns = (thread_cpu_ns() - p0) / static_cast<double>(beats);
  const double core_pct = beat_ns * static_cast<double>(components) / 1e9 * 100.0;

  std::vector<double> sweep_ms;
  for (int s = 0; s < sweeps; ++s) {
    for (auto& h : hs) h.progress();  // fresh rows: the sweep finds nothing to change
    const auto t0 = Clock::now();
    reg.sweep();
    sweep_ms.push_back(ms_since(t0));
  }
  std::sort(sweep_ms.begin(), sweep_ms.end());
  const auto t1 = Clock::now();
  const auto rows = reg.snapshot();
  const double snapshot_ms = ms_since(t1);

  // One sweep in which every row turns stalled, on a fake steady clock.
  std::atomic<std::int64_t> fake{1'000'000};
  edgert::ComponentRegistry::Options fo;
  fo.steady_ms = [&fake] { return fake.load(std::memory_order_relaxed); };
  edgert::ComponentRegistry stale_reg(fo);
  std::uint64_t heard = 0;
  auto listening = stale_reg.add_listener([&heard](const edgert::ComponentTransition&) { ++heard; });
  auto stale_hs = register_all(stale_reg, components);
  for (auto& h : stale_hs) h.progress();
  stale_reg.sweep();  // starting -> ready
  fake += 3000;
  heard = 0;
  const auto t2 = Clock::now();
  stale_reg.sweep();
  const double stale_ms = ms_since(t2);

  const double median = sweep_ms[sweep_ms.size() / 2];
  const double max = sweep_ms.back();
  if (json) {
    std::printf(
        "{\"components\": %zu, \"beats\": %llu, \"beat_ns\": %.2f, \"progress_ns\": %.2f, "
        "\"heartbeat_core_pct_at_1hz\": %.5f, \"sweeps\": %d, \"sweep_median_ms\": %.4f, \"sweep_max_ms\": %.4f, "
        "\"sweep_all_stale_ms\": %.4f, \"stale_transitions\": %llu, \"snapshot_ms\": %.4f, \"rows\": %zu, "
        "\"registry_db_write_ms_per_s\": null, "
        "\"note\": \"registry.db is not built yet (issue 21, later part)\"}\n",
        components, static_cast<unsigned long long>(beats), beat_ns, progress_ns, core_pct, sweeps, median, max,
        stale_ms, static_cast<unsigned long long>(heard), snapshot_ms, rows.size());
  } else {
    std::printf("components            %zu\n", components);
    std::printf("beat()                %.2f ns (thread CPU, %llu calls)\n", beat_ns,
                static_cast<unsigned long long>(beats));
    std::printf("progress()            %.2f ns\n", progress_ns);
    std::printf("heartbeats at 1 Hz    %.5f %% of one core (goal < 2 %%)\n", core_pct);
    std::printf("sweep                 median %.4f ms, max %.4f ms over %d (goal < 10 ms)\n", median, max, sweeps);
    std::printf("sweep, all stale      %.4f ms (%llu transitions)\n", stale_ms, static_cast<unsigned long long>(heard));
    std::printf("snapshot              %.4f ms (%zu rows)\n", snapshot_ms, rows.size());
    std::printf("registry.db writes    n/a (not built yet)\n");
  }
  return 0;
}
