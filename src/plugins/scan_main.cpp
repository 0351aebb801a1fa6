// edgert-plugin-scan: loads one plugin file in a fresh process and writes what the
// loader says about it, as one JSON object, to an inherited descriptor.
// scan_plugins_isolated (scanner.cpp) runs it; it is not meant to be run by hand.
//
//   edgert-plugin-scan --answer-fd=N [--parent-pid=P] [--secured] [--allow=SIG=SHA256]... -- FILE
//
// Answer: {"accepted":true,"plugins":[{"signature":..,"kind":..,"version":..,
// "description":..,"schema":..,"abi":..}, ...]} (one entry per plugin of a pack, in
// descriptor order) or {"accepted":false,"reason":".."}. Exit status 0 once the
// answer is written, 2 on a usage error (also answered when the descriptor is known).
// The file's constructors may crash or hang; the caller bounds and reports that.
#include <edgert/log.hpp>
#include <edgert/plugin_host.hpp>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using json = nlohmann::json;

bool write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Parses a non-negative decimal; -1 when `s` is not one.
long parse_number(std::string_view s) {
  if (s.empty() || s.size() > 9) return -1;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

int usage(int fd, const std::string& why) {
  const std::string msg = "edgert-plugin-scan: " + why;
  std::fprintf(stderr, "%s\n", msg.c_str());
  if (fd >= 0) (void)write_all(fd, json{{"accepted", false}, {"reason", msg}}.dump());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // A crash must end this process with its signal, whatever handlers a sanitizer
  // runtime installed, so the caller can say which signal it was.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);

  int fd = -1;
  long parent = -1;
  std::string path;
  edgert::PluginLoaderOptions opts;
  opts.use_environment = false;
  opts.use_default_paths = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (starts_with(a, "--answer-fd=")) {
      fd = static_cast<int>(parse_number(a.substr(12)));
      if (fd < 0) return usage(-1, "bad --answer-fd '" + std::string(a) + "'");
    } else if (starts_with(a, "--parent-pid=")) {
      parent = parse_number(a.substr(13));
      if (parent <= 0) return usage(fd, "bad --parent-pid '" + std::string(a) + "'");
    } else if (a == "--secured") {
      opts.secured = true;
    } else if (starts_with(a, "--allow=")) {
      const std::string_view kv = a.substr(8);
      const auto eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0) return usage(fd, "bad --allow '" + std::string(a) + "'");
      opts.allow[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    } else if (a == "--" && i + 2 == argc) {
      path = argv[i + 1];
      break;
    } else {
      return usage(fd, "unexpected argument '" + std::string(a) + "'");
    }
  }
  if (fd < 0) return usage(-1, "missing --answer-fd");
  if (path.empty()) return usage(fd, "missing '-- FILE'");

  // Die with the scanning thread's process instead of running on as an orphan; the
  // check closes the race with a parent that died before prctl.
  if (parent > 0) {
    (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != static_cast<pid_t>(parent)) return 3;
  }

  (void)edgert::set_log_level("off");  // the caller reports; this process only answers
  json out;
  {
    edgert::PluginLoader loader(opts);
    auto r = loader.load(path);
    if (r.ok()) {
      json plugins = json::array();
      for (const auto& i : loader.plugins()) {  // this loader loaded this file only
        plugins.push_back({{"signature", i.signature},
                           {"kind", static_cast<int>(i.kind)},
                           {"version", i.plugin_version},
                           {"description", i.description},
                           {"schema", i.config_schema},
                           {"abi", i.abi_version}});
      }
      out = {{"accepted", true}, {"plugins", std::move(plugins)}};
    } else {
      std::string reason = r.status().message();
      if (reason.rfind(path + ": ", 0) == 0) reason = reason.substr(path.size() + 2);
      out = {{"accepted", false}, {"reason", reason}};
    }
    const bool written = write_all(fd, out.dump());
    ::close(fd);
    // Skip static destructors and atexit handlers of whatever the plugin registered.
    std::fflush(stdout);
    ::_exit(written ? 0 : 4);
  }
}
