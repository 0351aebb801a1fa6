// numbered("m", 3) == "m3": test names built without `"m" + std::to_string(n)`, on which gcc 12 -O3 warns falsely.
#pragma once

#include <string>
#include <string_view>

namespace edgert::testing {

/// `prefix` followed by `n` in decimal. Why not `"m" + std::to_string(n)`: gcc 12 at -O3
/// inlines that operator+ into a memcpy it then reports as overlapping (-Wrestrict, GCC
/// PR 105329), which breaks a Release build with EDGERT_WERROR=ON.
inline std::string numbered(std::string_view prefix, long long n) {
  std::string out(prefix);
  out += std::to_string(n);
  return out;
}

}  // namespace edgert::testing
