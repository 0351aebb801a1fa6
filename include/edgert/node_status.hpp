// NodeStatus: what `edgert-node status` shows about a node, read from its data_dir by
// another process while the node runs (or after it stopped or died): the node row and
// component rows of <data_dir>/registry.db, judged, and the mailbox's totals.
// Guide: docs/operations.md, "Health and restarts", "`edgert-node status`".
//
// Reading takes no lock of the data_dir and writes nothing: registry.db is opened
// read-only (SQLITE_OPEN_READONLY; WAL lets it read beside the node's writer) and
// mailbox.db through Mailbox::read_stats.
//
// Whether the node runs: it wrote `running` last, its pid is alive on this host, and its
// last write is younger than stale_after (default: 3 write intervals, at least 3 s).
// A node that is not running never shows healthy components: each row's `status` is
// then "unknown" (or "stopped" when it was written stopped) and `last_status` keeps what
// the node last wrote.
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace edgert {

/// One component row as the status command shows it.
struct NodeStatusComponent {
  std::string id;  ///< "<kind>/<name>"
  std::string kind;
  std::string name;
  std::string status;       ///< the node's word while it runs; else "unknown" or "stopped"
  std::string last_status;  ///< what the node last wrote
  std::string reason;       ///< why it has last_status
  double heartbeat_age_s = 0;  ///< now - its last heartbeat (wall); grows once the node is gone
  std::uint64_t restarts = 0;
  std::string last_error;  ///< "" when none was reported
  double last_error_age_s = -1;  ///< -1 when no error was reported
  std::map<std::string, std::string> labels;
};

/// The mailbox's totals (Mailbox::read_stats), or why they could not be read.
struct NodeStatusMailbox {
  bool readable = false;
  std::string error;  ///< when not readable: the message naming the file
  std::uint64_t outbox_rows = 0, outbox_bytes = 0;
  std::uint64_t inbox_rows = 0, inbox_bytes = 0, inbox_unacked = 0;
  std::uint64_t dead_letter_rows = 0;
  std::int64_t oldest_pending_age_ms = 0;
};

struct EDGERT_API NodeStatus {
  std::string data_dir;
  std::string path;  ///< <data_dir>/registry.db
  std::string node_id;
  std::int64_t pid = 0;
  std::string version;       ///< edgert version of the node that wrote the file
  std::string state;         ///< "running" or "stopped", as the node last wrote it
  std::int64_t started_at_ms = 0;    ///< wall
  std::int64_t last_write_ms = 0;    ///< wall
  std::int64_t write_interval_ms = 0;
  double last_write_age_s = 0;
  bool running = false;
  std::string not_running_reason;  ///< "" while running
  std::vector<NodeStatusComponent> components;  ///< sorted by kind, then name
  NodeStatusMailbox mailbox;

  /// `edgert-node status`'s exit code: 0 running and every component `ready` (or
  /// `stopped`: released by its owner), 1 running with some other status, 2 not running.
  [[nodiscard]] int exit_code() const noexcept;
  /// Any thread. {"node": {...}, "components": [...], "mailbox": {...}} on one line
  /// (docs/operations.md has a sample). Text that is not UTF-8 is replaced, never thrown.
  [[nodiscard]] std::string to_json() const;
  /// Any thread. A table for people: a node line, one line per component, the mailbox.
  [[nodiscard]] std::string to_table() const;
};

struct NodeStatusOptions {
  /// Wall ms since the epoch; injectable for tests. Empty: system_clock.
  std::function<std::int64_t()> wall_ms;
  /// A node whose last write is older is not running; 0: 3 write intervals, at least 3 s.
  std::chrono::milliseconds stale_after{0};
  /// How long to wait for a lock SQLite needs even to read (e.g. a WAL recovery).
  int busy_timeout_ms = 5000;
};

/// Any thread; blocks on file I/O. Reads <data_dir>/registry.db and mailbox.db as above.
/// Errors (the status command's exit 3): not_found naming <data_dir>/registry.db when it
/// does not exist; io_error naming it when it cannot be read or is damaged; unsupported
/// for a file written by a newer edgert. A mailbox that cannot be read is not an error
/// (NodeStatus::mailbox says why).
[[nodiscard]] EDGERT_API Result<NodeStatus> read_node_status(const std::string& data_dir,
                                                             const NodeStatusOptions& options = {});

}  // namespace edgert
