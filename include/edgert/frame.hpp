// Frame: a decoded image shared by reference between pipeline stages and plugins.
//
// Copying a Frame adds a reference; the pixels are never copied. Whoever created the
// pixels is told exactly once, through the release function given to wrap(), when
// the last reference is gone (on whichever thread drops it). Frames are immutable.
#pragma once

#include <edgert/export.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace edgert {

enum class PixelFormat : std::int32_t { gray8 = 1, bgr8 = 2, rgb8 = 3, bgra8 = 4 };

/// Bytes per pixel of `format`; 0 for an unknown value.
EDGERT_API int bytes_per_pixel(PixelFormat format) noexcept;

struct FrameInfo {
  PixelFormat format = PixelFormat::bgr8;
  std::int32_t width = 0;
  std::int32_t height = 0;
  std::int32_t stride = 0;        // bytes per row, >= width * bytes_per_pixel
  std::int64_t timestamp_ns = 0;  // capture time, ns since the Unix epoch
  std::uint64_t sequence = 0;     // per stream, from 1
  std::string stream;
};

namespace detail {
struct FrameAccess;
}

class EDGERT_API Frame {
 public:
  Frame() noexcept = default;  // empty: operator bool is false
  Frame(const Frame& other) noexcept;
  Frame(Frame&& other) noexcept;
  Frame& operator=(const Frame& other) noexcept;
  Frame& operator=(Frame&& other) noexcept;
  ~Frame();

  /// Any thread. Shares `data` (height * stride bytes, unchanged until release runs).
  /// `release` may be empty. Throws std::invalid_argument on impossible geometry.
  static Frame wrap(FrameInfo info, const std::uint8_t* data, std::function<void()> release);
  /// Any thread. Copies the pixels into a buffer the frame owns.
  static Frame copy_of(FrameInfo info, const std::uint8_t* data);

  explicit operator bool() const noexcept { return d_ != nullptr; }
  const std::uint8_t* data() const noexcept;
  const FrameInfo& info() const noexcept;  // precondition: not empty
  /// References held right now (this one included); 0 for an empty frame.
  std::uint32_t use_count() const noexcept;

  /// Frames created and not yet released, process-wide: a leak check for tests.
  static std::uint64_t live_frames() noexcept;
  /// Pixel bytes copied by copy_of() so far, process-wide: edgert itself never copies
  /// a frame on its way from capture to plugins (tests and pipeline_bench check this).
  static std::uint64_t copied_bytes() noexcept;

  struct Data;  // opaque; defined in src/core/frame_internal.hpp

 private:
  friend struct detail::FrameAccess;  // the plugin host hands frames across the C ABI
  explicit Frame(Data* d) noexcept : d_(d) {}
  Data* d_ = nullptr;
};

}  // namespace edgert
