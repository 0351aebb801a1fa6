// Offline tools on a data_dir no Mailbox holds open: read_stats(), check() and backup() (restore() is in restore.cpp).
#include "mailbox/mailbox_impl.hpp"

#include <SQLiteCpp/Backup.h>

namespace edgert {
namespace {

// <data_dir>/mailbox.db if it exists; not_found, or io_error when it cannot be looked
// at (e.g. a data_dir the process may not search), never an exception.
Result<std::string> existing_db(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / "mailbox.db").string();
  std::error_code ec;
  const bool there = fs::exists(path, ec);
  if (ec) return Status{ErrorCode::io_error, path + ": cannot look at it: " + ec.message()};
  if (!there) return Status{ErrorCode::not_found, path + ": no mailbox here"};
  return path;
}

}  // namespace

Result<MailboxStats> Mailbox::read_stats(const std::string& data_dir) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  MailboxStats s;
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    db.exec("PRAGMA busy_timeout=5000");
    read_table_stats(db, system_ms(), s);
  } catch (const std::exception& e) {
    return io_error(path + ": stats", e);
  }
  return s;
}

Status Mailbox::check(const std::string& data_dir) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    db.exec("PRAGMA busy_timeout=5000");
    SQLite::Statement q(db, "PRAGMA integrity_check");
    std::string problems;
    while (q.executeStep()) {
      const std::string line = q.getColumn(0).getString();
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (!problems.empty()) return {ErrorCode::io_error, path + ": integrity_check failed: " + problems};
  } catch (const std::exception& e) {
    return io_error(path + ": integrity_check", e);
  }
  return {};
}

Status Mailbox::backup(const std::string& data_dir, const std::string& dest) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  // Writing the copy onto the live file (or its WAL) would copy nothing, or worse.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    if (fs::equivalent(dest, path + suffix, ec) && !ec) {
      return {ErrorCode::io_error, "backup of " + path + " to " + dest + ": " + dest + " is the live mailbox file " + path +
                                       suffix + " itself; choose another DEST"};
    }
  }
  try {
    SQLite::Database src(path, SQLite::OPEN_READONLY);
    src.exec("PRAGMA busy_timeout=5000");
    SQLite::Database dst(dest, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    SQLite::Backup b(dst, src);
    b.executeStep();  // all pages, one step; SQLite restarts it if the source changes meanwhile
  } catch (const std::exception& e) {
    return io_error("backup of " + path + " to " + dest, e);
  }
  return {};
}

}  // namespace edgert
