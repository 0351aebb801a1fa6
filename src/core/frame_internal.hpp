// Internal: the shared state behind edgert::Frame, and its C ABI view.
#pragma once

#include <edgert/frame.hpp>
#include <edgert/plugin_abi.h>

#include <atomic>
#include <functional>
#include <vector>

namespace edgert {

struct Frame::Data {
  std::atomic<std::uint32_t> refs{1};
  FrameInfo info;
  const std::uint8_t* pixels = nullptr;
  std::vector<std::uint8_t> owned;  // copy_of() keeps the pixels here
  std::function<void()> release;
  edgert_frame abi{};               // what plugins see; host_handle points back here
};

namespace detail {
void frame_retain(Frame::Data* d) noexcept;
void frame_release(Frame::Data* d) noexcept;

// What the plugin host needs of a Frame and nothing public should.
struct FrameAccess {
  static Frame::Data* data(const Frame& f) noexcept { return f.d_; }
};
}  // namespace detail

}  // namespace edgert
