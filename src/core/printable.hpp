// printable(): identifiers made safe for log and error text. Header-only; used by the
// mailbox (envelope checks) and the plugin host (host-service errors).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace edgert::detail {

/// `s` as printable ASCII for log and error text: bytes outside 0x20..0x7e and the
/// backslash become \xNN, and past `max` bytes the rest is cut with its size noted
/// (a hostile id can neither forge log lines nor flood them).
inline std::string printable(std::string_view s, std::size_t max = 80) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  const std::size_t n = std::min(s.size(), max);
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

}  // namespace edgert::detail
