// Real plugins (.so files built by this project) through the real loader.
#include <edgert/plugin_abi.h>
#include <edgert/plugin_host.hpp>

#include "plugin_recorder.hpp"
#include "plugins/sha256.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

using Catch::Contains;
using edgert::ErrorCode;
using edgert::PluginLoader;
using edgert::PluginLoaderOptions;
namespace fs = std::filesystem;

namespace {

const std::string kTest = EDGERT_TEST_PLUGIN_DIR;
const std::string kBundled = EDGERT_BUNDLED_PLUGIN_DIR;
const std::string kCrash = EDGERT_CRASH_PLUGIN_DIR;

PluginLoaderOptions only(std::vector<std::string> paths = {}) {
  PluginLoaderOptions o;
  o.search_paths = std::move(paths);
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}

using edgert::testing::Recorder;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("edgert-plugins-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name, const std::string& content) const {
    const auto p = (path / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

std::string refusal(PluginLoader& loader, const std::string& path) {
  auto r = loader.load(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(r.status().message(), Contains(path));
  return r.status().message();
}

edgert::PluginInput record(const std::string& json, const std::string& stream = "s1") {
  edgert::PluginInput in;
  in.stream = stream;
  in.record_json = json;
  return in;
}

}  // namespace

TEST_CASE("bundled plugins load from a search path and run", "[plugins]") {
  PluginLoader loader(only({kBundled}));
  CHECK(loader.load_all().empty());
  // The folder holds every bundled plugin built so far (issue 11 adds several): look
  // these three up by signature rather than by position and count.
  std::map<std::string, edgert::PluginInfo> by_signature;
  for (const auto& p : loader.plugins()) by_signature.emplace(p.signature, p);
  REQUIRE(by_signature.count("record_counter") == 1);
  REQUIRE(by_signature.count("test_pattern") == 1);
  REQUIRE(by_signature.count("threshold") == 1);
  CHECK(by_signature.at("record_counter").kind == edgert::PluginKind::business);
  CHECK(by_signature.at("record_counter").abi_version == EDGERT_ABI_VERSION);
  CHECK(by_signature.at("test_pattern").kind == edgert::PluginKind::capture);
  CHECK(by_signature.at("threshold").kind == edgert::PluginKind::business);

  auto sink = std::make_shared<Recorder>();
  auto counter = loader.create_instance("record_counter", "counter-1", R"({"every": 2})", sink);
  REQUIRE(counter.ok());
  auto& c = *counter.value();
  REQUIRE(c.start().ok());
  for (int i = 0; i < 4; ++i) REQUIRE(c.process(record("{}")).ok());
  REQUIRE(sink->emitted.size() == 2);
  CHECK(sink->emitted[1].first == "count");
  CHECK(sink->emitted[1].second["count"] == 4);
  CHECK(sink->emitted[1].second["stream"] == "s1");
  CHECK(c.update_config("{}").code() == ErrorCode::unsupported);  // the C plugin has none
  CHECK(c.stop().ok());
}

TEST_CASE("instance configuration: defaults, unknown keys, plugin validation", "[plugins]") {
  PluginLoader loader(only({kBundled}));
  REQUIRE(loader.load_all().empty());
  auto typo = loader.create_instance("threshold", "t1", R"({"limt": 3})", nullptr);
  REQUIRE_FALSE(typo.ok());
  CHECK_THAT(typo.status().message(),
             Contains("plugin 'threshold' instance 't1'") && Contains("unknown config key 'limt'") && Contains("limit"));
  auto bad = loader.create_instance("record_counter", "c1", R"({"every": 0})", nullptr);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Contains("create failed") && Contains("'every' must be a positive integer"));
  auto missing = loader.create_instance("nope", "x", "", nullptr);
  CHECK(missing.status().code() == ErrorCode::not_found);
  auto not_json = loader.create_instance("threshold", "t2", "[1,", nullptr);
  CHECK(not_json.status().code() == ErrorCode::invalid_argument);

  auto sink = std::make_shared<Recorder>();
  auto t = loader.create_instance("threshold", "t3", R"({"limit": 5})", sink);
  REQUIRE(t.ok());
  REQUIRE(t.value()->process(record(R"({"value": 3})")).ok());
  CHECK(sink->emitted.empty());
  REQUIRE(t.value()->process(record(R"({"value": 7.5})")).ok());
  REQUIRE(sink->emitted.size() == 1);
  CHECK(sink->last()["value"] == 7.5);
  REQUIRE(t.value()->update_config(R"({"limit": 8})").ok());  // applied in place
  REQUIRE(t.value()->process(record(R"({"value": 7.5})")).ok());
  CHECK(sink->emitted.size() == 1);
}

TEST_CASE("captured frames fan out by reference and outlive their producer", "[plugins]") {
  const auto live_before = edgert::Frame::live_frames();
  {
    PluginLoader loader(only({kBundled}));
    REQUIRE(loader.load_all().empty());
    REQUIRE(loader.load(kTest + "/frame_keeper.so").ok());
    auto sink = std::make_shared<Recorder>();
    auto cam = loader.create_instance("test_pattern", "cam", R"({"width": 32, "height": 8, "frames": 3})", sink);
    auto keeper = loader.create_instance("frame_keeper", "keeper", "", sink);
    auto thresh = loader.create_instance("threshold", "bright", R"({"limit": 0})", sink);
    REQUIRE(cam.ok());
    REQUIRE(keeper.ok());
    REQUIRE(thresh.ok());
    REQUIRE(cam.value()->start().ok());

    for (int i = 0; i < 3; ++i) {
      auto cap = cam.value()->capture();
      REQUIRE(cap.ok());
      edgert::PluginInput in;
      in.stream = "cam";
      in.frame = std::move(cap.value().frame);
      REQUIRE(in.frame);
      CHECK(in.frame.info().sequence == std::uint64_t(i + 1));
      const auto* pixels = in.frame.data();
      REQUIRE(keeper.value()->process(in).ok());  // retains it
      REQUIRE(thresh.value()->process(in).ok());  // borrows it
      CHECK(in.frame.data() == pixels);           // no copy anywhere
      CHECK(in.frame.use_count() == 2);           // ours + the keeper's
    }  // the producer's references are gone here
    CHECK(edgert::Frame::live_frames() == live_before + 3);
    auto end = cam.value()->capture();
    CHECK(end.status().code() == ErrorCode::end_of_stream);

    // The kept frames are still intact after their producer let go.
    REQUIRE(keeper.value()->process(record("{}", "cam")).ok());
    CHECK(sink->last()["kept"] == 3);
    CHECK(sink->last()["intact"] == true);
    REQUIRE(keeper.value()->process(record(R"({"release": true})", "cam")).ok());
    CHECK(sink->last()["kept"] == 0);
    CHECK(edgert::Frame::live_frames() == live_before);  // every buffer went back to the plugin
    CHECK(std::count_if(sink->emitted.begin(), sink->emitted.end(), [](auto& e) { return e.first == "event"; }) == 3);
  }
  CHECK(edgert::Frame::live_frames() == live_before);
}

TEST_CASE("a frame still held when the loader and instance are gone keeps its library mapped", "[plugins]") {
  edgert::Frame survivor;
  {
    PluginLoader loader(only({kBundled}));
    REQUIRE(loader.load_all().empty());
    auto cam = loader.create_instance("test_pattern", "cam", "", nullptr);
    REQUIRE(cam.ok());
    auto cap = cam.value()->capture();
    REQUIRE(cap.ok());
    survivor = cap.value().frame;
  }
  // The release callback lives in test_pattern.so: dropping the frame must not crash.
  CHECK(survivor.data()[0] == 235);  // the bar of the first frame
  CHECK(survivor.data()[1] == 16);
  survivor = edgert::Frame();
}

TEST_CASE("refusals name the file and the reason; the host keeps working", "[plugins]") {
  TempDir tmp;
  PluginLoader loader(only());
  CHECK_THAT(refusal(loader, tmp.file("notes.so", "just some text\n")), Contains("not an ELF file"));
  CHECK_THAT(refusal(loader, tmp.file("empty.so", "")), Contains("empty file"));
  CHECK_THAT(refusal(loader, (tmp.path / "absent.so").string()), Contains("no such file"));
  CHECK_THAT(refusal(loader, kTest + "/bad_no_entry.so"), Contains("no edgert_plugin_entry symbol"));
  CHECK_THAT(refusal(loader, kTest + "/bad_future_abi.so"),
             Contains("speaks no plugin ABI version in the host's range [1.0, 1.0]"));
  CHECK_THAT(refusal(loader, kTest + "/bad_future_answer.so"), Contains("answered ABI 2.0, outside the offered range"));
  CHECK_THAT(refusal(loader, kTest + "/bad_null_callback.so"),
             Contains("plugin 'no_process'") && Contains("null process callback"));
  CHECK_THAT(refusal(loader, kTest + "/bad_bad_signature.so"), Contains("invalid signature"));
  CHECK_THAT(refusal(loader, kTest + "/bad_newer_fields.so"), Contains("fields from a newer ABI"));

  // Loads after all those refusals still work, and load_all reports each bad file.
  CHECK(loader.load(kBundled + "/threshold.so").ok());
  PluginLoader all(only({kTest}));
  const auto refused = all.load_all();
  CHECK(refused.size() == 6);
  for (const auto& r : refused) CHECK_THAT(r.reason, Contains(r.path));
  std::vector<std::string> sigs;
  for (const auto& p : all.plugins()) sigs.push_back(p.signature);
  std::sort(sigs.begin(), sigs.end());
  CHECK(sigs == std::vector<std::string>{"abi_v1", "create_fails", "frame_keeper", "longer_zero", "short_descriptor"});
}

TEST_CASE("duplicate signatures are refused naming both files", "[plugins]") {
  TempDir tmp;
  const auto copy = (tmp.path / "threshold_copy.so").string();
  fs::copy_file(kBundled + "/threshold.so", copy);
  PluginLoader loader(only());
  REQUIRE(loader.load(kBundled + "/threshold.so").ok());
  const auto msg = refusal(loader, copy);
  CHECK_THAT(msg, Contains("duplicate signature 'threshold'") && Contains(kBundled + "/threshold.so"));
}

TEST_CASE("create failing and process throwing become errors, not crashes", "[plugins]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kTest + "/bad_create_fails.so").ok());
  REQUIRE(loader.load(kTest + "/frame_keeper.so").ok());
  auto failed = loader.create_instance("create_fails", "cam7", "", nullptr);
  REQUIRE_FALSE(failed.ok());
  CHECK_THAT(failed.status().message(), Contains("plugin 'create_fails' instance 'cam7': create failed (EDGERT_ERR_INVALID_ARGUMENT)") &&
                                            Contains("cannot open /dev/video7"));

  auto sink = std::make_shared<Recorder>();
  auto keeper = loader.create_instance("frame_keeper", "k", "", sink);
  REQUIRE(keeper.ok());
  const auto st = keeper.value()->process(record(R"({"throw": true})"));
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.message(), Contains("process failed (EDGERT_ERR_INTERNAL)") && Contains("asked to throw"));
  CHECK(keeper.value()->errors() == 1);
  CHECK(keeper.value()->process(record("{}")).ok());  // still usable
}

TEST_CASE("ABI compatibility: frozen v1 plugin, shorter and longer descriptors", "[plugins][abi]") {
  PluginLoader loader(only());
  auto v1 = loader.load(kTest + "/abi_v1.so");
  REQUIRE(v1.ok());
  CHECK(v1.value().abi_version == EDGERT_MAKE_VERSION(1, 0));
  auto sink = std::make_shared<Recorder>();
  auto inst = loader.create_instance("abi_v1", "old", "", sink);
  REQUIRE(inst.ok());
  REQUIRE(inst.value()->process(record("{}")).ok());
  CHECK(sink->last()["v1"] == true);

  REQUIRE(loader.load(kTest + "/good_short_descriptor.so").ok());  // zero-filled by the host
  auto shorter = loader.create_instance("short_descriptor", "s", "", nullptr);
  REQUIRE(shorter.ok());
  CHECK(shorter.value()->process(record("{}")).ok());
  CHECK(shorter.value()->update_config("{}").code() == ErrorCode::unsupported);  // the field it lacks
  CHECK(loader.load(kTest + "/good_longer_zero.so").ok());  // unknown trailing bytes are zero
}

TEST_CASE("secured mode loads only what plugins.allow lists with the right SHA-256", "[plugins]") {
  CHECK(edgert::detail::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(edgert::detail::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const auto digest = edgert::detail::sha256_file_hex(kBundled + "/threshold.so");
  REQUIRE(digest);

  auto opts = only();
  opts.secured = true;
  opts.allow = {{"threshold", *digest}};
  PluginLoader loader(opts);
  CHECK(loader.load(kBundled + "/threshold.so").ok());
  CHECK_THAT(refusal(loader, kBundled + "/record_counter.so"), Contains("is not in plugins.allow"));

  opts.allow = {{"record_counter", *digest}};  // right hash, listed under another signature
  PluginLoader wrong(opts);
  CHECK_THAT(refusal(wrong, kBundled + "/threshold.so"), Contains("no entry for 'threshold'"));
}

TEST_CASE("the isolated scanner survives a plugin that crashes on load", "[plugins]") {
  const auto scans = edgert::scan_plugins_isolated({kCrash, kBundled + "/threshold.so", kBundled + "/threshold.so"},
                                                   only());
  REQUIRE(scans.size() == 2);  // the same file given twice is scanned once (duplicates: test_plugin_paths)
  CHECK_FALSE(scans[0].accepted);
  CHECK_THAT(scans[0].reason, Contains("crashed while loading (signal 11, SIGSEGV"));
  CHECK(scans[1].accepted);
  CHECK(scans[1].info.signature == "threshold");
}

TEST_CASE("search paths: config first, then EDGERT_PLUGIN_PATH, then the defaults", "[plugins]") {
  ::setenv("EDGERT_PLUGIN_PATH", "/env/a:/env/b", 1);
  PluginLoaderOptions o;
  o.search_paths = {"/cfg"};
  const auto paths = PluginLoader(o).search_paths();
  ::unsetenv("EDGERT_PLUGIN_PATH");
  REQUIRE(paths.size() == 5);
  CHECK(paths[0] == "/cfg");
  CHECK(paths[1] == "/env/a");
  CHECK(paths[2] == "/env/b");
  CHECK(paths[3] == kBundled);
  CHECK_THAT(paths[4], Contains("edgert/plugins"));
}
