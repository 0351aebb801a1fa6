#include "config/schema.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace edgert::config {

std::string Context::where(const YAML::Node& node) const {
  if (override_) return *override_;
  const auto mark = node.Mark();
  if (mark.line < 0) return file_;
  return file_ + ":" + std::to_string(mark.line + 1);
}

void Context::add(const std::string& where, const std::string& path, const std::string& what) {
  ++total_;
  if (lines_.size() >= kMaxReportedErrors) return;
  const std::string& at = override_ ? *override_ : where;
  std::string line = at;
  if (!path.empty()) line += (line.empty() ? "" : ": ") + path;
  line += (line.empty() ? "" : ": ") + what;
  lines_.push_back(std::move(line));
}

Status Context::status() const {
  if (total_ == 0) return {};
  std::string msg;
  for (const auto& l : lines_) msg += (msg.empty() ? "" : "\n") + l;
  if (total_ > lines_.size()) msg += "\n... and " + std::to_string(total_ - lines_.size()) + " more";
  return {ErrorCode::config_error, msg};
}

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "nothing";
}

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::string closest(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& k : known) {
    const auto d = edit_distance(word, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  if (auto best = closest(word, known); !best.empty()) return " (did you mean '" + best + "'?)";
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  return " (known: " + list + ")";
}

std::string join_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// ---- values -------------------------------------------------------------------------

namespace {
template <class T>
std::string convert_scalar(const YAML::Node& node, T& out, const char* expected) {
  if (node.IsScalar()) {
    try {
      out = node.as<T>();
      return {};
    } catch (const YAML::Exception&) {
    }
  }
  return std::string("expected ") + expected + ", got " + describe(node);
}
}  // namespace

std::string read_value(const YAML::Node& node, std::string& out) {
  if (!node.IsScalar()) return "expected a string, got " + describe(node);
  out = node.Scalar();
  return {};
}
std::string read_value(const YAML::Node& node, bool& out) { return convert_scalar(node, out, "true or false"); }
std::string read_value(const YAML::Node& node, std::int64_t& out) {
  return convert_scalar(node, out, "an integer");
}
std::string read_value(const YAML::Node& node, double& out) { return convert_scalar(node, out, "a number"); }

std::string read_value(const YAML::Node& node, std::vector<std::string>& out) {
  out.clear();
  if (node.IsNull()) return {};
  if (node.IsSequence()) {
    for (const auto& item : node) {
      if (!item.IsScalar()) return "expected a list of strings, got " + describe(item) + " in the list";
      out.push_back(item.Scalar());
    }
    return {};
  }
  return "expected a list of strings, got " + describe(node);
}

std::string read_value(const YAML::Node& node, std::map<std::string, std::string>& out) {
  out.clear();
  if (node.IsNull()) return {};
  if (!node.IsMap()) return "expected a mapping of strings to strings, got " + describe(node);
  std::map<std::string, int> lines;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
      return "expected a mapping of strings to strings, got " + describe(kv.second) + " for " + describe(kv.first);
    }
    const int line = kv.first.Mark().line + 1;
    if (auto [it, fresh] = lines.emplace(kv.first.Scalar(), line); !fresh) {
      return "'" + kv.first.Scalar() + "' given twice (lines " + std::to_string(it->second) + " and " +
             std::to_string(line) + ")";
    }
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return {};
}

Rule<std::int64_t> between(std::int64_t lo, std::int64_t hi) {
  return [lo, hi](const std::int64_t& v, const std::string& raw) -> std::string {
    if (v >= lo && v <= hi) return {};
    return "expected within [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + raw;
  };
}

Rule<std::int64_t> at_least(std::int64_t lo) {
  return [lo](const std::int64_t& v, const std::string& raw) -> std::string {
    return v >= lo ? std::string() : "expected >= " + std::to_string(lo) + ", got " + raw;
  };
}

Rule<double> number_between(double lo, double hi) {
  return [lo, hi](const double& v, const std::string& raw) -> std::string {
    if (v >= lo && v <= hi) return {};  // false for nan
    return "expected within [" + format_number(lo) + ", " + format_number(hi) + "], got " + raw;
  };
}

Rule<double> zero_or_between(double lo, double hi, const char* zero_means) {
  return [lo, hi, zero_means](const double& v, const std::string& raw) -> std::string {
    if (v == 0 || (v >= lo && v <= hi)) return {};
    return "expected 0 (" + std::string(zero_means) + ") or within [" + format_number(lo) + ", " +
           format_number(hi) + "], got " + raw;
  };
}

Rule<std::int64_t> zero_or_range(std::int64_t lo, std::int64_t hi, const char* zero_means) {
  return [lo, hi, zero_means](const std::int64_t& v, const std::string& raw) -> std::string {
    if (v == 0 || (v >= lo && v <= hi)) return {};
    return "expected 0 (" + std::string(zero_means) + ") or within [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "], got " + raw;
  };
}

Rule<double> finite() {
  return [](const double& v, const std::string& raw) -> std::string {
    return std::isfinite(v) ? std::string() : "expected a finite number, got " + raw;
  };
}

Rule<std::string> non_empty() {
  return [](const std::string& v, const std::string&) -> std::string {
    return v.empty() ? "must not be empty" : "";
  };
}

Rule<std::string> one_of(std::vector<std::string> words) {
  return [words = std::move(words)](const std::string& v, const std::string&) -> std::string {
    std::string list;
    for (const auto& w : words) {
      if (v == w) return "";
      list += (list.empty() ? "" : ", ") + w;
    }
    return "expected one of " + list + "; got '" + v + "'";
  };
}

// ---- free-form objects --------------------------------------------------------------

namespace {

std::string escape_pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

bool is_one_of(const std::string& s, std::initializer_list<const char*> words) {
  return std::any_of(words.begin(), words.end(), [&](const char* w) { return s == w; });
}

// YAML 1.2 core schema for plain scalars; quoted scalars (tag "!") stay strings.
// Returns false (and says why) for values JSON cannot carry.
bool scalar_to_json(const YAML::Node& node, nlohmann::json& out, std::string& why) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") {
    out = s;
    return true;
  }
  if (is_one_of(s, {"", "~", "null", "Null", "NULL"})) {
    out = nullptr;
    return true;
  }
  if (is_one_of(s, {"true", "True", "TRUE"})) {
    out = true;
    return true;
  }
  if (is_one_of(s, {"false", "False", "FALSE"})) {
    out = false;
    return true;
  }
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (is_one_of(lower, {".inf", "+.inf", "-.inf", ".nan"})) {
    why = "expected a finite number, got '" + s + "'";
    return false;
  }
  const char* first = s.data();
  const char* last = s.data() + s.size();
  const char* digits = (*first == '-' || *first == '+') ? first + 1 : first;
  if (digits == last) {
    out = s;
    return true;
  }
  if (std::all_of(digits, last, [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t v = 0;
    const auto r = std::from_chars(*first == '+' ? first + 1 : first, last, v);
    if (r.ec == std::errc() && r.ptr == last) {
      out = v;
      return true;
    }
  }
  // A decimal or exponent number: digits, at most one '.', an optional exponent.
  bool any_digit = false;
  bool dot = false;
  const char* p = digits;
  for (; p != last && ((*p >= '0' && *p <= '9') || (*p == '.' && !dot)); ++p) {
    if (*p == '.') {
      dot = true;
    } else {
      any_digit = true;
    }
  }
  if (any_digit && p != last && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p != last && (*p == '-' || *p == '+')) ++p;
    const char* exp = p;
    while (p != last && *p >= '0' && *p <= '9') ++p;
    if (p == exp) any_digit = false;
  }
  if (any_digit && p == last) {
    const double v = std::strtod(s.c_str(), nullptr);
    if (!std::isfinite(v)) {
      why = "expected a finite number, got '" + s + "'";
      return false;
    }
    out = v;
    return true;
  }
  out = s;
  return true;
}

struct ObjectBuilder {
  ConfigObject& obj;
  Context& ctx;
  std::size_t nodes = 0;
  bool too_many = false;

  std::string dotted(const std::string& path, const std::string& key) const { return join_path(path, key); }

  void value(const YAML::Node& node, const YAML::Node& key_node, const std::string& pointer, const std::string& path,
             int depth, nlohmann::json& out) {
    obj.locations[pointer] = ctx.where(key_node);
    if (++nodes > kMaxObjectNodes) {
      if (!too_many) ctx.add(node, path, "more than " + std::to_string(kMaxObjectNodes) + " values in one object");
      too_many = true;
      return;
    }
    if (depth > kMaxObjectDepth) {
      ctx.add(node, path, "nested deeper than " + std::to_string(kMaxObjectDepth) + " levels");
      return;
    }
    if (node.IsMap()) {
      out = nlohmann::json::object();
      std::map<std::string, std::string> seen;
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          ctx.add(kv.first, path, "expected a key name, got " + describe(kv.first));
          continue;
        }
        const std::string& k = kv.first.Scalar();
        if (auto [it, fresh] = seen.emplace(k, ctx.where(kv.first)); !fresh) {
          ctx.add(kv.first, dotted(path, k), "given twice, first at " + it->second);
          continue;
        }
        value(kv.second, kv.first, pointer + "/" + escape_pointer_token(k), dotted(path, k), depth + 1, out[k]);
      }
    } else if (node.IsSequence()) {
      out = nlohmann::json::array();
      for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        out.push_back(nullptr);
        value(item, item, pointer + "/" + std::to_string(i), path + "[" + std::to_string(i) + "]", depth + 1,
              out.back());
      }
    } else if (node.IsScalar()) {
      std::string why;
      if (!scalar_to_json(node, out, why)) ctx.add(node, path, why);
    } else {
      out = nullptr;
    }
  }
};

}  // namespace

void read_object(const std::vector<std::pair<YAML::Node, YAML::Node>>& members, const YAML::Node& map,
                 const std::string& path, ConfigObject& out, Context& ctx) {
  out.path = path;
  out.locations.clear();
  out.locations[""] = ctx.where(map);
  ObjectBuilder b{out, ctx};
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [k, v] : members) {
    const std::string& key = k.Scalar();
    // Built by appending: gcc 12 at -O3 misreports `"/" + std::string` (-Wrestrict).
    std::string pointer = "/";
    pointer += escape_pointer_token(key);
    b.value(v, k, pointer, join_path(path, key), 1, json[key]);
  }
  out.json = json.dump();
}

}  // namespace edgert::config
