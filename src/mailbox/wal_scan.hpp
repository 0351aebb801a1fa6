// Internal: reading a mailbox's WAL file before SQLite recovers it, to find what its
// recovery would silently drop (docs/mailbox.md, "A damaged or missing WAL").
//
// SQLite replays WAL frames in order and stops at the first frame whose salts or
// cumulative checksum do not match; every transaction committed after that frame is
// discarded without an error, and the next writer overwrites the file. The format is
// SQLite's "WAL file format" (fileformat2, section 4): a 32-byte header (magic, whose
// low bit gives the checksum byte order; version; page size; checkpoint sequence;
// salt-1, salt-2; a checksum of the first 24 bytes), then frames of a 24-byte header
// (page number; database size in pages for the frame that commits a transaction,
// else 0; salt-1, salt-2; the cumulative checksum) and one page.
#pragma once

#include <edgert/status.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace edgert::detail {

struct WalScan {
  bool present = false;          // the file exists and holds a header with a known magic
  std::uint32_t page_size = 0;
  std::uint64_t frames = 0;      // complete frames in the file
  std::uint64_t replayed = 0;    // frames SQLite's recovery keeps: up to the last valid commit
  std::uint64_t first_bad = 0;   // 1-based: the first frame that breaks the chain; 0: none
  // After first_bad, frames with the header's salts whose own checksum is consistent
  // with the frame before them (committed data a recovery cannot reach):
  std::uint64_t lost_commits = 0;  // transactions that end in such a frame
  std::uint64_t lost_frames = 0;   // frames from first_bad through the last such commit
  /// True when committed transactions sit beyond the point where recovery stops.
  bool cut_short() const noexcept { return lost_commits > 0; }
};

/// Reads `wal_path` (which need not exist) and reports where SQLite's recovery would
/// stop. Any thread; blocks on file I/O; reads the file twice if it changed meanwhile
/// (another process writing it). Errors: io_error naming the file when it exists but
/// cannot be read.
Result<WalScan> scan_wal(const std::string& wal_path);

/// Before the first connection opens `db_path`: scans its -wal and, when the WAL was
/// cut short, copies it to <db_path>-wal.damaged-<stamp>[-N] (never replacing an
/// earlier copy) and logs at ERROR the frame, the transactions and frames that will
/// be lost, and the copy. Errors: io_error (and the files left untouched) when the WAL
/// cannot be read or the copy cannot be made, since opening would destroy the only
/// record of those transactions.
Status keep_damaged_wal(const std::string& db_path, const std::string& stamp);

/// The WAL's lineage: salt-1 minus the checkpoint sequence from its header (nullopt
/// when the file is missing or its header is not valid). SQLite draws salt-1 at random
/// when it creates a WAL and adds one to both at every restart of it, so the lineage
/// stays the same for as long as the file exists and differs (but for a 2^-32 chance)
/// between two WAL files: it tells a mailbox's own WAL from another one's.
std::optional<std::uint32_t> wal_lineage(const std::string& wal_path);

/// Before the first connection opens `db_path`: a WAL SQLite would replay that does not
/// belong to this database is moved to <db_path>-wal.foreign-<stamp>[-N] and reported at
/// ERROR, never replayed (it would overwrite pages with another mailbox's). It does not
/// belong when the marker says "clean" (a clean close leaves no WAL), or when the marker
/// recorded a lineage and the WAL's is another. A marker without a lineage (an older
/// build, or a stop before the first write) proves nothing and the WAL is replayed.
/// Errors: io_error (the files left untouched) when the WAL cannot be read or moved.
Status keep_foreign_wal(const std::string& db_path, const std::string& stamp);

/// The clean-shutdown marker <db_path>-state: "open <pid>[ wal <lineage, 8 hex>]" while
/// a mailbox has the file open (the lineage once its WAL has a header: call mark_open
/// again after the first write), "clean" once it closed it (and SQLite checkpointed and
/// removed the WAL).
/// Written with a rename, never fsynced: it costs nothing on the send path, and a
/// power loss can at worst lose one report. A failure to write it is logged at
/// WARNING and otherwise ignored. Callers: the mailbox's opening thread after the
/// database is in WAL mode, and its destructor after the last statement closed.
void mark_open(const std::string& db_path);
/// `verified`: this run's full integrity_check completed and found nothing it could
/// not repair. The marker then also records the file as the close left it ("clean
/// verified <dev> <inode> <size> <mtime s> <mtime ns>"), for verified_unchanged().
void mark_clean(const std::string& db_path, bool verified = false);

/// True when the marker says the last run closed `db_path` cleanly after a complete,
/// clean integrity_check (mark_clean(verified)), and the file is still exactly as that
/// close left it (same device, inode, size and modification time) with no -wal beside
/// it: nothing has written it since. Then open may skip PRAGMA quick_check (open.hpp).
/// Never fails: anything it cannot read or match is "no".
bool verified_unchanged(const std::string& db_path);

/// Before the first connection opens `db_path`: when the marker says the last run
/// did not close the mailbox and the -wal file is gone, logs at WARNING that the
/// transactions committed since the last checkpoint may be lost. Never fails.
void warn_if_wal_missing(const std::string& db_path);

}  // namespace edgert::detail
