#include "mailbox/row_check.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <cstring>

namespace edgert::detail {
namespace {

// FNV-1a, 64 bits: each value is hashed as (type, length, bytes), so a value cannot
// shift into its neighbour, then the whole is finalised with splitmix64's mixer so
// that every input bit reaches every output bit.
struct Hash {
  std::uint64_t h = 14695981039346656037ull;
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  void u64(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));  // fixed byte order
    bytes(b, 8);
  }
  std::uint64_t done() const {
    std::uint64_t z = h + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

void row_sum(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  Hash h;
  for (int i = 0; i < argc; ++i) {
    sqlite3_value* v = argv[i];
    const int type = sqlite3_value_type(v);
    h.u64(static_cast<std::uint64_t>(type));
    switch (type) {
      case SQLITE_INTEGER:
        h.u64(static_cast<std::uint64_t>(sqlite3_value_int64(v)));
        break;
      case SQLITE_FLOAT: {
        const double d = sqlite3_value_double(v);
        std::uint64_t bits = 0;
        std::memcpy(&bits, &d, sizeof bits);
        h.u64(bits);
        break;
      }
      case SQLITE_TEXT: {
        const auto* p = sqlite3_value_text(v);
        const auto n = static_cast<std::size_t>(sqlite3_value_bytes(v));
        h.u64(n);
        h.bytes(p, n);
        break;
      }
      case SQLITE_BLOB: {
        const auto* p = sqlite3_value_blob(v);
        const auto n = static_cast<std::size_t>(sqlite3_value_bytes(v));
        h.u64(n);
        if (n > 0) h.bytes(p, n);
        break;
      }
      default:  // NULL: the type alone
        break;
    }
  }
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(h.done()));
}

}  // namespace

int register_row_check(sqlite3* db) {
  return sqlite3_create_function_v2(db, "edgert_row_sum", 10, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                    nullptr, &row_sum, nullptr, nullptr, nullptr);
}

}  // namespace edgert::detail
