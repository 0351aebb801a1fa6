// The bundled business plugins motion_detector and telemetry_urgency (plugins/), driven
// through the plugin testing kit (edgert/plugin_testing.hpp). docs/plugins.md,
// "Bundled business plugins", describes what is checked here.
#include <edgert/frame.hpp>
#include <edgert/plugin_testing.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

using edgert::Frame;
using edgert::FrameInfo;
using edgert::PixelFormat;
using edgert::plugin_testing::make_frame;
using edgert::plugin_testing::PluginHarness;
using nlohmann::json;

namespace {
const std::string kDir = EDGERT_BUNDLED_PLUGIN_DIR;

void load(PluginHarness& h, const std::string& name) {
  const auto st = h.load(kDir + "/" + name + ".so");
  INFO(st.message());
  REQUIRE(st.ok());
}

struct Square {
  int x = 0, y = 0, size = 0;
  std::uint8_t level = 200;
};

// A frame of `format` with a fixed textured background (level 40..70) and optional
// squares, rows `pad` bytes wider than the pixels; the padding changes with `seq` so a
// plugin that ignores the stride sees motion everywhere.
Frame scene(int w, int h, PixelFormat format, std::uint64_t seq, const std::vector<Square>& squares, int pad = 0) {
  const int bpp = edgert::bytes_per_pixel(format);
  const int stride = w * bpp + pad;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(stride) * h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      std::uint8_t v = static_cast<std::uint8_t>(40 + (x * 7 + y * 3) % 31);
      for (const auto& s : squares) {
        if (x >= s.x && x < s.x + s.size && y >= s.y && y < s.y + s.size) v = s.level;
      }
      for (int c = 0; c < bpp; ++c) px[static_cast<std::size_t>(y) * stride + x * bpp + c] = c == 3 ? 255 : v;
    }
    for (int p = 0; p < pad; ++p) px[static_cast<std::size_t>(y) * stride + w * bpp + p] = static_cast<std::uint8_t>(seq * 97 + p);
  }
  FrameInfo info;
  info.format = format;
  info.width = w;
  info.height = h;
  info.stride = stride;
  info.sequence = seq;
  info.stream = "cam";
  return Frame::copy_of(info, px.data());
}

std::vector<json> payloads(const PluginHarness& h, const std::string& type) {
  std::vector<json> out;
  for (const auto& e : h.emitted()) {
    CHECK(e.payload_type == type);
    out.push_back(json::parse(e.json));
  }
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

// ---- motion_detector --------------------------------------------------------------

TEST_CASE("motion_detector: a static scene emits nothing; a square appearing, moving and stopping emits start, change, stop") {
  PluginHarness h;
  load(h, "motion_detector");
  // blur off and a square aligned to the 4x grid: the box must be exact.
  auto inst = h.create("motion_detector", "m1", R"({"blur": false})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::uint64_t seq = 0;
  auto feed = [&](const std::vector<Square>& sq) {
    ++seq;
    const auto st = inst->process(edgert::PluginInput{"cam", scene(320, 240, PixelFormat::bgr8, seq, sq), "", ""});
    INFO(st.message());
    REQUIRE(st.ok());
  };
  for (int i = 0; i < 5; ++i) feed({});
  CHECK(h.emitted().empty());

  feed({{100, 80, 60}});  // frame 6: appears
  auto out = payloads(h, "motion");
  REQUIRE(out.size() == 1);
  CHECK(out[0].at("event") == "start");
  CHECK(out[0].at("stream") == "cam");
  CHECK(out[0].at("sequence") == 6);
  CHECK(out[0].at("frame_width") == 320);
  CHECK(out[0].at("frame_height") == 240);
  REQUIRE(out[0].at("regions").size() == 1);
  const auto r = out[0].at("regions")[0];
  CHECK(r.at("x") == 100);
  CHECK(r.at("y") == 80);
  CHECK(r.at("width") == 60);
  CHECK(r.at("height") == 60);
  CHECK(r.at("area") == 3600);
  CHECK(out[0].at("motion_area") == 3600);

  feed({{220, 152, 60}});  // frame 7: jumps away: the old place and the new one differ
  out = payloads(h, "motion");
  REQUIRE(out.size() == 2);
  CHECK(out[1].at("event") == "change");
  CHECK(out[1].at("sequence") == 7);
  REQUIRE(out[1].at("regions").size() == 2);
  CHECK(out[1].at("regions")[0].at("x") == 100);  // sorted top to bottom
  CHECK(out[1].at("regions")[1].at("x") == 220);
  CHECK(out[1].at("regions")[1].at("y") == 152);
  CHECK(out[1].at("motion_area") == 7200);

  feed({{220, 152, 60}});  // frame 8: still
  out = payloads(h, "motion");
  REQUIRE(out.size() == 3);
  CHECK(out[2].at("event") == "stop");
  CHECK(out[2].at("sequence") == 8);
  CHECK(out[2].at("regions").empty());
  CHECK(out[2].at("motion_area") == 0);
  CHECK(out[2].at("reason") == "no_motion");

  for (int i = 0; i < 3; ++i) feed({{220, 152, 60}});
  CHECK(h.emitted().size() == 3);
  CHECK(h.last_error().empty());
}

TEST_CASE("motion_detector: regions that stay within change_tolerance emit nothing; beyond it, change") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1");  // defaults: blur on, downscale 4, tolerance 0.25
  INFO(h.last_error());
  REQUIRE(inst.ok());
  std::uint64_t seq = 0;
  auto feed = [&](const std::vector<Square>& sq) {
    ++seq;
    REQUIRE(inst->process(edgert::PluginInput{"cam", scene(320, 240, PixelFormat::bgr8, seq, sq), "", ""}).ok());
    return h.emitted().size();
  };
  // A blinking square: every frame differs from the one before at the square's place.
  CHECK(feed({}) == 0);
  CHECK(feed({{100, 80, 60}}) == 1);  // start
  CHECK(feed({}) == 1);               // same region
  CHECK(feed({{106, 80, 60}}) == 1);  // moved 6 px: under 0.25 * 60
  CHECK(feed({}) == 1);
  CHECK(feed({{140, 80, 60}}) == 2);  // 40 px from the emitted box: change
  CHECK(feed({}) == 2);
  CHECK(feed({}) == 3);  // stop
  const auto out = payloads(h, "motion");
  REQUIRE(out.size() == 3);
  CHECK(out[0].at("event") == "start");
  CHECK(out[1].at("event") == "change");
  CHECK(out[2].at("event") == "stop");
  // Blur widens the box by a few pixels; the square is at (100, 80) then (140, 80).
  const auto a = out[0].at("regions").at(0);
  CHECK(std::abs(a.at("x").get<int>() - 100) <= 8);
  CHECK(std::abs(a.at("y").get<int>() - 80) <= 8);
  CHECK(std::abs(a.at("width").get<int>() - 60) <= 16);
  CHECK(std::abs(a.at("height").get<int>() - 60) <= 16);
  CHECK(std::abs(out[1].at("regions").at(0).at("x").get<int>() - 140) <= 8);
}

TEST_CASE("motion_detector: stop_frames waits for that many quiet frames before stop") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1", R"({"stop_frames": 3})");
  REQUIRE(inst.ok());
  std::uint64_t seq = 0;
  auto feed = [&](const std::vector<Square>& sq) {
    ++seq;
    REQUIRE(inst->process(edgert::PluginInput{"cam", scene(160, 120, PixelFormat::gray8, seq, sq), "", ""}).ok());
    return h.emitted().size();
  };
  CHECK(feed({}) == 0);
  CHECK(feed({{40, 40, 40}}) == 1);
  CHECK(feed({{40, 40, 40}}) == 1);
  CHECK(feed({{40, 40, 40}}) == 1);
  CHECK(feed({{40, 40, 40}}) == 2);
  CHECK(payloads(h, "motion").back().at("event") == "stop");
}

TEST_CASE("motion_detector: speckles and small objects below min_area emit nothing") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1");
  REQUIRE(inst.ok());
  auto small = h.create("motion_detector", "m2", R"({"min_area": 50})");
  REQUIRE(small.ok());
  std::srand(7);
  for (std::uint64_t seq = 1; seq <= 12; ++seq) {
    std::vector<Square> sq;
    for (int i = 0; i < 150; ++i) sq.push_back({std::rand() % 320, std::rand() % 240, 1, 255});  // 1-pixel speckles
    if (seq % 2 == 0) sq.push_back({150, 100, 10, 250});  // a 10x10 object blinking: 100 pixels
    const Frame f = scene(320, 240, PixelFormat::bgr8, seq, sq);
    REQUIRE(inst->process(edgert::PluginInput{"cam", f, "", ""}).ok());
    REQUIRE(small->process(edgert::PluginInput{"cam", f, "", ""}).ok());
  }
  std::size_t m1 = 0, m2 = 0;
  for (const auto& e : h.emitted()) (e.instance == "m1" ? m1 : m2)++;
  CHECK(m1 == 0);
  CHECK(m2 == 1);  // the same frames with min_area 50: the 10x10 object starts motion, and it never stops
}

TEST_CASE("motion_detector: a frame size change mid-stream resets the state (stop, reason reset) without crashing") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1", R"({"blur": false})");
  REQUIRE(inst.ok());
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(320, 240, PixelFormat::bgr8, 1, {}), "", ""}).ok());
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(320, 240, PixelFormat::bgr8, 2, {{100, 80, 60}}), "", ""}).ok());
  REQUIRE(h.emitted().size() == 1);
  // Smaller, then larger, then a different format of the larger size.
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(160, 120, PixelFormat::bgr8, 3, {}), "", ""}).ok());
  auto out = payloads(h, "motion");
  REQUIRE(out.size() == 2);
  CHECK(out[1].at("event") == "stop");
  CHECK(out[1].at("reason") == "reset");
  CHECK(out[1].at("frame_width") == 160);
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(160, 120, PixelFormat::bgr8, 4, {{20, 20, 40}}), "", ""}).ok());
  out = payloads(h, "motion");
  REQUIRE(out.size() == 3);
  CHECK(out[2].at("event") == "start");
  CHECK(out[2].at("regions").at(0).at("x") == 20);
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(641, 479, PixelFormat::gray8, 5, {}), "", ""}).ok());
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(641, 479, PixelFormat::gray8, 6, {}), "", ""}).ok());
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(1, 1, PixelFormat::bgra8, 7, {}), "", ""}).ok());
  REQUIRE(inst->process(edgert::PluginInput{"cam", scene(1, 1, PixelFormat::bgra8, 8, {{0, 0, 1}}), "", ""}).ok());
  out = payloads(h, "motion");
  REQUIRE(out.size() == 4);  // the stop at the 641x479 reset; the 1x1 frames are below min_area
  CHECK(out[3].at("event") == "stop");
  CHECK(h.last_error().empty());
}

TEST_CASE("motion_detector: update_config ends motion at the next frame (stop, reason reconfigured) and applies the new keys") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1", R"({"blur": false})");
  REQUIRE(inst.ok());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 1, {})).ok());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 2, {{100, 80, 60}})).ok());
  REQUIRE(h.emitted().size() == 1);
  // downscale 2 changes the reduced image's size: comparing it with the old one would fail.
  REQUIRE(inst->update_config(R"({"downscale": 2, "roi": {"x": 200}})").ok());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 3, {{100, 80, 60}})).ok());
  auto out = payloads(h, "motion");
  REQUIRE(out.size() == 2);
  CHECK(out[1].at("event") == "stop");
  CHECK(out[1].at("reason") == "reconfigured");
  CHECK(out[1].at("sequence") == 3);
  // The square at x 100 is now outside the roi; one at x 240 is seen at the new scale.
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 4, {{20, 80, 60}})).ok());
  CHECK(h.emitted().size() == 2);
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 5, {{20, 80, 60}, {240, 100, 50}})).ok());
  out = payloads(h, "motion");
  REQUIRE(out.size() == 3);
  CHECK(out[2].at("event") == "start");
  CHECK(out[2].at("regions").at(0).at("x") == 240);
  CHECK(out[2].at("regions").at(0).at("width") == 50);
  CHECK(h.last_error().empty());
}

TEST_CASE("motion_detector: a record input is refused with EDGERT_ERR_INVALID_ARGUMENT and a logged reason") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1");
  REQUIRE(inst.ok());
  const auto st = inst->process_record(R"({"value": 1})", "tele\nmetry");
  REQUIRE_FALSE(st.ok());
  INFO(st.message());
  CHECK(contains(st.message(), "EDGERT_ERR_INVALID_ARGUMENT"));
  CHECK(contains(st.message(), "motion_detector takes frames (BGR8, GRAY8, RGB8, BGRA8); got a record on stream 'tele\\x0ametry'"));
  CHECK(h.emitted().empty());
  // The instance keeps working after the refusal.
  REQUIRE(inst->process_frame(scene(64, 64, PixelFormat::gray8, 1, {})).ok());
}

TEST_CASE("motion_detector: GRAY8, RGB8 and BGRA8 frames with padded rows find the same box as BGR8") {
  const PixelFormat formats[] = {PixelFormat::bgr8, PixelFormat::gray8, PixelFormat::rgb8, PixelFormat::bgra8};
  for (const auto format : formats) {
    for (const int pad : {0, 13}) {
      PluginHarness h;
      load(h, "motion_detector");
      auto inst = h.create("motion_detector", "m1", R"({"blur": false})");
      REQUIRE(inst.ok());
      INFO("format " << static_cast<int>(format) << " pad " << pad);
      for (std::uint64_t seq = 1; seq <= 3; ++seq) {
        REQUIRE(inst->process(edgert::PluginInput{"cam", scene(320, 240, format, seq, {}, pad), "", ""}).ok());
      }
      CHECK(h.emitted().empty());  // the padding changes every frame and is ignored
      REQUIRE(inst->process(edgert::PluginInput{"cam", scene(320, 240, format, 4, {{100, 80, 60}}, pad), "", ""}).ok());
      const auto out = payloads(h, "motion");
      REQUIRE(out.size() == 1);
      const auto r = out[0].at("regions").at(0);
      CHECK(r.at("x") == 100);
      CHECK(r.at("y") == 80);
      CHECK(r.at("width") == 60);
      CHECK(r.at("height") == 60);
    }
  }
}

TEST_CASE("motion_detector: downscale 1 on GRAY8 keeps its own copy of the previous frame, not the borrowed pixels") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1", R"({"downscale": 1, "blur": false, "min_area": 100})");
  REQUIRE(inst.ok());
  // The first frame's buffer is overwritten with the second scene once process returns,
  // as a host reusing its buffers would: a plugin that kept the borrowed pointer would
  // compare the second frame with itself and see no motion.
  const Frame still = scene(97, 61, PixelFormat::gray8, 1, {}, 3);
  const Frame moved = scene(97, 61, PixelFormat::gray8, 2, {{31, 17, 13}}, 3);
  const std::size_t bytes = static_cast<std::size_t>(still.info().stride) * still.info().height;
  std::vector<std::uint8_t> reused(still.data(), still.data() + bytes);
  REQUIRE(inst->process_frame(Frame::wrap(still.info(), reused.data(), {})).ok());
  std::copy(moved.data(), moved.data() + bytes, reused.begin());
  REQUIRE(inst->process_frame(moved).ok());
  const auto out = payloads(h, "motion");
  REQUIRE(out.size() == 1);
  const auto r = out[0].at("regions").at(0);
  CHECK(r.at("x") == 31);
  CHECK(r.at("y") == 17);
  CHECK(r.at("width") == 13);
  CHECK(r.at("height") == 13);
  CHECK(r.at("area") == 169);
}

TEST_CASE("motion_detector: roi limits detection and reports original-frame coordinates") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1", R"({"blur": false, "roi": {"x": 160, "y": 40, "width": 120}})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 1, {})).ok());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 2, {{20, 80, 60}})).ok());  // outside
  CHECK(h.emitted().empty());
  REQUIRE(inst->process_frame(scene(320, 240, PixelFormat::gray8, 3, {{20, 80, 60}, {200, 120, 40}})).ok());
  const auto out = payloads(h, "motion");
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].at("regions").size() == 1);
  CHECK(out[0].at("regions")[0].at("x") == 200);
  CHECK(out[0].at("regions")[0].at("y") == 120);
  CHECK(out[0].at("regions")[0].at("width") == 40);

  auto outside = h.create("motion_detector", "m2", R"({"roi": {"x": 400}})");
  REQUIRE(outside.ok());
  const auto st = outside->process_frame(scene(320, 240, PixelFormat::gray8, 1, {}));
  REQUIRE_FALSE(st.ok());
  CHECK(contains(st.message(), "EDGERT_ERR_INVALID_ARGUMENT"));
  CHECK(contains(st.message(), "roi {x: 400, y: 0, width: 0, height: 0} lies outside the 320x240 frame"));
}

TEST_CASE("motion_detector: out-of-range config keys are refused at create") {
  PluginHarness h;
  load(h, "motion_detector");
  for (const char* bad : {R"({"threshold": 256})", R"({"downscale": 0})", R"({"min_area": 0})", R"({"blur": 1})",
                          R"({"roi": {"x": -1}})", R"({"change_tolerance": -0.5})", R"({"nope": 1})"}) {
    INFO(bad);
    auto inst = h.create("motion_detector", "m1", bad);
    CHECK_FALSE(inst.ok());
  }
}

TEST_CASE("motion_detector: ms per 1920x1080 BGR frame (printed, not asserted)") {
  PluginHarness h;
  load(h, "motion_detector");
  auto inst = h.create("motion_detector", "m1");
  REQUIRE(inst.ok());
  const Frame a = scene(1920, 1080, PixelFormat::bgr8, 1, {{400, 300, 200}});
  const Frame b = scene(1920, 1080, PixelFormat::bgr8, 2, {{1200, 500, 200}});
  REQUIRE(inst->process_frame(a).ok());
  const int n = 40;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) REQUIRE(inst->process_frame(i % 2 ? a : b).ok());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
  std::printf("motion_detector: %.2f ms per 1920x1080 BGR frame (downscale 4, blur on, %d frames)\n", ms, n);
  CHECK(h.emitted().size() >= 1);
}

// ---- telemetry_urgency ------------------------------------------------------------

namespace {
std::string record(double days, const std::string& vin = "1HGCM82633A004352") {
  return json{{"vin", vin},
              {"timestamp_ms", 1764250000000LL},
              {"sensors", {{"brake_pad_mm", 3.1}, {"engine_temp_c", 92}}},
              {"predicted_days_to_failure", days},
              {"component", "brakes"}}
      .dump();
}
}  // namespace

TEST_CASE("telemetry_urgency: each band and each boundary (exactly 1, 7 and 30 days)") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  auto inst = h.create("telemetry_urgency", "u1");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  const std::vector<std::pair<double, std::string>> cases = {
      {0, "CRITICAL"},    {0.5, "CRITICAL"}, {0.999, "CRITICAL"}, {1, "HIGH"}, {6.99, "HIGH"},
      {7, "MEDIUM"},      {29.9, "MEDIUM"},  {30, "LOW"},         {3650, "LOW"}};
  for (const auto& [days, level] : cases) REQUIRE(inst->process_record(record(days), "tele").ok());
  const auto out = payloads(h, "telemetry.urgency");
  REQUIRE(out.size() == cases.size());
  const std::map<std::string, int> priority = {{"CRITICAL", 3}, {"HIGH", 2}, {"MEDIUM", 1}, {"LOW", 0}};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("days " << cases[i].first);
    CHECK(out[i].at("urgency") == cases[i].second);
    CHECK(out[i].at("priority") == priority.at(cases[i].second));
    CHECK(out[i].at("priority").is_number_integer());
    CHECK(out[i].at("predicted_days_to_failure") == cases[i].first);
    CHECK(out[i].at("vin") == "1HGCM82633A004352");
    CHECK(out[i].at("component") == "brakes");
    CHECK(out[i].at("timestamp_ms") == 1764250000000LL);
  }
}

TEST_CASE("telemetry_urgency: min_level filters out lower levels") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  auto inst = h.create("telemetry_urgency", "u1", R"({"min_level": "HIGH"})");
  REQUIRE(inst.ok());
  for (const double days : {0.5, 3.0, 10.0, 100.0, 6.0}) REQUIRE(inst->process_record(record(days)).ok());
  const auto out = payloads(h, "telemetry.urgency");
  REQUIRE(out.size() == 3);
  CHECK(out[0].at("urgency") == "CRITICAL");
  CHECK(out[1].at("urgency") == "HIGH");
  CHECK(out[2].at("urgency") == "HIGH");
  CHECK(out[2].at("predicted_days_to_failure") == 6.0);

  auto bad = h.create("telemetry_urgency", "u2", R"({"min_level": "URGENT"})");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.status().message(), "min_level"));
}

TEST_CASE("telemetry_urgency: thresholds are configurable, and in place through update_config") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  auto inst = h.create("telemetry_urgency", "u1", R"({"critical_days": 2, "high_days": 10, "medium_days": 60})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  for (const double days : {1.5, 9.0, 45.0, 60.0}) REQUIRE(inst->process_record(record(days)).ok());
  auto out = payloads(h, "telemetry.urgency");
  REQUIRE(out.size() == 4);
  CHECK(out[0].at("urgency") == "CRITICAL");
  CHECK(out[1].at("urgency") == "HIGH");
  CHECK(out[2].at("urgency") == "MEDIUM");
  CHECK(out[3].at("urgency") == "LOW");

  // An update that breaks the ordering is refused and the thresholds stay as they were.
  const auto refused = inst->update_config(R"({"high_days": 100})");
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.message(), "EDGERT_ERR_INVALID_ARGUMENT"));
  CHECK(contains(refused.message(), "got 2.0, 100.0, 60.0"));
  REQUIRE(inst->process_record(record(9.0)).ok());
  REQUIRE(inst->update_config(R"({"medium_days": 5, "high_days": 4, "critical_days": 3})").ok());
  REQUIRE(inst->process_record(record(4.5)).ok());
  out = payloads(h, "telemetry.urgency");
  REQUIRE(out.size() == 6);
  CHECK(out[4].at("urgency") == "HIGH");
  CHECK(out[5].at("urgency") == "MEDIUM");
}

TEST_CASE("telemetry_urgency: thresholds out of order are refused at create with a clear error") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  for (const char* bad : {R"({"critical_days": 7})", R"({"high_days": 40})", R"({"critical_days": 5, "high_days": 3})",
                          R"({"medium_days": 7})"}) {
    INFO(bad);
    auto inst = h.create("telemetry_urgency", "u1", bad);
    REQUIRE_FALSE(inst.ok());
    CHECK(contains(inst.status().message(), "EDGERT_ERR_INVALID_ARGUMENT"));
    CHECK(contains(inst.status().message(), "config keys 'critical_days' < 'high_days' < 'medium_days' must increase"));
  }
  auto neg = h.create("telemetry_urgency", "u1", R"({"critical_days": -1})");
  CHECK_FALSE(neg.ok());  // the schema's minimum
}

TEST_CASE("telemetry_urgency: each malformed record is refused naming the field, never emitted") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  auto inst = h.create("telemetry_urgency", "u1");
  REQUIRE(inst.ok());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"[1, 2]", "not a JSON object (got array)"},
      {"\"text\"", "not a JSON object (got string)"},
      {R"({"predicted_days_to_failure": 3})", "field 'vin' is missing"},
      {R"({"vin": 5, "predicted_days_to_failure": 3})", "field 'vin' must be a non-empty string (got number)"},
      {R"({"vin": "", "predicted_days_to_failure": 3})", "field 'vin' must be a non-empty string (got string)"},
      {R"({"vin": "V1"})", "vin 'V1': field 'predicted_days_to_failure' is missing"},
      {R"({"vin": "V1", "predicted_days_to_failure": "3"})", "field 'predicted_days_to_failure' must be a number (got string)"},
      {R"({"vin": "V1", "predicted_days_to_failure": "NaN"})", "field 'predicted_days_to_failure' must be a number (got string)"},
      {R"({"vin": "V1", "predicted_days_to_failure": null})", "field 'predicted_days_to_failure' must be a number (got null)"},
      {R"({"vin": "V1", "predicted_days_to_failure": -0.5})", "field 'predicted_days_to_failure' must be a finite number >= 0 (got -0.5)"},
      // JSON has no NaN or infinity: 1e999 does not parse (the plugin checks finiteness anyway).
      {R"({"vin": "V1", "predicted_days_to_failure": 1e999})", "not valid JSON"},
      {R"({"vin": "V1", "predicted_days_to_failure": 3, "component": 7})", "field 'component' must be a string (got number)"},
      {R"({"vin": "V1", "predicted_days_to_failure": 3, "timestamp_ms": "now"})", "field 'timestamp_ms' must be a number (got string)"},
      {R"({"vin": "V1", "predicted_days_to_failure": 3, "timestamp_ms": -5})", "field 'timestamp_ms' must be milliseconds since the epoch, 0..2^53 (got -5.0)"},
      {R"({"vin": "V1", "predicted_days_to_failure": 3, "timestamp_ms": 18446744073709551615})", "field 'timestamp_ms' must be milliseconds since the epoch, 0..2^53"},
      {R"({"vin": "V1", "predicted_days_to_failure": 3, "timestamp_ms": 1e300})", "field 'timestamp_ms' must be milliseconds since the epoch, 0..2^53 (got 1e+300)"},
      {R"({"vin": "V\n1\"", "predicted_days_to_failure": -1})", "vin 'V\\x0a1\"': field 'predicted_days_to_failure'"},
  };
  for (const auto& [rec, why] : cases) {
    INFO(rec);
    const auto st = inst->process_record(rec, "tele");
    REQUIRE_FALSE(st.ok());
    INFO(st.message());
    CHECK(contains(st.message(), "EDGERT_ERR_INVALID_ARGUMENT"));
    CHECK(contains(st.message(), "record on stream 'tele'"));
    CHECK(contains(st.message(), why));
  }
  CHECK(h.emitted().empty());
  // Still working, and optional fields may be absent: component null, timestamp now.
  REQUIRE(inst->process_record(R"({"vin": "V1", "predicted_days_to_failure": 12})").ok());
  const auto out = payloads(h, "telemetry.urgency");
  REQUIRE(out.size() == 1);
  CHECK(out[0].at("urgency") == "MEDIUM");
  CHECK(out[0].at("component").is_null());
  CHECK(out[0].at("timestamp_ms").get<std::int64_t>() > 1700000000000LL);
}

TEST_CASE("telemetry_urgency: a frame input is refused with EDGERT_ERR_INVALID_ARGUMENT") {
  PluginHarness h;
  load(h, "telemetry_urgency");
  auto inst = h.create("telemetry_urgency", "u1");
  REQUIRE(inst.ok());
  const auto st = inst->process_frame(make_frame(2, 2, PixelFormat::gray8, {1, 2, 3, 4}), "cam0");
  REQUIRE_FALSE(st.ok());
  INFO(st.message());
  CHECK(contains(st.message(), "EDGERT_ERR_INVALID_ARGUMENT"));
  CHECK(contains(st.message(), "telemetry_urgency takes JSON records; got a frame on stream 'cam0'"));
  CHECK(h.emitted().empty());
}
