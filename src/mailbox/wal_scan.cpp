#include "mailbox/wal_scan.hpp"

#include "core/log.hpp"
#include "mailbox/envelope_check.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

namespace edgert::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kHeader = 32;
constexpr std::size_t kFrameHeader = 24;

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}
std::uint32_t le32(const unsigned char* p) {
  return (std::uint32_t(p[3]) << 24) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[1]) << 8) | std::uint32_t(p[0]);
}

struct Sum {
  std::uint32_t s0 = 0, s1 = 0;
  bool operator==(const Sum&) const = default;
};

// SQLite's WAL checksum over `n` bytes (a multiple of 8), continuing from `s`; the
// words are read in the byte order the header's magic names.
void checksum(const unsigned char* p, std::size_t n, bool big_endian, Sum& s) {
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint32_t x0 = big_endian ? be32(p + i) : le32(p + i);
    const std::uint32_t x1 = big_endian ? be32(p + i + 4) : le32(p + i + 4);
    s.s0 += x0 + s.s1;
    s.s1 += x1 + s.s0;
  }
}

bool read_at(int fd, unsigned char* buf, std::size_t n, off_t at) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, buf + done, n - done, at + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

struct Fingerprint {
  off_t size = 0;
  struct timespec mtime {};
  std::array<unsigned char, kHeader> header{};
  bool operator==(const Fingerprint& o) const {
    return size == o.size && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec && header == o.header;
  }
};

bool fingerprint(int fd, Fingerprint& f) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  f.size = st.st_size;
  f.mtime = st.st_mtim;
  f.header.fill(0);
  if (st.st_size >= static_cast<off_t>(kHeader)) return read_at(fd, f.header.data(), kHeader, 0);
  return true;
}

// One pass over the file as it is now.
Result<WalScan> scan_once(int fd, const std::string& wal_path, const Fingerprint& fp) {
  WalScan out;
  if (fp.size < static_cast<off_t>(kHeader)) return out;
  const unsigned char* h = fp.header.data();
  const std::uint32_t magic = be32(h);
  if (magic != 0x377f0682 && magic != 0x377f0683) return out;  // SQLite ignores such a file as empty
  const bool big = (magic & 1) != 0;
  const std::uint32_t page_size = be32(h + 8);
  if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0) return out;
  out.present = true;
  out.page_size = page_size;
  const std::size_t frame_bytes = kFrameHeader + page_size;
  out.frames = (static_cast<std::uint64_t>(fp.size) - kHeader) / frame_bytes;

  Sum header_sum;
  checksum(h, 24, big, header_sum);
  // A header whose checksum fails makes SQLite ignore every frame.
  bool chain = header_sum == Sum{be32(h + 24), be32(h + 28)};
  if (!chain) out.first_bad = out.frames > 0 ? 1 : 0;
  // Each frame is checked against the stored checksum of the frame before it, so frames
  // after a damaged one can still be recognised as intact committed data.
  Sum seed{be32(h + 24), be32(h + 28)};
  std::uint64_t last_lost_commit = 0;
  std::vector<unsigned char> buf(frame_bytes);
  for (std::uint64_t i = 1; i <= out.frames; ++i) {
    if (!read_at(fd, buf.data(), frame_bytes, static_cast<off_t>(kHeader + (i - 1) * frame_bytes))) {
      return Status{ErrorCode::io_error, wal_path + ": cannot read WAL frame " + std::to_string(i) + ": " +
                                             (errno != 0 ? std::strerror(errno) : "short read")};
    }
    const unsigned char* f = buf.data();
    Sum s = seed;
    checksum(f, 8, big, s);
    checksum(f + kFrameHeader, page_size, big, s);
    const Sum stored{be32(f + 16), be32(f + 20)};
    const bool valid = be32(f) != 0 && std::memcmp(f + 8, h + 16, 8) == 0 && s == stored;
    const bool commit = be32(f + 4) != 0;
    if (chain) {
      if (!valid) {
        chain = false;
        out.first_bad = i;
      } else if (commit) {
        out.replayed = i;
      }
    } else if (valid && commit && out.first_bad != 0) {
      ++out.lost_commits;
      last_lost_commit = i;
    }
    seed = stored;
  }
  if (out.lost_commits > 0) out.lost_frames = last_lost_commit - out.first_bad + 1;
  return out;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace

Result<WalScan> scan_wal(const std::string& wal_path) {
  const int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return WalScan{};
    return Status{ErrorCode::io_error, wal_path + ": cannot read the WAL: " + std::strerror(errno)};
  }
  Result<WalScan> result = WalScan{};
  // A process writing the WAL meanwhile (restarting it with new salts, appending)
  // could make a healthy file look cut short: scan again until it held still.
  for (int attempt = 0; attempt < 3; ++attempt) {
    Fingerprint before, after;
    if (!fingerprint(fd, before)) {
      result = Status{ErrorCode::io_error, wal_path + ": cannot read the WAL: " + std::strerror(errno)};
      break;
    }
    result = scan_once(fd, wal_path, before);
    if (!result.ok() || (fingerprint(fd, after) && after == before)) break;
  }
  ::close(fd);
  return result;
}

Status keep_damaged_wal(const std::string& db_path, const std::string& stamp) {
  const std::string wal = db_path + "-wal";
  auto scanned = scan_wal(wal);
  if (!scanned.ok()) {
    return Status{ErrorCode::io_error, scanned.status().message() + "; the files were left untouched"};
  }
  const WalScan& w = scanned.value();
  if (!w.cut_short()) return {};
  const std::string base = wal + ".damaged-" + stamp;
  std::string kept;
  std::error_code ec;
  for (int n = 1; n <= 1000 && kept.empty(); ++n) {
    const std::string to = n == 1 ? base : base + "-" + std::to_string(n);
    if (exists(to)) continue;
    fs::copy_file(wal, to, fs::copy_options::none, ec);  // fails rather than replace
    if (ec && ec != std::errc::file_exists) {
      return Status{ErrorCode::io_error, wal + ": damaged at frame " + std::to_string(w.first_bad) + " with " +
                                             std::to_string(w.lost_commits) + " committed transactions after it, "
                                             "and it cannot be kept (copy to " + to + ": " + ec.message() +
                                             "); the files were left untouched"};
    }
    if (!ec) kept = to;
  }
  if (kept.empty()) {
    return Status{ErrorCode::io_error, wal + ": damaged, and no free name " + base + "-N to keep a copy under; "
                                             "the files were left untouched"};
  }
  log().error("mailbox {}: WAL damaged at frame {} of {}: {} committed transactions ({} frames) after it cannot be "
              "replayed and are lost; a copy is kept at {}",
              db_path, w.first_bad, w.frames, w.lost_commits, w.lost_frames, kept);
  return {};
}

namespace {

void write_state(const std::string& db_path, const std::string& text) {
  const std::string to = db_path + "-state";
  const std::string tmp = to + ".tmp-" + std::to_string(::getpid());  // two openers never share one
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && ::rename(tmp.c_str(), to.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    log().warn("mailbox {}: cannot record its state in {} ({}); a WAL deleted after an unclean stop would go "
               "unreported",
               db_path, to, std::strerror(err));
  }
}

}  // namespace

namespace {

// The marker as text ("" when it cannot be read).
std::string read_state(const std::string& db_path) {
  char buf[128] = {};
  const int fd = ::open((db_path + "-state").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string{};
}

std::string hex32(std::uint32_t v) {
  char out[9];
  std::snprintf(out, sizeof out, "%08x", v);
  return out;
}

// The lineage an "open <pid> wal <8 hex>" marker recorded; nullopt for any other text.
std::optional<std::uint32_t> recorded_lineage(const std::string& state) {
  const auto at = state.find(" wal ");
  if (state.rfind("open ", 0) != 0 || at == std::string::npos || state.size() < at + 5 + 8) return std::nullopt;
  std::uint32_t v = 0;
  for (std::size_t i = at + 5; i < at + 5 + 8; ++i) {
    const char c = state[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint32_t>(d);
  }
  return v;
}

}  // namespace

std::optional<std::uint32_t> wal_lineage(const std::string& wal_path) {
  const int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  unsigned char h[kHeader];
  const bool got = read_at(fd, h, kHeader, 0);
  ::close(fd);
  if (!got) return std::nullopt;
  const std::uint32_t magic = be32(h);
  if (magic != 0x377f0682 && magic != 0x377f0683) return std::nullopt;
  Sum sum;
  checksum(h, 24, (magic & 1) != 0, sum);
  if (!(sum == Sum{be32(h + 24), be32(h + 28)})) return std::nullopt;
  return be32(h + 16) - be32(h + 12);  // salt-1 minus the checkpoint sequence
}

void mark_open(const std::string& db_path) {
  std::string text = "open " + std::to_string(::getpid());
  if (const auto lineage = wal_lineage(db_path + "-wal")) text += " wal " + hex32(*lineage);
  write_state(db_path, text + "\n");
}

Status keep_foreign_wal(const std::string& db_path, const std::string& stamp) {
  const std::string wal = db_path + "-wal";
  const std::string state = read_state(db_path);
  if (state.empty() || !exists(wal)) return {};
  auto scanned = scan_wal(wal);
  if (!scanned.ok()) {
    return Status{ErrorCode::io_error, scanned.status().message() + "; the files were left untouched"};
  }
  const WalScan& w = scanned.value();
  if (!w.present || w.replayed == 0) return {};  // nothing SQLite would apply
  std::string why;
  if (state.rfind("clean", 0) == 0) {
    why = "the mailbox was closed cleanly (" + db_path + "-state says so), and a clean close leaves no WAL";
  } else if (const auto recorded = recorded_lineage(state)) {
    const auto found = wal_lineage(wal);
    if (!found || *found == *recorded) return {};
    why = "its header names WAL lineage " + hex32(*found) + " (salt-1 minus checkpoint sequence) but the mailbox "
          "recorded lineage " + hex32(*recorded) + " in " + db_path + "-state";
  } else {
    return {};  // "open <pid>" without a lineage (an older build, or a crash before the first write): unknown
  }
  const std::string base = wal + ".foreign-" + stamp;
  for (int n = 1; n <= 1000; ++n) {
    const std::string to = n == 1 ? base : base + "-" + std::to_string(n);
    if (exists(to)) continue;
    if (::rename(wal.c_str(), to.c_str()) != 0) {
      const int err = errno;
      return Status{ErrorCode::io_error, wal + " does not belong to " + db_path + " (" + why + ") and cannot be "
                                             "moved to " + to + " (" + std::strerror(err) + "); opening would "
                                             "replay it over the database: the files were left untouched"};
    }
    // The -shm indexes the WAL just moved: SQLite rebuilds it (the first connection
    // truncates a stale one), so it is left alone.
    log().error("mailbox {}: its WAL {} does not belong to it: {}. It was NOT replayed ({} frames, {} of them "
                "committed, would have overwritten the database's pages); it was moved to {}. The mailbox opens "
                "with what {} held at its last checkpoint",
                db_path, wal, why, w.frames, w.replayed, to, db_path);
    return {};
  }
  return Status{ErrorCode::io_error, wal + " does not belong to " + db_path + " (" + why + ") and no free name " +
                                         base + "-N is left to move it to; the files were left untouched"};
}

namespace {
// "<dev> <inode> <size> <mtime s> <mtime ns>" of `path`, or "" when it cannot be looked at.
std::string identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(static_cast<unsigned long long>(st.st_dev)) + " " +
         std::to_string(static_cast<unsigned long long>(st.st_ino)) + " " +
         std::to_string(static_cast<long long>(st.st_size)) + " " + std::to_string(static_cast<long long>(st.st_mtim.tv_sec)) +
         " " + std::to_string(static_cast<long long>(st.st_mtim.tv_nsec));
}
constexpr const char* kVerified = "clean verified ";
}  // namespace

void mark_clean(const std::string& db_path, bool verified) {
  const std::string id = verified ? identity(db_path) : std::string{};
  write_state(db_path, id.empty() ? std::string("clean\n") : kVerified + id + "\n");
}

bool verified_unchanged(const std::string& db_path) {
  std::string state = read_state(db_path);
  if (state.rfind(kVerified, 0) != 0) return false;
  state = state.substr(std::strlen(kVerified));
  while (!state.empty() && (state.back() == '\n' || state.back() == '\r')) state.pop_back();
  const std::string now = identity(db_path);
  return !now.empty() && state == now && !exists(db_path + "-wal");
}

void warn_if_wal_missing(const std::string& db_path) {
  const std::string marker = db_path + "-state";
  char buf[64] = {};
  const int fd = ::open(marker.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // first run with a marker, or a data_dir from an older build
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n < 5 || std::strncmp(buf, "open ", 5) != 0) return;
  struct stat st {};
  if (::stat(db_path.c_str(), &st) != 0 || st.st_size == 0 || exists(db_path + "-wal")) return;
  std::string holder(buf + 5, static_cast<std::size_t>(n) - 5);
  holder = holder.substr(0, holder.find_first_of(" \r\n"));  // the pid, before " wal <lineage>"
  log().warn("mailbox {}: the last run (pid {}) did not close it cleanly and its WAL {}-wal is missing: transactions "
             "committed since the last checkpoint may be lost (was the -wal file deleted, or the database copied "
             "without it?)",
             db_path, printable(holder, 20), db_path);
}

}  // namespace edgert::detail
