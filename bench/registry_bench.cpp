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
//   registry.db: the batched writer (src/registry/registry_store.hpp) on a file under
//                $TMPDIR, fake clocks: the first batch (every row), the steady state at
//                1 Hz (every row beat once since the last batch, so every row is
//                rewritten: the worst case, median of 5 batches = ms of writing per
//                second), and an idle batch (nothing changed: the node row only).
// Usage: registry_bench [--components N] [--beats N] [--sweeps N] [--json]
#include <edgert/component_registry.hpp>

#include "registry/registry_store.hpp"

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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

  // registry.db: batches of the writer, on fake clocks so every beat is a change.
  double db_first_ms = 0, db_steady_ms = 0, db_idle_ms = 0;
  {
    std::atomic<std::int64_t> steady{1'000'000}, wall{1'700'000'000'000};
    edgert::ComponentRegistry::Options wo;
    wo.steady_ms = [&steady] { return steady.load(std::memory_order_relaxed); };
    wo.wall_ms = [&wall] { return wall.load(std::memory_order_relaxed); };
    edgert::ComponentRegistry db_reg(wo);
    auto db_hs = register_all(db_reg, components);
    for (auto& h : db_hs) h.progress();
    db_reg.sweep();
    std::string dir_template = (std::filesystem::temp_directory_path() / "registry_bench-XXXXXX").string();
    if (::mkdtemp(dir_template.data()) == nullptr) {
      std::perror("registry_bench: mkdtemp");
      return 1;
    }
    {
      edgert::detail::RegistryStoreOptions so;
      so.path = dir_template + "/registry.db";
      so.node_id = "bench";
      so.wall_ms = [&wall] { return wall.load(std::memory_order_relaxed); };
      edgert::detail::RegistryStore store(db_reg, so);
      auto timed = [&store] {
        const auto t = Clock::now();
        if (!store.write_batch().ok()) {
          std::fprintf(stderr, "registry_bench: %s\n", store.stats().last_error.c_str());
          std::exit(1);
        }
        return ms_since(t);
      };
      db_first_ms = timed();
      std::vector<double> steady_ms;
      for (int r = 0; r < 5; ++r) {
        steady += 1000;
        wall += 1000;
        for (auto& h : db_hs) h.progress();
        steady_ms.push_back(timed());
      }
      std::sort(steady_ms.begin(), steady_ms.end());
      db_steady_ms = steady_ms[steady_ms.size() / 2];
      steady += 100;
      wall += 100;
      db_idle_ms = timed();
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_template, ec);
  }

  const double median = sweep_ms[sweep_ms.size() / 2];
  const double max = sweep_ms.back();
  if (json) {
    std::printf(
        "{\"components\": %zu, \"beats\": %llu, \"beat_ns\": %.2f, \"progress_ns\": %.2f, "
        "\"heartbeat_core_pct_at_1hz\": %.5f, \"sweeps\": %d, \"sweep_median_ms\": %.4f, \"sweep_max_ms\": %.4f, "
        "\"sweep_all_stale_ms\": %.4f, \"stale_transitions\": %llu, \"snapshot_ms\": %.4f, \"rows\": %zu, "
        "\"registry_db_write_ms_per_s\": %.4f, \"registry_db_first_batch_ms\": %.4f, "
        "\"registry_db_idle_batch_ms\": %.4f}\n",
        components, static_cast<unsigned long long>(beats), beat_ns, progress_ns, core_pct, sweeps, median, max,
        stale_ms, static_cast<unsigned long long>(heard), snapshot_ms, rows.size(), db_steady_ms, db_first_ms,
        db_idle_ms);
  } else {
    std::printf("components            %zu\n", components);
    std::printf("beat()                %.2f ns (thread CPU, %llu calls)\n", beat_ns,
                static_cast<unsigned long long>(beats));
    std::printf("progress()            %.2f ns\n", progress_ns);
    std::printf("heartbeats at 1 Hz    %.5f %% of one core (goal < 2 %%)\n", core_pct);
    std::printf("sweep                 median %.4f ms, max %.4f ms over %d (goal < 10 ms)\n", median, max, sweeps);
    std::printf("sweep, all stale      %.4f ms (%llu transitions)\n", stale_ms, static_cast<unsigned long long>(heard));
    std::printf("snapshot              %.4f ms (%zu rows)\n", snapshot_ms, rows.size());
    std::printf("registry.db writes    %.4f ms per second at 1 Hz (every row rewritten), first batch %.4f ms, "
                "idle batch %.4f ms\n",
                db_steady_ms, db_first_ms, db_idle_ms);
  }
  return 0;
}
