#include "mailbox/schema.hpp"

#include "core/log.hpp"
#include "mailbox/row_check.hpp"

#include <SQLiteCpp/Transaction.h>

#include <array>

namespace edgert::detail {
namespace {

// Migration i takes the schema from version i to i + 1. Append only.
constexpr std::array<const char*, kMailboxSchemaVersion> kMigrations = {
    // 0 -> 1: seed 002's outbox and inbox, plus priority, payload type, size,
    // idempotency keys and running totals (stats without a scan). The totals are
    // updated by the mailbox in the same transaction as the rows: per-row triggers
    // measured 5x slower on inserts.
    R"sql(
CREATE TABLE outbox (
  message_id TEXT NOT NULL UNIQUE,
  recipient_node_id TEXT NOT NULL,
  payload_type TEXT NOT NULL,
  envelope_json TEXT NOT NULL,
  size INTEGER NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (priority DESC, next_attempt_ms);
CREATE INDEX outbox_expiry ON outbox (expires_ms);
CREATE INDEX outbox_evict ON outbox (priority, created_ms);
CREATE TABLE inbox (
  message_id TEXT PRIMARY KEY,
  sender_node_id TEXT NOT NULL,
  payload_type TEXT NOT NULL,
  envelope_json TEXT NOT NULL,
  size INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX inbox_unacked ON inbox (acknowledged, payload_type, received_ms);
CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  message_id TEXT NOT NULL,
  expires_ms INTEGER NOT NULL
);
CREATE TABLE totals (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  outbox_rows INTEGER NOT NULL, outbox_bytes INTEGER NOT NULL,
  inbox_rows INTEGER NOT NULL, inbox_bytes INTEGER NOT NULL
);
INSERT INTO totals VALUES (1, 0, 0, 0, 0);
)sql",
    // 1 -> 2: small named values the mailbox keeps about itself. `last_wall_ms`: the
    // last wall time it saw, so a clock set back while it was closed is noticed at
    // open (docs/mailbox.md, "Clock jumps and TTLs").
    R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql",
    // 2 -> 3: received messages the node refused (docs/mailbox.md, "Dead letters").
    // raw is a BLOB: what arrived may be any bytes. id orders them (newest last);
    // the small index keeps COUNT(*) off the table's pages.
    R"sql(
CREATE TABLE dead_letter (
  id INTEGER PRIMARY KEY,
  message_id TEXT NOT NULL,
  sender_node_id TEXT NOT NULL,
  source TEXT NOT NULL,
  reason TEXT NOT NULL,
  raw BLOB NOT NULL,
  received_ms INTEGER NOT NULL
);
CREATE INDEX dead_letter_received ON dead_letter (received_ms);
)sql",
    // 3 -> 4: inbox bounds and replay spaces (docs/mailbox.md, "Inbox"). A message_id
    // is unique within its `scope` only (one per channel and verified sender), so
    // nothing unauthenticated can occupy an id an authenticated message is checked
    // against. Acknowledged rows are retired by received_ms once past the replay
    // window (partial index: only they are scanned). `totals` keeps the unacked and
    // dead-letter counts, so stats() never counts rows.
    R"sql(
CREATE TABLE inbox4 (
  scope TEXT NOT NULL DEFAULT '',
  message_id TEXT NOT NULL,
  sender_node_id TEXT NOT NULL,
  payload_type TEXT NOT NULL,
  envelope_json TEXT NOT NULL,
  size INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  acknowledged INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (scope, message_id)
);
INSERT INTO inbox4 (scope, message_id, sender_node_id, payload_type, envelope_json, size, received_ms, acknowledged)
  SELECT '', message_id, sender_node_id, payload_type, envelope_json, size, received_ms, acknowledged FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox4 RENAME TO inbox;
CREATE INDEX inbox_unacked ON inbox (acknowledged, payload_type, received_ms);
CREATE INDEX inbox_retire ON inbox (received_ms) WHERE acknowledged = 1;
CREATE INDEX idempotency_expiry ON idempotency (expires_ms);
ALTER TABLE totals ADD COLUMN inbox_unacked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE totals ADD COLUMN dead_letters INTEGER NOT NULL DEFAULT 0;
UPDATE totals SET inbox_unacked = (SELECT COUNT(*) FROM inbox WHERE acknowledged = 0),
                  dead_letters = (SELECT COUNT(*) FROM dead_letter);
)sql",
    // 4 -> 5: a checksum per outbox row over its envelope and schedule (row_check.hpp,
    // docs/mailbox.md "Damaged values in rows"); the rows already stored get theirs
    // now (what they hold today is taken as written).
    "ALTER TABLE outbox ADD COLUMN row_sum INTEGER;\n"
    "UPDATE outbox SET row_sum = " EDGERT_ROW_SUM ";\n",
};

}  // namespace

Status migrate_mailbox(SQLite::Database& db, const std::string& path) {
  const int current = db.execAndGet("PRAGMA user_version").getInt();
  if (current > kMailboxSchemaVersion) {
    return {ErrorCode::unsupported, path + ": schema version " + std::to_string(current) +
                                        " is newer than this edgert understands (" +
                                        std::to_string(kMailboxSchemaVersion) + ")"};
  }
  for (int v = current; v < kMailboxSchemaVersion; ++v) {
    SQLite::Transaction txn(db, SQLite::TransactionBehavior::IMMEDIATE);
    db.exec(kMigrations[static_cast<std::size_t>(v)]);
    db.exec("PRAGMA user_version = " + std::to_string(v + 1));
    txn.commit();
    log().info("mailbox {}: schema migrated to version {}", path, v + 1);
  }
  return {};
}

}  // namespace edgert::detail
