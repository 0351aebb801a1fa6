// The plugin testing kit: drive a plugin .so from a plugin author's own unit tests
// (Catch2, GoogleTest, ...) without a running node. Link edgert::plugin_testing.
// See docs/plugins.md, "Testing a plugin".
//
//   edgert::plugin_testing::PluginHarness h;
//   REQUIRE(h.load("build/threshold.so").ok());
//   auto inst = h.create("threshold", "t1", R"({"limit": 5})");
//   REQUIRE(inst.ok());
//   REQUIRE(inst->process_record(R"({"value": 7})").ok());
//   REQUIRE(h.emitted().size() == 1);
//
// The harness owns its own PluginLoader with no search paths: only the files given to
// load() are loaded, whatever EDGERT_PLUGIN_PATH or the install say. Everything an
// instance emits or notifies is collected under a mutex, so plugins may emit from their
// own threads; wait_for_emitted() waits for those.
#pragma once

#include <edgert/frame.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edgert::plugin_testing {

/// One payload an instance emitted.
struct Emitted {
  std::string instance;
  std::string payload_type;
  std::string json;
};

/// One notification an instance sent (level is an EDGERT_LOG_* value).
struct Notification {
  std::string instance;
  int level = 0;
  std::string message;
};

struct Collector;  // shared by a harness and its instances (defined in the .cpp)

/// A started plugin instance created by PluginHarness::create. Drive it from one thread
/// at a time (as PluginInstance). Destroying it stops the plugin and calls its destroy().
class Instance {
 public:
  /// Made by PluginHarness::create (Collector is the kit's own). Calling thread; never fails.
  Instance(std::unique_ptr<PluginInstance> inst, std::shared_ptr<Collector> collector);
  Instance(Instance&&) noexcept;
  Instance& operator=(Instance&&) noexcept;
  ~Instance();

  /// Feeds one JSON record to process() on stream `stream`. Calling thread; blocks for
  /// the plugin's call. Error: the plugin's failure (its logged reason in the message),
  /// also kept as the harness's last_error().
  [[nodiscard]] Status process_record(std::string_view json, std::string stream = "test");
  /// Feeds one frame to process() on stream `stream`. As process_record.
  [[nodiscard]] Status process_frame(Frame frame, std::string stream = "test");
  /// Feeds a complete input (stream, frame or record, inference outputs). As process_record.
  [[nodiscard]] Status process(const PluginInput& input);
  /// Capture plugins: one capture() call. `again` / `end_of_stream` as PluginInstance.
  /// Calling thread; blocks for the plugin's call. Other errors are kept as last_error().
  [[nodiscard]] Result<Captured> capture();
  /// Applies a new configuration in place. Error as PluginInstance::update_config.
  [[nodiscard]] Status update_config(std::string_view config_json);
  /// Calls the plugin's stop() (idempotent). Error: the plugin's failure.
  [[nodiscard]] Status stop();

  /// The instance name given to create(). Any thread.
  const std::string& name() const noexcept;
  /// The underlying host object (errors(), plugin() info). Calling thread.
  PluginInstance& raw() noexcept { return *inst_; }

 private:
  Status note(Status st);
  std::unique_ptr<PluginInstance> inst_;
  std::shared_ptr<Collector> collector_;
};

class PluginHarness {
 public:
  /// A loader with no search paths, no EDGERT_PLUGIN_PATH and no default folders.
  PluginHarness();
  ~PluginHarness();
  PluginHarness(const PluginHarness&) = delete;
  PluginHarness& operator=(const PluginHarness&) = delete;

  /// Loads one .so. Calling thread; blocks on file I/O and the plugin's entry function.
  /// Error: invalid_argument "<path>: <reason>" (not a plugin, wrong ABI, ...).
  [[nodiscard]] Status load(const std::string& path);
  /// Creates and starts an instance of a loaded plugin with `config_json` (an object or
  /// ""), merged over the plugin's defaults. Calling thread; blocks for create/start.
  /// Error: the loader's message naming the plugin, instance and reason.
  [[nodiscard]] Result<Instance> create(const std::string& signature, const std::string& instance_name,
                                        std::string_view config_json = "");

  /// Copies of what every instance emitted / notified so far, in arrival order. Any thread.
  std::vector<Emitted> emitted() const;
  std::vector<Notification> notifications() const;
  /// Waits until at least `count` payloads were emitted. Any thread; blocks up to
  /// `timeout`. Returns whether the count was reached.
  bool wait_for_emitted(std::size_t count, std::chrono::milliseconds timeout) const;
  /// Forgets what was collected (and last_error). Any thread.
  void clear();
  /// The message of the last failed load/create/process/capture/update_config/stop of
  /// this harness or its instances; "" if none. Any thread.
  std::string last_error() const;

  /// The harness's loader, for anything the kit does not wrap. Calling thread.
  PluginLoader& loader() noexcept { return *loader_; }

 private:
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<PluginLoader> loader_;
};

/// A frame that owns a copy of `pixels` (height rows of width * bytes_per_pixel bytes,
/// tightly packed), stream "test", sequence 1. Any thread. Throws std::invalid_argument
/// when the size does not match the geometry or the format is unknown.
Frame make_frame(int width, int height, PixelFormat format, const std::vector<std::uint8_t>& pixels);

}  // namespace edgert::plugin_testing
