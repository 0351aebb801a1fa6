// The plugin scan cache: what scan_plugins_isolated learnt about each accepted file,
// kept in one JSON file (the node's <data_dir>/plugin-scan-cache.json) so an unchanged
// file is not loaded in a helper process again (docs/plugins.md, "The scan cache").
//
// Trust: the file's SHA-256 is the key. An entry answers only for a file whose SHA-256,
// computed here on every lookup, equals the entry's (and whose path, size, mtime, inode
// and device match too), so a cache cannot let a changed file skip its scan. In secured
// mode an entry answers only if plugins.allow lists each of its signatures with that
// SHA-256, and the loader checks the allow list again in-process. What a hostile cache
// can still do is misdescribe an unchanged file it names by its real hash; whoever can
// write the data_dir can rewrite the mailbox too.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace edgert::detail {

/// What identifies one version of a plugin file.
struct FileIdentity {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::string sha256;  // lower-case hex

  bool operator==(const FileIdentity& o) const {
    return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode && device == o.device && sha256 == o.sha256;
  }
  bool operator!=(const FileIdentity& o) const { return !(*this == o); }
};

/// stat() and SHA-256 of `path`; nullopt when it cannot be read, or when it changed
/// while it was hashed (its stat before and after differ): such a file is not cached.
std::optional<FileIdentity> identify_file(const std::string& path);

class ScanCache {
 public:
  /// Format of the file; a file of another format or edgert version is ignored.
  static constexpr int kFormat = 1;
  /// Larger files are refused as corrupt (a few KiB a plugin is normal).
  static constexpr std::uintmax_t kMaxFileBytes = std::uintmax_t{16} << 20;
  /// Entries kept at most; beyond it, the entries of files not scanned this time go.
  static constexpr std::size_t kMaxEntries = 1024;

  /// Reads `path`. Missing: empty, silently. Unreadable, not JSON, or of the wrong
  /// shape: empty, one WARNING naming the file and the fault (everything is rescanned,
  /// never a crash). Written by another format or edgert version: empty, one INFO.
  static ScanCache load(const std::string& path);

  /// The cached "plugins" answer (the helper's own format) for the file at `canonical`
  /// when its entry matches `id` exactly; nullptr otherwise.
  const nlohmann::json* find(const std::string& canonical, const FileIdentity& id);
  /// Records an accepted scan.
  void put(const std::string& canonical, const FileIdentity& id, nlohmann::json plugins);
  /// Drops the entry of a file that is refused or unreadable now.
  void forget(const std::string& canonical);
  /// The entries not looked up or put since load() are dropped when they are over
  /// kMaxEntries or their file is gone. Then, if anything changed, the file is
  /// rewritten atomically (a temporary file in the same folder, fsync, rename), mode
  /// 0600, creating the folder if needed. A failure is one WARNING; the scan stands.
  void save();

 private:
  struct Entry {
    FileIdentity id;
    nlohmann::json plugins;
    bool used = false;
  };
  std::string path_;
  std::map<std::string, Entry> entries_;
  bool dirty_ = false;
};

}  // namespace edgert::detail
