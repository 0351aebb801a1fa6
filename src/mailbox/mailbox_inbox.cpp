// The inbox (store, unacked, ack) and the dead letters (dead_letter, dead_letters).
#include "mailbox/mailbox_impl.hpp"

namespace edgert {

Result<StoreResult> Mailbox::store(const Envelope& envelope, const StoreOptions& options) {
  auto& impl = *impl_;
  const auto& o = impl.options;
  Envelope env = envelope;
  if (env.message_id.empty()) {
    ++impl.rejected;
    return Status{ErrorCode::invalid_argument, "inbox store: message_id is empty (replay protection needs it)"};
  }
  if (options.scope.size() > o.max_id_bytes * 2 + 64) {
    ++impl.rejected;
    return Status{ErrorCode::invalid_argument, "inbox store: message " + printable(env.message_id) + ": scope is " +
                                                   std::to_string(options.scope.size()) + " bytes, over the limit"};
  }
  auto encoded = encode(env, o, impl.now());
  if (!encoded.ok()) {
    ++impl.rejected;
    return encoded.status();
  }
  const std::string& json_text = encoded.value();
  const auto size = static_cast<std::int64_t>(json_text.size());
  // The floor is looked at before the lock: a flood stops before the disk is full, and
  // the room results and delivery bookkeeping need is never taken by mail.
  if (o.inbox_min_free_bytes > 0) {
    auto free = detail::free_bytes(o.data_dir);
    if (free.ok() && free.value() < o.inbox_min_free_bytes) {
      ++impl.inbox_refused;
      const std::string why = "mailbox " + impl.path + ": inbox refused message " + printable(env.message_id) +
                              ": the disk has " + std::to_string(free.value()) + " bytes free, below inbox_min_free_bytes (" +
                              std::to_string(o.inbox_min_free_bytes) + ")";
      if (auto v = impl.log_inbox_full.admit(); v.log) detail::log().warn("{}{}", why, v.suffix());
      return Status{ErrorCode::quota_exceeded, why};
    }
  }
  std::lock_guard lk(impl.db_mu);
  if (impl.closed) return impl.closed_error("store");
  try {
    SQLite::Transaction txn(*impl.db, SQLite::TransactionBehavior::IMMEDIATE);
    auto& have = impl.stmt("SELECT envelope_json FROM inbox WHERE scope = ? AND message_id = ?");
    have.bind(1, options.scope);
    have.bind(2, env.message_id);
    if (have.executeStep()) {
      const std::string stored = have.getColumn(0).getString();
      have.reset();
      // The same message again (a timestamp the sender left at 0 was filled in by us,
      // so compare the rest): a replay. Different content under the id: a conflict.
      bool same = stored == json_text;
      if (!same && envelope.timestamp_ms == 0) {
        if (auto old = decode(stored); old.ok()) {
          Envelope e = env;
          e.timestamp_ms = old.value().timestamp_ms;
          auto again = encode(e, o, 0);
          same = again.ok() && again.value() == stored;
        }
      }
      ++impl.duplicates;
      if (!same) ++impl.inbox_conflicts;
      if (auto v = impl.log_duplicate.admit(); v.log) {
        detail::log().info("mailbox inbox: {} message {} from {} in scope '{}' {}{}", same ? "duplicate" : "conflicting",
                           printable(env.message_id), printable(env.sender_node_id), printable(options.scope),
                           same ? "ignored (replay protection)" : "refused: the id is stored with other content",
                           v.suffix());
      }
      return same ? StoreResult::duplicate : StoreResult::conflict;  // the transaction rolls back
    }
    have.reset();
    auto& t = impl.stmt("SELECT inbox_rows, inbox_bytes FROM totals WHERE id = 1");
    std::int64_t rows = 0, bytes = 0;
    if (t.executeStep()) {
      rows = t.getColumn(0).getInt64();
      bytes = t.getColumn(1).getInt64();
    }
    t.reset();
    if ((o.inbox_max_messages && static_cast<std::uint64_t>(rows + 1) > o.inbox_max_messages) ||
        (o.inbox_max_bytes && static_cast<std::uint64_t>(bytes + size) > o.inbox_max_bytes)) {
      ++impl.inbox_refused;
      const std::string why = "mailbox " + impl.path + ": inbox quota reached (" + std::to_string(rows) +
                              " messages, " + std::to_string(bytes) + " bytes; limits inbox_max_messages " +
                              std::to_string(o.inbox_max_messages) + ", inbox_max_bytes " +
                              std::to_string(o.inbox_max_bytes) + "); message " + printable(env.message_id) + " refused";
      if (auto v = impl.log_inbox_full.admit(); v.log) detail::log().warn("{}{}", why, v.suffix());
      return Status{ErrorCode::quota_exceeded, why};
    }
    auto& q = impl.stmt(
        "INSERT INTO inbox (scope, message_id, sender_node_id, payload_type, envelope_json, size, received_ms, "
        "acknowledged) VALUES (?,?,?,?,?,?,?,0)");
    q.bind(1, options.scope);
    q.bind(2, env.message_id);
    q.bind(3, env.sender_node_id);
    q.bind(4, env.payload_type);
    q.bindNoCopy(5, json_text);
    q.bind(6, size);
    q.bind(7, impl.now());
    q.exec();
    q.reset();
    q.clearBindings();
    auto& up = impl.stmt(
        "UPDATE totals SET inbox_rows = inbox_rows + 1, inbox_bytes = inbox_bytes + ?, inbox_unacked = inbox_unacked + 1 "
        "WHERE id = 1");
    up.bind(1, size);
    up.exec();
    txn.commit();
    return StoreResult::stored;
  } catch (const std::exception& e) {
    if (Impl::disk_full(e)) {
      ++impl.inbox_refused;
      return Status{ErrorCode::quota_exceeded,
                    "mailbox " + impl.path + ": inbox store " + printable(env.message_id) + ": the disk is full"};
    }
    return io_error(impl.path + ": inbox store " + printable(env.message_id), e);
  }
}

Result<std::vector<InboxMessage>> Mailbox::unacked(const std::string& payload_type, std::size_t limit) {
  std::vector<InboxMessage> out;
  std::lock_guard lk(impl_->read_mu);
  if (impl_->closed || !impl_->reader) return impl_->closed_error("unacked");
  try {
    auto& q = payload_type.empty()
                  ? impl_->read_stmt(
                        "SELECT envelope_json, received_ms, message_id, scope FROM inbox WHERE acknowledged = 0 "
                        "ORDER BY received_ms ASC, rowid ASC LIMIT ?2")
                  : impl_->read_stmt(
                        "SELECT envelope_json, received_ms, message_id, scope FROM inbox WHERE acknowledged = 0 AND "
                        "payload_type = ?1 ORDER BY received_ms ASC, rowid ASC LIMIT ?2");
    for (std::size_t known = SIZE_MAX; known != impl_->unreadable_inbox.size() && out.size() < limit;) {
      known = impl_->unreadable_inbox.size();
      out.clear();
      q.reset();
      if (!payload_type.empty()) q.bind(1, payload_type);
      q.bind(2, sql_limit(limit, known));
      while (out.size() < limit && q.executeStep()) {
        InboxMessage m;
        auto decoded = decode(q.getColumn(0).getString());
        if (!decoded.ok()) {
          impl_->report_unreadable(impl_->unreadable_inbox, "inbox", q.getColumn(2).getString(),
                                   decoded.status().message(), "ack() retires it");
          continue;
        }
        m.envelope = std::move(decoded).value();
        m.received_ms = q.getColumn(1).getInt64();
        m.scope = q.getColumn(3).getString();
        out.push_back(std::move(m));
      }
    }
    q.reset();
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": unacked", e);
  }
  return out;
}

// Bookkeeping (an update, nothing grows): like mark_delivered it may use the disk
// reserve, so a handled command is not run again after a restart on a full disk.
Status Mailbox::ack(const std::string& message_id, const std::string& scope) {
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("ack");
  try {
    Status st = impl_->keep_books("ack", [&]() -> Status {
      SQLite::Transaction txn(*impl_->db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& q = impl_->stmt("UPDATE inbox SET acknowledged = 1 WHERE scope = ? AND message_id = ? AND acknowledged = 0");
      q.bind(1, scope);
      q.bind(2, message_id);
      if (q.exec() == 0) {
        auto& k = impl_->stmt("SELECT 1 FROM inbox WHERE scope = ? AND message_id = ?");
        k.bind(1, scope);
        k.bind(2, message_id);
        const bool known = k.executeStep();
        k.reset();
        if (!known) {
          return {ErrorCode::not_found, "ack: message " + printable(message_id) + " is not in the inbox (scope '" +
                                            printable(scope) + "')"};
        }
        return {};  // acknowledged before
      }
      impl_->stmt("UPDATE totals SET inbox_unacked = inbox_unacked - 1 WHERE id = 1").exec();
      txn.commit();
      return {};
    });
    if (!st.ok()) return st;
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": ack " + printable(message_id), e);
  }
  return {};
}

namespace {
// Longest source and reason kept with a dead letter, in bytes (docs/mailbox.md,
// "Dead letters"): they describe input a peer controls.
constexpr std::size_t kMaxDeadLetterTextBytes = 1024;

// A column's bytes as stored, NULs and invalid UTF-8 included.
std::string column_bytes(const SQLite::Column& c) {
  const void* p = c.getBlob();
  const int n = c.getBytes();
  return p && n > 0 ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
}
}  // namespace

// The insert and the pruning share one transaction. Dead letters never draw on the
// disk reserve (keep_books): a peer sending garbage must not use up the room kept for
// delivery bookkeeping; on a full disk the letter is refused (io_error).
Status Mailbox::dead_letter(DeadLetter letter) {
  const auto& o = impl_->options;
  auto cut = [](std::string& v, std::size_t n) {
    if (v.size() > n) v.resize(n);
  };
  cut(letter.raw, o.max_dead_letter_raw_bytes);
  cut(letter.message_id, o.max_id_bytes);
  cut(letter.sender_node_id, o.max_id_bytes);
  cut(letter.source, kMaxDeadLetterTextBytes);
  cut(letter.reason, kMaxDeadLetterTextBytes);
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("dead_letter");
  if (letter.received_ms == 0) letter.received_ms = impl_->now();
  const auto keep = static_cast<std::int64_t>(std::min<std::uint64_t>(o.max_dead_letters, INT64_MAX));
  std::int64_t pruned = 0;
  try {
    SQLite::Transaction txn(*impl_->db, SQLite::TransactionBehavior::IMMEDIATE);
    auto& ins = impl_->stmt(
        "INSERT INTO dead_letter (message_id, sender_node_id, source, reason, raw, received_ms) VALUES (?,?,?,?,?,?)");
    ins.bindNoCopy(1, letter.message_id);
    ins.bindNoCopy(2, letter.sender_node_id);
    ins.bindNoCopy(3, letter.source);
    ins.bindNoCopy(4, letter.reason);
    ins.bindNoCopy(5, static_cast<const void*>(letter.raw.data()), static_cast<int>(letter.raw.size()));
    ins.bind(6, letter.received_ms);
    ins.exec();
    ins.reset();
    ins.clearBindings();
    auto& count = impl_->stmt("SELECT dead_letters FROM totals WHERE id = 1");
    const std::int64_t rows = (count.executeStep() ? count.getColumn(0).getInt64() : 0) + 1;
    count.reset();
    if (rows > keep) {
      auto& del =
          impl_->stmt("DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id ASC LIMIT ?)");
      del.bind(1, rows - keep);
      pruned = del.exec();
    }
    auto& up = impl_->stmt("UPDATE totals SET dead_letters = dead_letters + ? WHERE id = 1");
    up.bind(1, 1 - pruned);
    up.exec();
    txn.commit();
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": dead letter " + printable(letter.message_id) + " from " +
                        printable(letter.source) + " not stored",
                    e);
  }
  ++impl_->dead_lettered;
  if (pruned > 0) {
    impl_->dead_letters_pruned += static_cast<std::uint64_t>(pruned);
    if (!impl_->pruning_reported) {
      impl_->pruning_reported = true;
      detail::log().warn(
          "mailbox {}: more than max_dead_letters ({}) dead letters; the oldest are removed from now on (counted in "
          "dead_letters_pruned)",
          impl_->path, o.max_dead_letters);
    }
  }
  return {};
}

Result<std::vector<DeadLetter>> Mailbox::dead_letters(std::size_t limit) {
  std::vector<DeadLetter> out;
  std::lock_guard lk(impl_->read_mu);
  if (impl_->closed || !impl_->reader) return impl_->closed_error("dead_letters");
  try {
    auto& q = impl_->read_stmt(
        "SELECT message_id, sender_node_id, source, reason, raw, received_ms FROM dead_letter ORDER BY id DESC "
        "LIMIT ?");
    q.bind(1, sql_limit(limit, 0));
    while (q.executeStep()) {
      DeadLetter d;
      d.message_id = column_bytes(q.getColumn(0));
      d.sender_node_id = column_bytes(q.getColumn(1));
      d.source = column_bytes(q.getColumn(2));
      d.reason = column_bytes(q.getColumn(3));
      d.raw = column_bytes(q.getColumn(4));
      d.received_ms = q.getColumn(5).getInt64();
      out.push_back(std::move(d));
    }
    q.reset();
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": dead_letters", e);
  }
  return out;
}

}  // namespace edgert
