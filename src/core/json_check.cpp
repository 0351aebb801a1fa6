// check_json(): the result path's one pass over a payload (a validator that copies nothing and reads the shape).
#include "core/json_check.hpp"

#include "core/json_depth.hpp"

#include <atomic>
#include <charconv>
#include <cstring>
#include <limits>
#include <system_error>
#include <vector>

namespace edgert::detail {

namespace {

std::atomic<bool> g_counting{false};
std::atomic<std::uint64_t> g_full_checks{0};

void count_pass() noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_full_checks.fetch_add(1, std::memory_order_relaxed);
}

// The validator: RFC 8259 as nlohmann's strict parser reads it, so a text it accepts parses there and one it
// refuses does not (tests/test_json_check.cpp compares the two on hand-written and mutated inputs):
//   - whitespace is space, tab, LF, CR; literals true, false, null;
//   - numbers -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, refused when they overflow a double (nlohmann's
//     "number overflow"); an integer beyond uint64 reads as a float;
//   - strings refuse control bytes below 0x20, malformed UTF-8 (RFC 3629: no overlongs, no surrogates, at most
//     U+10FFFF) and unpaired \u surrogates.
// It copies nothing: containers are tracked in a bit stack (on the stack up to 2048 levels, on the heap for the
// levels a text actually reaches beyond that), the top-level key of interest is decoded into 16 bytes.
class Validator {
 public:
  Validator(std::string_view text, std::size_t max_depth, JsonShape& shape)
      : p_(reinterpret_cast<const unsigned char*>(text.data())),
        end_(p_ + text.size()),
        base_(p_),
        max_depth_(max_depth),
        shape_(shape) {}

  JsonProblem::Kind run() {
    skip_space();
    if (p_ == end_) return JsonProblem::invalid;
    shape_.begin = static_cast<std::size_t>(p_ - base_);
    shape_.object = *p_ == '{';
    // Iterative: after each value, the innermost open container says what may follow.
    for (;;) {
      skip_space();
      if (p_ == end_) return JsonProblem::invalid;
      const unsigned char c = *p_;
      if (c == '{' || c == '[') {
        ++p_;
        end_pending();
        if (depth_ >= max_depth_) return JsonProblem::too_deep;
        push(c == '{');
        if (depth_ > shape_.depth) shape_.depth = depth_;
        skip_space();
        if (p_ != end_ && *p_ == (c == '{' ? '}' : ']')) {
          ++p_;
          pop();
        } else if (c == '{') {
          if (!key()) return JsonProblem::invalid;
          continue;
        } else {
          continue;  // the array's first value
        }
      } else if (!scalar()) {
        return JsonProblem::invalid;
      }
      // A value ended (a scalar or a container just closed): a comma, a closer, or the end of the text.
      for (;;) {
        if (depth_ == 0) {
          shape_.end = static_cast<std::size_t>(p_ - base_);
          skip_space();
          return p_ == end_ ? JsonProblem::none : JsonProblem::invalid;
        }
        skip_space();
        if (p_ == end_) return JsonProblem::invalid;
        const bool in_object = top();
        if (*p_ == ',') {
          ++p_;
          if (in_object && !key()) return JsonProblem::invalid;
          break;
        }
        if (*p_ != (in_object ? '}' : ']')) return JsonProblem::invalid;
        ++p_;
        pop();
      }
    }
  }

  std::size_t members() const noexcept { return members_; }

 private:
  static constexpr std::size_t kStackBits = 2048;
  static constexpr std::uint32_t kPriority = 1u << 31;

  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // The container stack: bit set = object. Levels below kStackBits live on the stack;
  // deeper ones in heap_, grown with the input's actual depth (never with max_depth).
  std::uint64_t& word(std::size_t i) {
    if (i < kStackBits) return stack_[i / 64];
    const std::size_t w = (i - kStackBits) / 64;
    if (w >= heap_.size()) heap_.resize(w + 1);
    return heap_[w];
  }
  void push(bool object) {
    const std::size_t i = depth_++;
    if (object) {
      word(i) |= std::uint64_t{1} << (i % 64);
    } else {
      word(i) &= ~(std::uint64_t{1} << (i % 64));
    }
  }
  bool top() { return (word(depth_ - 1) >> ((depth_ - 1) % 64)) & 1u; }
  void pop() { --depth_; }

  // A top-level member's value is starting: note which key it belongs to.
  void end_pending() {
    if (depth_ != 1 || !shape_.object) return;
    if (pending_ == kPriority) {
      // A later "priority" replaces an earlier one, as a parser keeps the last; only an integer counts.
      shape_.has_priority = false;
    } else if (pending_ != 0) {
      shape_.result_keys |= pending_;
    }
    pending_ = 0;
  }

  // Reads `"key" :` inside an object.
  bool key() {
    skip_space();
    if (p_ == end_ || *p_ != '"') return false;
    const bool top_level = depth_ == 1;
    char buf[16];
    std::size_t n = 0;
    bool fits = true;
    if (!string(top_level ? buf : nullptr, n, fits)) return false;
    skip_space();
    if (p_ == end_ || *p_ != ':') return false;
    ++p_;
    if (top_level) {
      ++members_;
      pending_ = fits ? key_bit(std::string_view(buf, n)) : 0;
    }
    return true;
  }

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

  bool literal(const char* word, std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
    p_ += n;
    return true;
  }

  bool scalar() {
    const bool at_priority = depth_ == 1 && shape_.object && pending_ == kPriority;
    end_pending();
    switch (*p_) {
      case '"': {
        std::size_t n = 0;
        bool fits = false;
        return string(nullptr, n, fits);
      }
      case 't': return literal("true", 4);
      case 'f': return literal("false", 5);
      case 'n': return literal("null", 4);
      default: return number(at_priority);
    }
  }

  static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

  bool number(bool at_priority) {
    const unsigned char* const start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    if (p_ == end_ || !digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    bool integer = true;
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    const char* first = reinterpret_cast<const char*>(start);
    const char* last = reinterpret_cast<const char*>(p_);
    if (integer) {
      // As nlohmann: a negative integer that fits int64, else one that fits uint64, else a float.
      if (*first == '-') {
        std::int64_t v = 0;
        if (auto r = std::from_chars(first, last, v); r.ec == std::errc{} && r.ptr == last) {
          if (at_priority) set_priority(v);
          return true;
        }
      } else {
        std::uint64_t v = 0;
        if (auto r = std::from_chars(first, last, v); r.ec == std::errc{} && r.ptr == last) {
          if (at_priority) {
            set_priority(v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                             ? std::numeric_limits<std::int64_t>::max()
                             : static_cast<std::int64_t>(v));
          }
          return true;
        }
      }
    }
    return finite_double(first, last);
  }

  // nlohmann refuses a number whose double is not finite. from_chars reports overflow and underflow alike as
  // out of range; an underflow (a tiny value, read as 0) is accepted, so look at the decimal exponent.
  static bool finite_double(const char* first, const char* last) {
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc{}) return true;
    if (r.ec != std::errc::result_out_of_range) return false;
    // Magnitude ~ 10^(digits before the point, leading zeros dropped, + exponent); negative only for zeros
    // before the first significant digit after the point.
    long long mag = 0;
    // Count significant integer digits (or the negative position of the first nonzero fraction digit).
    {
      const char* s = first;
      if (*s == '-') ++s;
      long long int_digits = 0;
      bool nonzero = false;
      for (; s != last && *s != '.' && *s != 'e' && *s != 'E'; ++s) {
        if (*s != '0') nonzero = true;
        if (nonzero) ++int_digits;
      }
      if (nonzero) {
        mag = int_digits;
      } else if (s != last && *s == '.') {
        long long zeros = 0;
        for (++s; s != last && *s == '0'; ++s) ++zeros;
        mag = -zeros;
      }
    }
    const char* e = first;
    while (e != last && *e != 'e' && *e != 'E') ++e;
    long long exp = 0;
    if (e != last) {
      ++e;
      const bool neg = *e == '-';
      if (*e == '+' || *e == '-') ++e;
      for (; e != last; ++e) {
        if (exp < 1'000'000'000) exp = exp * 10 + (*e - '0');
      }
      if (neg) exp = -exp;
    }
    return mag + exp <= 0;  // an underflow; an overflow has a large positive magnitude
  }

  void set_priority(std::int64_t v) {
    shape_.has_priority = true;
    shape_.priority = v;
  }

  // Reads a string starting at the opening quote. When `out` is given, its decoded value goes there while it
  // fits 16 bytes (`fits` says whether it did).
  bool string(char* out, std::size_t& n, bool& fits) {
    ++p_;
    fits = out != nullptr;
    auto put = [&](unsigned char c) {
      if (!fits) return;
      if (n == 16) {
        fits = false;
        return;
      }
      out[n++] = static_cast<char>(c);
    };
    for (;;) {
      if (p_ == end_) return false;
      const unsigned char c = *p_;
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p_ == end_) return false;
        switch (*p_) {
          case '"': case '\\': case '/': put(*p_); ++p_; break;
          case 'b': put('\b'); ++p_; break;
          case 'f': put('\f'); ++p_; break;
          case 'n': put('\n'); ++p_; break;
          case 'r': put('\r'); ++p_; break;
          case 't': put('\t'); ++p_; break;
          case 'u': {
            ++p_;
            int cp = hex4();
            if (cp < 0) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a low surrogate first
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
              p_ += 2;
              const int lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) return false;
              fits = false;  // not ASCII: matches none of the keys looked for
            } else if (cp < 0x80) {
              put(static_cast<unsigned char>(cp));
            } else {
              fits = false;
            }
            break;
          }
          default: return false;
        }
        continue;
      }
      if (c < 0x80) {
        put(c);
        ++p_;
        continue;
      }
      // RFC 3629's table of well-formed sequences.
      const std::size_t left = static_cast<std::size_t>(end_ - p_);
      auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
        return k < left && p_[k] >= lo && p_[k] <= hi;
      };
      std::size_t len = 0;
      if (c >= 0xC2 && c <= 0xDF) {
        len = cont(1) ? 2 : 0;
      } else if (c == 0xE0) {
        len = cont(1, 0xA0) && cont(2) ? 3 : 0;
      } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        len = cont(1) && cont(2) ? 3 : 0;
      } else if (c == 0xED) {
        len = cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
      } else if (c == 0xF0) {
        len = cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
      } else if (c >= 0xF1 && c <= 0xF3) {
        len = cont(1) && cont(2) && cont(3) ? 4 : 0;
      } else if (c == 0xF4) {
        len = cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
      }
      if (len == 0) return false;
      fits = false;
      p_ += len;
    }
  }

  // Four hex digits after \u, or -1.
  int hex4() {
    if (end_ - p_ < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned char h = *p_++;
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        v |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        v |= h - 'A' + 10;
      } else {
        return -1;
      }
    }
    return v;
  }

  const unsigned char* p_;
  const unsigned char* const end_;
  const unsigned char* const base_;
  std::size_t max_depth_;
  JsonShape& shape_;
  std::size_t depth_ = 0;
  std::size_t members_ = 0;
  std::uint32_t pending_ = 0;
  std::uint64_t stack_[kStackBits / 64] = {};
  std::vector<std::uint64_t> heap_;
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
  count_pass();
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
  Validator v(text, max_depth, s);
  p.kind = v.run();
  if (p) {
    s = JsonShape{};
    return p;
  }
  s.empty_object = s.object && v.members() == 0;
  return p;
}

void count_full_parse() noexcept { count_pass(); }

void count_json_passes(bool on) noexcept { g_counting.store(on, std::memory_order_relaxed); }

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
