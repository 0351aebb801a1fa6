#include "plugins/search_paths.hpp"

#include <dlfcn.h>
#include <link.h>

#include <filesystem>
#include <system_error>

namespace edgert::detail {

namespace fs = std::filesystem;

LibraryLocation locate_library() {
  LibraryLocation loc;
  Dl_info info{};
  link_map* map = nullptr;
  // Any function of libedgert will do; this one is never inlined away (its address is taken).
  if (::dladdr1(reinterpret_cast<void*>(&locate_library), &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) ==
          0 ||
      map == nullptr) {
    loc.error = "cannot locate libedgert: dladdr found no object for its own code";
    return loc;
  }
  std::error_code ec;
  // The main program's link map has an empty name: libedgert is linked statically
  // into the executable, whose own path dladdr does not give reliably (argv[0]).
  if (map->l_name == nullptr || map->l_name[0] == '\0') {
    const auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) {
      loc.error = "cannot locate the executable libedgert is linked into: /proc/self/exe: " + ec.message();
      return loc;
    }
    loc.in_executable = true;
    loc.file = exe.string();
    loc.libdir = libdir_for_executable(loc.file, EDGERT_LIBDIR_FROM_BINDIR);
    return loc;
  }
  const auto file = fs::canonical(map->l_name, ec);
  if (ec) {
    loc.error = std::string("cannot locate libedgert: ") + map->l_name + ": " + ec.message();
    return loc;
  }
  loc.file = file.string();
  loc.libdir = file.parent_path().string();
  return loc;
}

std::vector<std::string> default_plugin_dirs() {
  return default_plugin_dirs(locate_library(), EDGERT_BUILD_LIBDIR, EDGERT_BUILD_PLUGINDIR);
}

}  // namespace edgert::detail
