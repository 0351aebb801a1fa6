#include <edgert/plugin_abi.h>
#include <edgert/plugin_host.hpp>

#include "plugins/environment.hpp"

#include "core/frame_internal.hpp"
#include "core/json_check.hpp"
#include "plugins/checked_sink.hpp"
#include "core/log.hpp"
#include "plugins/config_schema.hpp"
#include "core/printable.hpp"
#include "plugins/elf_check.hpp"
#include "plugins/search_paths.hpp"
#include "plugins/sha256.hpp"

#include <boost/dll/shared_library.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <mutex>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace edgert {
namespace {

constexpr std::uint32_t kHostMin = EDGERT_MAKE_VERSION(1, 0);
constexpr std::uint32_t kHostMax = EDGERT_ABI_VERSION;
// Fields up to and including destroy() are what every 1.0 plugin must provide.
constexpr std::size_t kMinDescriptorSize =
    offsetof(edgert_plugin_descriptor, destroy) + sizeof(edgert_plugin_descriptor::destroy);
// A descriptor without module_init was built against the pre-release 1.0 header, whose
// create() had no module_data argument (plugin_abi.h changelog).
constexpr std::size_t kModuleFieldsEnd =
    offsetof(edgert_plugin_descriptor, module_init) + sizeof(edgert_plugin_descriptor::module_init);
using PrereleaseCreate = edgert_status (*)(const edgert_host_api*, edgert_host_ctx*, const char*, std::size_t,
                                           void**);

std::string version_text(std::uint32_t v) {
  return std::to_string(EDGERT_VERSION_MAJOR_OF(v)) + "." + std::to_string(EDGERT_VERSION_MINOR_OF(v));
}

bool valid_signature(const char* s) {
  if (s == nullptr) return false;
  const std::size_t n = std::strlen(s);
  if (n == 0 || n > 64) return false;
  return std::all_of(s, s + n, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

}  // namespace

const char* to_string(PluginKind kind) noexcept {
  switch (kind) {
    case PluginKind::capture: return "capture";
    case PluginKind::serving: return "serving";
    case PluginKind::business: return "business";
  }
  return "unknown";
}

PluginInstance::~PluginInstance() = default;

}  // namespace edgert

// The C ABI's opaque per-instance handle.
struct edgert_host_ctx {
  std::string instance;
  std::string signature;
  std::shared_ptr<edgert::PluginSink> sink;
  edgert::detail::CheckedSink* checked_sink = nullptr;  // `sink` when it is one: emit hands it the checked shape
  // The instance configuration, immutable once published. Instance::update_config
  // swaps in a new one while config_get may be reading on a plugin thread: a reader
  // copies the pointer under config_mu (held only for that copy) and reads its own
  // reference, so it sees the old or the new configuration, never a mix. A mutex, not
  // std::atomic<std::shared_ptr>: gcc 12's lock-bit implementation of that is reported
  // as a data race by ThreadSanitizer.
  std::shared_ptr<const nlohmann::json> load_config() {
    std::lock_guard lk(config_mu);
    return config;
  }
  void publish_config(std::shared_ptr<const nlohmann::json> next) {
    std::lock_guard lk(config_mu);
    config.swap(next);  // the old one is released after the lock, in `next`
  }
  std::mutex config_mu;
  std::shared_ptr<const nlohmann::json> config;
  std::mutex error_mu;
  std::string last_error;  // the last message logged at ERROR, for Status messages
  bool module = false;     // the module's ctx (module_init): no instance, no sink
  std::atomic<std::uint64_t> refused{0};  // host-service calls refused (each a dropped emit/notify/read)
  std::size_t max_payload_bytes = std::size_t{1} << 20;  // emit's limit (PluginLoaderOptions)
  std::size_t max_json_depth = 64;                       // emit's nesting limit (PluginLoaderOptions)
};

namespace edgert {
namespace {

// One loaded .so: its module state lives here. Every plugin of the library holds a
// shared_ptr to it, so the code stays mapped until the last instance, frame and
// release callback is gone; then module_deinit runs, and only after it (members are
// destroyed after the destructor's body, `so` last) the library is unloaded.
struct Module {
  boost::dll::shared_library so;
  edgert_host_api api{};
  std::unique_ptr<edgert_host_ctx> ctx;  // "<first signature>/(module)"
  void (*deinit)(void*) = nullptr;       // set only once module_init succeeded
  void* data = nullptr;

  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module() {
    if (deinit) deinit(data);
  }
};

// One plugin (descriptor) of a loaded library.
struct Library {
  std::shared_ptr<Module> module;
  edgert_plugin_descriptor desc{};  // the host's zero-filled copy
  edgert_host_api api{};
  PluginInfo info;
  detail::ConfigSchema schema;     // parsed config_schema; `declared` false without one
  json defaults = json::object();  // the schema's defaults, the base of every instance config
  std::string canonical_path;      // the file, for load() of the same file again
  bool prerelease_create = false;  // create() without module_data
  std::size_t max_payload_bytes = std::size_t{1} << 20;
  std::size_t max_json_depth = 64;
};

}  // namespace
}  // namespace edgert

namespace edgert {
namespace {

// A pre-release plugin's config_schema held plain defaults ({"limit": 10}); each such
// key becomes {"type": <the default's type>, "default": <it>} so the plugin keeps
// loading unrebuilt. Typed keys and text that is not an object pass through unchanged
// (parse_config_schema then names what is wrong).
std::string prerelease_schema(const std::string& text) {
  json schema = json::parse(text, nullptr, false);
  if (schema.is_discarded() || !schema.is_object()) return text;
  for (auto& [key, value] : schema.items()) {
    if (value.is_object() && value.contains("type")) continue;
    const char* type = value.is_boolean() ? "boolean"
                       : value.is_number() ? "number"
                       : value.is_string() ? "string"
                       : value.is_array()  ? "array"
                       : value.is_object() ? "object"
                                           : nullptr;
    if (type == nullptr) continue;  // null: left for parse_config_schema to refuse, naming the key
    value = json{{"type", type}, {"default", value}};
  }
  return schema.dump();
}

// "EDGERT_ERR_BUFFER_TOO_SMALL"; "status 42" for a code the header does not name.
std::string status_text(edgert_status st) {
  const std::string name = edgert_status_name(st);
  return name == edgert_status_name(std::numeric_limits<edgert_status>::min()) ? "status " + std::to_string(st) : name;
}

std::string take_last_error(edgert_host_ctx* ctx) {
  std::lock_guard lk(ctx->error_mu);
  return std::exchange(ctx->last_error, std::string());
}

// ---- host services (called from plugin code, possibly on any thread) ----------

void host_log(edgert_host_ctx* ctx, std::int32_t level, const char* message) {
  try {
    const std::string who = ctx ? ctx->signature + "/" + ctx->instance : "plugin";
    const char* msg = message ? message : "(null)";
    switch (level) {
      case EDGERT_LOG_TRACE: detail::log().trace("[{}] {}", who, msg); break;
      case EDGERT_LOG_DEBUG: detail::log().debug("[{}] {}", who, msg); break;
      case EDGERT_LOG_INFO: detail::log().info("[{}] {}", who, msg); break;
      case EDGERT_LOG_WARN: detail::log().warn("[{}] {}", who, msg); break;
      default:
        detail::log().error("[{}] {}", who, msg);
        if (ctx) {
          std::lock_guard lk(ctx->error_mu);
          ctx->last_error = msg;
        }
        break;
    }
  } catch (...) {
  }
}

// A host service refusing a call: logged at ERROR naming the plugin, the instance and
// the call, kept as the instance's last error (its next Status carries it).
edgert_status refuse_call(edgert_host_ctx* ctx, const std::string& call, const std::string& why) {
  const std::string reason = call + ": " + why;
  ctx->refused.fetch_add(1, std::memory_order_relaxed);
  detail::log().error("[{}/{}] {}", ctx->signature, detail::printable(ctx->instance), reason);
  std::lock_guard lk(ctx->error_mu);
  ctx->last_error = reason;
  return EDGERT_ERR_INVALID_ARGUMENT;
}

edgert_status null_ctx(const char* service) {
  detail::log().error("plugin called {} with a NULL ctx", service);
  return EDGERT_ERR_INVALID_ARGUMENT;
}

// payload_type: 1-64 characters of [a-z0-9_.-], starting with a letter (plugin_abi.h).
bool valid_payload_type(std::string_view t) {
  if (t.empty() || t.size() > 64 || t[0] < 'a' || t[0] > 'z') return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

edgert_status host_emit(edgert_host_ctx* ctx, const char* payload_type, const char* data, std::size_t len) {
  try {
    if (!ctx) return null_ctx("emit");
    const std::string call =
        payload_type ? "emit('" + detail::printable(payload_type) + "')" : std::string("emit(NULL)");
    if (ctx->module) return refuse_call(ctx, call, "the module's ctx cannot emit; emit from an instance");
    if (!payload_type) return refuse_call(ctx, call, "payload_type is NULL");
    const std::string_view type(payload_type);
    if (type.empty()) return refuse_call(ctx, call, "payload_type is empty");
    if (!valid_payload_type(type)) {
      return refuse_call(ctx, call,
                         "payload_type must be 1-64 characters of [a-z0-9_.-] starting with a letter (got " +
                             std::to_string(type.size()) + " characters)");
    }
    if (!data && len) return refuse_call(ctx, call, "json is NULL with len " + std::to_string(len));
    if (len > ctx->max_payload_bytes) {
      return refuse_call(ctx, call,
                         "payload of " + std::to_string(len) + " bytes is over the limit of " +
                             std::to_string(ctx->max_payload_bytes) + " bytes (the mailbox's max_payload_bytes)");
    }
    const std::string_view text(data ? data : "", len);
    // The result path's one pass over the payload (core/json_check.hpp): exactly one JSON value within the
    // mailbox's nesting limit, and the shape the pipeline needs, so no later stage parses it again.
    detail::JsonShape shape;
    switch (const auto problem = detail::check_json(text, ctx->max_json_depth, &shape); problem.kind) {
      case detail::JsonProblem::none: break;
      case detail::JsonProblem::nul_byte:
        return refuse_call(ctx, call, "payload is not valid JSON (a NUL byte at offset " + std::to_string(problem.offset) + ")");
      case detail::JsonProblem::byte_order_mark:
        return refuse_call(ctx, call, "payload is not valid JSON (it starts with a UTF-8 byte order mark)");
      case detail::JsonProblem::too_deep:
        return refuse_call(ctx, call,
                           "payload nests arrays/objects deeper than the limit of " +
                               std::to_string(ctx->max_json_depth) + " (the mailbox's max_json_depth)");
      case detail::JsonProblem::empty:
      case detail::JsonProblem::invalid:
        return refuse_call(ctx, call, "payload is not valid JSON (" + std::to_string(len) + " bytes: " +
                                          detail::printable(text, 40) + ")");
    }
    if (ctx->checked_sink) {
      ctx->checked_sink->on_checked_emit(ctx->instance, type, text, shape);
    } else if (ctx->sink) {
      ctx->sink->on_emit(ctx->instance, type, text);
    }
    return EDGERT_OK;
  } catch (...) {
    return EDGERT_ERR_INTERNAL;
  }
}

edgert_status host_notify(edgert_host_ctx* ctx, std::int32_t level, const char* message) {
  try {
    if (!ctx) return null_ctx("notify");
    if (ctx->module) return refuse_call(ctx, "notify", "the module's ctx cannot notify; notify from an instance");
    if (!message) return refuse_call(ctx, "notify", "message is NULL");
    if (level < EDGERT_LOG_TRACE || level > EDGERT_LOG_ERROR) {
      return refuse_call(ctx, "notify", "unknown level " + std::to_string(level) + " (EDGERT_LOG_TRACE..EDGERT_LOG_ERROR)");
    }
    detail::log().warn("[{}/{}] notification: {}", ctx->signature, detail::printable(ctx->instance),
                       detail::printable(message, detail::kMaxLoggedText));
    if (ctx->sink) ctx->sink->on_notify(ctx->instance, level, message);
    return EDGERT_OK;
  } catch (...) {
    return EDGERT_ERR_INTERNAL;
  }
}

std::int64_t host_monotonic_ns(edgert_host_ctx*) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t host_wall_ns(edgert_host_ctx*) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

edgert_status host_config_get(edgert_host_ctx* ctx, const char* key, char* buf, std::size_t size,
                              std::size_t* needed) {
  try {
    if (!ctx) return null_ctx("config_get");
    if (!key) return refuse_call(ctx, "config_get", "key is NULL");
    const std::shared_ptr<const json> config = ctx->load_config();  // kept alive for this call
    if (!config) return EDGERT_ERR_NOT_FOUND;
    const json* node = config.get();
    std::string_view rest(key);
    while (!rest.empty()) {
      const auto dot = rest.find('.');
      const std::string part(rest.substr(0, dot));
      if (!node->is_object() || !node->contains(part)) return EDGERT_ERR_NOT_FOUND;
      node = &node->at(part);
      rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    }
    const std::string text = node->dump();
    if (needed) *needed = text.size() + 1;
    if (!buf || size < text.size() + 1) return EDGERT_ERR_BUFFER_TOO_SMALL;
    std::memcpy(buf, text.c_str(), text.size() + 1);
    return EDGERT_OK;
  } catch (...) {
    return EDGERT_ERR_INTERNAL;
  }
}

void host_frame_retain(edgert_host_ctx*, const edgert_frame* frame) {
  if (frame && frame->host_handle) detail::frame_retain(static_cast<Frame::Data*>(frame->host_handle));
}

void host_frame_release(edgert_host_ctx*, const edgert_frame* frame) {
  if (frame && frame->host_handle) detail::frame_release(static_cast<Frame::Data*>(frame->host_handle));
}

edgert_host_api make_host_api(std::uint32_t version) {
  edgert_host_api api{};
  api.struct_size = sizeof(edgert_host_api);
  api.abi_version = version;
  api.log = host_log;
  api.emit = host_emit;
  api.notify = host_notify;
  api.monotonic_ns = host_monotonic_ns;
  api.wall_ns = host_wall_ns;
  api.config_get = host_config_get;
  api.frame_retain = host_frame_retain;
  api.frame_release = host_frame_release;
  return api;
}

// ---- instances ----------------------------------------------------------------

// Validates a merged instance configuration; every problem in one invalid_argument
// Status, each prefixed with `who` and joined with "; ".
Status check_config(const detail::ConfigSchema& schema, json& config, const std::string& who) {
  std::vector<std::string> errors;
  detail::validate_config(schema, config, errors);
  if (errors.empty()) return {};
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + who + ": " + e;
  return {ErrorCode::invalid_argument, msg};
}

class Instance final : public PluginInstance {
 public:
  Instance(std::shared_ptr<Library> lib, std::unique_ptr<edgert_host_ctx> ctx)
      : lib_(std::move(lib)), ctx_(std::move(ctx)), name_(ctx_->instance), process_(lib_->desc.process) {}

  ~Instance() override {
    (void)stop();
    if (handle_) lib_->desc.destroy(handle_);
  }

  Status create(const std::string& config_text) {
    ctx_->max_payload_bytes = lib_->max_payload_bytes;
    ctx_->max_json_depth = lib_->max_json_depth;
    edgert_status st;
    if (lib_->prerelease_create) {
      // Through void(*)(): the documented way to convert between function pointer types.
      const auto old = reinterpret_cast<PrereleaseCreate>(reinterpret_cast<void (*)()>(lib_->desc.create));
      st = old(&lib_->api, ctx_.get(), config_text.data(), config_text.size(), &handle_);
    } else {
      st = lib_->desc.create(&lib_->api, ctx_.get(), lib_->module->data, config_text.data(), config_text.size(),
                             &handle_);
    }
    if (st != EDGERT_OK) {
      // The create-fails rule (plugin_abi.h convention 5): what it handed out is ours to destroy.
      if (handle_) lib_->desc.destroy(std::exchange(handle_, nullptr));
      return fail("create", st);
    }
    if (handle_ == nullptr) return fail("create", EDGERT_ERR_INTERNAL, "create returned OK but no instance");
    return {};
  }

  Status start() override {
    if (started_) return {};
    if (lib_->desc.start) {
      if (const auto st = lib_->desc.start(handle_); st != EDGERT_OK) return fail("start", st);
    }
    started_ = true;
    return {};
  }

  Status process(const PluginInput& in) override {
    if (process_ == nullptr) [[unlikely]] return no_callback("process");
    const bool has_frame = static_cast<bool>(in.frame);
    const bool has_inference = !in.inference_json.empty();
    edgert_input abi;  // every field set below: this runs once per input
    abi.struct_size = sizeof(edgert_input);
    abi.stream = in.stream.c_str();
    abi.frame = has_frame ? &detail::FrameAccess::data(in.frame)->abi : nullptr;
    abi.record_json = has_frame ? nullptr : in.record_json.c_str();
    abi.record_len = has_frame ? 0 : in.record_json.size();
    abi.inference_json = has_inference ? in.inference_json.c_str() : nullptr;
    abi.inference_len = in.inference_json.size();
    if (const auto st = process_(handle_, &abi); st != EDGERT_OK) [[unlikely]] return fail("process", st);
    return {};
  }

  Result<Captured> capture() override {
    if (!lib_->desc.capture) return no_callback("capture");
    edgert_capture out{};
    out.struct_size = sizeof(edgert_capture);
    const auto st = lib_->desc.capture(handle_, &out);
    if (st == EDGERT_ERR_AGAIN) return Status{ErrorCode::again, who() + ": nothing captured yet"};
    if (st == EDGERT_ERR_END_OF_STREAM) return Status{ErrorCode::end_of_stream, who() + ": end of stream"};
    if (st != EDGERT_OK) return fail("capture", st);

    // The release callback lives in the plugin's code: keep the library mapped until it ran.
    auto release = [lib = lib_, fn = out.release, data = out.release_data] {
      if (fn) fn(data);
    };
    Captured c;
    if (out.data) {
      FrameInfo info;
      info.format = static_cast<PixelFormat>(out.pixel_format);
      info.width = out.width;
      info.height = out.height;
      info.stride = out.stride;
      info.timestamp_ns = out.timestamp_ns ? out.timestamp_ns : host_wall_ns(nullptr);
      info.sequence = ++sequence_;
      info.stream = name_;
      try {
        c.frame = Frame::wrap(std::move(info), out.data, release);
      } catch (const std::exception& e) {
        release();
        return fail("capture", EDGERT_ERR_INVALID_ARGUMENT, e.what());
      }
    } else if (out.record_json) {
      c.record_json.assign(out.record_json, out.record_len);
      release();
      if (!json::accept(c.record_json)) return fail("capture", EDGERT_ERR_INVALID_ARGUMENT, "record is not valid JSON");
    } else {
      release();
      return fail("capture", EDGERT_ERR_INVALID_ARGUMENT, "returned OK with neither a frame nor a record");
    }
    return c;
  }

  Status stop() override {
    if (!started_) return {};
    started_ = false;
    if (lib_->desc.stop) {
      if (const auto st = lib_->desc.stop(handle_); st != EDGERT_OK) return fail("stop", st);
    }
    return {};
  }

  Status update_config(std::string_view config_json) override {
    if (!lib_->desc.update_config) return {ErrorCode::unsupported, who() + ": no update_config(); re-create it"};
    std::string error;
    auto patch = detail::parse_config_object(config_json, error);
    if (!patch) return {ErrorCode::invalid_argument, who() + ": " + error};
    // Over the current configuration, not the defaults: {"limit": 8} keeps every other key.
    const auto current = ctx_->load_config();
    auto merged = std::make_shared<json>(
        detail::merge_config(lib_->schema, current ? *current : json::object(), *patch));
    if (Status st = check_config(lib_->schema, *merged, who()); !st.ok()) return st;
    const std::string text = merged->dump();
    // Published before the call, so config_get (and plugin_config.h) inside the plugin's
    // update_config() reads the new values, as it does inside create(); put back if the
    // plugin does not take it. Another thread's config_get sees old or new, never a mix.
    ctx_->publish_config(std::move(merged));
    const auto st = lib_->desc.update_config(handle_, text.data(), text.size());
    if (st != EDGERT_OK) ctx_->publish_config(current);
    if (st == EDGERT_ERR_UNSUPPORTED) return {ErrorCode::unsupported, who() + ": cannot apply this change in place"};
    if (st != EDGERT_OK) return fail("update_config", st);
    return {};
  }

  const PluginInfo& plugin() const noexcept override { return lib_->info; }
  const std::string& name() const noexcept override { return name_; }
  std::uint64_t errors() const noexcept override { return errors_.load() + ctx_->refused.load(); }

 private:
  std::string who() const { return "plugin '" + lib_->info.signature + "' instance '" + name_ + "'"; }

  // Cold paths live out of line so the per-call functions keep a small frame.
  [[gnu::noinline, gnu::cold]] Status no_callback(const char* call) const {
    return {ErrorCode::invalid_argument,
            who() + ": a " + to_string(lib_->info.kind) + " plugin has no " + call + "() callback"};
  }

  [[gnu::noinline, gnu::cold]] Status fail(const char* call, edgert_status st, std::string why = {}) {
    errors_.fetch_add(1);
    if (why.empty()) why = take_last_error(ctx_.get());
    std::string msg = who() + ": " + call + " failed (" + status_text(st) + ")";
    if (!why.empty()) msg += ": " + why;
    detail::log().error("{}", msg);
    return {ErrorCode::internal, msg};
  }

  std::shared_ptr<Library> lib_;
  std::unique_ptr<edgert_host_ctx> ctx_;
  std::string name_;
  decltype(edgert_plugin_descriptor::process) process_;  // cached: the per-call hot path
  void* handle_ = nullptr;
  bool started_ = false;
  std::uint64_t sequence_ = 0;
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace

// ---- the loader -------------------------------------------------------------------

struct PluginLoader::Impl {
  PluginLoaderOptions options;
  mutable std::mutex mu;
  std::vector<std::shared_ptr<Library>> libs;

  Status refuse(const std::string& path, const std::string& reason) {
    detail::log().error("plugin {} refused: {}", detail::printable(path, detail::kMaxLoggedText),
                        detail::printable(reason, detail::kMaxLoggedText));
    return {ErrorCode::invalid_argument, path + ": " + reason};
  }

  // A signature load() found already loaded. load() does not log these: load_all()
  // reports one from another folder as shadowed (a WARNING), the rest as refusals.
  struct Duplicate {
    std::string path;         // the file refused
    std::string signature;
    std::string loaded_from;  // the file that provides it
  };
  std::vector<Duplicate> duplicates;  // guarded by mu

  std::vector<Duplicate> take_duplicates(const std::string& path) {
    std::lock_guard lk(mu);
    std::vector<Duplicate> out;
    auto keep = std::stable_partition(duplicates.begin(), duplicates.end(),
                                      [&](const Duplicate& d) { return d.path != path; });
    std::move(keep, duplicates.end(), std::back_inserter(out));
    duplicates.erase(keep, duplicates.end());
    return out;
  }

  Result<PluginInfo> load(const std::string& path);
};

PluginLoader::PluginLoader(PluginLoaderOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

PluginLoader::~PluginLoader() = default;

std::vector<std::string> PluginLoader::search_paths() const {
  std::vector<std::string> out = impl_->options.search_paths;
  if (impl_->options.use_environment) {
    if (const char* env = std::getenv(detail::kPluginPathVariable)) {
      std::string_view rest(env);
      while (!rest.empty()) {
        const auto colon = rest.find(':');
        if (auto part = rest.substr(0, colon); !part.empty()) out.emplace_back(part);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
      }
    }
  }
  if (impl_->options.use_default_paths) {
    // Found at run time relative to libedgert (docs/plugins.md, "Where plugins are found").
    for (auto& dir : detail::default_plugin_dirs()) out.push_back(std::move(dir));
  }
  return out;
}

std::vector<PluginRefusal> PluginLoader::load_all() {
  std::vector<PluginRefusal> refused;
  std::vector<std::string> seen;
  for (const auto& dir : search_paths()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".so") files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      // The same file reached through two search paths is loaded once.
      const auto canonical = fs::weakly_canonical(f, ec).string();
      if (std::find(seen.begin(), seen.end(), canonical) != seen.end()) continue;
      seen.push_back(canonical);
      auto r = impl_->load(f);
      const auto duplicates = impl_->take_duplicates(f);
      // A signature already loaded from an earlier folder is shadowed: one WARNING, not
      // a refusal. From the same folder it is a refusal, logged and counted.
      for (const auto& d : duplicates) {
        if (detail::same_folder(f, d.loaded_from)) {
          const std::string why = "duplicate signature '" + d.signature + "': already loaded from " + d.loaded_from;
          detail::log().error("plugin {} refused: {}", detail::printable(f, detail::kMaxLoggedText),
                              detail::printable(why, detail::kMaxLoggedText));
          refused.push_back({f, f + ": " + why});
        } else {
          detail::log().warn("{}", detail::shadowed_text(d.signature, f, d.loaded_from));
        }
      }
      if (!r.ok() && duplicates.empty()) refused.push_back({f, r.status().message()});
    }
  }
  return refused;
}

Result<PluginInfo> PluginLoader::load(const std::string& path) {
  auto r = impl_->load(path);
  // Impl::load leaves duplicates to its callers (load_all may call them shadowed).
  for (const auto& d : impl_->take_duplicates(path)) {
    detail::log().error("plugin {} refused: duplicate signature '{}': already loaded from {}",
                        detail::printable(path, detail::kMaxLoggedText), d.signature,
                        detail::printable(d.loaded_from, detail::kMaxLoggedText));
  }
  return r;
}

Result<PluginInfo> PluginLoader::Impl::load(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return refuse(path, "no such file");
  // The same file again (another spelling of its path, or load() then load_all()): it is
  // loaded already, which is not a duplicate of itself.
  std::string canonical = fs::weakly_canonical(path, ec).string();
  if (ec || canonical.empty()) canonical = path;
  {
    std::lock_guard lk(mu);
    for (const auto& l : libs) {
      if (l->canonical_path == canonical) return l->info;  // libs keeps a file's plugins in order: its first
    }
  }
  if (fs::file_size(path, ec) == 0) return refuse(path, "empty file");
  if (auto why = detail::check_elf_shared_object(path); !why.empty()) return refuse(path, why);

  std::optional<std::string> digest;
  if (options.secured) {
    digest = detail::sha256_file_hex(path);
    if (!digest) return refuse(path, "cannot read the file to check its SHA-256");
    const bool listed = std::any_of(options.allow.begin(), options.allow.end(),
                                    [&](const auto& kv) { return kv.second == *digest; });
    if (!listed) return refuse(path, "secured mode: SHA-256 " + *digest + " is not in plugins.allow");
  }

  auto module = std::make_shared<Module>();
  try {
    module->so.load(boost::dll::fs::path(path),
                    boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return refuse(path, std::string("the dynamic loader refused it: ") + e.what());
  }
  if (!module->so.has(EDGERT_PLUGIN_ENTRY_SYMBOL)) {
    return refuse(path, "no " EDGERT_PLUGIN_ENTRY_SYMBOL " symbol (not an edgert plugin, or built without "
                        "EDGERT_DECLARE_PLUGIN)");
  }
  auto entry = module->so.get<edgert_status(const edgert_host_offer*, const edgert_plugin_descriptor**)>(
      EDGERT_PLUGIN_ENTRY_SYMBOL);

  const edgert_host_offer offer{sizeof(edgert_host_offer), kHostMin, kHostMax};
  const edgert_plugin_descriptor* d = nullptr;
  const edgert_status st = entry(&offer, &d);
  const std::string range = "[" + version_text(kHostMin) + ", " + version_text(kHostMax) + "]";
  if (st != EDGERT_OK) {
    return refuse(path, "speaks no plugin ABI version in the host's range " + range + " (entry returned " +
                            status_text(st) + ")");
  }
  if (d == nullptr) return refuse(path, "entry returned OK but no descriptor");

  // Validates one descriptor into `lib`; an error Status when refused.
  auto describe = [&](const edgert_plugin_descriptor* raw, bool first, Library& lib) -> Status {
    // Sized-struct rules: zero-fill a shorter descriptor, accept a longer one only if
    // the fields this host does not know are all zero.
    if (raw->struct_size < kMinDescriptorSize) {
      return refuse(path, "descriptor too small (struct_size " + std::to_string(raw->struct_size) +
                              ", need at least " + std::to_string(kMinDescriptorSize) + ")");
    }
    const std::size_t known = std::min<std::size_t>(raw->struct_size, sizeof(edgert_plugin_descriptor));
    std::memcpy(&lib.desc, raw, known);
    if (raw->struct_size > sizeof(edgert_plugin_descriptor)) {
      const auto* extra = reinterpret_cast<const unsigned char*>(raw) + sizeof(edgert_plugin_descriptor);
      if (!std::all_of(extra, extra + (raw->struct_size - sizeof(edgert_plugin_descriptor)),
                       [](unsigned char b) { return b == 0; })) {
        return refuse(path, "descriptor uses fields from a newer ABI than this host knows (struct_size " +
                                std::to_string(raw->struct_size) + ")");
      }
    }
    lib.prerelease_create = raw->struct_size < kModuleFieldsEnd;
    auto& desc = lib.desc;
    // The answer must lie in the offered range, with a major this host implements.
    if (EDGERT_VERSION_MAJOR_OF(desc.abi_version) != EDGERT_ABI_VERSION_MAJOR || desc.abi_version < kHostMin ||
        desc.abi_version > kHostMax) {
      return refuse(path, "answered ABI " + version_text(desc.abi_version) + ", outside the offered range " + range);
    }
    if (desc.kind < EDGERT_KIND_CAPTURE || desc.kind > EDGERT_KIND_BUSINESS) {
      return refuse(path, "unknown plugin kind " + std::to_string(desc.kind));
    }
    if (!valid_signature(desc.signature)) {
      return refuse(path, "invalid signature (1-64 characters of A-Z a-z 0-9 _ . -)");
    }
    const std::string sig = desc.signature;
    const auto kind = static_cast<PluginKind>(desc.kind);
    auto missing = [&](const char* what) {
      return refuse(path, "plugin '" + sig + "': descriptor has a null " + what + " callback");
    };
    if (!desc.create) return missing("create");
    if (!desc.destroy) return missing("destroy");
    if (kind == PluginKind::capture && !desc.capture) return missing("capture");
    if (kind != PluginKind::capture && !desc.process) return missing("process");
    if (!first && (desc.module_init || desc.module_deinit)) {
      return refuse(path, "plugin '" + sig +
                              "': module_init/module_deinit are only read from the first descriptor; set them "
                              "NULL in the others of a pack");
    }

    std::string schema_text = desc.config_schema ? desc.config_schema : "";
    if (desc.config_schema && lib.prerelease_create) schema_text = prerelease_schema(schema_text);
    if (desc.config_schema) {
      auto parsed = detail::parse_config_schema(schema_text);
      if (!parsed.error.empty()) return refuse(path, "plugin '" + sig + "': " + parsed.error);
      lib.schema = std::move(parsed.schema);
      lib.defaults = detail::schema_defaults(lib.schema);
    }
    if (options.secured) {
      auto it = options.allow.find(sig);
      if (it == options.allow.end() || it->second != *digest) {
        return refuse(path, "secured mode: plugins.allow has no entry for '" + sig + "' with this file's SHA-256");
      }
    }

    lib.info.signature = sig;
    lib.info.kind = kind;
    lib.info.plugin_version = desc.plugin_version ? desc.plugin_version : "";
    lib.info.description = desc.description ? desc.description : "";
    lib.info.config_schema = schema_text;
    lib.info.abi_version = desc.abi_version;
    lib.info.path = path;
    lib.api = make_host_api(desc.abi_version);
    lib.max_payload_bytes = options.max_payload_bytes;
    lib.max_json_depth = options.max_json_depth;
    return {};
  };

  // The descriptor list (one, or a pack linked through `next`): bounded, loop-safe.
  std::vector<std::shared_ptr<Library>> found;
  std::vector<const edgert_plugin_descriptor*> seen;
  for (const edgert_plugin_descriptor* p = d; p != nullptr;) {
    if (auto again = std::find(seen.begin(), seen.end(), p); again != seen.end()) {
      return refuse(path, "descriptor list loops back (descriptor " + std::to_string(seen.size() + 1) +
                              " is descriptor " + std::to_string(again - seen.begin() + 1) + " again)");
    }
    if (seen.size() == EDGERT_MAX_PACK_DESCRIPTORS) {
      return refuse(path, "more than " + std::to_string(EDGERT_MAX_PACK_DESCRIPTORS) +
                              " descriptors linked through next (EDGERT_MAX_PACK_DESCRIPTORS)");
    }
    seen.push_back(p);
    auto lib = std::make_shared<Library>();
    lib->module = module;
    lib->canonical_path = canonical;
    if (Status s = describe(p, found.empty(), *lib); !s.ok()) return s;
    for (const auto& other : found) {
      if (other->info.signature == lib->info.signature) {
        return refuse(path, "duplicate signature '" + lib->info.signature + "' inside the pack");
      }
    }
    p = lib->desc.next;  // NULL when the descriptor is too short to have one
    found.push_back(std::move(lib));
  }

  auto duplicate = [&]() -> std::optional<Status> {
    for (const auto& lib : found) {
      for (const auto& other : libs) {
        if (other->info.signature == lib->info.signature) {
          // Not logged here: the caller (load or load_all) takes it from `duplicates`
          // and reports it as a refusal or as shadowed (docs/plugins.md).
          duplicates.push_back({path, lib->info.signature, other->info.path});
          return Status{ErrorCode::invalid_argument, path + ": duplicate signature '" + lib->info.signature +
                                                         "': already loaded from " + other->info.path};
        }
      }
    }
    return std::nullopt;
  };
  {
    std::lock_guard lk(mu);
    if (auto s = duplicate()) return *s;
  }

  // Module state: once per library, before any create(), outside the lock (it may
  // load a model). Its failure refuses the whole file.
  const Library& head = *found.front();
  module->api = head.api;
  module->ctx = std::make_unique<edgert_host_ctx>();
  module->ctx->signature = head.info.signature;
  module->ctx->instance = "(module)";
  module->ctx->module = true;
  if (head.desc.module_init) {
    void* data = nullptr;
    const edgert_status init = head.desc.module_init(&module->api, module->ctx.get(), &data);
    if (init != EDGERT_OK) {
      const std::string why = take_last_error(module->ctx.get());
      return refuse(path, "plugin '" + head.info.signature + "': module_init failed (" + status_text(init) + ")" +
                              (why.empty() ? std::string() : ": " + why));
    }
    module->data = data;
    module->deinit = head.desc.module_deinit;
  } else if (head.desc.module_deinit) {
    module->deinit = head.desc.module_deinit;  // deinit(NULL) without an init: the plugin asked for it
  }

  std::lock_guard lk(mu);
  if (auto s = duplicate()) return *s;  // loaded by another thread meanwhile (module_deinit runs)
  for (const auto& lib : found) {
    libs.push_back(lib);
    detail::log().info("plugin '{}' {} ({}, ABI {}) loaded from {}", lib->info.signature, lib->info.plugin_version,
                       to_string(lib->info.kind), version_text(lib->info.abi_version), path);
  }
  return head.info;
}

std::vector<PluginInfo> PluginLoader::plugins() const {
  std::lock_guard lk(impl_->mu);
  std::vector<PluginInfo> out;
  for (const auto& l : impl_->libs) out.push_back(l->info);
  return out;
}

Result<std::unique_ptr<PluginInstance>> PluginLoader::create_instance(const std::string& signature,
                                                                      const std::string& instance_name,
                                                                      std::string_view config_json,
                                                                      std::shared_ptr<PluginSink> sink) {
  std::shared_ptr<Library> lib;
  {
    std::lock_guard lk(impl_->mu);
    for (const auto& l : impl_->libs) {
      if (l->info.signature == signature) lib = l;
    }
  }
  const std::string who = "plugin '" + signature + "' instance '" + instance_name + "'";
  if (!lib) return Status{ErrorCode::not_found, who + ": no plugin with this signature is loaded"};

  std::string error;
  auto given = detail::parse_config_object(config_json, error);
  if (!given) return Status{ErrorCode::invalid_argument, who + ": " + error};
  // Deep merge: {"roi": {"x": 5}} over {"roi": {"x": 0, "y": 0}} keeps roi.y.
  auto merged = std::make_shared<json>(detail::merge_config(lib->schema, lib->defaults, *given));
  if (Status st = check_config(lib->schema, *merged, who); !st.ok()) return st;

  auto ctx = std::make_unique<edgert_host_ctx>();
  ctx->instance = instance_name;
  ctx->signature = signature;
  ctx->sink = std::move(sink);
  ctx->checked_sink = dynamic_cast<detail::CheckedSink*>(ctx->sink.get());
  const std::string text = merged->dump();
  ctx->publish_config(std::move(merged));
  auto inst = std::make_unique<Instance>(lib, std::move(ctx));
  if (Status st = inst->create(text); !st.ok()) return st;
  return std::unique_ptr<PluginInstance>(std::move(inst));
}

}  // namespace edgert
