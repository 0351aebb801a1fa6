// The configuration schema engine: key tables that read YAML mappings into typed
// structs, collect every error with its file:line, and list the keys that can be
// overridden from the environment. Each module declares its section's table in its
// own folder (src/<area>/<area>_config.cpp); src/config/config.cpp assembles them.
//
// Internal: yaml-cpp types appear here, so this header never goes under include/.
#pragma once

#include <edgert/config_object.hpp>
#include <edgert/status.hpp>

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace edgert::config {

inline constexpr std::size_t kMaxReportedErrors = 20;
inline constexpr int kMaxObjectDepth = 32;           // levels inside one free-form object
inline constexpr std::size_t kMaxObjectNodes = 100000;  // values in one free-form object (aliases expand)

/// Collects errors ("where: path: what") and carries what a read needs to know.
class Context {
 public:
  explicit Context(std::string file) : file_(std::move(file)) {}

  /// "file:line" of `node`; while an override is set (environment), that text instead.
  std::string where(const YAML::Node& node) const;
  void add(const std::string& where, const std::string& path, const std::string& what);
  void add(const YAML::Node& at, const std::string& path, const std::string& what) { add(where(at), path, what); }
  /// All errors so far, one per line, at most kMaxReportedErrors then "... and N more".
  Status status() const;
  std::size_t errors() const { return total_; }

  /// While set, every error is located there (environment variables have no line).
  void set_location_override(std::optional<std::string> where) { override_ = std::move(where); }

 private:
  std::string file_;
  std::optional<std::string> override_;
  std::vector<std::string> lines_;
  std::size_t total_ = 0;
};

/// "a list", "a mapping", "nothing" or the scalar quoted: for "expected X, got Y".
std::string describe(const YAML::Node& node);
/// " (did you mean 'x'?)" or " (known: a, b, c)".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);
/// The closest of `known` to `word`, or "" when none is close.
std::string closest(const std::string& word, const std::vector<std::string>& known);
std::string join_path(const std::string& path, const std::string& key);
std::string upper(std::string s);

// ---- values -------------------------------------------------------------------------

/// Reads a scalar into T; returns "" or "expected X, got Y".
std::string read_value(const YAML::Node& node, std::string& out);
std::string read_value(const YAML::Node& node, bool& out);
std::string read_value(const YAML::Node& node, std::int64_t& out);
std::string read_value(const YAML::Node& node, double& out);  // accepts .inf/.nan; rules refuse them
std::string read_value(const YAML::Node& node, std::vector<std::string>& out);
std::string read_value(const YAML::Node& node, std::map<std::string, std::string>& out);

/// A check on a value read; returns "" or the complete complaint. `raw` is the text given.
template <class T>
using Rule = std::function<std::string(const T& value, const std::string& raw)>;

Rule<std::int64_t> between(std::int64_t lo, std::int64_t hi);
Rule<std::int64_t> at_least(std::int64_t lo);
Rule<double> number_between(double lo, double hi);          // refuses nan and infinities
Rule<double> zero_or_between(double lo, double hi, const char* zero_means);
Rule<std::int64_t> zero_or_range(std::int64_t lo, std::int64_t hi, const char* zero_means);
Rule<double> finite();
Rule<std::string> non_empty();
Rule<std::string> one_of(std::vector<std::string> words);

/// The members of `map` (in order) that no key table claimed become `out`.
void read_object(const std::vector<std::pair<YAML::Node, YAML::Node>>& members, const YAML::Node& map,
                 const std::string& path, ConfigObject& out, Context& ctx);

// ---- tables -------------------------------------------------------------------------

/// An environment variable that sets one key: EDGERT_<SECTION>_<KEY>.
struct EnvSlot {
  std::string var;
  std::function<void(const std::string& text, Context& ctx)> apply;
};

template <class S>
class Table {
 public:
  /// `noun` names an unknown key in messages: "unknown key 'node.x'", "unknown section 'x'".
  explicit Table(std::string noun = "key") : noun_(std::move(noun)) {}

  /// A scalar (or list/map of strings) member; settable from the environment.
  template <class T>
  Table& key(std::string name, T S::*member, Rule<T> rule = {}) {
    if constexpr (std::is_same_v<T, double>) {
      if (!rule) rule = finite();
    }
    Entry e;
    e.name = std::move(name);
    e.read = [member, rule](const YAML::Node& v, S& out, const std::string& path, Context& ctx) {
      T value{};
      if (auto what = read_value(v, value); !what.empty()) return ctx.add(v, path, what);
      if (rule) {
        if (auto what = rule(value, v.IsScalar() ? v.Scalar() : std::string()); !what.empty()) {
          return ctx.add(v, path, what);
        }
      }
      out.*member = std::move(value);
    };
    e.env_yaml = !std::is_same_v<T, std::string> && !std::is_arithmetic_v<T>;
    e.env = true;
    entries_.push_back(std::move(e));
    return *this;
  }

  /// A path (or list of paths): relative values resolve against the config file's folder.
  template <class T>
  Table& path_key(std::string name, T S::*member, Rule<T> rule = {}) {
    key(name, member, std::move(rule));
    entries_.back().resolve = [member](S& out, const std::filesystem::path& base) {
      auto fix = [&](std::string& p) {
        if (!p.empty() && std::filesystem::path(p).is_relative()) p = (base / p).lexically_normal().string();
      };
      if constexpr (std::is_same_v<T, std::string>) {
        fix(out.*member);
      } else {
        for (auto& p : out.*member) fix(p);
      }
    };
    return *this;
  }

  /// A word from a fixed list, stored as an enum.
  template <class E>
  Table& word(std::string name, E S::*member, std::vector<std::pair<std::string, E>> words) {
    Entry e;
    e.name = std::move(name);
    e.read = [member, words](const YAML::Node& v, S& out, const std::string& path, Context& ctx) {
      std::string text;
      std::string list;
      for (const auto& [w, value] : words) list += (list.empty() ? "" : ", ") + w;
      if (read_value(v, text).empty()) {
        for (const auto& [w, value] : words) {
          if (w == text) {
            out.*member = value;
            return;
          }
        }
      }
      ctx.add(v, path, "expected one of " + list + "; got " + describe(v));
    };
    e.env = true;
    entries_.push_back(std::move(e));
    return *this;
  }

  /// A nested mapping read with its own table (a section, or `capture:`).
  template <class M>
  Table& section(std::string name, M S::*member, const Table<M>& table) {
    Entry e;
    e.name = std::move(name);
    e.read = [member, &table](const YAML::Node& v, S& out, const std::string& path, Context& ctx) {
      if (v.IsNull()) return;
      table.read(v, out.*member, path, ctx);
    };
    e.env_slots = [member, &table](S& out, const std::string& var, const std::string& path,
                                    std::vector<EnvSlot>& slots) { table.env_slots(out.*member, var, path, slots); };
    e.resolve = [member, &table](S& out, const std::filesystem::path& base) { table.resolve(out.*member, base); };
    entries_.push_back(std::move(e));
    return *this;
  }

  /// An optional nested mapping: present when the key is given.
  template <class M>
  Table& optional_section(std::string name, std::optional<M> S::*member, const Table<M>& table) {
    Entry e;
    e.name = std::move(name);
    e.read = [member, &table](const YAML::Node& v, S& out, const std::string& path, Context& ctx) {
      table.read(v, (out.*member).emplace(), path, ctx);
    };
    entries_.push_back(std::move(e));
    return *this;
  }

  /// A list of mappings, each read with `table`; items are named "path[i]".
  template <class M>
  Table& items(std::string name, std::vector<M> S::*member, const Table<M>& table) {
    Entry e;
    e.name = std::move(name);
    e.read = [member, &table](const YAML::Node& v, S& out, const std::string& path, Context& ctx) {
      if (v.IsNull()) return;
      if (!v.IsSequence()) return ctx.add(v, path, "expected a list of mappings, got " + describe(v));
      auto& list = out.*member;
      for (std::size_t i = 0; i < v.size(); ++i) {
        table.read(v[i], list.emplace_back(), path + "[" + std::to_string(i) + "]", ctx);
      }
    };
    entries_.push_back(std::move(e));
    return *this;
  }

  /// A key that no longer exists; `what` says what it became (an error if given).
  Table& removed(std::string name, std::string what) {
    Entry e;
    e.name = std::move(name);
    e.removed = std::move(what);
    e.env = true;
    entries_.push_back(std::move(e));
    return *this;
  }

  /// The last key added must be given.
  Table& required() {
    entries_.back().required = true;
    return *this;
  }

  /// Keys no entry claims become this free-form object instead of errors.
  Table& rest_into(ConfigObject S::*member) {
    rest_ = member;
    return *this;
  }

  /// Stores the mapping's "file:line" in `member`.
  Table& where_into(std::string S::*member) {
    where_ = member;
    return *this;
  }

  /// A check over the whole struct once its keys are read (exclusive keys, uniqueness).
  Table& check(std::function<void(const S&, const YAML::Node& map, const std::string& path, Context&)> fn) {
    checks_.push_back(std::move(fn));
    return *this;
  }

  void read(const YAML::Node& map, S& out, const std::string& path, Context& ctx) const {
    if (!map.IsMap()) return ctx.add(map, path, "expected a mapping, got " + describe(map));
    if (where_) out.*where_ = ctx.where(map);
    std::map<std::string, std::string> seen;
    std::vector<std::pair<YAML::Node, YAML::Node>> rest;
    for (const auto& kv : map) {
      if (!kv.first.IsScalar()) {
        ctx.add(kv.first, path, "expected a key name, got " + describe(kv.first));
        continue;
      }
      const std::string name = kv.first.Scalar();
      const std::string kpath = join_path(path, name);
      if (auto [it, fresh] = seen.emplace(name, ctx.where(kv.first)); !fresh) {
        ctx.add(kv.first, kpath, "given twice, first at " + it->second);
        continue;
      }
      const Entry* e = find(name);
      if (!e && rest_) {
        rest.emplace_back(kv.first, kv.second);
      } else if (!e) {
        ctx.add(kv.first, "", "unknown " + noun_ + " '" + kpath + "'" + did_you_mean(name, names()));
      } else if (!e->removed.empty()) {
        ctx.add(kv.first, kpath, e->removed);
      } else {
        e->read(kv.second, out, kpath, ctx);
      }
    }
    if (rest_) read_object(rest, map, path, out.*rest_, ctx);
    for (const auto& e : entries_) {
      if (e.required && !seen.count(e.name)) ctx.add(map, join_path(path, e.name), "required, not given");
    }
    for (const auto& fn : checks_) fn(out, map, path, ctx);
  }

  /// Every key of this table (and nested sections) that EDGERT_<...>_<KEY> can set.
  void env_slots(S& out, const std::string& var, const std::string& path, std::vector<EnvSlot>& slots) const {
    for (const auto& e : entries_) {
      const std::string v = var + "_" + upper(e.name);
      const std::string p = join_path(path, e.name);
      if (e.env_slots) {
        e.env_slots(out, v, p, slots);
      } else if (!e.removed.empty()) {
        slots.push_back({v, [p, what = e.removed](const std::string&, Context& ctx) { ctx.add("", p, what); }});
      } else if (e.env) {
        slots.push_back({v, [&e, &out, p](const std::string& text, Context& ctx) {
                           YAML::Node node(text);
                           if (e.env_yaml) {
                             try {
                               node = YAML::Load(text);
                             } catch (const YAML::Exception& ex) {
                               return ctx.add("", p, "YAML syntax error: " + ex.msg);
                             }
                           }
                           e.read(node, out, p, ctx);
                         }});
      }
    }
  }

  /// Resolves relative path keys against `base`.
  void resolve(S& out, const std::filesystem::path& base) const {
    for (const auto& e : entries_) {
      if (e.resolve) e.resolve(out, base);
    }
  }

 private:
  struct Entry {
    std::string name;
    std::function<void(const YAML::Node&, S&, const std::string&, Context&)> read;
    std::function<void(S&, const std::string&, const std::string&, std::vector<EnvSlot>&)> env_slots;
    std::function<void(S&, const std::filesystem::path&)> resolve;
    std::string removed;
    bool env = false;
    bool env_yaml = false;
    bool required = false;
  };

  const Entry* find(const std::string& name) const {
    for (const auto& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) {
      if (e.removed.empty()) out.push_back(e.name);
    }
    return out;
  }

  std::string noun_;
  std::vector<Entry> entries_;
  std::vector<std::function<void(const S&, const YAML::Node&, const std::string&, Context&)>> checks_;
  ConfigObject S::*rest_ = nullptr;
  std::string S::*where_ = nullptr;
};

}  // namespace edgert::config
