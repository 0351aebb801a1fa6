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
// it gives up and retries after a second.
#pragma once

#include <edgert/status.hpp>

#include <atomic>
#include <condition_variable>
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
  };

  /// Opens a second read-write connection to `path` and starts the thread, then
  /// takes over checkpointing from `writer` (the connection that commits): turns its
  /// automatic checkpoint off and installs its WAL hook. Caller: the mailbox's
  /// opening thread, before `writer` is used by another. Errors: io_error.
  /// `writer_mu` is held by whoever uses `writer`, for each transaction.
  static Result<std::unique_ptr<Checkpointer>> start(const std::string& path, sqlite3* writer,
                                                     std::mutex& writer_mu, Limits limits);
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

 private:
  Checkpointer(std::string path, sqlite3* writer, std::mutex& writer_mu, sqlite3* own, Limits limits);
  static int on_commit(void* self, sqlite3* db, const char* schema, int wal_frames);
  void run();

  const std::string path_;
  sqlite3* const writer_;
  std::mutex& writer_mu_;
  sqlite3* const db_;
  const Limits limits_;
  std::atomic<int> backfilled_{0};  // WAL frames already copied by the last round
  std::atomic<std::uint64_t> rounds_{0}, failures_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int wanted_frames_ = 0;  // under mu_: WAL size reported by the commit that asked
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace edgert::detail
