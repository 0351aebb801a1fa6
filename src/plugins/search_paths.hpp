// Where libedgert is at run time, and the plugin folders that follows from it
// (docs/plugins.md, "Where plugins are found"). No install path is compiled in: an
// installed tree can be moved anywhere and still finds its own plugins, and only the
// build tree's own library ever searches the build tree.
#pragma once

#include <edgert/plugin_host.hpp>

#include "core/printable.hpp"

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace edgert::detail {

/// Where the running libedgert code is.
struct LibraryLocation {
  std::string file;            // libedgert.so (canonical), or the executable when linked statically
  std::string libdir;          // <prefix>/<libdir>: the library's folder, or derived from the executable's
  bool in_executable = false;  // libedgert is linked into the executable itself
  std::string error;           // set when neither could be found (the other fields are empty)
};

/// dladdr on a function of libedgert. Any thread; no blocking beyond reading
/// /proc/self/exe; an error is reported in `error`, never thrown.
LibraryLocation locate_library();

/// `<dir of exe>/<libdir_from_bindir>`, normalised: the library folder of an
/// installation whose executable is `exe` (libedgert linked statically).
inline std::string libdir_for_executable(const std::string& exe, const std::string& libdir_from_bindir) {
  return (std::filesystem::path(exe).parent_path() / libdir_from_bindir).lexically_normal().string();
}

/// The default plugin folders for a library at `where`: `<libdir>/edgert/plugins`,
/// preceded by `build_plugindir` only when `where.libdir` is the build tree's
/// `build_libdir` (compared canonically). Empty when `where` has an error.
inline std::vector<std::string> default_plugin_dirs(const LibraryLocation& where, const std::string& build_libdir,
                                                    const std::string& build_plugindir) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  if (!where.error.empty() || where.libdir.empty()) return out;
  std::error_code ec1;
  std::error_code ec2;
  const auto mine = fs::weakly_canonical(where.libdir, ec1);
  const auto build = fs::weakly_canonical(build_libdir, ec2);
  if (!where.in_executable && !ec1 && !ec2 && !build_libdir.empty() && mine == build) {
    out.push_back(build_plugindir);
  }
  out.push_back((fs::path(where.libdir) / "edgert" / "plugins").lexically_normal().string());
  return out;
}

/// default_plugin_dirs() for the running library and this build's tree. Any thread.
std::vector<std::string> default_plugin_dirs();

/// Longest path or reason put in a log line (printable() cuts the rest, noting its size).
inline constexpr std::size_t kMaxLoggedText = 1024;

/// The WARNING (and the scan's reason) for a signature found again in a later folder;
/// the paths pass through printable() (a file name may hold control characters).
inline std::string shadowed_text(const std::string& signature, const std::string& path, const std::string& by) {
  return "plugin '" + printable(signature) + "' in " + printable(path, kMaxLoggedText) + " is shadowed by " +
         printable(by, kMaxLoggedText) + " (earlier in the search path); not loaded";
}

/// True when `a` and `b` are files in the same folder (compared canonically).
inline bool same_folder(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto da = fs::weakly_canonical(fs::absolute(a, ec).parent_path(), ec);
  const auto db = fs::weakly_canonical(fs::absolute(b, ec).parent_path(), ec);
  return da == db;
}

/// Why scan_plugins_isolated cannot run with `options` (its helper not found), or
/// "" when it can. Any thread; checks the file system only.
std::string scanner_helper_problem(const PluginLoaderOptions& options);

}  // namespace edgert::detail
