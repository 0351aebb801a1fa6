// The `plugins:` section (docs/configuration.md).
#include "plugins/plugins_config.hpp"

#include <algorithm>

namespace edgert::config {

namespace {
std::string sha256_hex_values(const std::map<std::string, std::string>& allow, const std::string&) {
  for (const auto& [sig, digest] : allow) {
    const bool hex = digest.size() == 64 && std::all_of(digest.begin(), digest.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
    if (!hex) return "'" + sig + "': expected a SHA-256 as 64 lower-case hex digits, got '" + digest + "'";
  }
  return "";
}
}  // namespace

const Table<PluginsSection>& plugins_table() {
  static const Table<PluginsSection> t = [] {
    Table<PluginsSection> s;
    s.path_key("paths", &PluginsSection::paths)
        .key("secured", &PluginsSection::secured)
        .key<std::map<std::string, std::string>>("allow", &PluginsSection::allow, sha256_hex_values);
    return s;
  }();
  return t;
}

}  // namespace edgert::config
