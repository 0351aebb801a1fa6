// Internal: opening <data_dir>/mailbox.db and deciding what an open failure means
// (docs/mailbox.md, "Durability and recovery").
#pragma once

#include <edgert/status.hpp>

#include <SQLiteCpp/Database.h>

#include <cstdint>
#include <memory>
#include <string>

namespace edgert::detail {

/// Opens `path` read-write (creating it if missing) with `busy_timeout_ms` set before
/// anything reads the file, then runs PRAGMA quick_check, which reads every page: most
/// of an open's time on a large backlog. It is skipped, and only the header and schema
/// read, when verified_unchanged(path) (wal_scan.hpp): the last run closed the file
/// cleanly after its full integrity_check passed, and nothing has written it since.
/// Blocks on file I/O and, while another connection holds a lock, up to `busy_timeout_ms`.
///  - Only a file SQLite reports as corrupt (SQLITE_CORRUPT, a failed quick_check) or as
///    not a database (SQLITE_NOTADB) is quarantined: renamed, with its -wal/-shm, to
///    <path>.corrupt-<UTC stamp of now_ms>[-N] (never replacing an earlier one), logged
///    at ERROR, and a fresh database opened in its place.
///  - A zero-byte file is logged at WARNING as likely damage and initialised in place;
///    a non-empty WAL beside it (which SQLite would delete) is first copied to
///    <path>-wal.orphan-<stamp>[-N].
///  - For a non-empty file, before SQLite reads it: a -wal whose replay would stop at a
///    damaged frame ahead of committed transactions is copied to
///    <path>-wal.damaged-<stamp>[-N] and reported at ERROR (wal_scan.hpp); a -wal
///    missing after an unclean stop is reported at WARNING.
///  - Anything else (locked, permission denied, read-only file or directory, disk full,
///    I/O error) returns io_error naming the cause and the file, which is left untouched.
/// Moves `path` and its -wal/-shm to the first free `<path>.<kind>-<UTC stamp of
/// now_ms>[-N]`, where neither the name nor its -wal/-shm exist, so nothing earlier is
/// ever replaced and no stale WAL is left behind. Returns the new name; io_error naming
/// the file and the cause if a rename fails.
Result<std::string> move_aside(const std::string& path, const std::string& kind, std::int64_t now_ms);

/// `quick_check_max_bytes`: on a file larger than this that has no free pages, and that
/// no earlier open left owed a full check (<path>-check-owed), quick_check is bounded:
/// only the header, the schema, the tables other than the outbox and the outbox's
/// indexes are checked (damage there is handled as above), <path>-check-owed is created,
/// and the outbox table's pages are left to the background integrity_check. The file
/// stays until a run's integrity_check vouches for the file (Mailbox::Impl::release
/// removes it), so a check that found damage, or a run that ended before its check
/// completed, makes the next open run the full quick_check (and salvage a file SQLite
/// calls corrupt). A full quick_check that passes removes it too.
Result<std::unique_ptr<SQLite::Database>> open_mailbox_db(const std::string& path, int busy_timeout_ms,
                                                          std::int64_t now_ms,
                                                          std::uint64_t quick_check_max_bytes = UINT64_MAX);

}  // namespace edgert::detail
