// The plugin scan cache (PluginLoaderOptions::scan_cache_path): an unchanged file is
// answered without a helper process, a changed one is always scanned, and a corrupt,
// foreign or hostile cache file costs a rescan, never a crash or a skipped check.
// Helper processes are counted independently: the scanner runs a wrapper script that
// logs each start and then execs the real helper.
#include <edgert/plugin_host.hpp>

#include "log_capture.hpp"
#include "plugins/sha256.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using Catch::Contains;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kBundled = EDGERT_BUNDLED_PLUGIN_DIR;
const std::string kHelper = EDGERT_SCANNER_HELPER;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

// A folder holding copies of two bundled plugins, a counting wrapper around the
// helper, and the cache file's place (in a data folder not created yet).
struct Fixture : edgert::testing::ScratchDir {
  fs::path plugins, cache, log, wrapper;
  Fixture() : ScratchDir("edgert-scan-cache") {
    plugins = dir / "plugins";
    fs::create_directories(plugins);
    fs::copy_file(kBundled + "/threshold.so", plugins / "threshold.so");
    fs::copy_file(kBundled + "/record_counter.so", plugins / "record_counter.so");
    cache = dir / "data" / "plugin-scan-cache.json";
    log = dir / "helper-starts.log";
    wrapper = dir / "count-helper.sh";
    spit(wrapper, "#!/bin/sh\nfor last; do :; done\necho \"$last\" >> '" + log.string() + "'\nexec '" + kHelper +
                      "' \"$@\"\n");
    fs::permissions(wrapper, fs::perms::owner_all);
  }
  edgert::PluginLoaderOptions options() const {
    edgert::PluginLoaderOptions o;
    o.use_environment = false;
    o.use_default_paths = false;
    o.scanner_path = wrapper.string();
    o.scan_cache_path = cache.string();
    return o;
  }
  // Scans the folder; `started` receives the files a helper process was started for.
  std::vector<edgert::PluginScan> scan(std::vector<std::string>& started,
                                       const edgert::PluginLoaderOptions& o) const {
    fs::remove(log);
    auto out = edgert::scan_plugins_isolated({plugins.string()}, o, 60000);
    started.clear();
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) started.push_back(fs::path(line).filename().string());
    return out;
  }
  std::vector<edgert::PluginScan> scan(std::vector<std::string>& started) const { return scan(started, options()); }
};

std::vector<std::string> accepted(const std::vector<edgert::PluginScan>& scans) {
  std::vector<std::string> out;
  for (const auto& s : scans) {
    if (s.accepted) out.push_back(s.info.signature);
  }
  return out;
}

// Replaces `path` by a copy of `from` (a new inode, as an install does).
void replace(const fs::path& path, const fs::path& from) {
  const fs::path tmp = path.string() + ".new";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, path);
}

}  // namespace

TEST_CASE("an unchanged plugin is answered from the scan cache; a touched or replaced one is scanned again",
          "[plugins][scan_cache]") {
  Fixture f;
  std::vector<std::string> started;
  const auto first = f.scan(started);
  CHECK(started == std::vector<std::string>{"record_counter.so", "threshold.so"});
  REQUIRE(accepted(first) == std::vector<std::string>{"record_counter", "threshold"});
  CHECK_FALSE(first[0].cached);
  REQUIRE(fs::exists(f.cache));
  CHECK((fs::status(f.cache).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);

  const auto second = f.scan(started);
  CHECK(started.empty());
  REQUIRE(second.size() == first.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    CHECK(second[i].cached);
    CHECK(second[i].accepted);
    CHECK(second[i].path == first[i].path);
    CHECK(second[i].info.signature == first[i].info.signature);
    CHECK(second[i].info.kind == first[i].info.kind);
    CHECK(second[i].info.plugin_version == first[i].info.plugin_version);
    CHECK(second[i].info.config_schema == first[i].info.config_schema);
    CHECK(second[i].info.abi_version == first[i].info.abi_version);
  }

  // touch: a new mtime, same bytes.
  const fs::path threshold = f.plugins / "threshold.so";
  fs::last_write_time(threshold, fs::last_write_time(threshold) + std::chrono::seconds(5));
  (void)f.scan(started);
  CHECK(started == std::vector<std::string>{"threshold.so"});
  (void)f.scan(started);
  CHECK(started.empty());

  // Replaced under the same name by another plugin: scanned, and what it is now is
  // reported, not what the cache remembered.
  replace(threshold, kBundled + "/test_pattern.so");
  const auto replaced = f.scan(started);
  CHECK(started == std::vector<std::string>{"threshold.so"});
  CHECK(accepted(replaced) == std::vector<std::string>{"record_counter", "test_pattern"});

  // A file that is gone is dropped from the cache file when it is rewritten.
  fs::remove(f.plugins / "record_counter.so");
  replace(threshold, kBundled + "/threshold.so");
  (void)f.scan(started);
  CHECK(started == std::vector<std::string>{"threshold.so"});
  CHECK(slurp(f.cache).find("record_counter.so") == std::string::npos);
}

TEST_CASE("a corrupt, truncated or foreign scan cache is ignored (a WARNING for a corrupt one) and rewritten",
          "[plugins][scan_cache]") {
  Fixture f;
  std::vector<std::string> started;
  (void)f.scan(started);
  REQUIRE(started.size() == 2);
  const std::string good = slurp(f.cache);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"truncated", good.substr(0, good.size() / 2)},
      {"empty", ""},
      {"garbage", "\x7f" "ELF\x01\x02 not json"},
      {"deeply nested", std::string(200000, '[') + std::string(200000, ']')},
      {"wrong shape", R"({"format":"edgert plugin scan cache","version":1,"edgert_version":")" +
                          json::parse(good).at("edgert_version").get<std::string>() + R"(","entries":[{"path":7}]})"},
      {"not a cache", R"({"hello":"world"})"},
  };
  for (const auto& [what, text] : bad) {
    INFO(what);
    spit(f.cache, text);
    edgert::testing::LogCapture logs;
    const auto scans = f.scan(started);
    CHECK(started.size() == 2);
    CHECK(accepted(scans).size() == 2);
    const auto warnings = logs.warnings();
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Contains(f.cache.string()) && Contains("scanned again"));
    (void)f.scan(started);  // rewritten whole
    CHECK(started.empty());
  }

  // Written by another version: ignored without a warning, then rewritten.
  json other = json::parse(good);
  other["edgert_version"] = "0.0.1-elsewhere";
  spit(f.cache, other.dump());
  {
    edgert::testing::LogCapture logs;
    (void)f.scan(started);
    CHECK(started.size() == 2);
    CHECK(logs.warnings().empty());
  }
  other = json::parse(good);
  other["version"] = 99;
  spit(f.cache, other.dump());
  (void)f.scan(started);
  CHECK(started.size() == 2);
  (void)f.scan(started);
  CHECK(started.empty());
}

TEST_CASE("a hostile scan cache cannot make a changed or an unallowed plugin skip its scan", "[plugins][scan_cache]") {
  Fixture f;
  std::vector<std::string> started;
  (void)f.scan(started);
  REQUIRE(started.size() == 2);
  const fs::path threshold = f.plugins / "threshold.so";
  const auto sha = edgert::detail::sha256_file_hex(threshold.string());
  REQUIRE(sha);

  SECTION("changed in place with its size, inode and mtime kept: the SHA-256 tells") {
    const auto mtime = fs::last_write_time(threshold);
    struct stat before{};
    REQUIRE(::stat(threshold.c_str(), &before) == 0);
    {
      std::fstream io(threshold, std::ios::binary | std::ios::in | std::ios::out);
      io.seekg(-1, std::ios::end);
      const char last = static_cast<char>(io.get());
      io.seekp(-1, std::ios::end);
      io.put(static_cast<char>(last ^ 0x5a));
    }
    fs::last_write_time(threshold, mtime);
    struct stat after{};
    REQUIRE(::stat(threshold.c_str(), &after) == 0);
    REQUIRE(after.st_ino == before.st_ino);
    REQUIRE(after.st_size == before.st_size);
    REQUIRE(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
    REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    const auto scans = f.scan(started);
    CHECK(started == std::vector<std::string>{"threshold.so"});
    for (const auto& s : scans) CHECK_FALSE((s.path == threshold.string() && s.cached));
  }

  SECTION("an entry rewritten to name the file's real SHA-256 with a forged signature: secured mode rescans") {
    json doc = json::parse(slurp(f.cache));
    bool forged = false;
    for (auto& e : doc.at("entries")) {
      if (fs::path(e.at("path").get<std::string>()).filename() == "threshold.so") {
        REQUIRE(e.at("sha256") == *sha);
        e["plugins"][0]["signature"] = "forged";
        forged = true;
      }
    }
    REQUIRE(forged);
    spit(f.cache, doc.dump());
    auto o = f.options();
    o.secured = true;
    o.allow = {{"threshold", *sha}};
    const auto scans = f.scan(started, o);
    CHECK(started == std::vector<std::string>{"record_counter.so", "threshold.so"});  // record_counter: not allowed
    CHECK(accepted(scans) == std::vector<std::string>{"threshold"});
  }

  SECTION("cached while unsecured, then secured without an allow entry: refused by a fresh scan") {
    auto o = f.options();
    o.secured = true;
    o.allow = {{"record_counter", *sha}};  // the wrong hash for it
    const auto scans = f.scan(started, o);
    CHECK(started.size() == 2);
    CHECK(accepted(scans).empty());
    for (const auto& s : scans) CHECK_THAT(s.reason, Contains("secured mode"));
  }
}
