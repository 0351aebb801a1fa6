// The JSON rules of the result path, in one place: what a payload must be (exactly one JSON value, nothing around it,
// bounded nesting), checked in one iterative pass that also reads what later stages need (docs/architecture.md,
// "One result, emit to PUBACK").
#pragma once

#include <edgert/export.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgert::detail {

/// Nesting limit applied whatever MailboxOptions::max_json_depth says, and the one readers allow (plus the
/// envelope's own level): nlohmann's dump() and parse() recurse once per level, so this bounds the stack any
/// stored row can need.
inline constexpr std::size_t kMaxJsonDepthCap = 1024;

/// Top-level keys of a result payload that the pipeline sets itself (docs/pipeline.md, "Results"): a payload
/// that has one gets it overwritten, which needs a full parse; one that has none is extended as text.
enum ResultKey : std::uint32_t {
  kResultKeyStream = 1u << 0,
  kResultKeySignature = 1u << 1,
  kResultKeyInstanceId = 1u << 2,
  kResultKeySequence = 1u << 3,
  kResultKeyCapturedAt = 1u << 4,
  kResultKeyDetectedAt = 1u << 5,
};

/// What one pass over a valid payload learned about it.
struct JsonShape {
  bool object = false;        // the value is a JSON object
  bool empty_object = false;  // ... with no members
  std::size_t begin = 0;      // offset of the value's first byte (after leading whitespace)
  std::size_t end = 0;        // offset just past its last byte (before trailing whitespace)
  bool has_priority = false;  // a top-level integer "priority" (the last one, as a parser keeps)
  std::int64_t priority = 0;  // its value, saturated to int64
  std::uint32_t result_keys = 0;  // ResultKey bits present at the top level
  std::size_t depth = 0;          // deepest nesting of arrays/objects (0 for a scalar)
};

/// Why a text is not a valid payload.
struct JsonProblem {
  enum Kind { none, empty, nul_byte, byte_order_mark, too_deep, invalid } kind = none;
  std::size_t offset = 0;  // of the NUL byte (nul_byte)
  explicit operator bool() const noexcept { return kind != none; }
  /// "contains a NUL byte at offset 3", "nests arrays/objects deeper than the limit of 64", ... ("" for none).
  std::string text(std::size_t max_depth) const;
};

/// Checks that `text` is exactly one JSON value, nested at most `max_depth` deep, with nothing but whitespace
/// around it, accepting exactly what nlohmann's strict parser accepts, and refusing besides what that parser lets
/// through (a NUL byte, read as the end of input, and a leading UTF-8 BOM, skipped). One pass, iterative (never
/// recurses, whatever the input), copies nothing (no allocation unless the text nests deeper than 2048). Fills `shape` when given
/// and the text is valid. Any thread; never throws (bad_alloc aside). Counted in json_full_checks().
EDGERT_API JsonProblem check_json(std::string_view text, std::size_t max_depth, JsonShape* shape = nullptr);

/// The cheap half of check_json, for a caller that parses the text next anyway: empty, NUL byte, BOM and depth
/// (json_depth), no grammar check. Not counted.
JsonProblem precheck_json(std::string_view text, std::size_t max_depth);

/// Counts a full parse made elsewhere on the result path (reading a stored envelope back, the pipeline's rare
/// re-parse), so json_full_checks() sees every pass over a result's bytes.
void count_full_parse() noexcept;

/// A test hook: from count_json_passes(true) on, check_json() calls and count_full_parse() notes (full passes over
/// a text) are counted, and json_full_checks() returns the count; the result path promises one per result, at emit
/// (tests/test_result_path.cpp). Off by default, so the hot path reads a flag that never changes instead of
/// writing one cache line shared by every instance thread. Any thread.
EDGERT_API void count_json_passes(bool on) noexcept;
EDGERT_API std::uint64_t json_full_checks() noexcept;  // exported for the tests

/// Appends `s` as a JSON string (quotes, escapes; invalid UTF-8 replaced by U+FFFD as nlohmann's dump does with
/// error_handler_t::replace). Any thread; never throws (bad_alloc aside).
void append_json_string(std::string& out, std::string_view s);

}  // namespace edgert::detail
