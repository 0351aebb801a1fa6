// Mailbox::open(), close() and stats(): the connections, the threads the mailbox owns, and its counters.
#include "mailbox/mailbox_impl.hpp"

#include "core/thread_name.hpp"
#include "mailbox/open.hpp"
#include "mailbox/row_check.hpp"
#include "mailbox/schema.hpp"
#include "mailbox/wal_scan.hpp"

#include <unistd.h>

namespace edgert {

Result<std::unique_ptr<Mailbox>> Mailbox::open(MailboxOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  if (impl->options.max_ttl < std::chrono::seconds(1)) {
    return Status{ErrorCode::invalid_argument, "mailbox in " + impl->options.data_dir + ": max_ttl is " +
                                                   std::to_string(impl->options.max_ttl.count()) +
                                                   " s; it must be at least 1 s"};
  }
  std::error_code ec;
  fs::create_directories(impl->options.data_dir, ec);
  if (ec) return Status{ErrorCode::io_error, impl->options.data_dir + ": cannot create data dir: " + ec.message()};
  impl->path = (fs::path(impl->options.data_dir) / "mailbox.db").string();
  // Before the file is touched: a second opener must not recover, quarantine or write it.
  auto lock = detail::DataDirLock::acquire(impl->options.data_dir);
  if (!lock.ok()) return lock.status();
  impl->lock = std::move(lock).value();
  // A reserve left by the last run is given back before anything else writes: on a
  // disk that filled up, it is the room opening needs (it is re-created below).
  ::unlink((fs::path(impl->options.data_dir) / "mailbox.reserve").c_str());

  auto db = detail::open_mailbox_db(impl->path, impl->options.busy_timeout_ms, impl->now(),
                                    impl->options.quick_check_max_bytes);
  if (!db.ok()) return db.status();
  impl->db = std::move(db).value();
  try {
    impl->db->exec("PRAGMA journal_mode=WAL");
    // "open" before the first write: a stop after it and before the marker below must
    // not leave "clean" beside a WAL (which would be taken for a foreign one).
    detail::mark_open(impl->path);
    impl->marked_open = true;
    impl->db->exec(impl->options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    impl->db->exec("PRAGMA busy_timeout=" + std::to_string(impl->options.busy_timeout_ms));
    impl->db->exec("PRAGMA temp_store=MEMORY");
    // A larger page cache keeps index pages of a busy outbox from being spilled and
    // re-read between commits (the default is 2 MiB).
    impl->db->exec("PRAGMA cache_size=-32768");
    // A WAL that grew under load is cut back when it restarts.
    impl->db->exec("PRAGMA journal_size_limit=" + std::to_string(impl->options.wal_limit_bytes));
    if (Status st = detail::migrate_mailbox(*impl->db, impl->path); !st.ok()) return st;
    // A write, so the WAL has a header whose lineage the marker records: a later open
    // tells this WAL from another mailbox's by it (wal_scan.hpp). Without it (a full
    // disk) the marker has no lineage and a foreign WAL goes unnoticed: WARNING.
    try {
      impl->db->exec("INSERT INTO meta (key, value) VALUES ('opened_ms', " + std::to_string(impl->now()) +
                     ") ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    } catch (const std::exception& e) {
      detail::log().warn("mailbox {}: cannot record this run's WAL lineage ({}); a WAL from another mailbox put "
                         "beside it before the next open would not be recognised",
                         impl->path, e.what());
    }
    // The file is in WAL mode and its -wal exists: a later open that finds the marker
    // still "open" and no -wal knows a WAL went missing (docs/mailbox.md).
    detail::mark_open(impl->path);
    impl->marked_open = true;
  } catch (const std::exception& e) {
    return io_error(impl->path, e);
  }
  try {
    impl->reader = std::make_unique<SQLite::Database>(impl->path, SQLite::OPEN_READONLY);
    detail::register_row_check(impl->reader->getHandle());  // any outbox read may verify rows
    impl->reader->exec("PRAGMA busy_timeout=" + std::to_string(impl->options.busy_timeout_ms));
  } catch (const std::exception& e) {
    return io_error(impl->path + ": cannot open the read-only connection", e);
  }
  // The WAL thresholds, lowered on a small disk, and the reserve file.
  impl->disk = std::make_unique<detail::DiskGuard>(impl->path, fs::path(impl->options.data_dir).string(),
                                                   impl->options.wal_checkpoint_bytes, impl->options.wal_limit_bytes);
  auto budget = impl->disk->open();
  if (!budget.ok()) return budget.status();
  impl->check_clock_at_open();
  // Checkpoints (the only fsyncs on the NORMAL write path) run on their own thread.
  std::uint64_t page = 4096;
  try {
    page = static_cast<std::uint64_t>(impl->db->execAndGet("PRAGMA page_size").getInt64());
    impl->db->exec("PRAGMA journal_size_limit=" + std::to_string(budget.value().limit_bytes));
  } catch (const std::exception& e) {
    return io_error(impl->path, e);
  }
  auto limits = [page](const detail::WalBudget& b) {
    auto frames = [&](std::uint64_t bytes) { return static_cast<int>(std::clamp<std::uint64_t>(bytes / page, 1, 1 << 30)); };
    detail::Checkpointer::Limits l;
    l.passive_frames = frames(b.checkpoint_bytes);
    l.restart_frames = std::max(l.passive_frames, frames(b.limit_bytes));
    return l;
  };
  Impl* raw = impl.get();
  auto ckpt = detail::Checkpointer::start(impl->path, impl->db->getHandle(), impl->db_mu, limits(budget.value()),
                                          [raw] { raw->disk->maybe_restore(); });
  if (!ckpt.ok()) return ckpt.status();
  impl->checkpointer = std::move(ckpt).value();
  impl->disk->set_apply([ck = impl->checkpointer.get(), limits](const detail::WalBudget& b) {
    ck->set_limits(limits(b));
    ck->set_inline(b.full);
  });
  // Replaces busy_timeout on this connection (same wait), so that close() can cut it short.
  sqlite3_busy_handler(impl->db->getHandle(), &Impl::on_busy, impl.get());
  try {
    // The full check quick_check leaves out, off the opening thread (docs/mailbox.md,
    // "Corruption"). Both threads start last: a failure here leaves nothing running.
    impl->integrity = std::make_unique<detail::IntegrityChecker>(
        impl->path, impl->db->getHandle(), impl->db_mu, [raw](const std::string& id) {
          raw->report_unreadable(raw->unreadable_outbox, "outbox", id, kChecksumMismatch, kDamagedRemedy);
        });
    impl->writer = std::thread([raw] {
      detail::set_current_thread_name("edgert-mailbox");
      raw->write_loop();
    });
    if (impl->options.cleanup_interval.count() > 0) {
      impl->maintenance = std::thread([raw] {
        detail::set_current_thread_name("edgert-mbx-clean");
        raw->maintenance_loop();
      });
    }
  } catch (const std::system_error& e) {
    if (impl->writer.joinable()) {
      {
        std::lock_guard lk(impl->queue_mu);
        impl->stopping = true;
      }
      impl->queue_cv.notify_all();
      impl->writer.join();
    }
    return Status{ErrorCode::io_error, impl->path + ": cannot start the mailbox's threads: " + e.what()};
  }
  return std::unique_ptr<Mailbox>(new Mailbox(std::move(impl)));
}

Mailbox::Mailbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Mailbox::~Mailbox() { (void)close(); }

Status Mailbox::close() {
  std::lock_guard closing(impl_->close_mu);
  if (impl_->closed) return {};
  const auto timeout = std::max(impl_->options.close_timeout, std::chrono::milliseconds(0));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  impl_->close_deadline_ns.store(std::max<std::int64_t>(1, deadline.time_since_epoch().count()),
                                 std::memory_order_release);
  impl_->stop_maintenance();  // a cleanup pass stops between batches
  if (impl_->integrity) impl_->integrity->stop();  // interrupts a check in progress: closing stays prompt
  {
    std::lock_guard lk(impl_->queue_mu);
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  impl_->space_cv.notify_all();
  // Commits what is queued, until the deadline; answers the rest `closed`.
  if (impl_->writer.joinable()) impl_->writer.join();
  {
    std::lock_guard lk(impl_->db_mu);
    impl_->persist_wall(impl_->checked_now());  // the next open compares against this
    std::lock_guard rk(impl_->read_mu);  // lock order: db_mu, then read_mu
    impl_->closed = true;  // from here on no call touches either connection
  }
  impl_->release();
  return {};
}

// SQLite's busy_timeout, plus a way out for close(): waits (polling as SQLite does)
// until busy_timeout_ms after the first busy report of this statement or the close
// deadline, whichever comes first. Runs on the thread using the connection, under db_mu.
int Mailbox::Impl::on_busy(void* self, int count) {
  using namespace std::chrono;
  auto* impl = static_cast<Impl*>(self);
  const auto now = steady_clock::now();
  if (count == 0) impl->busy_since = now;
  auto give_up = impl->busy_since + milliseconds(std::max(0, impl->options.busy_timeout_ms));
  const std::int64_t close_ns = impl->close_deadline_ns.load(std::memory_order_acquire);
  if (close_ns != 0) give_up = std::min(give_up, steady_clock::time_point(steady_clock::duration(close_ns)));
  if (now >= give_up) return 0;
  static constexpr int kDelaysMs[] = {1, 2, 5, 10, 15, 20, 25};
  const auto step = milliseconds(kDelaysMs[std::min<std::size_t>(static_cast<std::size_t>(count), 6)]);
  std::this_thread::sleep_for(std::min<steady_clock::duration>(step, give_up - now));
  return 1;
}

const std::string& Mailbox::path() const noexcept { return impl_->path; }

namespace detail::mbx {

void read_table_stats(SQLite::Database& db, std::int64_t now, MailboxStats& s) {
  SQLite::Statement q(db, "SELECT outbox_rows, outbox_bytes, inbox_rows, inbox_bytes FROM totals WHERE id = 1");
  if (q.executeStep()) {
    s.outbox_rows = static_cast<std::uint64_t>(q.getColumn(0).getInt64());
    s.outbox_bytes = static_cast<std::uint64_t>(q.getColumn(1).getInt64());
    s.inbox_rows = static_cast<std::uint64_t>(q.getColumn(2).getInt64());
    s.inbox_bytes = static_cast<std::uint64_t>(q.getColumn(3).getInt64());
  }
  SQLite::Statement oldest(db, "SELECT created_ms FROM outbox ORDER BY rowid ASC LIMIT 1");
  if (oldest.executeStep()) s.oldest_pending_age_ms = std::max<std::int64_t>(0, now - oldest.getColumn(0).getInt64());
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  if (version >= 4) {  // kept by the writers: no row is counted
    SQLite::Statement t(db, "SELECT inbox_unacked, dead_letters FROM totals WHERE id = 1");
    if (t.executeStep()) {
      s.inbox_unacked = static_cast<std::uint64_t>(t.getColumn(0).getInt64());
      s.dead_letter_rows = static_cast<std::uint64_t>(t.getColumn(1).getInt64());
    }
    return;
  }
  // A file from before schema 4 (read_stats() does not migrate): counted.
  SQLite::Statement un(db, "SELECT COUNT(*) FROM inbox WHERE acknowledged = 0");
  if (un.executeStep()) s.inbox_unacked = static_cast<std::uint64_t>(un.getColumn(0).getInt64());
  if (version >= 3) {
    SQLite::Statement dl(db, "SELECT COUNT(*) FROM dead_letter");
    if (dl.executeStep()) s.dead_letter_rows = static_cast<std::uint64_t>(dl.getColumn(0).getInt64());
  }
}

}  // namespace detail::mbx

Result<MailboxStats> Mailbox::stats() {
  MailboxStats s;
  {
    std::lock_guard lk(impl_->read_mu);
    if (impl_->closed || !impl_->reader) return impl_->closed_error("stats");
    // A wall-clock jump is rebased and expired leases dropped first, but only if that
    // costs no wait: a reader never queues behind the writer.
    std::int64_t t = impl_->now();
    if (std::unique_lock dl(impl_->db_mu, std::try_to_lock); dl.owns_lock()) {
      t = impl_->checked_now(/*may_persist=*/false);
      impl_->expire_leases();
    }
    try {
      read_table_stats(*impl_->reader, t, s);
    } catch (const std::exception& e) {
      return io_error(impl_->path + ": stats", e);
    }
    s.leased_now = impl_->leases_held.load(std::memory_order_relaxed);
    // Under read_mu: close() sets `closed` holding it, before the checkpointer, the
    // integrity checker and the disk guard are destroyed.
    s.counters.checkpoints = impl_->checkpointer->rounds();
    s.counters.checkpoint_failures = impl_->checkpointer->failures();
    s.counters.disk_full = impl_->disk->refused();
    s.counters.integrity_checks = impl_->integrity->checks();
    s.counters.integrity_repairs = impl_->integrity->repairs();
    s.counters.integrity_failures = impl_->integrity->failures();
  }
  auto& c = s.counters;
  c.sent = impl_->sent;
  c.idempotent_hits = impl_->idempotent_hits;
  c.delivered = impl_->delivered;
  c.failed_attempts = impl_->failed_attempts;
  c.expired = impl_->expired;
  c.duplicates = impl_->duplicates;
  c.evicted = impl_->evicted;
  c.rejected = impl_->rejected;
  c.commits = impl_->commits;
  c.write_errors = impl_->write_errors;
  c.unreadable = impl_->unreadable;
  c.notification_errors = impl_->notification_errors;
  c.clock_jumps = impl_->clock_jumps;
  c.leased = impl_->leased;
  c.lease_expired = impl_->lease_expired;
  c.dead_lettered = impl_->dead_lettered;
  c.dead_letters_pruned = impl_->dead_letters_pruned;
  c.cleanups = impl_->cleanups;
  c.inbox_retired = impl_->inbox_retired;
  c.inbox_refused = impl_->inbox_refused;
  c.inbox_conflicts = impl_->inbox_conflicts;
  return s;
}

}  // namespace edgert
