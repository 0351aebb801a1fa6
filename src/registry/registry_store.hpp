// Internal: RegistryStore writes a ComponentRegistry to <data_dir>/registry.db, batched,
// for readers in other processes (`edgert-node status`), and keeps the supervisor's
// restart history there across node restarts. Guide: docs/registry.md, "registry.db".
//
// The file (SQLite, WAL, synchronous=NORMAL; PRAGMA user_version = kRegistrySchemaVersion):
//   node             one row: node_id, pid, started_at_ms, last_write_ms (wall),
//                    write_interval_ms, version, state ('running' | 'stopped')
//   components       one row per registry row (ComponentInfo's fields; labels as JSON;
//                    written_ms: the wall time of the batch that last wrote the row)
//   restart_history  (component_id, at_ms, reason): record_restart()/restarts_since()/prune()
//
// Batches: write_batch() takes one registry snapshot() (the registry's mutex, briefly;
// heartbeats are lock-free and never wait for it) and then, in one transaction, upserts
// only the rows that changed since the last committed batch, deletes the rows that left
// the registry, and rewrites the node row (the liveness beacon readers judge). A row
// "changed" when any field but its heartbeat/progress stamps differs from what was last
// committed, or a stamp moved by at least heartbeat_resolution. The store's own thread
// (start()) runs one batch per interval; stop() runs the last one with state 'stopped'.
// The first batch of a connection replaces every row left by an earlier process.
//
// Errors never reach the node: a batch that fails (disk full, permission, I/O, a locked
// file) is logged at ERROR once per run of failures, counted (stats().failures) and
// retried at the next interval with everything still unwritten; the recovery is logged
// at WARNING. The connection is closed after a failure and reopened for the next try.
// Opening: a file SQLite reports corrupt (SQLITE_CORRUPT, SQLITE_NOTADB, a failed
// quick_check) or one written by a newer schema is moved aside, with its -wal/-shm, to
// <path>.corrupt-<UTC stamp>[-N] (.newer-<stamp> for a newer schema), logged at ERROR
// naming both files, and a fresh file started (its restart history is in the moved file).
// Any other open failure leaves the file untouched and is retried like a failed batch.
#pragma once

#include <edgert/component_registry.hpp>
#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace SQLite {
class Database;
}

namespace edgert::detail {

inline constexpr int kRegistrySchemaVersion = 1;

struct RegistryStoreOptions {
  std::string path;  ///< <data_dir>/registry.db; its folder is created if missing
  std::string node_id;
  std::string version;  ///< written to the node row (edgert's version)
  std::int64_t pid = 0;  ///< written to the node row; 0: this process's
  /// At most one transaction per interval from the store's thread; also written to the
  /// node row, so readers know when a write is overdue.
  std::chrono::milliseconds interval{1000};
  /// A row whose only change is its heartbeat/progress stamp is rewritten once the
  /// stamp moved by this much (absorbs the ms jitter of derived wall stamps).
  std::chrono::milliseconds heartbeat_resolution{500};
  int busy_timeout_ms = 5000;
  /// Wall ms since the epoch (node row, written_ms, move-aside names); empty: system_clock.
  std::function<std::int64_t()> wall_ms;
  /// Called on the batch's thread after every batch with its outcome (the Node beats the
  /// store's own registry row with it). Must not call the store; an exception is logged.
  std::function<void(const Status&)> after_batch;
};

struct RegistryStoreStats {
  std::uint64_t batches = 0;        ///< committed transactions (node row included)
  std::uint64_t rows_written = 0;   ///< component rows upserted, over all batches
  std::uint64_t rows_deleted = 0;   ///< component rows deleted (left the registry)
  std::uint64_t failures = 0;       ///< failed batches and failed opens
  std::uint64_t moved_aside = 0;    ///< damaged or newer files moved aside at open
  std::uint64_t last_batch_rows = 0;  ///< rows upserted by the last committed batch
  std::string last_error;           ///< the newest failure's message ("" once recovered)
};

struct RestartRecord {
  std::string component_id;
  std::int64_t at_ms = 0;  ///< wall ms, as the caller recorded it
  std::string reason;
};

class EDGERT_API RegistryStore {  // exported for the tests
 public:
  using Options = RegistryStoreOptions;

  /// Any thread; does no I/O (the file opens on the first batch or call that needs it).
  /// `registry` must outlive the store. Throws std::invalid_argument for an empty path
  /// or an interval <= 0.
  RegistryStore(const ComponentRegistry& registry, Options options);
  /// Calls stop().
  ~RegistryStore();
  RegistryStore(const RegistryStore&) = delete;
  RegistryStore& operator=(const RegistryStore&) = delete;

  /// Any thread; starts the store's thread (one batch per interval, the first at once).
  /// Idempotent; a no-op after stop().
  void start();
  /// Any thread but the store's (and not from after_batch); blocks for the batch in
  /// progress, then writes the last batch with the node row 'stopped' and closes the
  /// file. Idempotent. A failing last write is logged and counted like any other.
  void stop();

  /// Any thread; blocks on file I/O (at most busy_timeout_ms while another connection
  /// holds the write lock). Writes one batch now, node row 'running'; returns its
  /// outcome (io_error naming the file and the cause). Counted and logged as the
  /// thread's batches are. Tests call it instead of starting the thread.
  Status write_batch();

  // Restart history, for the supervisor (h-supervisor). Each call is its own short
  // transaction, independent of the batches, so a record is durable when it returns.
  // Any thread; blocks on file I/O (at most busy_timeout_ms for a lock). Errors are
  // returned (io_error naming the file and the cause; the file is opened first if it
  // is not open), never thrown, and never stop the node: a supervisor that cannot
  // persist keeps its history in memory. Rows are never removed except by prune(): the
  // supervisor bounds the table by pruning what is older than its window.

  /// Appends (component_id, at_ms, reason). invalid_argument for an empty id.
  Status record_restart(std::string_view component_id, std::int64_t at_ms, std::string_view reason);
  /// The records of `component_id` with at_ms >= since_ms, oldest first.
  Result<std::vector<RestartRecord>> restarts_since(std::string_view component_id, std::int64_t since_ms);
  /// Deletes every record with at_ms < before_ms (all components); returns how many.
  Result<std::uint64_t> prune(std::int64_t before_ms);

  /// Any thread; never blocks for long (a mutex held only to copy the counters).
  RegistryStoreStats stats() const;
  const std::string& path() const noexcept { return options_.path; }

 private:
  void run();
  void call_after_batch(const Status& st) noexcept;
  Status write_locked(bool final_batch);
  Status open_locked();
  void close_locked() noexcept;
  void note_failure_locked(const Status& st);
  void note_success_locked();
  std::int64_t now_ms() const;
  bool changed(const ComponentInfo& now, const ComponentInfo& before) const;

  const ComponentRegistry& registry_;
  Options options_;
  std::int64_t started_at_ms_ = 0;

  mutable std::mutex db_mu_;  // the connection and everything below it
  std::unique_ptr<SQLite::Database> db_;
  bool fresh_connection_ = false;  // the next batch replaces every row in the file
  std::unordered_map<std::string, ComponentInfo> written_;  // what the file holds, per row
  bool failing_ = false;
  std::uint64_t failures_in_run_ = 0;
  RegistryStoreStats stats_;

  std::mutex thread_mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

// ---- reading, from another process ----------------------------------------------

struct StoredNodeRow {
  std::string node_id;
  std::int64_t pid = 0;
  std::int64_t started_at_ms = 0;
  std::int64_t last_write_ms = 0;
  std::int64_t write_interval_ms = 0;
  std::string version;
  std::string state;  ///< "running" or "stopped", as the node last wrote it
};

struct StoredComponentRow {
  std::string id, name, kind, status, reason;
  std::map<std::string, std::string> labels;
  std::int64_t last_heartbeat_ms = 0, last_progress_ms = 0;
  bool expects_progress = false;
  std::int64_t heartbeat_period_ms = 0;
  std::string last_error;
  std::int64_t last_error_ms = 0;
  std::uint64_t restarts = 0;
  std::int64_t created_ms = 0, updated_ms = 0, written_ms = 0;
  bool attached = false;
};

struct StoredRegistry {
  StoredNodeRow node;
  std::vector<StoredComponentRow> components;  ///< sorted by kind, then name
};

/// Any thread; blocks on file I/O (at most busy_timeout_ms). Reads `path` through a
/// SQLITE_OPEN_READONLY connection in one read transaction: safe while a node writes it
/// (WAL: a writer's open transaction does not block it; the reader sees the last
/// commit). Takes no lock of the data_dir. Errors: not_found when the file does not
/// exist; io_error naming the file when it cannot be read, is not a registry.db (no
/// node row, schema version 0) or is damaged; unsupported for a newer schema.
EDGERT_API Result<StoredRegistry> read_registry_db(const std::string& path, int busy_timeout_ms = 5000);

}  // namespace edgert::detail
