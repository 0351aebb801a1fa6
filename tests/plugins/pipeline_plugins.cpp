// Test plugins for the pipeline (tests/test_pipeline.cpp), built twice: PL_SOURCE gives
// the capture plugin `pl_source`, otherwise the business plugin `pl_probe`.
//
// pl_source: GRAY8 frames (or JSON records) of width x height, `frames` of them (0:
// endless), paced at `fps` (0: as fast as called). With emit_ptr it emits
// {"seq", "ptr"} for every frame (the pixel address) so a test can compare it with what
// consumers see. fail_open: start() fails; fail_after: capture() fails after that many
// items; stall_after: capture() answers AGAIN forever after that many items.
// pl_probe: emits {"seq", "ptr", "kind"} for every input; sleep_ms per call; block:
// stays inside process() until pl_probe_release() is called (found with dlsym); fail:
// "error" returns an error, "throw" throws, for the first fail_count calls (0: always);
// blob_bytes > 0: emits the same {"priority": 3, "blob": "xx..."} every call, built once.
// block_once: the first instance (since pl_probe_reset_once()) whose process() runs
// blocks like `block`; the others run normally (a stuck instance and its replacement).
// pl_probe_created() / pl_probe_destroyed() count objects; pl_probe_destroyed_in_call()
// counts objects destroyed while one of their process() calls was still running.
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using nlohmann::json;

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

#ifdef PL_SOURCE

struct Buffer {
  std::uint8_t* pixels;
  char* record;
};

void release_buffer(void* data) {
  auto* b = static_cast<Buffer*>(data);
  delete[] b->pixels;
  delete[] b->record;
  delete b;
}

class Source : public edgert::sdk::Plugin {
 public:
  Source(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    width_ = c.value("width", 32);
    height_ = c.value("height", 24);
    frames_ = c.value("frames", 0);
    fps_ = c.value("fps", 0.0);
    emit_ptr_ = c.value("emit_ptr", false);
    fail_open_ = c.value("fail_open", false);
    fail_after_ = c.value("fail_after", -1);
    stall_after_ = c.value("stall_after", -1);
    record_ = c.value("record", false);
  }
  void start() override {
    if (fail_open_) throw std::runtime_error("cannot open pl_source (fail_open)");
  }
  edgert_status capture(edgert_capture& out) override {
    if (frames_ > 0 && produced_ >= frames_) return EDGERT_ERR_END_OF_STREAM;
    if (stall_after_ >= 0 && produced_ >= stall_after_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return EDGERT_ERR_AGAIN;
    }
    if (fail_after_ >= 0 && produced_ >= fail_after_) {
      host().error("pl_source: read failed (fail_after)");
      return EDGERT_ERR_INTERNAL;
    }
    if (fps_ > 0) {
      const auto period = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / fps_));
      if (next_ == std::chrono::steady_clock::time_point{}) next_ = std::chrono::steady_clock::now();
      std::this_thread::sleep_until(next_);
      next_ += period;
    }
    ++produced_;
    auto* b = new Buffer{nullptr, nullptr};
    out.release = release_buffer;
    out.release_data = b;
    if (record_) {
      const std::string text = json{{"n", produced_}}.dump();
      b->record = new char[text.size() + 1];
      std::memcpy(b->record, text.c_str(), text.size() + 1);
      out.record_json = b->record;
      out.record_len = text.size();
      return EDGERT_OK;
    }
    const std::size_t size = static_cast<std::size_t>(width_) * static_cast<std::size_t>(height_);
    b->pixels = new std::uint8_t[size];
    std::memset(b->pixels, static_cast<int>(produced_ & 0xFF), size);
    out.pixel_format = EDGERT_PIXEL_GRAY8;
    out.data = b->pixels;
    out.width = width_;
    out.height = height_;
    out.stride = width_;
    if (emit_ptr_) host().emit("source.frame", json{{"n", produced_}, {"ptr", hex(b->pixels)}}.dump());
    return EDGERT_OK;
  }

 private:
  int width_, height_;
  std::int64_t frames_, produced_ = 0, fail_after_, stall_after_;
  double fps_;
  bool emit_ptr_, fail_open_, record_;
  std::chrono::steady_clock::time_point next_{};
};

}  // namespace

EDGERT_PLUGIN_CLASS(Source, EDGERT_KIND_CAPTURE, "pl_source", "1.0.0", "pipeline test source",
                    R"({"width": {"type": "integer", "default": 32, "minimum": 1},
                        "height": {"type": "integer", "default": 24, "minimum": 1},
                        "frames": {"type": "integer", "default": 0, "minimum": 0},
                        "fps": {"type": "number", "default": 0, "minimum": 0},
                        "emit_ptr": {"type": "boolean", "default": false},
                        "fail_open": {"type": "boolean", "default": false},
                        "fail_after": {"type": "integer", "default": -1},
                        "stall_after": {"type": "integer", "default": -1},
                        "record": {"type": "boolean", "default": false},
                        "url": {"type": "string", "default": ""}})");

#else

// pl_probe_release() frees the blocked calls of every instance created before it; later
// instances block again (each test gets its own stuck instances).
std::mutex g_mu;
std::condition_variable g_cv;
std::uint64_t g_generation = 0;
std::atomic<int> g_once_claimed{0};
std::atomic<int> g_created{0}, g_destroyed{0}, g_destroyed_in_call{0};

class Probe : public edgert::sdk::Plugin {
 public:
  Probe(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    sleep_ms_ = c.value("sleep_ms", 0);
    block_ = c.value("block", false);
    fail_ = c.value("fail", std::string("none"));
    fail_count_ = c.value("fail_count", 0);
    emit_ = c.value("emit", true);
    if (const int n = c.value("blob_bytes", 0); n > 0) blob_ = json{{"priority", 3}, {"blob", std::string(n, 'x')}}.dump();
    block_once_ = c.value("block_once", false);
    g_created.fetch_add(1);
    std::lock_guard lk(g_mu);
    generation_ = g_generation;
  }
  ~Probe() override {
    if (in_call_.load()) g_destroyed_in_call.fetch_add(1);
    g_destroyed.fetch_add(1);
  }
  void process(const edgert::sdk::Input& in) override {
    struct InCall {
      std::atomic<bool>& flag;
      explicit InCall(std::atomic<bool>& f) : flag(f) { flag.store(true); }
      ~InCall() { flag.store(false); }
    } in_call(in_call_);
    ++calls_;
    if (block_once_ && !claimed_) {
      int expected = 0;
      claimed_ = true;
      if (g_once_claimed.compare_exchange_strong(expected, 1)) {
        std::unique_lock lk(g_mu);
        g_cv.wait(lk, [this] { return g_generation != generation_; });
      }
    }
    if (block_) {
      std::unique_lock lk(g_mu);
      g_cv.wait(lk, [this] { return g_generation != generation_; });
    }
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (fail_ != "none" && (fail_count_ == 0 || calls_ <= fail_count_)) {
      if (fail_ == "throw") throw std::runtime_error("pl_probe throws on purpose");
      host().error("pl_probe fails on purpose");
      throw std::runtime_error("pl_probe fails on purpose");
    }
    if (!emit_) return;
    if (!blob_.empty()) {  // built once: the emit allocates nothing in the plugin (tests/test_result_path.cpp)
      host().emit("probe.blob", blob_);
      return;
    }
    json j{{"calls", calls_}};
    if (const edgert_frame* f = in.frame()) {
      j["seq"] = f->sequence;
      j["ptr"] = hex(f->data);
      j["kind"] = "frame";
    } else {
      j["kind"] = in.record().empty() ? "empty" : "record";
      j["record"] = std::string(in.record());
    }
    host().emit("probe", j.dump());
  }

 private:
  int sleep_ms_, fail_count_;
  bool block_, emit_, block_once_ = false, claimed_ = false;
  std::atomic<bool> in_call_{false};
  std::string fail_;
  std::string blob_;
  std::int64_t calls_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace

extern "C" __attribute__((visibility("default"))) void pl_probe_reset_once() { g_once_claimed.store(0); }
extern "C" __attribute__((visibility("default"))) int pl_probe_created() { return g_created.load(); }
extern "C" __attribute__((visibility("default"))) int pl_probe_destroyed() { return g_destroyed.load(); }
extern "C" __attribute__((visibility("default"))) int pl_probe_destroyed_in_call() { return g_destroyed_in_call.load(); }

// Lets a test end a `block: true` call: dlopen(RTLD_NOLOAD) + dlsym.
extern "C" __attribute__((visibility("default"))) void pl_probe_release() {
  std::lock_guard lk(g_mu);
  ++g_generation;
  g_cv.notify_all();
}

EDGERT_PLUGIN_CLASS(Probe, EDGERT_KIND_BUSINESS, "pl_probe", "1.0.0", "pipeline test consumer",
                    R"({"sleep_ms": {"type": "integer", "default": 0, "minimum": 0},
                        "block": {"type": "boolean", "default": false},
                        "block_once": {"type": "boolean", "default": false},
                        "fail": {"type": "string", "default": "none", "enum": ["none", "error", "throw"]},
                        "fail_count": {"type": "integer", "default": 0, "minimum": 0},
                        "emit": {"type": "boolean", "default": true},
                        "blob_bytes": {"type": "integer", "default": 0, "minimum": 0}})");

#endif
