// emit_bench: the CPU one result costs a node from the plugin's emit to its row in the
// outbox (issue 20, "Emit-to-outbox CPU per result"; docs/performance.md).
//
// Each run starts `edgert-node run CONFIG --exit-when-done` as a child process over a
// generated YAML config: synthetic_camera (16x16 gray8, as fast as called, `frames` N,
// lossless: live_feed false) feeding one bench_sink instance, the outbox on (a fresh
// data_dir), no broker, no JSONL. The instance's queue holds every frame (--queue 0, the
// default): the capture never waits for room and the sink never waits for input, so
// neither spins in the queue's blocking wait (DropHeadQueue spins up to ~50-150 us before
// it sleeps), whose CPU depends on how fast the other side is and not on the emit path.
// `--queue 64` measures the blocking configuration instead. bench_sink emits one prebuilt JSON result of
// `emit_bytes` bytes per frame. The child's CPU is user + sys from wait4's rusage, so
// the load of a shared machine moves it far less than it moves wall time.
//   base run:  emit_bytes 0 (capture, queue, process() calls, start, stop)
//   emit run:  emit_bytes B, the same frames
//   CPU per result = (cpu_emit - cpu_base) / rows, rows counted afterwards by this bench
//   with SQLite on the stopped node's mailbox.db (payload_type 'bench.emit'), never
//   from the node's own counters; a run that stored fewer rows than frames is an error.
// The config uses only keys that the node before issue 20 (6904bc4) also accepts, and the
// plugins come from one folder this bench fills with this build's synthetic_camera.so and
// bench_sink.so (plugin ABI 1.0), so `--node old=PATH` drives an older edgert-node
// unchanged and only the runtime differs. With several --node, every round runs them in
// turn, the first one alternating, and the JSON reports each one's median and range and
// the ratio of each to the first.
// Usage: emit_bench [--json] [--quick] [--node LABEL=PATH]... [--results N]
//                   [--sizes B,B,...] [--budget-mb M] [--rounds R] [--queue Q]
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kNode = EDGERT_BENCH_NODE;                // this build's edgert-node
const std::string kPluginDir = EDGERT_BENCH_PLUGIN_DIR;     // synthetic_camera.so
const std::string kBenchPluginDir = EDGERT_BENCH_SINK_DIR;  // bench_sink.so

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? -1 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::vector<double> load_average() {
  double l[3] = {-1, -1, -1};
  if (::getloadavg(l, 3) != 3) return {-1, -1, -1};
  return {l[0], l[1], l[2]};
}

struct RunResult {
  double cpu_s = 0;   // user + sys of the child
  double wall_s = 0;  // fork to reaped
  long max_rss_kb = 0;
  std::int64_t rows = 0;         // outbox rows of payload_type 'bench.emit'
  std::int64_t stored_bytes = 0;  // their envelope_json bytes
};

// Rows with payload_type 'bench.emit' in a stopped node's mailbox.db, and their stored bytes.
std::pair<std::int64_t, std::int64_t> count_rows(const fs::path& db_path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail(db_path.string() + ": " + err);
  }
  sqlite3_stmt* st = nullptr;
  const char* sql = "SELECT count(*), coalesce(sum(length(envelope_json)), 0) FROM outbox WHERE payload_type = 'bench.emit'";
  std::pair<std::int64_t, std::int64_t> out{-1, -1};
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    out = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
  }
  const std::string err = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (out.first < 0) fail(db_path.string() + ": counting the outbox: " + err);
  return out;
}

// One child `edgert-node run` over a fresh data_dir under `dir`.
RunResult run_node(const std::string& node, const fs::path& dir, const fs::path& plugins, std::int64_t frames,
                   std::int64_t queue, std::int64_t emit_bytes, double limit_s) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path cfg = dir / "node.yaml";
  std::ofstream(cfg) << "node: {id: emit-bench, data_dir: " << (dir / "data").string() << ", log_level: warning}\n"
                     << "plugins: {paths: [" << plugins.string() << "]}\n"
                     << "streams:\n"
                     << "  - name: s0\n"
                     << "    capture: {type: synthetic_camera, width: 16, height: 16, pixel_format: gray8, objects: 1,"
                     << " object_size: 4, frames: " << frames << ", live_feed: false, reconnectable: no}\n"
                     << "    plugins:\n"
                     << "      - signature: bench_sink\n"
                     << "        instances:\n"
                     << "          - {instance_id: sink, max_inputs_queue_size: " << queue << ", emit_bytes: " << emit_bytes << "}\n";
  const fs::path out = dir / "node.out";
  // The environment without EDGERT_* (an override would change the config) and without
  // ASAN_/UBSAN_OPTIONS changes: the child inherits the rest.
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "EDGERT_", 7) != 0) env_store.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);

  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    std::FILE* f = std::freopen(out.c_str(), "w", stdout);
    if (f != nullptr) ::dup2(STDOUT_FILENO, STDERR_FILENO);
    ::execle(node.c_str(), "edgert-node", "run", cfg.c_str(), "--exit-when-done", static_cast<char*>(nullptr),
             envp.data());
    std::fprintf(stderr, "exec %s: %s\n", node.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  for (;;) {
    const pid_t r = ::wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (r < 0) fail(std::string("wait4: ") + std::strerror(errno));
    if (std::chrono::duration<double>(Clock::now() - t0).count() > limit_s) {
      ::kill(pid, SIGKILL);
      ::wait4(pid, &status, 0, &ru);
      fail(node + " did not finish " + std::to_string(frames) + " frames within " + std::to_string(limit_s) +
           " s; its output: " + out.string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  RunResult r;
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fail(node + " exited with status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status)) +
         "; its output: " + out.string());
  }
  auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  r.cpu_s = tv(ru.ru_utime) + tv(ru.ru_stime);
  r.max_rss_kb = ru.ru_maxrss;
  std::tie(r.rows, r.stored_bytes) = count_rows(dir / "data" / "mailbox.db");
  const std::int64_t want = emit_bytes > 0 ? frames : 0;
  if (r.rows != want) {
    fail(node + ": " + std::to_string(r.rows) + " bench.emit rows stored, expected " + std::to_string(want) +
         " (frames " + std::to_string(frames) + ", emit_bytes " + std::to_string(emit_bytes) + "); " + out.string());
  }
  return r;
}

std::vector<std::int64_t> parse_sizes(const std::string& s) {
  std::vector<std::int64_t> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, comma - pos);
    std::size_t used = 0;
    const long long v = std::stoll(item, &used);
    if (used != item.size() || v < 23) fail("--sizes: '" + item + "' is not a size in bytes >= 23");
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  bool as_json = false, quick = false;
  std::vector<std::pair<std::string, std::string>> nodes;  // label, path
  std::int64_t results = 50000, budget_mb = 256;
  std::string sizes_arg = "200,4096,65536";
  int rounds = 3;
  std::int64_t queue_arg = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--json") {
      as_json = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--node") {
      const std::string v = value();
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) fail("--node: expected LABEL=PATH, got '" + v + "'");
      nodes.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--results") {
      results = std::stoll(value());
    } else if (a == "--sizes") {
      sizes_arg = value();
    } else if (a == "--budget-mb") {
      budget_mb = std::stoll(value());
    } else if (a == "--queue") {
      queue_arg = std::stoll(value());
    } else if (a == "--rounds") {
      rounds = std::stoi(value());
    } else {
      fail("unknown argument '" + a + "' (usage: emit_bench [--json] [--quick] [--node LABEL=PATH]... "
           "[--results N] [--sizes B,...] [--budget-mb M] [--rounds R] [--queue Q])");
    }
  }
  if (quick) {
    results = 1000;
    sizes_arg = "200";
    rounds = 1;
  }
  if (nodes.empty()) nodes.emplace_back("this", kNode);
  if (results < 1 || rounds < 1 || budget_mb < 1) fail("--results, --rounds and --budget-mb must be >= 1");
  if (queue_arg < 0 || queue_arg > 1000000) fail("--queue: 0 (every frame) or [1, 1000000]");
  const std::vector<std::int64_t> sizes = parse_sizes(sizes_arg);

  const fs::path root = fs::temp_directory_path() / ("emit_bench." + std::to_string(::getpid()));
  fs::create_directories(root / "plugins");
  // One plugin folder for every node: this build's capture and sink, nothing else.
  fs::copy_file(fs::path(kPluginDir) / "synthetic_camera.so", root / "plugins" / "synthetic_camera.so");
  fs::copy_file(fs::path(kBenchPluginDir) / "bench_sink.so", root / "plugins" / "bench_sink.so");

  json out;
  out["load_average_before"] = load_average();
  json runs = json::array();
  // per[size][label]: the CPU per result of each round, in microseconds
  std::map<std::int64_t, std::map<std::string, std::vector<double>>> per;
  for (int round = 0; round < rounds; ++round) {
    for (const std::int64_t size : sizes) {
      const std::int64_t frames = std::max<std::int64_t>(
          1, std::min<std::int64_t>(results, budget_mb * 1024 * 1024 / size));
      for (std::size_t k = 0; k < nodes.size(); ++k) {
        const auto& [label, path] = nodes[(k + static_cast<std::size_t>(round)) % nodes.size()];
        // Generous (the old node took 69 s for 4,096 results of 64 KiB at a load of 10); a run
        // past it is killed and reported.
        const double limit = 60.0 + double(frames) * (1e-3 + double(size) * 0.5e-6);
        // max_inputs_queue_size is at most 1,000,000 (docs/configuration.md)
        const std::int64_t queue = queue_arg > 0 ? queue_arg : std::min<std::int64_t>(frames, 1000000);
        const RunResult base = run_node(path, root / "run", root / "plugins", frames, queue, 0, limit);
        const RunResult emit = run_node(path, root / "run", root / "plugins", frames, queue, size, limit);
        const double us = (emit.cpu_s - base.cpu_s) / double(emit.rows) * 1e6;
        per[size][label].push_back(us);
        runs.push_back({{"round", round}, {"node", label}, {"emit_bytes", size}, {"results", emit.rows},
                        {"queue", queue},
                        {"stored_bytes_per_row", double(emit.stored_bytes) / double(emit.rows)},
                        {"cpu_base_s", base.cpu_s}, {"cpu_emit_s", emit.cpu_s},
                        {"wall_base_s", base.wall_s}, {"wall_emit_s", emit.wall_s},
                        {"max_rss_emit_kb", emit.max_rss_kb}, {"cpu_us_per_result", us}});
        if (!as_json) {
          std::printf("round %d %-6s %6lld B: %lld rows, cpu base %.3f s emit %.3f s -> %.2f us/result (wall %.2f/%.2f s)\n",
                      round, label.c_str(), static_cast<long long>(size), static_cast<long long>(emit.rows),
                      base.cpu_s, emit.cpu_s, us, base.wall_s, emit.wall_s);
          std::fflush(stdout);
        }
      }
    }
  }
  out["load_average_after"] = load_average();
  json summary = json::object();
  for (const auto& [size, by_label] : per) {
    json s = json::object();
    const double first = median(by_label.at(nodes[0].first));
    for (const auto& [label, path] : nodes) {
      const auto& v = by_label.at(label);
      s[label] = {{"cpu_us_per_result_median", median(v)},
                  {"min", *std::min_element(v.begin(), v.end())},
                  {"max", *std::max_element(v.begin(), v.end())}};
      if (label != nodes[0].first) s[label + "_vs_" + nodes[0].first] = median(v) / first;
    }
    summary[std::to_string(size)] = s;
  }
  out["emit_cpu_per_result"] = summary;
  out["runs"] = runs;
  std::error_code ec;
  fs::remove_all(root, ec);
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s\n", summary.dump(2).c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "emit_bench: %s\n", e.what());
  return 1;
}
