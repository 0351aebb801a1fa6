// The plugin scan cache file: reading it defensively, matching entries by file identity
// and SHA-256, and rewriting it atomically (contract in scan_cache.hpp).
#include "plugins/scan_cache.hpp"
#include "plugins/search_paths.hpp"

#include <edgert/version.hpp>

#include "core/json_depth.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "plugins/sha256.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace edgert::detail {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kFormatName = "edgert plugin scan cache";
// root {} > entries [] > entry {} > plugins [] > plugin {}: anything deeper is not ours,
// and is refused before the recursive parser sees it.
constexpr std::size_t kMaxDepth = 6;

std::optional<struct stat> stat_of(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

bool same_stat(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && mtime_ns(a) == mtime_ns(b) && a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// One entry of the file; throws std::exception naming the fault.
std::pair<std::string, FileIdentity> read_entry(const json& e, json& plugins) {
  if (!e.is_object()) throw std::runtime_error("an entry is not an object");
  const std::string path = e.at("path").get<std::string>();
  FileIdentity id;
  id.size = e.at("size").get<std::uint64_t>();
  id.mtime_ns = e.at("mtime_ns").get<std::int64_t>();
  id.inode = e.at("inode").get<std::uint64_t>();
  id.device = e.at("device").get<std::uint64_t>();
  id.sha256 = e.at("sha256").get<std::string>();
  if (path.empty()) throw std::runtime_error("an entry has an empty path");
  if (!is_hex64(id.sha256)) throw std::runtime_error("entry " + path + ": sha256 is not 64 lower-case hex digits");
  plugins = e.at("plugins");
  if (!plugins.is_array() || plugins.empty()) throw std::runtime_error("entry " + path + ": plugins is not a list");
  return {path, id};
}

}  // namespace

std::optional<FileIdentity> identify_file(const std::string& path) {
  const auto before = stat_of(path);
  if (!before || !S_ISREG(before->st_mode)) return std::nullopt;
  auto digest = sha256_file_hex(path);
  const auto after = stat_of(path);
  if (!digest || !after || !same_stat(*before, *after)) return std::nullopt;
  FileIdentity id;
  id.size = static_cast<std::uint64_t>(after->st_size);
  id.mtime_ns = mtime_ns(*after);
  id.inode = static_cast<std::uint64_t>(after->st_ino);
  id.device = static_cast<std::uint64_t>(after->st_dev);
  id.sha256 = std::move(*digest);
  return id;
}

ScanCache ScanCache::load(const std::string& path) {
  ScanCache cache;
  cache.path_ = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) return cache;  // first run: nothing to say
  auto corrupt = [&](const std::string& why) {
    log().warn("plugin scan cache {}: {}; ignoring it, every plugin is scanned again", printable(path, kMaxLoggedText),
               printable(why, kMaxLoggedText));
    cache.entries_.clear();
    cache.dirty_ = true;  // rewritten after this scan
    return std::move(cache);
  };
  const auto size = fs::file_size(path, ec);
  if (ec) return corrupt("cannot read its size: " + ec.message());
  if (size > kMaxFileBytes) {
    return corrupt(std::to_string(size) + " bytes, over the limit of " + std::to_string(kMaxFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return corrupt(std::string("cannot open it: ") + std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return corrupt("cannot read it");
  if (json_depth(text, kMaxDepth) > kMaxDepth) return corrupt("nested deeper than a scan cache is");
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return corrupt("not a JSON object (" + std::to_string(text.size()) + " bytes; truncated or overwritten?)");
  }
  try {
    const auto format = doc.value("format", std::string());
    const auto version = doc.value("version", -1);
    const auto written_by = doc.value("edgert_version", std::string());
    if (format != kFormatName) return corrupt("not a scan cache (format '" + format + "')");
    if (version != kFormat || written_by != EDGERT_VERSION_STRING) {
      log().info("plugin scan cache {} was written by edgert {} (format {}), this is {} (format {}): ignoring it, "
                 "every plugin is scanned again",
                 printable(path, kMaxLoggedText), printable(written_by, 40), version, EDGERT_VERSION_STRING, kFormat);
      cache.dirty_ = true;
      return cache;
    }
    const json& entries = doc.at("entries");
    if (!entries.is_array()) throw std::runtime_error("entries is not a list");
    for (const auto& e : entries) {
      json plugins;
      auto [file, id] = read_entry(e, plugins);
      cache.entries_[file] = Entry{std::move(id), std::move(plugins), false};
    }
  } catch (const std::exception& e) {
    return corrupt(e.what());
  }
  return cache;
}

const json* ScanCache::find(const std::string& canonical, const FileIdentity& id) {
  auto it = entries_.find(canonical);
  if (it == entries_.end()) return nullptr;
  it->second.used = true;
  return it->second.id == id ? &it->second.plugins : nullptr;
}

void ScanCache::put(const std::string& canonical, const FileIdentity& id, json plugins) {
  auto& e = entries_[canonical];
  if (e.id == id && e.plugins == plugins) {
    e.used = true;
    return;
  }
  e = Entry{id, std::move(plugins), true};
  dirty_ = true;
}

void ScanCache::forget(const std::string& canonical) {
  if (entries_.erase(canonical) > 0) dirty_ = true;
}

void ScanCache::save() {
  if (path_.empty()) return;
  std::size_t kept = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    std::error_code ec;
    const bool keep = it->second.used || (kept < kMaxEntries && fs::exists(it->first, ec));
    if (keep) {
      ++kept;
      ++it;
    } else {
      it = entries_.erase(it);
      dirty_ = true;
    }
  }
  if (!dirty_) return;
  json entries = json::array();
  for (const auto& [file, e] : entries_) {
    entries.push_back({{"path", file},
                       {"size", e.id.size},
                       {"mtime_ns", e.id.mtime_ns},
                       {"inode", e.id.inode},
                       {"device", e.id.device},
                       {"sha256", e.id.sha256},
                       {"plugins", e.plugins}});
  }
  const std::string text =
      json{{"format", kFormatName}, {"version", kFormat}, {"edgert_version", EDGERT_VERSION_STRING},
           {"entries", std::move(entries)}}
          .dump() +
      "\n";

  auto failed = [&](const std::string& why) {
    log().warn("plugin scan cache {}: cannot write it ({}); the next start scans every plugin again",
               printable(path_, kMaxLoggedText), why);
  };
  const fs::path target(path_);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  std::string tmp = path_ + ".XXXXXX";
  const int fd = ::mkstemp(tmp.data());  // mode 0600
  if (fd < 0) return failed(tmp + ": " + std::strerror(errno));
  std::size_t off = 0;
  bool ok = true;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  const int err = ok ? 0 : errno;
  // fsync before rename: after a power loss the name holds the old file or the whole
  // new one, never a torn one (which would only cost a rescan anyway).
  if (ok && ::fsync(fd) != 0) ok = false;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(ok ? errno : (err ? err : EIO));
    ::unlink(tmp.c_str());
    return failed(why);
  }
  dirty_ = false;
}

}  // namespace edgert::detail
