// Video files through a real node (docs/pipeline.md): the bundled `video` plugin feeding
// business instances. A lossless stream delivers every frame of a file the test writes
// with cv::VideoWriter to every instance; broken sources (missing, a directory, random
// bytes named .avi, a truncated file, dead network URLs) each give a clear error naming
// the stream while the node keeps running its other streams.
#include <edgert/config.hpp>
#include <edgert/node.hpp>

#include "fault_server.hpp"
#include "log_capture.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Keeps libopencv_videoio (and FFmpeg) mapped for the whole process (see
// test_pipeline_liveness.cpp): otherwise unloading video.so unmaps them and LSan reports
// their one-time static allocations.
[[maybe_unused]] const cv::VideoCapture keep_videoio_loaded;

int write_video(const fs::path& path, int frames) {
  cv::VideoWriter out(path.string(), cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 30.0,
                      cv::Size(160, 120));
  REQUIRE(out.isOpened());
  for (int i = 0; i < frames; ++i) out.write(cv::Mat(120, 160, CV_8UC3, cv::Scalar(i % 256, 255 - i % 256, 90)));
  out.release();
  cv::VideoCapture in(path.string());
  REQUIRE(in.isOpened());
  int n = 0;
  cv::Mat m;
  while (in.read(m)) ++n;  // the file's frame count as OpenCV decodes it
  return n;
}

std::string head(const fs::path& dir) {
  return "node: {id: video-test, data_dir: " + (dir / "data").string() + ", heartbeat_interval_ms: 0}\n" +
         "plugins: {paths: [" + std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "]}\nstreams:\n";
}

struct Collected {
  std::mutex mu;
  std::map<std::string, std::size_t> probes;  // instance -> "probe" results
  void add(const edgert::PipelineResult& r) {
    if (r.payload_type != "probe") return;
    std::lock_guard lk(mu);
    ++probes[r.instance_id];
  }
};

}  // namespace

TEST_CASE("live_feed: false loses nothing: every frame of a video file reaches every instance", "[pipeline][video]") {
  edgert::testing::ScratchDir scratch("edgert-video");
  fs::create_directories(scratch.dir);
  const auto file = scratch.dir / "clip.avi";
  const int frames = write_video(file, 150);
  REQUIRE(frames == 150);
  const std::string yaml = head(scratch.dir) + "  - name: clip\n    capture: {type: video, url: \"" + file.string() +
                           "\", reconnectable: no}\n    plugins:\n      - signature: pl_probe\n        instances:\n"
                           "          - {instance_id: a}\n          - {instance_id: b, sleep_ms: 3, max_inputs_queue_size: 2}\n"
                           "          - {instance_id: c, max_inputs_queue_size: 1}\n";
  auto cfg = edgert::parse_config(yaml, "video.yaml", {});
  REQUIRE(cfg.ok());
  auto node = std::move(edgert::Node::create(std::move(cfg).value())).value();
  Collected got;
  node->add_result_sink([&](const edgert::PipelineResult& r) { got.add(r); });
  REQUIRE(node->start().ok());
  const auto t0 = std::chrono::steady_clock::now();
  while (!node->pipeline_done() && std::chrono::steady_clock::now() - t0 < 120s) std::this_thread::sleep_for(20ms);
  REQUIRE(node->pipeline_done());
  node->stop();
  const auto stats = json::parse(node->stats_json());
  CHECK(stats["streams"]["clip"]["captured"] == frames);
  CHECK(stats["streams"]["clip"]["state"] == "ended");
  for (const char* id : {"a", "b", "c"}) {
    INFO(id);
    const auto& f = stats["instances"][std::string("clip/pl_probe/") + id];
    CHECK(f["processed"] == frames);
    CHECK(f["dropped"] == 0);
    CHECK(got.probes[id] == static_cast<std::size_t>(frames));  // counted by the plugin's own results
  }
}

TEST_CASE("broken video sources give a clear error naming the stream; the other streams keep running",
          "[pipeline][video]") {
  edgert::testing::ScratchDir scratch("edgert-video-bad");
  fs::create_directories(scratch.dir / "a-directory.avi");
  {
    std::ofstream junk(scratch.dir / "junk.avi", std::ios::binary);
    std::mt19937 rng(7);
    for (int i = 0; i < 100000; ++i) junk.put(static_cast<char>(rng()));
  }
  const auto good = scratch.dir / "good.avi";
  write_video(good, 60);
  {
    const auto size = fs::file_size(good);
    std::ifstream in(good, std::ios::binary);
    std::vector<char> bytes(size / 3);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(scratch.dir / "truncated.avi", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  edgert::testing::FaultServer silent(edgert::testing::FaultServer::Mode::silent);
  const std::map<std::string, std::string> bad = {
      {"missing", (scratch.dir / "no-such-file.avi").string()},
      {"directory", (scratch.dir / "a-directory.avi").string()},
      {"junk", (scratch.dir / "junk.avi").string()},
      {"truncated", (scratch.dir / "truncated.avi").string()},
      {"silent", edgert::testing::http_url(silent.port())},
      {"refused", edgert::testing::http_url(edgert::testing::refused_port())}};
  std::string yaml = head(scratch.dir);
  for (const auto& [name, url] : bad) {
    yaml += "  - name: " + name + "\n    capture: {type: video, url: \"" + url +
            "\", reconnectable: no, open_timeout_ms: 1000, read_timeout_ms: 1000}\n"
            "    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p}]\n";
  }
  yaml += "  - name: healthy\n    capture: {type: pl_source, fps: 100, live_feed: true}\n"
          "    plugins:\n      - signature: pl_probe\n        instances: [{instance_id: p}]\n";
  edgert::testing::LogCapture logs;
  auto cfg = edgert::parse_config(yaml, "bad.yaml", {});
  REQUIRE(cfg.ok());
  auto node = std::move(edgert::Node::create(std::move(cfg).value())).value();
  REQUIRE(node->start().ok());
  json stats;
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    stats = json::parse(node->stats_json());
    bool all_over = true;
    for (const auto& [name, url] : bad) {
      const std::string st = stats["streams"][name]["state"];
      all_over = all_over && (st == "failed" || st == "ended");
    }
    if (all_over || std::chrono::steady_clock::now() - t0 > 60s) break;
    std::this_thread::sleep_for(50ms);
  }
  const auto healthy_then = stats["streams"]["healthy"]["captured"].get<std::uint64_t>();
  std::this_thread::sleep_for(300ms);
  CHECK(json::parse(node->stats_json())["streams"]["healthy"]["captured"].get<std::uint64_t>() > healthy_then);
  node->stop();
  const auto errors = logs.errors();
  for (const auto& [name, url] : bad) {
    INFO(name << ": " << stats["streams"][name].dump());
    const std::string st = stats["streams"][name]["state"];
    CHECK((st == "failed" || st == "ended"));
    if (name == "truncated") {
      CHECK(stats["streams"][name]["captured"].get<int>() < 60);  // what the third of the file holds, no more
      continue;
    }
    CHECK(st == "failed");
    CHECK(stats["streams"][name]["errors"].get<int>() >= 1);
    bool named = false;
    for (const auto& e : errors) named = named || (e.find("stream '" + name + "' (video ") != std::string::npos &&
                                                   e.find(url.substr(url.size() - 10)) != std::string::npos);
    CHECK(named);
  }
}
