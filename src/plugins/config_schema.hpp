// A plugin's typed config_schema (docs/plugins.md, "Configuration schema"): parsing
// it at load, validating instance configurations against it and merging them over
// the defaults or over an instance's current configuration.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgert::detail {

/// Limits on a schema: its text, how deeply "properties" nest, how many keys in all.
inline constexpr std::size_t kMaxSchemaBytes = 64 * 1024;
inline constexpr std::size_t kMaxSchemaDepth = 16;
inline constexpr std::size_t kMaxSchemaKeys = 1024;
/// Nesting limit of an instance configuration (nlohmann's dump() recurses per level).
inline constexpr std::size_t kMaxConfigDepth = 64;
/// Size limit of an instance configuration's text.
inline constexpr std::size_t kMaxConfigBytes = 1024 * 1024;

enum class ConfigType { boolean, integer, number, string, array, object };

const char* to_string(ConfigType t) noexcept;

/// One key of a schema.
struct SchemaKey {
  ConfigType type = ConfigType::string;
  std::optional<nlohmann::json> default_value;
  std::optional<double> minimum;
  std::optional<double> maximum;
  std::optional<nlohmann::json> enumeration;  // a JSON array
  std::string description;
  /// Type object only: nested keys. Without "properties" the object is free-form.
  bool has_properties = false;
  std::map<std::string, SchemaKey> properties;
};

/// A parsed config_schema. `declared` is false for a plugin without one: then any
/// JSON object is accepted as it is.
struct ConfigSchema {
  bool declared = false;
  std::map<std::string, SchemaKey> keys;
};

/// Parses config_schema text. On error, the message names the key at fault (dot path)
/// and what is wrong, e.g. `config_schema key 'limit': "type" missing (...)`; the
/// caller prefixes the plugin. Every default is checked against its own key.
struct SchemaParse {
  ConfigSchema schema;
  std::string error;  // empty on success
};
SchemaParse parse_config_schema(std::string_view text);

/// The defaults as a JSON object (nested objects with properties hold their keys'
/// defaults; a key without a default is absent).
nlohmann::json schema_defaults(const ConfigSchema& schema);

/// Parses an instance configuration: a JSON object within the size and depth limits.
/// On error returns nullopt and sets `error` (no prefix).
std::optional<nlohmann::json> parse_config_object(std::string_view text, std::string& error);

/// Checks `config` (an object) against the schema and appends one message per problem
/// (unknown key, wrong type, out of range, not in enum), each starting "config key"
/// or "unknown config key". Integers written as floats with no fraction (1.0) are
/// rewritten in place as integers.
void validate_config(const ConfigSchema& schema, nlohmann::json& config, std::vector<std::string>& errors);

/// `patch` merged over `base`: keys of type object with properties merge recursively,
/// anything else (arrays, free-form objects, scalars) replaces the base value whole.
/// Without a declared schema the merge is one level (every given key replaces).
nlohmann::json merge_config(const ConfigSchema& schema, const nlohmann::json& base, const nlohmann::json& patch);

}  // namespace edgert::detail
