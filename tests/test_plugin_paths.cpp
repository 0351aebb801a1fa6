// Where plugins are found (docs/plugins.md, "Where plugins are found"): the search
// order, the folder found relative to libedgert, the build-tree rule and shadowing.
#include <edgert/plugin_host.hpp>

#include "log_capture.hpp"
#include "plugins/search_paths.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

using Catch::Contains;
using edgert::PluginLoader;
using edgert::PluginLoaderOptions;
using edgert::testing::ScratchDir;
namespace fs = std::filesystem;

namespace {

const std::string kBundled = EDGERT_BUNDLED_PLUGIN_DIR;
const std::string kBuildLibDir = EDGERT_TEST_BUILD_LIBDIR;

PluginLoaderOptions only(std::vector<std::string> paths) {
  PluginLoaderOptions o;
  o.search_paths = std::move(paths);
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}

using edgert::testing::LogCapture;

std::string canonical(const std::string& p) { return fs::weakly_canonical(p).string(); }

// Two folders a/ and b/, each holding a copy of the bundled threshold.so.
struct TwoFolders {
  ScratchDir scratch{"edgert-plugin-paths"};
  std::string a = (scratch.dir / "a").string();
  std::string b = (scratch.dir / "b").string();
  TwoFolders() {
    fs::create_directories(a);
    fs::create_directories(b);
    fs::copy_file(kBundled + "/threshold.so", a + "/threshold.so");
    fs::copy_file(kBundled + "/threshold.so", b + "/threshold.so");
  }
};

}  // namespace

TEST_CASE("search paths: config, then EDGERT_PLUGIN_PATH, then the build tree and <libdir>/edgert/plugins",
          "[plugins][paths]") {
  ::setenv("EDGERT_PLUGIN_PATH", "/env/a::/env/b", 1);
  PluginLoaderOptions o;
  o.search_paths = {"/cfg"};
  const auto paths = PluginLoader(o).search_paths();
  ::unsetenv("EDGERT_PLUGIN_PATH");
  // This test runs against the build tree's own libedgert: its plugin folder comes
  // first among the defaults, then the one beside the library (build/lib/edgert/plugins).
  REQUIRE(paths.size() == 5);
  CHECK(paths[0] == "/cfg");
  CHECK(paths[1] == "/env/a");
  CHECK(paths[2] == "/env/b");
  CHECK(canonical(paths[3]) == canonical(kBundled));
  CHECK(canonical(paths[4]) == canonical(kBuildLibDir + "/edgert/plugins"));

  o.use_environment = false;
  o.use_default_paths = false;
  CHECK(PluginLoader(o).search_paths() == std::vector<std::string>{"/cfg"});
}

TEST_CASE("default plugin folders: relative to the library, the build tree only for its own library",
          "[plugins][paths]") {
  using edgert::detail::LibraryLocation;
  using edgert::detail::default_plugin_dirs;
  const std::string build_lib = "/src/build/lib";
  const std::string build_plugins = "/src/build/plugins";

  LibraryLocation installed;
  installed.libdir = "/opt/edgert/lib";
  CHECK(default_plugin_dirs(installed, build_lib, build_plugins) ==
        std::vector<std::string>{"/opt/edgert/lib/edgert/plugins"});

  LibraryLocation from_build;
  from_build.libdir = build_lib;
  CHECK(default_plugin_dirs(from_build, build_lib, build_plugins) ==
        std::vector<std::string>{build_plugins, "/src/build/lib/edgert/plugins"});

  // Linked statically: libdir is derived from the executable's folder.
  LibraryLocation in_exe;
  in_exe.in_executable = true;
  in_exe.libdir = edgert::detail::libdir_for_executable("/opt/app/bin/app", "../lib");
  CHECK(in_exe.libdir == "/opt/app/lib");
  CHECK(default_plugin_dirs(in_exe, build_lib, build_plugins) == std::vector<std::string>{"/opt/app/lib/edgert/plugins"});

  LibraryLocation unknown;  // dladdr failed: no default folder rather than a guess
  unknown.error = "cannot locate libedgert";
  CHECK(default_plugin_dirs(unknown, build_lib, build_plugins).empty());

  // This test links its own copy of search_paths.cpp (the library's is hidden), so
  // locate_library() runs the statically linked case for real: it names this executable.
  const auto here = edgert::detail::locate_library();
  REQUIRE(here.error.empty());
  CHECK(here.in_executable);
  CHECK(here.file == fs::canonical("/proc/self/exe").string());
  CHECK(here.libdir == edgert::detail::libdir_for_executable(here.file, "../lib"));
}

TEST_CASE("a signature in two folders: the first wins, the other is one WARNING, not a refusal",
          "[plugins][paths]") {
  TwoFolders f;
  LogCapture log;
  PluginLoader loader(only({f.a, f.b}));
  const auto refused = loader.load_all();
  CHECK(refused.empty());
  const auto loaded = loader.plugins();
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0].path == f.a + "/threshold.so");

  const auto warnings = log.sink->at(spdlog::level::warn);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == "plugin 'threshold' in " + f.b + "/threshold.so is shadowed by " + f.a +
                           "/threshold.so (earlier in the search path); not loaded");
  CHECK(log.sink->at(spdlog::level::err).empty());

  // The other order: b wins.
  LogCapture log2;
  PluginLoader reversed(only({f.b, f.a}));
  CHECK(reversed.load_all().empty());
  REQUIRE(reversed.plugins().size() == 1);
  CHECK(reversed.plugins()[0].path == f.b + "/threshold.so");
  CHECK(log2.sink->at(spdlog::level::warn).size() == 1);
}

TEST_CASE("a signature twice in one folder stays an ERROR refusal", "[plugins][paths]") {
  TwoFolders f;
  fs::copy_file(kBundled + "/threshold.so", f.a + "/threshold_copy.so");
  LogCapture log;
  PluginLoader loader(only({f.a}));
  const auto refused = loader.load_all();
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].path == f.a + "/threshold_copy.so");
  CHECK_THAT(refused[0].reason, Contains("duplicate signature 'threshold'") && Contains(f.a + "/threshold.so"));
  const auto errors = log.sink->at(spdlog::level::err);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Contains(f.a + "/threshold_copy.so") && Contains("duplicate signature 'threshold'"));
  CHECK(log.sink->at(spdlog::level::warn).empty());

  // load() of a duplicate, wherever it is, is a refusal logged at ERROR.
  LogCapture log2;
  auto again = loader.load(f.b + "/threshold.so");
  REQUIRE_FALSE(again.ok());
  CHECK_THAT(again.status().message(), Contains("duplicate signature 'threshold'"));
  CHECK(log2.sink->at(spdlog::level::err).size() == 1);
}

TEST_CASE("the isolated scan marks a signature from a later folder as shadowed, not refused",
          "[plugins][paths]") {
  TwoFolders f;
  fs::copy_file(kBundled + "/threshold.so", f.a + "/threshold_copy.so");
  const auto scans = edgert::scan_plugins_isolated({f.a, f.b}, only({}));
  REQUIRE(scans.size() == 3);
  CHECK(scans[0].path == f.a + "/threshold.so");
  CHECK(scans[0].accepted);
  CHECK(scans[1].path == f.a + "/threshold_copy.so");  // same folder: refused
  CHECK_FALSE(scans[1].accepted);
  CHECK_FALSE(scans[1].shadowed);
  CHECK_THAT(scans[1].reason, Contains("duplicate signature 'threshold'"));
  CHECK(scans[2].path == f.b + "/threshold.so");  // later folder: shadowed
  CHECK_FALSE(scans[2].accepted);
  CHECK(scans[2].shadowed);
  CHECK(scans[2].info.signature == "threshold");
  CHECK(scans[2].reason == "plugin 'threshold' in " + f.b + "/threshold.so is shadowed by " + f.a +
                               "/threshold.so (earlier in the search path); not loaded");
}
