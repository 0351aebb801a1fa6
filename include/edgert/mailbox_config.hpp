// The `mailbox:` configuration section: the node's store-and-forward database
// (<node.data_dir>/mailbox.db); see docs/mailbox.md and docs/configuration.md.
#pragma once

#include <cstdint>
#include <string>

namespace edgert {

struct MailboxSection {
  std::string synchronous = "normal";        // normal: survives a process crash; full: a power loss
  std::int64_t max_messages = 0;             // outbox quota in messages; 0: unlimited
  std::int64_t max_bytes = 0;                // outbox quota in stored bytes; 0: unlimited
  std::string quota_policy = "reject_new";   // reject_new | evict_oldest
  std::int64_t max_payload_bytes = 1 << 20;  // [1, 1e9]; larger payloads are refused
  std::int64_t max_ttl_s = 365 * 24 * 3600;  // [1 s, 100 years]; longer TTLs act as this
  std::int64_t wal_limit_bytes = 64 << 20;   // [1 MiB, 1 TiB]; the WAL is reset past this
  std::int64_t max_json_depth = 64;          // [1, 1024]; payloads nesting deeper are refused
  std::int64_t max_id_bytes = 256;           // [16, 65536]; longer message ids, node ids, types are refused
  std::int64_t close_timeout_ms = 10000;     // [100, 3600000]; longest wait to commit the queue on stop
  std::int64_t cleanup_interval_s = 60;      // [0, 86400]; expiry and inbox retention pass; 0: off
  std::int64_t inbox_retention_s = 24 * 3600;    // [60 s, 10 years]; acknowledged inbox rows kept (replay window)
  std::int64_t inbox_max_messages = 100000;      // inbox quota in messages; 0: unlimited
  std::int64_t inbox_max_bytes = 64 << 20;       // inbox quota in stored bytes; 0: unlimited
  std::int64_t inbox_min_free_bytes = 16 << 20;  // inbound stored only while the disk has this free; 0: no floor
};

}  // namespace edgert
