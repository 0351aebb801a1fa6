// Loading plugins (.so files built against <edgert/plugin_abi.h>) and running their
// instances. See docs/plugin-guide.md.
//
// Before calling anything in a file the loader checks that it is an ELF shared object
// for this machine, that it exports edgert_plugin_entry, that the plugin answers a
// version inside the offered range, and that its descriptor is sane (sizes, kind,
// signature, callbacks). Each refusal is logged at ERROR naming the file and the
// reason, and loading goes on with the other files. A loaded library stays mapped for
// as long as any instance or frame that came from it is alive.
#pragma once

#include <edgert/export.hpp>
#include <edgert/frame.hpp>
#include <edgert/status.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

enum class PluginKind : std::int32_t { capture = 1, serving = 2, business = 3 };

/// "capture", "serving", "business".
EDGERT_API const char* to_string(PluginKind kind) noexcept;

struct PluginInfo {
  std::string signature;
  PluginKind kind = PluginKind::business;
  std::string plugin_version;
  std::string description;
  std::string config_schema;  // JSON object of keys and defaults, or ""
  std::uint32_t abi_version = 0;
  std::string path;           // the file it was loaded from
};

struct PluginRefusal {
  std::string path;
  std::string reason;
};

/// Receives what instances emit. Plugins may call these from any thread.
class PluginSink {
 public:
  virtual ~PluginSink() = default;
  virtual void on_emit(const std::string& instance, std::string_view payload_type, std::string_view json) = 0;
  virtual void on_notify(const std::string& /*instance*/, int /*level*/, std::string_view /*message*/) {}
};

/// One input for process(): a frame or a JSON record, plus serving outputs if any.
struct PluginInput {
  std::string stream;
  Frame frame;              // empty for record inputs
  std::string record_json;  // empty for frame inputs
  std::string inference_json;
};

/// What capture() produced: a frame or a JSON record.
struct Captured {
  Frame frame;
  std::string record_json;
};

/// A live instance of a plugin. Not thread-safe: drive it from one thread at a time.
class EDGERT_API PluginInstance {
 public:
  virtual ~PluginInstance();  // stop() if started, then the plugin's destroy()
  /// Calls the plugin's start (if any). Error: internal, with the plugin's message.
  virtual Status start() = 0;
  /// Business and serving only. Error: invalid_argument for the wrong kind, internal
  /// when the plugin fails (its logged reason is in the message).
  virtual Status process(const PluginInput& input) = 0;
  /// Capture only. `again` when nothing is ready, `end_of_stream` when exhausted.
  virtual Result<Captured> capture() = 0;
  /// Calls the plugin's stop (if any); idempotent.
  virtual Status stop() = 0;
  /// `unsupported` if the plugin cannot apply it in place (re-create it instead).
  virtual Status update_config(std::string_view config_json) = 0;

  virtual const PluginInfo& plugin() const noexcept = 0;
  virtual const std::string& name() const noexcept = 0;
  /// Calls that returned an error, plus host-service calls (emit, notify, config_get)
  /// the host refused (each logged), over the instance's life. Any thread.
  virtual std::uint64_t errors() const noexcept = 0;
};

struct PluginLoaderOptions {
  std::vector<std::string> search_paths;  // searched first, in order
  bool use_environment = true;            // then EDGERT_PLUGIN_PATH (':'-separated)
  bool use_default_paths = true;          // then build/plugins and <prefix>/lib/edgert/plugins
  /// Secured mode: only files whose signature is listed, with this SHA-256 (hex), load.
  bool secured = false;
  std::map<std::string, std::string> allow;
  /// scan_plugins_isolated only: the edgert-plugin-scan helper to run. Empty: the
  /// EDGERT_PLUGIN_SCANNER variable (if use_environment), else the helper installed
  /// with libedgert (<prefix>/libexec/edgert/, found relative to the library).
  std::string scanner_path;
  /// Largest payload a plugin may emit(), in bytes; larger ones are refused with
  /// EDGERT_ERR_INVALID_ARGUMENT and logged. The default is MailboxOptions'
  /// max_payload_bytes default (1 MiB), so what a plugin emits can be stored; a node
  /// passes its configured mailbox.max_payload_bytes.
  std::size_t max_payload_bytes = std::size_t{1} << 20;
};

class EDGERT_API PluginLoader {
 public:
  explicit PluginLoader(PluginLoaderOptions options = {});
  ~PluginLoader();
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  /// The directories searched, in order (existing or not).
  std::vector<std::string> search_paths() const;

  /// Loads every *.so in the search paths (a signature already loaded from an earlier
  /// path is refused). Returns the refusals; each was also logged at ERROR.
  /// Calling thread; blocks on file I/O and the plugins' entry functions.
  std::vector<PluginRefusal> load_all();

  /// Loads one file: every plugin of a pack (plugin_abi.h convention 9), after which
  /// the library's module_init runs once. Returns the first plugin's info (plugins()
  /// lists them all). Error `invalid_argument` with "<path>: <reason>" when refused; a
  /// refused pack loads none of its plugins. Calling thread; blocks on file I/O, the
  /// entry function and module_init.
  Result<PluginInfo> load(const std::string& path);

  /// Plugins loaded so far, in load order.
  std::vector<PluginInfo> plugins() const;

  /// Creates an instance of a loaded plugin. `config_json` (an object, may be "") is
  /// checked against the plugin's config keys (unknown keys are an error naming the
  /// plugin, the instance and the key), merged over the defaults and passed to create.
  /// `sink` receives what the instance emits and may be null.
  Result<std::unique_ptr<PluginInstance>> create_instance(const std::string& signature,
                                                          const std::string& instance_name,
                                                          std::string_view config_json,
                                                          std::shared_ptr<PluginSink> sink);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Result of scanning one file in a child process (see scan_plugins_isolated).
struct PluginScan {
  std::string path;
  bool accepted = false;
  PluginInfo info;     // when accepted
  std::string reason;  // when refused
};

/// Scans each file, or each *.so in each directory, in a fresh process (the
/// edgert-plugin-scan helper, started with posix_spawn), so a plugin that crashes or
/// hangs while loading is reported instead of taking the caller down (as GStreamer's
/// registry scanner does); no lock held by another thread of the caller is inherited.
/// A helper still running after `timeout_ms` is killed (SIGKILL) and refused as hung;
/// every helper is reaped before this returns. Duplicate signatures are refused
/// naming both files. Errors (no helper found, timeout_ms <= 0, spawn failure) are
/// refusals naming the cause. One entry per plugin: a pack gives one per descriptor,
/// all with the same path; a refused file gives one. Any thread; blocks up to
/// `timeout_ms` per file.
EDGERT_API std::vector<PluginScan> scan_plugins_isolated(const std::vector<std::string>& files_or_dirs,
                                                         const PluginLoaderOptions& options,
                                                         int timeout_ms = 5000);

}  // namespace edgert
