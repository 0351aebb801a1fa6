// Internal: a checksum per outbox row over its envelope and its schedule (docs/mailbox.md,
// "Damaged values in rows").
//
// Why: SQLite checks the structure of its pages, not the values in them. A flipped bit
// inside a stored integer or string passes quick_check and integrity_check; in an
// expiry or due time it silently expires a message, or holds it back for weeks; in a
// message_id it makes a row that can never be marked delivered. The checksum turns such
// a row into an unreadable one: named at ERROR, counted (MailboxCounters::unreadable),
// kept in the file, skipped, and never deleted as "expired".
//
// Contract: row_sum = edgert_row_sum(every column of the row but row_sum), a 64-bit
// hash as a signed integer, computed in SQL by every statement that writes the columns
// (insert, mark_failed, rebase), so the value and its checksum are written together.
// A statement that changes a row recomputes the checksum only when the old one still
// matched: an update never launders damage. NULL means "not verified" (rows written
// before migration 4 -> 5 are filled in by it; a NULL found later is accepted).
#pragma once

struct sqlite3;

// The checksum of the row's current columns, as an SQL expression over outbox.
#define EDGERT_ROW_SUM                                                                                       \
  "edgert_row_sum(message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts, " \
  "next_attempt_ms, expires_ms, created_ms)"
// True when the row's stored checksum matches its columns (or it has none).
#define EDGERT_ROW_OK "(row_sum IS NULL OR row_sum = " EDGERT_ROW_SUM ")"

// The new value of row_sum in an UPDATE: `new_sum` (the checksum over the columns as
// the UPDATE sets them) when the old one matched, else the old one, so damage stays
// visible (and NULL stays NULL).
#define EDGERT_ROW_RESUM(new_sum) "row_sum = CASE WHEN row_sum = " EDGERT_ROW_SUM " THEN " new_sum " ELSE row_sum END"

namespace edgert::detail {

/// Registers the deterministic SQL function edgert_row_sum(10 values) on `db`. Any SQL
/// value is accepted (NULL, integers, text, blobs, reals are hashed with their type, so
/// 1 and '1' differ). Call on every connection that writes outbox rows or verifies
/// them, before the first such statement. Returns the sqlite3 result code.
int register_row_check(sqlite3* db);

}  // namespace edgert::detail
