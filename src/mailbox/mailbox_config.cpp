// The `mailbox:` section (docs/configuration.md, docs/mailbox.md).
#include "mailbox/mailbox_config.hpp"

namespace edgert::config {

const Table<MailboxSection>& mailbox_table() {
  static const Table<MailboxSection> t = [] {
    Table<MailboxSection> s;
    s.key("synchronous", &MailboxSection::synchronous, one_of({"normal", "full"}))
        .key("max_messages", &MailboxSection::max_messages, at_least(0))
        .key("max_bytes", &MailboxSection::max_bytes, at_least(0))
        .key("quota_policy", &MailboxSection::quota_policy, one_of({"reject_new", "evict_oldest"}))
        // SQLite refuses blobs over 1e9 bytes by default. The WAL bound: at least 1 MiB
        // (smaller resets it on nearly every commit), at most 1 TiB.
        .key("max_payload_bytes", &MailboxSection::max_payload_bytes, between(1, 1000000000))
        // One second to 100 years (MailboxOptions::max_ttl's own bounds).
        .key("max_ttl_s", &MailboxSection::max_ttl_s, between(1, std::int64_t{100} * 365 * 24 * 3600))
        .key("wal_limit_bytes", &MailboxSection::wal_limit_bytes,
             between(std::int64_t{1} << 20, std::int64_t{1} << 40))
        // Readers re-serialise payloads recursively: the depth bound is what keeps a
        // stored payload from overflowing their stack (docs/mailbox.md, "Input checks").
        .key("max_json_depth", &MailboxSection::max_json_depth, between(1, 1024))
        // Generated ids are 36 bytes; 16 leaves room for short caller-chosen ones.
        .key("max_id_bytes", &MailboxSection::max_id_bytes, between(16, 65536))
        // Shorter than 100 ms would refuse a queued backlog on any busy disk; an hour
        // is past any service manager's stop timeout.
        .key("close_timeout_ms", &MailboxSection::close_timeout_ms, between(100, 3600000))
        // A day at most between passes; 0 turns the periodic pass off (quota-driven
        // expiry in send() still runs).
        .key("cleanup_interval_s", &MailboxSection::cleanup_interval_s, between(0, 86400))
        // The replay window: at least a minute, at most ten years.
        .key("inbox_retention_s", &MailboxSection::inbox_retention_s,
             between(60, std::int64_t{10} * 365 * 24 * 3600))
        .key("inbox_max_messages", &MailboxSection::inbox_max_messages, at_least(0))
        .key("inbox_max_bytes", &MailboxSection::inbox_max_bytes, at_least(0))
        .key("inbox_min_free_bytes", &MailboxSection::inbox_min_free_bytes, at_least(0));
    return s;
  }();
  return t;
}

}  // namespace edgert::config
