// Mailbox::restore (docs/mailbox.md, "Restoring a backup"): replaces mailbox.db and its
// -wal/-shm together, under the data_dir lock, never deleting the operator's data.
#include <edgert/mailbox.hpp>

#include "core/log.hpp"
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

// `file:` URI of `path` for a read-only ATTACH: '%', '?' and '#' escaped.
std::string readonly_uri(const std::string& path) {
  std::string uri = "file:";
  for (const char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      static const char* hex = "0123456789ABCDEF";
      uri += '%';
      uri += hex[static_cast<unsigned char>(c) >> 4];
      uri += hex[static_cast<unsigned char>(c) & 0xf];
    } else {
      uri += c;
    }
  }
  return uri + "?mode=ro";
}

// Whether table `table` of attached schema `db` has a column `column`.
bool has_column(SQLite::Database& conn, const std::string& db, const std::string& table, const std::string& column) {
  SQLite::Statement q(conn, "SELECT count(*) FROM pragma_table_info(?, ?) WHERE name = ?");
  q.bind(1, table);
  q.bind(2, db);
  q.bind(3, column);
  return q.executeStep() && q.getColumn(0).getInt() > 0;
}

// The replay state a restore must not roll back: the inbox rows of the mailbox being
// replaced (`current`) carried into the restored copy (`tmp`) before it is renamed into
// place. Rows the backup lacks are inserted as they are; rows the backup holds
// unacknowledged that `current` acknowledged are marked acknowledged. So a message
// received after the backup was taken (a captured signed command, say) is still a
// duplicate after the restore and never runs twice; the mailbox's own retention retires
// the carried rows as usual. The copy is first migrated to this build's schema (open
// would do it anyway) so rows keep their replay scope; `current` may be older (no
// `scope` column: its ids belong to the default scope ''). `current` is read through a
// read-only connection (its WAL included, nothing written to it). Returns the rows
// inserted plus the rows marked.
Result<long long> carry_replay_state(const std::string& current, const std::string& tmp) {
  try {
    SQLite::Database dst(tmp, SQLite::OPEN_READWRITE | SQLite::OPEN_URI);
    dst.exec("PRAGMA busy_timeout=5000");
    if (Status st = detail::migrate_mailbox(dst, tmp); !st.ok()) return st;
    SQLite::Statement attach(dst, "ATTACH DATABASE ? AS cur");
    attach.bind(1, readonly_uri(current));
    attach.exec();
    const int has_inbox =
        dst.execAndGet("SELECT count(*) FROM cur.sqlite_master WHERE type = 'table' AND name = 'inbox'").getInt();
    if (has_inbox == 0) return 0LL;  // an empty or foreign file: nothing received there
    const std::string scope = has_column(dst, "cur", "inbox", "scope") ? "c.scope" : "''";
    SQLite::Transaction txn(dst, SQLite::TransactionBehavior::IMMEDIATE);
    long long n = dst.exec(
        "UPDATE main.inbox SET acknowledged = 1 WHERE acknowledged = 0 AND EXISTS (SELECT 1 FROM cur.inbox c "
        "WHERE " + scope + " = main.inbox.scope AND c.message_id = main.inbox.message_id AND c.acknowledged != 0)");
    // The columns every schema version has had since version 1 (schema.cpp), plus scope.
    n += dst.exec(
        "INSERT OR IGNORE INTO main.inbox (scope, message_id, sender_node_id, payload_type, envelope_json, size, "
        "received_ms, acknowledged) SELECT " + scope + ", c.message_id, c.sender_node_id, c.payload_type, "
        "c.envelope_json, c.size, c.received_ms, c.acknowledged FROM cur.inbox c");
    // The running totals (stats without a scan) follow the rows.
    dst.exec(
        "UPDATE main.totals SET inbox_rows = (SELECT count(*) FROM main.inbox), "
        "inbox_bytes = (SELECT coalesce(sum(size), 0) FROM main.inbox), "
        "inbox_unacked = (SELECT count(*) FROM main.inbox WHERE acknowledged = 0) WHERE id = 1");
    txn.commit();
    dst.exec("DETACH DATABASE cur");
    return n;
  } catch (const std::exception& e) {
    return Status{ErrorCode::io_error, e.what()};
  }
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
  if (have_db) {
    // Best effort: a mailbox too damaged to read is a reason to restore, not to refuse
    // one. Without its replay state, commands received after the backup was taken are
    // kept from running again only by comms.security.command_window_s (signed ones).
    if (auto carried = carry_replay_state(db, tmp); !carried.ok()) {
      detail::log().warn(
          "mailbox restore: the inbox of {} could not be read ({}); the restored mailbox does not know the "
          "messages received since the backup was taken: a replayed signed command is refused only once it is "
          "older than comms.security.command_window_s",
          db, carried.status().message());
    } else if (carried.value() > 0) {
      detail::log().info("mailbox restore: carried {} inbox row(s) of {} into the restored mailbox, so messages "
                         "received since the backup was taken are not run again",
                         carried.value(), db);
    }
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
