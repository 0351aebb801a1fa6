// check_json(): the result path's one pass over a payload (a SAX walk that validates and reads the shape).
#include "core/json_check.hpp"

#include "core/json_depth.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstring>
#include <limits>

namespace edgert::detail {

namespace {

std::atomic<std::uint64_t> g_full_checks{0};

using json = nlohmann::json;

// Tracks nesting (refusing past the limit as soon as it is crossed) and, at the top level of an object, which
// key the next value belongs to.
class ShapeReader {
 public:
  ShapeReader(std::size_t max_depth, JsonShape& shape) : max_depth_(max_depth), shape_(shape) {}

  bool too_deep() const noexcept { return too_deep_; }

  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t v) {
    if (at_priority()) set_priority(v);
    return value();
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (at_priority()) {
      set_priority(v > static_cast<json::number_unsigned_t>(std::numeric_limits<std::int64_t>::max())
                       ? std::numeric_limits<std::int64_t>::max()
                       : static_cast<std::int64_t>(v));
    }
    return value();
  }
  bool number_float(json::number_float_t, const json::string_t&) { return value(); }
  bool string(json::string_t&) { return value(); }
  bool binary(json::binary_t&) { return value(); }
  bool start_object(std::size_t) {
    if (depth_ == 0) shape_.object = true;
    return open();
  }
  bool key(json::string_t& k) {
    if (depth_ == 1 && shape_.object) {
      ++members_;
      pending_ = key_bit(k);
    }
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

  std::size_t members() const noexcept { return members_; }

 private:
  static constexpr std::uint32_t kPriority = 1u << 31;

  static std::uint32_t key_bit(std::string_view k) {
    if (k == "priority") return kPriority;
    if (k == "stream") return kResultKeyStream;
    if (k == "signature") return kResultKeySignature;
    if (k == "instance_id") return kResultKeyInstanceId;
    if (k == "sequence") return kResultKeySequence;
    if (k == "captured_at") return kResultKeyCapturedAt;
    if (k == "detected_at") return kResultKeyDetectedAt;
    return 0;
  }
  bool at_priority() const noexcept { return depth_ == 1 && pending_ == kPriority; }
  void set_priority(std::int64_t v) {
    shape_.has_priority = true;
    shape_.priority = v;
    priority_int_ = true;
  }
  // A scalar value, or the start of a container, ends the pending key at the top level.
  bool value() {
    note_value();
    return true;
  }
  void note_value() {
    if (depth_ != 1) return;
    if (pending_ == kPriority) {
      // A later non-integer "priority" replaces an earlier integer one, as a parser keeps the last.
      if (!priority_int_) shape_.has_priority = false;
    } else if (pending_ != 0) {
      shape_.result_keys |= pending_;
    }
    pending_ = 0;
    priority_int_ = false;
  }
  bool open() {
    note_value();
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    if (depth_ > shape_.depth) shape_.depth = depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  std::size_t max_depth_;
  JsonShape& shape_;
  std::size_t depth_ = 0;
  std::size_t members_ = 0;
  std::uint32_t pending_ = 0;
  bool priority_int_ = false;  // the pending top-level "priority" got an integer
  bool too_deep_ = false;

};

}  // namespace

std::string JsonProblem::text(std::size_t max_depth) const {
  switch (kind) {
    case none: return {};
    case empty: return "is empty";
    case nul_byte: return "contains a NUL byte at offset " + std::to_string(offset);
    case byte_order_mark: return "starts with a UTF-8 byte order mark";
    case too_deep: return "nests arrays/objects deeper than the limit of " + std::to_string(max_depth);
    case invalid: return "is not valid UTF-8 JSON (or has bytes after the value)";
  }
  return {};
}

JsonProblem precheck_json(std::string_view text, std::size_t max_depth) {
  JsonProblem p;
  if (text.empty()) {
    p.kind = JsonProblem::empty;
  } else if (const void* nul = std::memchr(text.data(), '\0', text.size()); nul != nullptr) {
    p.kind = JsonProblem::nul_byte;
    p.offset = static_cast<std::size_t>(static_cast<const char*>(nul) - text.data());
  } else if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") {
    p.kind = JsonProblem::byte_order_mark;
  } else if (json_depth(text, max_depth) > max_depth) {
    p.kind = JsonProblem::too_deep;
  }
  return p;
}

JsonProblem check_json(std::string_view text, std::size_t max_depth, JsonShape* shape) {
  g_full_checks.fetch_add(1, std::memory_order_relaxed);
  JsonProblem p;
  if (text.empty()) {
    p.kind = JsonProblem::empty;
    return p;
  }
  if (const void* nul = std::memchr(text.data(), '\0', text.size()); nul != nullptr) {
    p.kind = JsonProblem::nul_byte;
    p.offset = static_cast<std::size_t>(static_cast<const char*>(nul) - text.data());
    return p;
  }
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") {
    p.kind = JsonProblem::byte_order_mark;
    return p;
  }
  JsonShape local;
  JsonShape& s = shape ? *shape : local;
  s = JsonShape{};
  ShapeReader reader(max_depth, s);
  bool ok = false;
  try {
    // The SAX parser is iterative and strict (nothing but whitespace may follow the value); the reader stops it
    // as soon as the nesting passes max_depth, so a hostile text costs at most one linear scan.
    ok = json::sax_parse(text.begin(), text.end(), &reader, json::input_format_t::json, /*strict=*/true);
  } catch (const json::exception&) {
    ok = false;
  }
  if (!ok) {
    p.kind = reader.too_deep() ? JsonProblem::too_deep : JsonProblem::invalid;
    s = JsonShape{};
    return p;
  }
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t b = 0, e = text.size();
  while (b < e && is_space(text[b])) ++b;
  while (e > b && is_space(text[e - 1])) --e;
  s.begin = b;
  s.end = e;
  s.empty_object = s.object && reader.members() == 0;
  return p;
}

void count_full_parse() noexcept { g_full_checks.fetch_add(1, std::memory_order_relaxed); }

std::uint64_t json_full_checks() noexcept { return g_full_checks.load(std::memory_order_relaxed); }

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, no surrogates, at most U+10FFFF) is copied; anything else
    // becomes U+FFFD, one per bad byte.
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    bool good = len != 0 && c <= 0xF4 && i + len <= n;
    for (std::size_t k = 1; good && k < len; ++k) good = (p[i + k] & 0xC0) == 0x80;
    if (good && len == 3) good = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
    if (good && len == 4) good = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
    if (good) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  out += '"';
}

}  // namespace edgert::detail
