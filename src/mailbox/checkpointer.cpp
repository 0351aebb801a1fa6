#include "mailbox/checkpointer.hpp"

#include "core/log.hpp"
#include "core/thread_name.hpp"

#include <sqlite3.h>

#include <chrono>

namespace edgert::detail {

Result<std::unique_ptr<Checkpointer>> Checkpointer::start(const std::string& path, sqlite3* writer,
                                                          std::mutex& writer_mu, Limits limits,
                                                          std::function<void()> after_truncate) {
  sqlite3* own = nullptr;
  if (sqlite3_open_v2(path.c_str(), &own, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    Status st{ErrorCode::io_error, path + ": checkpoint connection: " + std::string(sqlite3_errmsg(own))};
    sqlite3_close(own);
    return st;
  }
  sqlite3_busy_timeout(own, 50);  // what a RESTART waits for readers of the WAL
  // A connection finds the file in WAL mode on its first read; until then a
  // checkpoint is a silent no-op (log and copied frames -1).
  if (sqlite3_exec(own, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Status st{ErrorCode::io_error, path + ": checkpoint connection: " + std::string(sqlite3_errmsg(own))};
    sqlite3_close(own);
    return st;
  }
  std::unique_ptr<Checkpointer> c(new Checkpointer(path, writer, writer_mu, own, limits, std::move(after_truncate)));
  // Replaces the automatic checkpoint, which is itself a WAL hook.
  sqlite3_wal_hook(writer, &Checkpointer::on_commit, c.get());
  return c;
}

Checkpointer::Checkpointer(std::string path, sqlite3* writer, std::mutex& writer_mu, sqlite3* own, Limits limits,
                           std::function<void()> after_truncate)
    : path_(std::move(path)),
      writer_(writer),
      writer_mu_(writer_mu),
      db_(own),
      passive_frames_(limits.passive_frames),
      restart_frames_(limits.restart_frames),
      idle_ms_(limits.idle_ms),
      after_truncate_(std::move(after_truncate)) {
  thread_ = std::thread([this] {
    set_current_thread_name("edgert-ckpt");
    run();
  });
}

Checkpointer::~Checkpointer() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  sqlite3_wal_hook(writer_, nullptr, nullptr);
  sqlite3_close(db_);
}

void Checkpointer::set_limits(Limits limits) noexcept {
  passive_frames_.store(limits.passive_frames, std::memory_order_relaxed);
  restart_frames_.store(limits.restart_frames, std::memory_order_relaxed);
}

namespace {
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// The writer's thread, after each commit, locks released. Cheap unless a round is due.
int Checkpointer::on_commit(void* self, sqlite3* db, const char* /*schema*/, int wal_frames) {
  auto* c = static_cast<Checkpointer*>(self);
  c->last_commit_ns_.store(steady_ns(), std::memory_order_relaxed);
  if (!c->dirty_.load(std::memory_order_relaxed)) {
    {
      std::lock_guard lk(c->mu_);  // the thread checks dirty_ under mu_ before it sleeps
      c->dirty_.store(true, std::memory_order_relaxed);
    }
    c->cv_.notify_one();  // starts the idle timer; once per idle period
  }
  const int done = c->backfilled_.load(std::memory_order_relaxed);
  const int passive = c->passive_frames_.load(std::memory_order_relaxed);
  // The WAL restarted (frames < done) or enough new frames since the last round.
  const bool due = wal_frames >= passive && (wal_frames < done || wal_frames - done >= passive);
  // A background round that is late (its thread starved on a loaded machine) must not
  // let the WAL outgrow its bound, which a small disk's free space sets: a quarter past
  // the limit, the commit checkpoints inline, as SQLite's own auto-checkpoint would.
  const int restart = c->restart_frames_.load(std::memory_order_relaxed);
  const bool behind = wal_frames - done >= restart + restart / 4;
  const bool full_disk = c->inline_.load(std::memory_order_relaxed);
  if ((due && full_disk) || behind) {
    int wal = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
    if (rc == SQLITE_BUSY && full_disk) {
      // The background thread's round holds SQLite's checkpoint lock (it may have been
      // descheduled mid-round). Wait for it rather than commit on into a WAL that
      // cannot be reset; the disk has no room for that.
      { std::lock_guard round_done(c->round_mu_); }
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
    }
    ++c->rounds_;
    if (rc == SQLITE_OK && wal >= 0) {
      c->backfilled_.store(copied, std::memory_order_relaxed);
    } else if (rc != SQLITE_BUSY) {
      ++c->failures_;
      log().debug("mailbox {}: inline checkpoint did not finish ({})", c->path_, sqlite3_errmsg(db));
    }
    return SQLITE_OK;  // the commit itself succeeded either way
  }
  if (due) {
    {
      std::lock_guard lk(c->mu_);
      c->wanted_frames_ = wal_frames;
    }
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void Checkpointer::run() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_restart{};  // after a RESTART that readers held off
  bool failing = false;
  const auto idle = std::chrono::milliseconds(idle_ms_);
  Clock::time_point idle_retry{};  // after an idle round that could not finish
  std::unique_lock lk(mu_);
  for (;;) {
    auto wanted = [&] { return stop_ || wanted_frames_ > 0; };
    if (dirty_.load(std::memory_order_relaxed)) {
      const Clock::time_point last{std::chrono::nanoseconds(last_commit_ns_.load(std::memory_order_relaxed))};
      cv_.wait_until(lk, std::max(last + idle, idle_retry), wanted);
    } else {
      // Woken by a request, a stop, or the first commit since the WAL was emptied.
      cv_.wait(lk, [&] { return wanted() || dirty_.load(std::memory_order_relaxed); });
    }
    if (stop_) return;
    if (wanted_frames_ == 0) {
      const Clock::time_point last{std::chrono::nanoseconds(last_commit_ns_.load(std::memory_order_relaxed))};
      const auto now = Clock::now();
      if (!dirty_.load(std::memory_order_relaxed) || now < last + idle || now < idle_retry) continue;
      lk.unlock();
      if (!idle_round()) idle_retry = Clock::now() + idle;
      lk.lock();
      continue;
    }
    const int frames = wanted_frames_;
    wanted_frames_ = 0;
    lk.unlock();
    const bool restart = frames >= restart_frames_.load(std::memory_order_relaxed) && Clock::now() >= next_restart;
    int wal = 0, copied = 0, rc = SQLITE_OK;
    if (restart) {
      // First catch up without blocking anyone, so that what runs under the lock
      // copies and fsyncs only the frames committed meanwhile (the fsync of a large
      // round under the lock measured ~20 ms of stalled senders).
      {
        std::lock_guard round(round_mu_);
        (void)sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      }
      // Holding the writer's mutex: the writer is between transactions, so only
      // readers in other processes can make this wait (50 ms at most).
      std::lock_guard writer_idle(writer_mu_);
      rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, &wal, &copied);
    } else {
      std::lock_guard round(round_mu_);
      rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
    }
    ++rounds_;
    if (!restart && rc == SQLITE_BUSY) {
      // Transient: the writer was resetting the WAL header, or another checkpoint
      // ran. The next commit that finds enough new frames asks again.
      log().debug("mailbox {}: passive checkpoint skipped (busy)", path_);
    } else if (rc == SQLITE_OK && wal >= 0) {
      // After a RESTART the writer's next transaction writes the WAL from the start.
      backfilled_.store(restart ? 0 : copied, std::memory_order_relaxed);
      if (failing) log().info("mailbox {}: checkpoints complete again", path_);
      failing = false;
    } else {
      ++failures_;
      if (restart) next_restart = Clock::now() + std::chrono::seconds(1);
      const std::string why = rc == SQLITE_OK ? "the connection is not in WAL mode" : sqlite3_errmsg(db_);
      if (!failing) {
        log().warn("mailbox {}: {} checkpoint of a {}-frame WAL did not finish ({}); the WAL grows until one does",
                   path_, restart ? "restart" : "passive", frames, why);
      } else {
        log().debug("mailbox {}: checkpoint still not finishing ({})", path_, why);
      }
      failing = true;
    }
    lk.lock();
    // Requests made during a completed RESTART are answered by it: everything up to
    // the reset is checkpointed.
    if (restart && rc == SQLITE_OK) wanted_frames_ = 0;
  }
}

bool Checkpointer::idle_round() {
  // Cleared first: a commit from here on marks the WAL dirty again.
  dirty_.store(false, std::memory_order_relaxed);
  int wal = 0, copied = 0;
  int rc = SQLITE_OK;
  {
    std::lock_guard round(round_mu_);
    rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
  }
  ++rounds_;
  if (rc == SQLITE_OK && wal >= 0 && copied == wal) {
    // Everything is in the database: cutting the WAL to zero bytes waits only for the
    // readers of other processes (50 ms at most), never for our writer.
    std::lock_guard writer_idle(writer_mu_);
    rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &wal, &copied);
    if (rc == SQLITE_OK) backfilled_.store(0, std::memory_order_relaxed);
  } else if (rc == SQLITE_OK) {
    backfilled_.store(copied, std::memory_order_relaxed);
    rc = SQLITE_BUSY;  // a reader holds back part of the WAL: try again later
  }
  if (rc == SQLITE_OK) {
    log().debug("mailbox {}: idle checkpoint truncated the WAL", path_);
    if (after_truncate_) after_truncate_();
    return true;
  }
  dirty_.store(true, std::memory_order_relaxed);
  if (rc != SQLITE_BUSY) {
    ++failures_;
    log().debug("mailbox {}: idle checkpoint did not finish ({})", path_, sqlite3_errmsg(db_));
  }
  return false;
}

}  // namespace edgert::detail
