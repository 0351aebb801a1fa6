// A C++ business plugin for tests/test_plugin_config.cpp: a typed config_schema with
// every kind of key, and ways to see the configuration from inside the plugin.
//   process({"get": "roi.y"}) emits "value" {"key", "found", "value"} through config_get;
//   process(anything else) emits "config" {"given": what create/update_config received,
//   "all": config_get("")}.
//   update_config throws (the host must keep the old configuration) when limit is 99.
//   start() starts a thread that reads config_get("") in a loop and counts the reads
//   whose "a" and "b" differ (the test's writer only ever sets them equal); every 64
//   changes of "a" it emits "progress" {"changes"}; stop() joins it and emits "reader"
//   {"reads", "torn", "changes", "updates", "errors"}.
// Built with CONFIG_READER_BAD_SCHEMA, its schema has a key without "type".
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using nlohmann::json;

class ConfigReader : public edgert::sdk::Plugin {
 public:
  ConfigReader(edgert::sdk::Host host, std::string_view config) : Plugin(host), given_(config) {}
  ~ConfigReader() override { join(); }

  void process(const edgert::sdk::Input& in) override {
    const json record = json::parse(in.record());
    if (record.contains("get")) {
      const auto key = record["get"].get<std::string>();
      const auto value = host().config(key);
      json out = {{"key", key}, {"found", value.has_value()}};
      if (value) out["value"] = json::parse(*value);
      host().emit("value", out.dump());
      return;
    }
    const auto all = host().config("");
    host().emit("config", json{{"given", json::parse(given_)},
                               {"all", all ? json::parse(*all) : json()},
                               {"in_update", json::parse(in_update_)}}
                              .dump());
  }

  bool update_config(std::string_view config) override {
    const json c = json::parse(config);
    if (c.value("limit", 0.0) == 99) throw std::runtime_error("refuses limit 99");
    given_ = std::string(config);
    const auto now = host().config("");  // the host publishes before calling: the new values
    in_update_ = now ? *now : std::string("null");
    updates_.fetch_add(1);
    return true;
  }

  void start() override {
    running_ = true;
    reader_ = std::thread([this] { read_loop(); });
  }

  void stop() override {
    join();
    host().emit("reader", json{{"reads", reads_},
                               {"torn", torn_},
                               {"changes", changes_},
                               {"updates", updates_.load()},
                               {"errors", errors_}}
                              .dump());
  }

 private:
  void read_loop() {
    std::int64_t last_a = -1;
    while (running_.load()) {
      const auto all = host().config("");
      if (!all) {
        ++errors_;
        continue;
      }
      const json c = json::parse(*all, nullptr, false);
      if (c.is_discarded() || !c.contains("a") || !c["a"].is_number_integer() || !c.contains("b") ||
          !c["b"].is_number_integer()) {
        ++errors_;
        continue;
      }
      const auto a = c["a"].get<std::int64_t>();
      ++reads_;
      if (a != c["b"].get<std::int64_t>()) ++torn_;
      if (a != last_a) {
        last_a = a;
        if (++changes_ % 64 == 0) host().emit("progress", json{{"changes", changes_}}.dump());
      }
    }
  }

  void join() {
    running_ = false;
    if (reader_.joinable()) reader_.join();
  }

  std::string given_;
  std::string in_update_ = "null";  // config_get("") as seen inside update_config()
  std::atomic<bool> running_{false};
  std::thread reader_;
  std::atomic<std::uint64_t> updates_{0};
  // Written by the reader thread only, read after join().
  std::uint64_t reads_ = 0, torn_ = 0, changes_ = 0, errors_ = 0;
};

#ifdef CONFIG_READER_BAD_SCHEMA
constexpr const char* kSchema = R"({"a": {"type": "integer"}, "limit": {"default": 3}})";
#else
constexpr const char* kSchema = R"({
  "a": {"type": "integer", "default": 0, "description": "first of a pair the race test keeps equal"},
  "b": {"type": "integer", "default": 0, "description": "second of the pair"},
  "mode": {"type": "string", "default": "fast", "enum": ["fast", "slow"], "description": "how hard to try"},
  "limit": {"type": "number", "default": 10, "minimum": 0, "maximum": 100, "description": "a bounded number"},
  "count": {"type": "integer", "default": 1, "minimum": 1},
  "enabled": {"type": "boolean", "default": true},
  "tags": {"type": "array", "default": ["x", "y"]},
  "extra": {"type": "object", "description": "free-form"},
  "roi": {"type": "object", "description": "region of interest", "properties": {
    "x": {"type": "integer", "default": 0},
    "y": {"type": "integer", "default": 0},
    "size": {"type": "object", "properties": {"w": {"type": "integer", "default": 640}, "h": {"type": "integer", "default": 480}}}
  }}
})";
#endif

}  // namespace

EDGERT_PLUGIN_CLASS(ConfigReader, EDGERT_KIND_BUSINESS, "config_reader", "1.0.0",
                    "shows its configuration; for tests", kSchema);
