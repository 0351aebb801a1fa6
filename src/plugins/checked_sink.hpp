// CheckedSink: a PluginSink that receives what the host's emit already checked, with the shape that check read,
// so no later stage parses the payload again (docs/architecture.md, "One result, emit to PUBACK").
#pragma once

#include <edgert/plugin_host.hpp>

#include "core/json_check.hpp"

#include <string>
#include <string_view>

namespace edgert::detail {

class CheckedSink : public PluginSink {
 public:
  /// Called by the host's emit (any plugin thread) with a payload check_json() accepted at the mailbox's
  /// max_json_depth, and what it read. Must not throw into the plugin: emit catches and reports internal.
  virtual void on_checked_emit(const std::string& instance, std::string_view payload_type, std::string_view json,
                               const JsonShape& shape) = 0;

  /// A caller that bypasses the host's emit (a test, a host driving the sink itself): the text is checked here
  /// (at kMaxJsonDepthCap) and refused text is dropped with `on_unchecked_refused`.
  void on_emit(const std::string& instance, std::string_view payload_type, std::string_view json) override {
    JsonShape shape;
    if (check_json(json, kMaxJsonDepthCap, &shape)) {
      on_unchecked_refused(instance, payload_type, json);
      return;
    }
    on_checked_emit(instance, payload_type, json, shape);
  }

 protected:
  /// What on_emit() does with text that is not one JSON value: the implementation counts and logs it.
  virtual void on_unchecked_refused(const std::string& instance, std::string_view payload_type,
                                    std::string_view json) = 0;
};

}  // namespace edgert::detail
