#include <edgert/config.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace edgert {
namespace {

std::string at(const std::string& file, const YAML::Node& node) {
  const auto mark = node.Mark();
  if (mark.line < 0) return file;
  return file + ":" + std::to_string(mark.line + 1);
}

std::string scalar_text(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "nothing";
}

template <class T>
struct TypeName;
template <> struct TypeName<std::string> { static constexpr const char* value = "a string"; };
template <> struct TypeName<double> { static constexpr const char* value = "a number"; };
template <> struct TypeName<std::int64_t> { static constexpr const char* value = "an integer"; };
template <> struct TypeName<bool> { static constexpr const char* value = "true or false"; };
template <> struct TypeName<std::vector<std::string>> { static constexpr const char* value = "a list of strings"; };
template <> struct TypeName<std::map<std::string, std::string>> {
  static constexpr const char* value = "a mapping of strings to strings";
};

template <class T>
std::optional<T> convert(const YAML::Node& node) {
  if (!node.IsScalar()) return std::nullopt;
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
}

template <>
std::optional<std::vector<std::string>> convert(const YAML::Node& node) {
  if (node.IsNull()) return std::vector<std::string>{};
  if (!node.IsSequence()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& item : node) {
    if (!item.IsScalar()) return std::nullopt;
    out.push_back(item.Scalar());
  }
  return out;
}

template <>
std::optional<std::map<std::string, std::string>> convert(const YAML::Node& node) {
  if (node.IsNull()) return std::map<std::string, std::string>{};
  if (!node.IsMap()) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar() || !kv.second.IsScalar()) return std::nullopt;
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return out;
}

using Validator = std::function<std::string(const Config&)>;  // "" when valid

struct Field {
  std::string key;
  // Applies `value`; returns "" or what was expected ("expected a number, got 'x'").
  std::function<std::string(Config&, const YAML::Node&)> apply;
  Validator validate;
};

struct Section {
  std::string name;
  std::vector<Field> fields;
};

// `check`, if given, is a `std::string(const T&)` returning "" when the value is valid.
template <class S, class T, class Check = std::nullptr_t>
Field field(std::string key, S Config::*section, T S::*member, Check check = nullptr) {
  Field f;
  f.key = std::move(key);
  f.apply = [section, member](Config& cfg, const YAML::Node& node) -> std::string {
    auto v = convert<T>(node);
    if (!v) return std::string("expected ") + TypeName<T>::value + ", got " + scalar_text(node);
    (cfg.*section).*member = std::move(*v);
    return {};
  };
  if constexpr (!std::is_null_pointer_v<Check>) {
    f.validate = [section, member, check](const Config& cfg) { return check((cfg.*section).*member); };
  }
  return f;
}

std::string non_negative(const double& v) { return v >= 0 ? "" : "must be >= 0"; }
std::string positive(const std::int64_t& v) { return v > 0 ? "" : "must be > 0"; }
std::string non_negative_int(const std::int64_t& v) { return v >= 0 ? "" : "must be >= 0"; }
std::string non_empty(const std::string& v) { return v.empty() ? "must not be empty" : ""; }
// A validator accepting exactly the listed words.
auto one_of(std::vector<std::string> words) {
  return [words = std::move(words)](const std::string& v) -> std::string {
    std::string list;
    for (const auto& w : words) {
      if (v == w) return "";
      list += (list.empty() ? "" : ", ") + w;
    }
    return "expected one of " + list + "; got '" + v + "'";
  };
}
std::string sha256_hex_values(const std::map<std::string, std::string>& allow) {
  for (const auto& [sig, digest] : allow) {
    const bool hex = digest.size() == 64 && std::all_of(digest.begin(), digest.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
    if (!hex) return "'" + sig + "': expected a SHA-256 as 64 lower-case hex digits, got '" + digest + "'";
  }
  return "";
}
std::string log_level_name(const std::string& v) {
  static const char* names[] = {"trace", "debug", "info", "warning", "warn", "error", "critical", "off"};
  for (const char* n : names) {
    if (v == n) return "";
  }
  return "expected one of trace, debug, info, warning, error, critical, off; got '" + v + "'";
}

// The schema. One line per key; later features append sections here.
const std::vector<Section>& schema() {
  static const std::vector<Section> sections = {
      {"node",
       {
           field("id", &Config::node, &NodeSection::id, non_empty),
           field("data_dir", &Config::node, &NodeSection::data_dir,
                 non_empty),
           field("log_level", &Config::node, &NodeSection::log_level,
                 log_level_name),
           field("heartbeat_hz", &Config::node, &NodeSection::heartbeat_hz,
                 non_negative),
       }},
      {"runtime",
       {
           field("stage_timeout_ms", &Config::runtime, &RuntimeSection::stage_timeout_ms,
                 positive),
           field("task_timeout_ms", &Config::runtime, &RuntimeSection::task_timeout_ms,
                 positive),
           field("worker_join_timeout_ms", &Config::runtime, &RuntimeSection::worker_join_timeout_ms,
                 positive),
           field("queue_capacity", &Config::runtime, &RuntimeSection::queue_capacity,
                 positive),
       }},
      {"plugins",
       {
           field("paths", &Config::plugins, &PluginsSection::paths),
           field("secured", &Config::plugins, &PluginsSection::secured),
           field("allow", &Config::plugins, &PluginsSection::allow, sha256_hex_values),
       }},
      {"mailbox",
       {
           field("synchronous", &Config::mailbox, &MailboxSection::synchronous, one_of({"normal", "full"})),
           field("max_messages", &Config::mailbox, &MailboxSection::max_messages, non_negative_int),
           field("max_bytes", &Config::mailbox, &MailboxSection::max_bytes, non_negative_int),
           field("quota_policy", &Config::mailbox, &MailboxSection::quota_policy,
                 one_of({"reject_new", "evict_oldest"})),
           field("max_payload_bytes", &Config::mailbox, &MailboxSection::max_payload_bytes, positive),
           field("wal_limit_bytes", &Config::mailbox, &MailboxSection::wal_limit_bytes, positive),
       }},
  };
  return sections;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& k : known) {
    const auto d = edit_distance(word, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  return best.empty() ? " (known: " + list + ")" : " (did you mean '" + best + "'?)";
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Status error(const std::string& where, const std::string& what) {
  return {ErrorCode::config_error, where + ": " + what};
}

Status apply_document(Config& cfg, const YAML::Node& root, const std::string& file) {
  if (!root || root.IsNull()) return {};  // an empty file means all defaults
  if (!root.IsMap()) return error(at(file, root), "expected a mapping of sections at the top level");
  const auto& sections = schema();
  std::vector<std::string> section_names;
  for (const auto& s : sections) section_names.push_back(s.name);

  for (const auto& kv : root) {
    const auto name = kv.first.as<std::string>();
    auto sec = std::find_if(sections.begin(), sections.end(), [&](const Section& s) { return s.name == name; });
    if (sec == sections.end()) {
      return error(at(file, kv.first), "unknown section '" + name + "'" + did_you_mean(name, section_names));
    }
    if (kv.second.IsNull()) continue;
    if (!kv.second.IsMap()) return error(at(file, kv.second), name + ": expected a mapping of keys");
    std::vector<std::string> keys;
    for (const auto& f : sec->fields) keys.push_back(f.key);
    for (const auto& entry : kv.second) {
      const auto key = entry.first.as<std::string>();
      auto f = std::find_if(sec->fields.begin(), sec->fields.end(), [&](const Field& x) { return x.key == key; });
      if (f == sec->fields.end()) {
        return error(at(file, entry.first), "unknown key '" + name + "." + key + "'" + did_you_mean(key, keys));
      }
      if (auto what = f->apply(cfg, entry.second); !what.empty()) {
        return error(at(file, entry.second), name + "." + key + ": " + what);
      }
      if (f->validate) {
        if (auto what = f->validate(cfg); !what.empty()) {
          return error(at(file, entry.second), name + "." + key + ": " + what);
        }
      }
    }
  }
  return {};
}

Status apply_environment(Config& cfg, const EnvLookup& env) {
  for (const auto& sec : schema()) {
    for (const auto& f : sec.fields) {
      const std::string var = "EDGERT_" + upper(sec.name) + "_" + upper(f.key);
      const auto value = env(var);
      if (!value) continue;
      YAML::Node node;
      try {
        node = YAML::Load(*value);
      } catch (const YAML::Exception&) {
        node = YAML::Node(*value);
      }
      if (node.IsNull()) node = YAML::Node(*value);
      const std::string where = "environment variable " + var;
      if (auto what = f.apply(cfg, node); !what.empty()) return error(where, sec.name + "." + f.key + ": " + what);
      if (f.validate) {
        if (auto what = f.validate(cfg); !what.empty()) return error(where, sec.name + "." + f.key + ": " + what);
      }
    }
  }
  return {};
}

std::optional<std::string> process_env(const std::string& name) {
  if (const char* v = std::getenv(name.c_str())) return std::string(v);
  return std::nullopt;
}

}  // namespace

Result<Config> parse_config(std::string_view yaml, const std::string& source_name, const EnvLookup& env) {
  Config cfg;
  cfg.source = source_name;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    return error(source_name + ":" + std::to_string(e.mark.line + 1), "YAML syntax error: " + e.msg);
  }
  try {
    if (Status st = apply_document(cfg, root, source_name); !st.ok()) return st;
  } catch (const YAML::Exception& e) {
    return error(source_name + ":" + std::to_string(e.mark.line + 1), e.msg);
  }
  if (Status st = apply_environment(cfg, env ? env : EnvLookup(process_env)); !st.ok()) return st;
  return cfg;
}

Result<Config> load_config(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path);
  if (!in) return Status{ErrorCode::not_found, path + ": cannot open configuration file"};
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status{ErrorCode::io_error, path + ": read error"};
  return parse_config(buf.str(), path, env);
}

}  // namespace edgert
