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
  std::string config_schema;  // the typed schema's JSON text (see describe_config_schema), or ""
  std::uint32_t abi_version = 0;
  std::string path;           // the file it was loaded from
};

/// One key of a plugin's typed config_schema (docs/plugins.md, "Configuration schema").
struct PluginConfigKey {
  std::string key;           // dot path for nested keys, e.g. "roi.x"
  std::string type;          // boolean, integer, number, string, array or object
  std::string default_json;  // the default as JSON text; "" when the key has none
  std::string range;         // "[0, 100]", ">= 0", "<= 9", "one of \"a\", \"b\"", or ""
  std::string description;
};

/// The keys of a config_schema text (PluginInfo::config_schema), sorted by name, each
/// object's nested keys right after it; "" gives no keys. Any thread; does not block.
/// Error: invalid_argument naming the schema key at fault, as the loader refuses it.
EDGERT_API Result<std::vector<PluginConfigKey>> describe_config_schema(std::string_view config_schema);

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
  /// Merges `config_json` (a JSON object) over the instance's current configuration,
  /// validates the result as create_instance does, passes it whole to the plugin's
  /// update_config and, once the plugin accepted it, publishes it atomically to
  /// config_get (other threads see the old or the new configuration, never a mix).
  /// Owning thread; blocks for the plugin's callback. Errors leave the configuration
  /// unchanged: invalid_argument listing every bad key, `unsupported` if the plugin
  /// cannot apply it in place (re-create it instead), internal if the plugin failed.
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
  /// Then the folders found at run time relative to libedgert (no path is compiled
  /// in): the build tree's build/plugins, only when this libedgert is the build tree's
  /// own, then <dir of libedgert.so>/edgert/plugins (statically linked: <dir of the
  /// executable>/../<libdir>/edgert/plugins). See docs/plugins.md, "Where plugins are found".
  bool use_default_paths = true;
  /// Secured mode: only files whose signature is listed, with this SHA-256 (hex), load.
  bool secured = false;
  std::map<std::string, std::string> allow;
  /// scan_plugins_isolated only: the edgert-plugin-scan helper to run. Empty: the
  /// EDGERT_PLUGIN_SCANNER variable (if use_environment), else the helper installed
  /// with libedgert (<prefix>/libexec/edgert/, found relative to the library).
  std::string scanner_path;
  /// scan_plugins_isolated only: a file keeping what each accepted file's scan found,
  /// keyed by its path, size, mtime, inode and SHA-256, so an unchanged file is not
  /// loaded in a helper again (the SHA-256 is computed on every scan: a changed file is
  /// always scanned). Empty: no cache. A node uses <data_dir>/plugin-scan-cache.json.
  /// A missing, corrupt or foreign file is ignored (a WARNING for a corrupt one) and
  /// rewritten atomically. See docs/plugins.md, "The scan cache".
  std::string scan_cache_path;
  /// Largest payload a plugin may emit(), in bytes; larger ones are refused with
  /// EDGERT_ERR_INVALID_ARGUMENT and logged. The default is MailboxOptions'
  /// max_payload_bytes default (1 MiB), so what a plugin emits can be stored; a node
  /// passes its configured mailbox.max_payload_bytes.
  std::size_t max_payload_bytes = std::size_t{1} << 20;
  /// emit() refuses payloads nesting arrays/objects deeper than this: the
  /// MailboxOptions::max_json_depth default (64), so what a plugin emits can be stored;
  /// a node passes its configured mailbox.max_json_depth.
  std::size_t max_json_depth = 64;
};

class EDGERT_API PluginLoader {
 public:
  explicit PluginLoader(PluginLoaderOptions options = {});
  ~PluginLoader();
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  /// The directories searched, in order (existing or not). Any thread; does not block
  /// beyond locating libedgert (dladdr); never fails (an unlocatable library just
  /// contributes no default folder).
  std::vector<std::string> search_paths() const;

  /// Loads every *.so in the search paths, folder by folder, each folder's files in
  /// name order. A signature already loaded from an earlier folder is shadowed: not
  /// loaded, one WARNING naming both files, not a refusal; from the same folder it is
  /// a refusal. Returns the refusals; each was also logged at ERROR. Runs the
  /// plugins' code in this process: a plugin that crashes while loading takes the
  /// caller down (scan first with scan_plugins_isolated, as edgert::Node does).
  /// Calling thread; blocks on file I/O and the plugins' entry functions.
  [[nodiscard]] std::vector<PluginRefusal> load_all();

  /// Loads one file: every plugin of a pack (plugin_abi.h convention 9), after which
  /// the library's module_init runs once. Returns the first plugin's info (plugins()
  /// lists them all). Error `invalid_argument` with "<path>: <reason>" when refused (a
  /// signature already loaded included), also logged at ERROR; a refused pack loads none
  /// of its plugins. A file already loaded (however its path is spelled) is not loaded
  /// again: its first plugin's info is returned. Calling thread; blocks on file I/O, the
  /// entry function and module_init.
  [[nodiscard]] Result<PluginInfo> load(const std::string& path);

  /// Plugins loaded so far, in load order.
  std::vector<PluginInfo> plugins() const;

  /// Creates an instance of a loaded plugin. `config_json` (an object, may be "") is
  /// validated against the plugin's typed config_schema, deep-merged over its defaults
  /// and passed to create (docs/plugins.md, "Configuration schema"). Any thread;
  /// blocks for the plugin's create. Errors: not_found for an unknown signature;
  /// invalid_argument listing every unknown key, wrong type and out-of-range value
  /// (joined with "; ", each naming the plugin, instance and dot path); internal when
  /// create fails. `sink` receives what the instance emits and may be null.
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
  /// Not loaded because an earlier folder provides its signature (not a refusal):
  /// `accepted` is false, `info` is filled and `reason` says which file wins.
  bool shadowed = false;
  PluginInfo info;     // when accepted or shadowed
  std::string reason;  // when refused or shadowed
  /// Answered from PluginLoaderOptions::scan_cache_path, without a helper process.
  bool cached = false;
};

/// Scans each file, or each *.so in each directory, in a fresh process (the
/// edgert-plugin-scan helper, started with posix_spawn), so a plugin that crashes or
/// hangs while loading is reported instead of taking the caller down (as GStreamer's
/// registry scanner does); no lock held by another thread of the caller is inherited.
/// A helper still running after `timeout_ms` is killed (SIGKILL) and refused as hung;
/// every helper is reaped before this returns. A file reached twice is scanned once.
/// A signature found again in a later folder is `shadowed` (not a refusal), in the
/// same folder refused naming both files. Errors (no helper found, timeout_ms <= 0,
/// spawn failure) are refusals naming the cause. One entry per plugin: a pack gives one
/// per descriptor, all with the same path; a refused file gives one. Any thread; blocks
/// up to `timeout_ms` per file.
EDGERT_API std::vector<PluginScan> scan_plugins_isolated(const std::vector<std::string>& files_or_dirs,
                                                         const PluginLoaderOptions& options,
                                                         int timeout_ms = 5000);

}  // namespace edgert
