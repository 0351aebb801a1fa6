// scan_plugins_isolated: loads each plugin file in a separate process, the
// edgert-plugin-scan helper (scan_main.cpp), and reads its answer from a pipe, so a
// plugin that crashes or hangs in its constructors or entry function cannot take the
// caller down.
//
// Why a helper and not fork(): the caller is multi-threaded, and a forked child
// inherits every lock another thread held at fork time (stdio, the logger, the
// allocator of a sanitizer runtime) with no thread left to release it. The helper is
// started with posix_spawn (nothing but async-signal-safe code runs before exec), so
// it starts with fresh locks, and with an empty signal mask and default dispositions
// whatever the calling thread had blocked or ignored.
//
// Bounds: everything about one file, from spawn to reap, happens within timeout_ms;
// after that the helper gets SIGKILL and is reaped. A helper that closes the pipe but
// does not exit is killed the same way; one that exits while a process it started
// keeps the pipe open is not waited for beyond its exit.
#include <edgert/plugin_abi.h>
#include <edgert/plugin_host.hpp>

#include "core/log.hpp"
#include "core/printable.hpp"
#include "plugins/environment.hpp"
#include "plugins/scan_cache.hpp"
#include "plugins/search_paths.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

extern char** environ;

namespace edgert {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kAnswerFd = 3;  // where the helper finds the write end of the pipe
constexpr const char* kHelperName = "edgert-plugin-scan";

// Where to look for the helper; `error` set instead when it cannot be found.
struct Helper {
  std::string path;
  std::string error;
};

// The helper named by the options or EDGERT_PLUGIN_SCANNER, else the one installed
// next to this library (<libdir>/EDGERT_SCANNER_FROM_LIBDIR, or the build tree's
// layout, <build>/lib/EDGERT_SCANNER_FROM_BUILD_LIBDIR), <libdir> found at run time
// by detail::locate_library().
Helper find_helper(const PluginLoaderOptions& options) {
  std::vector<std::string> looked;
  auto pick = [&](const std::string& candidate) {
    looked.push_back(candidate);
    return ::access(candidate.c_str(), X_OK) == 0;
  };
  const char* env = options.use_environment ? std::getenv(detail::kPluginScannerVariable) : nullptr;
  if (!options.scanner_path.empty() || (env != nullptr && *env != '\0')) {
    const std::string given = !options.scanner_path.empty() ? options.scanner_path : std::string(env);
    const char* from = !options.scanner_path.empty() ? "PluginLoaderOptions::scanner_path" : detail::kPluginScannerVariable;
    if (pick(given)) return {given, {}};
    return {{}, std::string("the plugin scanner helper ") + given + " (from " + from +
                    ") is not an executable file: " + std::strerror(errno)};
  }
  if (const auto lib = detail::locate_library(); lib.error.empty()) {
    const fs::path libdir = lib.libdir;
    for (const char* rel : {EDGERT_SCANNER_FROM_LIBDIR, EDGERT_SCANNER_FROM_BUILD_LIBDIR}) {
      const std::string candidate = (libdir / rel / kHelperName).lexically_normal().string();
      if (std::find(looked.begin(), looked.end(), candidate) != looked.end()) continue;
      if (pick(candidate)) return {candidate, {}};
    }
  }
  std::string where;
  for (const auto& l : looked) where += (where.empty() ? "" : ", ") + l;
  if (where.empty()) where = "nowhere: cannot locate libedgert itself";
  return {{}, std::string("cannot find the plugin scanner helper ") + kHelperName + " (looked for " + where +
                  "); install it with libedgert, or set EDGERT_PLUGIN_SCANNER or PluginLoaderOptions::scanner_path"};
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// A pidfd becomes readable when the process exits; -1 on kernels without pidfd_open.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

struct Spawned {
  pid_t pid = -1;
  int answer = -1;  // read end, non-blocking
  std::string error;
};

// posix_spawn with file actions and attributes: the child runs only libc's own
// async-signal-safe code before exec.
Spawned spawn_helper(const std::string& helper, const std::string& path, const PluginLoaderOptions& options) {
  Spawned s;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    s.error = std::string("cannot create a pipe: ") + std::strerror(errno);
    return s;
  }
  if (fds[1] == kAnswerFd) {  // dup2 onto itself would keep O_CLOEXEC on some libcs
    const int moved = ::fcntl(fds[1], F_DUPFD_CLOEXEC, kAnswerFd + 1);
    ::close(fds[1]);
    fds[1] = moved;
    if (moved < 0) {
      ::close(fds[0]);
      s.error = std::string("cannot move a pipe descriptor: ") + std::strerror(errno);
      return s;
    }
  }
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);

  std::vector<std::string> args = {helper, "--answer-fd=" + std::to_string(kAnswerFd),
                                   "--parent-pid=" + std::to_string(::getpid())};
  if (options.secured) args.emplace_back("--secured");
  for (const auto& [sig, sha] : options.allow) args.push_back("--allow=" + sig + "=" + sha);
  args.emplace_back("--");
  args.push_back(path);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa, fds[1], kAnswerFd);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  ::posix_spawn_file_actions_addclosefrom_np(&fa, kAnswerFd + 1);  // no other descriptor of the caller leaks
#endif
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const int rc = ::posix_spawn(&s.pid, helper.c_str(), &fa, &attr, argv.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    s.pid = -1;
    s.error = "cannot start the plugin scanner helper " + helper + ": " + std::strerror(rc);
    return s;
  }
  s.answer = fds[0];
  return s;
}

// Reads whatever is in the pipe now; false at end-of-file.
bool drain(int fd, std::string& into) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return false;
    } else if (errno != EINTR) {
      return true;  // EAGAIN: nothing more for now (other errors end at the deadline)
    }
  }
}

// Non-blocking reap. Returns true when the helper is gone; `status` unset when the
// system reaped it (SIGCHLD ignored) or another waitpid(-1) took it.
bool try_reap(pid_t pid, std::optional<int>& status) {
  int st = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      status = st;
      return true;
    }
    if (r == 0) return false;
    if (errno != EINTR) return true;  // ECHILD
  }
}

// The "plugins" list of an accepted answer (the helper's, or the cache's copy of one),
// one entry per plugin of the file; throws std::exception naming what is malformed.
std::vector<PluginScan> accepted_plugins(const std::string& path, const json& plugins) {
  if (!plugins.is_array() || plugins.empty() || plugins.size() > EDGERT_MAX_PACK_DESCRIPTORS) {
    throw std::out_of_range("plugins: expected 1-" + std::to_string(EDGERT_MAX_PACK_DESCRIPTORS) + " entries");
  }
  std::vector<PluginScan> out;
  for (const auto& p : plugins) {
    if (!p.is_object()) throw std::out_of_range("a plugin entry is not an object");
    PluginScan one;
    one.path = path;
    one.accepted = true;
    one.info.signature = p.value("signature", std::string());
    const int kind = p.value("kind", -1);
    if (kind < static_cast<int>(PluginKind::capture) || kind > static_cast<int>(PluginKind::business)) {
      throw std::out_of_range("kind " + std::to_string(kind));
    }
    one.info.kind = static_cast<PluginKind>(kind);
    one.info.plugin_version = p.value("version", std::string());
    one.info.description = p.value("description", std::string());
    one.info.config_schema = p.value("schema", std::string());
    one.info.abi_version = p.value("abi", 0u);
    one.info.path = path;
    out.push_back(std::move(one));
  }
  return out;
}

// One entry per plugin the file provides (several for a pack), or one refusal.
// `plugins_answer`, when given, receives the accepted answer's "plugins" list (what the
// cache keeps).
std::vector<PluginScan> scan_one(const std::string& path, const Helper& helper, const PluginLoaderOptions& options,
                                 int timeout_ms, json* plugins_answer = nullptr) {
  PluginScan scan;
  scan.path = path;
  if (!helper.error.empty()) {
    scan.reason = helper.error;
    return {scan};
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  Spawned child = spawn_helper(helper.path, path, options);
  if (child.pid < 0) {
    scan.reason = child.error;
    return {scan};
  }
  const int pidfd = open_pidfd(child.pid);

  std::string answer;
  bool eof = false;
  bool exited = false;
  std::optional<int> status;
  for (;;) {
    if (!eof) eof = !drain(child.answer, answer);
    exited = exited || try_reap(child.pid, status);
    // After the exit, what it wrote is in the pipe; a process it started may still
    // hold the write end, so end-of-file is not waited for.
    if (exited) {
      if (!eof) (void)drain(child.answer, answer);
      break;
    }
    const int left = ms_left(deadline);
    if (left == 0) break;
    pollfd p[2] = {{eof ? -1 : child.answer, POLLIN, 0}, {pidfd, POLLIN, 0}};
    // Without a pidfd, the exit is noticed by polling waitpid every 10 ms.
    const int r = ::poll(p, 2, pidfd >= 0 ? left : std::min(left, 10));
    if (r < 0 && errno != EINTR) break;
  }
  ::close(child.answer);

  if (!exited) {
    // SIGKILL cannot be caught or ignored; the wait lasts as long as the kernel takes
    // to tear the process down. Through the pidfd when there is one: it names this
    // process even if another thread's waitpid(-1) reaped it and the pid was reused.
    if (pidfd >= 0) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
      ::close(pidfd);
    } else {
      ::kill(child.pid, SIGKILL);
    }
    int st = 0;
    while (::waitpid(child.pid, &st, 0) < 0 && errno == EINTR) {
    }
    scan.reason = eof ? "closed its answer pipe but did not exit within " + std::to_string(timeout_ms) +
                            " ms; killed"
                      : "hung while loading (no answer within " + std::to_string(timeout_ms) + " ms; killed)";
    return {scan};
  }
  if (pidfd >= 0) ::close(pidfd);
  if (status && WIFSIGNALED(*status)) {
    // "signal 11, SIGSEGV: Segmentation fault": the number, the name operators grep
    // for, and the description.
    const int sig = WTERMSIG(*status);
    const char* abbrev = ::sigabbrev_np(sig);
    scan.reason = "crashed while loading (signal " + std::to_string(sig) +
                  (abbrev ? std::string(", SIG") + abbrev : std::string()) + ": " + strsignal(sig) + ")";
    return {scan};
  }
  json j = json::parse(answer, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    scan.reason = status ? "the scanner exited (status " + std::to_string(WEXITSTATUS(*status)) + ") without an answer"
                         : std::string("the scanner exited without an answer (its status was taken by another "
                                       "waitpid or SIGCHLD is ignored)");
    return {scan};
  }
  // The plugin ran with the answer pipe open and could have written to it itself: a
  // reply of the wrong shape is a refusal, never an exception out of the scan.
  try {
    if (!j.value("accepted", false)) {
      scan.reason = j.value("reason", std::string("refused"));
      return {scan};
    }
    std::vector<PluginScan> out = accepted_plugins(path, j.at("plugins"));
    if (plugins_answer) *plugins_answer = std::move(j.at("plugins"));
    return out;
  } catch (const std::exception& e) {
    scan = PluginScan{};
    scan.path = path;
    scan.reason = std::string("the scanner's answer is malformed (") + e.what() + ")";
    return {scan};
  }
}

// A file answered from the cache: its entry read as a helper's answer, and in secured
// mode only if plugins.allow lists each of its signatures with the file's SHA-256 (as
// the helper would check). Empty when the entry cannot answer: the file is scanned.
std::vector<PluginScan> from_cache(const std::string& path, const json& plugins, const std::string& sha256,
                                   const PluginLoaderOptions& options) {
  std::vector<PluginScan> out;
  try {
    out = accepted_plugins(path, plugins);
  } catch (const std::exception& e) {
    detail::log().warn("plugin scan cache {}: the entry for {} is malformed ({}); scanning the file again",
                       detail::printable(options.scan_cache_path, detail::kMaxLoggedText),
                       detail::printable(path, detail::kMaxLoggedText), detail::printable(e.what(), 200));
    return {};
  }
  for (auto& s : out) {
    if (options.secured) {
      const auto it = options.allow.find(s.info.signature);
      if (it == options.allow.end() || it->second != sha256) return {};
    }
    s.cached = true;
  }
  return out;
}

}  // namespace

std::string detail::scanner_helper_problem(const PluginLoaderOptions& options) { return find_helper(options).error; }

std::vector<PluginScan> scan_plugins_isolated(const std::vector<std::string>& files_or_dirs,
                                              const PluginLoaderOptions& options, int timeout_ms) {
  std::vector<std::string> files;
  std::vector<std::string> seen;  // canonical: a file reached twice (a folder listed twice) is scanned once
  auto add = [&](const std::string& f) {
    std::error_code ec;
    auto canonical = fs::weakly_canonical(f, ec).string();
    if (ec) canonical = f;
    if (std::find(seen.begin(), seen.end(), canonical) != seen.end()) return;
    seen.push_back(std::move(canonical));
    files.push_back(f);
  };
  for (const auto& p : files_or_dirs) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        if (e.path().extension() == ".so") in_dir.push_back(e.path().string());
      }
      std::sort(in_dir.begin(), in_dir.end());
      for (const auto& f : in_dir) add(f);
    } else {
      add(p);
    }
  }
  Helper helper = find_helper(options);
  if (helper.error.empty() && timeout_ms <= 0) {
    helper.error = "timeout_ms must be positive (got " + std::to_string(timeout_ms) + ")";
  }
  std::optional<detail::ScanCache> cache;
  if (!options.scan_cache_path.empty() && helper.error.empty()) cache = detail::ScanCache::load(options.scan_cache_path);
  std::vector<PluginScan> out;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    std::vector<PluginScan> batch;
    std::optional<detail::FileIdentity> id;
    if (cache) {
      // Hashed on every lookup: the SHA-256 is the key, the stat fields only narrow it.
      id = detail::identify_file(f);
      if (id) {
        if (const json* cached = cache->find(seen[i], *id)) batch = from_cache(f, *cached, id->sha256, options);
      }
    }
    if (batch.empty()) {
      json answer;
      batch = scan_one(f, helper, options, timeout_ms, cache ? &answer : nullptr);
      if (cache) {
        // Only an accepted answer is kept, and only when the file did not change while
        // the helper loaded it; a refusal (or a crash, maybe of a dependency) is
        // scanned again next time.
        const bool accepted = !batch.empty() && batch.front().accepted;
        const auto after = accepted && id ? detail::identify_file(f) : std::nullopt;
        if (accepted && after && *after == *id) {
          cache->put(seen[i], *id, std::move(answer));
        } else {
          cache->forget(seen[i]);
        }
      }
    }
    const PluginScan* clash = nullptr;  // the first plugin of this file that clashed
    for (PluginScan& s : batch) {
      if (s.accepted) {
        // As PluginLoader::load_all: the first file in order wins; a later one in another
        // folder is shadowed (not a refusal), in the same folder it is refused.
        for (const auto& prev : out) {
          if (prev.accepted && prev.info.signature == s.info.signature) {
            s.accepted = false;
            if (detail::same_folder(s.path, prev.path)) {
              s.reason = "duplicate signature '" + s.info.signature + "': already provided by " + prev.path;
            } else {
              s.shadowed = true;
              s.reason = detail::shadowed_text(s.info.signature, s.path, prev.path);
            }
            if (!clash) clash = &s;
            break;
          }
        }
      }
    }
    // A pack loads whole or not at all (PluginLoader::load): one clash keeps every
    // plugin of the file out, reported the same way (shadowed or refused).
    if (clash) {
      for (PluginScan& s : batch) {
        if (!s.accepted) continue;
        s.accepted = false;
        s.shadowed = clash->shadowed;
        s.reason = "not loaded: plugin '" + clash->info.signature + "' of the same pack is " +
                   (clash->shadowed ? "shadowed" : "a duplicate") + " (a pack loads whole or not at all)";
      }
    }
    for (PluginScan& s : batch) out.push_back(std::move(s));
  }
  if (cache) cache->save();
  return out;
}

}  // namespace edgert
