// Input checks shared by the mailbox's write path (send, store) and read path
// (pending, unacked): exact JSON text with bounded nesting, and identifiers made safe
// to print. Header-only; used by the mailbox (mailbox_codec.cpp, integrity.cpp, wal_scan.cpp).
#pragma once

#include "core/json_check.hpp"  // the JSON rules, shared with the plugin host and inbound
#include "core/printable.hpp"   // printable(), shared with the plugin host

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace edgert::detail {

// kMaxJsonDepthCap, check_json(), precheck_json(): core/json_check.hpp (the one rule set of the result path).

/// Why `text` is not exactly one JSON value nested at most `max_depth` deep; "" if it is (check_json()). `parse`
/// false does only the cheap half (precheck_json()), for a caller that parses the text next anyway.
inline std::string json_problem(std::string_view text, std::size_t max_depth, bool parse = true) {
  return (parse ? check_json(text, max_depth) : precheck_json(text, max_depth)).text(max_depth);
}

}  // namespace edgert::detail
