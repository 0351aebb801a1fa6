// The write path: send()/send_async(), prepare and enqueue, the group-commit writer thread and the guarded insert.
#include "mailbox/mailbox_impl.hpp"

#include "mailbox/mailbox_access.hpp"
#include "mailbox/row_check.hpp"

#include <edgert/base_worker.hpp>

namespace edgert {

// Takes queued requests into `batch`: waits for at least `want` of them (or until
// `deadline`, or stopping), then takes what is there, up to `room`. Returns how many.
std::size_t Mailbox::Impl::take(std::vector<std::shared_ptr<SendRequest>>& batch, std::size_t want,
                                std::size_t room, std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_lock lk(queue_mu);
  if (queue.size() < want && !stopping) {
    wake_at = want;  // senders wake the writer only once `want` are queued
    auto ready = [&] { return stopping || queue.size() >= want; };
    if (deadline) {
      queue_cv.wait_until(lk, *deadline, ready);
    } else if (WorkerPulse* pulse = options.writer_pulse.get()) {
      // Idle is alive: beat while waiting (every kPulseSleepSlice), so only a writer
      // stuck inside SQLite stops beating.
      while (!queue_cv.wait_for(lk, kPulseSleepSlice, ready)) pulse->beat();
    } else {
      queue_cv.wait(lk, ready);
    }
    wake_at = 0;
  }
  const std::size_t n = std::min(queue.size(), room);
  batch.insert(batch.end(), queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
  queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
  if (n > 0 && space_waiters > 0) space_cv.notify_all();
  return n;
}

namespace {

// "10 s" or "1500 ms": a configured duration in error text.
std::string duration_text(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + " s" : std::to_string(d.count()) + " ms";
}

// Errors that concern one row (a constraint, a value too big), not the transaction:
// with these the rest of the group can still commit.
bool row_level(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_ERROR:
      return true;
    default:
      return false;
  }
}

int sqlite_code(const std::exception& e) {
  const auto* se = dynamic_cast<const SQLite::Exception*>(&e);
  return se ? se->getErrorCode() : -1;
}

}  // namespace

// One group commit per turn. The transaction opens as soon as one request is queued
// and rows are inserted as requests arrive; it commits once the group is as large as
// the previous one (the senders that commit woke are queueing again) or after the
// commit delay (200 us), whichever is first. Inserting while waiting hides SQLite's
// per-row work behind the senders' wake-up latency.
// A row the database refuses (a row_level() error) makes the batch run again with a
// savepoint per row, so only that row fails: no savepoint cost on the normal path.
// Once close() has begun and its deadline has passed, no transaction starts: what is
// still queued is answered `closed`.
void Mailbox::Impl::write_loop() {
  const std::size_t max_batch = std::max<std::size_t>(1, options.max_batch);
  std::vector<std::shared_ptr<SendRequest>> batch;
  std::vector<Result<std::string>> results;
  std::size_t last = 1;
  std::uint64_t unsent_at_close = 0;
  std::string close_reason = "close_timeout (" + duration_text(options.close_timeout) + ") passed first";
  auto closed_status = [&] {
    return Status{ErrorCode::closed,
                  "mailbox " + path + ": closed before this message could be committed (" + close_reason + ")"};
  };
  WorkerPulse* const pulse = options.writer_pulse.get();
  if (pulse) pulse->beat();
  for (;;) {
    batch.clear();
    results.clear();
    if (take(batch, 1, max_batch, std::nullopt) == 0) break;  // stopping and drained
    if (pulse) pulse->beat();
    if (past_close_deadline()) {
      for (auto& r : batch) r->complete(closed_status());
      unsent_at_close += batch.size();
      write_errors += batch.size();
      continue;
    }
    std::uint64_t committed = 0, hits = 0;
    Tally tally;
    for (bool careful = false;;) {
      std::lock_guard lk(db_mu);
      committed = hits = 0;
      tally = Tally{};
      results.clear();
      const std::int64_t t = checked_now();  // before the batch: a rebase is its own transaction
      try {
        SQLite::Transaction txn(*db, SQLite::TransactionBehavior::IMMEDIATE);
        std::int64_t rows = 0, bytes = 0;
        {
          auto& q = stmt("SELECT outbox_rows, outbox_bytes FROM totals WHERE id = 1");
          if (q.executeStep()) {
            rows = q.getColumn(0).getInt64();
            bytes = q.getColumn(1).getInt64();
          }
          q.reset();
        }
        const std::int64_t rows0 = rows, bytes0 = bytes;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        for (;;) {
          for (std::size_t i = results.size(); i < batch.size(); ++i) {
            results.push_back(careful ? insert_guarded(*batch[i], t, rows, bytes, tally)
                                      : insert_one(*batch[i], t, rows, bytes, tally));
            if (!results.back().ok()) continue;
            if (results.back().value() == batch[i]->env.message_id) {
              ++committed;
            } else {
              ++hits;
            }
          }
          if (careful) break;  // a retry keeps the batch it had
          const std::size_t target = std::min(last, max_batch);
          if (batch.size() >= target || std::chrono::steady_clock::now() >= deadline) break;
          if (take(batch, target - batch.size(), max_batch - batch.size(), deadline) == 0) break;
        }
        add_outbox_totals(rows - rows0, bytes - bytes0);
        txn.commit();
        ++commits;
        if (pulse) pulse->progress();  // a group committed
        for (const auto& id : tally.evicted_ids) end_lease(id);
        for (const auto& id : tally.expired_ids) end_lease(id);
        committed -= tally.resends;  // answered with the stored row's id, not stored again
        hits += tally.resends;
      } catch (const std::exception& e) {
        const int rc = sqlite_code(e);
        if (!careful && rc != -1 && row_level(rc)) {
          careful = true;  // the transaction rolled back; again, one savepoint per row
          continue;
        }
        committed = hits = 0;
        tally = Tally{};
        const int primary = rc & 0xff;
        if (disk_full(e)) {  // refused, counted in disk_full (not write_errors); WARNING once per episode
          disk->on_send_full();
          results.clear();
          for (const auto& r : batch) results.push_back(disk->refusal(printable(r->env.message_id)));
        } else if (rc != -1 && (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) && past_close_deadline()) {
          close_reason = "the database stayed locked by another process for " + duration_text(options.close_timeout);
          results.assign(batch.size(), closed_status());
          unsent_at_close += batch.size();
          write_errors += batch.size();
        } else {
          results.assign(batch.size(), io_error(path + ": commit failed; nothing of this batch was stored", e));
          detail::log().error("mailbox {}: a commit of {} message(s) failed, each sender got the error: {}", path,
                              batch.size(), e.what());
          write_errors += batch.size();
        }
      }
      break;
    }
    sent += committed;
    idempotent_hits += hits;
    rejected += tally.rejected;
    duplicates += tally.conflicts.size();
    write_errors += tally.row_failures.size();
    expired += tally.expired_ids.size();
    for (const auto& note : tally.conflicts) {
      if (auto v = log_conflict.admit(); v.log) detail::log().warn("{}{}", note, v.suffix());
    }
    for (const auto& note : tally.row_failures) {
      if (auto v = log_row_failure.admit(); v.log) detail::log().error("{}{}", note, v.suffix());
    }
    evicted += tally.evictions.size();
    for (const auto& note : tally.evictions) {
      if (auto v = log_evicted.admit(); v.log) detail::log().warn("{}{}", note, v.suffix());
      if (!options.on_notification) continue;
      // A subscriber's failure must not take down the writer (and the process).
      try {
        options.on_notification(note);
      } catch (const std::exception& e) {
        ++notification_errors;
        detail::log().error("mailbox {}: on_notification threw ({}); notification was: {}", path,
                            printable(e.what(), 200), note);
      } catch (...) {
        ++notification_errors;
        detail::log().error("mailbox {}: on_notification threw a non-standard exception; notification was: {}", path,
                            note);
      }
    }
    // Before the senders are answered: once send() returns, the listener has been woken.
    if (committed > 0) notify_commit();
    last = batch.size();
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i]->complete(std::move(results[i]));
  }
  if (unsent_at_close > 0) {
    detail::log().error(
        "mailbox {}: closed with {} queued message(s) not committed ({}); each sender got the error `closed`", path,
        unsent_at_close, close_reason);
  }
}

// insert_one() inside a savepoint: a row_level() error undoes this row only (its
// evictions too) and becomes its sender's io_error; anything else is rethrown and
// fails the batch. Under db_mu, inside the batch transaction.
Result<std::string> Mailbox::Impl::insert_guarded(SendRequest& r, std::int64_t t, std::int64_t& rows,
                                                  std::int64_t& bytes, Tally& tally) {
  const Tally before = tally;
  const std::int64_t rows0 = rows, bytes0 = bytes;
  db->exec("SAVEPOINT row");
  try {
    auto result = insert_one(r, t, rows, bytes, tally);
    db->exec("RELEASE row");
    return result;
  } catch (const std::exception& e) {
    const int rc = sqlite_code(e);
    if (rc == -1 || !row_level(rc) || sqlite3_get_autocommit(db->getHandle())) throw;
    db->exec("ROLLBACK TO row");  // also cancels an eviction savepoint left open
    db->exec("RELEASE row");
    tally = before;
    rows = rows0;
    bytes = bytes0;
    const std::string why = "mailbox " + path + ": message " + printable(r.env.message_id) +
                            " could not be stored (" + printable(e.what(), 200) +
                            "); the other messages of its group were not affected";
    tally.row_failures.push_back(why);
    return Status{ErrorCode::io_error, why};
  }
}

// The message_id of `r` is already in the outbox (this transaction included). An
// identical envelope (apart from a timestamp the mailbox filled in) is a resend and
// gets the id; anything else is refused. Under db_mu, inside the batch transaction.
Result<std::string> Mailbox::Impl::answer_taken(SendRequest& r, Tally& tally) {
  auto& q = stmt("SELECT envelope_json FROM outbox WHERE message_id = ?");
  q.bind(1, r.env.message_id);
  const std::string stored = q.executeStep() ? q.getColumn(0).getString() : std::string();
  q.reset();
  bool same = stored == r.envelope_json;
  if (!same && r.stamped) {
    // The mailbox filled in the timestamp: the same message sent again differs in that field alone. Compared
    // decoded (the payload normalised), so a row written by an older version with other field order compares too.
    auto old = decode(stored);
    auto mine = decode(r.envelope_json);
    same = old.ok() && mine.ok() && old.value().message_id == mine.value().message_id &&
           old.value().sender_node_id == mine.value().sender_node_id &&
           old.value().recipient_node_id == mine.value().recipient_node_id &&
           old.value().payload_type == mine.value().payload_type && old.value().payload == mine.value().payload;
  }
  if (same) {
    ++tally.resends;
    return r.env.message_id;
  }
  const std::string why = "mailbox " + path + ": message_id " + printable(r.env.message_id) +
                          " is already in the outbox with different content; not stored (send it unchanged to "
                          "get the stored message's id, or use a new message_id)";
  tally.conflicts.push_back(why);
  return Status{ErrorCode::invalid_argument, why};
}

// Runs inside the batch transaction, under db_mu.
Result<std::string> Mailbox::Impl::insert_one(SendRequest& r, std::int64_t t, std::int64_t& rows,
                                              std::int64_t& bytes, Tally& tally) {
  const auto& o = r.options;
  const std::int64_t size = static_cast<std::int64_t>(r.envelope_json.size());
  if (!o.idempotency_key.empty()) {
    auto& q = stmt("SELECT message_id FROM idempotency WHERE key = ? AND expires_ms > ?");
    q.bind(1, o.idempotency_key);
    q.bind(2, t);
    if (q.executeStep()) {
      std::string id = q.getColumn(0).getString();
      // Reset now: a statement left holding a row keeps this connection's WAL read
      // mark, and the WAL could then never restart.
      q.reset();
      return id;
    }
    q.reset();
  }
  const auto& max_msgs = options.max_messages;
  const auto& max_bytes = options.max_bytes;
  auto over = [&] {
    return (max_msgs && static_cast<std::uint64_t>(rows + 1) > max_msgs) ||
           (max_bytes && static_cast<std::uint64_t>(bytes + size) > max_bytes);
  };
  if (over()) {
    // Expired rows never count against the quota: they go first, before anything is
    // refused or a live row evicted (counted in `expired` once the batch commits).
    auto& exp = stmt(
        "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE expires_ms <= ?1 AND " EDGERT_ROW_OK " LIMIT ?2) "
        "RETURNING size, message_id");
    const auto chunk = static_cast<std::int64_t>(std::max<std::size_t>(1, options.cleanup_batch));
    for (std::int64_t got = chunk; over() && got == chunk;) {
      exp.bind(1, t);
      exp.bind(2, chunk);
      got = 0;
      std::int64_t freed = 0;
      while (exp.executeStep()) {
        ++got;
        freed += exp.getColumn(0).getInt64();
        tally.expired_ids.push_back(exp.getColumn(1).getString());
      }
      exp.reset();
      rows -= got;
      bytes -= freed;
    }
  }
  if (over()) {
    // A taken message_id is answered before anything is evicted for it. (Otherwise
    // the INSERT below finds it, with no extra lookup on the normal path.)
    if (r.caller_id) {
      auto& taken = stmt("SELECT 1 FROM outbox WHERE message_id = ?");
      taken.bind(1, r.env.message_id);
      const bool found = taken.executeStep();
      taken.reset();
      if (found) return answer_taken(r, tally);
    }
    if (options.quota_policy == QuotaPolicy::reject_new || (max_bytes && static_cast<std::uint64_t>(size) > max_bytes)) {
      ++tally.rejected;
      return Status{ErrorCode::quota_exceeded,
                    "mailbox " + path + ": outbox quota reached (" + std::to_string(rows) + " messages, " +
                        std::to_string(bytes) + " bytes; limits " + std::to_string(max_msgs) + " messages, " +
                        std::to_string(max_bytes) + " bytes); message " + printable(r.env.message_id) + " refused"};
    }
    // Only rows of lower or equal priority may go, lowest and oldest first. The
    // evictions run inside a savepoint: if they cannot make room, they are undone and
    // the newcomer is refused instead, so nothing is evicted for nothing.
    auto& victim = stmt(
        "SELECT message_id, size, priority FROM outbox WHERE priority <= ? "
        "ORDER BY priority ASC, created_ms ASC, rowid ASC LIMIT 1");
    auto& del = stmt("DELETE FROM outbox WHERE message_id = ?");
    const std::int64_t rows0 = rows, bytes0 = bytes;
    const std::size_t notes0 = tally.evictions.size();
    db->exec("SAVEPOINT evict");
    while (over()) {
      victim.reset();
      victim.bind(1, o.priority);
      if (!victim.executeStep()) break;
      const std::string id = victim.getColumn(0).getString();
      const std::int64_t vsize = victim.getColumn(1).getInt64();
      const int prio = victim.getColumn(2).getInt();
      victim.reset();
      del.reset();
      del.bind(1, id);
      del.exec();
      --rows;
      bytes -= vsize;
      tally.evicted_ids.push_back(id);
      tally.evictions.push_back("mailbox quota: evicted message " + printable(id) + " (priority " +
                                std::to_string(prio) + ", " + std::to_string(vsize) + " bytes) to make room for " +
                                printable(r.env.message_id));
    }
    victim.reset();
    if (over()) {
      db->exec("ROLLBACK TO evict");
      db->exec("RELEASE evict");
      rows = rows0;
      bytes = bytes0;
      tally.evictions.resize(notes0);
      tally.evicted_ids.resize(notes0);
      ++tally.rejected;
      return Status{ErrorCode::quota_exceeded,
                    "mailbox " + path + ": outbox quota reached (" + std::to_string(rows) + " messages, " +
                        std::to_string(bytes) + " bytes) and evicting every message of priority " +
                        std::to_string(o.priority) + " or lower would not make room; message " +
                        printable(r.env.message_id) + " (priority " + std::to_string(o.priority) + ") refused"};
    }
    db->exec("RELEASE evict");
  }
  auto& ins = stmt(
      "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts, "
      "next_attempt_ms, expires_ms, created_ms, row_sum) VALUES (?1,?2,?3,?4,?5,?6,0,?7,?8,?9, "
      "edgert_row_sum(?1,?2,?3,?4,?5,?6,0,?7,?8,?9)) ON CONFLICT(message_id) DO NOTHING");
  // No copies: the strings outlive the statement's use of them (the request is
  // alive until complete(), and the statement is reset before its next use).
  ins.bindNoCopy(1, r.env.message_id);
  ins.bindNoCopy(2, r.env.recipient_node_id);
  ins.bindNoCopy(3, r.env.payload_type);
  ins.bindNoCopy(4, r.envelope_json);
  ins.bind(5, size);
  ins.bind(6, o.priority);
  ins.bind(7, t);
  const std::int64_t expires = sat_add(t, ttl_ms(o));
  ins.bind(8, expires);
  ins.bind(9, t);
  if (ins.exec() == 0) return answer_taken(r, tally);  // the message_id is taken
  note_inserted(o.priority, t, db->getLastInsertRowid());
  if (!o.idempotency_key.empty()) {
    auto& k = stmt("INSERT OR REPLACE INTO idempotency (key, message_id, expires_ms) VALUES (?,?,?)");
    k.bind(1, o.idempotency_key);
    k.bind(2, r.env.message_id);
    k.bind(3, expires);
    k.exec();
  }
  ++rows;
  bytes += size;
  return r.env.message_id;
}

// Validates and encodes on the caller's thread, so the writer only inserts.
Result<std::shared_ptr<SendRequest>> Mailbox::Impl::prepare(Envelope& envelope, SendOptions& opts,
                                                            std::size_t checked_depth) {
  if (opts.ttl.count() <= 0) {
    ++rejected;
    Status st{ErrorCode::invalid_argument,
              describe(envelope) + ": ttl is " + std::to_string(opts.ttl.count()) + " s; it must be positive"};
    if (auto v = log_refused.admit(); v.log) detail::log().error("mailbox send refused: {}{}", st.message(), v.suffix());
    return st;
  }
  const bool caller_id = !envelope.message_id.empty(), stamped = envelope.timestamp_ms == 0;
  auto encoded = opts.idempotency_key.size() > options.max_id_bytes
                     ? Result<std::string>(Status{ErrorCode::invalid_argument,
                                                  "idempotency_key is " + std::to_string(opts.idempotency_key.size()) +
                                                      " bytes, over the " + std::to_string(options.max_id_bytes) +
                                                      "-byte limit"})
                     : encode(envelope, options, now(), checked_depth);
  if (!encoded.ok()) {
    ++rejected;
    if (auto v = log_refused.admit(); v.log) {
      detail::log().error("mailbox send refused: {}{}", encoded.status().message(), v.suffix());
    }
    return encoded.status();
  }
  if (disk->refusing()) {
    // Space may have come back without any bookkeeping (freed by the operator).
    const std::int64_t t = system_ms();
    std::int64_t due = next_space_check_ms.load(std::memory_order_relaxed);
    if (t >= due && next_space_check_ms.compare_exchange_strong(due, t + 1000)) disk->maybe_restore();
    if (disk->refusing()) return disk->refusal(printable(envelope.message_id));
  }
  auto req = std::make_shared<SendRequest>();
  req->env = std::move(envelope);
  req->options = std::move(opts);
  req->envelope_json = std::move(encoded).value();
  req->caller_id = caller_id;
  req->stamped = stamped;
  return req;
}

// Waits while max_queued requests are queued (back-pressure, never a drop).
Status Mailbox::Impl::enqueue(std::shared_ptr<SendRequest> req) {
  {
    std::unique_lock lk(queue_mu);
    if (options.max_queued > 0 && queue.size() >= options.max_queued) {
      ++space_waiters;
      space_cv.wait(lk, [&] { return stopping || queue.size() < options.max_queued; });
      --space_waiters;
    }
    if (stopping) {
      return {ErrorCode::closed,
              "mailbox " + path + " is closed (close() was called); message " + printable(req->env.message_id) +
                  " was not stored"};
    }
    queue.push_back(std::move(req));
    // One wake-up per group, not per message: each costs a futex call on both sides.
    if (wake_at == 0 || queue.size() < wake_at) return {};
  }
  queue_cv.notify_one();  // the writer is the only waiter
  return {};
}

Result<std::string> Mailbox::send(Envelope envelope, SendOptions options) {
  return send_async(std::move(envelope), std::move(options)).get();
}

PendingSend Mailbox::send_async(Envelope envelope, SendOptions options) {
  return detail::MailboxAccess::send_checked_async(*this, std::move(envelope), std::move(options), 0);
}

PendingSend detail::MailboxAccess::send_checked_async(Mailbox& mailbox, Envelope envelope, SendOptions options,
                                                      std::size_t checked_depth) {
  auto& impl_ = mailbox.impl_;
  auto req = impl_->prepare(envelope, options, checked_depth);
  if (!req.ok()) {
    auto failed = std::make_shared<SendRequest>();
    failed->complete(req.status());
    return PendingSend(std::move(failed));
  }
  std::shared_ptr<SendRequest> r = std::move(req).value();
  if (Status st = impl_->enqueue(r); !st.ok()) r->complete(std::move(st));
  return PendingSend(std::move(r));
}

PendingSend::PendingSend(std::shared_ptr<detail::MailboxSendRequest> request) : request_(std::move(request)) {}
PendingSend::PendingSend(PendingSend&&) noexcept = default;
PendingSend& PendingSend::operator=(PendingSend&&) noexcept = default;
PendingSend::~PendingSend() = default;

bool PendingSend::valid() const noexcept { return request_ != nullptr; }

bool PendingSend::ready() const noexcept {
  return request_ && request_->done();
}

Result<std::string> PendingSend::get() {
  if (!request_) return Status{ErrorCode::invalid_argument, "PendingSend::get: no message (empty or already taken)"};
  request_->wait();
  Result<std::string> r = std::move(*request_->result);
  request_.reset();
  return r;
}

void Mailbox::set_commit_listener(std::function<void()> listener) {
  std::function<void()> old;
  {
    std::lock_guard lk(impl_->listener_mu);  // held by the writer during a call
    old = std::move(impl_->commit_listener);
    impl_->commit_listener = std::move(listener);
  }
  // `old` (and what it captured) is destroyed here, outside the lock.
}

void Mailbox::Impl::notify_commit() {
  std::lock_guard lk(listener_mu);
  if (!commit_listener) return;
  // A listener's failure must not take down the writer (and the process).
  try {
    commit_listener();
  } catch (const std::exception& e) {
    ++notification_errors;
    detail::log().error("mailbox {}: the commit listener threw ({}); the commit stands", path,
                        printable(e.what(), 200));
  } catch (...) {
    ++notification_errors;
    detail::log().error("mailbox {}: the commit listener threw a non-standard exception; the commit stands", path);
  }
}

}  // namespace edgert
