// Internal: copying the readable rows of a mailbox file SQLite reports as corrupt into
// a fresh one (docs/mailbox.md, "Corruption").
//
// Why: damage SQLite cannot repair in place (a torn or overwritten table page) used to
// cost every row: the file was moved aside and an empty mailbox started. Most rows of
// a damaged file are usually still readable: a table is walked in rowid order and a
// stretch of unreadable pages is stepped over (the first readable rowid after it is
// found by probing), so one bad page loses the rows on it, not the table.
#pragma once

#include <edgert/status.hpp>

#include <cstdint>
#include <string>

struct sqlite3;

namespace edgert::detail {

struct SalvageReport {
  std::uint64_t saved = 0;       // rows copied, all tables
  std::uint64_t lost = 0;        // outbox and inbox rows the damaged file's totals had and were not copied
  std::uint64_t damaged = 0;     // outbox rows not copied because their checksum failed (row_check.hpp)
  std::uint64_t stretches = 0;   // unreadable stretches stepped over
  bool totals_known = false;     // the damaged file's totals could be read (else `lost` is a lower bound: 0)
  std::string text;              // per table: "outbox 1984 saved, 16 lost; ..." for the log
};

/// Copies every readable row of `damaged_path` (opened read-only; never written) into
/// `fresh`, an empty mailbox database already migrated to the current schema, in one
/// transaction, then sets `totals` from the copied rows. Only columns both schemas have
/// are copied (a damaged file from an older schema loses nothing it had). Rowids are
/// kept (they order the outbox). Outbox rows whose checksum fails are not copied (they
/// stay in the damaged file). Errors: io_error naming the file when the damaged file
/// cannot be opened at all or `fresh` cannot be written; then nothing was copied.
Result<SalvageReport> salvage_rows(sqlite3* fresh, const std::string& damaged_path);

}  // namespace edgert::detail
