// Nesting depth of JSON text, without parsing it. Header-only; any area may use it
// (the mailbox's envelope checks, the plugin host's emit).
#pragma once

#include <cstddef>
#include <string_view>

namespace edgert::detail {

/// Deepest nesting of arrays and objects in `text`, counting brackets outside strings;
/// stops counting once past `limit` (returns limit + 1). Exact for valid JSON, linear,
/// and never recursive, so it is safe on any input.
inline std::size_t json_depth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return limit + 1;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace edgert::detail
