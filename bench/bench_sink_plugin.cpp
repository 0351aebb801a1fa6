// bench_sink: the trivial business plugin pipeline_bench feeds, so that what the bench
// measures is the runtime, not a plugin's work. Built into build/bench-plugins/ (never
// installed, never on the default search path).
//
// Keys: sleep_ms (sleep this long in every process() call: a slow consumer), emit_age
// (emit {"age_ms", "seq", "ts_ns"} for every input: the input's age when process() was
// entered, wall clock minus the frame's capture timestamp), mark_every (emit the same
// payload for sequence 1 and every multiple of it: the capture timestamps of the first and
// last frames, without a result per frame), block (block inside process() until the host
// process calls the exported edgert_bench_sink_release(): a stalled instance), emit_bytes
// (emit one valid JSON result of about this many bytes, payload type "bench.emit", for
// every input: emit_bench's load. The text is built once, in the constructor, and the same
// bytes are emitted every time, so the plugin's own share of the CPU is a call and nothing
// else; it is shaped like a detector's result, an array of small objects, so a parser
// sees numbers, strings and nesting, not one long string).
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using nlohmann::json;

std::mutex g_mu;
std::condition_variable g_cv;
bool g_released = false;

class BenchSink : public edgert::sdk::Plugin {
 public:
  BenchSink(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    sleep_ms_ = c.at("sleep_ms").get<std::int64_t>();
    emit_age_ = c.at("emit_age").get<bool>();
    mark_every_ = c.at("mark_every").get<std::int64_t>();
    block_ = c.at("block").get<bool>();
    const auto emit_bytes = c.at("emit_bytes").get<std::int64_t>();
    if (emit_bytes > 0) emit_payload_ = sized_payload(static_cast<std::size_t>(emit_bytes));
  }

  // {"objects":[{"x":..,"y":..,"w":..,"h":..,"label":"car","score":0.875},...],"pad":"..."}
  // of exactly `bytes` bytes when bytes >= 23 (the string "pad" takes up the rest; smaller
  // asks give the shortest such document, no objects and an empty pad).
  static std::string sized_payload(std::size_t bytes) {
    std::string s = "{\"objects\":[";
    const std::string tail_open = "],\"pad\":\"";
    for (int i = 0;; ++i) {
      const std::string obj = std::string(i == 0 ? "" : ",") + "{\"x\":" + std::to_string(i % 1920) +
                              ",\"y\":" + std::to_string((i * 7) % 1080) + ",\"w\":64,\"h\":48,\"label\":\"car\"," +
                              "\"score\":0.875}";
      if (s.size() + obj.size() + tail_open.size() + 2 > bytes) break;
      s += obj;
    }
    s += tail_open;
    if (s.size() + 2 < bytes) s.append(bytes - s.size() - 2, 'p');
    s += "\"}";
    return s;
  }

  void process(const edgert::sdk::Input& in) override {
    const std::int64_t entry_ns = host().wall_ns();
    if (!emit_payload_.empty() && !host().emit("bench.emit", emit_payload_)) {
      throw std::runtime_error("host refused the payload");
    }
    const edgert_frame* f = in.frame();
    if (f != nullptr) {
      const bool mark = mark_every_ > 0 && (f->sequence == 1 || f->sequence % std::uint64_t(mark_every_) == 0);
      if (emit_age_ || mark) {
        const json payload = {{"age_ms", double(entry_ns - f->timestamp_ns) / 1e6},
                              {"seq", f->sequence},
                              {"ts_ns", f->timestamp_ns}};
        if (!host().emit("bench.age", payload.dump())) throw std::runtime_error("host refused the payload");
      }
    }
    if (block_) {
      std::unique_lock lk(g_mu);
      g_cv.wait(lk, [] { return g_released; });
    }
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
  }

 private:
  std::int64_t sleep_ms_ = 0;
  bool emit_age_ = false;
  std::int64_t mark_every_ = 0;
  bool block_ = false;
  std::string emit_payload_;  // emit_bytes > 0: the one result emitted for every input
};

}  // namespace

// Releases every instance blocked by `block: true`, now and later (found by the bench
// with dlsym). Any thread; never blocks for long.
extern "C" __attribute__((visibility("default"))) void edgert_bench_sink_release() {
  {
    std::lock_guard lk(g_mu);
    g_released = true;
  }
  g_cv.notify_all();
}

EDGERT_PLUGIN_CLASS(BenchSink, EDGERT_KIND_BUSINESS, "bench_sink", "1.0.0",
                    "pipeline_bench's and emit_bench's trivial consumer: optional sleep, frame age, block, sized results",
                    R"schema({"sleep_ms": {"type": "integer", "default": 0, "minimum": 0, "maximum": 60000,
                                     "description": "sleep this long in every process() call"},
                        "emit_age": {"type": "boolean", "default": false,
                                     "description": "emit the input's age at entry for every frame"},
                        "mark_every": {"type": "integer", "default": 0, "minimum": 0,
                                       "description": "emit the age for sequence 1 and every multiple of this"},
                        "block": {"type": "boolean", "default": false,
                                  "description": "block in process() until edgert_bench_sink_release()"},
                        "emit_bytes": {"type": "integer", "default": 0, "minimum": 0, "maximum": 16777216,
                                       "description": "emit one prebuilt JSON result of about this many bytes per input"}})schema");
