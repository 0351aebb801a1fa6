#include "core/frame_internal.hpp"

#include "core/log.hpp"

#include <stdexcept>

namespace edgert {
namespace {
std::atomic<std::uint64_t> g_live{0};
std::atomic<std::uint64_t> g_copied_bytes{0};
}

int bytes_per_pixel(PixelFormat format) noexcept {
  switch (format) {
    case PixelFormat::gray8: return 1;
    case PixelFormat::bgr8:
    case PixelFormat::rgb8: return 3;
    case PixelFormat::bgra8: return 4;
  }
  return 0;
}

namespace detail {
void frame_retain(Frame::Data* d) noexcept { d->refs.fetch_add(1, std::memory_order_relaxed); }

void frame_release(Frame::Data* d) noexcept {
  if (d->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (d->release) {
    try {
      d->release();
    } catch (const std::exception& e) {
      detail::log().error("frame release callback threw: {}", e.what());
    }
  }
  delete d;
  g_live.fetch_sub(1, std::memory_order_relaxed);
}
}  // namespace detail

Frame::Frame(const Frame& other) noexcept : d_(other.d_) {
  if (d_) detail::frame_retain(d_);
}
Frame::Frame(Frame&& other) noexcept : d_(other.d_) { other.d_ = nullptr; }
Frame& Frame::operator=(const Frame& other) noexcept {
  if (this != &other) {
    if (other.d_) detail::frame_retain(other.d_);
    if (d_) detail::frame_release(d_);
    d_ = other.d_;
  }
  return *this;
}
Frame& Frame::operator=(Frame&& other) noexcept {
  if (this != &other) {
    if (d_) detail::frame_release(d_);
    d_ = other.d_;
    other.d_ = nullptr;
  }
  return *this;
}
Frame::~Frame() {
  if (d_) detail::frame_release(d_);
}

namespace {
void check_geometry(const FrameInfo& info, const std::uint8_t* data) {
  const int bpp = bytes_per_pixel(info.format);
  if (bpp == 0) throw std::invalid_argument("frame: unknown pixel format");
  if (info.width <= 0 || info.height <= 0) throw std::invalid_argument("frame: width and height must be > 0");
  if (static_cast<std::int64_t>(info.stride) < static_cast<std::int64_t>(info.width) * bpp)
    throw std::invalid_argument("frame: stride is smaller than a row");
  if (data == nullptr) throw std::invalid_argument("frame: no pixel data");
}
}  // namespace

Frame Frame::wrap(FrameInfo info, const std::uint8_t* data, std::function<void()> release) {
  check_geometry(info, data);
  auto* d = new Data;
  d->info = std::move(info);
  d->pixels = data;
  d->release = std::move(release);
  d->abi.struct_size = sizeof(edgert_frame);
  d->abi.pixel_format = static_cast<std::int32_t>(d->info.format);
  d->abi.data = d->pixels;
  d->abi.width = d->info.width;
  d->abi.height = d->info.height;
  d->abi.stride = d->info.stride;
  d->abi.timestamp_ns = d->info.timestamp_ns;
  d->abi.sequence = d->info.sequence;
  d->abi.stream = d->info.stream.c_str();
  d->abi.host_handle = d;
  g_live.fetch_add(1, std::memory_order_relaxed);
  return Frame(d);
}

Frame Frame::copy_of(FrameInfo info, const std::uint8_t* data) {
  g_copied_bytes.fetch_add(static_cast<std::uint64_t>(info.height > 0 ? info.height : 0) *
                               static_cast<std::uint64_t>(info.stride > 0 ? info.stride : 0),
                           std::memory_order_relaxed);
  check_geometry(info, data);
  std::vector<std::uint8_t> buf(data, data + static_cast<std::size_t>(info.stride) * static_cast<std::size_t>(info.height));
  const std::uint8_t* p = buf.data();
  Frame f = wrap(std::move(info), p, {});
  f.d_->owned = std::move(buf);  // the vector's heap buffer does not move
  return f;
}

const std::uint8_t* Frame::data() const noexcept { return d_ ? d_->pixels : nullptr; }
const FrameInfo& Frame::info() const noexcept { return d_->info; }
std::uint32_t Frame::use_count() const noexcept { return d_ ? d_->refs.load(std::memory_order_relaxed) : 0; }
std::uint64_t Frame::live_frames() noexcept { return g_live.load(std::memory_order_relaxed); }

std::uint64_t Frame::copied_bytes() noexcept { return g_copied_bytes.load(std::memory_order_relaxed); }

}  // namespace edgert
