// Header-only C++ helpers for plugin authors (link edgert::plugin_sdk, never libedgert).
//
// Write a class, then one macro:
//
//   class Threshold : public edgert::sdk::Plugin {
//    public:
//     Threshold(edgert::sdk::Host host, std::string_view config) : Plugin(host) { ... }
//     void process(const edgert::sdk::Input& in) override { host().emit("event", "{...}"); }
//   };
//   EDGERT_PLUGIN_CLASS(Threshold, EDGERT_KIND_BUSINESS, "threshold", "1.0.0",
//                       "emits an event above a threshold",
//                       R"({"limit": {"type": "number", "default": 10}})");
//
// State shared by every instance of the library (a model loaded once) is a class
// constructed from a Host once per loaded library and destroyed after the last
// instance (the ABI's module_init/module_deinit); instances reach it through
// host().module<Model>():
//
//   EDGERT_PLUGIN_CLASS_WITH_MODULE(Detector, Model, EDGERT_KIND_SERVING, ...);
//
// Every exception thrown from the constructor, start, process, capture, stop or
// update_config is caught at the boundary, logged through the host at ERROR and
// turned into EDGERT_ERR_INTERNAL: nothing C++ crosses into the host.
#pragma once

#include <edgert/plugin_abi.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace edgert::sdk {

/// The host's services for one instance (or for the module, in a module class's
/// constructor). Cheap to copy; valid until the instance (module) is destroyed. Every
/// member may be called from any thread; none blocks beyond the host service it calls.
class Host {
 public:
  Host(const edgert_host_api* api, edgert_host_ctx* ctx, void* module_data = nullptr) noexcept
      : api_(api), ctx_(ctx), module_data_(module_data) {}

  void log(int level, std::string_view message) const {
    const std::string text(message);
    api_->log(ctx_, level, text.c_str());
  }
  void debug(std::string_view m) const { log(EDGERT_LOG_DEBUG, m); }
  void info(std::string_view m) const { log(EDGERT_LOG_INFO, m); }
  void warn(std::string_view m) const { log(EDGERT_LOG_WARN, m); }
  void error(std::string_view m) const { log(EDGERT_LOG_ERROR, m); }

  /// Emits a UTF-8 JSON payload; false if the host refused it (it logged why: invalid
  /// JSON, a malformed payload_type, over the payload limit).
  bool emit(std::string_view payload_type, std::string_view json) const {
    const std::string type(payload_type);
    return api_->emit(ctx_, type.c_str(), json.data(), json.size()) == EDGERT_OK;
  }
  bool notify(int level, std::string_view message) const {
    const std::string text(message);
    return api_->notify(ctx_, level, text.c_str()) == EDGERT_OK;
  }
  std::int64_t monotonic_ns() const { return api_->monotonic_ns(ctx_); }
  std::int64_t wall_ns() const { return api_->wall_ns(ctx_); }

  /// The instance configuration value at a dot path, as JSON text; nullopt if absent.
  std::optional<std::string> config(std::string_view key) const {
    const std::string k(key);
    std::size_t needed = 0;
    char small[128];
    edgert_status st = api_->config_get(ctx_, k.c_str(), small, sizeof small, &needed);
    if (st == EDGERT_OK) return std::string(small);
    if (st != EDGERT_ERR_BUFFER_TOO_SMALL) return std::nullopt;
    std::string big(needed, '\0');
    if (api_->config_get(ctx_, k.c_str(), big.data(), big.size(), &needed) != EDGERT_OK) return std::nullopt;
    big.resize(needed - 1);
    return big;
  }

  /// Keeps a frame valid beyond the current call; balance with release().
  void retain(const edgert_frame* frame) const { api_->frame_retain(ctx_, frame); }
  void release(const edgert_frame* frame) const { api_->frame_release(ctx_, frame); }

  const edgert_host_api* api() const noexcept { return api_; }
  edgert_host_ctx* ctx() const noexcept { return ctx_; }
  /// What the library's module_init set (NULL without one), shared by all instances.
  void* module_data() const noexcept { return module_data_; }
  /// The module object of EDGERT_PLUGIN_CLASS_WITH_MODULE(Class, M, ...); throws
  /// std::logic_error when the library has none. Shared: M's methods must be thread-safe.
  template <class M>
  M& module() const {
    if (module_data_ == nullptr) throw std::logic_error("this plugin library has no module object");
    return *static_cast<M*>(module_data_);
  }

 private:
  const edgert_host_api* api_;
  edgert_host_ctx* ctx_;
  void* module_data_;
};

/// A read-only view of an edgert_input that respects its struct_size.
class Input {
 public:
  explicit Input(const edgert_input* in) noexcept : in_(in) {}
  std::string_view stream() const { return has(offsetof(edgert_input, frame)) && in_->stream ? in_->stream : ""; }
  const edgert_frame* frame() const { return has(offsetof(edgert_input, record_json)) ? in_->frame : nullptr; }
  std::string_view record() const {
    return has(offsetof(edgert_input, inference_json)) && in_->record_json
               ? std::string_view(in_->record_json, in_->record_len)
               : std::string_view();
  }
  std::string_view inference() const {
    return has(sizeof(edgert_input)) && in_->inference_json ? std::string_view(in_->inference_json, in_->inference_len)
                                                            : std::string_view();
  }
  const edgert_input* raw() const noexcept { return in_; }

 private:
  bool has(std::size_t end_of_field) const noexcept { return in_->struct_size >= end_of_field; }
  const edgert_input* in_;
};

/// Base class for every kind. Override what your kind needs; the constructor
/// receives the instance's configuration (a JSON object, defaults merged in).
class Plugin {
 public:
  explicit Plugin(Host host) noexcept : host_(host) {}
  virtual ~Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  virtual void start() {}
  /// Business and serving plugins.
  virtual void process(const Input& /*input*/) {}
  /// Capture plugins: fill `out` and return EDGERT_OK, or EDGERT_ERR_AGAIN /
  /// EDGERT_ERR_END_OF_STREAM.
  virtual edgert_status capture(edgert_capture& /*out*/) { return EDGERT_ERR_UNSUPPORTED; }
  virtual void stop() {}
  /// Return false to make the host re-create the instance instead.
  virtual bool update_config(std::string_view /*config_json*/) { return false; }

 protected:
  const Host& host() const noexcept { return host_; }

 private:
  Host host_;
};

namespace detail {

inline void report(const edgert_host_api* api, edgert_host_ctx* ctx, const char* call, const char* what) {
  if (!api || !api->log) return;
  std::string msg = std::string(call) + ": " + what;
  api->log(ctx, EDGERT_LOG_ERROR, msg.c_str());
}

// Runs fn, turning any exception into a logged EDGERT_ERR_INTERNAL.
template <class Fn>
edgert_status guarded(const Host& host, const char* call, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::exception& e) {
    report(host.api(), host.ctx(), call, e.what());
  } catch (...) {
    report(host.api(), host.ctx(), call, "unknown exception");
  }
  return EDGERT_ERR_INTERNAL;
}

template <class P>
struct Adapter {
  struct Box {
    Host host;
    P plugin;
  };
  static Box& box(void* instance) { return *static_cast<Box*>(instance); }

  static edgert_status create(const edgert_host_api* api, edgert_host_ctx* ctx, void* module_data,
                              const char* config, std::size_t len, void** instance) noexcept {
    const Host host(api, ctx, module_data);
    return guarded(host, "create", [&] {
      *instance = new Box{host, P(host, std::string_view(config ? config : "", config ? len : 0))};
      return EDGERT_OK;
    });
  }
  static edgert_status start(void* i) noexcept {
    return guarded(box(i).host, "start", [&] { box(i).plugin.start(); return EDGERT_OK; });
  }
  static edgert_status process(void* i, const edgert_input* in) noexcept {
    return guarded(box(i).host, "process", [&] { box(i).plugin.process(Input(in)); return EDGERT_OK; });
  }
  static edgert_status capture(void* i, edgert_capture* out) noexcept {
    return guarded(box(i).host, "capture", [&] { return box(i).plugin.capture(*out); });
  }
  static edgert_status stop(void* i) noexcept {
    return guarded(box(i).host, "stop", [&] { box(i).plugin.stop(); return EDGERT_OK; });
  }
  static edgert_status update_config(void* i, const char* config, std::size_t len) noexcept {
    return guarded(box(i).host, "update_config", [&] {
      return box(i).plugin.update_config(std::string_view(config ? config : "", len)) ? EDGERT_OK
                                                                                     : EDGERT_ERR_UNSUPPORTED;
    });
  }
  static void destroy(void* i) noexcept {
    try {
      delete static_cast<Box*>(i);
    } catch (...) {
    }
  }
};

// Module class M: built by module_init from a Host on the module's ctx, deleted by
// module_deinit.
template <class M>
struct ModuleAdapter {
  static edgert_status init(const edgert_host_api* api, edgert_host_ctx* ctx, void** module_data) noexcept {
    const Host host(api, ctx);
    return guarded(host, "module_init", [&] {
      *module_data = new M(host);
      return EDGERT_OK;
    });
  }
  static void deinit(void* module_data) noexcept {
    try {
      delete static_cast<M*>(module_data);
    } catch (...) {
    }
  }
};

}  // namespace detail

/// The descriptor for plugin class P (see EDGERT_PLUGIN_CLASS), with module class M
/// unless M is void (see EDGERT_PLUGIN_CLASS_WITH_MODULE).
template <class P, class M = void>
constexpr edgert_plugin_descriptor describe(std::int32_t kind, const char* signature, const char* version,
                                            const char* description, const char* config_schema) {
  using A = detail::Adapter<P>;
  edgert_plugin_descriptor d{};
  d.struct_size = sizeof(edgert_plugin_descriptor);
  d.abi_version = EDGERT_ABI_VERSION;
  d.kind = kind;
  d.signature = signature;
  d.plugin_version = version;
  d.description = description;
  d.config_schema = config_schema;
  d.create = &A::create;
  d.start = &A::start;
  d.process = kind == EDGERT_KIND_CAPTURE ? nullptr : &A::process;
  d.capture = kind == EDGERT_KIND_CAPTURE ? &A::capture : nullptr;
  d.stop = &A::stop;
  d.destroy = &A::destroy;
  d.update_config = &A::update_config;
  if constexpr (!std::is_void_v<M>) {
    d.module_init = &detail::ModuleAdapter<M>::init;
    d.module_deinit = &detail::ModuleAdapter<M>::deinit;
  }
  return d;
}

}  // namespace edgert::sdk

/// Exports plugin class `Class` (constructible from (edgert::sdk::Host, std::string_view)).
/// Use once per plugin, at file scope, followed by a semicolon.
#define EDGERT_PLUGIN_CLASS(Class, kind, signature, version, description, config_schema)           \
  static const edgert_plugin_descriptor edgert_sdk_descriptor_ =                                    \
      ::edgert::sdk::describe<Class>(kind, signature, version, description, config_schema);         \
  EDGERT_DECLARE_PLUGIN(edgert_sdk_descriptor_)

/// EDGERT_PLUGIN_CLASS plus module state: `Module` (constructible from
/// edgert::sdk::Host, thread-safe) is built once per loaded library before the first
/// instance and destroyed after the last; instances reach it with
/// host().module<Module>(). A throwing constructor refuses the library with its message.
#define EDGERT_PLUGIN_CLASS_WITH_MODULE(Class, Module, kind, signature, version, description, config_schema) \
  static const edgert_plugin_descriptor edgert_sdk_descriptor_ =                                           \
      ::edgert::sdk::describe<Class, Module>(kind, signature, version, description, config_schema);        \
  EDGERT_DECLARE_PLUGIN(edgert_sdk_descriptor_)
