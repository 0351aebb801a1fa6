// `edgert-node try` (docs/plugins.md, "Testing a plugin").
//
// The parent parses and checks everything it can (JSON, files, options), then forks
// before loading any plugin, while it still has a single thread. The child loads the
// plugins and drives the instance; it reports each plugin call on a pipe ("B <what>"
// when a call begins, "E" when it returns) and what it counted (I input, M emitted,
// F failed), and "D <status>" just before it exits on purpose. The parent enforces the
// per-call timeout (SIGKILL) and turns any other end of the child into one line naming
// the call, exit status 3.
#include "try_cmd.hpp"

#include <edgert/edgert.hpp>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgert_node {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kExitClean = 0, kExitPluginErrors = 1, kExitUsage = 2, kExitAbnormal = 3;

// `s` as printable ASCII for terminal and log text (the rule of the library's printable():
// bytes outside 0x20..0x7e and the backslash become \xNN; long text is cut, its size noted).
std::string printable(std::string_view s, std::size_t max = 200) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  const std::size_t n = std::min(s.size(), max);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "edgert-node try: %s\n", message.c_str());
  return kExitUsage;
}

// ---- the child ---------------------------------------------------------------------

int g_report_fd = -1;

// One line to the parent. Lines are far below PIPE_BUF, so a write from a plugin's own
// thread never interleaves with another.
void report(const std::string& line) {
  const std::string l = line + "\n";
  std::size_t off = 0;
  while (off < l.size()) {
    const ssize_t n = ::write(g_report_fd, l.data() + off, l.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone: nothing left to tell
    off += static_cast<std::size_t>(n);
  }
}

// Brackets one plugin call: the parent times it and names it if the child dies in it.
template <class F>
auto call(const std::string& what, F&& f) {
  std::fflush(stdout);
  report("B " + what);
  auto r = f();
  std::fflush(stdout);
  report("E");
  return r;
}

struct PrintSink : edgert::PluginSink {
  void on_emit(const std::string& instance, std::string_view type, std::string_view text) override {
    std::printf("%s %.*s %.*s\n", printable(instance).c_str(), static_cast<int>(type.size()), type.data(),
                static_cast<int>(text.size()), text.data());
    std::fflush(stdout);
    report("M");
  }
  void on_notify(const std::string& instance, int level, std::string_view message) override {
    std::printf("%s notification %d %s\n", printable(instance).c_str(), level, printable(message, 1000).c_str());
    std::fflush(stdout);
  }
};

struct Child {
  const TryCommand::Options& o;
  const std::vector<std::string>& records;
  std::vector<std::string> dirs, files;
  int inputs = 0, failures = 0;

  int fail_usage(const std::string& m) { return usage_error(m); }

  void failed(const edgert::Status& st) {
    ++failures;
    report("F");
    std::fprintf(stderr, "edgert-node try: %s\n", st.message().c_str());
  }

  bool has_signature(edgert::PluginLoader& loader, const std::string& sig, edgert::PluginInfo* out = nullptr) {
    for (const auto& p : loader.plugins()) {
      if (p.signature == sig) {
        if (out) *out = p;
        return true;
      }
    }
    return false;
  }

  // Creates and starts an instance; nullptr (after printing why) on failure.
  std::unique_ptr<edgert::PluginInstance> make(edgert::PluginLoader& loader, const std::string& sig,
                                               const std::string& name, const std::string& config, int* rc) {
    auto sink = std::make_shared<PrintSink>();
    auto inst = call("create() of instance " + printable(name),
                     [&] { return loader.create_instance(sig, name, config, sink); });
    if (!inst.ok()) {
      std::fprintf(stderr, "edgert-node try: %s\n", inst.status().message().c_str());
      // A config the loader refused is the user's error; a plugin refusing its own create is the plugin's.
      *rc = inst.status().code() == edgert::ErrorCode::internal ? kExitPluginErrors : kExitUsage;
      return nullptr;
    }
    auto p = std::move(inst).value();
    auto st = call("start() of instance " + printable(name), [&] { return p->start(); });
    if (!st.ok()) {
      std::fprintf(stderr, "edgert-node try: %s\n", st.message().c_str());
      *rc = kExitPluginErrors;
      return nullptr;
    }
    return p;
  }

  void process(edgert::PluginInstance& p, edgert::PluginInput in) {
    ++inputs;
    report("I");
    const auto st = call("process() of instance " + printable(p.name()) + " on input " + std::to_string(inputs),
                         [&] { return p.process(in); });
    if (!st.ok()) failed(st);
  }

  // One item from a capture instance: false when the source ended or failed.
  bool capture_one(edgert::PluginInstance& cap, int n, edgert::Captured* out) {
    const auto give_up = Clock::now() + std::chrono::milliseconds(o.timeout_ms);
    for (;;) {
      auto c = call("capture() of instance " + printable(cap.name()) + " on call " + std::to_string(n),
                    [&] { return cap.capture(); });
      if (c.ok()) {
        *out = std::move(c).value();
        return true;
      }
      const auto code = c.status().code();
      if (code == edgert::ErrorCode::end_of_stream) {
        std::fprintf(stderr, "try: %s: end of stream after %d captures\n", printable(cap.name()).c_str(), n - 1);
        return false;
      }
      if (code != edgert::ErrorCode::again) {
        failed(c.status());
        return false;
      }
      if (Clock::now() >= give_up) {
        failed({edgert::ErrorCode::timeout, "capture() of instance " + printable(cap.name()) + ": nothing captured for " +
                                                std::to_string(o.timeout_ms) + " ms"});
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  int feed_file(edgert::PluginInstance& p, int limit) {
    auto to_frame = [](const cv::Mat& m, std::uint64_t seq) {
      edgert::FrameInfo info;
      info.format = m.channels() == 1 ? edgert::PixelFormat::gray8
                    : m.channels() == 4 ? edgert::PixelFormat::bgra8 : edgert::PixelFormat::bgr8;
      info.width = m.cols;
      info.height = m.rows;
      info.stride = static_cast<std::int32_t>(m.step[0]);
      info.sequence = seq;
      info.stream = "try";
      info.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
      return edgert::Frame::copy_of(std::move(info), m.data);
    };
    auto usable = [](const cv::Mat& m) {
      return !m.empty() && m.depth() == CV_8U && (m.channels() == 1 || m.channels() == 3 || m.channels() == 4);
    };
    // OpenCV's own log (every video backend it tried and why it failed) only at debug and below.
    if (o.log_level != "debug" && o.log_level != "trace") {
      cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    }
    if (cv::haveImageReader(o.from)) {
      const cv::Mat img = cv::imread(o.from, cv::IMREAD_ANYCOLOR);
      if (!usable(img)) return fail_usage("--from " + printable(o.from) + ": cannot decode the image");
      process(p, {"try", to_frame(img, 1), "", ""});  // one image: one input, whatever --count
      return kExitClean;
    }
    cv::VideoCapture video(o.from);
    if (!video.isOpened()) return fail_usage("--from " + printable(o.from) + ": not an image or a video OpenCV can read");
    cv::Mat m;
    for (std::uint64_t seq = 1; (limit == 0 || inputs < limit) && video.read(m); ++seq) {
      if (!usable(m)) return fail_usage("--from " + printable(o.from) + ": frame " + std::to_string(seq) + " is not 8-bit");
      process(p, {"try", to_frame(m, seq), "", ""});
    }
    return kExitClean;
  }

  int run() {
    edgert::PluginLoaderOptions opts;
    opts.search_paths = dirs;
    auto loader = std::make_unique<edgert::PluginLoader>(opts);
    const int load_rc = call("loading plugins", [&] {
      for (const auto& f : files) {
        if (auto r = loader->load(f); !r.ok()) return usage_error(r.status().message());
      }
      const bool have_all = has_signature(*loader, o.signature) &&
                            (o.from_plugin.empty() || has_signature(*loader, o.from_plugin));
      if (!have_all) (void)loader->load_all();  // refusals are logged with their reasons
      return kExitClean;
    });
    if (load_rc != kExitClean) return load_rc;

    edgert::PluginInfo info, source_info;
    std::string where;
    for (const auto& f : files) where += (where.empty() ? "" : ", ") + f;  // loaded first
    for (const auto& d : loader->search_paths()) where += (where.empty() ? "" : ", ") + d;
    if (!has_signature(*loader, o.signature, &info)) {
      return fail_usage("no plugin with signature '" + printable(o.signature) + "' in " + where);
    }
    if (!o.from_plugin.empty() && !has_signature(*loader, o.from_plugin, &source_info)) {
      return fail_usage("--from-plugin: no plugin with signature '" + printable(o.from_plugin) + "' in " + where);
    }
    const bool has_inputs = !records.empty() || !o.from.empty() || !o.from_plugin.empty();
    const bool is_capture = info.kind == edgert::PluginKind::capture;
    if (is_capture && has_inputs) {
      return fail_usage("'" + printable(o.signature) + "' is a capture plugin and takes no inputs; run it alone, or " +
                        "feed a business plugin with --from-plugin " + printable(o.signature));
    }
    if (!is_capture && !has_inputs) {
      return fail_usage("'" + printable(o.signature) + "' is a " + edgert::to_string(info.kind) +
                        " plugin: give it inputs with --record, --records, --from or --from-plugin");
    }
    if (!o.from_plugin.empty() && source_info.kind != edgert::PluginKind::capture) {
      return fail_usage("--from-plugin '" + printable(o.from_plugin) + "' is a " + edgert::to_string(source_info.kind) +
                        " plugin, not a capture plugin");
    }

    int rc = kExitClean;
    auto p = make(*loader, o.signature, o.signature + "-1", o.config, &rc);
    if (!p) return rc;
    std::unique_ptr<edgert::PluginInstance> source;
    if (!o.from_plugin.empty()) {
      const std::string name = o.from_plugin + (o.from_plugin == o.signature ? "-2" : "-1");
      source = make(*loader, o.from_plugin, name, o.from_config, &rc);
      if (!source) return rc;
    }

    if (is_capture) {
      const int limit = o.count > 0 ? o.count : 5;
      edgert::Captured c;
      for (int n = 1; n <= limit && capture_one(*p, n, &c); ++n) {
        ++inputs;
        report("I");
        if (const auto& f = c.frame) {
          std::printf("frame seq=%llu %dx%d stride=%d format=%d\n", static_cast<unsigned long long>(f.info().sequence),
                      f.info().width, f.info().height, f.info().stride, static_cast<int>(f.info().format));
        } else {
          std::printf("record %s\n", c.record_json.c_str());
        }
        std::fflush(stdout);
      }
    } else if (source) {
      const int limit = o.count > 0 ? o.count : 5;
      edgert::Captured c;
      for (int n = 1; n <= limit && capture_one(*source, n, &c); ++n) {
        process(*p, {"try", std::move(c.frame), std::move(c.record_json), ""});
        c = {};
      }
    } else if (!o.from.empty()) {
      if (const int frc = feed_file(*p, o.count); frc != kExitClean) rc = frc;
    } else {
      for (const auto& r : records) {
        if (o.count > 0 && inputs >= o.count) break;
        process(*p, {"try", {}, r, ""});
      }
    }

    for (auto* inst : {source.get(), p.get()}) {
      if (inst == nullptr) continue;
      const auto st = call("stop() of instance " + printable(inst->name()), [&] { return inst->stop(); });
      if (!st.ok()) failed(st);
    }
    if (source) {
      const std::string name = printable(source->name());
      call("destroy() of instance " + name, [&] { source.reset(); return 0; });
    }
    const std::string name = printable(p->name());
    call("destroy() of instance " + name, [&] { p.reset(); return 0; });
    call("unloading plugins", [&] { loader.reset(); return 0; });
    if (rc != kExitClean) return rc;
    return failures == 0 ? kExitClean : kExitPluginErrors;
  }
};

// ---- the parent --------------------------------------------------------------------

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

struct Tally {
  int inputs = 0, emitted = 0, failed = 0;
};

void print_summary(const Tally& t) {
  std::fprintf(stderr, "try: %d input%s, %d emitted, %d failed\n", t.inputs, t.inputs == 1 ? "" : "s", t.emitted,
               t.failed);
}

int supervise(pid_t pid, int fd, int timeout_ms) {
  Tally t;
  std::string buf, current, last = "loading plugins";
  bool in_call = false, in_process = false;
  std::optional<int> done;
  Clock::time_point call_start{};
  bool eof = false;
  while (!eof) {
    int wait_ms = -1;
    if (in_call) {
      const auto left = std::chrono::milliseconds(timeout_ms) -
                        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - call_start);
      wait_ms = static_cast<int>(std::max<long long>(0, left.count()));
    }
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {  // the call overran its time
      ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      std::fflush(stdout);
      std::fprintf(stderr, "edgert-node try: %s: timed out after %d ms\n", current.c_str(), timeout_ms);
      if (in_process) ++t.failed;
      print_summary(t);
      return kExitAbnormal;
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      break;
    }
    buf.append(chunk, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("B ", 0) == 0) {
        current = line.substr(2);
        in_call = true;
        in_process = current.rfind("process()", 0) == 0;
        call_start = Clock::now();
      } else if (line == "E") {
        in_call = false;
        last = current;
      } else if (line == "I") {
        ++t.inputs;
      } else if (line == "M") {
        ++t.emitted;
      } else if (line == "F") {
        ++t.failed;
      } else if (line.rfind("D ", 0) == 0) {
        done = std::atoi(line.c_str() + 2);
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::fflush(stdout);
  const std::string where = in_call ? current : "after " + last;
  if (WIFSIGNALED(status)) {
    std::fprintf(stderr, "edgert-node try: %s: killed by %s\n", where.c_str(), signal_name(WTERMSIG(status)).c_str());
  } else if (WIFEXITED(status) && !done) {
    std::fprintf(stderr, "edgert-node try: %s: exited with status %d (the plugin called exit())\n", where.c_str(),
                 WEXITSTATUS(status));
  } else if (WIFEXITED(status) && *done == WEXITSTATUS(status)) {
    if (*done != kExitUsage) print_summary(t);
    return *done;
  } else {
    std::fprintf(stderr, "edgert-node try: %s: ended with status %d after reporting %d\n", where.c_str(),
                 WEXITSTATUS(status), *done);
  }
  if (in_process) ++t.failed;
  print_summary(t);
  return kExitAbnormal;
}

// A JSON object or "" ("" means the plugin's defaults).
bool check_object(const std::string& text, const char* option, std::string* error) {
  if (text.empty()) return true;
  try {
    if (!json::parse(text).is_object()) {
      *error = std::string(option) + ": not a JSON object";
      return false;
    }
  } catch (const json::exception& e) {
    *error = std::string(option) + ": invalid JSON: " + e.what();
    return false;
  }
  return true;
}

}  // namespace

TryCommand::TryCommand(CLI::App& app) {
  cmd_ = app.add_subcommand("try", "run one plugin instance in a child process and feed it inputs "
                                   "(records, an image or video, or a capture plugin)");
  cmd_->add_option("signature", o_.signature, "the plugin's signature")->required();
  cmd_->add_option("--config", o_.config, "instance configuration (a JSON object)");
  // Each --record is one JSON text, commas and brackets included: no list splitting.
  cmd_->add_option("--record", o_.records, "a JSON record to process, taken verbatim (repeatable)")
      ->allow_extra_args(false)
      ->delimiter('\0');
  cmd_->add_option("--records", o_.records_file, "a JSONL file: one JSON record per line (blank lines skipped)");
  cmd_->add_option("--from", o_.from, "frames from an image or a video file (OpenCV)");
  cmd_->add_option("--from-plugin", o_.from_plugin, "frames or records from this capture plugin");
  cmd_->add_option("--from-config", o_.from_config, "the --from-plugin instance's configuration (a JSON object)");
  cmd_->add_option("--count", o_.count, "at most this many inputs (default: all; 5 captures from a capture plugin)")
      ->check(CLI::PositiveNumber);
  cmd_->add_option("--timeout-ms", o_.timeout_ms, "the longest one plugin call may take (default 10000)")
      ->check(CLI::Range(1, 3600 * 1000));
  cmd_->add_option("--log-level", o_.log_level, "trace, debug, info, warning, error, critical, off");
  cmd_->add_option("--plugin-path", o_.paths, "plugin files or directories, searched before EDGERT_PLUGIN_PATH (repeatable)")
      ->allow_extra_args(false);
}

int TryCommand::run() {
  const auto& o = o_;
  if (!o.log_level.empty()) {
    if (auto st = edgert::set_log_level(o.log_level); !st.ok()) return usage_error("--log-level: " + st.message());
  }
  std::string error;
  if (!check_object(o.config, "--config", &error) || !check_object(o.from_config, "--from-config", &error)) {
    return usage_error(error);
  }
  if (!o.from_config.empty() && o.from_plugin.empty()) return usage_error("--from-config needs --from-plugin");

  std::vector<std::string> records;
  for (std::size_t i = 0; i < o.records.size(); ++i) {
    try {
      const auto parsed = json::parse(o.records[i]);
      (void)parsed;
    } catch (const json::exception& e) {
      return usage_error("--record " + std::to_string(i + 1) + ": invalid JSON: " + e.what());
    }
    records.push_back(o.records[i]);
  }
  if (!o.records_file.empty()) {
    std::ifstream in(o.records_file);
    if (!in) return usage_error("--records " + printable(o.records_file) + ": cannot open: " + std::strerror(errno));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        const auto parsed = json::parse(line);
        (void)parsed;
      } catch (const json::exception& e) {
        return usage_error(printable(o.records_file) + ":" + std::to_string(n) + ": invalid JSON: " + e.what());
      }
      records.push_back(line);
    }
  }
  const int sources = (records.empty() && o.records_file.empty() ? 0 : 1) + (o.from.empty() ? 0 : 1) +
                      (o.from_plugin.empty() ? 0 : 1);
  if (sources > 1) return usage_error("give one kind of input: records (--record/--records), --from or --from-plugin");
  if (!o.from.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(o.from, ec)) return usage_error("--from " + printable(o.from) + ": no such file");
  }

  Child child{o, records, {}, {}};
  for (const auto& p : o.paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      child.dirs.push_back(p);
    } else if (std::filesystem::is_regular_file(p, ec)) {
      child.files.push_back(p);
    } else {
      return usage_error("--plugin-path " + printable(p) + ": no such file or directory");
    }
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return usage_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return usage_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    g_report_fd = fds[1];
    // A plugin's crash must end the child by its signal, even under a sanitizer's handlers.
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
    int rc = kExitUsage;
    try {
      rc = child.run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "edgert-node try: %s\n", e.what());
      rc = kExitPluginErrors;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    report("D " + std::to_string(rc));
    ::_exit(rc);
  }
  ::close(fds[1]);
  const int rc = supervise(pid, fds[0], o.timeout_ms);
  ::close(fds[0]);
  return rc;
}

}  // namespace edgert_node
