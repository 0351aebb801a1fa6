// Adapter: Mailbox::stats(), read once per snapshot.
#include <edgert/component_metrics.hpp>
#include <edgert/mailbox.hpp>

#include <span>
#include <stdexcept>
#include <string>

namespace edgert {

MetricsRegistration register_mailbox_metrics(MetricsRegistry& registry, std::string_view name, Mailbox& mailbox) {
  const Labels l{{"mailbox", std::string(name)}};
  auto c = [&l](const char* n, const char* help) {
    return SeriesSpec{std::string("edgert_mailbox_") + n, l, help, MetricType::counter};
  };
  auto g = [&l](const char* n, const char* help) {
    return SeriesSpec{std::string("edgert_mailbox_") + n, l, help, MetricType::gauge};
  };
  // The order here is the order the collector fills values in.
  std::vector<SeriesSpec> series{
      c("sent_total", "Outbox rows committed by send()."),
      c("idempotent_hits_total", "send() calls answered with an earlier message's id."),
      c("delivered_total", "Outbox messages marked delivered."),
      c("failed_attempts_total", "Delivery attempts marked failed."),
      c("expired_total", "Outbox messages removed after their TTL."),
      c("duplicates_total", "Inbox replays refused."),
      c("evicted_total", "Outbox messages evicted by the quota."),
      c("rejected_total", "Messages refused by quota, size or validation."),
      c("commits_total", "send() transactions (group commits)."),
      c("write_errors_total", "Sends whose commit failed."),
      c("checkpoints_total", "Background WAL checkpoints run."),
      c("checkpoint_failures_total", "Background WAL checkpoints that did not finish."),
      c("unreadable_total", "Stored rows that could not be decoded or failed their checksum (skipped, kept, logged)."),
      c("notification_errors_total", "on_notification callbacks that threw."),
      c("disk_full_total", "Sends refused because the disk is full (not stored)."),
      c("integrity_checks_total", "Background integrity_check passes completed."),
      c("integrity_repairs_total", "Index damage repaired by REINDEX."),
      c("integrity_failures_total", "Damage found that REINDEX could not repair."),
      c("clock_jumps_total", "Wall-clock jumps the outbox schedule was rebased for."),
      c("leased_total", "Outbox rows handed out by lease()."),
      c("lease_expired_total", "Leases that ran out before the row was marked or released."),
      c("dead_lettered_total", "Refused inbound messages stored as dead letters."),
      c("dead_letters_pruned_total", "Oldest dead letters removed to stay within max_dead_letters."),
      c("cleanups_total", "Cleanup passes run (expiry, idempotency keys, inbox retention)."),
      c("inbox_retired_total", "Acknowledged inbox rows removed after inbox_retention_s."),
      c("inbox_refused_total", "Inbound messages refused: inbox quota or disk below inbox_min_free_bytes."),
      c("inbox_conflicts_total", "Inbound messages whose id was stored in their scope with other content."),
      g("outbox_rows", "Messages waiting in the outbox."),
      g("outbox_bytes", "Stored bytes in the outbox."),
      g("inbox_rows", "Messages in the inbox."),
      g("inbox_bytes", "Stored bytes in the inbox."),
      g("inbox_unacked", "Inbox messages not yet acknowledged."),
      g("leased_now", "Outbox rows under a lease."),
      g("dead_letter_rows", "Dead letters kept."),
      g("oldest_pending_age_seconds", "Age of the oldest outbox message; 0 when empty."),
  };
  return registry.register_collector(std::move(series), [&mailbox, label = std::string(name)](std::span<double> out) {
    auto stats = mailbox.stats();
    if (!stats.ok()) throw std::runtime_error("mailbox " + label + ": " + stats.status().message());
    const MailboxStats& s = stats.value();
    const MailboxCounters& k = s.counters;
    const std::uint64_t v[] = {k.sent,        k.idempotent_hits, k.delivered,   k.failed_attempts, k.expired,
                               k.duplicates,  k.evicted,         k.rejected,    k.commits,         k.write_errors,
                               k.checkpoints, k.checkpoint_failures, k.unreadable, k.notification_errors, k.disk_full,
                               k.integrity_checks, k.integrity_repairs, k.integrity_failures,
                               k.clock_jumps, k.leased, k.lease_expired, k.dead_lettered, k.dead_letters_pruned,
                               k.cleanups, k.inbox_retired, k.inbox_refused, k.inbox_conflicts,
                               s.outbox_rows, s.outbox_bytes, s.inbox_rows,
                               s.inbox_bytes, s.inbox_unacked, s.leased_now, s.dead_letter_rows};
    std::size_t i = 0;
    for (const auto x : v) out[i++] = static_cast<double>(x);
    out[i] = static_cast<double>(s.oldest_pending_age_ms) / 1000.0;
  });
}

}  // namespace edgert
