// The `plugins:` configuration section: where plugin files are found and which are
// trusted (docs/configuration.md, docs/plugin-guide.md).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace edgert {

struct PluginsSection {
  /// Searched before EDGERT_PLUGIN_PATH and the defaults. Relative entries are
  /// resolved against the config file's folder by load_config().
  std::vector<std::string> paths;
  bool secured = false;                      // load only what `allow` lists
  std::map<std::string, std::string> allow;  // signature -> SHA-256 (64 lower-case hex) of the .so
};

}  // namespace edgert
