// The bundled capture plugins (video, synthetic_camera, synthetic_telemetry) driven
// through the plugin testing kit, as docs/plugins.md, "Bundled plugins" describes them.
#include <edgert/plugin_testing.hpp>

#include "fault_server.hpp"
#include "skip.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using edgert::ErrorCode;
using edgert::Frame;
using edgert::PixelFormat;
using edgert::plugin_testing::PluginHarness;
using edgert::testing::ScratchDir;
using edgert::testing::count_fds;
using edgert::testing::FaultServer;
using edgert::testing::http_url;
using edgert::testing::refused_port;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
const std::string kDir = EDGERT_BUNDLED_PLUGIN_DIR;

void load(PluginHarness& h, const std::string& name) {
  const auto st = h.load(kDir + "/" + name + ".so");
  INFO(st.message());
  REQUIRE(st.ok());
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Frame i of a test video: the left half one colour, the right half another, both
// functions of i, so order, content and left/right placement are all checked.
cv::Scalar left_colour(int i) { return {double(20 + (i * 37) % 200), double(30 + (i * 11) % 190), 200.0 - (i * 7) % 150}; }
cv::Scalar right_colour(int i) { return {230.0 - (i * 13) % 180, double(40 + (i * 29) % 170), double(25 + (i * 5) % 200)}; }

constexpr int kW = 64, kH = 48;

void write_video(const fs::path& path, int frames, double fps) {
  cv::VideoWriter out(path.string(), cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps,
                      cv::Size(kW, kH));
  REQUIRE(out.isOpened());
  for (int i = 0; i < frames; ++i) {
    cv::Mat m(kH, kW, CV_8UC3);
    m(cv::Rect(0, 0, kW / 2, kH)).setTo(left_colour(i));
    m(cv::Rect(kW / 2, 0, kW / 2, kH)).setTo(right_colour(i));
    out.write(m);
  }
  out.release();
  REQUIRE(fs::file_size(path) > 0);
}

// Mean of channel c over a rectangle of a BGR8 frame, away from the halves' border
// (JPEG rings at the edge).
double mean(const Frame& f, int x0, int x1, int c) {
  double sum = 0;
  int n = 0;
  for (int y = 4; y < f.info().height - 4; ++y)
    for (int x = x0; x < x1; ++x, ++n) sum += f.data()[y * f.info().stride + x * 3 + c];
  return sum / n;
}

// Which written frame `f` shows: the index whose colours are nearest (JPEG with chroma
// subsampling moves saturated colours by up to ~20 levels), or -1 if none is within 32
// levels on every channel.
int frame_index(const Frame& f, int written) {
  int best = -1;
  double best_err = 32;
  for (int i = 0; i < written; ++i) {
    double err = 0;
    for (int c = 0; c < 3; ++c) {
      err = std::max(err, std::abs(mean(f, 4, kW / 2 - 4, c) - left_colour(i)[c]));
      err = std::max(err, std::abs(mean(f, kW / 2 + 4, kW - 4, c) - right_colour(i)[c]));
    }
    if (err < best_err) best_err = err, best = i;
  }
  return best;
}

std::string video_config(const fs::path& path, const std::string& extra = "") {
  json c = {{"url", path.string()}};
  if (!extra.empty()) c.update(json::parse(extra));
  return c.dump();
}

}  // namespace

// ---- video ------------------------------------------------------------------------

TEST_CASE("video: every frame of a file in order, with its pixels, then END_OF_STREAM") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  constexpr int kFrames = 25;
  write_video(clip, kFrames, 30);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip));
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<Frame> frames;  // all kept: earlier frames must survive later captures
  const auto wall_before = std::chrono::system_clock::now().time_since_epoch();
  for (int guard = 0; guard < 1000; ++guard) {
    auto c = inst->capture();
    if (!c.ok()) {
      INFO(c.status().message());
      REQUIRE(c.status().code() == ErrorCode::end_of_stream);
      break;
    }
    frames.push_back(c.value().frame);
  }
  const auto wall_after = std::chrono::system_clock::now().time_since_epoch();
  REQUIRE(frames.size() == kFrames);
  for (int i = 0; i < kFrames; ++i) {
    const auto& f = frames[static_cast<std::size_t>(i)];
    REQUIRE(f);
    CHECK(f.info().format == PixelFormat::bgr8);
    CHECK(f.info().width == kW);
    CHECK(f.info().height == kH);
    CHECK(f.info().stride >= kW * 3);
    CHECK(f.info().timestamp_ns >= std::chrono::duration_cast<std::chrono::nanoseconds>(wall_before).count());
    CHECK(f.info().timestamp_ns <= std::chrono::duration_cast<std::chrono::nanoseconds>(wall_after).count());
    CHECK(frame_index(f, kFrames) == i);
  }
  CHECK(h.last_error().empty());  // the end of a file is not an error
  auto again = inst->capture();   // stays ended
  CHECK(again.status().code() == ErrorCode::end_of_stream);
}

TEST_CASE("video: loop restarts the file at its end instead of ending") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 5, 30);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip, R"({"loop": true})"));
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<int> seen;
  for (int n = 0; n < 13; ++n) {
    auto c = inst->capture();
    INFO(c.status().message());
    REQUIRE(c.ok());
    seen.push_back(frame_index(c.value().frame, 5));
  }
  CHECK(seen == std::vector<int>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2});
}

// The buffers of released frames are decoded into again (plugins/video.cpp, FramePool:
// a fresh buffer per frame cost page faults a bare cv::VideoCapture::read() loop does not
// pay), never one of a frame still held. Under ASan a freed block sits in quarantine, so
// there the same address can only come from the pool and the counts are exact.
TEST_CASE("video: a released frame's buffer is decoded into again, a held frame's never") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  constexpr int kFrames = 20;
  constexpr std::size_t kPoolIdle = 4;  // FramePool::kPoolIdle
  write_video(clip, kFrames, 30);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip));
  INFO(h.last_error());
  REQUIRE(inst.ok());
  int next = 0;
  auto capture = [&] {
    auto c = inst->capture();
    INFO(c.status().message());
    REQUIRE(c.ok());
    REQUIRE(c.value().frame);
    CHECK(frame_index(c.value().frame, kFrames) == next);
    ++next;
    return c.value().frame;
  };
  const Frame held = capture();  // frame 0, held to the end
  const std::uint8_t* released = nullptr;
  {
    const Frame f = capture();  // frame 1, released at once
    released = f.data();
  }
  const Frame reused = capture();  // frame 2
  CHECK(reused.data() == released);
  CHECK(reused.data() != held.data());
  // 8 frames held, then all released: the pool keeps kPoolIdle of their buffers.
  std::set<const std::uint8_t*> batch;
  {
    std::vector<Frame> frames;
    for (int i = 0; i < 8; ++i) frames.push_back(capture());
    for (const auto& f : frames) batch.insert(f.data());
    CHECK(batch.size() == 8);
    CHECK(batch.count(held.data()) == 0);
    CHECK(batch.count(reused.data()) == 0);
  }
  std::vector<Frame> frames;
  std::size_t from_batch = 0;
  for (int i = 0; i < 8; ++i) {
    frames.push_back(capture());
    from_batch += batch.count(frames.back().data());
    CHECK(frames.back().data() != held.data());
    CHECK(frames.back().data() != reused.data());
  }
#if defined(__SANITIZE_ADDRESS__)
  CHECK(from_batch == kPoolIdle);
#else
  CHECK(from_batch >= kPoolIdle);  // malloc may hand out the freed extras again
#endif
  // Every frame still held shows its own picture: none was decoded over.
  CHECK(frame_index(held, kFrames) == 0);
  CHECK(frame_index(reused, kFrames) == 2);
  for (std::size_t i = 0; i < frames.size(); ++i) CHECK(frame_index(frames[i], kFrames) == 11 + int(i));
}

// A frame released after stop() and after the instance is gone: freed, not pooled into
// a dead plugin (ASan would see a use after free).
TEST_CASE("video: frames outlive stop() and the instance that captured them") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 4, 30);
  PluginHarness h;
  load(h, "video");
  std::vector<Frame> frames;
  {
    auto inst = h.create("video", "v1", video_config(clip));
    INFO(h.last_error());
    REQUIRE(inst.ok());
    for (int i = 0; i < 3; ++i) {
      auto c = inst->capture();
      REQUIRE(c.ok());
      frames.push_back(c.value().frame);
    }
    frames.erase(frames.begin());  // frame 0 released while the instance runs: pooled
    REQUIRE(inst->raw().stop().ok());
    frames.erase(frames.begin());  // frame 1 released after stop(): freed
  }
  REQUIRE(frames.size() == 1);  // frame 2 outlives its instance
  CHECK(frame_index(frames[0], 4) == 2);
  frames.clear();
}

TEST_CASE("video: stop then start (the host's reconnect) reopens the source from its start") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 6, 30);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip));
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<int> seen;
  for (int n = 0; n < 3; ++n) {
    auto c = inst->capture();
    REQUIRE(c.ok());
    seen.push_back(frame_index(c.value().frame, 6));
  }
  REQUIRE(inst->raw().stop().ok());
  const auto restarted = inst->raw().start();
  INFO(restarted.message());
  REQUIRE(restarted.ok());
  for (int n = 0; n < 2; ++n) {
    auto c = inst->capture();
    REQUIRE(c.ok());
    seen.push_back(frame_index(c.value().frame, 6));
  }
  CHECK(seen == std::vector<int>{0, 1, 2, 0, 1});
}

TEST_CASE("video: target_fps 5 on a 30 fps file keeps every 6th frame by video time") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 60, 30);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip, R"({"target_fps": 5})"));
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<int> seen;
  int again = 0;
  for (int guard = 0; guard < 1000; ++guard) {
    auto c = inst->capture();
    if (c.ok()) {
      seen.push_back(frame_index(c.value().frame, 60));
    } else if (c.status().code() == ErrorCode::again) {
      ++again;  // the skip budget ran out on a loaded machine: allowed, the host calls again
    } else {
      INFO(c.status().message());
      REQUIRE(c.status().code() == ErrorCode::end_of_stream);
      break;
    }
  }
  INFO("EDGERT_ERR_AGAIN answers: " << again);
  CHECK(seen == std::vector<int>{0, 6, 12, 18, 24, 30, 36, 42, 48, 54});
}

TEST_CASE("video: realtime paces a file at its own frame rate; the default does not") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 11, 20);  // 10 intervals of 50 ms
  PluginHarness h;
  load(h, "video");
  auto paced = h.create("video", "v1", video_config(clip, R"({"realtime": true})"));
  INFO(h.last_error());
  REQUIRE(paced.ok());
  auto t0 = Clock::now();
  int n = 0;
  while (paced->capture().ok()) ++n;
  const double paced_s = seconds_since(t0);
  CHECK(n == 11);
  CHECK(paced_s >= 0.45);  // 10 intervals of 50 ms, less a little clock slack
  std::printf("video realtime: 11 frames at 20 fps took %.3f s\n", paced_s);
}

TEST_CASE("video: bad sources fail start() with an error naming the url and the cause") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  PluginHarness h;
  load(h, "video");
  auto expect_error = [&](const std::string& url, const std::string& cause) {
    const auto t0 = Clock::now();
    auto inst = h.create("video", "bad", json{{"url", url}}.dump());
    const double took = seconds_since(t0);
    INFO(url << " took " << took << " s");
    REQUIRE_FALSE(inst.ok());
    const std::string msg = inst.status().message();
    INFO(msg);
    CHECK(msg.find("video '" + url + "'") != std::string::npos);
    CHECK(msg.find(cause) != std::string::npos);
    CHECK(took < 20);
  };
  expect_error((s.dir / "missing.avi").string(), "cannot open the file: No such file or directory");
  expect_error(s.dir.string(), "is a directory");
  std::ofstream(s.dir / "empty.avi").close();
  expect_error((s.dir / "empty.avi").string(), "the file is empty");
  {
    std::ofstream junk(s.dir / "random.avi", std::ios::binary);
    std::uint64_t x = 42;
    for (int i = 0; i < 64 * 1024; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      junk.put(static_cast<char>(x >> 56));
    }
  }
  expect_error((s.dir / "random.avi").string(), "not a video OpenCV can decode");

  {  // control bytes in the url are escaped in the log line, never written raw
    auto inst = h.create("video", "bad", json{{"url", (s.dir / "two\nlines.avi").string()}}.dump());
    REQUIRE_FALSE(inst.ok());
    const std::string msg = inst.status().message();
    INFO(msg);
    CHECK(msg.find("two\\x0alines.avi': cannot open the file") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  // A device index with no camera behind it (this machine has no /dev/video7).
  if (!fs::exists("/dev/video7")) expect_error("7", "no camera at this device index");

  auto empty = h.create("video", "nourl");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.status().message().find("url is empty") != std::string::npos);
}

TEST_CASE("video: a file the process may not read is refused naming the cause", "[root][video_unreadable]") {
  if (::geteuid() != 0) EDGERT_SKIP("needs root to fork a child that drops to uid 65534");
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  fs::permissions(s.dir, fs::perms::all);
  const fs::path clip = s.dir / "secret.avi";
  write_video(clip, 3, 30);
  fs::permissions(clip, fs::perms::owner_read | fs::perms::owner_write);  // root only
  const fs::path report = s.dir / "child.txt";
  fs::permissions(s.dir, fs::perms::all);
  PluginHarness h;
  load(h, "video");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 10;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      auto inst = h.create("video", "v1", video_config(clip));
      std::ofstream(report) << (inst.ok() ? std::string("opened") : inst.status().message());
      rc = inst.ok() ? 1 : 0;
    }
    std::_Exit(rc);
  }
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) != 10);
  std::ifstream in(report);
  const std::string message((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(message);
  CHECK(WEXITSTATUS(wstatus) == 0);
  CHECK(message.find("video '" + clip.string() + "': cannot read the file: Permission denied") != std::string::npos);
}

TEST_CASE("video: a truncated file ends or errors cleanly, never past what it holds") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  constexpr int kFrames = 30;
  write_video(clip, kFrames, 30);
  fs::resize_file(clip, fs::file_size(clip) * 2 / 5);
  PluginHarness h;
  load(h, "video");
  auto inst = h.create("video", "v1", video_config(clip));
  if (!inst.ok()) {  // refusing the file at open is a clean outcome too
    CHECK(inst.status().message().find(clip.string()) != std::string::npos);
    return;
  }
  int frames = 0;
  edgert::Status last = edgert::Status::ok_status();
  for (int guard = 0; guard < 1000; ++guard) {
    auto c = inst->capture();
    if (!c.ok()) {
      last = c.status();
      break;
    }
    CHECK(frame_index(c.value().frame, kFrames) == frames);
    ++frames;
  }
  INFO(last.message());
  CHECK(frames < kFrames);
  CHECK(frames > 0);
  CHECK((last.code() == ErrorCode::end_of_stream || last.message().find(clip.string()) != std::string::npos));
  if (last.code() == ErrorCode::end_of_stream) {
    CHECK(inst->capture().status().code() == ErrorCode::end_of_stream);  // stays ended
  }
  std::printf("video truncated: %d of %d frames, then %s\n", frames, kFrames, last.message().c_str());
}

TEST_CASE("video: dead http URLs (no answer, refused, reset) fail within open_timeout_ms, naming the url") {
  PluginHarness h;
  load(h, "video");
  FaultServer silent(FaultServer::Mode::silent);
  FaultServer reset(FaultServer::Mode::reset);
  const int refused = refused_port();
  struct Case {
    const char* name;
    int port;
  };
  for (const Case& c : {Case{"silent", silent.port()}, Case{"refused", refused}, Case{"reset", reset.port()}}) {
    const std::string url = http_url(c.port);
    const auto t0 = Clock::now();
    auto inst = h.create("video", "net", json{{"url", url}, {"open_timeout_ms", 2000}, {"read_timeout_ms", 2000}}.dump());
    const double took = seconds_since(t0);
    INFO(c.name << ": " << url << " took " << took << " s");
    REQUIRE_FALSE(inst.ok());
    const std::string msg = inst.status().message();
    INFO(msg);
    CHECK(msg.find("video '" + url + "': cannot open the stream") != std::string::npos);
    CHECK(took < 20);  // open_timeout_ms + a generous margin for a loaded machine
    std::printf("video %s http URL: error after %.3f s (open_timeout_ms=2000)\n", c.name, took);
  }
  CHECK(silent.accepted() >= 1);  // the client really got through to the silent server
  CHECK(reset.accepted() >= 1);
}

TEST_CASE("video: a stream that stops sending mid-way fails within read_timeout_ms, never hangs") {
  std::string body = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=edgert\r\n\r\n";
  for (int i = 0; i < 5; ++i) {
    cv::Mat m(kH, kW, CV_8UC3, left_colour(i));
    std::vector<std::uint8_t> jpeg;
    REQUIRE(cv::imencode(".jpg", m, jpeg));
    body += "--edgert\r\nContent-Type: image/jpeg\r\nContent-Length: " + std::to_string(jpeg.size()) + "\r\n\r\n";
    body.append(jpeg.begin(), jpeg.end());
    body += "\r\n";
  }
  FaultServer stall(FaultServer::Mode::stall, body);
  PluginHarness h;
  load(h, "video");
  const std::string url = http_url(stall.port());
  const auto t0 = Clock::now();
  auto inst = h.create("video", "net", json{{"url", url}, {"open_timeout_ms", 2000}, {"read_timeout_ms", 2000}}.dump());
  int frames = 0;
  double longest_call = 0;
  std::string error;
  if (!inst.ok()) {
    error = inst.status().message();  // FFmpeg may still be probing when the data stops
  } else {
    for (int guard = 0; guard < 100; ++guard) {
      const auto c0 = Clock::now();
      auto c = inst->capture();
      longest_call = std::max(longest_call, seconds_since(c0));
      if (c.ok()) {
        ++frames;
        continue;
      }
      if (c.status().code() == ErrorCode::again) continue;
      error = c.status().message();
      break;
    }
  }
  const double took = seconds_since(t0);
  INFO(error << " after " << took << " s, " << frames << " frames");
  CHECK(error.find("video '" + url + "'") != std::string::npos);
  CHECK(frames <= 5);
  CHECK(took < 20);          // open_timeout_ms + read_timeout_ms + a generous margin
  CHECK(longest_call < 15);  // no single capture() call near OpenCV's 30 s default
  CHECK(stall.accepted() >= 1);
  std::printf("video stalled http stream: %d frames, then an error after %.3f s in all (longest capture() %.3f s): %s\n",
              frames, took, longest_call, error.c_str());
}

TEST_CASE("video: a password in the url never reaches the log") {
  PluginHarness h;
  load(h, "video");
  const int port = refused_port();
  const std::string url = "http://user:hunter2@127.0.0.1:" + std::to_string(port) + "/s.mjpg";
  auto inst = h.create("video", "net", json{{"url", url}, {"open_timeout_ms", 2000}}.dump());
  REQUIRE_FALSE(inst.ok());
  const std::string msg = inst.status().message();
  INFO(msg);
  CHECK(msg.find("hunter2") == std::string::npos);
  CHECK(msg.find("video 'http://user:***@127.0.0.1:" + std::to_string(port) + "/s.mjpg'") != std::string::npos);
}

TEST_CASE("video: 20 cycles of create/start/destroy against files and dead URLs leak no fd") {
  ScratchDir s("capture-video");
  fs::create_directories(s.dir);
  const fs::path clip = s.dir / "clip.avi";
  write_video(clip, 5, 30);
  PluginHarness h;
  load(h, "video");
  const int refused = refused_port();
  int opened = 0, failed = 0;
  auto cycles = [&](int n, int silent_port, int reset_port) {
    for (int i = 0; i < n; ++i) {
      std::string url;
      switch (i % 4) {
        case 0: url = clip.string(); break;
        case 1: url = http_url(refused); break;
        case 2: url = http_url(reset_port); break;
        default: url = http_url(silent_port); break;
      }
      auto inst = h.create("video", "cycle", json{{"url", url}, {"open_timeout_ms", 500}, {"read_timeout_ms", 500}}.dump());
      if (inst.ok()) {
        ++opened;
        REQUIRE(inst->capture().ok());  // a frame out and released with the instance
      } else {
        ++failed;
      }
    }
  };
  {  // warm-up: OpenCV and FFmpeg load their backends once per process
    FaultServer silent(FaultServer::Mode::silent);
    FaultServer reset(FaultServer::Mode::reset);
    cycles(4, silent.port(), reset.port());
  }
  opened = failed = 0;
  const int before = count_fds();
  {
    FaultServer silent(FaultServer::Mode::silent);
    FaultServer reset(FaultServer::Mode::reset);
    cycles(20, silent.port(), reset.port());
  }
  const int after = count_fds();
  CHECK(opened == 5);
  CHECK(failed == 15);
  CHECK(after == before);
  std::printf("video fd cycles: %d before, %d after 20 cycles\n", before, after);
}

// ---- synthetic_camera -------------------------------------------------------------

TEST_CASE("synthetic_camera: `frames` frames of the configured size, then END_OF_STREAM") {
  PluginHarness h;
  load(h, "synthetic_camera");
  auto inst = h.create("synthetic_camera", "c1", R"({"width": 33, "height": 17, "frames": 4, "object_size": 5})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<Frame> frames;
  for (int i = 0; i < 4; ++i) {
    auto c = inst->capture();
    INFO(c.status().message());
    REQUIRE(c.ok());
    frames.push_back(c.value().frame);
  }
  auto end = inst->capture();
  CHECK(end.status().code() == ErrorCode::end_of_stream);
  CHECK(h.last_error().empty());
  for (const auto& f : frames) {
    CHECK(f.info().format == PixelFormat::bgr8);
    CHECK(f.info().width == 33);
    CHECK(f.info().height == 17);
    CHECK(f.info().stride == 33 * 3);
  }
  // The objects move: consecutive frames differ.
  CHECK(std::memcmp(frames[0].data(), frames[1].data(), 33 * 17 * 3) != 0);
}

TEST_CASE("synthetic_camera: the same seed gives byte-identical frames, another seed other frames") {
  PluginHarness h;
  load(h, "synthetic_camera");
  auto grab = [&](const std::string& name, const std::string& config) {
    auto inst = h.create("synthetic_camera", name, config);
    INFO(h.last_error());
    REQUIRE(inst.ok());
    std::vector<std::vector<std::uint8_t>> out;
    for (int i = 0; i < 30; ++i) {
      auto c = inst->capture();
      REQUIRE(c.ok());
      const auto& f = c.value().frame;
      out.emplace_back(f.data(), f.data() + static_cast<std::size_t>(f.info().stride) * f.info().height);
    }
    return out;
  };
  const auto a = grab("a", R"({"width": 160, "height": 120, "objects": 5, "seed": 7})");
  const auto b = grab("b", R"({"width": 160, "height": 120, "objects": 5, "seed": 7})");
  const auto c = grab("c", R"({"width": 160, "height": 120, "objects": 5, "seed": 8})");
  const bool same_seed_same_bytes = a == b;  // (not CHECK(a == b): Catch would print 1.7 MB)
  const bool other_seed_other_bytes = a != c;
  CHECK(same_seed_same_bytes);
  CHECK(other_seed_other_bytes);
  const auto g = grab("g", R"({"width": 160, "height": 120, "objects": 5, "seed": 7, "pixel_format": "gray8"})");
  CHECK(g[0].size() == 160u * 120u);
  std::set<std::uint8_t> levels(g[0].begin(), g[0].end());
  CHECK(levels.size() >= 2);  // background and at least one object
}

TEST_CASE("synthetic_camera: frame_rate paces on the monotonic clock; bad keys are refused") {
  PluginHarness h;
  load(h, "synthetic_camera");
  auto inst = h.create("synthetic_camera", "c1", R"({"width": 16, "height": 16, "frame_rate": 20})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  const auto t0 = Clock::now();
  for (int i = 0; i < 11; ++i) REQUIRE(inst->capture().ok());
  CHECK(seconds_since(t0) >= 0.45);  // 10 intervals of 50 ms
  for (const char* bad : {R"({"width": 15})", R"({"height": 8193})", R"({"pixel_format": "rgb8"})",
                          R"({"frame_rate": -1})", R"({"frames": -2})"}) {
    auto b = h.create("synthetic_camera", "bad", bad);
    INFO(bad);
    CHECK_FALSE(b.ok());
  }
}

TEST_CASE("synthetic_camera: frames still held stay intact while later ones are captured") {
  PluginHarness h;
  load(h, "synthetic_camera");
  auto inst = h.create("synthetic_camera", "c1", R"({"width": 64, "height": 64, "objects": 4, "object_size": 10})");
  REQUIRE(inst.ok());
  std::vector<Frame> held;
  std::vector<std::vector<std::uint8_t>> copies;
  for (int i = 0; i < 20; ++i) {
    auto c = inst->capture();
    REQUIRE(c.ok());
    held.push_back(c.value().frame);
    copies.emplace_back(held.back().data(), held.back().data() + 64 * 64 * 3);
  }
  for (std::size_t i = 0; i < held.size(); ++i) {
    INFO("frame " << i);
    CHECK(std::memcmp(held[i].data(), copies[i].data(), copies[i].size()) == 0);
  }
}

// ---- synthetic_telemetry ----------------------------------------------------------

namespace {
std::vector<json> records(PluginHarness& h, const std::string& name, const std::string& config, int n) {
  auto inst = h.create("synthetic_telemetry", name, config);
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    auto c = inst->capture();
    INFO(c.status().message());
    REQUIRE(c.ok());
    REQUIRE_FALSE(c.value().frame);
    out.push_back(json::parse(c.value().record_json));
  }
  return out;
}
}  // namespace

TEST_CASE("synthetic_telemetry: records shaped after seed 001, every urgency band, then END_OF_STREAM") {
  PluginHarness h;
  load(h, "synthetic_telemetry");
  const auto recs = records(h, "t1", R"({"rate_hz": 0, "records": 20})", 20);
  std::map<std::string, double> days;  // per VIN
  std::set<std::string> bands;
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& r : recs) {
    INFO(r.dump());
    const std::string vin = r.at("vin");
    CHECK(vin.size() == 17);
    CHECK(vin.find_first_of("IOQ") == std::string::npos);
    CHECK(std::llabs(r.at("timestamp_ms").get<long long>() - now_ms) < 60000);
    for (const char* k : {"engine_temp_c", "oil_pressure_kpa", "battery_voltage", "brake_pad_wear_pct",
                          "tire_pressure_kpa", "mileage_km"}) {
      CHECK(r.at("sensors").at(k).is_number());
    }
    CHECK(r.at("component").is_string());
    const double d = r.at("predicted_days_to_failure");
    if (days.count(vin)) CHECK(days[vin] == d);  // a vehicle stays in its band
    days[vin] = d;
    bands.insert(d < 1 ? "CRITICAL" : d < 7 ? "HIGH" : d < 30 ? "MEDIUM" : "LOW");
  }
  CHECK(days.size() == 10);  // the default fleet, visited round-robin
  CHECK(bands == std::set<std::string>{"CRITICAL", "HIGH", "MEDIUM", "LOW"});
  CHECK(recs[0].at("vin") == recs[10].at("vin"));
  CHECK(recs[10].at("sensors").at("mileage_km").get<double>() > recs[0].at("sensors").at("mileage_km").get<double>());

  auto inst = h.create("synthetic_telemetry", "t2", R"({"rate_hz": 0, "records": 2})");
  REQUIRE(inst.ok());
  REQUIRE(inst->capture().ok());
  REQUIRE(inst->capture().ok());
  CHECK(inst->capture().status().code() == ErrorCode::end_of_stream);
  CHECK(h.last_error().empty());
}

TEST_CASE("synthetic_telemetry: deterministic by seed (all but timestamp_ms); near_failure_fraction steers the bands") {
  PluginHarness h;
  load(h, "synthetic_telemetry");
  auto strip = [](std::vector<json> v) {
    for (auto& r : v) r.erase("timestamp_ms");
    return v;
  };
  const auto a = strip(records(h, "a", R"({"rate_hz": 0, "seed": 3, "vehicles": 7})", 25));
  const auto b = strip(records(h, "b", R"({"rate_hz": 0, "seed": 3, "vehicles": 7})", 25));
  const auto c = strip(records(h, "c", R"({"rate_hz": 0, "seed": 4, "vehicles": 7})", 25));
  CHECK(a == b);
  CHECK(a != c);
  int near = 0;
  for (const auto& r : records(h, "none", R"({"rate_hz": 0, "near_failure_fraction": 0})", 10))
    near += r.at("predicted_days_to_failure").get<double>() < 7;
  CHECK(near == 0);
  near = 0;
  for (const auto& r : records(h, "all", R"({"rate_hz": 0, "near_failure_fraction": 1})", 10))
    near += r.at("predicted_days_to_failure").get<double>() < 7;
  CHECK(near == 10);
}

TEST_CASE("synthetic_telemetry: rate_hz paces records; bad keys are refused") {
  PluginHarness h;
  load(h, "synthetic_telemetry");
  const auto t0 = Clock::now();
  records(h, "t1", R"({"rate_hz": 20})", 11);
  CHECK(seconds_since(t0) >= 0.45);  // 10 intervals of 50 ms
  for (const char* bad : {R"({"vehicles": 0})", R"({"rate_hz": -1})", R"({"near_failure_fraction": 1.5})",
                          R"({"records": -1})", R"({"colour": "red"})"}) {
    auto b = h.create("synthetic_telemetry", "bad", bad);
    INFO(bad);
    CHECK_FALSE(b.ok());
  }
}
