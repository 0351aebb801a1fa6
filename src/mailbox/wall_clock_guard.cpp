// The wall-clock guard: checked_now(), rebase(), persist_wall() and the check at open (docs/mailbox.md, "Clock jumps and TTLs").
#include "mailbox/mailbox_impl.hpp"

#include "mailbox/row_check.hpp"

#include <ctime>

namespace edgert {
namespace {

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

}  // namespace

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
  restart_lease_passes();  // every due time moved: the cursors' keys mean nothing now
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

}  // namespace edgert
