// Internal: the full PRAGMA integrity_check of an open mailbox, run in the background
// (docs/mailbox.md, "Corruption").
//
// Why: open runs only quick_check, which does not compare indexes with their tables.
// A damaged index passes it, and rows it no longer finds can never be marked
// delivered (they are redelivered forever). The full check reads every page, so it
// runs after open on its own thread and read-only connection: open stays fast.
// Contract: one pass. Damage that names indexes only is repaired without loss by
// REINDEX (rebuilt from the table rows) on the writer's connection while holding the
// writer's mutex, then checked again; the outcome is logged (WARNING when repaired,
// ERROR naming the file and the first problems when not) and counted. Damage
// REINDEX cannot repair leaves the mailbox running on the rows it can still read
// (docs/mailbox.md says why it is not quarantined).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace edgert::detail {

class IntegrityChecker {
 public:
  /// Starts the pass on a new thread. Caller: the mailbox's opening thread, once
  /// `writer` is ready; `writer_mu` is held by whoever uses `writer`. Never fails: a
  /// check that cannot run is logged at WARNING and not counted.
  /// After the check, the pass also verifies every outbox row's checksum
  /// (row_check.hpp) and calls `on_damaged_row(message_id)` for each row that fails,
  /// holding `writer_mu`; rows a due time far ahead would keep out of every read are
  /// found at open this way, not when they expire.
  IntegrityChecker(std::string path, sqlite3* writer, std::mutex& writer_mu,
                   std::function<void(const std::string& message_id)> on_damaged_row = {});
  /// Interrupts a check in progress (its statement stops within a few thousand VM
  /// steps) and joins the thread; a repair already under way is allowed to finish.
  /// Caller: one that does not hold `writer_mu`, before `writer` closes.
  ~IntegrityChecker();
  /// As the destructor, but keeps the counters readable. Idempotent; same caller rule.
  void stop();
  IntegrityChecker(const IntegrityChecker&) = delete;
  IntegrityChecker& operator=(const IntegrityChecker&) = delete;

  /// Any thread, never blocks.
  std::uint64_t checks() const noexcept { return checks_; }
  std::uint64_t repairs() const noexcept { return repairs_; }
  std::uint64_t failures() const noexcept { return failures_; }

 private:
  struct Outcome;
  void run();
  Outcome check(sqlite3* db);
  void verify_rows(sqlite3* db);
  static int on_progress(void* self);

  const std::string path_;
  sqlite3* const writer_;
  std::mutex& writer_mu_;
  const std::function<void(const std::string&)> on_damaged_row_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;      // makes stop() idempotent
  std::mutex db_mu_;        // guards db_ for sqlite3_interrupt() from the destructor
  sqlite3* db_ = nullptr;   // the thread's own read-only connection while it is open
  std::atomic<std::uint64_t> checks_{0}, repairs_{0}, failures_{0};
  std::thread thread_;
};

}  // namespace edgert::detail
