// ABI 1.0 decisions (docs/plugins.md "ABI 1.0 decisions"): negotiation, module state,
// plugin packs, the create-fails rule, host services that say why, status names and
// the C config helpers, each through real .so files and the real loader.
#include <edgert/mailbox.hpp>
#include <edgert/plugin_abi.h>
#include <edgert/plugin_host.hpp>

#include "log_capture.hpp"
#include "plugin_recorder.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

using Catch::Contains;
using edgert::ErrorCode;
using edgert::PluginLoader;
using edgert::PluginLoaderOptions;

namespace {

const std::string kAbi = EDGERT_ABI_PLUGIN_DIR;
const std::string kTest = EDGERT_TEST_PLUGIN_DIR;
const std::string kBundled = EDGERT_BUNDLED_PLUGIN_DIR;

PluginLoaderOptions only() {
  PluginLoaderOptions o;
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}

// The test's own reference to a plugin file: keeps it mapped (so its statics survive
// the loader unloading it) and reaches its test hooks.
struct Dl {
  void* h;
  explicit Dl(const std::string& path) : h(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    INFO(path << ": " << (h ? "" : ::dlerror()));
    REQUIRE(h != nullptr);
  }
  ~Dl() { ::dlclose(h); }
  Dl(const Dl&) = delete;
  Dl& operator=(const Dl&) = delete;
  template <class F>
  F* fn(const char* name) const {
    void* p = ::dlsym(h, name);
    INFO(name);
    REQUIRE(p != nullptr);
    return reinterpret_cast<F*>(p);
  }
};

using edgert::testing::Recorder;

using edgert::testing::LogCapture;

edgert::PluginInput record(const std::string& json) {
  edgert::PluginInput in;
  in.stream = "s1";
  in.record_json = json;
  return in;
}

edgert_host_offer offer(std::uint32_t lo, std::uint32_t hi) { return {sizeof(edgert_host_offer), lo, hi}; }

constexpr std::uint32_t V(std::uint32_t major, std::uint32_t minor) { return EDGERT_MAKE_VERSION(major, minor); }

}  // namespace

// ---- 1. negotiation ------------------------------------------------------------------

TEST_CASE("negotiation: a plugin answers whenever the offered range contains its version", "[plugins][abi]") {
  struct Row {
    std::uint32_t lo, hi;
    bool ok;
  };
  const std::vector<Row> matrix = {
      {V(1, 0), V(1, 0), true}, {V(1, 0), V(1, 5), true},  {V(1, 0), V(2, 0), true},
      {V(0, 9), V(1, 0), true}, {V(2, 0), V(2, 1), false},
  };
  Dl so(kBundled + "/record_counter.so");  // its entry was compiled from the same header
  auto* entry = so.fn<edgert_status(const edgert_host_offer*, const edgert_plugin_descriptor**)>(
      EDGERT_PLUGIN_ENTRY_SYMBOL);
  for (const auto& row : matrix) {
    INFO("offer [" << (row.lo >> 16) << "." << (row.lo & 0xFFFF) << ", " << (row.hi >> 16) << "."
                   << (row.hi & 0xFFFF) << "]");
    const auto o = offer(row.lo, row.hi);
    CHECK(edgert_negotiate_version(&o) == (row.ok ? EDGERT_ABI_VERSION : 0u));
    const edgert_plugin_descriptor* d = nullptr;
    const edgert_status st = entry(&o, &d);
    if (row.ok) {
      CHECK(st == EDGERT_OK);
      REQUIRE(d != nullptr);
      CHECK(d->abi_version == EDGERT_ABI_VERSION);
    } else {
      CHECK(st == EDGERT_ERR_UNSUPPORTED);
      CHECK(d == nullptr);
    }
  }
  const edgert_host_offer truncated{sizeof(std::uint32_t), V(1, 0), V(1, 0)};
  CHECK(edgert_negotiate_version(&truncated) == 0);
  CHECK(edgert_negotiate_version(nullptr) == 0);
}

// ---- status names -----------------------------------------------------------------------

TEST_CASE("every status code has a name; failures are reported by name", "[plugins][abi]") {
  CHECK(std::string(edgert_status_name(EDGERT_OK)) == "EDGERT_OK");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_INVALID_ARGUMENT)) == "EDGERT_ERR_INVALID_ARGUMENT");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_UNSUPPORTED)) == "EDGERT_ERR_UNSUPPORTED");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_NO_MEMORY)) == "EDGERT_ERR_NO_MEMORY");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_INTERNAL)) == "EDGERT_ERR_INTERNAL");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_NOT_FOUND)) == "EDGERT_ERR_NOT_FOUND");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_AGAIN)) == "EDGERT_ERR_AGAIN");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_END_OF_STREAM)) == "EDGERT_ERR_END_OF_STREAM");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_BUFFER_TOO_SMALL)) == "EDGERT_ERR_BUFFER_TOO_SMALL");
  CHECK(std::string(edgert_status_name(EDGERT_ERR_WRONG_TYPE)) == "EDGERT_ERR_WRONG_TYPE");
  CHECK(EDGERT_ERR_WRONG_TYPE == -9);
  CHECK(std::string(edgert_status_name(42)) == "EDGERT_ERR_(unknown)");

  PluginLoader loader(only());
  REQUIRE(loader.load(kAbi + "/host_errors.so").ok());
  auto inst = loader.create_instance("host_errors", "h1", "", nullptr);
  REQUIRE(inst.ok());
  auto& h = *inst.value();
  CHECK_THAT(h.process(record(R"("return_too_small")")).message(),
             Contains("plugin 'host_errors' instance 'h1': process failed (EDGERT_ERR_BUFFER_TOO_SMALL)"));
  CHECK_THAT(h.process(record(R"("return_42")")).message(), Contains("process failed (status 42)"));
}

// ---- 5. host services say why --------------------------------------------------------------

TEST_CASE("host services refuse bad calls with a reason naming plugin, instance and call", "[plugins][abi]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kAbi + "/host_errors.so").ok());
  auto sink = std::make_shared<Recorder>();
  auto inst = loader.create_instance("host_errors", "h1", "", sink);
  REQUIRE(inst.ok());
  auto& h = *inst.value();
  LogCapture logs;

  REQUIRE(h.process(record(R"("emit_ok")")).ok());  // a dotted, dashed type with digits is fine
  REQUIRE(sink->size() == 1);

  struct Case {
    const char* call;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"emit_null_type", "[host_errors/h1] emit(NULL): payload_type is NULL"},
      {"emit_empty_type", "[host_errors/h1] emit(''): payload_type is empty"},
      {"emit_bad_type", "[host_errors/h1] emit('Bad Type\\x0a'): payload_type must be 1-64 characters of [a-z0-9_.-]"},
      {"emit_digit_type", "[host_errors/h1] emit('1event'): payload_type must be 1-64 characters of [a-z0-9_.-] "
                          "starting with a letter"},
      {"emit_long_type", "[host_errors/h1] emit('a2345678901234567890123456789012345678901234567890123456789012345'): "
                         "payload_type must be 1-64 characters of [a-z0-9_.-] starting with a letter (got 65 characters)"},
      {"emit_null_json", "[host_errors/h1] emit('event'): json is NULL with len 2"},
      {"emit_bad_json", "[host_errors/h1] emit('event'): payload is not valid JSON"},
      {"emit_trailing", "[host_errors/h1] emit('event'): payload is not valid JSON (a NUL byte at offset 2)"},
      {"emit_bom", "[host_errors/h1] emit('event'): payload is not valid JSON (it starts with a UTF-8 byte order mark)"},
      {"emit_over_limit", "[host_errors/h1] emit('big'): payload of 1048577 bytes is over the limit of 1048576 bytes"},
      {"emit_too_deep", "[host_errors/h1] emit('event'): payload nests arrays/objects deeper than the limit of 64 "
                        "(the mailbox's max_json_depth)"},
      {"emit_50mb", "[host_errors/h1] emit('big'): payload of 52428800 bytes is over the limit of 1048576 bytes"},
      {"notify_null", "[host_errors/h1] notify: message is NULL"},
      {"notify_bad_level", "[host_errors/h1] notify: unknown level 99"},
      {"config_null_key", "[host_errors/h1] config_get: key is NULL"},
  };
  for (const auto& c : cases) {
    INFO(c.call);
    logs.sink->clear();
    const auto st = h.process(record(std::string("\"") + c.call + "\""));
    REQUIRE_FALSE(st.ok());
    CHECK_THAT(st.message(), Contains("plugin 'host_errors' instance 'h1': process failed "
                                      "(EDGERT_ERR_INVALID_ARGUMENT)"));
    // The Status carries the reason without the "[sig/instance] " prefix the log line has.
    std::string reason = c.reason;
    if (reason.rfind("[host_errors/h1] ", 0) == 0) reason = reason.substr(17);
    CHECK_THAT(st.message(), Contains(reason));
    const auto errors = logs.errors();
    CHECK(std::count_if(errors.begin(), errors.end(),
                        [&](const std::string& l) { return l.find(c.reason) != std::string::npos; }) == 1);
  }
  CHECK(sink->size() == 1);  // nothing refused reached the sink
  // Each case: one refused host call, counted, and the process() that returned its error.
  CHECK(h.errors() == 2 * cases.size());

  // NULL ctx: no instance to name.
  const std::vector<std::pair<std::string, std::string>> null_ctx = {
      {"emit_null_ctx", "emit"}, {"notify_null_ctx", "notify"}, {"config_null_ctx", "config_get"}};
  for (const auto& [call, service] : null_ctx) {
    INFO(call);
    logs.sink->clear();
    CHECK_FALSE(h.process(record("\"" + call + "\"")).ok());
    const auto errors = logs.errors();
    CHECK(std::count(errors.begin(), errors.end(), "plugin called " + service + " with a NULL ctx") == 1);
  }

  // The limit is the mailbox's: a payload of exactly max_payload_bytes passes.
  CHECK(PluginLoaderOptions{}.max_payload_bytes == edgert::MailboxOptions{}.max_payload_bytes);
  CHECK(h.process(record(R"("emit_at_limit")")).ok());
  CHECK(sink->size() == 2);
  // And the mailbox's nesting limit: 64 levels pass, as they do in Mailbox::send.
  CHECK(PluginLoaderOptions{}.max_json_depth == edgert::MailboxOptions{}.max_json_depth);
  CHECK(h.process(record(R"("emit_deep_ok")")).ok());
  CHECK(sink->size() == 3);
}

TEST_CASE("the payload limit comes from PluginLoaderOptions::max_payload_bytes", "[plugins][abi]") {
  auto o = only();
  o.max_payload_bytes = 100;
  PluginLoader loader(o);
  REQUIRE(loader.load(kAbi + "/host_errors.so").ok());
  auto inst = loader.create_instance("host_errors", "small", "", nullptr);
  REQUIRE(inst.ok());
  CHECK(inst.value()->process(record(R"("emit_ok")")).ok());
  CHECK_THAT(inst.value()->process(record(R"("emit_at_limit")")).message(),
             Contains("payload of 1048576 bytes is over the limit of 100 bytes"));
}

// ---- create-fails rule ----------------------------------------------------------------------

TEST_CASE("create failing after setting *instance: the host destroys that instance once", "[plugins][abi]") {
  Dl so(kAbi + "/bad_create_fails_late.so");
  auto* destroyed = so.fn<int()>("bad_plugins_destroyed");
  PluginLoader loader(only());
  REQUIRE(loader.load(kAbi + "/bad_create_fails_late.so").ok());
  const int before = destroyed();
  auto r = loader.create_instance("create_fails_late", "m1", "", nullptr);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Contains("plugin 'create_fails_late' instance 'm1': create failed "
                                            "(EDGERT_ERR_NO_MEMORY): model file is truncated"));
  CHECK(destroyed() == before + 1);
}

// ---- pre-release descriptors ------------------------------------------------------------------

TEST_CASE("a pre-release descriptor (ending at update_config) loads, zero-filled, and its create works",
          "[plugins][abi]") {
  PluginLoader loader(only());
  // Beyond its struct_size the file holds a module_init that would refuse it and a
  // `next` looping back: neither may be read.
  auto info = loader.load(kAbi + "/good_prerelease.so");
  REQUIRE(info.ok());
  REQUIRE(loader.plugins().size() == 1);
  auto sink = std::make_shared<Recorder>();
  auto inst = loader.create_instance("prerelease", "old", R"({"limit": 5})", sink);
  REQUIRE(inst.ok());
  REQUIRE(inst.value()->process(record("{}")).ok());
  REQUIRE(sink->size() == 1);
  CHECK(sink->last() == nlohmann::json{{"limit", 5}});  // create() got the config in the old argument slot

  // Its plain-defaults schema ({"limit": 3}) is read with types taken from the defaults.
  CHECK(nlohmann::json::parse(info->config_schema) == nlohmann::json::parse(R"({"limit": {"type": "number", "default": 3}})"));
  auto defaults = loader.create_instance("prerelease", "old2", "", sink);
  REQUIRE(defaults.ok());
  REQUIRE(defaults.value()->process(record("{}")).ok());
  CHECK(sink->last() == nlohmann::json{{"limit", 3}});
  auto wrong = loader.create_instance("prerelease", "old3", R"({"limit": "x"})", sink);
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.status().message(), Contains("config key 'limit': expected number, got string"));
}

TEST_CASE("loading a file already loaded (a pack, another spelling of its path) is not a duplicate",
          "[plugins][abi]") {
  LogCapture logs;
  PluginLoader loader(only());
  REQUIRE(loader.load(kAbi + "/pack_ok.so").ok());
  auto again = loader.load(kAbi + "/./pack_ok.so");
  REQUIRE(again.ok());
  CHECK(again->signature == "pack_a");
  CHECK(loader.plugins().size() == 2);
  CHECK(logs.errors().empty());
}

// ---- 2. module state and packs ------------------------------------------------------------------

TEST_CASE("a pack: two plugins from one library share one module_init / module_deinit", "[plugins][abi]") {
  Dl so(kAbi + "/pack_ok.so");
  auto* counters = so.fn<void(int*, int*, int*, int*)>("pack_counters");
  int init = 0, deinit = 0, created = 0, destroyed = 0;
  counters(&init, &deinit, &created, &destroyed);
  REQUIRE(init == 0);

  LogCapture logs;
  auto sink = std::make_shared<Recorder>();
  std::unique_ptr<edgert::PluginInstance> a, b;
  {
    PluginLoader loader(only());
    auto info = loader.load(kAbi + "/pack_ok.so");
    REQUIRE(info.ok());
    const auto plugins = loader.plugins();
    REQUIRE(plugins.size() == 2);
    CHECK(plugins[0].signature == "pack_a");
    CHECK(plugins[1].signature == "pack_b");
    CHECK(plugins[0].path == plugins[1].path);
    CHECK(plugins[1].description == "second plugin of the pack");
    counters(&init, &deinit, &created, &destroyed);
    CHECK(init == 1);

    auto ra = loader.create_instance("pack_a", "a1", "", sink);
    auto rb = loader.create_instance("pack_b", "b1", "", sink);
    REQUIRE(ra.ok());
    REQUIRE(rb.ok());
    a = std::move(ra.value());
    b = std::move(rb.value());
    REQUIRE(a->process(record("{}")).ok());
    REQUIRE(b->process(record("{}")).ok());
  }  // the loader is gone; the instances keep the library
  REQUIRE(sink->size() == 2);
  CHECK(sink->emitted[0].second["module"] != 0);
  CHECK(sink->emitted[0].second["module"] == sink->emitted[1].second["module"]);
  counters(&init, &deinit, &created, &destroyed);
  CHECK(init == 1);
  CHECK(created == 2);
  CHECK(deinit == 0);

  a.reset();
  counters(&init, &deinit, &created, &destroyed);
  CHECK(destroyed == 1);
  CHECK(deinit == 0);  // b is still alive
  b.reset();
  counters(&init, &deinit, &created, &destroyed);
  CHECK(destroyed == 2);
  CHECK(deinit == 1);  // once, with the pointer module_init set (a wrong one counts 2)
  CHECK(init == 1);

  const auto infos = logs.sink->at(spdlog::level::info);
  CHECK(std::count_if(infos.begin(), infos.end(), [](const std::string& l) {
          return l.find("[pack_a/(module)] model loaded once") != std::string::npos;
        }) == 1);
}

TEST_CASE("pack refusals: module_init failing, duplicates, late module_init, loops", "[plugins][abi]") {
  PluginLoader loader(only());
  auto failed = loader.load(kAbi + "/pack_init_fails.so");
  REQUIRE_FALSE(failed.ok());
  CHECK_THAT(failed.status().message(),
             Contains(kAbi + "/pack_init_fails.so") &&
                 Contains("module_init failed (EDGERT_ERR_NOT_FOUND): cannot load model /nonexistent/model.onnx"));

  auto dup = loader.load(kAbi + "/pack_duplicate.so");
  REQUIRE_FALSE(dup.ok());
  CHECK_THAT(dup.status().message(), Contains("duplicate signature 'pack_dup' inside the pack"));

  auto late = loader.load(kAbi + "/pack_late_init.so");
  REQUIRE_FALSE(late.ok());
  CHECK_THAT(late.status().message(),
             Contains("plugin 'pack_bad_b': module_init/module_deinit are only read from the first descriptor"));

  auto loop = loader.load(kAbi + "/pack_loop.so");
  REQUIRE_FALSE(loop.ok());
  CHECK_THAT(loop.status().message(), Contains("descriptor list loops back"));
  CHECK(loader.plugins().empty());  // nothing of a refused pack stays loaded
}

TEST_CASE("the isolated scanner lists every plugin of a pack", "[plugins][abi]") {
  const auto scans = edgert::scan_plugins_isolated({kAbi + "/pack_ok.so", kAbi + "/pack_init_fails.so"}, only());
  REQUIRE(scans.size() == 3);
  CHECK(scans[0].accepted);
  CHECK(scans[0].info.signature == "pack_a");
  CHECK(scans[1].accepted);
  CHECK(scans[1].info.signature == "pack_b");
  CHECK(scans[1].path == kAbi + "/pack_ok.so");
  CHECK_FALSE(scans[2].accepted);
  CHECK_THAT(scans[2].reason, Contains("cannot load model"));
}

TEST_CASE("C++ SDK: a module class built once and reached by every instance", "[plugins][abi]") {
  Dl so(kAbi + "/cpp_module.so");
  auto* counters = so.fn<void(int*, int*)>("cpp_module_counters");
  int made = 0, gone = 0;
  auto sink = std::make_shared<Recorder>();
  {
    PluginLoader loader(only());
    REQUIRE(loader.load(kAbi + "/cpp_module.so").ok());
    auto x = loader.create_instance("cpp_module", "x", "", sink);
    auto y = loader.create_instance("cpp_module", "y", "", sink);
    REQUIRE(x.ok());
    REQUIRE(y.ok());
    REQUIRE(x.value()->process(record("{}")).ok());
    REQUIRE(y.value()->process(record("{}")).ok());
    counters(&made, &gone);
    CHECK(made == 1);
    CHECK(gone == 0);
  }
  counters(&made, &gone);
  CHECK(made == 1);
  CHECK(gone == 1);
  REQUIRE(sink->size() == 2);
  CHECK(sink->emitted[0].second["module"] == sink->emitted[1].second["module"]);
  CHECK(sink->emitted[0].second["loads"] == 1);
}

// ---- 4. config helpers ----------------------------------------------------------------------

TEST_CASE("plugin_config.h: typed reads with distinct not-found and wrong-type codes", "[plugins][abi]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kAbi + "/config_helpers.so").ok());
  auto sink = std::make_shared<Recorder>();
  const char* config = R"({"roi": {"x": 5, "w": 1.5}, "neg": -9223372036854775808, "big": 9223372036854775808,
    "huge": 1e308, "flag": true, "off": false, "name": "cam \"A\"\\\n\u00e9\ud83d\ude00", "num_text": "12",
    "list": [1, 2], "nul": "a\u0000b", "long": "abcd", "short": "abc", "nothing": null})";
  auto inst = loader.create_instance("config_helpers", "c", config, sink);
  REQUIRE(inst.ok());
  auto read = [&](const std::string& what) {
    INFO(what);
    REQUIRE(inst.value()->process(record("\"" + what + "\"")).ok());
    return sink->last();
  };
  auto status = [&](const std::string& what) { return read(what)["status"].get<std::string>(); };

  auto x = read("int roi.x");
  CHECK(x["status"] == "EDGERT_OK");
  CHECK(x["value"] == 5);
  CHECK(read("int neg")["value"] == INT64_MIN);
  CHECK(status("int big") == "EDGERT_ERR_WRONG_TYPE");  // past int64
  CHECK(status("int roi.w") == "EDGERT_ERR_WRONG_TYPE");  // 1.5
  CHECK(status("int num_text") == "EDGERT_ERR_WRONG_TYPE");  // a string
  CHECK(status("int roi") == "EDGERT_ERR_WRONG_TYPE");  // an object
  CHECK(status("int nothing") == "EDGERT_ERR_WRONG_TYPE");
  CHECK(status("int roi.y") == "EDGERT_ERR_NOT_FOUND");
  CHECK(status("int absent") == "EDGERT_ERR_NOT_FOUND");

  auto w = read("double roi.w");
  CHECK(w["status"] == "EDGERT_OK");
  CHECK(w["value"] == 1.5);
  CHECK(read("double roi.x")["value"] == 5.0);
  CHECK(read("double huge")["value"] == 1e308);
  CHECK(status("double flag") == "EDGERT_ERR_WRONG_TYPE");
  CHECK(status("double list") == "EDGERT_ERR_WRONG_TYPE");

  CHECK(read("bool flag")["value"] == 1);
  CHECK(read("bool off")["value"] == 0);
  CHECK(status("bool roi.x") == "EDGERT_ERR_WRONG_TYPE");
  CHECK(status("bool absent") == "EDGERT_ERR_NOT_FOUND");

  auto name = read("string name");
  CHECK(name["status"] == "EDGERT_OK");
  // cam "A"\<LF>é😀 as UTF-8 bytes
  CHECK(name["value"] == "63616d20224122" "5c" "0a" "c3a9" "f09f9880");
  CHECK(read("string num_text")["value"] == "3132");
  CHECK(status("string roi.x") == "EDGERT_ERR_WRONG_TYPE");
  CHECK(status("string list") == "EDGERT_ERR_WRONG_TYPE");
  CHECK(status("string absent") == "EDGERT_ERR_NOT_FOUND");
  CHECK(status("string nul") == "EDGERT_ERR_INVALID_ARGUMENT");
  auto fits = read("string4 short");
  CHECK(fits["status"] == "EDGERT_OK");
  CHECK(fits["value"] == "616263");
  auto too_long = read("string4 long");
  CHECK(too_long["status"] == "EDGERT_ERR_BUFFER_TOO_SMALL");
  CHECK(too_long["value"] == "");
}
