// Checkpointer: moves WAL checkpoints off the mailbox's writer thread.
//
// Why: SQLite's automatic checkpoint runs inside the commit that crosses its
// threshold, copying the WAL and fsyncing inline, so every sender of that group
// waits for it (docs/performance.md, "Mailbox", has the figures).
// Contract: on its own connection and thread, PASSIVE rounds (which never block the
// writer) run every `passive_frames` new WAL frames. Under sustained load the WAL is
// never fully checkpointed between two commits and so never resets; past
// `restart_frames` a RESTART round runs while holding the writer's mutex (SQLite's
// busy handler, which only polls the lock, would starve). That round waits at most
// 50 ms for readers in other processes (a backup, say); if they still hold the WAL
// it gives up and retries after a second. Should that thread fall behind (starved
// on a loaded machine) until the WAL is a quarter past `restart_frames`, the commit
// itself runs a PASSIVE round, so the WAL stays bounded whatever the scheduling. Once the writer has been quiet for
// `idle_ms` with frames not yet checkpointed, an idle round runs PASSIVE and, if that
// copied everything, TRUNCATE (under the writer's mutex; the writer is idle), so a
// quiet mailbox leaves no WAL on disk (docs/mailbox.md, "Disk full and small disks").
#pragma once

#include <edgert/status.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace edgert::detail {

class Checkpointer {
 public:
  // In WAL frames (pages); the mailbox derives them from MailboxOptions'
  // wal_checkpoint_bytes and wal_limit_bytes, which hold the defaults.
  struct Limits {
    int passive_frames = 0;
    int restart_frames = 0;
    int idle_ms = 1000;
  };

  /// Opens a second read-write connection to `path` and starts the thread, then
  /// takes over checkpointing from `writer` (the connection that commits): turns its
  /// automatic checkpoint off and installs its WAL hook. Caller: the mailbox's
  /// opening thread, before `writer` is used by another. Errors: io_error.
  /// `writer_mu` is held by whoever uses `writer`, for each transaction.
  static Result<std::unique_ptr<Checkpointer>> start(const std::string& path, sqlite3* writer,
                                                     std::mutex& writer_mu, Limits limits,
                                                     std::function<void()> after_truncate = {});
  /// Stops the thread, removes the hook from the writer connection, closes its own.
  /// Blocks for at most the round in progress. Caller: one that does not hold
  /// `writer_mu`, once nothing else uses the writer connection.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  /// Rounds run so far, and those that could not finish (logged at WARNING); a
  /// PASSIVE round that found the WAL busy is retried and is not a failure.
  std::uint64_t rounds() const noexcept { return rounds_; }
  std::uint64_t failures() const noexcept { return failures_; }
  /// Replaces the size thresholds (idle_ms is kept). Any thread, never blocks.
  void set_limits(Limits limits) noexcept;
  /// On a full disk: PASSIVE rounds run inside the writer's commit (as SQLite's own
  /// automatic checkpoint does), so that with no concurrent writer they copy every
  /// frame and the WAL is reused instead of growing into the space the bookkeeping
  /// needs. The background thread could be starved of the writer's mutex by a caller
  /// marking messages delivered back to back. A commit whose round finds this thread's
  /// round in progress waits for it and runs its own. Any thread, never blocks.
  void set_inline(bool on) noexcept { inline_.store(on, std::memory_order_relaxed); }

 private:
  Checkpointer(std::string path, sqlite3* writer, std::mutex& writer_mu, sqlite3* own, Limits limits,
               std::function<void()> after_truncate);
  static int on_commit(void* self, sqlite3* db, const char* schema, int wal_frames);
  void run();
  // PASSIVE, then TRUNCATE if that left nothing behind. False: try again later.
  bool idle_round();

  const std::string path_;
  sqlite3* const writer_;
  std::mutex& writer_mu_;
  sqlite3* const db_;
  std::atomic<int> passive_frames_, restart_frames_;
  const int idle_ms_;
  const std::function<void()> after_truncate_;  // on this thread, after an idle TRUNCATE
  // Steady-clock ns of the last commit; whether frames were committed since the last
  // idle round that left the WAL empty.
  std::atomic<std::int64_t> last_commit_ns_{0};
  std::atomic<bool> dirty_{false};
  std::atomic<bool> inline_{false};
  std::atomic<int> backfilled_{0};  // WAL frames already copied by the last round
  std::atomic<std::uint64_t> rounds_{0}, failures_{0};
  // Held by this thread around each checkpoint it runs without the writer's mutex (the
  // PASSIVE ones): SQLite lets one checkpoint run at a time, so while this thread's round
  // is in progress the commit's own round returns SQLITE_BUSY. On a full disk the commit
  // waits on this mutex and tries again, rather than committing on into a WAL nobody can
  // reset (a round starved on a loaded machine grew it past its bound). Never taken while
  // holding it: writer_mu_ (no lock-order cycle with the commit, which holds writer_mu_).
  std::mutex round_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  int wanted_frames_ = 0;  // under mu_: WAL size reported by the commit that asked
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace edgert::detail
