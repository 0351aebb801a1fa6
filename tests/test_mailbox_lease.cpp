// Outbox leases, batch marks, the commit listener and dead letters (issue 12;
// docs/mailbox.md, "Leases" and "Dead letters"). Every tally is kept independently of
// the mailbox's own counters, which are then checked against it.
#include <edgert/component_metrics.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/metrics.hpp>

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "skip.hpp"
#include "numbered.hpp"
#include "fake_clock.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::DeadLetter;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
using edgert::OutboxMessage;
using edgert::testing::numbered;
using edgert::testing::raw_count;
using edgert::testing::raw_exec;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using edgert::testing::Scratch;

using Clocks = edgert::testing::FakeClocks;

MailboxOptions options(const Scratch& s, Clocks& c) {
  MailboxOptions o;
  o.data_dir = s.dir.string();
  o.clock_ms = c.wall_fn();
  o.steady_ms = c.steady_fn();
  return o;
}

std::unique_ptr<Mailbox> open(MailboxOptions o) {
  auto m = Mailbox::open(std::move(o));
  REQUIRE(m.ok());
  return std::move(m).value();
}

Envelope env(int n) { return edgert::testing::numbered_envelope(n); }

std::vector<std::string> send_n(Mailbox& mb, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto r = mb.send(env(i));
    REQUIRE(r.ok());
    ids.push_back(r.value());
  }
  return ids;
}

std::set<std::string> ids_of(const std::vector<OutboxMessage>& v) {
  std::set<std::string> out;
  for (const auto& m : v) out.insert(m.envelope.message_id);
  return out;
}

std::set<std::string> pending_ids(Mailbox& mb) {
  auto p = mb.pending(1000);
  REQUIRE(p.ok());
  return ids_of(p.value());
}

std::set<std::string> lease_ids(Mailbox& mb, std::size_t limit, std::chrono::milliseconds lease_for) {
  auto l = mb.lease(limit, lease_for);
  REQUIRE(l.ok());
  return ids_of(l.value());
}

bool disjoint(const std::set<std::string>& a, const std::set<std::string>& b) {
  return std::none_of(a.begin(), a.end(), [&](const std::string& x) { return b.count(x) > 0; });
}

// The text `sql` answers (one row, one column), read on a raw connection: the stored bytes.
std::string raw_text(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const auto* p = static_cast<const char*>(sqlite3_column_blob(st, 0));
  std::string out(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

edgert::MailboxStats stats(Mailbox& mb) {
  auto s = mb.stats();
  REQUIRE(s.ok());
  return s.value();
}

}  // namespace

TEST_CASE("leased rows are invisible to pending() and lease() until marked, released or expired", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const auto all = send_n(*mb, 6);

  const auto a = lease_ids(*mb, 2, 60s);
  REQUIRE(a.size() == 2);
  const auto seen = pending_ids(*mb);
  CHECK(seen.size() == 4);
  CHECK(disjoint(a, seen));
  const auto b = lease_ids(*mb, 10, 60s);
  CHECK(b.size() == 4);
  CHECK(disjoint(a, b));
  CHECK(pending_ids(*mb).empty());
  CHECK(lease_ids(*mb, 10, 60s).empty());
  CHECK(stats(*mb).leased_now == 6);

  // release(): due again at once, no attempt counted; unknown ids are ignored.
  const std::string released = *a.begin(), delivered = *a.rbegin();
  mb->release({released, "msg:unknown"});
  CHECK(pending_ids(*mb) == std::set<std::string>{released});
  // mark_delivered(id) ends the lease with the row.
  REQUIRE(mb->mark_delivered(delivered).ok());
  // mark_failed(id) ends the lease; the row comes back once its back-off has passed.
  const std::string failed = *b.begin();
  auto next = mb->mark_failed(failed);
  REQUIRE(next.ok());
  CHECK(pending_ids(*mb) == std::set<std::string>{released});
  c.advance(next.value() - c.wall.load());
  CHECK(pending_ids(*mb) == std::set<std::string>{released, failed});

  const auto st = stats(*mb);
  CHECK(st.leased_now == 3);  // b less the failed one
  CHECK(st.counters.leased == 6);
  CHECK(st.counters.lease_expired == 0);
  CHECK(st.counters.delivered == 1);
  CHECK(st.counters.failed_attempts == 1);
  CHECK(st.outbox_rows == all.size() - 1);

  SECTION("a lease of zero or less is refused") {
    auto r = mb->lease(5, 0ms);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::invalid_argument);
    CHECK_THAT(r.status().message(), Contains("lease_for"));
    CHECK(pending_ids(*mb) == std::set<std::string>{released, failed});  // nothing leased
  }
  SECTION("after close() lease() answers closed") {
    REQUIRE(mb->close().ok());
    auto r = mb->lease(5, 60s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::closed);
    mb->release({released});  // never fails
  }
}

TEST_CASE("lease() hands out the stored bytes and the indexed columns without decoding the envelope", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const fs::path file = s.dir / "mailbox.db";
  std::map<std::string, Envelope> sent;  // the test's own record, by id
  for (int i = 0; i < 4; ++i) {
    Envelope e = env(i);
    e.recipient_node_id = "peer-" + std::to_string(i);
    e.payload_type = i % 2 ? "notification" : "detection";
    edgert::SendOptions so;
    so.priority = i;
    so.ttl = std::chrono::seconds(100 + i);
    auto r = mb->send(e, so);
    REQUIRE(r.ok());
    e.message_id = r.value();
    sent[r.value()] = e;
  }
  const auto ids = [&] {
    std::vector<std::string> v;
    for (const auto& [id, e] : sent) v.push_back(id);
    return v;
  }();
  // One row's JSON replaced by bytes no decoder accepts, its checksum cleared (a row
  // "not verified", as written before schema 5): pending() cannot decode it, a lease
  // hands it out as stored. Another row's JSON changed under its checksum: skipped by both.
  const std::string opaque = ids[1], damaged = ids[2];
  raw_exec(file, "UPDATE outbox SET envelope_json = 'not json {', row_sum = NULL WHERE message_id = '" + opaque + "'");
  raw_exec(file, "UPDATE outbox SET envelope_json = envelope_json || ' ' WHERE message_id = '" + damaged + "'");

  auto got = mb->lease(10, 60s);
  REQUIRE(got.ok());
  std::set<std::string> leased;
  for (const auto& m : got.value()) {
    const std::string& id = m.envelope.message_id;
    INFO(id);
    REQUIRE(sent.count(id) == 1);
    leased.insert(id);
    const Envelope& e = sent.at(id);
    const std::string where = " FROM outbox WHERE message_id = '" + id + "'";
    CHECK(m.envelope_json == raw_text(file, "SELECT envelope_json" + where));
    CHECK(m.envelope.recipient_node_id == e.recipient_node_id);
    CHECK(m.envelope.payload_type == e.payload_type);
    CHECK(m.priority == raw_count(file, "SELECT priority" + where));
    CHECK(m.attempts == 0);
    CHECK(m.expires_ms == raw_count(file, "SELECT expires_ms" + where));
    CHECK(m.next_attempt_ms == raw_count(file, "SELECT next_attempt_ms" + where));
    CHECK(m.created_ms == raw_count(file, "SELECT created_ms" + where));
    // Not decoded: the fields only the JSON holds are left empty.
    CHECK(m.envelope.payload.empty());
    CHECK(m.envelope.sender_node_id.empty());
    CHECK(m.envelope.timestamp_ms == 0);
  }
  CHECK(leased == std::set<std::string>{ids[0], opaque, ids[3]});
  for (const auto& m : got.value()) {
    if (m.envelope.message_id == opaque) CHECK(m.envelope_json == "not json {");
  }
  CHECK(stats(*mb).counters.unreadable == 1);  // the checksum failure only

  // pending() still decodes: released, the opaque row is reported unreadable there.
  mb->release({opaque});
  auto p = mb->pending(10);
  REQUIRE(p.ok());
  CHECK(p.value().empty());
  CHECK(stats(*mb).counters.unreadable == 2);
}

TEST_CASE("newest_first leases the most recently stored due rows; priority_first the highest priority", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const auto ids = send_n(*mb, 10);  // stored in this order, equal priority
  edgert::SendOptions urgent;
  urgent.priority = 5;
  auto high = mb->send(env(99), urgent);
  REQUIRE(high.ok());
  c.advance(1);
  auto newest = mb->lease(3, 60s, edgert::LeaseOrder::newest_first);
  REQUIRE(newest.ok());
  REQUIRE(newest.value().size() == 3);
  CHECK(newest.value()[0].envelope.message_id == high.value());
  CHECK(newest.value()[1].envelope.message_id == ids[9]);
  CHECK(newest.value()[2].envelope.message_id == ids[8]);
  auto first = mb->lease(2, 60s);  // the urgent one is leased: the oldest due come next
  REQUIRE(first.ok());
  REQUIRE(first.value().size() == 2);
  CHECK(first.value()[0].envelope.message_id == ids[0]);
  CHECK(first.value()[1].envelope.message_id == ids[1]);
  // Both orders skip what is leased: the next newest is ids[7].
  auto again = mb->lease(1, 60s, edgert::LeaseOrder::newest_first);
  REQUIRE(again.ok());
  CHECK(again.value().at(0).envelope.message_id == ids[7]);
}

TEST_CASE("a lease runs out on the monotonic clock only: wall-clock jumps of a year neither expire nor extend it",
          "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  send_n(*mb, 3);
  const auto leased = lease_ids(*mb, 10, 30s);
  REQUIRE(leased.size() == 3);

  constexpr std::int64_t kYear = std::int64_t{365} * 24 * 3600 * 1000;
  c.wall += kYear;  // forward a year: the monotonic clock did not move
  CHECK(pending_ids(*mb).empty());
  c.wall -= 2 * kYear;  // and back two
  CHECK(pending_ids(*mb).empty());
  c.wall += kYear;
  c.steady += 29'999;
  CHECK(pending_ids(*mb).empty());
  CHECK(stats(*mb).counters.lease_expired == 0);
  c.steady += 1;  // 30 s of monotonic time since the lease
  CHECK(pending_ids(*mb) == leased);
  const auto st = stats(*mb);
  CHECK(st.counters.lease_expired == 3);
  CHECK(st.leased_now == 0);
  // Re-leased after expiry, and marking them ends those leases (no second expiry).
  CHECK(lease_ids(*mb, 10, 30s) == leased);
  auto n = mb->mark_delivered(std::vector<std::string>(leased.begin(), leased.end()));
  REQUIRE(n.ok());
  CHECK(n.value() == 3);
  c.steady += 60'000;
  CHECK(stats(*mb).counters.lease_expired == 3);
}

TEST_CASE("two threads leasing concurrently never get the same row", "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  auto mb = open(o);
  constexpr int kRows = 1500;
  std::atomic<bool> produced{false};
  std::atomic<int> sent{0};
  std::thread producer([&] {
    std::vector<edgert::PendingSend> inflight;
    for (int i = 0; i < kRows; ++i) inflight.push_back(mb->send_async(env(i)));
    for (auto& p : inflight) {
      if (p.get().ok()) ++sent;
    }
    produced = true;
  });
  struct Tally {
    std::set<std::string> got;
    std::size_t delivered = 0;  // what mark_delivered() said it found
    std::size_t calls = 0;
    std::string error;  // the first failed call (REQUIRE may not run off the test's thread)
  };
  Tally t[2];
  auto consume = [&](Tally& mine) {
    for (;;) {
      const bool done = produced.load();
      auto l = mb->lease(40, 60s);
      if (!l.ok()) {
        mine.error = "lease: " + l.status().message();
        return;
      }
      if (l.value().empty()) {
        if (done) return;
        std::this_thread::yield();
        continue;
      }
      std::vector<std::string> ids;
      for (const auto& m : l.value()) {
        ids.push_back(m.envelope.message_id);
        mine.got.insert(m.envelope.message_id);
      }
      auto n = mb->mark_delivered(ids);
      if (!n.ok()) {
        mine.error = "mark_delivered: " + n.status().message();
        return;
      }
      mine.delivered += n.value();
      ++mine.calls;
    }
  };
  std::thread c0([&] { consume(t[0]); });
  std::thread c1([&] { consume(t[1]); });
  producer.join();
  c0.join();
  c1.join();

  REQUIRE(sent == kRows);
  CHECK(t[0].error == "");
  CHECK(t[1].error == "");
  std::set<std::string> both;
  std::set_intersection(t[0].got.begin(), t[0].got.end(), t[1].got.begin(), t[1].got.end(),
                        std::inserter(both, both.begin()));
  INFO("thread 0 got " << t[0].got.size() << " rows in " << t[0].calls << " leases, thread 1 " << t[1].got.size()
                       << " in " << t[1].calls);
  CHECK(both.empty());
  CHECK(t[0].got.size() + t[1].got.size() == static_cast<std::size_t>(kRows));
  CHECK(t[0].delivered + t[1].delivered == static_cast<std::size_t>(kRows));
  const auto st = stats(*mb);
  CHECK(st.outbox_rows == 0);
  CHECK(st.leased_now == 0);
  CHECK(st.counters.delivered == static_cast<std::uint64_t>(kRows));
  CHECK(st.counters.leased == static_cast<std::uint64_t>(kRows));
}

TEST_CASE("mark_delivered(vector) removes in one call and counts only the ids it found", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const auto ids = send_n(*mb, 4);
  REQUIRE(lease_ids(*mb, 2, 60s).size() == 2);
  auto n = mb->mark_delivered(std::vector<std::string>{ids[0], "msg:nope", ids[1], ids[0], ""});
  REQUIRE(n.ok());
  CHECK(n.value() == 2);
  auto none = mb->mark_delivered(std::vector<std::string>{});
  REQUIRE(none.ok());
  CHECK(none.value() == 0);
  const auto st = stats(*mb);
  CHECK(st.counters.delivered == 2);
  CHECK(st.outbox_rows == 2);
  CHECK(st.leased_now == 0);  // the two leased rows were ids[0] and ids[1]: their leases ended
  CHECK(raw_count(s.dir / "mailbox.db", "SELECT COUNT(*) FROM outbox") == 2);
  CHECK(pending_ids(*mb) == std::set<std::string>{ids[2], ids[3]});
  REQUIRE(mb->close().ok());
  auto closed = mb->mark_delivered(std::vector<std::string>{ids[2]});
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.status().code() == ErrorCode::closed);
}

// mark_delivered() takes a leased row's size for the running totals from its lease and
// deletes it by the rowid the lease kept; other ids go through the message_id index. The
// totals are checked against the rows themselves, read on a separate connection.
TEST_CASE("mark_delivered keeps the running totals equal to the rows, leased or not", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const fs::path file = s.dir / "mailbox.db";
  auto rows_match = [&] {
    const auto st = stats(*mb);
    CHECK(static_cast<std::int64_t>(st.outbox_rows) == raw_count(file, "SELECT COUNT(*) FROM outbox"));
    CHECK(static_cast<std::int64_t>(st.outbox_bytes) == raw_count(file, "SELECT COALESCE(SUM(size), 0) FROM outbox"));
  };
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {  // sizes differ: a size taken from the wrong row shows
    auto r = mb->send(edgert::testing::numbered_envelope(i, static_cast<std::size_t>(i) * 97));
    REQUIRE(r.ok());
    ids.push_back(r.value());
  }
  // A short-TTL row stored last (the highest rowid), leased, then expired and cleaned
  // up: its rowid is free again and the next row may take it.
  edgert::SendOptions brief;
  brief.ttl = std::chrono::seconds(1);
  auto last = mb->send(edgert::testing::numbered_envelope(100, 500), brief);
  REQUIRE(last.ok());
  REQUIRE(lease_ids(*mb, 100, 60s).size() == 9);  // all nine leased
  c.advance(2000);
  auto cleaned = mb->cleanup_expired();
  REQUIRE(cleaned.ok());
  CHECK(cleaned.value() == 1);
  auto reuse = mb->send(edgert::testing::numbered_envelope(101, 1300));
  REQUIRE(reuse.ok());
  rows_match();
  // Leased and not, unknown, repeated, and the expired row's stale lease (its rowid may
  // now name the new row: the message_id check must keep the new row).
  auto n = mb->mark_delivered(std::vector<std::string>{ids[0], ids[3], "msg:nope", ids[3], last.value(), ids[7]});
  REQUIRE(n.ok());
  CHECK(n.value() == 3);
  rows_match();
  CHECK(raw_count(file, "SELECT COUNT(*) FROM outbox WHERE message_id = '" + reuse.value() + "'") == 1);
  // A released row (no lease any more) goes through the message_id index.
  mb->release({ids[1], ids[2]});
  n = mb->mark_delivered(std::vector<std::string>{ids[1], reuse.value(), ids[2]});
  REQUIRE(n.ok());
  CHECK(n.value() == 3);
  rows_match();
  n = mb->mark_delivered(std::vector<std::string>{ids[4], ids[5], ids[6]});
  REQUIRE(n.ok());
  CHECK(n.value() == 3);
  rows_match();
  CHECK(stats(*mb).outbox_rows == 0);
  CHECK(stats(*mb).outbox_bytes == 0);
}

TEST_CASE("mark_failed(vector) reschedules with back-off in one call and ends the leases", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto o = options(s, c);
  o.backoff_base = 1000ms;
  o.backoff_cap = 3600s;
  auto mb = open(o);
  const auto ids = send_n(*mb, 3);
  REQUIRE(lease_ids(*mb, 3, 3600s).size() == 3);
  auto n = mb->mark_failed(std::vector<std::string>{ids[0], ids[1], "msg:nope"});
  REQUIRE(n.ok());
  CHECK(n.value() == 2);
  CHECK(pending_ids(*mb).empty());  // not due for 1 s; ids[2] still leased
  CHECK(stats(*mb).leased_now == 1);
  c.advance(999);
  CHECK(pending_ids(*mb).empty());
  c.advance(1);
  auto p = mb->pending(10);
  REQUIRE(p.ok());
  REQUIRE(p.value().size() == 2);
  for (const auto& m : p.value()) {
    CHECK(m.attempts == 1);
    CHECK(m.next_attempt_ms == c.wall.load());
  }
  CHECK(ids_of(p.value()) == std::set<std::string>{ids[0], ids[1]});
  // The second failure doubles the delay.
  REQUIRE(lease_ids(*mb, 2, 3600s).size() == 2);
  n = mb->mark_failed(std::vector<std::string>{ids[0]});
  REQUIRE(n.ok());
  CHECK(n.value() == 1);
  c.advance(1999);
  CHECK(pending_ids(*mb).empty());  // ids[1] leased again, ids[0] not due yet
  c.advance(1);
  CHECK(pending_ids(*mb) == std::set<std::string>{ids[0]});
  const auto st = stats(*mb);
  CHECK(st.counters.failed_attempts == 3);
  CHECK(st.leased_now == 2);  // ids[1], ids[2]
}

TEST_CASE("close and reopen (the crash case) offers every leased row again", "[mailbox]") {
  Scratch s;
  Clocks c;
  std::set<std::string> leased;
  {
    auto mb = open(options(s, c));
    send_n(*mb, 10);
    leased = lease_ids(*mb, 10, 3600s);
    REQUIRE(leased.size() == 10);
    CHECK(pending_ids(*mb).empty());
  }
  auto mb = open(options(s, c));
  CHECK(pending_ids(*mb) == leased);
  CHECK(lease_ids(*mb, 100, 3600s) == leased);
  CHECK(stats(*mb).counters.lease_expired == 0);
}

TEST_CASE("the commit listener fires once per commit that stored outbox rows, before send() returns",
          "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  auto mb = open(o);
  std::atomic<int> calls{0};
  mb->set_commit_listener([&] { ++calls; });

  constexpr int kSync = 20;
  for (int i = 0; i < kSync; ++i) {
    auto r = mb->send(env(i));
    REQUIRE(r.ok());
    CHECK(calls.load() == i + 1);  // already woken when send() returns
  }
  std::vector<edgert::PendingSend> inflight;
  for (int i = 0; i < 300; ++i) inflight.push_back(mb->send_async(env(100 + i)));
  for (auto& p : inflight) REQUIRE(p.get().ok());
  auto st = stats(*mb);
  CHECK(calls.load() == static_cast<int>(st.counters.commits));
  CHECK(st.counters.commits >= static_cast<std::uint64_t>(kSync + 1));

  // A commit that stored nothing (an idempotency hit) does not wake it, nor does the inbox.
  edgert::SendOptions so;
  so.idempotency_key = "k1";
  REQUIRE(mb->send(env(1), so).ok());
  const int before = calls.load();
  REQUIRE(mb->send(env(1), so).ok());
  CHECK(calls.load() == before);
  for (int i = 0; i < 5; ++i) {
    Envelope e = env(i);
    e.message_id = "in-" + std::to_string(i);
    REQUIRE(mb->store(e).ok());
  }
  CHECK(calls.load() == before);
  st = stats(*mb);
  CHECK(st.counters.commits == static_cast<std::uint64_t>(before) + 1);

  SECTION("an exception from it is caught and counted; the send succeeds") {
    mb->set_commit_listener([&] {
      ++calls;
      throw std::runtime_error("listener broke");
    });
    REQUIRE(mb->send(env(7)).ok());
    REQUIRE(mb->send(env(8)).ok());
    CHECK(calls.load() == before + 2);
    CHECK(stats(*mb).counters.notification_errors == 2);
  }
  SECTION("an empty function removes it") {
    mb->set_commit_listener({});
    REQUIRE(mb->send(env(9)).ok());
    CHECK(calls.load() == before);
  }
}

TEST_CASE("set_commit_listener waits out a listener call in progress", "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  auto mb = open(o);
  std::atomic<int> started{0}, finished{0};
  std::atomic<bool> release_it{false};
  mb->set_commit_listener([&] {
    ++started;
    while (!release_it.load()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    ++finished;
  });
  auto pending = mb->send_async(env(1));
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (started.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(started.load() == 1);
  std::atomic<int> replacement_calls{0};
  std::thread unblock([&] {
    std::this_thread::sleep_for(100ms);
    release_it = true;
  });
  mb->set_commit_listener([&] { ++replacement_calls; });
  // Returned only once the old call had finished: the old listener's state may go now.
  CHECK(finished.load() == 1);
  unblock.join();
  REQUIRE(pending.get().ok());
  REQUIRE(mb->send(env(2)).ok());
  CHECK(replacement_calls.load() == 1);
  CHECK(started.load() == 1);
}

TEST_CASE("dead letters are kept newest first, pruned beyond max_dead_letters, raw cut and binary-safe",
          "[mailbox]") {
  Scratch s;
  Clocks c;
  auto o = options(s, c);
  o.max_dead_letters = 3;
  o.max_dead_letter_raw_bytes = 8;
  auto mb = open(o);
  const std::string binary("\x00\xff\xfe{\"a\x00\x80zzzz", 13);
  for (int i = 0; i < 5; ++i) {
    DeadLetter d;
    d.message_id = "m" + std::to_string(i);
    d.sender_node_id = "peer";
    d.source = "edgert/fleet/in";
    d.reason = "malformed JSON at byte " + std::to_string(i);
    d.raw = binary;
    d.raw[7] = static_cast<char>('0' + i);
    d.received_ms = i == 4 ? 0 : 1000 + i;
    REQUIRE(mb->dead_letter(d).ok());
  }
  auto got = mb->dead_letters(10);
  REQUIRE(got.ok());
  REQUIRE(got.value().size() == 3);
  const auto& v = got.value();
  CHECK(v[0].message_id == "m4");
  CHECK(v[1].message_id == "m3");
  CHECK(v[2].message_id == "m2");
  CHECK(v[0].received_ms == c.wall.load());  // 0: stamped now
  CHECK(v[1].received_ms == 1003);
  CHECK(v[1].sender_node_id == "peer");
  CHECK(v[1].source == "edgert/fleet/in");
  CHECK(v[1].reason == "malformed JSON at byte 3");
  std::string want = binary.substr(0, 8);
  want[7] = '3';
  CHECK(v[1].raw.size() == 8);
  CHECK(v[1].raw == want);
  auto two = mb->dead_letters(2);
  REQUIRE(two.ok());
  CHECK(two.value().size() == 2);
  auto zero = mb->dead_letters(0);
  REQUIRE(zero.ok());
  CHECK(zero.value().empty());

  const auto st = stats(*mb);
  CHECK(st.dead_letter_rows == 3);
  CHECK(st.counters.dead_lettered == 5);
  CHECK(st.counters.dead_letters_pruned == 2);
  const fs::path db = s.dir / "mailbox.db";
  CHECK(raw_count(db, "SELECT COUNT(*) FROM dead_letter") == 3);
  CHECK(raw_count(db, "SELECT COUNT(*) FROM dead_letter WHERE typeof(raw) = 'blob' AND length(raw) = 8") == 3);
  auto offline = Mailbox::read_stats(s.dir.string());
  REQUIRE(offline.ok());
  CHECK(offline.value().dead_letter_rows == 3);

  SECTION("kept across a reopen") {
    mb.reset();
    mb = open(o);
    auto again = mb->dead_letters(10);
    REQUIRE(again.ok());
    REQUIRE(again.value().size() == 3);
    CHECK(again.value()[1].raw == want);
  }
  SECTION("after close() dead_letter() answers closed") {
    REQUIRE(mb->close().ok());
    const auto r = mb->dead_letter(DeadLetter{});
    CHECK(r.code() == ErrorCode::closed);
  }
}

TEST_CASE("max_dead_letters 0 keeps none but counts each", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto o = options(s, c);
  o.max_dead_letters = 0;
  auto mb = open(o);
  DeadLetter d;
  d.reason = "wrong recipient 'b'";
  d.raw = "{}";
  REQUIRE(mb->dead_letter(d).ok());
  REQUIRE(mb->dead_letter(d).ok());
  auto got = mb->dead_letters(10);
  REQUIRE(got.ok());
  CHECK(got.value().empty());
  const auto st = stats(*mb);
  CHECK(st.dead_letter_rows == 0);
  CHECK(st.counters.dead_lettered == 2);
  CHECK(st.counters.dead_letters_pruned == 2);
}

TEST_CASE("the lease and dead-letter figures are exported as metrics", "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  send_n(*mb, 5);
  REQUIRE(lease_ids(*mb, 3, 10s).size() == 3);
  c.steady += 10'000;
  REQUIRE(lease_ids(*mb, 2, 10s).size() == 2);  // the 3 expired (counted) before these 2 were leased
  DeadLetter d;
  d.reason = "r";
  REQUIRE(mb->dead_letter(d).ok());
  edgert::MetricsRegistry reg;
  auto r = edgert::register_mailbox_metrics(reg, "main", *mb);
  const auto snap = reg.snapshot();
  auto value = [&](const char* name) {
    const auto* m = snap.find(name, {{"mailbox", "main"}});
    REQUIRE(m != nullptr);
    return m->value;
  };
  CHECK(value("edgert_mailbox_leased_total") == 5);
  CHECK(value("edgert_mailbox_lease_expired_total") == 3);
  CHECK(value("edgert_mailbox_leased_now") == 2);
  CHECK(value("edgert_mailbox_dead_lettered_total") == 1);
  CHECK(value("edgert_mailbox_dead_letters_pruned_total") == 0);
  CHECK(value("edgert_mailbox_dead_letter_rows") == 1);
  CHECK(value("edgert_mailbox_outbox_rows") == 5);
  CHECK(value("edgert_mailbox_oldest_pending_age_seconds") == 0);  // the clock has not moved since the sends
}

TEST_CASE("a version 2 mailbox opens, migrates to the current version and keeps its messages", "[mailbox]") {
  Scratch s;
  Clocks c;
  const fs::path db = s.dir / "mailbox.db";
  std::string id;
  {
    auto mb = open(options(s, c));
    auto r = mb->send(env(1));
    REQUIRE(r.ok());
    id = r.value();
  }
  // What an edgert before dead letters left behind.
  raw_exec(db,
           "DROP TABLE dead_letter; DROP INDEX idempotency_expiry; DROP TABLE inbox;"
           "CREATE TABLE inbox (message_id TEXT PRIMARY KEY, sender_node_id TEXT NOT NULL, payload_type TEXT NOT NULL,"
           " envelope_json TEXT NOT NULL, size INTEGER NOT NULL, received_ms INTEGER NOT NULL,"
           " acknowledged INTEGER NOT NULL DEFAULT 0);"
           "CREATE INDEX inbox_unacked ON inbox (acknowledged, payload_type, received_ms);"
           "INSERT INTO inbox VALUES ('in:old', 'peer', 'mail', "
           "'{\"message_id\":\"in:old\",\"sender_node_id\":\"peer\",\"recipient_node_id\":\"n\","
           "\"timestamp\":1,\"payload_type\":\"mail\",\"payload\":{}}', 10, 1, 0);"
           "UPDATE totals SET inbox_rows = 1, inbox_bytes = 10;"
           "ALTER TABLE totals DROP COLUMN inbox_unacked; ALTER TABLE totals DROP COLUMN dead_letters;"
           "ALTER TABLE outbox DROP COLUMN row_sum;"
           "PRAGMA user_version = 2;");
  REQUIRE(raw_count(db, "PRAGMA user_version") == 2);
  auto old_stats = Mailbox::read_stats(s.dir.string());  // read-only, not migrated
  REQUIRE(old_stats.ok());
  CHECK(old_stats.value().dead_letter_rows == 0);
  CHECK(old_stats.value().outbox_rows == 1);

  auto mb = open(options(s, c));
  CHECK(raw_count(db, "PRAGMA user_version") == 5);
  CHECK(pending_ids(*mb) == std::set<std::string>{id});
  // Migration 4 -> 5 gave the old outbox row its checksum.
  CHECK(raw_count(db, "SELECT COUNT(*) FROM outbox WHERE row_sum IS NOT NULL") == 1);
  // The old inbox row kept, in the default scope, and counted as unacknowledged.
  auto in = mb->unacked();
  REQUIRE(in.ok());
  REQUIRE(in.value().size() == 1);
  CHECK(in.value()[0].envelope.message_id == "in:old");
  CHECK(in.value()[0].scope.empty());
  CHECK(mb->stats().value().inbox_unacked == 1);
  REQUIRE(mb->ack("in:old").ok());
  CHECK(mb->stats().value().inbox_unacked == 0);
  DeadLetter d;
  d.reason = "r";
  REQUIRE(mb->dead_letter(d).ok());
  auto got = mb->dead_letters();
  REQUIRE(got.ok());
  CHECK(got.value().size() == 1);
}

TEST_CASE("a full disk makes dead_letter() return io_error; the mailbox keeps working",
          "[mailbox][mailbox_fault][root][dead_letter_disk_full]") {
  Scratch s;
  fs::create_directories(s.dir);
  if (::mount("tmpfs", s.dir.c_str(), "tmpfs", 0, "size=2m") != 0) {
    EDGERT_SKIP("cannot mount a 2 MiB tmpfs here (needs root / CAP_SYS_ADMIN)");
  }
  struct Unmount {
    fs::path dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{s.dir};
  {
    MailboxOptions o;
    o.data_dir = s.dir.string();
    o.busy_timeout_ms = 200;
    o.max_dead_letters = 1'000'000;
    o.max_dead_letter_raw_bytes = 64 * 1024;
    auto mb = open(o);
    DeadLetter d;
    d.source = "edgert/fleet/in";
    d.reason = "malformed JSON at byte 1";
    d.raw = std::string(64 * 1024, '\x01');
    int stored = 0, io_errors = 0, other = 0;
    std::string first_error;
    // Our own tally of what dead_letter() said it stored. On a nearly full disk a
    // refusal can be followed by a success (a checkpoint frees WAL room), so the
    // check is the exact set, not "the first N".
    std::vector<std::string> said_stored;
    for (int i = 0; i < 200 && io_errors < 3; ++i) {
      d.message_id = numbered("m", i);
      const auto r = mb->dead_letter(d);
      if (r.ok()) {
        ++stored;
        said_stored.push_back(d.message_id);
      } else if (r.code() == ErrorCode::io_error) {
        if (first_error.empty()) first_error = r.message();
        ++io_errors;
      } else {
        ++other;
      }
    }
    INFO("stored " << stored << ", first error: " << first_error);
    CHECK(io_errors == 3);
    CHECK(other == 0);
    CHECK(stored > 0);
    CHECK_THAT(first_error, Contains((s.dir / "mailbox.db").string()));
    CHECK_THAT(first_error, Contains("dead letter"));
    auto st = mb->stats();
    REQUIRE(st.ok());
    CHECK(st.value().counters.dead_lettered == static_cast<std::uint64_t>(stored));
    CHECK(st.value().dead_letter_rows == static_cast<std::uint64_t>(stored));
    CHECK(mb->pending(10).ok());
    auto got = mb->dead_letters(1000);
    REQUIRE(got.ok());
    std::vector<std::string> kept;
    for (auto it = got.value().rbegin(); it != got.value().rend(); ++it) kept.push_back(it->message_id);
    CHECK(kept == said_stored);  // nothing refused was kept, nothing stored was lost
  }
}

// Lease passes (keyset pagination, mailbox_impl.hpp LeasePass): a lease continues its
// read where the pass left off. The test keeps its own books: which rows it holds,
// how often each row was handed out. A cursor that skipped a row (never handed out,
// or only after rows that should have come later) or a row handed out twice fails it.
TEST_CASE("lease passes hand out each due row once while rows are held, fresh rows arrive and rows come back",
          "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  std::vector<std::string> all = send_n(*mb, 600);
  std::map<std::string, int> times;  // own tally: leases per row
  std::set<std::string> held;        // leased by us, not yet delivered or released
  std::vector<std::string> held_order;
  std::set<std::string> delivered;
  edgert::SendOptions urgent;
  urgent.priority = 3;
  int next_env = 1000;
  auto take = [&](const std::vector<OutboxMessage>& v) {
    for (const auto& m : v) {
      const auto& id = m.envelope.message_id;
      INFO("row " << id);
      CHECK(held.count(id) == 0);       // never leased twice while held
      CHECK(delivered.count(id) == 0);  // nor after it was deleted
      held.insert(id);
      held_order.push_back(id);
      ++times[id];
    }
  };
  auto deliver_oldest = [&](std::size_t keep) {  // the window: PUBACKs come back oldest first
    std::vector<std::string> done;
    while (held.size() > keep) {
      const std::string id = held_order.front();
      held_order.erase(held_order.begin());
      if (held.erase(id) == 0) continue;
      done.push_back(id);
      delivered.insert(id);
    }
    if (done.empty()) return;
    auto r = mb->mark_delivered(done);
    REQUIRE(r.ok());
    CHECK(r.value() == done.size());
  };
  bool newest = false;
  for (int round = 0; round < 200; ++round) {
    if (round % 5 == 2) {
      // Fresh rows of the same priority: newest_first finds them at once.
      std::vector<std::string> fresh;
      for (int i = 0; i < 3; ++i) {
        auto r = mb->send(env(next_env++));
        REQUIRE(r.ok());
        fresh.push_back(r.value());
        all.push_back(r.value());
      }
      auto got = mb->lease(32, 60s, edgert::LeaseOrder::newest_first);
      REQUIRE(got.ok());
      REQUIRE(got.value().size() >= 3);
      CHECK(got.value()[0].envelope.message_id == fresh[2]);
      CHECK(got.value()[1].envelope.message_id == fresh[1]);
      CHECK(got.value()[2].envelope.message_id == fresh[0]);
      take(got.value());
    }
    if (round % 7 == 3) {
      // A row of a higher priority sorts before the priority pass's cursor: the next
      // priority_first lease starts over and hands it out first.
      auto r = mb->send(env(next_env++), urgent);
      REQUIRE(r.ok());
      all.push_back(r.value());
      auto got = mb->lease(16, 60s);
      REQUIRE(got.ok());
      REQUIRE_FALSE(got.value().empty());
      CHECK(got.value()[0].envelope.message_id == r.value());
      take(got.value());
    }
    auto got = mb->lease(20, 60s, newest ? edgert::LeaseOrder::newest_first : edgert::LeaseOrder::priority_first);
    newest = !newest;
    REQUIRE(got.ok());
    take(got.value());
    deliver_oldest(120);
    if (got.value().empty() && held.empty()) break;
  }
  deliver_oldest(0);
  // One pass over everything: every row handed out exactly once, every row delivered.
  CHECK(delivered.size() == all.size());
  for (const auto& id : all) {
    INFO("row " << id);
    CHECK(times[id] == 1);
  }
  CHECK(mb->stats().value().outbox_rows == 0);
}

TEST_CASE("rows released, failed or whose lease ran out come back although a lease pass went past them",
          "[mailbox]") {
  Scratch s;
  Clocks c;
  auto mb = open(options(s, c));
  const auto ids = send_n(*mb, 100);
  std::map<std::string, int> times;
  auto lease = [&](std::size_t n, edgert::LeaseOrder order = edgert::LeaseOrder::priority_first) {
    auto r = mb->lease(n, 60s, order);
    REQUIRE(r.ok());
    std::vector<std::string> out;
    for (const auto& m : r.value()) {
      ++times[m.envelope.message_id];
      out.push_back(m.envelope.message_id);
    }
    return out;
  };
  // The pass reads 0..29; a release of 5 and 6 must make them due before 30.
  auto first = lease(30);
  REQUIRE(first.size() == 30);
  CHECK(first.front() == ids[0]);
  mb->release({ids[5], ids[6]});
  auto next = lease(3);
  REQUIRE(next.size() == 3);
  CHECK(next[0] == ids[5]);
  CHECK(next[1] == ids[6]);
  CHECK(next[2] == ids[30]);
  // The newest pass is past 99..80; 90 released comes back before 79.
  auto top = lease(20, edgert::LeaseOrder::newest_first);
  REQUIRE(top.size() == 20);
  CHECK(top.front() == ids[99]);
  mb->release({ids[90]});
  auto top2 = lease(2, edgert::LeaseOrder::newest_first);
  REQUIRE(top2.size() == 2);
  CHECK(top2[0] == ids[90]);
  CHECK(top2[1] == ids[79]);
  // A failure reschedules with back-off; once it is due it is found again, after the
  // rows due before it (31..78: all others are held).
  auto f = mb->mark_failed(ids[1]);
  REQUIRE(f.ok());
  c.advance(f.value() - c.wall.load() + 1);  // its retry time came
  auto again = lease(100);
  REQUIRE(again.size() == 49);
  CHECK(again.front() == ids[31]);
  CHECK(again.back() == ids[1]);
  // Leases that run out: their rows are due again from the top of the order.
  c.advance(61'000);
  auto all = lease(200);
  CHECK(all.size() == 100);
  CHECK(all.front() == ids[0]);
  // A higher-priority row whose retry time comes while the pass is in a lower priority
  // waits one pass age (LeasePass, kLeasePassMs = 1 s of steady time) at the most.
  edgert::SendOptions urgent;
  urgent.priority = 2;
  mb->release(all);
  auto u = mb->send(env(500), urgent);
  REQUIRE(u.ok());
  REQUIRE(lease(1) == std::vector<std::string>{u.value()});
  auto uf = mb->mark_failed(u.value());
  REQUIRE(uf.ok());
  REQUIRE(lease(10).size() == 10);  // a new pass, into priority 0
  c.advance(uf.value() - c.wall.load() + 1);
  auto urgent_again = lease(1);
  REQUIRE(urgent_again.size() == 1);
  CHECK(urgent_again[0] == u.value());
}
