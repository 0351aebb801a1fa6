// abi_bench: nanoseconds per process() call through the plugin C ABI (a real .so
// loaded by PluginLoader, called through PluginInstance::process) vs the same work
// behind a direct C++ virtual call with the same signature (PluginInput in, Status
// out), measured in one run, interleaved, median of rounds. The difference is what
// the C boundary costs: building the edgert_input, the indirect call into the .so
// and the SDK adapter with its exception guard.
// Usage: abi_bench [--calls N] [--rounds R] [--json]
#include "direct_impl.hpp"

#include <edgert/log.hpp>
#include <edgert/plugin_host.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Fn>
double ns_per_call(std::uint64_t calls, Fn&& fn) {
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < calls; ++i) fn();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(calls);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t calls = 20'000'000;
  int rounds = 7;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--calls") && i + 1 < argc) {
      calls = std::stoull(argv[++i]);
    } else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--calls N] [--rounds R] [--json]\n", argv[0]);
      return 2;
    }
  }
  (void)edgert::set_log_level("warning");

  edgert::PluginLoaderOptions opts;
  opts.use_default_paths = false;
  opts.use_environment = false;
  edgert::PluginLoader loader(opts);
  const std::string path = EDGERT_BENCH_PLUGIN;
  if (auto r = loader.load(path); !r.ok()) {
    std::fprintf(stderr, "abi_bench: %s\n", r.status().message().c_str());
    return 1;
  }
  auto inst = loader.create_instance("bench_noop", "bench", "", nullptr);
  if (!inst.ok()) {
    std::fprintf(stderr, "abi_bench: %s\n", inst.status().message().c_str());
    return 1;
  }
  edgert::PluginInstance& plugin = *inst.value();
  auto direct = make_direct_processor();

  edgert::PluginInput in;
  in.stream = "bench";
  in.record_json = "{}";
  std::vector<double> abi, virt;
  bool ok = true;
  for (int r = 0; r < rounds; ++r) {
    abi.push_back(ns_per_call(calls, [&] { ok &= plugin.process(in).ok(); }));
    virt.push_back(ns_per_call(calls, [&] { ok &= direct->process(in).ok(); }));
  }
  if (!ok || direct->calls() != calls * std::uint64_t(rounds)) {
    std::fprintf(stderr, "abi_bench: a call failed\n");
    return 1;
  }
  const double a = median(abi), v = median(virt);
  if (json) {
    std::printf("{\"calls\": %llu, \"rounds\": %d, \"abi_call_ns\": %.3f, \"virtual_call_ns\": %.3f, "
                "\"abi_overhead_ns\": %.3f}\n",
                static_cast<unsigned long long>(calls), rounds, a, v, a - v);
  } else {
    std::printf("abi_bench: %llu calls x %d rounds (median)\n", static_cast<unsigned long long>(calls), rounds);
    std::printf("  through the plugin ABI : %7.3f ns/call\n", a);
    std::printf("  direct virtual call    : %7.3f ns/call\n", v);
    std::printf("  overhead               : %7.3f ns/call (goal < 2)\n", a - v);
  }
  return 0;
}
