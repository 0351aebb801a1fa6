// video: a capture plugin over OpenCV's cv::VideoCapture for files, device indexes and
// network URLs (docs/plugins.md, "Bundled plugins"). Emits BGR8 frames.
//
// Contracts (edgert/plugin_abi.h, capture kind):
//  - start() opens the source; a missing/unreadable/undecodable file or an unreachable
//    URL is an ERROR log naming the url and the cause, then an error status. Network
//    URLs are opened with the FFmpeg backend and CAP_PROP_OPEN_TIMEOUT_MSEC /
//    CAP_PROP_READ_TIMEOUT_MSEC, so no open or read blocks past those bounds.
//  - capture() never retries a failed source: it logs and returns an error and the host
//    reconnects (stop/start or re-create). A file's end is EDGERT_ERR_END_OF_STREAM
//    unless `loop` is set.
//  - Every frame is its own cv::Mat kept alive in a heap object the release callback
//    deletes (any thread, any order), so frames still out are never overwritten. The
//    released buffers go back to a small pool (FramePool: at most kPoolIdle idle) and the
//    next frames are decoded into them: a fresh 2.7 MB (720p) buffer per frame cost
//    ~675 page faults and the kernel zeroing them, ~0.2 ms a frame that a bare
//    cv::VideoCapture::read() loop into one cv::Mat does not pay (docs/performance.md,
//    file_vs_bare_decode). A buffer is only reused once the host released its frame.
//  - `target_fps` decimates by video time: every frame is grab()bed (decoded) but only
//    the frames due are retrieve()d, i.e. converted to BGR.
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using nlohmann::json;

// The url as it may appear in a log line: user-info passwords masked
// ("rtsp://user:***@host/..."), control and non-ASCII bytes as \xNN.
std::string display_url(const std::string& url) {
  std::string shown = url;
  const auto scheme = shown.find("://");
  if (scheme != std::string::npos) {
    const auto host_start = scheme + 3;
    const auto path = shown.find('/', host_start);
    const auto at = shown.rfind('@', path == std::string::npos ? std::string::npos : path);
    if (at != std::string::npos && at > host_start) {
      const auto colon = shown.find(':', host_start);
      if (colon != std::string::npos && colon < at) shown.replace(colon + 1, at - colon - 1, "***");
    }
  }
  std::string out;
  for (const unsigned char ch : shown) {
    if (ch < 0x20 || ch >= 0x7f || ch == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", ch);
      out += hex;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

bool is_device_index(const std::string& url) {
  if (url.empty() || url.size() > 3) return false;
  for (const char ch : url)
    if (ch < '0' || ch > '9') return false;
  return true;
}

// Buffers of released frames, reused for the next frames. Shared by the plugin and every
// frame still out, so a frame released after the plugin was destroyed is still safe
// (its buffer is then simply freed with the pool). give(): any thread; take(): the
// capture thread.
class FramePool {
 public:
  // Idle buffers kept: enough for the frames in flight between a capture and the
  // consumers' release when they keep up; a burst of releases beyond it is freed.
  static constexpr std::size_t kPoolIdle = 4;

  // An idle buffer (its cv::Mat is the only reference to it), or an empty Mat.
  cv::Mat take() {
    std::lock_guard lk(mu_);
    if (idle_.empty()) return {};
    cv::Mat m = std::move(idle_.back());
    idle_.pop_back();
    return m;
  }
  void give(cv::Mat&& m) {
    if (m.empty() || m.u == nullptr || !m.isContinuous()) return;  // not a buffer worth keeping
    std::lock_guard lk(mu_);
    if (closed_ || idle_.size() >= kPoolIdle) return;  // freed when `m` goes out of scope here
    idle_.push_back(std::move(m));
  }
  // stop(): frees the idle buffers; frames released later are freed, not kept.
  void close() {
    std::vector<cv::Mat> drop;
    std::lock_guard lk(mu_);
    closed_ = true;
    drop.swap(idle_);
  }
  void open() {
    std::lock_guard lk(mu_);
    closed_ = false;
  }

 private:
  std::mutex mu_;
  std::vector<cv::Mat> idle_;
  bool closed_ = false;
};

// One captured frame, owned until the host releases it.
struct OutFrame {
  cv::Mat mat;
  std::shared_ptr<FramePool> pool;
};
void release_frame(void* p) {
  std::unique_ptr<OutFrame> f(static_cast<OutFrame*>(p));
  f->pool->give(std::move(f->mat));
}

class Video : public edgert::sdk::Plugin {
 public:
  Video(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    url_ = c.at("url").get<std::string>();
    loop_ = c.at("loop").get<bool>();
    realtime_ = c.at("realtime").get<bool>();
    target_fps_ = c.at("target_fps").get<double>();
    open_timeout_ms_ = c.at("open_timeout_ms").get<int>();
    read_timeout_ms_ = c.at("read_timeout_ms").get<int>();
    shown_ = display_url(url_);
    network_ = url_.find("://") != std::string::npos;
    device_ = is_device_index(url_);
  }

  // The SDK logs the exception at ERROR ("start: video '<url>': <cause>") and returns
  // EDGERT_ERR_INTERNAL: one line, naming the url.
  void start() override {
    pool_->open();
    const std::string err = open();
    if (!err.empty()) throw std::runtime_error(err);
  }

  void stop() override {
    cap_.release();
    pool_->close();
  }

  edgert_status capture(edgert_capture& out) override {
    if (!cap_.isOpened()) {
      host().error("video '" + shown_ + "': not open (start() failed or the source was closed)");
      return EDGERT_ERR_INTERNAL;
    }
    try {
      return next(out);
    } catch (const cv::Exception& e) {
      host().error("video '" + shown_ + "': OpenCV failed while reading: " + e.what());
      return EDGERT_ERR_INTERNAL;
    }
  }

 private:
  std::string fail(const std::string& why) const { return "video '" + shown_ + "': " + why; }

  // Opens the source; "" on success, else the reason naming the url (not yet logged).
  std::string open() {
    cap_.release();
    if (url_.empty()) return fail("url is empty: set `url` to a file path, a device index or a network URL");
    if (!device_ && !network_) {
      struct stat st {};
      if (::stat(url_.c_str(), &st) != 0) return fail("cannot open the file: " + std::generic_category().message(errno));
      if (S_ISDIR(st.st_mode)) return fail("is a directory, not a video file");
      if (::access(url_.c_str(), R_OK) != 0) return fail("cannot read the file: " + std::generic_category().message(errno));
      if (st.st_size == 0) return fail("the file is empty");
    }
    try {
      if (device_) {
        cap_.open(std::stoi(url_), cv::CAP_V4L2);  // /dev/videoN; CAP_ANY would probe GStreamer, libdc1394, ...
      } else {
        const std::vector<int> params = {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms_,
                                         cv::CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms_};
        cap_.open(url_, cv::CAP_FFMPEG, params);
        if (!cap_.isOpened() && !network_) cap_.open(url_, cv::CAP_OPENCV_MJPEG);  // OpenCV's own AVI/MJPEG reader
      }
    } catch (const cv::Exception& e) {
      cap_.release();
      return fail(std::string("OpenCV failed while opening: ") + e.what());
    }
    if (!cap_.isOpened()) {
      if (device_) return fail("no camera at this device index (or it is busy)");
      if (network_) {
        return fail("cannot open the stream: unreachable, refused, not a video, or no answer within open_timeout_ms=" +
                    std::to_string(open_timeout_ms_));
      }
      return fail("not a video OpenCV can decode (unknown container or codec, or a corrupt file)");
    }
    source_fps_ = cap_.get(cv::CAP_PROP_FPS);
    if (!(source_fps_ > 0 && source_fps_ <= 1000)) source_fps_ = 0;  // unknown: use CAP_PROP_POS_MSEC
    announced_ = static_cast<std::int64_t>(cap_.get(cv::CAP_PROP_FRAME_COUNT));
    index_ = 0;
    read_in_pass_ = 0;
    next_due_s_ = 0;
    anchored_ = false;
    ended_ = false;
    return "";
  }

  // Video time of the frame grab() just decoded, in seconds since the start of the pass.
  double video_time() const {
    if (source_fps_ > 0) return static_cast<double>(index_ - 1) / source_fps_;
    return cap_.get(cv::CAP_PROP_POS_MSEC) / 1000.0;
  }

  edgert_status next(edgert_capture& out) {
    if (ended_) return EDGERT_ERR_END_OF_STREAM;  // stays ended until start() reopens it
    const std::int64_t started = host().monotonic_ns();
    // Skipping frames (target_fps) is bounded by one output interval, and never more
    // than read_timeout_ms: then EDGERT_ERR_AGAIN and the host calls again.
    std::int64_t budget_ms = read_timeout_ms_;
    if (target_fps_ > 0) budget_ms = std::min<std::int64_t>(budget_ms, std::max<std::int64_t>(100, std::llround(1000 / target_fps_)));
    for (;;) {
      if (!cap_.grab()) {
        const edgert_status st = at_end();
        if (st != EDGERT_OK) return st;
        continue;  // looped: the file was reopened
      }
      ++index_;
      ++read_in_pass_;
      const double t = video_time();
      if (due(t)) return deliver(out, t);
      if ((host().monotonic_ns() - started) / 1000000 >= budget_ms) return EDGERT_ERR_AGAIN;
    }
  }

  bool due(double t) {
    if (target_fps_ <= 0) return true;
    const double step = 1.0 / target_fps_;
    const double eps = source_fps_ > 0 ? 0.25 / source_fps_ : 1e-4;
    if (t + eps < next_due_s_) return false;
    next_due_s_ += step;
    if (next_due_s_ <= t) next_due_s_ = t + step;  // a gap in the video: no catch-up run
    return true;
  }

  edgert_status at_end() {
    if (network_ || device_) {
      host().error("video '" + shown_ + "': read failed after " + std::to_string(index_) +
                   " frames: the source closed, sent corrupt data, or nothing arrived within read_timeout_ms=" +
                   std::to_string(read_timeout_ms_));
      return EDGERT_ERR_INTERNAL;
    }
    if (read_in_pass_ == 0) {
      host().error("video '" + shown_ + "': no frame could be decoded (a corrupt or truncated file)");
      return EDGERT_ERR_INTERNAL;
    }
    if (announced_ > 0 && read_in_pass_ < announced_ && !warned_short_) {
      warned_short_ = true;  // once per instance, not once per loop pass
      host().warn("video '" + shown_ + "': ended after " + std::to_string(read_in_pass_) + " of the " +
                  std::to_string(announced_) + " frames the container announces (a truncated file?)");
    }
    if (!loop_) {
      ended_ = true;
      return EDGERT_ERR_END_OF_STREAM;
    }
    host().debug("video '" + shown_ + "': looping after " + std::to_string(read_in_pass_) + " frames");
    const std::string err = open();
    if (err.empty()) return EDGERT_OK;
    host().error(err);
    return EDGERT_ERR_INTERNAL;
  }

  edgert_status deliver(edgert_capture& out, double t) {
    // Decoded into a pooled buffer (a frame the host released) when there is one: the
    // backend copies into a cv::Mat of the right size and type in place.
    auto frame = std::make_unique<OutFrame>(OutFrame{pool_->take(), pool_});
    cv::Mat& m = frame->mat;
    if (!cap_.retrieve(m) || m.empty()) {
      host().error("video '" + shown_ + "': frame " + std::to_string(index_) + " could not be decoded");
      return EDGERT_ERR_INTERNAL;
    }
    // A backend that handed out a buffer it keeps (not solely ours): copy, or the next
    // frame would overwrite a frame still out.
    if (m.u == nullptr || m.u->refcount != 1) m = m.clone();
    if (m.type() == CV_8UC3) {
      // as decoded
    } else if (m.type() == CV_8UC1 || m.type() == CV_8UC4) {
      cv::Mat bgr = pool_->take();
      cv::cvtColor(m, bgr, m.type() == CV_8UC1 ? cv::COLOR_GRAY2BGR : cv::COLOR_BGRA2BGR);
      m = std::move(bgr);
    } else {
      host().error("video '" + shown_ + "': frame " + std::to_string(index_) + " has OpenCV type " +
                   std::to_string(m.type()) + ", not 8-bit gray, BGR or BGRA");
      return EDGERT_ERR_INTERNAL;
    }
    if (realtime_ && !network_ && !device_) pace(t);
    out.pixel_format = EDGERT_PIXEL_BGR8;
    out.data = m.data;
    out.width = m.cols;
    out.height = m.rows;
    out.stride = static_cast<std::int32_t>(m.step[0]);
    out.timestamp_ns = host().wall_ns();
    out.release = &release_frame;
    out.release_data = frame.release();
    return EDGERT_OK;
  }

  // realtime: hands the frame out when its video time comes, measured from the first
  // frame of the pass on the monotonic clock. A consumer more than a second behind
  // re-anchors instead of getting a burst; one sleep never exceeds read_timeout_ms.
  void pace(double t) {
    const std::int64_t now = host().monotonic_ns();
    if (!anchored_ || t < anchor_video_s_) {
      anchored_ = true;
      anchor_video_s_ = t;
      anchor_ns_ = now;
      return;
    }
    const std::int64_t due = anchor_ns_ + static_cast<std::int64_t>((t - anchor_video_s_) * 1e9);
    if (now - due > 1000000000) {
      anchor_video_s_ = t;
      anchor_ns_ = now;
      return;
    }
    const std::int64_t wait = std::min<std::int64_t>(due - now, static_cast<std::int64_t>(read_timeout_ms_) * 1000000);
    if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
  }

  std::string url_, shown_;
  bool loop_ = false, realtime_ = false, network_ = false, device_ = false;
  double target_fps_ = 0;
  int open_timeout_ms_ = 5000, read_timeout_ms_ = 5000;
  cv::VideoCapture cap_;
  std::shared_ptr<FramePool> pool_ = std::make_shared<FramePool>();
  double source_fps_ = 0;
  std::int64_t announced_ = 0, index_ = 0, read_in_pass_ = 0;
  double next_due_s_ = 0;
  bool anchored_ = false, ended_ = false, warned_short_ = false;
  double anchor_video_s_ = 0;
  std::int64_t anchor_ns_ = 0;
};

}  // namespace

EDGERT_PLUGIN_CLASS(Video, EDGERT_KIND_CAPTURE, "video", "1.0.0",
                    "BGR8 frames from a video file, a camera device index or an RTSP/HTTP URL (OpenCV)",
                    R"schema({"url": {"type": "string", "default": "",
                                "description": "a file path, a device index (\"0\"), or rtsp:// http:// https:// URL"},
                        "loop": {"type": "boolean", "default": false,
                                 "description": "files: restart at the end instead of ending the stream"},
                        "realtime": {"type": "boolean", "default": false,
                                     "description": "files: pace at the file's own frame rate; false: as fast as called"},
                        "target_fps": {"type": "number", "default": 0, "minimum": 0, "maximum": 1000,
                                       "description": "keep this many frames per second of video; 0: every frame"},
                        "open_timeout_ms": {"type": "integer", "default": 5000, "minimum": 100, "maximum": 600000,
                                            "description": "network URLs: give up opening after this long"},
                        "read_timeout_ms": {"type": "integer", "default": 5000, "minimum": 100, "maximum": 600000,
                                            "description": "network URLs: give up a read after this long"}})schema");
