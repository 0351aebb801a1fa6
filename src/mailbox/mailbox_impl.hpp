// Private to src/mailbox: Mailbox::Impl, the queued send request and the helpers the mailbox_*.cpp files share.
#pragma once

#include <edgert/mailbox.hpp>

#include "core/futex.hpp"
#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "core/printable.hpp"
#include "mailbox/checkpointer.hpp"
#include "mailbox/data_dir_lock.hpp"
#include "mailbox/disk_space.hpp"
#include "mailbox/integrity.hpp"
#include "mailbox/wal_scan.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace edgert {

using detail::futex_wait;
using detail::printable;
using detail::futex_wake_all;

// The helpers below are reached unqualified from the mailbox's files (one using-directive,
// as their anonymous namespace was when the mailbox was one file); nothing outside
// src/mailbox includes this header.
namespace detail::mbx {

namespace fs = std::filesystem;

inline std::int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::int64_t steady_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Scheduling arithmetic saturates: a TTL, backoff or clock at the edge of int64 gives
// "far future" or "far past", never a wrapped time (which expired messages at once).
inline std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}
inline std::int64_t sat_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
  return r;
}

inline constexpr std::int64_t kMaxTtlCapSeconds = std::int64_t{100} * 365 * 24 * 3600;  // MailboxOptions::max_ttl

inline Status io_error(const std::string& what, const std::exception& e) {
  return {ErrorCode::io_error, what + ": " + e.what()};
}

// "message <id> (<payload_type>)" as refusals name it; "(new)" before an id is assigned.
std::string describe(const Envelope& env);

// Builds the stored envelope JSON; refuses, before anything is written, identifiers
// that are too long or not UTF-8, and payloads that are too large, nest too deeply or
// are not exactly one JSON value. The payload text is embedded verbatim, so what is
// stored is one JSON object that decode() reads back field for field.
// (mailbox_codec.cpp)
// checked_depth: 0, or the depth limit the payload already passed check_json() at (MailboxAccess); within the
// mailbox's own limit the payload is not checked again and its buffer becomes the row (env.payload is left empty).
Result<std::string> encode(Envelope& env, const MailboxOptions& opts, std::int64_t now, std::size_t checked_depth = 0);

// Reads a stored envelope back. Never throws and never recurses deeper than
// kMaxJsonDepthCap: any row in the file, whoever wrote it, gives an envelope or an
// error saying why it cannot be read.
Result<Envelope> decode(const std::string& text);

// Row/byte totals, oldest pending age and unacked count; shared by stats() (the
// mailbox's own connection) and read_stats() (a read-only one). Runs once per call,
// so the statements are not cached.
// (mailbox.cpp)
void read_table_stats(SQLite::Database& db, std::int64_t now, MailboxStats& s);

// LIMIT for a read that skips `unreadable` known-bad rows on its way to `limit` good ones.
inline std::int64_t sql_limit(std::size_t limit, std::size_t unreadable) {
  return static_cast<std::int64_t>(std::min<std::size_t>(limit, std::size_t{1} << 40) + unreadable);
}

// A row whose row_sum does not match its columns (row_check.hpp).
inline constexpr const char* kChecksumMismatch =
    "its checksum does not match its stored values: a value changed on disk after it was written (its expiry, due "
    "time, envelope or id may be the damaged one), so it is neither delivered nor expired";
inline constexpr const char* kDamagedRemedy =
    "inspect it with `SELECT * FROM outbox WHERE message_id = ...`; mark_delivered() or DELETE removes it";

}  // namespace detail::mbx

using namespace detail::mbx;

// One queued message. send() waits on it directly; send_async() hands it out inside
// a PendingSend. The writer fills `result`, publishes it through `state` and makes a
// futex call only if the owner announced that it sleeps (kWaiting): with many
// messages in flight the owner waits on one of them at a time. Measured here: a
// std::promise cost ~1.3 us of the writer's time per message (call_once, a mutex, a
// condvar); std::atomic::wait/notify a syscall per message on the writer's side and
// sched_yield spinning on the sender's. Waking all senders of a group with one
// futex call on a shared counter measured slower (all wake at once on two CPUs).
struct detail::MailboxSendRequest {
  static constexpr std::int32_t kPending = 0, kWaiting = 1, kDone = 2;
  Envelope env;
  SendOptions options;
  std::string envelope_json;
  bool caller_id = false;  // the caller chose message_id (a generated one cannot be taken)
  bool stamped = false;    // timestamp_ms was 0 and the mailbox filled it in
  std::optional<Result<std::string>> result;
  std::atomic<std::int32_t> state{kPending};

  // Writer thread (or the caller, for a refusal); once.
  void complete(Result<std::string> r) {
    result.emplace(std::move(r));
    if (state.exchange(kDone, std::memory_order_acq_rel) == kWaiting) futex_wake_all(state);
  }
  bool done() const noexcept { return state.load(std::memory_order_acquire) == kDone; }
  // The owner's thread; blocks until complete().
  void wait() {
    std::int32_t s = kPending;
    if (state.compare_exchange_strong(s, kWaiting, std::memory_order_acq_rel)) s = kWaiting;
    while (s != kDone) {
      futex_wait(state, s);
      s = state.load(std::memory_order_acquire);
    }
  }
};

namespace detail::mbx {
using SendRequest = detail::MailboxSendRequest;
}  // namespace detail::mbx

struct Mailbox::Impl {
  MailboxOptions options;
  std::string path;
  detail::DataDirLock lock;  // declared before db: released only after it is closed
  std::unique_ptr<SQLite::Database> db;
  std::mutex db_mu;  // one connection; every statement runs under this
  std::unique_ptr<detail::DiskGuard> disk;  // outlives the checkpointer, which calls it
  std::unique_ptr<detail::Checkpointer> checkpointer;
  std::unique_ptr<detail::IntegrityChecker> integrity;
  // Readers (stats(), unacked(), dead_letters()) use their own read-only connection
  // under their own mutex: they never wait for a commit, a delivery or a cleanup, and
  // nothing waiting for db_mu ever waits for them (docs/mailbox.md, "Threads").
  std::unique_ptr<SQLite::Database> reader;
  std::mutex read_mu;
  std::map<const char*, std::unique_ptr<SQLite::Statement>> read_statements;  // under read_mu
  SQLite::Statement& read_stmt(const char* sql) {
    auto& s = read_statements[sql];
    if (!s) {
      s = std::make_unique<SQLite::Statement>(*reader, sql);
    } else {
      (void)s->tryReset();
      s->clearBindings();
    }
    return *s;
  }
  // The periodic cleanup (MailboxOptions::cleanup_interval): one thread the mailbox
  // owns, woken by close() through maint_cv.
  std::thread maintenance;
  std::mutex maint_mu;
  std::condition_variable maint_cv;
  bool maint_stop = false;  // under maint_mu
  void maintenance_loop();
  std::atomic<std::uint64_t> cleanups{0}, inbox_retired{0}, inbox_refused{0}, inbox_conflicts{0};
  // Per-message log lines are rate-limited (docs/operations.md, "Logs").
  detail::LogLimit log_refused{10, std::chrono::seconds(60)}, log_duplicate{10, std::chrono::seconds(60)},
      log_evicted{10, std::chrono::seconds(60)}, log_conflict{10, std::chrono::seconds(60)},
      log_row_failure{10, std::chrono::seconds(60)}, log_inbox_full{1, std::chrono::seconds(60)},
      log_expired{1, std::chrono::seconds(60)};
  // Removes up to cleanup_batch expired outbox rows in one transaction, under db_mu.
  // Returns how many; `more` says whether a full batch was removed.
  std::size_t expire_batch(std::int64_t t, bool& more);
  Result<std::size_t> run_cleanup();  // Mailbox::cleanup_expired()
  bool marked_open = false;  // <path>-state says "open": say "clean" once the connection closed
  std::atomic<std::int64_t> next_space_check_ms{0};  // refused sends look at the disk at most once a second

  static bool disk_full(const std::exception& e) {
    const auto* s = dynamic_cast<const SQLite::Exception*>(&e);
    return s && (s->getErrorCode() & 0xff) == SQLITE_FULL;
  }
  // Delivery bookkeeping under db_mu: on a full disk, gives up the reserve and runs `f`
  // once more; with the reserve already gone, checkpoints the WAL into the database
  // file and truncates it (a background checkpoint starved on a loaded machine may
  // have left it large) and runs `f` a last time (docs/mailbox.md, "Disk full and
  // small disks").
  template <class F>
  auto keep_books(const std::string& op, F&& f) -> decltype(f()) {
    for (int attempt = 0;; ++attempt) {
      try {
        return f();
      } catch (const SQLite::Exception& e) {
        if ((e.getErrorCode() & 0xff) != SQLITE_FULL || attempt == 2) throw;
        if (!disk->release_reserve(op)) {
          int wal = 0, copied = 0, rc = SQLITE_BUSY;
          // Busy at once while the background thread's round runs: wait it out, briefly.
          for (int i = 0; i < 50 && rc == SQLITE_BUSY; ++i) {
            if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
            rc = sqlite3_wal_checkpoint_v2(db->getHandle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &wal, &copied);
          }
          detail::log().warn("mailbox {}: disk full during {} with no reserve left; checkpointed the WAL ({} of {} "
                             "frames copied, {}) and retrying",
                             path, op, copied, wal, rc == SQLITE_OK ? "truncated" : sqlite3_errstr(rc));
        }
      }
    }
  }

  // Whatever ends the mailbox (close(), a failed open): the background threads stop,
  // the connection closes (SQLite checkpoints and removes the WAL), only then is the
  // stop marked clean, and last the data_dir lock is released, so a next owner never
  // sees this one's files half closed. Caller: not holding db_mu, the writer thread
  // gone. Idempotent.
  void release() {
    stop_maintenance();
    if (integrity) integrity->stop();
    if (disk) disk->set_apply({});  // it reaches into the checkpointer; waits out a call in progress
    checkpointer.reset();
    {
      std::lock_guard rk(read_mu);
      read_statements.clear();
      reader.reset();  // closed first: the writer's close then checkpoints and removes the WAL
    }
    {
      std::lock_guard lk(db_mu);
      statements.clear();  // finalised before their connection closes
      db.reset();
    }
    // Clean only if SQLite could checkpoint and remove the WAL (a reader in another
    // process, or a full disk, can keep it): a WAL lost later must still be reported.
    // "Verified" (the next open may skip quick_check) only if this run's full
    // integrity_check completed without damage it could not repair: a run closed before
    // its check finished, or one that found damage, leaves the next open its quick_check
    // (and with it the salvage of a file it calls corrupt).
    std::error_code ec;
    const bool verified = integrity && integrity->checks() > 0 && integrity->failures() == 0;
    if (marked_open && !fs::exists(path + "-wal", ec) && !ec) detail::mark_clean(path, verified);
    // A bounded check at open (open.hpp) is settled once the full check vouched for the file.
    if (verified) fs::remove(path + "-check-owed", ec);
    marked_open = false;
    lock = detail::DataDirLock{};
  }
  ~Impl() { release(); }
  void stop_maintenance() {
    {
      std::lock_guard lk(maint_mu);
      maint_stop = true;
    }
    maint_cv.notify_all();
    if (maintenance.joinable() && maintenance.get_id() != std::this_thread::get_id()) maintenance.join();
  }

  // Group commit: senders queue requests; the writer commits them in batches.
  std::mutex queue_mu;
  std::condition_variable queue_cv;  // the writer waits here for work
  std::condition_variable space_cv;  // senders wait here while the queue is full
  std::deque<std::shared_ptr<SendRequest>> queue;
  std::size_t space_waiters = 0;
  std::size_t wake_at = 0;  // the writer waits for this many queued requests; 0: it is busy
  bool stopping = false;
  std::thread writer;

  // close(): after this steady-clock instant (ns since its epoch; 0 until close() is
  // called) the writer starts no transaction and the busy handler stops waiting.
  std::atomic<std::int64_t> close_deadline_ns{0};
  std::mutex close_mu;             // serialises close()
  std::atomic<bool> closed{false};  // set under db_mu: afterwards nothing touches db
  std::chrono::steady_clock::time_point busy_since;  // under db_mu (the busy handler)
  bool past_close_deadline() const {
    const std::int64_t d = close_deadline_ns.load(std::memory_order_acquire);
    return d != 0 && std::chrono::steady_clock::now().time_since_epoch().count() >= d;
  }
  Status closed_error(const char* call) const {
    return {ErrorCode::closed, "mailbox " + path + ": " + call + ": the mailbox is closed"};
  }
  static int on_busy(void* self, int count);

  std::atomic<std::uint64_t> sent{0}, idempotent_hits{0}, delivered{0}, failed_attempts{0}, expired{0},
      duplicates{0}, evicted{0}, rejected{0}, commits{0}, write_errors{0}, notification_errors{0};
  // message_id columns of rows pending()/unacked() could not decode: reported once,
  // then skipped (their reads ask for that many extra rows, so they never hide the
  // rest). Under db_mu.
  std::set<std::string> unreadable_outbox, unreadable_inbox;
  std::atomic<std::uint64_t> unreadable{0};
  // First sighting of an undecodable row: ERROR naming it and how to remove it.
  void report_unreadable(std::set<std::string>& seen, const char* table, const std::string& id,
                         const std::string& why, const char* remedy) {
    if (!seen.insert(id).second) return;
    ++unreadable;
    detail::log().error("mailbox {}: {} message {} cannot be read ({}); it stays in the file and is skipped; {}", path,
                        table, printable(id), why, remedy);
  }

  // Leases (docs/mailbox.md, "Leases"): message_id -> expiry on the monotonic clock
  // (steady()), and the same pairs ordered by expiry, so expired leases are found
  // without a scan. In memory only: one process owns a data_dir (its lock), and a
  // restart must offer every unacknowledged row again. Under db_mu.
  // Each lease also keeps its row's rowid, so mark_delivered() deletes by rowid (the
  // table's own b-tree) instead of looking the message_id up in its index.
  struct Lease {
    std::int64_t until = 0;
    std::int64_t rowid = 0;
    std::int64_t size = 0;  // the row's size column, for the totals when it is deleted
  };
  std::unordered_map<std::string, Lease> leases;
  std::set<std::pair<std::int64_t, std::string>> lease_order;
  std::atomic<std::uint64_t> leased{0}, lease_expired{0};
  std::atomic<std::size_t> leases_held{0};  // leases.size(), for stats() without db_mu
  void end_lease(const std::string& id) {
    const auto it = leases.find(id);
    if (it == leases.end()) return;
    lease_order.erase({it->second.until, id});
    leases.erase(it);
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  // Drops the leases that ran out (lazily: on the next read of the outbox or stats()).
  // Their rows are due again, possibly behind a lease pass's cursor: the passes restart.
  void expire_leases() {
    if (lease_order.empty()) return;
    const std::int64_t t = steady();
    bool any = false;
    while (!lease_order.empty() && lease_order.begin()->first <= t) {
      leases.erase(lease_order.begin()->second);
      lease_order.erase(lease_order.begin());
      ++lease_expired;
      any = true;
    }
    if (any) restart_lease_passes();
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  // Lease passes (docs/mailbox.md, "Leases"): lease() continues its index read after
  // the last row the current pass read (keyset pagination) instead of stepping over
  // every row it already handed out. A pass ends (the next lease() starts at the top
  // of the order) when a read comes back short (the end was reached), when rows that
  // sort before the cursor may be due (a release, a failure, a lease that ran out, an
  // insert that sorts earlier, a clock rebase), and after kLeasePassMs at the latest
  // (rows of a higher priority whose retry time came while the cursor was in a lower
  // one). Correctness never rests on a cursor: a row under lease is skipped by the
  // `leases` lookup either way; a cursor only decides where the read starts.
  static constexpr std::int64_t kLeasePassMs = 1000;
  struct LeasePass {
    bool valid = false;
    std::int64_t started = 0;  // steady()
    int priority = 0;          // priority_first: the last key read
    std::int64_t next = 0;
    std::int64_t rowid = 0;    // both orders
  };
  LeasePass by_priority, by_newest;
  void restart_lease_passes() { by_priority.valid = by_newest.valid = false; }
  // A row just stored (writer, under db_mu): newest-first is rowid order backwards, so
  // any insert is ahead of its cursor; priority order only if the row sorts earlier.
  void note_inserted(int priority, std::int64_t next, std::int64_t rowid) {
    by_newest.valid = false;
    if (by_priority.valid &&
        (priority > by_priority.priority ||
         (priority == by_priority.priority &&
          (next < by_priority.next || (next == by_priority.next && rowid <= by_priority.rowid))))) {
      by_priority.valid = false;
    }
  }
  // pending() and lease(): up to `limit` due rows, skipping leased ones; with
  // lease_ms >= 0 the rows returned are leased for that long.
  Result<std::vector<OutboxMessage>> due(std::size_t limit, const char* call, std::int64_t lease_ms,
                                         bool newest_first = false);
  // min(base * 2^attempts, cap) +- jitter after `t`, saturating.
  std::int64_t next_attempt(int attempts, std::int64_t t) const;
  // mark_delivered() and mark_failed(), one id or many (mailbox_outbox.cpp): how many
  // of `ids` were in the outbox; `last_next`, if given, gets the last reschedule time.
  Result<std::size_t> deliver(std::span<const std::string> ids);
  Result<std::size_t> fail(std::span<const std::string> ids, std::int64_t* last_next);

  // set_commit_listener(): called by the writer after a commit that stored outbox
  // rows, holding listener_mu (never db_mu), so a replacement waits out a call.
  std::mutex listener_mu;
  std::function<void()> commit_listener;
  void notify_commit();

  std::atomic<std::uint64_t> dead_lettered{0}, dead_letters_pruned{0};
  bool pruning_reported = false;  // under db_mu: the first prune is logged, later ones only counted

  std::int64_t now() const { return options.clock_ms ? options.clock_ms() : system_ms(); }
  std::int64_t steady() const { return options.steady_ms ? options.steady_ms() : steady_clock_ms(); }

  // Wall-clock jumps (docs/mailbox.md, "Clock jumps and TTLs"). Under db_mu.
  bool track_jumps = true;         // false: clock_ms injected without steady_ms
  std::int64_t base_wall = 0;      // both clocks at the last check
  std::int64_t base_steady = 0;
  std::int64_t persisted_wall = 0;  // meta last_wall_ms as last written
  bool rebase_failing = false;      // a failed rebase is reported once, retried on each check
  std::atomic<std::uint64_t> clock_jumps{0};
  // The wall clock for scheduling: first rebases the stored schedule if the wall clock
  // moved more than the tolerance away from the elapsed monotonic time since the last
  // check. Two clock reads; writes only on a jump or, from write paths
  // (`may_persist`), every kWallPersistEveryMs: pending() and stats() never wait for
  // the write lock for it. Callers hold db_mu, outside any transaction. Never throws.
  std::int64_t checked_now(bool may_persist = true);
  // Shifts every stored due time and expiry by `delta` ms and remembers `wall`, in one
  // transaction; WARNING with the size, `when` describing the circumstances.
  bool rebase(std::int64_t delta, std::int64_t wall, const std::string& when);
  void persist_wall(std::int64_t wall) noexcept;
  // At open: a clock set back while the mailbox was closed, or stored times written
  // by an unset clock (before kClockFloorMs, now after it), are rebased the same way.
  void check_clock_at_open();
  // The message's TTL in ms after validation: capped at max_ttl.
  std::int64_t ttl_ms(const SendOptions& o) const {
    const std::int64_t cap = std::min<std::int64_t>(options.max_ttl.count(), kMaxTtlCapSeconds);
    return std::min<std::int64_t>(o.ttl.count(), cap) * 1000;
  }

  // Prepared statements, compiled once and reused (reset, bindings cleared) on every
  // call. Keyed by the address of the SQL literal at its call site: no hashing of SQL
  // text on the hot path. Callers hold db_mu.
  std::map<const char*, std::unique_ptr<SQLite::Statement>> statements;
  SQLite::Statement& stmt(const char* sql) {
    auto& s = statements[sql];
    if (!s) {
      s = std::make_unique<SQLite::Statement>(*db, sql);
    } else {
      // tryReset: reset() throws the error of the statement's previous step (a
      // SQLITE_BUSY in a failed batch would fail the next, unrelated, use once).
      (void)s->tryReset();
      s->clearBindings();
    }
    return *s;
  }
  // BEGIN IMMEDIATE ... COMMIT through cached statements: SQLite::Transaction runs them
  // through sqlite3_exec, which compiles the SQL on every call (measured: a tenth of a
  // batch delete's CPU). Each is reset right after it ran, failed or not: a BEGIN that
  // failed with SQLITE_BUSY stays an active write statement until reset, and SQLite
  // refuses every COMMIT on the connection while one is (sqlite3_exec finalised it; a
  // cached one must be reset by hand). Rolls back unless commit() was called; throws
  // SQLite::Exception as SQLite::Transaction does. Under db_mu.
  class Txn {
   public:
    explicit Txn(Impl& impl) : impl_(impl) { run("BEGIN IMMEDIATE"); }
    ~Txn() {
      if (open_) (void)sqlite3_exec(impl_.db->getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    void commit() {
      run("COMMIT");
      open_ = false;
    }

   private:
    void run(const char* sql) {
      auto& q = impl_.stmt(sql);
      try {
        q.exec();
      } catch (...) {
        (void)q.tryReset();
        throw;
      }
      (void)q.tryReset();
    }
    Impl& impl_;
    bool open_ = true;
  };
  // Keeps the running totals in step with the rows, inside the caller's transaction.
  void add_outbox_totals(std::int64_t rows, std::int64_t bytes) {
    auto& q = stmt("UPDATE totals SET outbox_rows = outbox_rows + ?, outbox_bytes = outbox_bytes + ? WHERE id = 1");
    q.bind(1, rows);
    q.bind(2, bytes);
    q.exec();
  }
  void add_inbox_totals(std::int64_t rows, std::int64_t bytes) {
    auto& q = stmt("UPDATE totals SET inbox_rows = inbox_rows + ?, inbox_bytes = inbox_bytes + ? WHERE id = 1");
    q.bind(1, rows);
    q.bind(2, bytes);
    q.exec();
  }

  Result<std::shared_ptr<SendRequest>> prepare(Envelope& envelope, SendOptions& options, std::size_t checked_depth = 0);
  Status enqueue(std::shared_ptr<SendRequest> req);
  // What a batch did besides inserting; applied (counted, logged, notified) only
  // once its transaction has committed, so a rolled-back eviction is not reported.
  struct Tally {
    std::uint64_t rejected = 0;
    std::uint64_t resends = 0;               // identical resends of a stored message_id
    std::vector<std::string> evictions;      // one message per evicted row
    std::vector<std::string> evicted_ids;    // their message_ids (their leases end)
    std::vector<std::string> expired_ids;    // expired rows removed to make room (counted in expired)
    std::vector<std::string> conflicts;      // one message per message_id refused as taken
    std::vector<std::string> row_failures;   // one message per row the database refused
  };
  std::size_t take(std::vector<std::shared_ptr<SendRequest>>& batch, std::size_t want, std::size_t room,
                   std::optional<std::chrono::steady_clock::time_point> deadline);
  void write_loop();
  Result<std::string> insert_one(SendRequest& r, std::int64_t now, std::int64_t& rows, std::int64_t& bytes,
                                 Tally& tally);
  Result<std::string> insert_guarded(SendRequest& r, std::int64_t now, std::int64_t& rows, std::int64_t& bytes,
                                     Tally& tally);
  Result<std::string> answer_taken(SendRequest& r, Tally& tally);
};

}  // namespace edgert
