#include "plugins/config_schema.hpp"

#include "core/printable.hpp"

#include <edgert/plugin_host.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace edgert::detail {

using json = nlohmann::json;

namespace {

constexpr const char* kFormatHint = "(config_schema maps each key to {\"type\": ..., \"default\": ...})";
constexpr const char* kTypes = "boolean, integer, number, string, array, object";
constexpr const char* kAttributes = "type, default, minimum, maximum, enum, description, properties";

std::optional<ConfigType> type_from(const std::string& s) {
  if (s == "boolean") return ConfigType::boolean;
  if (s == "integer") return ConfigType::integer;
  if (s == "number") return ConfigType::number;
  if (s == "string") return ConfigType::string;
  if (s == "array") return ConfigType::array;
  if (s == "object") return ConfigType::object;
  return std::nullopt;
}

// A JSON value for error text: its JSON form, sanitised and cut short.
std::string shown(const json& v) { return printable(v.dump(), 40); }

std::string number_text(double d) {
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<std::int64_t>(d));
  return json(d).dump();
}

// Parses with nlohmann's (iterative) parser and tracks the nesting depth, so nothing
// deeper than `max_depth` reaches a recursive function (dump(), the validators).
std::optional<json> parse_bounded(std::string_view text, std::size_t max_depth, std::string& error) {
  std::size_t deepest = 0;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t, json&) {
    deepest = std::max(deepest, static_cast<std::size_t>(depth));
    return true;
  };
  json parsed = json::parse(text.begin(), text.end(), cb, false);
  if (parsed.is_discarded()) {
    error = "not valid JSON";
    return std::nullopt;
  }
  if (deepest > max_depth) {
    error = "nested deeper than " + std::to_string(max_depth) + " levels";
    return std::nullopt;
  }
  return parsed;
}

// Why `v` does not fit `key` ("" when it does). An integral float is rewritten as an
// integer for an integer key. Nested keys of an object with properties are checked by
// validate_object, which the caller runs.
std::string misfit(const SchemaKey& key, json& v) {
  bool ok = false;
  switch (key.type) {
    case ConfigType::boolean: ok = v.is_boolean(); break;
    case ConfigType::integer:
      if (v.is_number_integer()) {
        ok = true;
      } else if (v.is_number_float()) {
        const double d = v.get<double>();
        // JSON Schema counts 1.0 as an integer; nlohmann parses it as a float.
        if (std::isfinite(d) && std::trunc(d) == d && d >= -9.2e18 && d <= 9.2e18) {
          v = static_cast<std::int64_t>(d);
          ok = true;
        }
      }
      break;
    case ConfigType::number: ok = v.is_number(); break;
    case ConfigType::string: ok = v.is_string(); break;
    case ConfigType::array: ok = v.is_array(); break;
    case ConfigType::object: ok = v.is_object(); break;
  }
  if (!ok) return std::string("expected ") + to_string(key.type) + ", got " + v.type_name() + " " + shown(v);
  if (v.is_number()) {
    const double d = v.get<double>();
    if (key.minimum && d < *key.minimum) return shown(v) + " is below the minimum " + number_text(*key.minimum);
    if (key.maximum && d > *key.maximum) return shown(v) + " is above the maximum " + number_text(*key.maximum);
  }
  if (key.enumeration) {
    bool found = false;
    std::string list;
    for (const auto& e : *key.enumeration) {
      found = found || e == v;
      list += (list.empty() ? "" : ", ") + shown(e);
    }
    if (!found) return shown(v) + " is not one of " + list;
  }
  return {};
}

std::string known_keys(const std::map<std::string, SchemaKey>& keys) {
  std::string out;
  for (const auto& [name, k] : keys) out += (out.empty() ? "" : ", ") + printable(name);
  return out.empty() ? "none" : out;
}

void validate_object(const std::map<std::string, SchemaKey>& keys, json& obj, const std::string& prefix,
                     std::vector<std::string>& errors) {
  for (auto& [name, value] : obj.items()) {
    const std::string path = prefix + printable(name);
    const auto it = keys.find(name);
    if (it == keys.end()) {
      errors.push_back("unknown config key '" + path + "' (known: " + known_keys(keys) + ")");
      continue;
    }
    if (auto why = misfit(it->second, value); !why.empty()) {
      errors.push_back("config key '" + path + "': " + why);
      continue;
    }
    if (it->second.has_properties) validate_object(it->second.properties, value, path + ".", errors);
  }
}

json merge_object(const std::map<std::string, SchemaKey>* keys, const json& base, const json& patch) {
  json out = base.is_object() ? base : json::object();
  for (const auto& [name, value] : patch.items()) {
    const SchemaKey* k = nullptr;
    if (keys) {
      if (auto it = keys->find(name); it != keys->end()) k = &it->second;
    }
    if (k && k->has_properties && value.is_object() && out.contains(name) && out[name].is_object()) {
      out[name] = merge_object(&k->properties, out[name], value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

struct Parser {
  std::size_t keys_seen = 0;
  std::string error;

  bool fail(const std::string& path, const std::string& why) {
    error = "config_schema key '" + path + "': " + why;
    return false;
  }

  bool parse_keys(const json& obj, const std::string& prefix, std::size_t depth,
                  std::map<std::string, SchemaKey>& out) {
    for (const auto& [name, spec] : obj.items()) {
      const std::string path = prefix + printable(name);
      if (++keys_seen > kMaxSchemaKeys) {
        error = "config_schema has more than " + std::to_string(kMaxSchemaKeys) + " keys";
        return false;
      }
      if (name.empty()) return fail(path, "empty key name");
      if (name.find('.') != std::string::npos) return fail(path, "a key name may not contain '.' (dot paths address nested keys)");
      if (!spec.is_object() || !spec.contains("type")) return fail(path, std::string("\"type\" missing ") + kFormatHint);
      SchemaKey key;
      if (!parse_key(spec, path, depth, key)) return false;
      out.emplace(name, std::move(key));
    }
    return true;
  }

  bool parse_key(const json& spec, const std::string& path, std::size_t depth, SchemaKey& key) {
    for (const auto& [attr, v] : spec.items()) {
      if (attr != "type" && attr != "default" && attr != "minimum" && attr != "maximum" && attr != "enum" &&
          attr != "description" && attr != "properties") {
        return fail(path, "unknown attribute \"" + printable(attr) + "\" (" + kAttributes + ")");
      }
    }
    const json& t = spec["type"];
    const auto type = t.is_string() ? type_from(t.get<std::string>()) : std::nullopt;
    if (!type) return fail(path, "unknown type " + shown(t) + " (" + kTypes + ")");
    key.type = *type;
    const bool numeric = key.type == ConfigType::integer || key.type == ConfigType::number;
    for (const char* bound : {"minimum", "maximum"}) {
      if (!spec.contains(bound)) continue;
      if (!numeric) return fail(path, std::string("\"") + bound + "\" applies to integer and number keys only");
      const json& b = spec[bound];
      if (!b.is_number()) return fail(path, std::string("\"") + bound + "\" must be a number, got " + shown(b));
      auto& slot = std::string_view(bound) == "minimum" ? key.minimum : key.maximum;
      slot = b.get<double>();
    }
    if (key.minimum && key.maximum && *key.minimum > *key.maximum) {
      return fail(path, "minimum " + number_text(*key.minimum) + " is above maximum " + number_text(*key.maximum));
    }
    if (spec.contains("description")) {
      const json& d = spec["description"];
      if (!d.is_string()) return fail(path, "\"description\" must be a string");
      key.description = d.get<std::string>();
      if (key.description.find_first_of("\r\n") != std::string::npos) return fail(path, "\"description\" must be one line");
    }
    if (spec.contains("properties")) {
      if (key.type != ConfigType::object) return fail(path, "\"properties\" applies to object keys only");
      const json& p = spec["properties"];
      if (!p.is_object()) return fail(path, "\"properties\" must be an object of keys");
      if (depth + 1 >= kMaxSchemaDepth) {
        return fail(path, "properties nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
      }
      key.has_properties = true;
      if (!parse_keys(p, path + ".", depth + 1, key.properties)) return false;
    }
    if (spec.contains("enum")) {
      if (key.type == ConfigType::array || key.type == ConfigType::object) {
        return fail(path, "\"enum\" applies to boolean, integer, number and string keys only");
      }
      json values = spec["enum"];
      if (!values.is_array() || values.empty()) return fail(path, "\"enum\" must be a non-empty array");
      for (auto& v : values) {  // type and range; key.enumeration is not set yet
        if (auto why = misfit(key, v); !why.empty()) return fail(path, "enum value does not fit: " + why);
      }
      key.enumeration = std::move(values);
    }
    if (spec.contains("default")) {
      json d = spec["default"];
      if (auto why = misfit(key, d); !why.empty()) return fail(path, "the default does not fit: " + why);
      if (key.has_properties) {
        std::vector<std::string> errors;
        validate_object(key.properties, d, "", errors);
        if (!errors.empty()) return fail(path, "the default does not fit: " + errors.front());
      }
      key.default_value = std::move(d);
    }
    return true;
  }
};

json defaults_of(const std::map<std::string, SchemaKey>& keys) {
  json out = json::object();
  for (const auto& [name, k] : keys) {
    if (k.has_properties) {
      json nested = defaults_of(k.properties);
      if (k.default_value) nested = merge_object(&k.properties, nested, *k.default_value);
      if (!nested.empty() || k.default_value) out[name] = std::move(nested);
    } else if (k.default_value) {
      out[name] = *k.default_value;
    }
  }
  return out;
}

void describe_keys(const std::map<std::string, SchemaKey>& keys, const std::string& prefix,
                   std::vector<PluginConfigKey>& rows) {
  for (const auto& [name, k] : keys) {
    PluginConfigKey row;
    row.key = prefix + printable(name);
    row.type = to_string(k.type);
    // An object with properties shows its explicit default only: its nested rows show theirs.
    if (k.default_value) row.default_json = printable(k.default_value->dump(), 60);
    if (k.enumeration) {
      std::string list;
      for (const auto& e : *k.enumeration) list += (list.empty() ? "" : ", ") + shown(e);
      row.range = "one of " + list;
    } else if (k.minimum && k.maximum) {
      row.range = "[" + number_text(*k.minimum) + ", " + number_text(*k.maximum) + "]";
    } else if (k.minimum) {
      row.range = ">= " + number_text(*k.minimum);
    } else if (k.maximum) {
      row.range = "<= " + number_text(*k.maximum);
    }
    row.description = printable(k.description, 200);
    const std::string nested_prefix = row.key + ".";
    rows.push_back(std::move(row));
    if (k.has_properties) describe_keys(k.properties, nested_prefix, rows);
  }
}

}  // namespace

const char* to_string(ConfigType t) noexcept {
  switch (t) {
    case ConfigType::boolean: return "boolean";
    case ConfigType::integer: return "integer";
    case ConfigType::number: return "number";
    case ConfigType::string: return "string";
    case ConfigType::array: return "array";
    case ConfigType::object: return "object";
  }
  return "unknown";
}

SchemaParse parse_config_schema(std::string_view text) {
  SchemaParse out;
  if (text.size() > kMaxSchemaBytes) {
    out.error = "config_schema is " + std::to_string(text.size()) + " bytes (limit " +
                std::to_string(kMaxSchemaBytes) + ")";
    return out;
  }
  std::string why;
  // A key's spec sits two levels below its parent's ("properties" then the key).
  auto parsed = parse_bounded(text, 2 * kMaxSchemaDepth + 8, why);
  if (!parsed) {
    out.error = "config_schema is " + why;
    return out;
  }
  if (!parsed->is_object()) {
    out.error = "config_schema is not a JSON object " + std::string(kFormatHint);
    return out;
  }
  Parser p;
  if (!p.parse_keys(*parsed, "", 0, out.schema.keys)) {
    out.error = p.error;
    out.schema = {};
    return out;
  }
  out.schema.declared = true;
  return out;
}

json schema_defaults(const ConfigSchema& schema) { return defaults_of(schema.keys); }

std::optional<json> parse_config_object(std::string_view text, std::string& error) {
  if (text.size() > kMaxConfigBytes) {
    error = "configuration is " + std::to_string(text.size()) + " bytes (limit " + std::to_string(kMaxConfigBytes) + ")";
    return std::nullopt;
  }
  std::string why;
  auto parsed = parse_bounded(text.empty() ? std::string_view("{}") : text, kMaxConfigDepth, why);
  if (!parsed) {
    error = "configuration is " + why;
    return std::nullopt;
  }
  if (!parsed->is_object()) {
    error = std::string("configuration is not a JSON object (got ") + parsed->type_name() + ")";
    return std::nullopt;
  }
  return parsed;
}

void validate_config(const ConfigSchema& schema, json& config, std::vector<std::string>& errors) {
  if (!schema.declared) return;
  validate_object(schema.keys, config, "", errors);
}

json merge_config(const ConfigSchema& schema, const json& base, const json& patch) {
  return merge_object(schema.declared ? &schema.keys : nullptr, base, patch);
}

}  // namespace edgert::detail

namespace edgert {

Result<std::vector<PluginConfigKey>> describe_config_schema(std::string_view config_schema) {
  std::vector<PluginConfigKey> rows;
  if (config_schema.empty()) return rows;
  auto parsed = detail::parse_config_schema(config_schema);
  if (!parsed.error.empty()) return Status{ErrorCode::invalid_argument, parsed.error};
  detail::describe_keys(parsed.schema.keys, "", rows);
  return rows;
}

}  // namespace edgert
