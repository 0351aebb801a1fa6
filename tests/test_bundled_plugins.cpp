// The bundled plugins (plugins/), driven through the plugin testing kit
// (edgert/plugin_testing.hpp) as a plugin author's own tests would drive theirs.
#include <edgert/plugin_testing.hpp>

#include "numbered.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

using edgert::ErrorCode;
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
}  // namespace

TEST_CASE("kit: a file that is not there is refused naming it, and last_error keeps the reason") {
  PluginHarness h;
  const auto st = h.load(kDir + "/no_such_plugin.so");
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("no_such_plugin.so") != std::string::npos);
  CHECK(h.last_error() == st.message());
  auto inst = h.create("threshold", "t1");  // not loaded: the harness searches nothing else
  REQUIRE_FALSE(inst.ok());
  CHECK(inst.status().message().find("threshold") != std::string::npos);
  CHECK(h.last_error() == inst.status().message());
  h.clear();
  CHECK(h.last_error().empty());
}

TEST_CASE("record_counter counts records and frames and emits every `every` inputs") {
  PluginHarness h;
  load(h, "record_counter");
  auto inst = h.create("record_counter", "rc1", R"({"every": 2})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  for (int i = 0; i < 5; ++i) REQUIRE(inst->process_record(R"({"n": 1})", "cam").ok());
  REQUIRE(inst->process_frame(make_frame(2, 2, PixelFormat::gray8, {1, 2, 3, 4}), "cam").ok());
  const auto out = h.emitted();
  REQUIRE(out.size() == 3);  // after inputs 2, 4 and 6
  long expected_count = 2;
  for (const auto& e : out) {
    CHECK(e.instance == "rc1");
    CHECK(e.payload_type == "count");
    const auto j = json::parse(e.json);
    CHECK(j.at("stream") == "cam");
    CHECK(j.at("count") == expected_count);
    expected_count += 2;
  }
  CHECK(json::parse(out[0].json).at("frames") == 0);
  CHECK(json::parse(out[2].json).at("frames") == 1);
  CHECK(h.notifications().empty());

  auto bad = h.create("record_counter", "rc2", R"({"every": 0})");
  REQUIRE_FALSE(bad.ok());
  CHECK(h.last_error().find("rc2") != std::string::npos);
}

TEST_CASE("record_counter: a long stream name full of quotes, backslashes and controls round-trips") {
  PluginHarness h;
  load(h, "record_counter");
  auto inst = h.create("record_counter", "rc1");
  REQUIRE(inst.ok());
  std::string stream;
  for (int i = 0; stream.size() < 300; ++i) {
    const char pick[] = {'"', '\\', '\n', '\x01', '\x1f', 'a', '\t', '/'};
    stream += pick[i % 8];
  }
  REQUIRE(stream.size() == 300);
  edgert::PluginInput in;
  in.stream = stream;
  in.record_json = "{}";
  REQUIRE(inst->process(in).ok());
  const auto out = h.emitted();
  REQUIRE(out.size() == 1);
  const auto j = json::parse(out[0].json);  // throws (fails the test) if it does not parse
  CHECK(j.at("stream").get<std::string>() == stream);
  CHECK(j.at("count") == 1);
}

TEST_CASE("test_pattern captures `frames` GRAY8 frames of the configured size, then ends") {
  PluginHarness h;
  load(h, "test_pattern");
  auto inst = h.create("test_pattern", "tp1", R"({"width": 32, "height": 8, "frames": 3})");
  INFO(h.last_error());
  REQUIRE(inst.ok());
  for (int n = 0; n < 3; ++n) {
    auto c = inst->capture();
    INFO(c.status().message());
    REQUIRE(c.ok());
    const auto& f = c.value().frame;
    REQUIRE(f);
    CHECK(f.info().width == 32);
    CHECK(f.info().height == 8);
    CHECK(f.info().stride == 32);
    CHECK(f.info().format == PixelFormat::gray8);
    CHECK(f.info().sequence == static_cast<std::uint64_t>(n + 1));
    // The bar sits at column n; everything else is the background.
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 32; ++x) {
        const int want = x == n ? 235 : 16;
        if (f.data()[y * 32 + x] != want) FAIL("pixel " << x << "," << y << " of frame " << n);
      }
    }
  }
  auto end = inst->capture();
  REQUIRE_FALSE(end.ok());
  CHECK(end.status().code() == ErrorCode::end_of_stream);
  CHECK(h.last_error().empty());  // the end of a stream is not an error
  CHECK(h.emitted().empty());

  auto bad = h.create("test_pattern", "tp2", R"({"width": 0})");
  REQUIRE_FALSE(bad.ok());
}

TEST_CASE("threshold emits an event above the limit, for records and for a frame's mean") {
  PluginHarness h;
  load(h, "threshold");
  auto inst = h.create("threshold", "t1", R"({"limit": 5})");
  REQUIRE(inst.ok());
  REQUIRE(inst->process_record(R"({"value": 7})").ok());
  REQUIRE(inst->process_record(R"({"value": 3})").ok());
  REQUIRE(inst->process_record(R"({"other": 99})").ok());
  // Mean of these BGR pixels: (6 * 10 + 6 * 2) / 12 = 6 > 5.
  REQUIRE(inst->process_frame(make_frame(2, 2, PixelFormat::bgr8, {10, 10, 10, 10, 10, 10, 2, 2, 2, 2, 2, 2}), "cam")
              .ok());
  const auto out = h.emitted();
  REQUIRE(out.size() == 2);
  CHECK(out[0].instance == "t1");
  CHECK(out[0].payload_type == "event");
  const auto rec = json::parse(out[0].json);
  CHECK(rec.at("value") == 7.0);
  CHECK(rec.at("limit") == 5.0);
  CHECK(rec.at("stream") == "test");  // the kit's default stream
  const auto frame = json::parse(out[1].json);
  CHECK(frame.at("value") == 6.0);
  CHECK(frame.at("stream") == "cam");

  REQUIRE(inst->update_config(R"({"limit": 100})").ok());
  h.clear();
  REQUIRE(inst->process_record(R"({"value": 50})").ok());
  CHECK(h.emitted().empty());

  const auto bad = inst->process_record("{not json");
  REQUIRE_FALSE(bad.ok());
  CHECK(h.last_error() == bad.message());
  CHECK(inst->raw().errors() == 1);
}

TEST_CASE("kit: instances driven from their own threads are all collected") {
  PluginHarness h;
  load(h, "record_counter");
  constexpr int kThreads = 4, kRecords = 300;
  std::vector<edgert::plugin_testing::Instance> insts;
  for (int t = 0; t < kThreads; ++t) {
    auto inst = h.create("record_counter", "rc" + std::to_string(t));
    REQUIRE(inst.ok());
    insts.push_back(std::move(inst).value());
  }
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecords; ++i) {
        if (!insts[static_cast<std::size_t>(t)].process_record("{}", edgert::testing::numbered("s", t)).ok()) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(h.wait_for_emitted(kThreads * kRecords, std::chrono::seconds(10)));
  for (int f : failures) CHECK(f == 0);
  std::vector<long> last(kThreads, 0);
  for (const auto& e : h.emitted()) {
    const auto j = json::parse(e.json);
    const int t = std::stoi(e.instance.substr(2));
    CHECK(j.at("stream") == edgert::testing::numbered("s", t));
    CHECK(j.at("count").get<long>() == last[static_cast<std::size_t>(t)] + 1);  // in order per instance
    last[static_cast<std::size_t>(t)] = j.at("count").get<long>();
  }
  for (long n : last) CHECK(n == kRecords);
}
