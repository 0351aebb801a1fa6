// The Catch2 main of every test binary: a run that skipped a case (EDGERT_SKIP) and failed none exits 77.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "skip.hpp"

#include <atomic>

namespace {
std::atomic<bool> g_skipped{false};
}  // namespace

void edgert::testing::mark_skipped() noexcept { g_skipped.store(true); }

int main(int argc, char* argv[]) {
  const int failed = Catch::Session().run(argc, argv);
  if (failed == 0 && g_skipped.load()) return edgert::testing::kSkipExitCode;
  return failed;
}
