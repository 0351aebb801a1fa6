// Identifiers and foreign text made safe to put in log and error lines. Header-only;
// any area may use it.
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

/// `url` with the password of its user-info masked ("rtsp://user:***@host/live"), for
/// log and error text: camera urls often carry credentials. Other text is unchanged.
inline std::string redact_url(std::string_view url) {
  std::string shown(url);
  const auto scheme = shown.find("://");
  if (scheme == std::string::npos) return shown;
  const auto host_start = scheme + 3;
  const auto path = shown.find('/', host_start);
  const auto at = shown.rfind('@', path == std::string::npos ? std::string::npos : path);
  if (at == std::string::npos || at <= host_start) return shown;
  const auto colon = shown.find(':', host_start);
  if (colon != std::string::npos && colon < at) shown.replace(colon + 1, at - colon - 1, "***");
  return shown;
}

}  // namespace edgert::detail
