// scan_plugins_isolated: plugins that hang, close the answer pipe, or meet a lock
// another thread of the caller holds. Every scan runs under a bound of its own
// here, so a scanner that hangs fails the test instead of hanging it.
#include <edgert/plugin_host.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::PluginLoaderOptions;
using edgert::PluginScan;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

extern "C" void scan_shared_lock();  // tests/plugins/scan_shared_lock.c
extern "C" void scan_shared_unlock();

namespace {

const std::string kScan = EDGERT_SCAN_PLUGIN_DIR;
const std::string kBundled = EDGERT_BUNDLED_PLUGIN_DIR;
const std::string kCrash = EDGERT_CRASH_PLUGIN_DIR;

PluginLoaderOptions only() {
  PluginLoaderOptions o;
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}

// The hanging test plugins wait for this file (scan_plugins.c): creating it lets a
// scanner that failed to kill them finish, so a failing test still ends.
struct Release {
  std::string path = (fs::temp_directory_path() / ("edgert-scan-release-" + std::to_string(::getpid()))).string();
  Release() {
    fs::remove(path);
    ::setenv("EDGERT_TEST_RELEASE", path.c_str(), 1);  // before any thread starts
  }
  void now() const { std::ofstream(path) << "go\n"; }
  ~Release() {
    ::unsetenv("EDGERT_TEST_RELEASE");
    fs::remove(path);
  }
};

// Runs `scan` on its own thread; if it has not returned within `bound`, records a
// failure and calls `unblock` so it can finish.
std::vector<PluginScan> within(std::chrono::seconds bound, std::function<std::vector<PluginScan>()> scan,
                               const std::function<void()>& unblock) {
  auto fut = std::async(std::launch::async, std::move(scan));
  if (fut.wait_for(bound) != std::future_status::ready) {
    FAIL_CHECK("the scan did not return within " << bound.count() << " s");
    unblock();
  }
  return fut.get();
}

// True when this process has no child left, reaped or not (no zombies).
bool no_children() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

}  // namespace

TEST_CASE("scanner: works while another thread holds a lock the plugin's constructor takes", "[scanner]") {
  std::promise<void> locked;
  std::atomic<bool> unlock{false};
  std::thread holder([&] {
    scan_shared_lock();  // as a host thread inside a library it shares with plugins
    locked.set_value();
    while (!unlock.load()) std::this_thread::sleep_for(1ms);
    scan_shared_unlock();
  });
  locked.get_future().wait();
  // A child forked from this process would inherit the held lock with no thread to
  // release it, and block in the constructor; the helper is a fresh process.
  const auto scans = within(
      30s, [] { return edgert::scan_plugins_isolated({kScan + "/scan_shared_lock.so"}, only(), 5000); },
      [&] { unlock = true; });
  unlock = true;
  holder.join();
  REQUIRE(scans.size() == 1);
  INFO(scans[0].reason);
  CHECK(scans[0].accepted);
  CHECK(scans[0].info.signature == "shared_lock");
  CHECK(no_children());
}

TEST_CASE("scanner: a plugin constructor that hangs is killed after the timeout and reaped", "[scanner]") {
  Release release;
  constexpr int kTimeoutMs = 3000;
  std::atomic<int> finished{0};
  int hang_order = 0;
  int fast_order = 0;
  std::chrono::milliseconds hang_took{};
  std::vector<PluginScan> hang;
  std::vector<PluginScan> fast;
  std::thread hanger([&] {
    const auto t0 = std::chrono::steady_clock::now();
    hang = edgert::scan_plugins_isolated({kScan + "/scan_hang_on_load.so"}, only(), kTimeoutMs);
    hang_took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    hang_order = ++finished;
  });
  // Meanwhile a scan on another thread is not held up by the hanging one.
  std::thread other([&] {
    fast = edgert::scan_plugins_isolated({kBundled + "/threshold.so"}, only(), 60000);
    fast_order = ++finished;
  });
  std::promise<void> joined;
  std::thread joiner([&] {
    hanger.join();
    other.join();
    joined.set_value();
  });
  if (joined.get_future().wait_for(60s) != std::future_status::ready) {
    FAIL_CHECK("the scans did not return within 60 s");
    release.now();
  }
  joiner.join();

  REQUIRE(hang.size() == 1);
  CHECK_FALSE(hang[0].accepted);
  CHECK_THAT(hang[0].reason, Contains("hung while loading") && Contains("within 3000 ms; killed"));
  CHECK(hang_took >= std::chrono::milliseconds(kTimeoutMs));
  REQUIRE(fast.size() == 1);
  INFO(fast[0].reason);
  CHECK(fast[0].accepted);
  CHECK(fast_order == 1);
  CHECK(hang_order == 2);
  CHECK(no_children());
}

TEST_CASE("scanner: a helper that closes its answer pipe but does not exit is killed and reaped in time",
          "[scanner]") {
  Release release;
  const auto t0 = std::chrono::steady_clock::now();
  const auto scans =
      within(30s, [] { return edgert::scan_plugins_isolated({kScan + "/scan_close_and_hang.so"}, only(), 1500); },
             [&] { release.now(); });
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(scans.size() == 1);
  CHECK_FALSE(scans[0].accepted);
  CHECK_THAT(scans[0].reason, Contains("did not exit within 1500 ms; killed"));
  CHECK(took >= 1500ms);
  CHECK(no_children());
}

TEST_CASE("scanner: the helper starts with no blocked signals and default dispositions", "[scanner]") {
  std::vector<PluginScan> scans;
  ::signal(SIGUSR2, SIG_IGN);
  std::thread t([&] {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);  // as a host does before starting workers
    scans = edgert::scan_plugins_isolated({kScan + "/scan_sigprobe.so"}, only(), 10000);
  });
  t.join();
  ::signal(SIGUSR2, SIG_DFL);
  REQUIRE(scans.size() == 1);
  INFO(scans[0].reason);
  REQUIRE(scans[0].accepted);
  CHECK(scans[0].info.description == "mask=clear usr2=default");
}

TEST_CASE("scanner: a missing helper is reported per file, naming where it was looked for", "[scanner]") {
  const std::string missing = "/nonexistent/libexec/edgert-plugin-scan";
  ::setenv("EDGERT_PLUGIN_SCANNER", missing.c_str(), 1);
  PluginLoaderOptions o = only();
  o.use_environment = true;
  const auto scans = edgert::scan_plugins_isolated({kBundled + "/threshold.so", kCrash}, o);
  ::unsetenv("EDGERT_PLUGIN_SCANNER");
  REQUIRE(scans.size() == 2);
  for (const auto& s : scans) {
    CHECK_FALSE(s.accepted);
    CHECK_THAT(s.reason, Contains(missing) && Contains("EDGERT_PLUGIN_SCANNER"));
  }
  CHECK(no_children());  // nothing was forked instead
}

TEST_CASE("scanner: PluginLoaderOptions::scanner_path names the helper; a bad timeout is refused", "[scanner]") {
  PluginLoaderOptions o = only();
  o.scanner_path = "/nonexistent/bin/scan-helper";
  auto scans = edgert::scan_plugins_isolated({kBundled + "/threshold.so"}, o);
  REQUIRE(scans.size() == 1);
  CHECK_FALSE(scans[0].accepted);
  CHECK_THAT(scans[0].reason, Contains("/nonexistent/bin/scan-helper") && Contains("scanner_path"));

  scans = edgert::scan_plugins_isolated({kBundled + "/threshold.so"}, only(), 0);
  REQUIRE(scans.size() == 1);
  CHECK_FALSE(scans[0].accepted);
  CHECK_THAT(scans[0].reason, Contains("timeout_ms must be positive (got 0)"));
  CHECK(no_children());
}
