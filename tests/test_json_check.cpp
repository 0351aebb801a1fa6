// check_json() against nlohmann's strict SAX parser: the same texts are accepted, the same shape is read, on
// hand-written edge cases and on many mutated ones (the result path relies on "check_json accepts" meaning
// "every later parser accepts").
#include "core/json_check.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using edgert::detail::check_json;
using edgert::detail::JsonProblem;
using edgert::detail::JsonShape;
using json = nlohmann::json;

// The reference: nlohmann's SAX parser reading the same shape (the implementation check_json had before it
// got its own validator).
class Reference {
 public:
  Reference(std::size_t max_depth, JsonShape& shape) : max_depth_(max_depth), shape_(shape) {}
  bool too_deep = false;
  std::size_t members = 0;

  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t v) {
    if (at_priority()) set(v);
    return value();
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (at_priority()) {
      set(v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
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
      ++members;
      pending_ = k == "priority"      ? kPriority
                 : k == "stream"      ? edgert::detail::kResultKeyStream
                 : k == "signature"   ? edgert::detail::kResultKeySignature
                 : k == "instance_id" ? edgert::detail::kResultKeyInstanceId
                 : k == "sequence"    ? edgert::detail::kResultKeySequence
                 : k == "captured_at" ? edgert::detail::kResultKeyCapturedAt
                 : k == "detected_at" ? edgert::detail::kResultKeyDetectedAt
                                      : 0u;
    }
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  static constexpr std::uint32_t kPriority = 1u << 31;
  bool at_priority() const { return depth_ == 1 && pending_ == kPriority; }
  void set(std::int64_t v) {
    shape_.has_priority = true;
    shape_.priority = v;
    int_ = true;
  }
  bool value() {
    note();
    return true;
  }
  void note() {
    if (depth_ != 1) return;
    if (pending_ == kPriority) {
      if (!int_) shape_.has_priority = false;
    } else if (pending_ != 0) {
      shape_.result_keys |= pending_;
    }
    pending_ = 0;
    int_ = false;
  }
  bool open() {
    note();
    if (++depth_ > max_depth_) {
      too_deep = true;
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
  std::uint32_t pending_ = 0;
  bool int_ = false;
};

struct Verdict {
  JsonProblem::Kind kind = JsonProblem::none;
  JsonShape shape;
};

Verdict reference(const std::string& text, std::size_t max_depth) {
  Verdict v;
  if (text.empty()) {
    v.kind = JsonProblem::empty;
    return v;
  }
  if (text.find('\0') != std::string::npos) {
    v.kind = JsonProblem::nul_byte;
    return v;
  }
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) {
    v.kind = JsonProblem::byte_order_mark;
    return v;
  }
  Reference r(max_depth, v.shape);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &r, json::input_format_t::json, true);
  } catch (const json::exception&) {
    ok = false;
  }
  if (!ok) {
    v.kind = r.too_deep ? JsonProblem::too_deep : JsonProblem::invalid;
    v.shape = JsonShape{};
    return v;
  }
  auto sp = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t b = 0, e = text.size();
  while (b < e && sp(text[b])) ++b;
  while (e > b && sp(text[e - 1])) --e;
  v.shape.begin = b;
  v.shape.end = e;
  v.shape.empty_object = v.shape.object && r.members == 0;
  return v;
}

std::string show(const std::string& text) {
  std::ostringstream o;
  for (unsigned char c : text.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f) {
      o << c;
    } else {
      o << "\\x" << std::hex << static_cast<int>(c) << std::dec;
    }
  }
  return o.str();
}

// Compares on one text; returns whether they agreed (a CHECK records a disagreement with the text).
bool agree(const std::string& text, std::size_t max_depth) {
  const Verdict want = reference(text, max_depth);
  JsonShape got;
  const JsonProblem p = check_json(text, max_depth, &got);
  const JsonShape& w = want.shape;
  const bool same = p.kind == want.kind && got.object == w.object && got.empty_object == w.empty_object &&
                    got.begin == w.begin && got.end == w.end && got.has_priority == w.has_priority &&
                    (!w.has_priority || got.priority == w.priority) && got.result_keys == w.result_keys &&
                    got.depth == w.depth;
  if (!same) {
    INFO("text: " << show(text) << " (max_depth " << max_depth << ")");
    INFO("kind " << p.kind << " want " << want.kind << "; object " << got.object << "/" << w.object << "; empty "
                 << got.empty_object << "/" << w.empty_object << "; begin " << got.begin << "/" << w.begin
                 << "; end " << got.end << "/" << w.end << "; priority " << got.has_priority << ":" << got.priority
                 << "/" << w.has_priority << ":" << w.priority << "; keys " << got.result_keys << "/"
                 << w.result_keys << "; depth " << got.depth << "/" << w.depth);
    CHECK(same);
  }
  return same;
}

const std::vector<std::string>& edge_cases() {
  static const std::vector<std::string> cases = {
      "0", "-0", "1", "-1", "01", "-", "+1", "1.", ".5", "1.5", "1e5", "1E+5", "1e-5", "1e", "1e+", "-01",
      "1.0e400", "1e309", "1e308", "-1e309", "1e-400", "0.0000000000000000000000001e-400", "123456789e300",
      "0e99999999999", "1e-99999999999", "99999999999999999999", "18446744073709551615", "18446744073709551616",
      "-9223372036854775808", "-9223372036854775809", std::string(400, '9'), std::string("0.").append(400, '0').append("1"),
      "true", "false", "null", "tru", "nul", "True", "truee", "[]", "{}", "[", "]", "{", "}", "[1,]", "[,1]",
      "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{1:1}", "{\"a\":}", " {\"a\" : [ 1 , {\"b\":null} ] } ", "\t\n\r 7 \r\n",
      "1 2", "\"a\"\"b\"", "\"\"", "\"\\u0000\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"",
      "\"\\ud83d\\u0041\"", "\"\\u12\"", "\"\\x41\"", "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"", "\"\x1f\"", "\"\x7f\"",
      "\"\xc3\xa9\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
      "\"\xf0\x9f\x98\x80\"", "\"\xff\"", "\"\xc3\"", "\"unterminated", "{\"priority\":5}",
      "{\"priority\":-5,\"priority\":7}", "{\"priority\":5,\"priority\":\"x\"}", "{\"priority\":1.5}",
      "{\"priority\":99999999999999999999}", "{\"priority\":18446744073709551615}", "{\"priority\":[5]}",
      "{\"a\":{\"priority\":5}}", "[{\"priority\":5}]", "{\"pri\\u006frity\":3}", "{\"stream\":1,\"signature\":2}",
      "{\"instance_id\":{},\"sequence\":[],\"captured_at\":0,\"detected_at\":null}", "{\"stream\\u0000\":1}",
      "{\"a\":{\"stream\":1}}", "{\"streams\":1}", "{\"\xc3\xa9stream\":1}", "[[[[[]]]]]", "[[[[[[]]]]]]",
      "{\"a\":[{\"b\":[[{}]]}]}", "{\"a\":1}x", "{\"a\":1}{}", "\xEF\xBB\xBF{}", std::string("{\"a\":\"\0\"}", 9), " ", "",
      // Float boundaries and exponents (review of the validator).
      "1.7976931348623157e308", "1.7976931348623159e308", "4.9e-324", "2e-324", "-1e-400",
      std::string("0.").append(400, '0').append("1e800"), std::string("1").append(400, '0').append("e-300"), "1e0400", "1e-0",
      "{\"priority\":-9223372036854775809}", "{\"priority\":true}", "{\"priority\":5,\"priority\":{}}",
      // Input that ends early, and UTF-8 lead and continuation bytes.
      "\"\\ud83d", "\"\\ud83d\\", "\"\\u12", "\"\xc3", "\"\xf0\x9f\x98", "\"\x80\"", "\"\xc1\xbf\"",
      "\"\xf5\x80\x80\x80\"", "\"\xe0\x9f\xbf\"", "\"\xf0\x8f\xbf\xbf\"", "\"\xed\x9f\xbf\"",
      "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "[1,\f2]", "[1,\v2]", "[1,\xa0 2]",
      // Keys: 16 and 17 bytes, fully escaped, a surrogate pair.
      "{\"abcdefghijklmnop\":1}", "{\"abcdefghijklmnopq\":1}",
      "{\"\\u0070\\u0072\\u0069\\u006f\\u0072\\u0069\\u0074\\u0079\":4}", "{\"\\ud83d\\ude00\":1}",
  };
  return cases;
}

}  // namespace

TEST_CASE("check_json agrees with nlohmann on edge cases", "[json_check]") {
  for (const auto& text : edge_cases()) {
    for (std::size_t depth : {std::size_t{1}, std::size_t{3}, std::size_t{5}, std::size_t{64}}) agree(text, depth);
  }
}

TEST_CASE("check_json mixed nesting and extreme limits", "[json_check]") {
  // Alternating objects and arrays past 64 and past the on-stack 2048 levels: a bit left set by an object must
  // not make a later array at the same level expect a key.
  for (std::size_t n : {std::size_t{70}, std::size_t{2100}}) {
    // Built by appending only: gcc 12 at -O3 warns falsely (-Wrestrict) on insert(0, ...) and "lit" + string.
    std::string text;
    for (std::size_t i = 0; i < n; ++i) text += i % 2 ? "[" : "{\"k\":";
    text += '1';
    for (std::size_t i = n; i-- > 0;) text += i % 2 ? ']' : '}';
    for (std::size_t limit : {n - 1, n, std::size_t{5000}}) agree(text, limit);
    std::string pair = "[";
    pair.append(text).append(",").append(text).append("]");
    agree(pair, n + 1);
  }
  // A huge limit costs nothing up front (the stack grows with the text, not the limit).
  agree(R"({"a":[1,2,{"b":null}]})", std::numeric_limits<std::size_t>::max());
  agree("[]", 0);
  agree("1", 0);
}

TEST_CASE("check_json depth limit past the on-stack stack", "[json_check]") {
  for (std::size_t n : {std::size_t{2047}, std::size_t{2048}, std::size_t{2049}, std::size_t{5000}}) {
    std::string arrays(n, '[');
    arrays.append(n, ']');
    std::string objects;
    for (std::size_t i = 0; i < n; ++i) objects += "{\"k\":";
    objects += '1';
    objects.append(n, '}');
    for (std::size_t limit : {n - 1, n, n + 1}) {
      agree(arrays, limit);
      agree(objects, limit);
    }
  }
}

TEST_CASE("check_json agrees with nlohmann on mutated documents", "[json_check]") {
  const std::vector<std::string> seeds = {
      R"({"stream":"cam","priority":3,"boxes":[{"x":1.5e2,"y":-0.25,"label":"\u00e9t\u00e9"}],"ok":true})",
      R"([1,-2,3.0e-2,"a\"b\\c\/",null,false,{"priority":"high"},{"k":[[[]]]}])",
      "{\"t\":\"\xe2\x82\xac\xf0\x9f\x98\x80\",\"s\":\"\\ud83d\\ude00\",\"n\":18446744073709551616}",
      R"({"priority":-9223372036854775808,"sequence":1,"detected_at":1e308,"signature":{}})",
  };
  const std::string alphabet = "{}[]\":,\\ u0123456789abcdefABCDEF.eE+-tnrlsx\t\n";
  const unsigned char specials[] = {0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xff};
  std::mt19937 rng(20261207);
  int disagreements = 0, accepted = 0;
  const int rounds = 20000;
  for (int i = 0; i < rounds && disagreements < 5; ++i) {
    std::string t = seeds[static_cast<std::size_t>(i) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits && !t.empty(); ++k) {
      const std::size_t at = rng() % t.size();
      const unsigned pick = rng() % 10;
      char c = pick < 8 ? alphabet[rng() % alphabet.size()]
                        : static_cast<char>(specials[rng() % sizeof(specials)]);
      switch (rng() % 3) {
        case 0: t[at] = c; break;
        case 1: t.insert(at, 1, c); break;
        default: t.erase(at, 1); break;
      }
    }
    const std::size_t depth = 1 + rng() % 6;
    if (!agree(t, depth)) ++disagreements;
    JsonShape s;
    if (!check_json(t, depth, &s)) ++accepted;
  }
  CHECK(disagreements == 0);
  // The mutations must exercise both answers, or the comparison proves little.
  CHECK(accepted > rounds / 20);
  CHECK(accepted < rounds - rounds / 20);
}
