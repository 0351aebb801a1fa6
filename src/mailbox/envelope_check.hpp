// Input checks shared by the mailbox's write path (send, store) and read path
// (pending, unacked): exact JSON text with bounded nesting, and identifiers made safe
// to print. Header-only; used by the mailbox (mailbox_codec.cpp, integrity.cpp, wal_scan.cpp).
#pragma once

#include "core/json_depth.hpp"  // json_depth(), shared with the plugin host
#include "core/printable.hpp"   // printable(), shared with the plugin host

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace edgert::detail {

/// Nesting limit applied whatever MailboxOptions::max_json_depth says, and the one
/// readers allow (plus the envelope's own level): nlohmann's dump() recurses once per
/// level, so this bounds the stack any stored row can need.
inline constexpr std::size_t kMaxJsonDepthCap = 1024;

// printable(): core/printable.hpp (shared with the plugins area).

// json_depth(): core/json_depth.hpp (shared with the plugin host's emit).

/// Why `text` is not exactly one JSON value nested at most `max_depth` deep; "" if it
/// is. Refuses what nlohmann's parser lets through: a NUL byte (it reads one as the
/// end of input, so "{}\0junk" passes) and a leading UTF-8 BOM (it skips one).
/// Whitespace around the value is part of JSON text and accepted. `parse` false skips
/// the grammar check, for a caller that parses the text next anyway.
inline std::string json_problem(std::string_view text, std::size_t max_depth, bool parse = true) {
  if (text.empty()) return "is empty";
  if (const void* nul = std::memchr(text.data(), '\0', text.size()); nul != nullptr) {
    return "contains a NUL byte at offset " + std::to_string(static_cast<const char*>(nul) - text.data());
  }
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") return "starts with a UTF-8 byte order mark";
  if (json_depth(text, max_depth) > max_depth) {
    return "nests arrays/objects deeper than the limit of " + std::to_string(max_depth);
  }
  // The SAX-based acceptor is iterative: safe now that the depth is bounded, and
  // strict (nothing but whitespace may follow the value).
  if (parse && !nlohmann::json::accept(text.begin(), text.end())) {
    return "is not valid UTF-8 JSON (or has bytes after the value)";
  }
  return {};
}

}  // namespace edgert::detail
