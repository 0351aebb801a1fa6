// The EDGERT_ environment variables the plugins area reads outside the node
// configuration. The configuration loader accepts exactly these besides its own
// overrides, so a new variable must be added here to be usable at all.
#pragma once

namespace edgert::detail {

inline constexpr const char* kPluginPathVariable = "EDGERT_PLUGIN_PATH";        // extra search paths
inline constexpr const char* kPluginScannerVariable = "EDGERT_PLUGIN_SCANNER";  // the scan helper
inline constexpr const char* kPluginEnvironment[] = {kPluginPathVariable, kPluginScannerVariable};

}  // namespace edgert::detail
