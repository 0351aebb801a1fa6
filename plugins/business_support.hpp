// Shared by the bundled business plugins (motion_detector.cpp, telemetry_urgency.cpp).
// Header-only, compiled into each plugin; nothing here is part of the SDK.
//
// Why it exists: the SDK's process() returns void and maps every exception to
// EDGERT_ERR_INTERNAL, but a refused input or configuration must reach the host as
// EDGERT_ERR_INVALID_ARGUMENT (plugin_abi.h convention 5). describe_refusing<P>() builds
// the SDK descriptor and swaps in create/process/update_config callbacks that turn a thrown
// `Refusal` into a logged EDGERT_ERR_INVALID_ARGUMENT; every other exception keeps the
// SDK's treatment (logged, EDGERT_ERR_INTERNAL).
#pragma once

#include <edgert/plugin.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace edgert_bundled {

/// Bad input or configuration: the message is logged at ERROR and the call returns
/// EDGERT_ERR_INVALID_ARGUMENT.
class Refusal : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// `s` as printable ASCII for log text (the host logs plugin messages verbatim): bytes
/// outside 0x20..0x7e and the backslash become \xNN, and past `max` bytes the rest is
/// cut with its size noted. The same rule as the core's printable() (src/core), which
/// plugins cannot link.
inline std::string printable(std::string_view s, std::size_t max = 80) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  const std::size_t n = s.size() < max ? s.size() : max;
  out.reserve(n + 16);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

namespace detail {

template <class P>
struct RefusingAdapter {
  using Sdk = edgert::sdk::detail::Adapter<P>;

  template <class Fn>
  static edgert_status run(const edgert::sdk::Host& host, const char* call, Fn&& fn) noexcept {
    try {
      return edgert::sdk::detail::guarded(host, call, [&]() -> edgert_status {
        try {
          return fn();
        } catch (const Refusal& r) {
          host.error(r.what());
          return EDGERT_ERR_INVALID_ARGUMENT;
        }
      });
    } catch (...) {  // host.error itself threw (out of memory): still nothing crosses
      return EDGERT_ERR_INTERNAL;
    }
  }

  static edgert_status create(const edgert_host_api* api, edgert_host_ctx* ctx, void* module_data,
                              const char* config, std::size_t len, void** instance) noexcept {
    const edgert::sdk::Host host(api, ctx, module_data);
    return run(host, "create", [&]() -> edgert_status {
      *instance = new typename Sdk::Box{host, P(host, std::string_view(config ? config : "", config ? len : 0))};
      return EDGERT_OK;
    });
  }

  static edgert_status process(void* i, const edgert_input* in) noexcept {
    auto& box = Sdk::box(i);
    return run(box.host, "process", [&]() -> edgert_status { return box.plugin.process_input(edgert::sdk::Input(in)); });
  }

  static edgert_status update_config(void* i, const char* config, std::size_t len) noexcept {
    auto& box = Sdk::box(i);
    return run(box.host, "update_config", [&]() -> edgert_status {
      return box.plugin.update_config(std::string_view(config ? config : "", len)) ? EDGERT_OK
                                                                                   : EDGERT_ERR_UNSUPPORTED;
    });
  }
};

}  // namespace detail

/// The SDK descriptor for business plugin P, whose `edgert_status process_input(const
/// edgert::sdk::Input&)` replaces process() and whose constructor, process_input and
/// update_config may throw Refusal.
template <class P>
constexpr edgert_plugin_descriptor describe_refusing(const char* signature, const char* version,
                                                     const char* description, const char* config_schema) {
  edgert_plugin_descriptor d =
      edgert::sdk::describe<P>(EDGERT_KIND_BUSINESS, signature, version, description, config_schema);
  d.create = &detail::RefusingAdapter<P>::create;
  d.process = &detail::RefusingAdapter<P>::process;
  d.update_config = &detail::RefusingAdapter<P>::update_config;
  return d;
}

}  // namespace edgert_bundled
