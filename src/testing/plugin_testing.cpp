// The plugin testing kit (include/edgert/plugin_testing.hpp). Built on the public host
// API only (PluginLoader / PluginInstance), so it follows whatever the loader does.
#include <edgert/plugin_testing.hpp>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace edgert::plugin_testing {

// What instances emitted and notified, plus the last error: the sink of every
// instance of one harness. Plugins may call the sink from their own threads.
struct Collector : PluginSink {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<Emitted> emitted;
  std::vector<Notification> notifications;
  std::string last_error;

  void on_emit(const std::string& instance, std::string_view type, std::string_view json) override {
    {
      std::lock_guard lk(mu);
      emitted.push_back({instance, std::string(type), std::string(json)});
    }
    cv.notify_all();
  }
  void on_notify(const std::string& instance, int level, std::string_view message) override {
    std::lock_guard lk(mu);
    notifications.push_back({instance, level, std::string(message)});
  }
  Status note(Status st) {
    if (!st.ok()) {
      std::lock_guard lk(mu);
      last_error = st.message();
    }
    return st;
  }
};

Instance::Instance(std::unique_ptr<PluginInstance> inst, std::shared_ptr<Collector> collector)
    : inst_(std::move(inst)), collector_(std::move(collector)) {}
Instance::Instance(Instance&&) noexcept = default;
Instance& Instance::operator=(Instance&&) noexcept = default;
Instance::~Instance() = default;  // PluginInstance's destructor stops and destroys

Status Instance::note(Status st) { return collector_->note(std::move(st)); }

Status Instance::process_record(std::string_view json, std::string stream) {
  PluginInput in;
  in.stream = std::move(stream);
  in.record_json.assign(json);
  return note(inst_->process(in));
}

Status Instance::process_frame(Frame frame, std::string stream) {
  PluginInput in;
  in.stream = std::move(stream);
  in.frame = std::move(frame);
  return note(inst_->process(in));
}

Status Instance::process(const PluginInput& input) { return note(inst_->process(input)); }

Result<Captured> Instance::capture() {
  auto c = inst_->capture();
  const auto code = c.status().code();
  if (!c.ok() && code != ErrorCode::again && code != ErrorCode::end_of_stream) (void)note(c.status());
  return c;
}

Status Instance::update_config(std::string_view config_json) { return note(inst_->update_config(config_json)); }
Status Instance::stop() { return note(inst_->stop()); }
const std::string& Instance::name() const noexcept { return inst_->name(); }

namespace {
PluginLoaderOptions isolated_options() {
  PluginLoaderOptions o;
  o.use_environment = false;
  o.use_default_paths = false;
  return o;
}
}  // namespace

PluginHarness::PluginHarness()
    : collector_(std::make_shared<Collector>()), loader_(std::make_unique<PluginLoader>(isolated_options())) {}
PluginHarness::~PluginHarness() = default;

Status PluginHarness::load(const std::string& path) {
  auto info = loader_->load(path);
  return collector_->note(info.ok() ? Status{} : info.status());
}

Result<Instance> PluginHarness::create(const std::string& signature, const std::string& instance_name,
                                       std::string_view config_json) {
  auto inst = loader_->create_instance(signature, instance_name, config_json, collector_);
  if (!inst.ok()) return collector_->note(inst.status());
  auto owned = std::move(inst).value();
  if (auto st = owned->start(); !st.ok()) return collector_->note(std::move(st));
  return Instance(std::move(owned), collector_);
}

std::vector<Emitted> PluginHarness::emitted() const {
  std::lock_guard lk(collector_->mu);
  return collector_->emitted;
}

std::vector<Notification> PluginHarness::notifications() const {
  std::lock_guard lk(collector_->mu);
  return collector_->notifications;
}

bool PluginHarness::wait_for_emitted(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(collector_->mu);
  return collector_->cv.wait_for(lk, timeout, [&] { return collector_->emitted.size() >= count; });
}

void PluginHarness::clear() {
  std::lock_guard lk(collector_->mu);
  collector_->emitted.clear();
  collector_->notifications.clear();
  collector_->last_error.clear();
}

std::string PluginHarness::last_error() const {
  std::lock_guard lk(collector_->mu);
  return collector_->last_error;
}

Frame make_frame(int width, int height, PixelFormat format, const std::vector<std::uint8_t>& pixels) {
  const int bpp = bytes_per_pixel(format);
  if (bpp == 0) throw std::invalid_argument("make_frame: unknown pixel format");
  if (width <= 0 || height <= 0) throw std::invalid_argument("make_frame: width and height must be > 0");
  const auto want = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * static_cast<std::size_t>(bpp);
  if (pixels.size() != want) {
    throw std::invalid_argument("make_frame: " + std::to_string(pixels.size()) + " bytes given, " +
                                std::to_string(width) + "x" + std::to_string(height) + " needs " +
                                std::to_string(want));
  }
  FrameInfo info;
  info.format = format;
  info.width = width;
  info.height = height;
  info.stride = width * bpp;
  info.sequence = 1;
  info.stream = "test";
  return Frame::copy_of(std::move(info), pixels.data());
}

}  // namespace edgert::plugin_testing
