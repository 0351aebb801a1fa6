#include <edgert/mailbox.hpp>

#include "core/futex.hpp"
#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "core/thread_name.hpp"
#include "mailbox/checkpointer.hpp"
#include "mailbox/data_dir_lock.hpp"
#include "mailbox/disk_space.hpp"
#include "mailbox/envelope_check.hpp"
#include "mailbox/integrity.hpp"
#include "mailbox/open.hpp"
#include "mailbox/row_check.hpp"
#include "mailbox/schema.hpp"
#include "mailbox/wal_scan.hpp"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

namespace edgert {

using detail::futex_wait;
using detail::printable;
using detail::futex_wake_all;

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t steady_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Scheduling arithmetic saturates: a TTL, backoff or clock at the edge of int64 gives
// "far future" or "far past", never a wrapped time (which expired messages at once).
std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}
std::int64_t sat_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
  return r;
}

constexpr std::int64_t kMaxTtlCapSeconds = std::int64_t{100} * 365 * 24 * 3600;  // MailboxOptions::max_ttl
// Stored times before this (2020-01-01T00:00:00Z) were written by an unset clock
// (a device that booted at 1970) when the clock now reads later.
constexpr std::int64_t kClockFloorMs = 1'577'836'800'000;
// The meta row holding the last wall time the mailbox saw is rewritten at most this
// often (and on a rebase and at close); the backwards check at open has the jump
// tolerance of slack, so a few seconds of staleness is harmless.
constexpr std::int64_t kWallPersistEveryMs = 5000;
// Rebased times stay inside this range, so "x + delta" never overflows in SQL (which
// would turn the column into a REAL).
constexpr std::int64_t kTimeBound = 4'000'000'000'000'000'000;

// "+365d 0h 0m 0s (+31536000000 ms)"
std::string jump_size(std::int64_t d) {
  const char sign = d < 0 ? '-' : '+';
  const std::uint64_t ms = d < 0 ? 0 - static_cast<std::uint64_t>(d) : static_cast<std::uint64_t>(d);
  const std::uint64_t s = ms / 1000;
  return std::string(1, sign) + std::to_string(s / 86400) + "d " + std::to_string(s / 3600 % 24) + "h " +
         std::to_string(s / 60 % 60) + "m " + std::to_string(s % 60) + "s (" + std::string(1, sign) +
         std::to_string(ms) + " ms)";
}

// "2026-07-25T17:20:00Z" (or the raw ms when out of gmtime's range).
std::string utc_stamp(std::int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(ms) + " ms";
  }
  return buf;
}

// "message <id> (<payload_type>)" as refusals name it; "(new)" before an id is assigned.
std::string describe(const Envelope& env) {
  const std::string id = env.message_id.empty() ? std::string("(new)") : printable(env.message_id);
  const std::string type = env.payload_type.empty() ? std::string("no payload_type") : printable(env.payload_type);
  return "message " + id + " (" + type + ")";
}

// "msg:" + 12 hex digits of the wall clock in ms + 20 random hex digits: unique
// without coordination, and time-ordered so the message_id index grows at its end
// (random ids dirtied one index page per row: measured 2-3x slower commits).
std::string new_message_id() {
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};
  static const char* hex = "0123456789abcdef";
  std::string id = "msg:";
  const auto ms = static_cast<std::uint64_t>(system_ms());
  for (int shift = 44; shift >= 0; shift -= 4) id += hex[(ms >> shift) & 0xF];
  std::uint64_t r = rng();
  for (int k = 0; k < 16; ++k, r >>= 4) id += hex[r & 0xF];
  r = rng();
  for (int k = 0; k < 4; ++k, r >>= 4) id += hex[r & 0xF];
  return id;
}

Status io_error(const std::string& what, const std::exception& e) {
  return {ErrorCode::io_error, what + ": " + e.what()};
}

// <data_dir>/mailbox.db if it exists; not_found, or io_error when it cannot be looked
// at (e.g. a data_dir the process may not search), never an exception.
Result<std::string> existing_db(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / "mailbox.db").string();
  std::error_code ec;
  const bool there = fs::exists(path, ec);
  if (ec) return Status{ErrorCode::io_error, path + ": cannot look at it: " + ec.message()};
  if (!there) return Status{ErrorCode::not_found, path + ": no mailbox here"};
  return path;
}

// Builds the stored envelope JSON; refuses, before anything is written, identifiers
// that are too long or not UTF-8, and payloads that are too large, nest too deeply or
// are not exactly one JSON value. The payload text is embedded verbatim, so what is
// stored is one JSON object that decode() reads back field for field.
Result<std::string> encode(Envelope& env, const MailboxOptions& opts, std::int64_t now) {
  const std::string who = describe(env);
  if (env.payload_type.empty()) return Status{ErrorCode::invalid_argument, who + ": payload_type is empty"};
  const std::pair<const char*, const std::string*> ids[] = {{"message_id", &env.message_id},
                                                            {"sender_node_id", &env.sender_node_id},
                                                            {"recipient_node_id", &env.recipient_node_id},
                                                            {"payload_type", &env.payload_type}};
  for (const auto& [name, value] : ids) {
    if (value->size() > opts.max_id_bytes) {
      return Status{ErrorCode::invalid_argument, who + ": " + name + " is " + std::to_string(value->size()) +
                                                     " bytes, over the " + std::to_string(opts.max_id_bytes) +
                                                     "-byte limit"};
    }
  }
  if (env.payload.size() > opts.max_payload_bytes) {
    return Status{ErrorCode::invalid_argument, who + ": payload is " + std::to_string(env.payload.size()) +
                                                   " bytes, over the " + std::to_string(opts.max_payload_bytes) +
                                                   "-byte limit"};
  }
  const std::size_t depth = std::min(opts.max_json_depth, detail::kMaxJsonDepthCap);
  if (std::string why = detail::json_problem(env.payload, depth); !why.empty()) {
    return Status{ErrorCode::invalid_argument, who + ": payload " + why};
  }
  if (env.message_id.empty()) env.message_id = new_message_id();
  if (env.timestamp_ms == 0) env.timestamp_ms = now;
  try {
    std::string out;
    out.reserve(env.payload.size() + 192);
    out += "{\"message_id\":";
    out += json(env.message_id).dump();  // dump() escapes and rejects invalid UTF-8
    out += ",\"sender_node_id\":";
    out += json(env.sender_node_id).dump();
    out += ",\"recipient_node_id\":";
    out += json(env.recipient_node_id).dump();
    out += ",\"timestamp\":";
    out += std::to_string(env.timestamp_ms);
    out += ",\"payload_type\":";
    out += json(env.payload_type).dump();
    out += ",\"payload\":";
    out += env.payload;
    out += "}";
    return out;
  } catch (const json::exception& e) {  // invalid UTF-8 in an id or type
    return Status{ErrorCode::invalid_argument, who + ": " + e.what()};
  }
}

// Reads a stored envelope back. Never throws and never recurses deeper than
// kMaxJsonDepthCap: any row in the file, whoever wrote it, gives an envelope or an
// error saying why it cannot be read.
Result<Envelope> decode(const std::string& text) {
  if (std::string why = detail::json_problem(text, detail::kMaxJsonDepthCap + 1, /*parse=*/false); !why.empty()) {
    return Status{ErrorCode::invalid_argument, "stored envelope " + why};
  }
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return Status{ErrorCode::invalid_argument, "stored envelope is not a JSON object (or not JSON)"};
  Envelope env;
  auto str = [&](const char* key, std::string& into, bool required) -> bool {
    const auto it = j.find(key);
    if (it == j.end()) return !required;
    if (!it->is_string()) return false;
    into = it->get<std::string>();
    return !(required && into.empty());
  };
  if (!str("message_id", env.message_id, true)) {
    return Status{ErrorCode::invalid_argument, "stored envelope has no message_id"};
  }
  if (!str("sender_node_id", env.sender_node_id, false) || !str("recipient_node_id", env.recipient_node_id, false) ||
      !str("payload_type", env.payload_type, true)) {
    return Status{ErrorCode::invalid_argument, "stored envelope has a malformed sender, recipient or payload_type"};
  }
  const auto ts = j.find("timestamp");
  if (ts != j.end()) {
    if (!ts->is_number_integer()) {
      return Status{ErrorCode::invalid_argument, "stored envelope timestamp is not an integer"};
    }
    env.timestamp_ms = ts->get<std::int64_t>();
  }
  const auto payload = j.find("payload");
  if (payload == j.end()) return Status{ErrorCode::invalid_argument, "stored envelope has no payload"};
  try {
    env.payload = payload->dump();
  } catch (const json::exception& e) {
    return Status{ErrorCode::invalid_argument, std::string("stored envelope payload: ") + e.what()};
  }
  return env;
}

}  // namespace

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

namespace {
using SendRequest = detail::MailboxSendRequest;

}  // namespace

// A row whose row_sum does not match its columns (row_check.hpp).
constexpr const char* kChecksumMismatch =
    "its checksum does not match its stored values: a value changed on disk after it was written (its expiry, due "
    "time, envelope or id may be the damaged one), so it is neither delivered nor expired";
constexpr const char* kDamagedRemedy =
    "inspect it with `SELECT * FROM outbox WHERE message_id = ...`; mark_delivered() or DELETE removes it";

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
    std::error_code ec;
    if (marked_open && !fs::exists(path + "-wal", ec) && !ec) detail::mark_clean(path);
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
  std::unordered_map<std::string, std::int64_t> leases;
  std::set<std::pair<std::int64_t, std::string>> lease_order;
  std::atomic<std::uint64_t> leased{0}, lease_expired{0};
  std::atomic<std::size_t> leases_held{0};  // leases.size(), for stats() without db_mu
  void end_lease(const std::string& id) {
    const auto it = leases.find(id);
    if (it == leases.end()) return;
    lease_order.erase({it->second, id});
    leases.erase(it);
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  // Drops the leases that ran out (lazily: on the next read of the outbox or stats()).
  void expire_leases() {
    if (lease_order.empty()) return;
    const std::int64_t t = steady();
    while (!lease_order.empty() && lease_order.begin()->first <= t) {
      leases.erase(lease_order.begin()->second);
      lease_order.erase(lease_order.begin());
      ++lease_expired;
    }
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  // pending() and lease(): up to `limit` due rows, skipping leased ones; with
  // lease_ms >= 0 the rows returned are leased for that long.
  Result<std::vector<OutboxMessage>> due(std::size_t limit, const char* call, std::int64_t lease_ms,
                                         bool newest_first = false);
  // min(base * 2^attempts, cap) +- jitter after `t`, saturating.
  std::int64_t next_attempt(int attempts, std::int64_t t) const;

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

  Result<std::shared_ptr<SendRequest>> prepare(Envelope& envelope, SendOptions& options);
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

  auto db = detail::open_mailbox_db(impl->path, impl->options.busy_timeout_ms, impl->now());
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
  for (;;) {
    batch.clear();
    results.clear();
    if (take(batch, 1, max_batch, std::nullopt) == 0) break;  // stopping and drained
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
    if (auto old = decode(stored); old.ok()) {
      Envelope e = r.env;
      e.timestamp_ms = old.value().timestamp_ms;
      auto again = encode(e, options, 0);
      same = again.ok() && again.value() == stored;
    }
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

std::int64_t Mailbox::Impl::checked_now(bool may_persist) {
  const std::int64_t wall = now();
  if (track_jumps) {
    const std::int64_t st = steady();
    const std::int64_t drift = sat_sub(wall, sat_add(base_wall, sat_sub(st, base_steady)));
    const std::int64_t tolerance = std::max<std::int64_t>(options.clock_jump_tolerance.count(), 1000);
    if ((drift > tolerance || drift < -tolerance) && !rebase(drift, wall, "")) {
      // Baseline kept, so the next call tries again; until then the stored schedule's
      // own timeline is the time, so nothing expires (or waits) because of the jump.
      return sat_add(base_wall, sat_sub(st, base_steady));
    }
    base_wall = wall;
    base_steady = st;
  }
  if (may_persist && !rebase_failing &&
      (wall - persisted_wall >= kWallPersistEveryMs || persisted_wall - wall >= kWallPersistEveryMs)) {
    persist_wall(wall);
  }
  return wall;
}

bool Mailbox::Impl::rebase(std::int64_t delta, std::int64_t wall, const std::string& when) {
  delta = std::clamp(delta, -kTimeBound, kTimeBound);
  std::int64_t rows = 0;
  try {
    SQLite::Transaction txn(*db, SQLite::TransactionBehavior::IMMEDIATE);
    // Each time is clamped into +-kTimeBound first, so adding delta stays an integer.
    auto& o = stmt(
        "UPDATE outbox SET next_attempt_ms = MIN(MAX(next_attempt_ms, -4000000000000000000), 4000000000000000000) + ?1, "
        "expires_ms = MIN(MAX(expires_ms, -4000000000000000000), 4000000000000000000) + ?1, "
        "created_ms = MIN(MAX(created_ms, -4000000000000000000), 4000000000000000000) + ?1, " EDGERT_ROW_RESUM(
            "edgert_row_sum(message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts, "
            "MIN(MAX(next_attempt_ms, -4000000000000000000), 4000000000000000000) + ?1, "
            "MIN(MAX(expires_ms, -4000000000000000000), 4000000000000000000) + ?1, "
            "MIN(MAX(created_ms, -4000000000000000000), 4000000000000000000) + ?1)"));
    o.bind(1, delta);
    rows = o.exec();
    auto& k = stmt(
        "UPDATE idempotency SET expires_ms = MIN(MAX(expires_ms, -4000000000000000000), 4000000000000000000) + ?1");
    k.bind(1, delta);
    k.exec();
    // The replay window counts elapsed time too: a jump must not retire it early.
    auto& in = stmt(
        "UPDATE inbox SET received_ms = MIN(MAX(received_ms, -4000000000000000000), 4000000000000000000) + ?1");
    in.bind(1, delta);
    in.exec();
    auto& m = stmt(
        "INSERT INTO meta (key, value) VALUES ('last_wall_ms', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1");
    m.bind(1, wall);
    m.exec();
    txn.commit();
  } catch (const std::exception& e) {
    if (!rebase_failing) {
      detail::log().error(
          "mailbox {}: wall clock jumped {}{}, but rebasing the pending messages failed ({}); retrying on each "
          "mailbox call, until then retry times and expiries are off by the jump",
          path, jump_size(delta), when, e.what());
    }
    rebase_failing = true;
    return false;
  }
  rebase_failing = false;
  persisted_wall = wall;
  ++clock_jumps;
  detail::log().warn(
      "mailbox {}: wall clock jumped {}{}; rebased {} pending messages so their retry times and expiries keep their "
      "remaining time",
      path, jump_size(delta), when, rows);
  return true;
}

void Mailbox::Impl::persist_wall(std::int64_t wall) noexcept {
  persisted_wall = wall;  // also on failure: retried kWallPersistEveryMs later, not on every call
  try {
    auto& m = stmt(
        "INSERT INTO meta (key, value) VALUES ('last_wall_ms', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1");
    m.bind(1, wall);
    m.exec();
  } catch (const std::exception& e) {
    // Only the restart check loses precision (by at most the persist interval).
    detail::log().debug("mailbox {}: could not record the wall clock: {}", path, e.what());
  }
}

void Mailbox::Impl::check_clock_at_open() {
  std::lock_guard lk(db_mu);
  track_jumps = !options.clock_ms || options.steady_ms;
  const std::int64_t wall = now();
  base_wall = wall;
  base_steady = steady();
  std::optional<std::int64_t> last;
  try {
    auto& m = stmt("SELECT value FROM meta WHERE key = 'last_wall_ms'");
    if (m.executeStep()) last = m.getColumn(0).getInt64();
    m.reset();
    if (!last) {  // a file from before the meta table: its newest row stands in
      auto& c = stmt("SELECT MAX(created_ms) FROM outbox");
      if (c.executeStep() && !c.getColumn(0).isNull()) last = c.getColumn(0).getInt64();
      c.reset();
    }
  } catch (const std::exception& e) {
    detail::log().error("mailbox {}: cannot read the last wall time it saw ({}); clock jumps while it was closed go "
                        "undetected this time",
                        path, e.what());
  }
  const std::int64_t tolerance = std::max<std::int64_t>(options.clock_jump_tolerance.count(), 1000);
  if (last && *last < kClockFloorMs && wall >= kClockFloorMs) {
    // Written by an unset clock: assume no downtime, the best guess there is.
    rebase(sat_sub(wall, *last), wall,
           " while the mailbox was closed (last seen " + utc_stamp(*last) +
               ", before 2020-01-01: the clock was unset; now " + utc_stamp(wall) + ")");
  } else if (last && wall < sat_sub(*last, tolerance)) {
    rebase(sat_sub(wall, *last), wall,
           " while the mailbox was closed (last seen " + utc_stamp(*last) + ", now " + utc_stamp(wall) + ")");
  }
  // A forward gap is indistinguishable from real downtime and left alone. A rebase
  // that failed (a full disk, say) leaves the baseline on the stored timeline, so the
  // first call retries it and, until one succeeds, times are taken on that timeline.
  if (rebase_failing && last) base_wall = *last;
  if (!rebase_failing) persist_wall(wall);
}

// Validates and encodes on the caller's thread, so the writer only inserts.
Result<std::shared_ptr<SendRequest>> Mailbox::Impl::prepare(Envelope& envelope, SendOptions& opts) {
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
                     : encode(envelope, options, now());
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
  auto req = impl_->prepare(envelope, options);
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

}  // namespace edgert

namespace edgert {
namespace {

// Row/byte totals, oldest pending age and unacked count; shared by stats() (the
// mailbox's own connection) and read_stats() (a read-only one). Runs once per call,
// so the statements are not cached.
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

// LIMIT for a read that skips `unreadable` known-bad rows on its way to `limit` good ones.
std::int64_t sql_limit(std::size_t limit, std::size_t unreadable) {
  return static_cast<std::int64_t>(std::min<std::size_t>(limit, std::size_t{1} << 40) + unreadable);
}

}  // namespace

Result<std::vector<OutboxMessage>> Mailbox::pending(std::size_t limit) { return impl_->due(limit, "pending", -1); }

Result<std::vector<OutboxMessage>> Mailbox::lease(std::size_t limit, std::chrono::milliseconds lease_for,
                                                  LeaseOrder order) {
  if (lease_for.count() <= 0) {
    return Status{ErrorCode::invalid_argument, "mailbox " + impl_->path + ": lease: lease_for is " +
                                                   std::to_string(lease_for.count()) + " ms; it must be positive"};
  }
  return impl_->due(limit, "lease", lease_for.count(), order == LeaseOrder::newest_first);
}

// One read of the due index, LIMIT limit + leased + known unreadable rows: the rows
// skipped are at most those, so the cost grows with the leases held (the caller's
// in-flight window), never with the backlog behind them.
Result<std::vector<OutboxMessage>> Mailbox::Impl::due(std::size_t limit, const char* call, std::int64_t lease_ms,
                                                      bool newest_first) {
  std::vector<OutboxMessage> out;
  std::lock_guard lk(db_mu);
  if (closed) return closed_error(call);
  std::vector<std::string> ids;  // of `out`, from the message_id column
  try {
    // Newest first walks the table's rowid order backwards (insertion order): no sort,
    // and fresh rows are found at once at the end.
    auto& q = newest_first
                  ? stmt("SELECT envelope_json, priority, attempts, next_attempt_ms, expires_ms, created_ms, message_id, "
                         EDGERT_ROW_OK " FROM outbox WHERE next_attempt_ms <= ?1 AND expires_ms > ?1 "
                         "ORDER BY rowid DESC LIMIT ?2")
                  : stmt("SELECT envelope_json, priority, attempts, next_attempt_ms, expires_ms, created_ms, message_id, "
                         EDGERT_ROW_OK " FROM outbox WHERE next_attempt_ms <= ?1 AND expires_ms > ?1 "
                         "ORDER BY priority DESC, next_attempt_ms ASC LIMIT ?2");
    const std::int64_t t = checked_now(/*may_persist=*/false);
    expire_leases();
    // A pass that finds a new unreadable row asks again for one more row per such
    // row, so they never take the place of readable ones.
    for (std::size_t known = SIZE_MAX; known != unreadable_outbox.size() && out.size() < limit;) {
      known = unreadable_outbox.size();
      out.clear();
      ids.clear();
      q.reset();
      q.bind(1, t);
      q.bind(2, sql_limit(limit, known + leases.size()));
      while (out.size() < limit && q.executeStep()) {
        std::string id = q.getColumn(6).getString();
        if (!leases.empty() && leases.count(id) != 0) continue;
        if (q.getColumn(7).getInt() == 0) {
          report_unreadable(unreadable_outbox, "outbox", id, kChecksumMismatch, kDamagedRemedy);
          continue;
        }
        OutboxMessage m;
        m.envelope_json = q.getColumn(0).getString();
        auto decoded = decode(m.envelope_json);
        if (!decoded.ok()) {
          report_unreadable(unreadable_outbox, "outbox", id, decoded.status().message(),
                            "mark_delivered() removes it");
          continue;
        }
        m.envelope = std::move(decoded).value();
        m.priority = q.getColumn(1).getInt();
        m.attempts = q.getColumn(2).getInt();
        m.next_attempt_ms = q.getColumn(3).getInt64();
        m.expires_ms = q.getColumn(4).getInt64();
        m.created_ms = q.getColumn(5).getInt64();
        out.push_back(std::move(m));
        ids.push_back(std::move(id));
      }
    }
    q.reset();
  } catch (const std::exception& e) {
    return io_error(path + ": " + call, e);
  }
  if (lease_ms >= 0 && !out.empty()) {
    const std::int64_t until = sat_add(steady(), lease_ms);
    for (auto& id : ids) {
      lease_order.emplace(until, id);
      leases.emplace(std::move(id), until);
    }
    leased += out.size();
    leases_held.store(leases.size(), std::memory_order_relaxed);
  }
  return out;
}

void Mailbox::release(const std::vector<std::string>& message_ids) {
  std::lock_guard lk(impl_->db_mu);
  for (const auto& id : message_ids) impl_->end_lease(id);
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

Status Mailbox::mark_delivered(const std::string& message_id) {
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("mark_delivered");
  try {
    Status st = impl_->keep_books("mark_delivered", [&]() -> Status {
      SQLite::Transaction txn(*impl_->db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& q = impl_->stmt("DELETE FROM outbox WHERE message_id = ? RETURNING size");
      q.bind(1, message_id);
      if (!q.executeStep()) {
        return {ErrorCode::not_found, "mark_delivered: message " + printable(message_id) + " is not in the outbox"};
      }
      const std::int64_t size = q.getColumn(0).getInt64();
      q.reset();
      impl_->add_outbox_totals(-1, -size);
      txn.commit();
      return {};
    });
    impl_->end_lease(message_id);  // delivered, or not in the outbox: either way nothing to hold
    if (!st.ok()) return st;
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": mark_delivered " + printable(message_id), e);
  }
  ++impl_->delivered;
  impl_->disk->maybe_restore();
  return {};
}

Result<std::size_t> Mailbox::mark_delivered(const std::vector<std::string>& message_ids) {
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("mark_delivered");
  if (message_ids.empty()) return std::size_t{0};
  std::size_t found = 0;
  try {
    found = impl_->keep_books("mark_delivered", [&] {
      SQLite::Transaction txn(*impl_->db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& q = impl_->stmt("DELETE FROM outbox WHERE message_id = ? RETURNING size");
      std::int64_t rows = 0, bytes = 0;
      for (const auto& id : message_ids) {
        q.reset();
        q.bindNoCopy(1, id);
        if (q.executeStep()) {
          ++rows;
          bytes += q.getColumn(0).getInt64();
        }
        q.reset();
      }
      q.clearBindings();  // no pointer into message_ids outlives this call
      if (rows > 0) impl_->add_outbox_totals(-rows, -bytes);
      txn.commit();
      return static_cast<std::size_t>(rows);
    });
  } catch (const std::exception& e) {
    // The leases stay: the rows are still there, and the caller may try again.
    return io_error(impl_->path + ": mark_delivered of " + std::to_string(message_ids.size()) +
                        " messages (the first " + printable(message_ids.front()) + "); none was removed",
                    e);
  }
  for (const auto& id : message_ids) impl_->end_lease(id);
  impl_->delivered += found;
  impl_->disk->maybe_restore();
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
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("mark_failed");
  const std::int64_t t = impl_->checked_now();
  try {
    auto& sel = impl_->stmt("SELECT attempts FROM outbox WHERE message_id = ?");
    sel.bind(1, message_id);
    if (!sel.executeStep()) {
      impl_->end_lease(message_id);
      return Status{ErrorCode::not_found, "mark_failed: message " + printable(message_id) + " is not in the outbox"};
    }
    const int attempts = sel.getColumn(0).getInt();
    sel.reset();
    const std::int64_t next = impl_->next_attempt(attempts, t);
    impl_->keep_books("mark_failed", [&] {
      auto& up = impl_->stmt("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1, " EDGERT_ROW_RESUM(
          "edgert_row_sum(message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts + 1, "
          "?1, expires_ms, created_ms)") " WHERE message_id = ?2");
      up.bind(1, next);
      up.bind(2, message_id);
      up.exec();
    });
    impl_->end_lease(message_id);
    ++impl_->failed_attempts;
    return next;
  } catch (const std::exception& e) {
    return io_error(impl_->path + ": mark_failed " + printable(message_id), e);
  }
}

Result<std::size_t> Mailbox::mark_failed(const std::vector<std::string>& message_ids) {
  std::lock_guard lk(impl_->db_mu);
  if (impl_->closed) return impl_->closed_error("mark_failed");
  if (message_ids.empty()) return std::size_t{0};
  const std::int64_t t = impl_->checked_now();
  std::size_t found = 0;
  try {
    found = impl_->keep_books("mark_failed", [&] {
      SQLite::Transaction txn(*impl_->db, SQLite::TransactionBehavior::IMMEDIATE);
      auto& sel = impl_->stmt("SELECT attempts FROM outbox WHERE message_id = ?");
      auto& up = impl_->stmt("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1, " EDGERT_ROW_RESUM(
          "edgert_row_sum(message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts + 1, "
          "?1, expires_ms, created_ms)") " WHERE message_id = ?2");
      std::size_t n = 0;
      for (const auto& id : message_ids) {
        sel.reset();
        sel.bindNoCopy(1, id);
        if (!sel.executeStep()) continue;
        const int attempts = sel.getColumn(0).getInt();
        sel.reset();
        up.reset();
        up.bind(1, impl_->next_attempt(attempts, t));
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
    return io_error(impl_->path + ": mark_failed of " + std::to_string(message_ids.size()) + " messages (the first " +
                        printable(message_ids.front()) + "); none was rescheduled",
                    e);
  }
  for (const auto& id : message_ids) impl_->end_lease(id);
  impl_->failed_attempts += found;
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

Result<MailboxStats> Mailbox::read_stats(const std::string& data_dir) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  MailboxStats s;
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    db.exec("PRAGMA busy_timeout=5000");
    read_table_stats(db, system_ms(), s);
  } catch (const std::exception& e) {
    return io_error(path + ": stats", e);
  }
  return s;
}

Status Mailbox::check(const std::string& data_dir) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    db.exec("PRAGMA busy_timeout=5000");
    SQLite::Statement q(db, "PRAGMA integrity_check");
    std::string problems;
    while (q.executeStep()) {
      const std::string line = q.getColumn(0).getString();
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (!problems.empty()) return {ErrorCode::io_error, path + ": integrity_check failed: " + problems};
  } catch (const std::exception& e) {
    return io_error(path + ": integrity_check", e);
  }
  return {};
}

Status Mailbox::backup(const std::string& data_dir, const std::string& dest) {
  const auto found = existing_db(data_dir);
  if (!found.ok()) return found.status();
  const std::string& path = found.value();
  // Writing the copy onto the live file (or its WAL) would copy nothing, or worse.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    if (fs::equivalent(dest, path + suffix, ec) && !ec) {
      return {ErrorCode::io_error, "backup of " + path + " to " + dest + ": " + dest + " is the live mailbox file " + path +
                                       suffix + " itself; choose another DEST"};
    }
  }
  try {
    SQLite::Database src(path, SQLite::OPEN_READONLY);
    src.exec("PRAGMA busy_timeout=5000");
    SQLite::Database dst(dest, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    SQLite::Backup b(dst, src);
    b.executeStep();  // all pages, one step; SQLite restarts it if the source changes meanwhile
  } catch (const std::exception& e) {
    return io_error("backup of " + path + " to " + dest, e);
  }
  return {};
}

}  // namespace edgert

