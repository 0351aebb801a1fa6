// Mailbox::restore (docs/mailbox.md, "Restoring a backup"): replaces mailbox.db and its
// -wal/-shm together, under the data_dir lock, never deleting the operator's data.
#include <edgert/mailbox.hpp>

#include "mailbox/data_dir_lock.hpp"
#include "mailbox/open.hpp"
#include "mailbox/schema.hpp"
#include "mailbox/wal_scan.hpp"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

namespace edgert {
namespace {

namespace fs = std::filesystem;

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// fsync of a file or (dir) a directory; 0 or an errno.
int sync_path(const std::string& p, bool dir) {
  const int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

void remove_temp(const std::string& tmp) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((tmp + suffix).c_str());
}

// Copies `backup` into `tmp` with SQLite's backup API (which also takes in a WAL that
// sits beside the backup), then checks the copy: PRAGMA integrity_check, and a mailbox
// schema this build reads. Errors name the backup.
Status copy_and_verify(const std::string& backup, const std::string& tmp) {
  const std::string what = "backup " + backup;
  try {
    {
      SQLite::Database src(backup, SQLite::OPEN_READONLY);
      src.exec("PRAGMA busy_timeout=5000");
      SQLite::Database dst(tmp, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      SQLite::Backup b(dst, src);
      b.executeStep();  // all pages in one step
    }
    SQLite::Database copy(tmp, SQLite::OPEN_READWRITE);
    // The copied header says WAL when the backup was taken from a WAL database: switch
    // the copy to a rollback journal, so checking it leaves no -wal/-shm beside the
    // temporary name (Mailbox::open switches it back to WAL).
    copy.exec("PRAGMA journal_mode=DELETE");
    SQLite::Statement q(copy, "PRAGMA integrity_check");
    std::string problems;
    while (q.executeStep()) {
      const std::string line = q.getColumn(0).getString();
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (!problems.empty()) return {ErrorCode::io_error, what + ": integrity_check failed: " + problems};
    const int version = copy.execAndGet("PRAGMA user_version").getInt();
    if (version > detail::kMailboxSchemaVersion) {
      return {ErrorCode::unsupported, what + ": schema version " + std::to_string(version) +
                                          " is newer than this edgert understands (" +
                                          std::to_string(detail::kMailboxSchemaVersion) + ")"};
    }
    const auto tables = copy.execAndGet(
                                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                "name IN ('outbox', 'inbox', 'idempotency', 'totals')")
                            .getInt();
    if (version < 1 || tables != 4) {
      return {ErrorCode::io_error, what + ": not a mailbox (schema version " + std::to_string(version) + ", " +
                                       std::to_string(tables) + " of the 4 mailbox tables)"};
    }
  } catch (const std::exception& e) {
    return {ErrorCode::io_error, what + ": cannot be read as a mailbox: " + e.what()};
  }
  return {};
}

}  // namespace

Result<std::string> Mailbox::restore(const std::string& data_dir, const std::string& backup) {
  const std::string db = (fs::path(data_dir) / "mailbox.db").string();
  const std::string not_restored = "; " + db + " was not changed";
  struct stat st {};
  if (::stat(backup.c_str(), &st) != 0) {
    const int err = errno;
    return Status{ErrorCode::io_error, "backup " + backup + ": " + std::strerror(err)};
  }
  if (!S_ISREG(st.st_mode)) return Status{ErrorCode::io_error, "backup " + backup + ": not a regular file"};
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return Status{ErrorCode::io_error, data_dir + ": cannot create data dir: " + ec.message()};

  // Held until the new file is in place: no node may open the mailbox meanwhile.
  auto lock = detail::DataDirLock::acquire(data_dir);
  if (!lock.ok()) {
    const std::string why = lock.status().message();
    const bool held = why.find(": in use by ") != std::string::npos;
    return Status{ErrorCode::io_error, why + (held ? "; stop it before restoring" : "")};
  }

  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (fs::equivalent(backup, db + suffix, ec) && !ec) {
      return Status{ErrorCode::io_error, "backup " + backup + " is the live file " + db + suffix +
                                             " itself; restore from a copy made with `edgert-node mailbox backup`"};
    }
  }
  const bool have_db = exists(db);
  if (!have_db && (exists(db + "-wal") || exists(db + "-shm"))) {
    return Status{ErrorCode::io_error, db + "-wal or -shm is there without " + db +
                                           " (left from a removed database?); move them out of " + data_dir +
                                           " before restoring"};
  }

  const std::string tmp = db + ".restore-tmp-" + std::to_string(::getpid());
  remove_temp(tmp);  // a leftover of an earlier attempt by a process with our pid
  if (Status s = copy_and_verify(backup, tmp); !s.ok()) {
    remove_temp(tmp);
    return Status{s.code(), s.message() + not_restored};
  }
  if (const int err = sync_path(tmp, false); err != 0) {
    remove_temp(tmp);
    return Status{ErrorCode::io_error, tmp + ": fsync: " + std::strerror(err) + not_restored};
  }

  std::string aside;
  if (have_db) {
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    auto moved = detail::move_aside(db, "pre-restore", now_ms);
    if (!moved.ok()) {
      remove_temp(tmp);
      return Status{ErrorCode::io_error, moved.status().message() + "; restore abandoned"};
    }
    aside = moved.value();
  }
  if (::rename(tmp.c_str(), db.c_str()) != 0) {
    const int err = errno;
    return Status{ErrorCode::io_error, "cannot rename " + tmp + " to " + db + ": " + std::strerror(err) +
                                           (aside.empty() ? std::string{} : "; the previous mailbox is at " + aside)};
  }
  // The restored file has no WAL by design: a marker left "open" by a crashed node
  // would make the next open report a missing WAL.
  detail::mark_clean(db);
  if (const int err = sync_path(data_dir, true); err != 0) {
    return Status{ErrorCode::io_error, data_dir + ": fsync of the directory after the restore: " +
                                           std::strerror(err) + "; the restored file is in place"};
  }
  return aside;
}

}  // namespace edgert
