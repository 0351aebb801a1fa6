// Internal: the mailbox schema and its migrations (PRAGMA user_version).
#pragma once

#include <edgert/status.hpp>

#include <SQLiteCpp/Database.h>

#include <string>

namespace edgert::detail {

inline constexpr int kMailboxSchemaVersion = 5;

/// Brings `db` to kMailboxSchemaVersion, one migration per transaction. Refuses a
/// file from a newer edgert (user_version above what this build knows).
Status migrate_mailbox(SQLite::Database& db, const std::string& path);

}  // namespace edgert::detail
