// scan_plugins_isolated: load each plugin file in a child process and report back
// through a pipe, so a plugin that crashes or hangs in its constructors or entry
// function cannot take the caller down.
#include <edgert/log.hpp>
#include <edgert/plugin_host.hpp>

#include <nlohmann/json.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace edgert {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

[[noreturn]] void child_scan(int fd, const std::string& path, const PluginLoaderOptions& options) {
  // A crash must end the child with its signal, whatever handlers the host process
  // (or a sanitizer runtime) installed, so the parent can say what happened.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);
  (void)set_log_level("off");  // the parent reports; the child only answers
  PluginLoaderOptions opts = options;
  opts.search_paths.clear();
  opts.use_default_paths = false;
  opts.use_environment = false;
  json out;
  {
    PluginLoader loader(opts);
    auto r = loader.load(path);
    if (r.ok()) {
      const auto& i = r.value();
      out = {{"accepted", true},          {"signature", i.signature},   {"kind", static_cast<int>(i.kind)},
             {"version", i.plugin_version}, {"description", i.description}, {"schema", i.config_schema},
             {"abi", i.abi_version}};
    } else {
      std::string reason = r.status().message();
      if (reason.rfind(path + ": ", 0) == 0) reason = reason.substr(path.size() + 2);
      out = {{"accepted", false}, {"reason", reason}};
    }
    write_all(fd, out.dump());
    ::close(fd);
  }
  // Skip static destructors and atexit handlers of whatever the plugin registered.
  ::_exit(0);
}

PluginScan scan_one(const std::string& path, const PluginLoaderOptions& options, int timeout_ms) {
  PluginScan scan;
  scan.path = path;
  int fds[2];
  if (::pipe(fds) != 0) {
    scan.reason = std::string("cannot create a pipe: ") + std::strerror(errno);
    return scan;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    scan.reason = std::string("cannot fork a scanner: ") + std::strerror(errno);
    return scan;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_scan(fds[1], path, options);
  }
  ::close(fds[1]);

  std::string answer;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // EOF: the child is done (or died)
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  if (timed_out) {
    scan.reason = "hung while loading (no answer within " + std::to_string(timeout_ms) + " ms; killed)";
    return scan;
  }
  if (WIFSIGNALED(status)) {
    scan.reason = "crashed while loading (signal " + std::to_string(WTERMSIG(status)) + ": " +
                  strsignal(WTERMSIG(status)) + ")";
    return scan;
  }
  json j = json::parse(answer, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    scan.reason = "the scanner exited (status " + std::to_string(WEXITSTATUS(status)) + ") without an answer";
    return scan;
  }
  scan.accepted = j.value("accepted", false);
  if (!scan.accepted) {
    scan.reason = j.value("reason", std::string("refused"));
    return scan;
  }
  scan.info.signature = j.value("signature", std::string());
  scan.info.kind = static_cast<PluginKind>(j.value("kind", 3));
  scan.info.plugin_version = j.value("version", std::string());
  scan.info.description = j.value("description", std::string());
  scan.info.config_schema = j.value("schema", std::string());
  scan.info.abi_version = j.value("abi", 0u);
  scan.info.path = path;
  return scan;
}

}  // namespace

std::vector<PluginScan> scan_plugins_isolated(const std::vector<std::string>& files_or_dirs,
                                              const PluginLoaderOptions& options, int timeout_ms) {
  std::vector<std::string> files;
  for (const auto& p : files_or_dirs) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        if (e.path().extension() == ".so") in_dir.push_back(e.path().string());
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(p);
    }
  }
  std::vector<PluginScan> out;
  for (const auto& f : files) {
    PluginScan s = scan_one(f, options, timeout_ms);
    if (s.accepted) {
      for (const auto& prev : out) {
        if (prev.accepted && prev.info.signature == s.info.signature) {
          s.accepted = false;
          s.reason = "duplicate signature '" + s.info.signature + "': already provided by " + prev.path;
          break;
        }
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace edgert
