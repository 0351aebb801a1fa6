// pipeline_bench: the pipeline (docs/pipeline.md) measured end to end through real Nodes
// built from YAML (edgert::parse_config), real plugin .so files and the bundled capture
// and business plugins, against bare harnesses doing the same plugin work without the
// runtime. Issue 11's "Benchmark" parts, each a key of the --json object:
//   runtime_vs_bare        1080p synthetic_camera -> 4 motion_detector, lossless, fps vs
//                          the same .so files through the plugin testing kit: one thread
//                          generating each frame, 4 detector threads behind queues of 16
//   latency_30fps          capture -> end of process() p50/p99 (instance stats) and frame
//                          age at plugin entry, 4 bench_sink (and 4 motion_detector)
//   bytes_copied_per_frame Frame::copied_bytes() delta over runtime_vs_bare / frames
//   fanout                 capture-thread time with 1 vs 16 consumers: cost per consumer
//   file_vs_bare_decode    a 1280x720 file through `video` -> 2 bench_sink vs a bare
//                          cv::VideoCapture read() loop
//   stalled_rss            VmRSS with one instance blocked forever, live_feed: true
//   staleness              frame age at plugin entry, consumers 2x slower than the source
//   decimation             CPU of `video` target_fps: 5 vs grab()+retrieve() of every frame
// Figures and how to rerun: docs/performance.md, "Pipeline (issue 11)". Speed goals are
// reported (goal_met) and never turn into a failing exit status: only errors do.
// Usage: pipeline_bench [--quick] [--json] [--stall-seconds S] [--only PART,...]
#include <edgert/config.hpp>
#include <edgert/frame.hpp>
#include <edgert/log.hpp>
#include <edgert/node.hpp>
#include <edgert/pipeline.hpp>
#include <edgert/plugin_testing.hpp>

#include <dlfcn.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::ordered_json;  // the parts print in the order they ran
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

const std::string kPluginDir = EDGERT_BENCH_PLUGIN_DIR;        // the bundled plugins
const std::string kBenchPluginDir = EDGERT_BENCH_SINK_DIR;     // bench_sink

struct Options {
  bool quick = false;
  bool json = false;
  std::int64_t frames_1080 = 600;       // runtime_vs_bare frames
  double latency_s = 10;                // latency_30fps, each of the two runs
  std::int64_t fanout_frames = 20000;   // fanout frames per run
  int fanout_rounds = 3;
  int video_frames = 600;               // file_vs_bare_decode / decimation
  int file_rounds = 5;
  double stall_s = 30;                  // stalled_rss
  double stale_s = 10;                  // staleness
  std::set<std::string> only;           // empty: every part
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * double(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// VmRSS of this process in MiB; -1 when /proc is not readable.
double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmRSS:  1234 kB"
  }
  return -1;
}

double round3(double v) { return std::round(v * 1000) / 1000; }

// A temporary folder, removed at exit of scope.
struct TempDir {
  fs::path dir;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "edgert-pipeline-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) fail("cannot create a temporary folder under " + fs::temp_directory_path().string());
    dir = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// One Node run: a YAML config, a result sink keeping bench_sink's ages and marks.
class NodeRun {
 public:
  struct Mark {
    std::uint64_t seq;
    std::int64_t ts_ns;
  };

  NodeRun(const fs::path& data_dir, const std::string& streams_yaml) {
    const std::string yaml = "node: {id: pipeline-bench, data_dir: " + (data_dir / "data").string() +
                             ", heartbeat_interval_ms: 0}\n"
                             "plugins: {paths: [" + kPluginDir + ", " + kBenchPluginDir + "]}\n"
                             "pipeline: {outbox: false}\n"
                             "streams:\n" + streams_yaml;
    auto cfg = edgert::parse_config(yaml, "pipeline_bench.yaml", {});
    if (!cfg.ok()) fail("config refused: " + cfg.status().message() + "\n" + yaml);
    auto made = edgert::Node::create(std::move(cfg).value());
    if (!made.ok()) fail("Node::create: " + made.status().message());
    node_ = std::move(made).value();
    node_->add_result_sink([this](const edgert::PipelineResult& r) { on_result(r); });
  }
  ~NodeRun() { stop(); }

  void start() {
    const auto t0 = Clock::now();
    if (auto st = node_->start(); !st.ok()) fail("Node::start: " + st.message());
    start_s_ = seconds_since(t0);
  }
  void stop() {
    if (node_) node_->stop();
  }
  // Polls pipeline_done() every 2 ms; fails after `limit_s`.
  void wait_done(double limit_s) {
    const auto t0 = Clock::now();
    while (!node_->pipeline_done()) {
      if (seconds_since(t0) > limit_s) fail("the pipeline did not finish within " + std::to_string(limit_s) + " s");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  json stats() const { return json::parse(node_->stats_json()); }
  double start_s() const { return start_s_; }

  std::vector<double> ages() const {
    std::lock_guard lk(mu_);
    return ages_;
  }
  std::vector<Mark> marks() const {
    std::lock_guard lk(mu_);
    return marks_;
  }
  std::uint64_t error_results() const { return error_results_.load(); }

 private:
  void on_result(const edgert::PipelineResult& r) {
    if (r.error) {
      error_results_.fetch_add(1);
      return;
    }
    if (r.payload_type != "bench.age") return;
    const json p = json::parse(r.payload);
    std::lock_guard lk(mu_);
    ages_.push_back(p.at("age_ms").get<double>());
    marks_.push_back({p.at("seq").get<std::uint64_t>(), p.at("ts_ns").get<std::int64_t>()});
  }

  std::unique_ptr<edgert::Node> node_;
  double start_s_ = 0;
  mutable std::mutex mu_;
  std::vector<double> ages_;
  std::vector<Mark> marks_;
  std::atomic<std::uint64_t> error_results_{0};
};

// `n` instances of `signature`, named i0..i{n-1}, each with the extra flow-mapping keys.
std::string instances(const std::string& signature, int n, const std::string& keys = "") {
  std::string s = "    plugins:\n      - signature: " + signature + "\n        instances:\n";
  for (int i = 0; i < n; ++i) {
    s += "          - {instance_id: i" + std::to_string(i) + (keys.empty() ? "" : ", " + keys) + "}\n";
  }
  return s;
}

// Sum / max of an instance figure over the instances of a stats document.
double instance_max(const json& stats, const char* key) {
  double m = 0;
  for (const auto& [name, f] : stats.at("instances").items()) m = std::max(m, f.at(key).get<double>());
  return m;
}
double instance_mean(const json& stats, const char* key) {
  double s = 0;
  int n = 0;
  for (const auto& [name, f] : stats.at("instances").items()) {
    s += f.at(key).get<double>();
    ++n;
  }
  return n ? s / n : 0;
}

// ---- 1 + 3a: runtime_vs_bare, bytes_copied_per_frame -------------------------------------

json runtime_vs_bare(const Options& o, json& copied) {
  const std::int64_t n = o.frames_1080;
  TempDir tmp;

  // Bare: the same two .so files through the testing kit doing the runtime's work
  // without the runtime: one thread generates each frame with synthetic_camera (as the
  // node's capture thread does) and hands it to 4 threads, one per motion_detector,
  // through a minimal bounded queue of 16 each (the instances' default
  // max_inputs_queue_size; lossless: the generator waits for room).
  edgert::plugin_testing::PluginHarness h;
  for (const char* p : {"synthetic_camera", "motion_detector"}) {
    if (auto st = h.load(kPluginDir + "/" + p + ".so"); !st.ok()) fail(st.message());
  }
  auto cam = h.create("synthetic_camera", "cam", R"({"width": 1920, "height": 1080, "frames": )" + std::to_string(n) + "}");
  if (!cam.ok()) fail(cam.status().message());
  std::vector<edgert::plugin_testing::Instance> dets;
  for (int i = 0; i < 4; ++i) {
    auto d = h.create("motion_detector", "i" + std::to_string(i));
    if (!d.ok()) fail(d.status().message());
    dets.push_back(std::move(d).value());
  }
  struct Lane {  // one detector's queue
    std::mutex mu;
    std::condition_variable cv;
    std::deque<edgert::Frame> frames;
    bool closed = false;
  };
  constexpr std::size_t kLaneDepth = 16;
  std::vector<Lane> lanes(4);
  std::atomic<std::int64_t> bare_errors{0};
  std::vector<std::int64_t> bare_done(4, 0);  // each thread's own tally
  std::int64_t generated = 0;
  double capture_s = 0;  // the generator's time in capture(), without its waits
  const auto tb = Clock::now();
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        Lane& lane = lanes[std::size_t(i)];
        for (;;) {
          edgert::Frame f;
          {
            std::unique_lock lk(lane.mu);
            lane.cv.wait(lk, [&] { return !lane.frames.empty() || lane.closed; });
            if (lane.frames.empty()) return;
            f = std::move(lane.frames.front());
            lane.frames.pop_front();
          }
          lane.cv.notify_all();
          if (!dets[std::size_t(i)].process_frame(std::move(f)).ok()) bare_errors.fetch_add(1);
          ++bare_done[std::size_t(i)];
        }
      });
    }
    for (;;) {
      const auto tc = Clock::now();
      auto c = cam->capture();
      capture_s += seconds_since(tc);
      if (!c.ok() && c.status().code() == edgert::ErrorCode::end_of_stream) break;
      if (!c.ok() || !c->frame) {
        bare_errors.fetch_add(1);
        break;
      }
      ++generated;
      for (Lane& lane : lanes) {
        std::unique_lock lk(lane.mu);
        lane.cv.wait(lk, [&] { return lane.frames.size() < kLaneDepth; });
        lane.frames.push_back(c->frame);  // shared, not copied
        lk.unlock();
        lane.cv.notify_all();
      }
    }
    for (Lane& lane : lanes) {
      {
        std::lock_guard lk(lane.mu);
        lane.closed = true;
      }
      lane.cv.notify_all();
    }
    for (auto& t : threads) t.join();
  }
  const double bare_s = seconds_since(tb);
  const double capture_ms = generated ? capture_s * 1e3 / double(generated) : 0;
  if (generated != n) fail("bare harness: synthetic_camera gave " + std::to_string(generated) + " of " + std::to_string(n));
  for (auto d : bare_done) {
    if (d != n) fail("bare harness: a thread processed " + std::to_string(d) + " of " + std::to_string(n));
  }
  if (bare_errors.load() != 0) fail("bare harness: " + std::to_string(bare_errors.load()) + " failed calls");
  dets.clear();

  // Runtime: synthetic_camera -> 4 motion_detector instances through a Node, lossless,
  // started a second time in its data_dir (as a device restarts): a first, untimed
  // start of one frame fills the plugin scan cache; its start time is reported too.
  double first_start_s = 0;
  {
    NodeRun warm(tmp.dir,
                 "  - name: cam\n"
                 "    capture: {type: synthetic_camera, width: 1920, height: 1080, frames: 1, live_feed: false, "
                 "reconnectable: no}\n" + instances("motion_detector", 4));
    warm.start();
    warm.wait_done(600);
    warm.stop();
    first_start_s = warm.start_s();
  }
  const std::uint64_t copied0 = edgert::Frame::copied_bytes();
  NodeRun run(tmp.dir,
              "  - name: cam\n"
              "    capture: {type: synthetic_camera, width: 1920, height: 1080, frames: " + std::to_string(n) +
                  ", live_feed: false, reconnectable: no}\n" + instances("motion_detector", 4));
  const auto tr = Clock::now();
  run.start();
  run.wait_done(600);
  const double runtime_s = seconds_since(tr);
  const json st = run.stats();
  run.stop();
  const std::uint64_t copied_bytes = edgert::Frame::copied_bytes() - copied0;
  const auto captured = st.at("streams").at("cam").at("captured").get<std::int64_t>();
  for (const auto& [name, f] : st.at("instances").items()) {
    if (f.at("processed").get<std::int64_t>() != n) fail("runtime: " + name + " processed " + f.at("processed").dump());
  }
  if (captured != n) fail("runtime: captured " + std::to_string(captured) + " of " + std::to_string(n));

  copied = {{"value", double(copied_bytes) / double(n)}, {"copied_bytes", copied_bytes}, {"frames", n},
            {"goal", "== 0"}, {"goal_met", copied_bytes == 0}};
  const double rfps = double(n) / runtime_s, bfps = double(n) / bare_s;
  return {{"frames", n},
          {"runtime_fps", round3(rfps)},
          {"bare_fps", round3(bfps)},
          {"ratio", round3(rfps / bfps)},
          {"ratio_after_start", round3(bare_s / (runtime_s - run.start_s()))},
          {"runtime_s", round3(runtime_s)},
          {"node_start_s", round3(run.start_s())},
          {"first_node_start_s", round3(first_start_s)},
          {"bare_s", round3(bare_s)},
          {"capture_ms_per_frame", round3(capture_ms)},
          {"capture_wait_s", st.at("streams").at("cam").at("capture_wait_s")},
          {"goal", ">= 0.9"},
          {"goal_met", rfps / bfps >= 0.9}};
}

// ---- 2: latency at 30 fps -----------------------------------------------------------------

json latency_run(const Options& o, const std::string& signature, const std::string& keys) {
  TempDir tmp;
  NodeRun run(tmp.dir,
              "  - name: cam\n"
              "    capture: {type: synthetic_camera, width: 1920, height: 1080, fps: 30, live_feed: true}\n" +
                  instances(signature, 4, keys));
  run.start();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.latency_s));
  const json st = run.stats();
  run.stop();
  const auto ages = run.ages();
  json r = {{"seconds", o.latency_s},
            {"captured", st.at("streams").at("cam").at("captured")},
            {"processed_min", 1e300},
            {"dropped_total", 0},
            {"latency_p50_ms_mean", round3(instance_mean(st, "latency_p50_ms"))},
            {"latency_p99_ms_max", round3(instance_max(st, "latency_p99_ms"))}};
  double dropped = 0, processed_min = 1e300;
  for (const auto& [name, f] : st.at("instances").items()) {
    dropped += f.at("dropped").get<double>();
    processed_min = std::min(processed_min, f.at("processed").get<double>());
  }
  r["processed_min"] = processed_min;
  r["dropped_total"] = dropped;
  if (!ages.empty()) {
    r["age_at_entry_p50_ms"] = round3(percentile(ages, 0.5));
    r["age_at_entry_p99_ms"] = round3(percentile(ages, 0.99));
  }
  return r;
}

json latency_30fps(const Options& o) {
  json sink = latency_run(o, "bench_sink", "emit_age: true");
  json md = latency_run(o, "motion_detector", "");
  const double p99 = sink.at("latency_p99_ms_max").get<double>();
  return {{"bench_sink", sink}, {"motion_detector", md}, {"goal", "bench_sink latency_p99_ms_max < 2"},
          {"goal_met", p99 < 2.0}};
}

// ---- 3b: per-consumer fan-out cost ----------------------------------------------------------

// Capture-thread seconds for `frames` 64x48 gray frames to `consumers` bench_sink
// instances whose queues hold every frame (the capture never waits): the capture
// timestamps of frame 1 and frame N, marked by instance i0.
std::pair<double, double> fanout_run(std::int64_t frames, int consumers) {
  TempDir tmp;
  const std::string q = "max_inputs_queue_size: " + std::to_string(frames);
  std::string inst = "    plugins:\n      - signature: bench_sink\n        instances:\n";
  for (int i = 0; i < consumers; ++i) {
    inst += "          - {instance_id: i" + std::to_string(i) + ", " + q +
            (i == 0 ? ", mark_every: " + std::to_string(frames) : std::string()) + "}\n";
  }
  NodeRun run(tmp.dir,
              "  - name: cam\n"
              "    capture: {type: synthetic_camera, width: 64, height: 48, pixel_format: gray8, frames: " +
                  std::to_string(frames) + ", live_feed: false, reconnectable: no}\n" + inst);
  const auto t0 = Clock::now();
  run.start();
  run.wait_done(600);
  const double total_s = seconds_since(t0);
  const json st = run.stats();
  run.stop();
  for (const auto& [name, f] : st.at("instances").items()) {
    if (f.at("processed").get<std::int64_t>() != frames) fail("fanout: " + name + " processed " + f.at("processed").dump());
  }
  std::int64_t first = -1, last = -1;
  for (const auto& m : run.marks()) {
    if (m.seq == 1) first = m.ts_ns;
    if (m.seq == std::uint64_t(frames)) last = m.ts_ns;
  }
  if (first < 0 || last < 0) fail("fanout: the first or last frame's mark is missing");
  return {double(last - first) / 1e9, total_s};
}

json fanout(const Options& o) {
  const std::int64_t n = o.fanout_frames;
  std::vector<double> c1, c16, t1, t16;
  for (int r = 0; r < o.fanout_rounds; ++r) {  // alternated, so load changes hit both
    auto a = fanout_run(n, 1);
    auto b = fanout_run(n, 16);
    c1.push_back(a.first), t1.push_back(a.second);
    c16.push_back(b.first), t16.push_back(b.second);
  }
  const double per_us = (median(c16) - median(c1)) / 15.0 / double(n) * 1e6;
  const double total_per_us = (median(t16) - median(t1)) / 15.0 / double(n) * 1e6;
  return {{"frames", n},
          {"rounds", o.fanout_rounds},
          {"capture_s_1", round3(median(c1))},
          {"capture_s_16", round3(median(c16))},
          {"per_consumer_us", round3(per_us)},
          {"until_done_s_1", round3(median(t1))},
          {"until_done_s_16", round3(median(t16))},
          {"per_consumer_until_done_us", round3(total_per_us)},
          {"goal", "per_consumer_us < 2"},
          {"goal_met", per_us < 2.0}};
}

// ---- 4 + 7: the video file -------------------------------------------------------------------

struct Video {
  std::string path;
  std::string codec;  // "mp4v (FFmpeg, .mp4)" or "MJPG (.avi)"
  int frames = 0;
};

Video write_video(const fs::path& dir, int frames) {
  const cv::Size size(1280, 720);
  cv::Mat img(size, CV_8UC3);
  auto draw = [&](int k) {
    for (int y = 0; y < img.rows; ++y) img.row(y).setTo(cv::Scalar(40 + y / 12, 60 + (y * 3) / 20, 90));
    for (int j = 0; j < 4; ++j) {
      const int x = (k * (3 + 2 * j) + 200 * j) % (size.width - 120);
      const int y = (k * (2 + j) + 150 * j) % (size.height - 120);
      cv::rectangle(img, cv::Rect(x, y, 120, 120), cv::Scalar(60 * j, 255 - 50 * j, 128), cv::FILLED);
    }
    cv::putText(img, std::to_string(k), cv::Point(40, 680), cv::FONT_HERSHEY_SIMPLEX, 2, cv::Scalar(255, 255, 255), 3);
  };
  Video v;
  v.frames = frames;
  cv::VideoWriter w;
  v.path = (dir / "bench.mp4").string();
  if (w.open(v.path, cv::CAP_FFMPEG, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 30.0, size)) {
    v.codec = "mp4v (MPEG-4 part 2, FFmpeg backend, .mp4)";
  } else {
    v.path = (dir / "bench.avi").string();
    if (!w.open(v.path, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 30.0, size)) {
      fail("cv::VideoWriter opens neither mp4v .mp4 (FFmpeg) nor MJPG .avi in " + dir.string());
    }
    v.codec = "MJPG (Motion JPEG, .avi)";
  }
  for (int k = 0; k < frames; ++k) {
    draw(k);
    w.write(img);
  }
  w.release();
  return v;
}

// The bare decode loop; returns {wall s, cpu s}. grab_retrieve: grab() + retrieve() (as
// the decimation baseline) instead of read(); both decode and convert every frame.
std::pair<double, double> bare_decode(const Video& v, bool grab_retrieve) {
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  cv::VideoCapture cap(v.path, cv::CAP_FFMPEG);
  if (!cap.isOpened()) cap.open(v.path, cv::CAP_OPENCV_MJPEG);
  if (!cap.isOpened()) fail("bare decode: cv::VideoCapture cannot open " + v.path);
  cv::Mat m;
  int n = 0;
  if (grab_retrieve) {
    while (cap.grab()) {
      if (!cap.retrieve(m)) fail("bare decode: retrieve failed at frame " + std::to_string(n));
      ++n;
    }
  } else {
    while (cap.read(m)) ++n;
  }
  if (n != v.frames) fail("bare decode: read " + std::to_string(n) + " of " + std::to_string(v.frames) + " frames");
  return {seconds_since(t0), cpu_seconds() - c0};
}

// `video` -> 2 bench_sink through a Node until done; returns {wall s, cpu s, captured}.
struct FileRun {
  double wall_s, cpu_s, start_s;
  std::int64_t captured, processed_min;
};
// `dir`: the node's data_dir parent; a node started again in the same one finds its
// plugin scan cache warm.
FileRun node_decode(const Video& v, double target_fps, const fs::path& dir) {
  NodeRun run(dir, "  - name: file\n    capture: {type: video, url: \"" + v.path + "\", target_fps: " +
                           std::to_string(target_fps) + ", live_feed: false, reconnectable: no}\n" +
                           instances("bench_sink", 2));
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  run.start();
  run.wait_done(600);
  const double cpu = cpu_seconds() - c0, wall = seconds_since(t0);
  const json st = run.stats();
  run.stop();
  std::int64_t pmin = INT64_MAX;
  for (const auto& [name, f] : st.at("instances").items()) pmin = std::min(pmin, f.at("processed").get<std::int64_t>());
  return {wall, cpu, run.start_s(), st.at("streams").at("file").at("captured").get<std::int64_t>(), pmin};
}

json file_vs_bare_decode(const Options& o, const Video& v) {
  // Round 0 is a first start (a fresh data_dir: the plugin scan cache is cold); rounds
  // 1.. start again in the same data_dir (cache warm), as a node restarted on a device.
  TempDir tmp;
  std::vector<double> bare, node, start, bare_cpu, node_cpu;
  double first_bare = 0, first_node = 0, first_start = 0;
  std::int64_t captured = 0, pmin = 0;
  for (int r = 0; r < std::max(2, o.file_rounds); ++r) {
    const auto [b, bc] = bare_decode(v, false);
    const FileRun f = node_decode(v, 0, tmp.dir);
    captured = f.captured, pmin = f.processed_min;
    if (captured != v.frames || pmin != v.frames) {
      fail("file_vs_bare_decode: captured " + std::to_string(captured) + ", processed " + std::to_string(pmin) +
           " of " + std::to_string(v.frames));
    }
    if (r == 0) {
      first_bare = b, first_node = f.wall_s, first_start = f.start_s;
      continue;
    }
    bare.push_back(b);
    node.push_back(f.wall_s);
    start.push_back(f.start_s);
    bare_cpu.push_back(bc);
    node_cpu.push_back(f.cpu_s);
  }
  // runtime_s runs from Node::start() (plugin scan and load, mailbox open) to
  // pipeline_done(); bare_s from opening the cv::VideoCapture to its last read().
  const double ratio = median(bare) / median(node);
  return {{"codec", v.codec},
          {"frames", v.frames},
          {"rounds", std::max(2, o.file_rounds) - 1},
          {"bare_s", round3(median(bare))},
          {"runtime_s", round3(median(node))},
          {"node_start_s", round3(median(start))},
          {"bare_fps", round3(v.frames / median(bare))},
          {"runtime_fps", round3(v.frames / median(node))},
          {"ratio", round3(ratio)},
          {"ratio_after_start", round3(median(bare) / (median(node) - median(start)))},
          // Process CPU (user + system, every thread: FFmpeg's decoder threads too) over
          // the same spans; less sensitive than wall time to other load on the machine.
          {"bare_cpu_s", round3(median(bare_cpu))},
          {"runtime_cpu_s", round3(median(node_cpu))},
          {"cpu_ratio", round3(median(node_cpu) / median(bare_cpu))},
          {"first_start", {{"bare_s", round3(first_bare)},
                           {"runtime_s", round3(first_node)},
                           {"node_start_s", round3(first_start)},
                           {"ratio", round3(first_bare / first_node)}}},
          {"goal", ">= 0.9 (warm: a second start)"},
          {"goal_met", ratio >= 0.9}};
}

json decimation(const Options& o, const Video& v) {
  std::vector<double> bare, node;
  std::int64_t captured = 0;
  for (int r = 0; r < o.file_rounds; ++r) {
    bare.push_back(bare_decode(v, true).second);
    TempDir tmp;
    const FileRun f = node_decode(v, 5, tmp.dir);
    node.push_back(f.cpu_s);
    captured = f.captured;
  }
  const std::int64_t expected = (v.frames + 5) / 6;  // frames 0, 6, 12, ...
  if (captured != expected) {
    fail("decimation: captured " + std::to_string(captured) + " frames, expected " + std::to_string(expected));
  }
  const double video_s = v.frames / 30.0;
  const double ratio = median(node) / median(bare);
  return {{"codec", v.codec},
          {"frames", v.frames},
          {"frames_taken", captured},
          {"rounds", o.file_rounds},
          {"runtime_cpu_s", round3(median(node))},
          {"bare_cpu_s", round3(median(bare))},
          {"runtime_cpu_per_video_s", round3(median(node) / video_s)},
          {"bare_cpu_per_video_s", round3(median(bare) / video_s)},
          {"ratio", round3(ratio)},
          {"goal", "<= 0.85"},
          {"goal_met", ratio <= 0.85}};
}

// ---- 5: RSS with one stalled instance ---------------------------------------------------------

json stalled_rss(const Options& o) {
  TempDir tmp;
  NodeRun run(tmp.dir,
              "  - name: cam\n"
              "    capture: {type: synthetic_camera, width: 1920, height: 1080, fps: 30, live_feed: true}\n"
              "    plugins:\n      - signature: bench_sink\n        instances:\n"
              "          - {instance_id: stalled, block: true}\n"
              "          - {instance_id: normal}\n");
  const double rss0 = rss_mib();
  run.start();
  std::vector<double> samples;
  const auto t0 = Clock::now();
  for (int s = 1; s <= int(std::lround(o.stall_s)); ++s) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
    samples.push_back(rss_mib());
  }
  const json st = run.stats();
  // Release the blocked call (bench_sink's exported function) so the node stops cleanly.
  void* lib = dlopen((kBenchPluginDir + "/bench_sink.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr) fail("bench_sink.so is not loaded: " + std::string(dlerror()));
  auto release = reinterpret_cast<void (*)()>(dlsym(lib, "edgert_bench_sink_release"));
  if (release == nullptr) fail("bench_sink.so exports no edgert_bench_sink_release");
  release();
  dlclose(lib);
  run.stop();
  const double at2 = samples.size() >= 2 ? samples[1] : samples.front();
  const double peak = *std::max_element(samples.begin(), samples.end());
  const json& stalled = st.at("instances").at("cam/bench_sink/stalled");
  const json& normal = st.at("instances").at("cam/bench_sink/normal");
  const double growth = samples.back() - at2;
  return {{"seconds", o.stall_s},
          {"rss_before_start_mib", round3(rss0)},
          {"rss_at_2s_mib", round3(at2)},
          {"rss_end_mib", round3(samples.back())},
          {"rss_peak_mib", round3(peak)},
          {"growth_mib", round3(growth)},
          {"frame_mib", round3(1920.0 * 1080 * 3 / (1024 * 1024))},
          {"captured", st.at("streams").at("cam").at("captured")},
          {"stalled", {{"received", stalled.at("received")}, {"dropped", stalled.at("dropped")},
                       {"queued", stalled.at("queued")}, {"state", stalled.at("state")}}},
          {"normal", {{"processed", normal.at("processed")}, {"dropped", normal.at("dropped")}}},
          {"goal", "flat: growth after 2 s under one frame"},
          {"goal_met", growth < 1920.0 * 1080 * 3 / (1024 * 1024)}};
}

// ---- 6: staleness --------------------------------------------------------------------------------

json staleness(const Options& o) {
  TempDir tmp;
  NodeRun run(tmp.dir,
              "  - name: cam\n"
              "    capture: {type: synthetic_camera, width: 1920, height: 1080, fps: 30, live_feed: true}\n" +
                  instances("bench_sink", 2, "sleep_ms: 66, emit_age: true, max_inputs_queue_size: 3"));
  run.start();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.stale_s));
  const json st = run.stats();
  run.stop();
  const auto ages = run.ages();
  if (ages.empty()) fail("staleness: no ages were emitted");
  double dropped = 0, processed = 0;
  for (const auto& [name, f] : st.at("instances").items()) {
    dropped += f.at("dropped").get<double>();
    processed += f.at("processed").get<double>();
  }
  const double p99 = percentile(ages, 0.99);
  const double goal = (3 + 1) / 30.0 * 1000;
  return {{"seconds", o.stale_s},
          {"captured", st.at("streams").at("cam").at("captured")},
          {"processed_total", processed},
          {"dropped_total", dropped},
          {"ages", ages.size()},
          {"age_p50_ms", round3(percentile(ages, 0.5))},
          {"age_p99_ms", round3(p99)},
          {"age_max_ms", round3(percentile(ages, 1.0))},
          {"goal", "age_p99_ms <= 133.3"},
          {"goal_met", p99 <= goal}};
}

std::string fmt(const json& v) {
  if (v.is_number_float()) {
    char b[64];
    std::snprintf(b, sizeof b, "%.3f", v.get<double>());
    return b;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void print_human(const json& r) {
  for (const auto& [part, body] : r.items()) {
    if (!body.is_object()) {
      std::printf("%s: %s\n", part.c_str(), fmt(body).c_str());
      continue;
    }
    std::printf("%s%s\n", part.c_str(),
                body.contains("goal_met") ? (body["goal_met"].get<bool>() ? "  [goal met]" : "  [GOAL MISSED]") : "");
    for (const auto& [k, v] : body.items()) {
      if (k == "goal_met") continue;
      if (v.is_object()) {
        std::printf("  %s:", k.c_str());
        for (const auto& [k2, v2] : v.items()) std::printf(" %s=%s", k2.c_str(), fmt(v2).c_str());
        std::printf("\n");
      } else {
        std::printf("  %-28s %s\n", k.c_str(), fmt(v).c_str());
      }
    }
  }
}

bool wanted(const Options& o, const char* part) { return o.only.empty() || o.only.count(part) != 0; }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool stall_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--stall-seconds" && i + 1 < argc) {
      o.stall_s = std::max(2.0, std::atof(argv[++i]));
      stall_given = true;
    } else if (a == "--only" && i + 1 < argc) {
      std::stringstream ss(argv[++i]);
      for (std::string p; std::getline(ss, p, ',');) o.only.insert(p);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--json] [--stall-seconds S] [--only PART,...]\n"
                   "parts: runtime_vs_bare (also bytes_copied_per_frame), latency_30fps, fanout,\n"
                   "       file_vs_bare_decode, decimation, stalled_rss, staleness\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.quick) {
    o.frames_1080 = 150;
    o.latency_s = 3;
    o.fanout_frames = 5000;
    o.fanout_rounds = 1;
    o.video_frames = 150;
    o.file_rounds = 1;
    o.stale_s = 4;
    if (!stall_given) o.stall_s = 5;
  }
  (void)edgert::set_log_level("warning");

  json r;
  r["quick"] = o.quick;
  r["cpus"] = std::thread::hardware_concurrency();
  {
    std::ifstream la("/proc/loadavg");
    double l1 = 0;
    la >> l1;
    r["loadavg_1m_at_start"] = l1;
  }
  try {
    if (wanted(o, "runtime_vs_bare")) {
      json copied;
      r["runtime_vs_bare"] = runtime_vs_bare(o, copied);
      r["bytes_copied_per_frame"] = copied;
    }
    if (wanted(o, "latency_30fps")) r["latency_30fps"] = latency_30fps(o);
    if (wanted(o, "fanout")) r["fanout"] = fanout(o);
    if (wanted(o, "file_vs_bare_decode") || wanted(o, "decimation")) {
      TempDir tmp;
      const Video v = write_video(tmp.dir, o.video_frames);
      if (wanted(o, "file_vs_bare_decode")) r["file_vs_bare_decode"] = file_vs_bare_decode(o, v);
      if (wanted(o, "decimation")) r["decimation"] = decimation(o, v);
    }
    if (wanted(o, "stalled_rss")) r["stalled_rss"] = stalled_rss(o);
    if (wanted(o, "staleness")) r["staleness"] = staleness(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e.what());
    return 1;
  }
  if (o.json) {
    std::printf("%s\n", r.dump().c_str());
  } else {
    print_human(r);
  }
  return 0;
}
