// Source liveness through a real node (docs/pipeline.md, "Streams"): `video` streams
// against loopback fault injectors (a server that resets, one that accepts and never
// answers, one that sends a few MJPEG frames and then goes silent with the connection
// open, a refused port) reopen with jittered back-off at least 50 times each while a
// healthy stream keeps flowing; no call blocks past its timeout; a silent source and
// blocked consumers are told apart; no file descriptor or thread is left behind.
#include <edgert/config.hpp>
#include <edgert/node.hpp>

#include "fault_server.hpp"
#include "log_capture.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::testing::FaultServer;
using edgert::testing::http_url;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Keeps libopencv_videoio and FFmpeg mapped for the whole process: loaded only by
// video.so, they would be unmapped with it and LeakSanitizer would then report their
// static allocations (made once, kept for the process's life) as leaks.
[[maybe_unused]] const cv::VideoCapture keep_videoio_loaded;

int count_threads() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/task")) ++n;
  return n;
}

std::string mjpeg_body(int frames) {
  std::string body = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=edgert\r\n\r\n";
  for (int i = 0; i < frames; ++i) {
    cv::Mat m(48, 64, CV_8UC3, cv::Scalar(40 * i % 255, 80, 160));
    std::vector<std::uint8_t> jpeg;
    REQUIRE(cv::imencode(".jpg", m, jpeg));
    body += "--edgert\r\nContent-Type: image/jpeg\r\nContent-Length: " + std::to_string(jpeg.size()) + "\r\n\r\n";
    body.append(jpeg.begin(), jpeg.end());
    body += "\r\n";
  }
  return body;
}

std::string yaml_head(const fs::path& dir) {
  return "node: {id: liveness, data_dir: " + (dir / "data").string() + ", heartbeat_interval_ms: 0}\n" +
         "plugins: {paths: [" + std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "]}\n" +
         "pipeline: {monitor_period_ms: 50}\nstreams:\n";
}

std::unique_ptr<edgert::Node> start_node(const std::string& yaml) {
  auto cfg = edgert::parse_config(yaml, "liveness.yaml", {});
  if (!cfg.ok()) FAIL(cfg.status().message());
  auto made = edgert::Node::create(std::move(cfg).value());
  REQUIRE(made.ok());
  auto node = std::move(made).value();
  const auto st = node->start();
  if (!st.ok()) FAIL(st.message());
  return node;
}

}  // namespace

TEST_CASE("faulty network sources reopen 50 times with jittered back-off; nothing blocks, nothing leaks",
          "[pipeline][liveness]") {
  edgert::testing::ScratchDir scratch("edgert-liveness");
  FaultServer reset(FaultServer::Mode::reset);
  FaultServer silent(FaultServer::Mode::silent);
  FaultServer stall(FaultServer::Mode::stall, mjpeg_body(3));
  const int refused = edgert::testing::refused_port();
  const int fds_before = edgert::testing::count_fds();
  const int threads_before = count_threads();
  std::map<std::string, std::string> urls = {{"reset", http_url(reset.port())},
                                             {"silent", http_url(silent.port())},
                                             {"stall", http_url(stall.port())},
                                             {"refused", http_url(refused)}};
  std::string yaml = yaml_head(scratch.dir);
  for (const auto& [name, url] : urls) {
    yaml += "  - name: " + name + "\n    capture: {type: video, url: \"" + url +
            "\", open_timeout_ms: 300, read_timeout_ms: 300, sleep_on_error_ms: 5, max_retries: 1000000, "
            "stall_timeout_ms: 3000}\n    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p}]\n";
  }
  yaml += "  - name: healthy\n    capture: {type: pl_source, fps: 50, live_feed: true}\n"
          "    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p}]\n";
  json stats;
  {
    edgert::testing::LogCapture logs;
    auto node = start_node(yaml);
    const auto deadline = std::chrono::steady_clock::now() + 240s;
    for (;;) {
      stats = json::parse(node->stats_json());
      bool all = true;
      for (const auto& [name, url] : urls) all = all && stats["streams"][name]["reconnects"].get<int>() >= 50;
      if (all || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(200ms);
    }
    const auto healthy_before = stats["streams"]["healthy"]["captured"].get<std::uint64_t>();
    std::this_thread::sleep_for(500ms);
    const auto healthy_after = json::parse(node->stats_json())["streams"]["healthy"]["captured"].get<std::uint64_t>();
    node->stop();
    node.reset();

    for (const auto& [name, url] : urls) {
      INFO(name << ": " << stats["streams"][name].dump());
      CHECK(stats["streams"][name]["reconnects"].get<int>() >= 50);
      CHECK(stats["streams"][name]["longest_call_ms"].get<double>() < 5000);  // no capture thread blocked 5 s
    }
    CHECK(stats["streams"]["stall"]["captured"].get<int>() >= 3);  // it did deliver before going silent
    CHECK(healthy_after > healthy_before);                         // the healthy stream kept flowing
    CHECK(stats["instances"]["healthy/pl_probe/p"]["processed"].get<std::uint64_t>() >= healthy_before - 2);

    // Jitter: from the 7th attempt on the back-off is capped (5 ms x 32 = 160 ms), so the
    // announced delays differ only by their +-25% jitter.
    std::set<long> delays;
    for (const auto& w : logs.warnings()) {
      const std::string mark = "): reopening in ";
      const auto at = w.find(mark);
      const auto attempt = w.find(" ms (attempt ");
      if (w.rfind("stream 'reset' (video ", 0) != 0 || at == std::string::npos || attempt == std::string::npos) continue;
      if (std::stol(w.substr(attempt + 13)) < 7) continue;
      const long ms = std::stol(w.substr(at + mark.size()));
      CHECK(ms >= 120);  // 160 ms - 25%
      CHECK(ms <= 200);  // 160 ms + 25%
      delays.insert(ms);
    }
    CHECK(delays.size() >= 5);
  }
  // Everything the node opened is closed again (the servers' own sockets are still open).
  CHECK(edgert::testing::count_fds() == fds_before);
  CHECK(count_threads() == threads_before);
}

TEST_CASE("a silent source is flagged 'stalled' and blocked consumers 'consumers_blocked', two different states",
          "[pipeline][liveness]") {
  edgert::testing::ScratchDir scratch("edgert-liveness-states");
  auto server = std::make_unique<FaultServer>(FaultServer::Mode::stall, mjpeg_body(3));
  FaultServer& stall = *server;
  std::string yaml = yaml_head(scratch.dir);
  yaml += "  - name: quiet\n    capture: {type: video, url: \"" + http_url(stall.port()) +
          "\", open_timeout_ms: 5000, read_timeout_ms: 60000, stall_timeout_ms: 1000}\n"
          "    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p}]\n";
  yaml += "  - name: busy\n    capture: {type: pl_source, live_feed: false, stall_timeout_ms: 1000}\n"
          "    plugins:\n      - signature: pl_probe\n"
          "        instances: [{instance_id: b, block: true, stuck_after_s: 600, max_inputs_queue_size: 2}]\n";
  auto node = start_node(yaml);
  const auto t0 = std::chrono::steady_clock::now();
  std::string quiet, busy;
  while (std::chrono::steady_clock::now() - t0 < 30s) {
    const auto st = json::parse(node->stats_json());
    quiet = st["streams"]["quiet"]["state"];
    busy = st["streams"]["busy"]["state"];
    if (quiet == "stalled" && busy == "consumers_blocked") break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 8s);  // 3 frames, then flagged 1 s after the last
  CHECK(quiet == "stalled");
  CHECK(busy == "consumers_blocked");
  void* h = dlopen((std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "/pl_probe.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(h != nullptr);
  reinterpret_cast<void (*)()>(dlsym(h, "pl_probe_release"))();
  dlclose(h);
  // The quiet stream's capture() is inside a 60 s read: stop() gives up on it after the
  // worker's join timeout and detaches the thread (bounded stop); closing the server's
  // side then ends that read, so the thread finishes before the test does.
  const int threads_running = count_threads();
  node->stop();
  node.reset();
  server.reset();
  const auto t1 = std::chrono::steady_clock::now();
  while (count_threads() >= threads_running - 3 && std::chrono::steady_clock::now() - t1 < 20s) {
    std::this_thread::sleep_for(50ms);
  }
}
