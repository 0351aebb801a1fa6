#include <edgert/config_object.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <vector>

namespace edgert {
namespace {

// Splits an RFC 6901 pointer into unescaped tokens; false when malformed.
bool split_pointer(std::string_view pointer, std::vector<std::string>& tokens) {
  if (pointer.empty()) return true;
  if (pointer.front() != '/') return false;
  std::string cur;
  for (std::size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(cur);
      cur.clear();
    } else if (pointer[i] == '~') {
      if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) return false;
      cur += pointer[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      cur += pointer[i];
    }
  }
  return true;
}

}  // namespace

std::string ConfigObject::where(std::string_view pointer) const {
  std::string p(pointer);
  for (;;) {
    if (auto it = locations.find(p); it != locations.end()) return it->second;
    if (p.empty()) return {};
    p.erase(p.rfind('/') == std::string::npos ? 0 : p.rfind('/'));
  }
}

std::string ConfigObject::key_path(std::string_view pointer) const {
  std::vector<std::string> tokens;
  if (!split_pointer(pointer, tokens)) return path + (path.empty() ? "" : " ") + std::string(pointer);
  // Array indices print as [i]; knowing which tokens index arrays needs the document.
  const auto doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json* node = doc.is_discarded() ? nullptr : &doc;
  std::string out = path;
  for (const auto& t : tokens) {
    if (node && node->is_array()) {
      out += "[" + t + "]";
      std::size_t i = 0;
      const auto r = std::from_chars(t.data(), t.data() + t.size(), i);
      const bool index = !t.empty() && r.ec == std::errc() && r.ptr == t.data() + t.size() && i < node->size();
      node = index ? &(*node)[i] : nullptr;
    } else {
      out += (out.empty() ? "" : ".") + t;
      node = (node && node->is_object() && node->contains(t)) ? &(*node)[t] : nullptr;
    }
  }
  return out;
}

std::string ConfigObject::error_message(std::string_view pointer, std::string_view what) const {
  std::string at = where(pointer);
  std::string out = at.empty() ? std::string() : at + ": ";
  const std::string key = key_path(pointer);
  if (!key.empty()) out += key + ": ";
  return out + std::string(what);
}

}  // namespace edgert
