// synthetic_camera: a capture plugin producing deterministic frames with moving
// objects (docs/plugins.md, "Bundled plugins"). `objects` filled rectangles of
// `object_size` pixels move at constant velocity over a flat background and bounce off
// the edges; positions, velocities and colours come from `seed` alone, so the same
// configuration yields byte-identical frames on every run. Each frame is one malloc'd
// buffer (memset + rectangles), handed to the host and freed by the release callback.
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using nlohmann::json;

// splitmix64: a fixed, portable generator (std:: distributions differ between
// standard libraries, which would break "same seed, same bytes").
std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Box {
  int x, y, w, h;    // top-left and size, pixels
  int dx, dy;        // pixels per frame
  std::uint8_t b, g, r;
};

class SyntheticCamera : public edgert::sdk::Plugin {
 public:
  SyntheticCamera(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    width_ = c.at("width").get<int>();
    height_ = c.at("height").get<int>();
    fps_ = c.at("fps").get<double>();
    frames_ = c.at("frames").get<std::int64_t>();
    const int objects = c.at("objects").get<int>();
    const int size = c.at("object_size").get<int>();
    const std::string format = c.at("pixel_format").get<std::string>();
    std::uint64_t seed = c.at("seed").get<std::uint64_t>();
    if (format == "gray8") {
      format_ = EDGERT_PIXEL_GRAY8;
      bpp_ = 1;
    } else if (format != "bgr8") {  // the schema's enum makes this unreachable through a host
      throw std::invalid_argument("pixel_format must be \"bgr8\" or \"gray8\", got \"" + format + "\"");
    }
    if (fps_ > 0) interval_ns_ = static_cast<std::int64_t>(1e9 / fps_);
    std::uint64_t state = seed;
    for (int i = 0; i < objects; ++i) {
      Box o{};
      o.w = std::min(size, width_);
      o.h = std::min(size, height_);
      o.x = static_cast<int>(next_random(state) % static_cast<std::uint64_t>(width_ - o.w + 1));
      o.y = static_cast<int>(next_random(state) % static_cast<std::uint64_t>(height_ - o.h + 1));
      // 1..8 pixels per frame, either direction; never 0 so every object moves.
      o.dx = static_cast<int>(next_random(state) % 8) + 1;
      o.dy = static_cast<int>(next_random(state) % 8) + 1;
      if (next_random(state) & 1) o.dx = -o.dx;
      if (next_random(state) & 1) o.dy = -o.dy;
      // Bright colours, well away from the dark background.
      o.b = static_cast<std::uint8_t>(96 + next_random(state) % 160);
      o.g = static_cast<std::uint8_t>(96 + next_random(state) % 160);
      o.r = static_cast<std::uint8_t>(96 + next_random(state) % 160);
      boxes_.push_back(o);
    }
  }

  edgert_status capture(edgert_capture& out) override {
    if (frames_ > 0 && produced_ >= frames_) return EDGERT_ERR_END_OF_STREAM;
    pace();
    const std::size_t stride = static_cast<std::size_t>(width_) * static_cast<std::size_t>(bpp_);
    const std::size_t bytes = stride * static_cast<std::size_t>(height_);
    auto* px = static_cast<std::uint8_t*>(std::malloc(bytes));
    if (px == nullptr) {
      host().error("cannot allocate a " + std::to_string(width_) + "x" + std::to_string(height_) + " frame (" +
                   std::to_string(bytes) + " bytes)");
      return EDGERT_ERR_NO_MEMORY;
    }
    std::memset(px, kBackground, bytes);
    for (const Box& o : boxes_) draw(px, stride, o);
    for (Box& o : boxes_) move(o);
    ++produced_;
    out.pixel_format = format_;
    out.data = px;
    out.width = width_;
    out.height = height_;
    out.stride = static_cast<std::int32_t>(stride);
    out.timestamp_ns = host().wall_ns();
    out.release = &std::free;
    out.release_data = px;
    return EDGERT_OK;
  }

 private:
  static constexpr std::uint8_t kBackground = 24;

  // Waits for the next frame's slot on the monotonic clock: at most one frame
  // interval. A caller that fell behind by more than one interval restarts the
  // schedule instead of receiving a burst of catch-up frames.
  void pace() {
    if (interval_ns_ <= 0) return;
    const std::int64_t now = host().monotonic_ns();
    if (next_due_ns_ == 0 || now - next_due_ns_ > interval_ns_) next_due_ns_ = now;
    if (next_due_ns_ > now) std::this_thread::sleep_for(std::chrono::nanoseconds(next_due_ns_ - now));
    next_due_ns_ += interval_ns_;
  }

  void draw(std::uint8_t* px, std::size_t stride, const Box& o) const {
    for (int y = o.y; y < o.y + o.h; ++y) {
      std::uint8_t* row = px + static_cast<std::size_t>(y) * stride;
      if (bpp_ == 1) {
        // ITU-R BT.601 luma of the box's colour.
        const auto luma = static_cast<std::uint8_t>((29 * o.b + 150 * o.g + 77 * o.r) >> 8);
        std::memset(row + o.x, luma, static_cast<std::size_t>(o.w));
      } else {
        for (int x = o.x; x < o.x + o.w; ++x) {
          std::uint8_t* p = row + static_cast<std::size_t>(x) * 3;
          p[0] = o.b;
          p[1] = o.g;
          p[2] = o.r;
        }
      }
    }
  }

  void move(Box& o) const {
    o.x += o.dx;
    o.y += o.dy;
    if (o.x < 0 || o.x + o.w > width_) {
      o.dx = -o.dx;
      o.x = std::clamp(o.x, 0, width_ - o.w);
    }
    if (o.y < 0 || o.y + o.h > height_) {
      o.dy = -o.dy;
      o.y = std::clamp(o.y, 0, height_ - o.h);
    }
  }

  int width_ = 0, height_ = 0, bpp_ = 3;
  std::int32_t format_ = EDGERT_PIXEL_BGR8;
  double fps_ = 0;
  std::int64_t interval_ns_ = 0, next_due_ns_ = 0;
  std::int64_t frames_ = 0, produced_ = 0;
  std::vector<Box> boxes_;
};

}  // namespace

EDGERT_PLUGIN_CLASS(SyntheticCamera, EDGERT_KIND_CAPTURE, "synthetic_camera", "1.0.0",
                    "deterministic frames with moving rectangles, any size and rate, no files needed",
                    R"schema({"width": {"type": "integer", "default": 640, "minimum": 16, "maximum": 8192,
                                  "description": "frame width in pixels"},
                        "height": {"type": "integer", "default": 480, "minimum": 16, "maximum": 8192,
                                   "description": "frame height in pixels"},
                        "fps": {"type": "number", "default": 0, "minimum": 0, "maximum": 1000,
                                "description": "frames per second on the monotonic clock; 0: as fast as called"},
                        "frames": {"type": "integer", "default": 0, "minimum": 0,
                                   "description": "frames before end of stream; 0: endless"},
                        "objects": {"type": "integer", "default": 3, "minimum": 0, "maximum": 256,
                                    "description": "moving rectangles per frame"},
                        "object_size": {"type": "integer", "default": 48, "minimum": 1, "maximum": 8192,
                                        "description": "rectangle side in pixels (clipped to the frame)"},
                        "seed": {"type": "integer", "default": 1, "minimum": 0,
                                 "description": "positions, velocities and colours; same seed, same frames"},
                        "pixel_format": {"type": "string", "default": "bgr8", "enum": ["bgr8", "gray8"],
                                         "description": "bgr8 (3 bytes per pixel) or gray8 (1 byte)"}})schema");
