#include "mailbox/schema.hpp"

#include "core/log.hpp"

#include <SQLiteCpp/Transaction.h>

#include <array>

namespace edgert::detail {
namespace {

// Migration i takes the schema from version i to i + 1. Append only.
constexpr std::array<const char*, kMailboxSchemaVersion> kMigrations = {
    // 0 -> 1: seed 002's outbox and inbox, plus priority, payload type, size,
    // idempotency keys and running totals kept by triggers (stats without a scan).
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
CREATE TABLE totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO totals VALUES ('outbox_rows', 0), ('outbox_bytes', 0), ('inbox_rows', 0), ('inbox_bytes', 0);
CREATE TRIGGER outbox_added AFTER INSERT ON outbox BEGIN
  UPDATE totals SET value = value + 1 WHERE name = 'outbox_rows';
  UPDATE totals SET value = value + NEW.size WHERE name = 'outbox_bytes';
END;
CREATE TRIGGER outbox_removed AFTER DELETE ON outbox BEGIN
  UPDATE totals SET value = value - 1 WHERE name = 'outbox_rows';
  UPDATE totals SET value = value - OLD.size WHERE name = 'outbox_bytes';
END;
CREATE TRIGGER inbox_added AFTER INSERT ON inbox BEGIN
  UPDATE totals SET value = value + 1 WHERE name = 'inbox_rows';
  UPDATE totals SET value = value + NEW.size WHERE name = 'inbox_bytes';
END;
CREATE TRIGGER inbox_removed AFTER DELETE ON inbox BEGIN
  UPDATE totals SET value = value - 1 WHERE name = 'inbox_rows';
  UPDATE totals SET value = value - OLD.size WHERE name = 'inbox_bytes';
END;
)sql",
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
    SQLite::Transaction txn(db);
    db.exec(kMigrations[static_cast<std::size_t>(v)]);
    db.exec("PRAGMA user_version = " + std::to_string(v + 1));
    txn.commit();
    log().info("mailbox {}: schema migrated to version {}", path, v + 1);
  }
  return {};
}

}  // namespace edgert::detail
