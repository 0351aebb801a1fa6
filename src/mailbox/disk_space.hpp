// Disk space for the mailbox on small and full volumes (docs/mailbox.md, "Disk full and
// small disks"): WAL thresholds derived from the free space, and a reserve file that is
// given up so delivery bookkeeping (which only deletes or updates rows, but must append
// to the WAL to do so) still commits on a full disk.
#pragma once

#include <edgert/status.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace edgert::detail {

/// Bytes an unprivileged writer may still use on the file system holding `dir`
/// (statvfs: f_bavail x f_frsize). Any thread; one system call. Errors: io_error naming dir.
Result<std::uint64_t> free_bytes(const std::string& dir);

struct WalBudget {
  std::uint64_t checkpoint_bytes = 0;  // a PASSIVE checkpoint per this much new WAL
  std::uint64_t limit_bytes = 0;       // a RESTART checkpoint past this WAL size
  bool lowered = false;                // either is below its configured value
  bool full = false;                   // sends are refused: checkpoint inside commits
};

/// The configured thresholds, lowered so the WAL stays well below `room` (the bytes it
/// may occupy): checkpoint at min(configured, room/8), limit at min(configured, room/4),
/// neither below kMinCheckpointBytes. Pure.
WalBudget wal_budget(std::uint64_t checkpoint_bytes, std::uint64_t limit_bytes, std::uint64_t room);
inline constexpr std::uint64_t kMinCheckpointBytes = 32 * 1024;
inline constexpr std::uint64_t kMinRoomBytes = 64 * 1024;

/// Owns <data_dir>/mailbox.reserve and the "sends refused, the disk is full" state.
/// Thread-safe: every member may be called from any thread; none blocks beyond a few
/// file-system calls.
class DiskGuard {
 public:
  /// `db_path` is the mailbox file (names the WAL and the log lines); the byte counts
  /// are the configured WAL thresholds (MailboxOptions).
  DiskGuard(std::string db_path, std::string dir, std::uint64_t checkpoint_bytes, std::uint64_t limit_bytes);

  /// At open: removes a reserve left by an earlier run, creates a new one of
  /// min(1 MiB, free/4) bytes when space allows (WARNING when it cannot), and returns the
  /// WAL budget for the space left (INFO when lowered). Errors: io_error if statvfs fails.
  Result<WalBudget> open();
  /// `apply` receives each new WAL budget (on full, on restore), under the guard's lock.
  void set_apply(std::function<void(const WalBudget&)> apply) {
    std::lock_guard lk(mu_);
    apply_ = std::move(apply);
  }

  /// True while sends are refused (a send hit a full disk, or the reserve was given up).
  bool refusing() const noexcept { return refusing_.load(std::memory_order_relaxed); }
  /// The quota_exceeded answer for a refused send of `message_id`; counts it.
  Status refusal(const std::string& printable_id);
  /// Counts `n` refused sends (their commit failed for a full disk).
  void count_refused(std::uint64_t n) noexcept { refused_ += n; }
  std::uint64_t refused() const noexcept { return refused_; }

  /// A send's commit failed with SQLITE_FULL: sends are refused from now on (WARNING
  /// once) and the WAL budget is re-derived from the space left.
  void on_send_full();
  /// A delivery bookkeeping write (`op`) failed with SQLITE_FULL: deletes the reserve
  /// (WARNING once) and refuses sends. True if a reserve was freed (worth one retry).
  bool release_reserve(const std::string& op);
  /// While refusing: if the reserve can be re-created with kMinRoomBytes left beside it
  /// (what the WAL needs for a few commits; counting the WAL's own file or free pages
  /// inside the database made it flap between full and restored), re-creates it and
  /// accepts sends again (INFO once). Cheap when not refusing.
  void maybe_restore();

  const std::string& reserve_path() const noexcept { return reserve_path_; }

 private:
  Status create_reserve_locked();  // under mu_
  std::uint64_t wal_size() const;

  const std::string db_path_, dir_, reserve_path_;
  const std::uint64_t checkpoint_bytes_, limit_bytes_;
  std::function<void(const WalBudget&)> apply_;
  std::mutex mu_;
  std::uint64_t reserve_size_ = 0;  // under mu_; 0: none wanted (too little space at open)
  bool held_ = false;               // under mu_
  std::atomic<bool> refusing_{false};
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace edgert::detail
