// Typed config schemas (docs/plugins.md, "Configuration schema"): the schema parser
// and validator directly, then instance configuration through the real loader and
// the config_reader test plugin, including update_config racing config_get.
#include <edgert/plugin_host.hpp>

#include "plugins/config_schema.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

using Catch::Contains;
using edgert::ErrorCode;
using edgert::PluginLoader;
using edgert::PluginLoaderOptions;
using nlohmann::json;
namespace detail = edgert::detail;

namespace {

const std::string kDir = EDGERT_CONFIG_PLUGIN_DIR;

PluginLoaderOptions only() {
  PluginLoaderOptions o;
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}

std::string schema_error(const std::string& text) { return detail::parse_config_schema(text).error; }

detail::ConfigSchema schema(const std::string& text) {
  auto p = detail::parse_config_schema(text);
  INFO(p.error);
  REQUIRE(p.error.empty());
  return p.schema;
}

std::vector<std::string> errors_of(const detail::ConfigSchema& s, json config) {
  std::vector<std::string> errors;
  detail::validate_config(s, config, errors);
  return errors;
}

struct Recorder : edgert::PluginSink {
  std::mutex mu;
  std::vector<std::pair<std::string, json>> emitted;
  std::uint64_t progress = 0;  // the reader thread's change count, from its "progress" emits
  void on_emit(const std::string&, std::string_view type, std::string_view text) override {
    std::lock_guard lk(mu);
    emitted.emplace_back(std::string(type), json::parse(text));
    if (type == "progress") progress = emitted.back().second["changes"].get<std::uint64_t>();
  }
  json last(const std::string& type) {
    std::lock_guard lk(mu);
    for (auto it = emitted.rbegin(); it != emitted.rend(); ++it) {
      if (it->first == type) return it->second;
    }
    return {};
  }
  std::uint64_t changes() {
    std::lock_guard lk(mu);
    return progress;
  }
};

edgert::PluginInput record(const json& r) {
  edgert::PluginInput in;
  in.stream = std::string("s");  // a move, not assign(const char*): gcc 12 -O3 reports a false -Wrestrict there
  in.record_json = r.dump();
  return in;
}

// What the instance sees: {"given": its create/update_config argument, "all": config_get("")}.
json seen(edgert::PluginInstance& inst, Recorder& sink) {
  REQUIRE(inst.process(record(json::object())).ok());
  return sink.last("config");
}

json get(edgert::PluginInstance& inst, Recorder& sink, const std::string& key) {
  REQUIRE(inst.process(record({{"get", key}})).ok());
  return sink.last("value");
}

}  // namespace

TEST_CASE("config_schema: malformed schemas are refused naming the key", "[plugins][config]") {
  CHECK(schema_error(R"({"limit": 10})") ==
        "config_schema key 'limit': \"type\" missing (config_schema maps each key to {\"type\": ..., \"default\": ...})");
  CHECK(schema_error(R"({"limit": {"type": "float"}})") ==
        "config_schema key 'limit': unknown type \"float\" (boolean, integer, number, string, array, object)");
  CHECK(schema_error(R"({"limit": {"type": "integer", "defualt": 1}})") ==
        "config_schema key 'limit': unknown attribute \"defualt\" (type, default, minimum, maximum, enum, description, "
        "properties)");
  CHECK(schema_error(R"({"limit": {"type": "integer", "default": 500, "maximum": 100}})") ==
        "config_schema key 'limit': the default does not fit: 500 is above the maximum 100");
  CHECK(schema_error(R"({"n": {"type": "integer", "default": "5"}})") ==
        "config_schema key 'n': the default does not fit: expected integer, got string \"5\"");
  CHECK(schema_error(R"({"mode": {"type": "string", "default": "x", "enum": ["a", "b"]}})") ==
        "config_schema key 'mode': the default does not fit: \"x\" is not one of \"a\", \"b\"");
  CHECK(schema_error(R"({"roi": {"type": "object", "properties": {"x": {"default": 1}}}})") ==
        "config_schema key 'roi.x': \"type\" missing (config_schema maps each key to {\"type\": ..., \"default\": "
        "...})");
  CHECK(schema_error(R"({"roi": {"type": "object", "properties": {"x": {"type": "integer"}}, "default": {"z": 1}}})") ==
        "config_schema key 'roi': the default does not fit: unknown config key 'z' (known: x)");
  CHECK_THAT(schema_error(R"({"s": {"type": "string", "minimum": 1}})"),
             Contains("key 's': \"minimum\" applies to integer and number keys only"));
  CHECK_THAT(schema_error(R"({"n": {"type": "number", "minimum": 5, "maximum": 1}})"),
             Contains("key 'n': minimum 5 is above maximum 1"));
  CHECK_THAT(schema_error(R"({"t": {"type": "array", "enum": [[1]]}})"), Contains("key 't': \"enum\" applies to"));
  CHECK_THAT(schema_error(R"({"e": {"type": "integer", "enum": []}})"), Contains("\"enum\" must be a non-empty array"));
  CHECK_THAT(schema_error(R"({"e": {"type": "integer", "enum": [1, "2"]}})"),
             Contains("key 'e': enum value does not fit: expected integer, got string \"2\""));
  CHECK_THAT(schema_error(R"({"d": {"type": "integer", "description": "two\nlines"}})"),
             Contains("key 'd': \"description\" must be one line"));
  CHECK_THAT(schema_error(R"({"a.b": {"type": "integer"}})"), Contains("key 'a.b': a key name may not contain '.'"));
  CHECK_THAT(schema_error(R"({"n": {"type": "integer", "properties": {}}})"),
             Contains("key 'n': \"properties\" applies to object keys only"));
  CHECK(schema_error("[1]") ==
        "config_schema is not a JSON object (config_schema maps each key to {\"type\": ..., \"default\": ...})");
  CHECK(schema_error("{") == "config_schema is not valid JSON");
  // A key name that would forge log text is shown escaped.
  CHECK_THAT(schema_error("{\"bad\\nkey\": 1}"), Contains("key 'bad\\x0akey'"));
}

TEST_CASE("config_schema: depth, size and key-count limits", "[plugins][config]") {
  // 17 levels of nested properties.
  std::string deep = R"({"type": "integer"})";
  for (int i = 0; i < 17; ++i) deep = R"({"type": "object", "properties": {"k": )" + deep + "}}";
  CHECK_THAT(schema_error(R"({"k": )" + deep + "}"), Contains("nested deeper than"));
  std::string ok = R"({"type": "integer", "default": 1})";
  for (int i = 0; i < 14; ++i) ok = R"({"type": "object", "properties": {"k": )" + ok + "}}";
  CHECK(schema_error(R"({"k": )" + ok + "}").empty());

  // A default of 20,000 nested arrays is refused before anything recursive sees it.
  const std::string arrays = std::string(20000, '[') + std::string(20000, ']');
  CHECK(schema_error(R"({"t": {"type": "array", "default": )" + arrays + "}}") ==
        "config_schema is nested deeper than 40 levels");

  std::string big = R"({"s": {"type": "string", "default": ")" + std::string(70000, 'x') + "\"}}";
  CHECK_THAT(schema_error(big), Contains("bytes (limit 65536)"));

  std::string many = "{";
  for (int i = 0; i < 1100; ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\": {\"type\": \"boolean\"}";
  many += "}";
  CHECK(schema_error(many) == "config_schema has more than 1024 keys");

  std::string error;
  CHECK_FALSE(detail::parse_config_object(std::string(100, '[') + std::string(100, ']'), error));
  CHECK(error == "configuration is nested deeper than 64 levels");
  CHECK_FALSE(detail::parse_config_object("[1]", error));
  CHECK(error == "configuration is not a JSON object (got array)");
}

TEST_CASE("config_schema: types, integers written as 1.0, ranges and enums", "[plugins][config]") {
  const auto s = schema(R"({
    "i": {"type": "integer", "minimum": -5, "maximum": 5},
    "n": {"type": "number", "minimum": 0.5},
    "b": {"type": "boolean"}, "s": {"type": "string", "enum": ["a", "b"]},
    "arr": {"type": "array"}, "free": {"type": "object"}})");
  json c = {{"i", 2.0}, {"n", 3}, {"b", false}, {"s", "a"}, {"arr", json::array()}, {"free", {{"any", {1, 2}}}}};
  std::vector<std::string> errors;
  detail::validate_config(s, c, errors);
  CHECK(errors.empty());
  CHECK(c["i"].is_number_integer());  // 2.0 became 2
  CHECK(c["i"] == 2);

  CHECK(errors_of(s, {{"i", 1.5}}) == std::vector<std::string>{"config key 'i': expected integer, got number 1.5"});
  CHECK(errors_of(s, {{"i", 6}}) == std::vector<std::string>{"config key 'i': 6 is above the maximum 5"});
  CHECK(errors_of(s, {{"i", -6}}) == std::vector<std::string>{"config key 'i': -6 is below the minimum -5"});
  CHECK(errors_of(s, {{"n", 0.25}}) == std::vector<std::string>{"config key 'n': 0.25 is below the minimum 0.5"});
  CHECK(errors_of(s, {{"n", "1"}}) == std::vector<std::string>{"config key 'n': expected number, got string \"1\""});
  CHECK(errors_of(s, {{"b", 1}}) == std::vector<std::string>{"config key 'b': expected boolean, got number 1"});
  CHECK(errors_of(s, {{"s", "c"}}) == std::vector<std::string>{"config key 's': \"c\" is not one of \"a\", \"b\""});
  CHECK(errors_of(s, {{"arr", {{"k", 1}}}}) ==
        std::vector<std::string>{"config key 'arr': expected array, got object {\"k\":1}"});
  CHECK(errors_of(s, {{"free", nullptr}}) == std::vector<std::string>{"config key 'free': expected object, got null null"});
  CHECK(errors_of(s, {{"i", 1}, {"x", 1}}) ==
        std::vector<std::string>{"unknown config key 'x' (known: arr, b, free, i, n, s)"});
  // Every problem is reported, not only the first.
  CHECK(errors_of(s, {{"i", 9}, {"b", "no"}, {"zz", 0}}).size() == 3);

  // A declared empty schema takes no keys; no schema at all takes any object.
  CHECK(errors_of(schema("{}"), {{"k", 1}}) == std::vector<std::string>{"unknown config key 'k' (known: none)"});
  CHECK(errors_of(detail::ConfigSchema{}, {{"k", 1}}).empty());
}

TEST_CASE("config_schema: defaults and the deep merge", "[plugins][config]") {
  const auto s = schema(R"({
    "roi": {"type": "object", "properties": {"x": {"type": "integer", "default": 0}, "y": {"type": "integer", "default": 0},
            "size": {"type": "object", "properties": {"w": {"type": "integer", "default": 640}}}}},
    "tags": {"type": "array", "default": ["a", "b"]},
    "free": {"type": "object", "default": {"p": 1, "q": 2}},
    "nodefault": {"type": "string"}})");
  const json defaults = detail::schema_defaults(s);
  CHECK(defaults == json::parse(R"({"roi": {"x": 0, "y": 0, "size": {"w": 640}}, "tags": ["a", "b"],
                                    "free": {"p": 1, "q": 2}})"));
  const json merged = detail::merge_config(s, defaults, json::parse(R"({"roi": {"x": 5, "size": {}}, "tags": ["c"],
                                                                        "free": {"p": 9}})"));
  CHECK(merged == json::parse(R"({"roi": {"x": 5, "y": 0, "size": {"w": 640}}, "tags": ["c"], "free": {"p": 9}})"));
  // Without a declared schema, each given key replaces its value whole.
  CHECK(detail::merge_config({}, json::parse(R"({"roi": {"x": 0, "y": 0}})"), json::parse(R"({"roi": {"x": 5}})")) ==
        json::parse(R"({"roi": {"x": 5}})"));
}

TEST_CASE("describe_config_schema: one row per key, nested keys as dot paths", "[plugins][config]") {
  auto rows = edgert::describe_config_schema(R"({
    "mode": {"type": "string", "default": "fast", "enum": ["fast", "slow"], "description": "how hard"},
    "limit": {"type": "number", "default": 10, "minimum": 0, "maximum": 100},
    "min_only": {"type": "integer", "minimum": 1}, "max_only": {"type": "number", "maximum": 2.5},
    "roi": {"type": "object", "properties": {"x": {"type": "integer", "default": 0}}}})");
  REQUIRE(rows.ok());
  const auto& r = rows.value();
  REQUIRE(r.size() == 6);
  CHECK(r[0].key == "limit");
  CHECK(r[0].type == "number");
  CHECK(r[0].default_json == "10");
  CHECK(r[0].range == "[0, 100]");
  CHECK(r[1].key == "max_only");
  CHECK(r[1].range == "<= 2.5");
  CHECK(r[2].range == ">= 1");
  CHECK(r[2].default_json.empty());
  CHECK(r[3].key == "mode");
  CHECK(r[3].range == "one of \"fast\", \"slow\"");
  CHECK(r[3].description == "how hard");
  CHECK(r[4].key == "roi");
  CHECK(r[5].key == "roi.x");
  CHECK(r[5].default_json == "0");
  CHECK(edgert::describe_config_schema("").value().empty());
  auto bad = edgert::describe_config_schema(R"({"x": 1})");
  CHECK(bad.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(bad.status().message(), Contains("config_schema key 'x': \"type\" missing"));
}

TEST_CASE("loader: a plugin whose schema is malformed is refused naming plugin and key", "[plugins][config]") {
  PluginLoader loader(only());
  auto r = loader.load(kDir + "/config_reader_bad_schema.so");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(),
             Contains("plugin 'config_reader': config_schema key 'limit': \"type\" missing (config_schema maps each key "
                      "to {\"type\": ..., \"default\": ...})"));
}

TEST_CASE("create_instance: deep merge over the defaults, every error reported", "[plugins][config]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kDir + "/config_reader.so").ok());
  auto sink = std::make_shared<Recorder>();

  auto made = loader.create_instance("config_reader", "i0", R"({"roi": {"x": 5}, "a": 2.0})", sink);
  REQUIRE(made.ok());
  auto& inst = *made.value();
  const json view = seen(inst, *sink);
  // roi.y and roi.size survive a config that names only roi.x (issue 10 item 3).
  CHECK(view["given"]["roi"] == json::parse(R"({"x": 5, "y": 0, "size": {"w": 640, "h": 480}})"));
  CHECK(view["given"]["mode"] == "fast");
  CHECK(view["all"] == view["given"]);
  CHECK(get(inst, *sink, "roi.y") == json::parse(R"({"key": "roi.y", "found": true, "value": 0})"));
  CHECK(get(inst, *sink, "roi.size.h")["value"] == 480);
  CHECK(get(inst, *sink, "a")["value"].is_number_integer());  // 2.0 arrives as 2
  CHECK(get(inst, *sink, "extra")["found"] == false);         // no default: absent

  auto bad = loader.create_instance(
      "config_reader", "i1",
      R"({"roi": {"z": 1, "x": "5"}, "limit": 500, "mode": "medium", "enabled": 1, "count": 0})", sink);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::invalid_argument);
  const std::string who = "plugin 'config_reader' instance 'i1': ";
  CHECK(bad.status().message() == who + "config key 'count': 0 is below the minimum 1; " + who +
                                      "config key 'enabled': expected boolean, got number 1; " + who +
                                      "config key 'limit': 500 is above the maximum 100; " + who +
                                      "config key 'mode': \"medium\" is not one of \"fast\", \"slow\"; " + who +
                                      "config key 'roi.x': expected integer, got string \"5\"; " + who +
                                      "unknown config key 'roi.z' (known: size, x, y)");

  auto not_object = loader.create_instance("config_reader", "i2", "[1]", sink);
  CHECK(not_object.status().message() ==
        "plugin 'config_reader' instance 'i2': configuration is not a JSON object (got array)");
  auto not_json = loader.create_instance("config_reader", "i3", "{", sink);
  CHECK(not_json.status().message() == "plugin 'config_reader' instance 'i3': configuration is not valid JSON");
}

TEST_CASE("update_config: merges over the current config, refuses bad keys, keeps it on failure",
          "[plugins][config]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kDir + "/config_reader.so").ok());
  auto sink = std::make_shared<Recorder>();
  auto made = loader.create_instance("config_reader", "u", R"({"limit": 5, "roi": {"x": 1}})", sink);
  REQUIRE(made.ok());
  auto& inst = *made.value();

  REQUIRE(inst.update_config(R"({"roi": {"y": 2}})").ok());
  json view = seen(inst, *sink);
  CHECK(view["given"]["limit"] == 5);  // the current value, not the default 10
  CHECK(view["given"]["roi"] == json::parse(R"({"x": 1, "y": 2, "size": {"w": 640, "h": 480}})"));
  CHECK(view["all"] == view["given"]);  // the plugin got the whole merged config, config_get the same
  CHECK(view["in_update"] == view["given"]);  // config_get inside update_config() already saw it
  const json before = view["all"];

  auto typo = inst.update_config(R"({"limt": 3})");
  CHECK(typo.code() == ErrorCode::invalid_argument);
  CHECK(typo.message() == "plugin 'config_reader' instance 'u': unknown config key 'limt' (known: a, b, count, "
                          "enabled, extra, limit, mode, roi, tags)");
  auto wrong = inst.update_config(R"({"roi": {"x": true}, "mode": 3})");
  CHECK(wrong.message() ==
        "plugin 'config_reader' instance 'u': config key 'mode': expected string, got number 3; "
        "plugin 'config_reader' instance 'u': config key 'roi.x': expected integer, got boolean true");
  CHECK(inst.update_config("[]").code() == ErrorCode::invalid_argument);
  auto refused = inst.update_config(R"({"limit": 99})");  // the plugin throws
  CHECK(refused.code() == ErrorCode::internal);
  CHECK_THAT(refused.message(), Contains("refuses limit 99"));
  view = seen(inst, *sink);
  CHECK(view["all"] == before);  // none of the refused updates changed anything
  CHECK(view["given"] == before);
}

TEST_CASE("update_config publishes atomically: a plugin thread's config_get never sees a torn config",
          "[plugins][config][concurrency]") {
  PluginLoader loader(only());
  REQUIRE(loader.load(kDir + "/config_reader.so").ok());
  auto sink = std::make_shared<Recorder>();
  auto made = loader.create_instance("config_reader", "race", R"({"a": 0, "b": 0})", sink);
  REQUIRE(made.ok());
  auto& inst = *made.value();
  REQUIRE(inst.start().ok());

  // The writer keeps its own tally; the plugin's reader thread keeps its own. Generous
  // bounds: the point is overlap, not speed.
  std::uint64_t updates = 0, failed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while ((updates < 2000 || sink->changes() < 256) && std::chrono::steady_clock::now() < deadline) {
    const int v = updates % 2 == 0 ? 1 : 2;
    const std::string pair = "{\"a\": " + std::to_string(v) + ", \"b\": " + std::to_string(v) + "}";
    if (inst.update_config(pair).ok()) {
      ++updates;
    } else {
      ++failed;
    }
  }
  REQUIRE(inst.stop().ok());
  const json reader = sink->last("reader");
  INFO("writer: " << updates << " updates, " << failed << " failed; reader: " << reader.dump());
  CHECK(failed == 0);
  CHECK(updates >= 2000);
  CHECK(reader["updates"] == updates);  // every accepted update reached the plugin once
  CHECK(reader["torn"] == 0);
  CHECK(reader["errors"] == 0);
  CHECK(reader["reads"].get<std::uint64_t>() > 0);
  CHECK(reader["changes"].get<std::uint64_t>() >= 256);  // the reads really overlapped the updates
}
