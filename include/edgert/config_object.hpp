// A free-form configuration object: the part of a YAML mapping that edgert does not
// interpret itself (a plugin instance's own settings, a capture source's options).
//
// It is kept as canonical JSON text plus a table of where each value was written, so
// that a consumer validating it later (against a plugin's schema) can still report
// "node.yaml:23: streams[0].plugins[1].instances[0].threshold: expected a number".
// See docs/configuration.md, "Free-form objects".
#pragma once

#include <edgert/export.hpp>

#include <map>
#include <string>
#include <string_view>

namespace edgert {

/// Value type; plain data, safe to copy and to read from any thread once built.
struct ConfigObject {
  /// Canonical JSON: an object, keys sorted, no insignificant whitespace ("{}" when empty).
  /// YAML plain scalars become JSON null, true/false, integers or numbers; quoted scalars
  /// stay strings; NaN and infinities are refused when the file is read.
  std::string json = "{}";

  /// Where the object sits in the configuration, in the dotted form used by error
  /// messages: "streams[0].plugins[1].instances[0]".
  std::string path;

  /// JSON Pointer (RFC 6901) of every value -> "file:line" of its key in the source.
  /// "" is the object itself; "/threshold", "/zones/2/name" are members.
  std::map<std::string, std::string> locations;

  /// Any thread; never blocks. "file:line" of `pointer`, or of its nearest ancestor
  /// that has a location (e.g. "/threshold/min" inside a scalar maps to "/threshold").
  /// Returns "" only when the object has no location at all (built by hand).
  [[nodiscard]] EDGERT_API std::string where(std::string_view pointer) const;

  /// Any thread; never blocks. The dotted name of `pointer` for messages:
  /// "/zones/2/name" -> "streams[0].plugins[1].instances[0].zones[2].name".
  /// A malformed pointer is rendered as written after the object's path.
  [[nodiscard]] EDGERT_API std::string key_path(std::string_view pointer) const;

  /// Any thread; never blocks. A complete error line in the configuration's style:
  /// "<where(pointer)>: <key_path(pointer)>: <what>".
  [[nodiscard]] EDGERT_API std::string error_message(std::string_view pointer, std::string_view what) const;
};

}  // namespace edgert
