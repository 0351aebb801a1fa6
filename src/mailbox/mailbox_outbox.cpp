// The outbox's read side: pending(), leases, release(), mark_delivered/mark_failed, and expiry (cleanup_expired).
#include "mailbox/mailbox_impl.hpp"

#include "mailbox/row_check.hpp"

#include <cmath>
#include <random>
#include <span>

namespace edgert {

Result<std::vector<OutboxMessage>> Mailbox::pending(std::size_t limit) { return impl_->due(limit, "pending", -1); }

Result<std::vector<OutboxMessage>> Mailbox::lease(std::size_t limit, std::chrono::milliseconds lease_for,
                                                  LeaseOrder order) {
  if (lease_for.count() <= 0) {
    return Status{ErrorCode::invalid_argument, "mailbox " + impl_->path + ": lease: lease_for is " +
                                                   std::to_string(lease_for.count()) + " ms; it must be positive"};
  }
  return impl_->due(limit, "lease", lease_for.count(), order == LeaseOrder::newest_first);
}

// One read of the due index per segment, LIMIT what is still wanted + leased + known
// unreadable rows: the rows skipped are at most those, so the cost grows with the
// leases held (the caller's in-flight window), never with the backlog behind them. A
// lease continues its pass after the last row the pass read (LeasePass in
// mailbox_impl.hpp), so it does not even step over the rows it handed out before;
// what it still steps over are rows leased by the other order's pass.
Result<std::vector<OutboxMessage>> Mailbox::Impl::due(std::size_t limit, const char* call, std::int64_t lease_ms,
                                                      bool newest_first) {
#define EDGERT_DUE_COLUMNS                                                                                    \
  "SELECT envelope_json, priority, attempts, next_attempt_ms, expires_ms, created_ms, message_id, " EDGERT_ROW_OK \
  ", recipient_node_id, payload_type, rowid, size FROM outbox WHERE next_attempt_ms <= ?1 AND expires_ms > ?1 "
  std::vector<OutboxMessage> out;
  std::lock_guard lk(db_mu);
  if (closed) return closed_error(call);
  struct Held {
    std::string id;
    std::int64_t rowid = 0, size = 0;
  };
  std::vector<Held> ids;  // of `out`
  const bool leasing = lease_ms >= 0;
  LeasePass* pass = leasing ? (newest_first ? &by_newest : &by_priority) : nullptr;
  try {
    const std::int64_t t = checked_now(/*may_persist=*/false);
    expire_leases();
    if (pass && pass->valid && steady() - pass->started >= kLeasePassMs) pass->valid = false;
    // The segments of this read, in order. Newest first walks the table's rowid order
    // backwards (insertion order): no sort, and fresh rows are found at once at the end.
    // Priority order ties are broken by rowid (the index's own last key), so the key
    // (priority, next_attempt_ms, rowid) names one place in it.
    std::vector<SQLite::Statement*> segments;
    const bool resume = pass && pass->valid;
    if (newest_first) {
      segments.push_back(resume ? &stmt(EDGERT_DUE_COLUMNS "AND rowid < ?3 ORDER BY rowid DESC LIMIT ?2")
                                : &stmt(EDGERT_DUE_COLUMNS "ORDER BY rowid DESC LIMIT ?2"));
    } else if (resume) {
      segments.push_back(&stmt(EDGERT_DUE_COLUMNS "AND priority = ?4 AND (next_attempt_ms, rowid) > (?5, ?3) "
                                                  "ORDER BY next_attempt_ms ASC, rowid ASC LIMIT ?2"));
      segments.push_back(&stmt(EDGERT_DUE_COLUMNS "AND priority < ?4 "
                                                  "ORDER BY priority DESC, next_attempt_ms ASC, rowid ASC LIMIT ?2"));
    } else {
      segments.push_back(
          &stmt(EDGERT_DUE_COLUMNS "ORDER BY priority DESC, next_attempt_ms ASC, rowid ASC LIMIT ?2"));
    }
    LeasePass last;  // the last row this read looked at (the next cursor)
    bool any_read = false;
    // A pass that finds a new unreadable row asks again for one more row per such
    // row, so they never take the place of readable ones.
    for (std::size_t known = SIZE_MAX; known != unreadable_outbox.size() && out.size() < limit;) {
      known = unreadable_outbox.size();
      out.clear();
      ids.clear();
      any_read = false;
      for (SQLite::Statement* seg : segments) {
        if (out.size() >= limit) break;
        auto& q = *seg;
        q.reset();
        q.bind(1, t);
        q.bind(2, sql_limit(limit - out.size(), known + leases.size()));
        if (resume) {  // ?3 rowid, ?4 priority, ?5 next_attempt_ms: as many as the segment has
          const int params = q.getBindParameterCount();
          if (params >= 3) q.bind(3, pass->rowid);
          if (params >= 4) q.bind(4, pass->priority);
          if (params >= 5) q.bind(5, pass->next);
        }
        while (out.size() < limit && q.executeStep()) {
          last.priority = q.getColumn(1).getInt();
          last.next = q.getColumn(3).getInt64();
          last.rowid = q.getColumn(10).getInt64();
          any_read = true;
          std::string id = q.getColumn(6).getString();
          if (!leases.empty() && leases.count(id) != 0) continue;
          if (q.getColumn(7).getInt() == 0) {
            report_unreadable(unreadable_outbox, "outbox", id, kChecksumMismatch, kDamagedRemedy);
            continue;
          }
          OutboxMessage m;
          m.envelope_json = q.getColumn(0).getString();  // the one copy of the stored bytes
          if (leasing) {
            // A lease is for publishing the bytes: the envelope's routing fields come
            // from the row's own columns (covered by its checksum, like the bytes), and
            // the JSON is not parsed (mailbox.hpp, lease()).
            m.envelope.message_id = id;
            m.envelope.recipient_node_id = q.getColumn(8).getString();
            m.envelope.payload_type = q.getColumn(9).getString();
          } else {
            auto decoded = decode(m.envelope_json);
            if (!decoded.ok()) {
              report_unreadable(unreadable_outbox, "outbox", id, decoded.status().message(),
                                "mark_delivered() removes it");
              continue;
            }
            m.envelope = std::move(decoded).value();
          }
          m.priority = last.priority;
          m.attempts = q.getColumn(2).getInt();
          m.next_attempt_ms = last.next;
          m.expires_ms = q.getColumn(4).getInt64();
          m.created_ms = q.getColumn(5).getInt64();
          out.push_back(std::move(m));
          ids.push_back(Held{std::move(id), last.rowid, q.getColumn(11).getInt64()});
        }
        q.reset();
      }
    }
    if (pass) {
      // A short read reached the end of the order: the next lease starts a new pass.
      if (out.size() < limit || !any_read) {
        pass->valid = false;
      } else {
        if (!pass->valid) pass->started = steady();
        pass->valid = true;
        pass->priority = last.priority;
        pass->next = last.next;
        pass->rowid = last.rowid;
      }
    }
  } catch (const std::exception& e) {
    if (pass) pass->valid = false;
    return io_error(path + ": " + call, e);
  }
#undef EDGERT_DUE_COLUMNS
  if (leasing && !out.empty()) {
    const std::int64_t until = sat_add(steady(), lease_ms);
    for (auto& h : ids) {
      lease_order.emplace(until, h.id);
      leases.emplace(std::move(h.id), Lease{until, h.rowid, h.size});
    }
    leased += out.size();
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  return out;
}

void Mailbox::release(const std::vector<std::string>& message_ids) {
  std::lock_guard lk(impl_->db_mu);
  for (const auto& id : message_ids) impl_->end_lease(id);
  // The rows are due again, maybe behind a pass's cursor.
  if (!message_ids.empty()) impl_->restart_lease_passes();
}

// mark_delivered() and mark_failed(), for one id or many, each take one path: one
// transaction over `ids`, ids not in the outbox skipped, every lease named ended once
// it commits (on an error the leases stay, so the call can be repeated).
Status Mailbox::mark_delivered(const std::string& message_id) {
  auto found = impl_->deliver(std::span<const std::string>(&message_id, 1));
  if (!found.ok()) return found.status();
  if (found.value() == 0) {
    return {ErrorCode::not_found, "mark_delivered: message " + printable(message_id) + " is not in the outbox"};
  }
  return {};
}

Result<std::size_t> Mailbox::mark_delivered(const std::vector<std::string>& message_ids) {
  return impl_->deliver(message_ids);
}

namespace {
// "mark_delivered <id>" or "mark_delivered of 3 messages (the first <id>)": a failed call in error text.
std::string marked(const char* call, std::span<const std::string> ids) {
  if (ids.size() == 1) return std::string(call) + " " + printable(ids.front());
  return std::string(call) + " of " + std::to_string(ids.size()) + " messages (the first " + printable(ids.front()) +
         ")";
}
}  // namespace

Result<std::size_t> Mailbox::Impl::deliver(std::span<const std::string> ids) {
  std::lock_guard lk(db_mu);
  if (closed) return closed_error("mark_delivered");
  if (ids.empty()) return std::size_t{0};
  std::size_t found = 0;
  try {
    found = keep_books("mark_delivered", [&] {
      Txn txn(*this);
      // A leased row is found by the rowid its lease kept (the table's b-tree, no index
      // lookup), and its size comes from the lease; the message_id must match, since a
      // rowid is reused once its row is gone (expired, evicted, deleted by hand). Not
      // leased, or not found that way: by message_id through its index. No RETURNING:
      // SQLite builds an ephemeral table for it on every execution.
      auto& by_rowid = stmt("DELETE FROM outbox WHERE rowid = ?1 AND message_id = ?2");
      auto& find = stmt("SELECT rowid, size FROM outbox WHERE message_id = ?");
      auto& del = stmt("DELETE FROM outbox WHERE rowid = ?");
      std::int64_t rows = 0, bytes = 0;
      for (const auto& id : ids) {
        if (const auto l = leases.find(id); l != leases.end()) {
          by_rowid.reset();
          by_rowid.bind(1, l->second.rowid);
          by_rowid.bindNoCopy(2, id);
          if (by_rowid.exec() == 1) {
            ++rows;
            bytes += l->second.size;
            continue;
          }
        }
        find.reset();
        find.bindNoCopy(1, id);
        if (!find.executeStep()) continue;
        const std::int64_t rowid = find.getColumn(0).getInt64(), size = find.getColumn(1).getInt64();
        find.reset();
        del.reset();
        del.bind(1, rowid);
        del.exec();
        ++rows;
        bytes += size;
      }
      find.clearBindings();  // no pointer into ids outlives this call
      by_rowid.clearBindings();
      if (rows > 0) add_outbox_totals(-rows, -bytes);
      txn.commit();
      return static_cast<std::size_t>(rows);
    });
  } catch (const std::exception& e) {
    // The leases stay: the rows are still there, and the caller may try again.
    return io_error(path + ": " + marked("mark_delivered", ids) + "; none was removed", e);
  }
  // Delivered, or not in the outbox: either way nothing to hold.
  for (const auto& id : ids) end_lease(id);
  delivered += found;
  disk->maybe_restore();
  return found;
}

std::int64_t Mailbox::Impl::next_attempt(int attempts, std::int64_t t) const {
  const auto& o = options;
  // min(base * 2^attempts, cap), computed without overflow.
  double delay = static_cast<double>(o.backoff_base.count()) * std::pow(2.0, std::min(attempts, 62));
  delay = std::min(delay, static_cast<double>(o.backoff_cap.count()));
  if (o.backoff_jitter > 0) {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_real_distribution<double> u(-o.backoff_jitter, o.backoff_jitter);
    delay *= 1.0 + u(rng);
  }
  return sat_add(t, static_cast<std::int64_t>(std::clamp(delay, 0.0, 4e18)));
}

Result<std::int64_t> Mailbox::mark_failed(const std::string& message_id) {
  std::int64_t next = 0;
  auto found = impl_->fail(std::span<const std::string>(&message_id, 1), &next);
  if (!found.ok()) return found.status();
  if (found.value() == 0) {
    return Status{ErrorCode::not_found, "mark_failed: message " + printable(message_id) + " is not in the outbox"};
  }
  return next;
}

Result<std::size_t> Mailbox::mark_failed(const std::vector<std::string>& message_ids) {
  return impl_->fail(message_ids, nullptr);
}

Result<std::size_t> Mailbox::Impl::fail(std::span<const std::string> ids, std::int64_t* last_next) {
  std::lock_guard lk(db_mu);
  if (closed) return closed_error("mark_failed");
  if (ids.empty()) return std::size_t{0};
  const std::int64_t t = checked_now();
  std::size_t found = 0;
  try {
    found = keep_books("mark_failed", [&] {
      SQLite::Transaction txn(*db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& sel = stmt("SELECT attempts FROM outbox WHERE message_id = ?");
      auto& up = stmt("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1, " EDGERT_ROW_RESUM(
          "edgert_row_sum(message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts + 1, "
          "?1, expires_ms, created_ms)") " WHERE message_id = ?2");
      std::size_t n = 0;
      for (const auto& id : ids) {
        sel.reset();
        sel.bindNoCopy(1, id);
        if (!sel.executeStep()) continue;
        const int attempts = sel.getColumn(0).getInt();
        sel.reset();
        const std::int64_t next = next_attempt(attempts, t);
        if (last_next) *last_next = next;
        up.reset();
        up.bind(1, next);
        up.bindNoCopy(2, id);
        up.exec();
        ++n;
      }
      sel.reset();
      sel.clearBindings();
      up.reset();
      up.clearBindings();
      txn.commit();
      return n;
    });
  } catch (const std::exception& e) {
    return io_error(path + ": " + marked("mark_failed", ids) + "; none was rescheduled", e);
  }
  for (const auto& id : ids) end_lease(id);
  // Their retry times are in the future (after any cursor's key, which was due when
  // read), unless the wall clock stepped back: a new pass is the safe answer, and
  // failures are rare next to leases.
  if (found > 0) restart_lease_passes();
  failed_attempts += found;
  return found;
}

// Under db_mu, outside a transaction.
std::size_t Mailbox::Impl::expire_batch(std::int64_t t, bool& more) {
  const auto batch = static_cast<std::int64_t>(std::max<std::size_t>(1, options.cleanup_batch));
  std::vector<std::string> removed;  // leased ones among the rows removed
  const std::int64_t n = keep_books("cleanup_expired", [&] {
    SQLite::Transaction txn(*db, SQLite::TransactionBehavior::IMMEDIATE);
    auto& q = stmt(
        "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE expires_ms <= ?1 AND " EDGERT_ROW_OK " LIMIT ?2) "
        "RETURNING size, message_id");
    q.bind(1, t);
    q.bind(2, batch);
    std::int64_t rows = 0, bytes = 0;
    removed.clear();
    while (q.executeStep()) {
      ++rows;
      bytes += q.getColumn(0).getInt64();
      if (!leases.empty()) removed.push_back(q.getColumn(1).getString());
    }
    q.reset();
    if (rows > 0) add_outbox_totals(-rows, -bytes);
    auto& k = stmt("DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency WHERE expires_ms <= ?1 LIMIT ?2)");
    k.bind(1, t);
    k.bind(2, batch);
    const int keys = k.exec();
    txn.commit();
    more = rows == batch || keys == batch;
    return rows;
  });
  for (const auto& id : removed) end_lease(id);
  expired += static_cast<std::uint64_t>(n);
  return static_cast<std::size_t>(n);
}

// Batches of cleanup_batch rows, db_mu released between them so senders and the
// deliverer go on; close() stops it between two batches.
Result<std::size_t> Mailbox::cleanup_expired() { return impl_->run_cleanup(); }

Result<std::size_t> Mailbox::Impl::run_cleanup() {
  auto& impl = *this;
  std::size_t total = 0, retired = 0;
  const auto batch = static_cast<std::int64_t>(std::max<std::size_t>(1, impl.options.cleanup_batch));
  auto stop_requested = [&] {
    std::lock_guard lk(impl.maint_mu);
    return impl.maint_stop;
  };
  try {
    for (bool more = true; more && !stop_requested();) {
      std::lock_guard lk(impl.db_mu);
      if (impl.closed) return impl.closed_error("cleanup_expired");
      total += impl.expire_batch(impl.checked_now(), more);
    }
    {
      // What expiry left: rows whose checksum fails (their expiry may be the damaged
      // value), reported once each as unreadable, never silently expired.
      std::lock_guard lk(impl.db_mu);
      if (impl.closed) return impl.closed_error("cleanup_expired");
      auto& d = impl.stmt("SELECT message_id FROM outbox WHERE expires_ms <= ?1 AND NOT " EDGERT_ROW_OK);
      d.bind(1, impl.checked_now());
      while (d.executeStep()) {
        impl.report_unreadable(impl.unreadable_outbox, "outbox", d.getColumn(0).getString(), kChecksumMismatch,
                               kDamagedRemedy);
      }
      d.reset();
    }
    // Acknowledged inbox rows past the replay window; not delivery bookkeeping, so no
    // reserve is used for it.
    for (bool more = true; more && !stop_requested();) {
      std::lock_guard lk(impl.db_mu);
      if (impl.closed) return impl.closed_error("cleanup_expired");
      const std::int64_t cutoff = sat_sub(impl.checked_now(), impl.options.inbox_retention.count() * 1000);
      SQLite::Transaction txn(*impl.db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& q = impl.stmt(
          "DELETE FROM inbox WHERE rowid IN (SELECT rowid FROM inbox WHERE acknowledged = 1 AND received_ms <= ?1 "
          "LIMIT ?2) RETURNING size");
      q.bind(1, cutoff);
      q.bind(2, batch);
      std::int64_t rows = 0, bytes = 0;
      while (q.executeStep()) {
        ++rows;
        bytes += q.getColumn(0).getInt64();
      }
      q.reset();
      if (rows > 0) impl.add_inbox_totals(-rows, -bytes);
      txn.commit();
      retired += static_cast<std::size_t>(rows);
      impl.inbox_retired += static_cast<std::uint64_t>(rows);
      more = rows == batch;
    }
  } catch (const std::exception& e) {
    return io_error(impl.path + ": cleanup_expired (" + std::to_string(total) + " expired rows removed before this)", e);
  }
  ++impl.cleanups;
  impl.disk->maybe_restore();
  if (total > 0) {
    if (auto v = impl.log_expired.admit(); v.log) {
      detail::log().warn("mailbox {}: {} undelivered message(s) expired and were removed ({} in all so far){}",
                         impl.path, total, impl.expired.load(), v.suffix());
    }
  }
  if (retired > 0) {
    detail::log().debug("mailbox {}: {} acknowledged inbox message(s) past inbox_retention removed", impl.path, retired);
  }
  return total;
}

void Mailbox::Impl::maintenance_loop() {
  const auto period = options.cleanup_interval;
  std::unique_lock lk(maint_mu);
  while (!maint_stop) {
    if (maint_cv.wait_for(lk, period, [this] { return maint_stop; })) break;
    lk.unlock();
    auto r = run_cleanup();
    if (!r.ok() && r.status().code() != ErrorCode::closed) {
      detail::log().error("mailbox {}: periodic cleanup failed (retried in {} s): {}", path, period.count(),
                          r.status().message());
    }
    lk.lock();
  }
}

}  // namespace edgert
