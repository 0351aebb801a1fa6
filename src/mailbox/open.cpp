#include "mailbox/open.hpp"

#include "core/log.hpp"
#include "mailbox/row_check.hpp"
#include "mailbox/salvage.hpp"
#include "mailbox/schema.hpp"
#include "mailbox/wal_scan.hpp"

#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

namespace edgert::detail {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSalvageSuffix = ".salvage-tmp";
constexpr const char* kCheckOwedSuffix = "-check-owed";

std::string errno_text(int err) { return std::strerror(err); }

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

std::string utc_stamp(std::int64_t now_ms) {
  const std::time_t t = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  return stamp;
}

// Renames `from` to `to` unless `to` exists (atomically where the file system supports
// RENAME_NOREPLACE). Returns 0 or an errno; EEXIST when `to` is taken.
int rename_noreplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  const int err = errno;
  if (err != EINVAL && err != ENOSYS) return err;
  if (exists(to)) return EEXIST;  // no RENAME_NOREPLACE here: check, then rename
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

}  // namespace

Result<std::string> move_aside(const std::string& path, const std::string& kind, std::int64_t now_ms) {
  const std::string base = path + "." + kind + "-" + utc_stamp(now_ms);
  for (int n = 1; n <= 1000; ++n) {
    const std::string to = n == 1 ? base : base + "-" + std::to_string(n);
    if (exists(to) || exists(to + "-wal") || exists(to + "-shm")) continue;
    const int err = rename_noreplace(path, to);
    if (err == EEXIST) continue;
    if (err != 0) return Status{ErrorCode::io_error, path + ": cannot move it to " + to + ": " + errno_text(err)};
    for (const char* suffix : {"-wal", "-shm"}) {
      if (!exists(path + suffix)) continue;
      if (const int e = rename_noreplace(path + suffix, to + suffix); e != 0) {
        // A WAL left beside the fresh database would be replayed into it: refuse.
        return Status{ErrorCode::io_error, path + suffix + ": cannot move it to " + to + suffix + ": " +
                                               errno_text(e) + " (" + path + " was moved to " + to + ")"};
      }
    }
    return to;
  }
  return Status{ErrorCode::io_error, path + ": cannot move it aside: 1000 names " + base + "-N are taken"};
}

namespace {

// Checks, before SQLite sees the file, what SQLite would report only vaguely ("unable to
// open database file") or not at all (it silently falls back to read-only): the data
// directory must be writable (the -wal and -shm live there, and a quarantine renames in
// it) and an existing file readable and writable. access() with AT_EACCESS also reports
// EROFS and the immutable attribute for root, who is otherwise exempt from file modes.
Status check_access(const std::string& path) {
  const std::string dir = fs::path(path).parent_path().string();
  if (::faccessat(AT_FDCWD, dir.empty() ? "." : dir.c_str(), W_OK | X_OK, AT_EACCESS) != 0) {
    const int err = errno;
    return {ErrorCode::io_error, dir + ": the data directory is not writable (" + errno_text(err) +
                                     "); the mailbox " + path + " needs to create its -wal and -shm files there"};
  }
  if (exists(path) && ::faccessat(AT_FDCWD, path.c_str(), R_OK | W_OK, AT_EACCESS) != 0) {
    const int err = errno;
    const bool read_only = err == EROFS || err == EPERM || ::faccessat(AT_FDCWD, path.c_str(), R_OK, AT_EACCESS) == 0;
    return {ErrorCode::io_error, path + ": cannot open the mailbox for reading and writing (" + errno_text(err) + ")" +
                                     (read_only ? "; a read-only mailbox cannot store messages" : "")};
  }
  return {};
}

bool is_corruption(const SQLite::Exception& e) {
  const int primary = e.getErrorCode() & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

// The error for a failure that is not corruption: the file stays as it is.
Status open_error(const std::string& path, const SQLite::Exception& e, int sys_errno) {
  const int primary = e.getErrorCode() & 0xff;
  std::string msg = path + ": cannot open the mailbox: " + e.what();
  if (sys_errno != 0) msg += " (" + errno_text(sys_errno) + ")";
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    msg += "; another connection holds it locked (a second process on this data_dir?)";
  } else if (primary == SQLITE_FULL || sys_errno == ENOSPC) {
    msg += "; free disk space and restart";
  }
  return {ErrorCode::io_error, msg + "; the file was left untouched"};
}

enum class Verdict { ok, corrupt, error };

struct Attempt {
  std::unique_ptr<SQLite::Database> db;
  Verdict verdict = Verdict::error;
  std::string why;  // the corruption found
  Status error;     // Verdict::error
};

// What try_open checks before it trusts the file:
//  - full: PRAGMA quick_check, every page of the file;
//  - header: only the header and the schema are read (enough for SQLITE_NOTADB and a
//    damaged schema);
//  - bounded: full when the file is at most `max_bytes`; on a larger one, what the
//    mailbox's open and first writes rely on (docs/mailbox.md, "Bounded check at open"):
//    the header and schema, an empty freelist (else full: a damaged freelist could hand
//    a page still in use to the next write, before any later check sees it),
//    quick_check of every table but the outbox's (with their indexes), and every page of
//    each outbox index (leases, mark_* and quota eviction find rows through them). The
//    outbox table's own pages are left to the background integrity_check.
enum class Check { full, header, bounded };

// The bounded check of a file over the limit; "" when it passed, else the damage found.
// Throws SQLite::Exception as the queries do (corruption included).
std::string bounded_check(SQLite::Database& db) {
  std::vector<std::string> tables, indexes;
  {
    SQLite::Statement q(db, "SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'index') AND "
                            "(type = 'table' AND name <> 'outbox' OR type = 'index' AND tbl_name = 'outbox') "
                            "ORDER BY name");
    while (q.executeStep()) (q.getColumn(0).getString() == "table" ? tables : indexes).push_back(q.getColumn(1));
  }
  auto quoted = [](const std::string& name) {
    std::string out = "\"";
    for (const char c : name) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  for (const auto& t : tables) {
    const std::string verdict = db.execAndGet("PRAGMA quick_check(" + quoted(t) + ")").getString();
    if (verdict != "ok") return "quick_check(" + t + "): " + verdict;
  }
  // dbstat walks every page of the b-tree named (not count(*): its planner counts the
  // smallest index whatever INDEXED BY says); a page that is not a b-tree page of the
  // right kind is reported "corrupted", one it cannot read stops it with an error.
  for (const auto& i : indexes) {
    SQLite::Statement q(db, "SELECT pageno FROM dbstat WHERE name = ? AND pagetype NOT IN ('internal', 'leaf', "
                            "'overflow') LIMIT 1");
    q.bind(1, i);
    if (q.executeStep()) return "index " + i + ": page " + q.getColumn(0).getString() + " is not a valid b-tree page";
  }
  return {};
}

// The index walk needs SQLite's dbstat table (SQLITE_ENABLE_DBSTAT_VTAB, on in Debian's
// build); a library without it gets the full check instead of an open that fails.
bool has_dbstat(SQLite::Database& db) {
  sqlite3_stmt* st = nullptr;
  const int rc = sqlite3_prepare_v2(db.getHandle(), "SELECT pageno FROM dbstat LIMIT 0", -1, &st, nullptr);
  sqlite3_finalize(st);
  return rc == SQLITE_OK;
}

Attempt try_open(const std::string& path, int busy_timeout_ms, Check check = Check::full,
                 std::uint64_t max_bytes = 0, bool* bounded = nullptr) {
  Attempt a;
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  } catch (const SQLite::Exception& e) {
    // Nothing has read the file yet: a failure here is never a verdict on its content.
    a.error = open_error(path, e, 0);
    return a;
  }
  // Every statement of the mailbox's connection may compute or verify row checksums.
  if (const int rc = register_row_check(db->getHandle()); rc != SQLITE_OK) {
    a.error = {ErrorCode::io_error, path + ": cannot register the row checksum function: " + sqlite3_errstr(rc)};
    return a;
  }
  // Before the first read: a lock held by another process (a node starting beside us,
  // or converting a fresh file to WAL) must be waited out, not mistaken for damage.
  sqlite3_busy_timeout(db->getHandle(), busy_timeout_ms);
  if (sqlite3_db_readonly(db->getHandle(), "main") == 1) {
    a.error = {ErrorCode::io_error, path + ": SQLite could open the mailbox only read-only; a read-only mailbox "
                                           "cannot store messages"};
    return a;
  }
  try {
    std::string verdict = "ok";
    (void)db->execAndGet("SELECT count(*) FROM sqlite_schema").getInt64();  // the header and the schema
    if (check == Check::bounded) {
      const auto pages = static_cast<std::uint64_t>(db->execAndGet("PRAGMA page_count").getInt64());
      const auto page_size = static_cast<std::uint64_t>(db->execAndGet("PRAGMA page_size").getInt64());
      const auto free_pages = db->execAndGet("PRAGMA freelist_count").getInt64();
      if (pages * page_size <= max_bytes || free_pages != 0 || !has_dbstat(*db)) {
        check = Check::full;
      } else if (std::string found = bounded_check(*db); !found.empty()) {
        a.verdict = Verdict::corrupt;
        a.why = found;
        return a;
      } else if (bounded != nullptr) {
        *bounded = true;
      }
    }
    if (check == Check::full) verdict = db->execAndGet("PRAGMA quick_check").getString();
    if (verdict != "ok") {
      a.verdict = Verdict::corrupt;
      a.why = "quick_check: " + verdict;
      return a;
    }
  } catch (const SQLite::Exception& e) {
    if (is_corruption(e)) {
      a.verdict = Verdict::corrupt;
      a.why = e.what();
    } else {
      a.error = open_error(path, e, sqlite3_system_errno(db->getHandle()));
    }
    return a;
  }
  a.db = std::move(db);
  a.verdict = Verdict::ok;
  return a;
}

}  // namespace

Result<std::unique_ptr<SQLite::Database>> open_mailbox_db(const std::string& path, int busy_timeout_ms,
                                                          std::int64_t now_ms, std::uint64_t quick_check_max_bytes) {
  if (Status st = check_access(path); !st.ok()) return st;
  // Looked at before anything here touches the file (docs/mailbox.md, "Corruption").
  const bool verified = verified_unchanged(path);
  // An earlier open checked this file only in part and its full check has not vouched
  // for it since (it found damage, or the run ended first): this open checks it all.
  const std::string owed_path = path + kCheckOwedSuffix;
  const bool owed = exists(owed_path);

  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    // A WAL with no database beside it (the database moved or deleted, or a move aside
    // that could not take the WAL along): SQLite would create an empty database and
    // discard the WAL with whatever it holds. Refuse, and leave both for the operator.
    std::error_code ec;
    const auto wal_size = fs::file_size(path + "-wal", ec);
    if (!ec && wal_size > 0) {
      return Status{ErrorCode::io_error, path + " is missing but its " + std::to_string(wal_size) + "-byte WAL " +
                                             path + "-wal is there (was the database moved or deleted?); opening "
                                             "would discard the WAL: put the database back, or move the WAL "
                                             "away, and restart; the files were left untouched"};
    }
  }
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT && exists(path + kSalvageSuffix) &&
      !exists(path + "-wal")) {
    // A salvage stopped after moving the damaged file aside: its copy is complete.
    if (::rename((path + kSalvageSuffix).c_str(), path.c_str()) != 0) {
      const int err = errno;
      return Status{ErrorCode::io_error, path + " is missing and the salvaged copy " + path + kSalvageSuffix +
                                             " cannot be moved in (" + errno_text(err) + "); move it to " + path +
                                             " and restart"};
    }
    log().warn("mailbox {}: finished a salvage an earlier run was stopped in: moved {}{} in place", path, path,
               kSalvageSuffix);
  }
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
    // Likely damage (a truncated file), or a crash between creating the file and
    // writing its first page; it holds no rows either way. It is initialised in place,
    // not renamed: another opener may be creating it at this moment and would keep
    // writing to the renamed file. SQLite deletes a WAL found beside an empty
    // database, and such a WAL can only come from a database that had content: keep
    // a copy of it first.
    std::string kept;
    std::error_code ec;
    const auto wal_size = fs::file_size(path + "-wal", ec);
    if (!ec && wal_size > 0) {
      const std::string base = path + "-wal.orphan-" + utc_stamp(now_ms);
      for (int n = 1; n <= 1000 && kept.empty(); ++n) {
        const std::string to = n == 1 ? base : base + "-" + std::to_string(n);
        if (exists(to)) continue;
        fs::copy_file(path + "-wal", to, fs::copy_options::none, ec);
        if (ec && ec != std::errc::file_exists) {
          return Status{ErrorCode::io_error, path + " has zero bytes and its " + std::to_string(wal_size) +
                                                 "-byte WAL cannot be kept (copy to " + to + ": " + ec.message() +
                                                 "); the files were left untouched"};
        }
        if (!ec) kept = to;
      }
    }
    log().warn("mailbox {} has zero bytes: likely damage (truncated, or a crash while it was first created); "
               "starting a fresh mailbox in it{}",
               path, kept.empty() ? std::string{} : "; its " + std::to_string(wal_size) + "-byte WAL, which SQLite "
                                                         "discards, was copied to " + kept);
  }

  if (st.st_size > 0) {
    // Before SQLite's recovery silently stops at a damaged WAL frame, or opens without
    // a WAL that was deleted (docs/mailbox.md, "A damaged or missing WAL").
    // A foreign WAL first: it is moved away whole, not scanned for damage and replayed.
    const bool had_wal = exists(path + "-wal");
    if (Status kept = keep_foreign_wal(path, utc_stamp(now_ms)); !kept.ok()) return kept;
    if (!had_wal || exists(path + "-wal")) warn_if_wal_missing(path);  // not for the WAL just moved
    if (Status kept = keep_damaged_wal(path, utc_stamp(now_ms)); !kept.ok()) return kept;
  }

  bool bounded = false;
  Attempt a = try_open(path, busy_timeout_ms, verified ? Check::header : owed ? Check::full : Check::bounded,
                       quick_check_max_bytes, &bounded);
  if (a.verdict == Verdict::ok && bounded) {
    // Written before the mailbox writes anything: a run that ends before its background
    // integrity_check vouches for the file leaves it, and the next open checks all.
    // Its directory entry is synced too: after a power loss the file's writes may
    // survive while an unsynced entry does not, and the next open would trust it.
    int fd = ::open(owed_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::close(fd);
      const std::string dir = std::filesystem::path(owed_path).parent_path().string();
      const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd < 0 || ::fsync(dfd) != 0) fd = -1;
      if (dfd >= 0) ::close(dfd);
    }
    if (fd < 0) {
      const int err = errno;
      log().warn("mailbox {}: cannot create {} ({}); running the full quick_check instead of the bounded one", path,
                 owed_path, errno_text(err));
      a.db.reset();
      bounded = false;
      a = try_open(path, busy_timeout_ms, Check::full);
    } else {
      log().info("mailbox {}: larger than quick_check_max_bytes ({} bytes) with no free pages: checked at open only "
                 "in part (header, schema, the tables other than the outbox, the outbox's indexes); the outbox "
                 "table is left to the background integrity_check, and {} makes the next open run the full "
                 "quick_check until that check has vouched for the file",
                 path, quick_check_max_bytes, owed_path);
    }
  }
  if (a.verdict == Verdict::ok) {
    if (verified) {
      log().info("mailbox {}: unchanged since the last run closed it after a complete integrity_check; quick_check "
                 "skipped (the background integrity_check runs as on every open)",
                 path);
    }
    if (!bounded) ::unlink(owed_path.c_str());  // checked in full (or vouched for by the last run)
    return std::move(a.db);
  }
  if (a.verdict == Verdict::error) return a.error;
  a.db.reset();  // close before renaming

  // Salvage: the readable rows are copied into <path>.salvage-tmp while the damaged
  // file is still in place, then it is moved aside and the copy moved in. A stop
  // before the move aside retries the whole salvage; one after it finishes at the
  // next open (above).
  const std::string tmp = path + kSalvageSuffix;
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((tmp + suffix).c_str());
  Result<SalvageReport> salvaged = Status{ErrorCode::io_error, "not attempted"};
  {
    Attempt t = try_open(tmp, busy_timeout_ms);
    if (t.verdict != Verdict::ok) {
      salvaged = Status{ErrorCode::io_error, tmp + ": " + (t.verdict == Verdict::error ? t.error.message() : t.why)};
    } else if (Status m = migrate_mailbox(*t.db, tmp); !m.ok()) {
      salvaged = m;
    } else {
      salvaged = salvage_rows(t.db->getHandle(), path);
    }
  }
  if (!salvaged.ok()) {
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((tmp + suffix).c_str());
  }
  auto moved = move_aside(path, "corrupt", now_ms);
  if (!moved.ok()) {
    ::unlink(tmp.c_str());
    return Status{ErrorCode::io_error, path + ": corrupt (" + a.why + ") and cannot be moved aside: " +
                                           moved.status().message()};
  }
  if (salvaged.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    salvaged = Status{ErrorCode::io_error, "cannot rename " + tmp + " to " + path + ": " + errno_text(err)};
  }
  if (salvaged.ok()) {
    const SalvageReport& r = salvaged.value();
    log().error("mailbox {} is corrupt ({}); moved it to {} and salvaged its readable rows into a fresh mailbox: {} "
                "rows saved, {} lost{} ({})",
                path, a.why, moved.value(), r.saved, r.lost,
                r.damaged > 0 ? ", " + std::to_string(r.damaged) + " outbox rows failed their checksum and were left "
                                                                   "in the damaged file"
                              : std::string{},
                r.text);
  } else {
    log().error("mailbox {} is corrupt ({}); moved it to {} and started a fresh, EMPTY mailbox: salvaging its rows "
                "failed ({}); the rows are still in the moved file",
                path, a.why, moved.value(), salvaged.status().message());
  }
  Attempt fresh = try_open(path, busy_timeout_ms);
  if (fresh.verdict == Verdict::ok) {
    ::unlink(owed_path.c_str());  // the salvaged copy was checked in full
    return std::move(fresh.db);
  }
  if (fresh.verdict == Verdict::error) return fresh.error;
  return Status{ErrorCode::io_error, path + ": a freshly created mailbox is reported corrupt (" + fresh.why + ")"};
}

}  // namespace edgert::detail
