// Internal: SHA-256 (FIPS 180-4) of a file, for the secured plugin mode.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace edgert::detail {

/// Lower-case hex digest of `data`.
std::string sha256_hex(std::string_view data);

/// Lower-case hex digest of the file's contents; nullopt if it cannot be read.
std::optional<std::string> sha256_file_hex(const std::string& path);

}  // namespace edgert::detail
