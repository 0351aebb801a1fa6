// The mailbox on a real SQLite file in a scratch directory.
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "fake_clock.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <unistd.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
namespace fs = std::filesystem;

namespace {

using edgert::testing::Scratch;

using edgert::testing::FakeClock;

Envelope env(const std::string& type = "detection", const std::string& payload = R"({"n":1})") {
  return edgert::testing::result_envelope(payload, "", "node-a", type);
}

std::unique_ptr<Mailbox> open(MailboxOptions o) {
  auto m = Mailbox::open(std::move(o));
  REQUIRE(m.ok());
  return std::move(m).value();
}

MailboxOptions options(const Scratch& s, FakeClock& clock) {
  MailboxOptions o;
  o.data_dir = s.dir.string();
  o.clock_ms = clock.fn();
  return o;
}

// A deliverer racing the senders: marks everything pending delivered until the
// senders are done and a pending() that started after that finds nothing.
std::set<std::string> deliver_all(Mailbox& mb, const std::atomic<bool>& senders_done, std::atomic<int>& failures) {
  std::set<std::string> delivered;
  for (;;) {
    const bool last_round = senders_done;  // read before pending(): nothing is left behind
    auto p = mb.pending(100);
    if (!p.ok()) {
      failures++;
      return delivered;
    }
    for (auto& m : p.value()) {
      if (!mb.mark_delivered(m.envelope.message_id).ok()) failures++;
      delivered.insert(m.envelope.message_id);
    }
    if (p.value().empty() && last_round) return delivered;
  }
}

}  // namespace


TEST_CASE("send, pending, deliver: the basic outbox cycle", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  auto id = mb->send(env());
  REQUIRE(id.ok());
  CHECK(id.value().rfind("msg:", 0) == 0);
  auto p = mb->pending(10);
  REQUIRE(p.ok());
  REQUIRE(p.value().size() == 1);
  const auto& m = p.value()[0];
  CHECK(m.envelope.message_id == id.value());
  CHECK(m.envelope.payload == R"({"n":1})");
  CHECK(m.envelope.timestamp_ms == clock.ms);
  CHECK(m.expires_ms == clock.ms + 24 * 3600 * 1000);
  CHECK_THAT(m.envelope_json, Contains(R"("payload_type":"detection")"));
  REQUIRE(mb->mark_delivered(id.value()).ok());
  CHECK(mb->pending(10).value().empty());
  CHECK(mb->mark_delivered(id.value()).code() == ErrorCode::not_found);
  auto st = mb->stats().value();
  CHECK(st.counters.sent == 1);
  CHECK(st.counters.delivered == 1);
  CHECK(st.outbox_rows == 0);
}

TEST_CASE("the backoff schedule is min(base * 2^attempts, cap)", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  const auto id = mb->send(env()).value();
  const std::int64_t expected[] = {5000, 10000, 20000, 40000, 80000, 160000, 300000, 300000};
  for (std::int64_t delay : expected) {
    auto next = mb->mark_failed(id);
    REQUIRE(next.ok());
    CHECK(next.value() == clock.ms + delay);
    CHECK(mb->pending(10).value().empty());  // not due yet
    clock.ms = next.value();
    auto due = mb->pending(10).value();
    REQUIRE(due.size() == 1);
    CHECK(due[0].attempts > 0);
  }
  CHECK(mb->stats().value().counters.failed_attempts == 8);
  CHECK(mb->mark_failed("msg:nope").status().code() == ErrorCode::not_found);
}

TEST_CASE("TTL expiry removes and counts undelivered messages", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  edgert::SendOptions shortlived;
  shortlived.ttl = std::chrono::seconds(60);
  REQUIRE(mb->send(env(), shortlived).ok());
  REQUIRE(mb->send(env()).ok());
  clock.ms += 61'000;
  CHECK(mb->pending(10).value().size() == 1);  // the expired one is never handed out
  CHECK(mb->cleanup_expired().value() == 1);
  CHECK(mb->cleanup_expired().value() == 0);
  CHECK(mb->stats().value().counters.expired == 1);
  CHECK(mb->stats().value().outbox_rows == 1);
}

TEST_CASE("priority orders delivery", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  std::vector<std::string> ids;
  for (int prio : {0, 5, 1}) {
    edgert::SendOptions o;
    o.priority = prio;
    ids.push_back(mb->send(env(), o).value());
  }
  auto p = mb->pending(10).value();
  REQUIRE(p.size() == 3);
  CHECK(p[0].envelope.message_id == ids[1]);
  CHECK(p[1].envelope.message_id == ids[2]);
  CHECK(p[2].envelope.message_id == ids[0]);
  CHECK(mb->pending(2).value().size() == 2);
}

TEST_CASE("idempotency: the same key yields the first message's id", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  edgert::SendOptions o;
  o.idempotency_key = "job-42";
  const auto first = mb->send(env(), o).value();
  const auto again = mb->send(env("detection", R"({"n":2})"), o).value();
  CHECK(again == first);
  CHECK(mb->stats().value().outbox_rows == 1);
  REQUIRE(mb->mark_delivered(first).ok());
  CHECK(mb->send(env(), o).value() == first);  // still remembered after delivery, until the TTL
  CHECK(mb->stats().value().counters.idempotent_hits == 2);
}

TEST_CASE("inbox: replay protection, unacked filter, ack", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  auto a = env("command", R"({"do":"reboot"})");
  a.message_id = "msg:aaa";
  auto b = env("telemetry", R"({"t":1})");
  b.message_id = "msg:bbb";
  CHECK(mb->store(a).value() == edgert::StoreResult::stored);
  CHECK(mb->store(a).value() == edgert::StoreResult::duplicate);
  CHECK(mb->store(b).value() == edgert::StoreResult::stored);
  CHECK(mb->stats().value().counters.duplicates == 1);
  CHECK(mb->unacked().value().size() == 2);
  auto cmds = mb->unacked("command").value();
  REQUIRE(cmds.size() == 1);
  CHECK(cmds[0].envelope.payload == R"({"do":"reboot"})");
  REQUIRE(mb->ack("msg:aaa").ok());
  CHECK(mb->unacked("command").value().empty());
  CHECK(mb->ack("msg:zzz").code() == ErrorCode::not_found);
  Envelope no_id = env();
  CHECK(mb->store(no_id).status().code() == ErrorCode::invalid_argument);
}

TEST_CASE("bad input is refused whole, with the reason", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_payload_bytes = 64;
  auto mb = open(o);
  auto big = mb->send(env("detection", "\"" + std::string(100, 'x') + "\""));
  REQUIRE_FALSE(big.ok());
  CHECK_THAT(big.status().message(), Contains("over the 64-byte limit"));
  auto notjson = mb->send(env("detection", "{oops"));
  CHECK_THAT(notjson.status().message(), Contains("not valid UTF-8 JSON"));
  auto badutf = mb->send(env("detection", "\"\xff\xfe\""));
  CHECK(badutf.status().code() == ErrorCode::invalid_argument);
  auto badtype = mb->send(env("det\xff", "{}"));
  CHECK(badtype.status().code() == ErrorCode::invalid_argument);
  CHECK(mb->send(env("", "{}")).status().code() == ErrorCode::invalid_argument);
  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == 0);  // nothing half-stored
  CHECK(st.counters.rejected == 5);
}

TEST_CASE("quota reject_new refuses and counts", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_messages = 3;
  auto mb = open(o);
  for (int i = 0; i < 3; ++i) REQUIRE(mb->send(env()).ok());
  auto refused = mb->send(env());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::quota_exceeded);
  CHECK_THAT(refused.status().message(), Contains("quota"));
  CHECK(mb->stats().value().counters.rejected == 1);
  CHECK(mb->stats().value().outbox_rows == 3);
}

TEST_CASE("quota evict_oldest evicts lowest priority first, counted and notified", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_messages = 3;
  o.quota_policy = edgert::QuotaPolicy::evict_oldest;
  std::vector<std::string> notes;
  o.on_notification = [&](const std::string& n) { notes.push_back(n); };
  auto mb = open(o);
  std::vector<std::string> ids;
  for (int prio : {5, 0, 0}) {
    edgert::SendOptions so;
    so.priority = prio;
    ids.push_back(mb->send(env(), so).value());
    clock.ms += 1;
  }
  const auto newest = mb->send(env()).value();
  auto left = mb->pending(10).value();
  std::set<std::string> kept;
  for (auto& m : left) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{ids[0], ids[2], newest});  // ids[1]: lowest priority, oldest
  CHECK(mb->stats().value().counters.evicted == 1);
  REQUIRE(notes.size() == 1);
  CHECK_THAT(notes[0], Contains(ids[1]));
}

// Another connection holds the write lock longer than busy_timeout: the batch's
// transaction fails and rolls back.
struct WriteLockHolder {
  sqlite3* db = nullptr;
  explicit WriteLockHolder(const fs::path& file) {
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  ~WriteLockHolder() {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
};

// mark_delivered's transaction statements are prepared once and reused: one that failed
// (the write lock held elsewhere past busy_timeout) must not stay active, or SQLite
// refuses every later COMMIT on the connection ("SQL statements in progress").
TEST_CASE("a mark_delivered that found the lock taken does not block later commits", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.busy_timeout_ms = 50;
  auto mb = open(o);
  const auto id = mb->send(env()).value();
  REQUIRE(mb->lease(10, std::chrono::seconds(60)).value().size() == 1);
  {
    WriteLockHolder lock(s.dir / "mailbox.db");
    auto r = mb->mark_delivered(std::vector<std::string>{id});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::io_error);
  }
  // The lock is gone: a send commits, and so does the repeated delete.
  auto sent = mb->send(env());
  INFO(sent.status().message());
  CHECK(sent.ok());
  auto again = mb->mark_delivered(std::vector<std::string>{id});
  INFO((again.ok() ? std::string() : again.status().message()));
  REQUIRE(again.ok());
  CHECK(again.value() == 1);
  CHECK(mb->stats().value().outbox_rows == 1);
}

TEST_CASE("a failed commit: every sender gets the error, counted; nothing reported as evicted", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.busy_timeout_ms = 50;
  o.max_messages = 2;
  o.quota_policy = edgert::QuotaPolicy::evict_oldest;
  std::vector<std::string> notes;
  o.on_notification = [&](const std::string& n) { notes.push_back(n); };
  auto mb = open(o);
  const auto first = mb->send(env()).value();
  const auto second = mb->send(env()).value();
  {
    WriteLockHolder lock(s.dir / "mailbox.db");
    auto r = mb->send(env());  // would evict `first`, but the transaction cannot commit
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::io_error);
    CHECK_THAT(r.status().message(), Contains("nothing of this batch was stored"));
  }
  auto st = mb->stats().value();
  CHECK(st.counters.write_errors == 1);
  CHECK(st.counters.evicted == 0);
  CHECK(notes.empty());
  CHECK(st.outbox_rows == 2);
  // The lock is gone: the same send now evicts, and says so.
  auto third_r = mb->send(env());
  INFO(third_r.status().message());
  REQUIRE(third_r.ok());
  const auto third = third_r.value();
  std::set<std::string> kept;
  for (auto& m : mb->pending(10).value()) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{second, third});
  CHECK(mb->stats().value().counters.evicted == 1);
  REQUIRE(notes.size() == 1);
  CHECK_THAT(notes[0], Contains(first));
}

// `threads` senders race a deliverer; each sender sends `per_thread` messages through
// `send_some`, passing every outcome to `record`. Nothing may be lost or duplicated.
using Record = std::function<void(edgert::Result<std::string>)>;
void race_with_deliverer(Mailbox& mb, int threads, int per_thread,
                         const std::function<void(int n, const Record& record)>& send_some) {
  std::mutex mu;
  std::set<std::string> sent, delivered;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::thread deliverer([&] { delivered = deliver_all(mb, done, failures); });
  const Record record = [&](edgert::Result<std::string> id) {
    if (!id.ok()) {
      failures++;
      return;
    }
    std::lock_guard lk(mu);
    sent.insert(id.value());
  };
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t) senders.emplace_back([&] { send_some(per_thread, record); });
  for (auto& t : senders) t.join();
  done = true;
  deliverer.join();
  CHECK(failures == 0);
  CHECK(sent.size() == std::size_t(threads * per_thread));
  CHECK(delivered == sent);
  const auto st = mb.stats().value();
  CHECK(st.outbox_rows == 0);
  CHECK(st.counters.sent == std::uint64_t(threads * per_thread));
}

TEST_CASE("4 threads sending while another delivers lose nothing", "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  auto mb = open(o);
  race_with_deliverer(*mb, 4, 300, [&](int n, const Record& record) {
    for (int i = 0; i < n; ++i) record(mb->send(env()));
  });
}

TEST_CASE("messages survive closing and reopening", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  std::string id;
  {
    auto mb = open(options(s, clock));
    id = mb->send(env()).value();
  }
  auto mb = open(options(s, clock));
  auto p = mb->pending(10).value();
  REQUIRE(p.size() == 1);
  CHECK(p[0].envelope.message_id == id);
  CHECK(Mailbox::check(s.dir.string()).ok());
  const auto copy = (s.dir / "copy.db").string();
  REQUIRE(Mailbox::backup(s.dir.string(), copy).ok());
  CHECK(fs::file_size(copy) > 0);
}

TEST_CASE("a corrupt file is quarantined and a fresh mailbox works", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  {
    auto mb = open(options(s, clock));
    for (int i = 0; i < 50; ++i) REQUIRE(mb->send(env()).ok());
  }
  const auto db = s.dir / "mailbox.db";
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    const std::string garbage(8192, '\x5a');
    f.seekp(0);
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  CHECK_FALSE(Mailbox::check(s.dir.string()).ok());
  auto mb = open(options(s, clock));
  int quarantined = 0;
  for (auto& e : fs::directory_iterator(s.dir)) {
    if (e.path().filename().string().rfind("mailbox.db.corrupt-", 0) == 0) ++quarantined;
  }
  CHECK(quarantined >= 1);
  CHECK(mb->pending(10).value().empty());
  REQUIRE(mb->send(env()).ok());
  CHECK(mb->pending(10).value().size() == 1);
  CHECK(Mailbox::check(s.dir.string()).ok());
}

TEST_CASE("send_async: every message committed, in shared transactions", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  std::vector<std::string> ids;
  {
    auto mb = open(options(s, clock));
    std::vector<edgert::PendingSend> inflight;
    for (int i = 0; i < 500; ++i) inflight.push_back(mb->send_async(env("detection", R"({"i":)" + std::to_string(i) + "}")));
    for (auto& p : inflight) {
      auto id = p.get();
      REQUIRE(id.ok());
      CHECK_FALSE(p.valid());
      ids.push_back(id.value());
    }
    const auto st = mb->stats().value();
    CHECK(st.counters.sent == 500);
    CHECK(st.counters.commits < 500);  // grouped: one producer had many in flight
    CHECK(st.outbox_rows == 500);
  }
  // Durable: all of them are there after a reopen, each once.
  auto mb = open(options(s, clock));
  std::set<std::string> stored;
  const auto pending = mb->pending(1000).value();
  for (auto& m : pending) stored.insert(m.envelope.message_id);
  CHECK(stored == std::set<std::string>(ids.begin(), ids.end()));
}

TEST_CASE("send_async: refusals are ready at once; get() is once", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  auto bad = mb->send_async(env("detection", "{not json"));
  CHECK(bad.ready());
  auto r = bad.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(r.status().message(), Contains("not valid UTF-8 JSON"));
  auto again = bad.get();
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == ErrorCode::invalid_argument);

  auto good = mb->send_async(env());
  edgert::PendingSend moved = std::move(good);
  CHECK_FALSE(good.valid());  // NOLINT(bugprone-use-after-move): the documented moved-from state
  REQUIRE(moved.get().ok());
  CHECK(mb->stats().value().counters.rejected == 1);
}

TEST_CASE("send_async: closing the mailbox commits what is queued; results outlive it", "[mailbox]") {
  Scratch s;
  FakeClock clock;
  std::vector<edgert::PendingSend> inflight;
  {
    auto o = options(s, clock);
    o.max_queued = 8;  // back-pressure: the producer waits, nothing is dropped
    auto mb = open(o);
    for (int i = 0; i < 300; ++i) inflight.push_back(mb->send_async(env()));
  }  // destroyed with messages possibly still queued
  std::set<std::string> ids;
  for (auto& p : inflight) {
    CHECK(p.ready());
    auto id = p.get();
    REQUIRE(id.ok());
    ids.insert(id.value());
  }
  CHECK(ids.size() == 300);
  auto mb = open(options(s, clock));
  CHECK(mb->stats().value().outbox_rows == 300);
}

TEST_CASE("send_async from 4 threads while another delivers loses nothing", "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  o.max_queued = 64;  // with 4 x 32 in flight, senders also wait for room
  auto mb = open(o);
  race_with_deliverer(*mb, 4, 400, [&](int n, const Record& record) {
    std::deque<edgert::PendingSend> window;
    for (int i = 0; i < n; ++i) {
      if (window.size() == 32) {
        record(window.front().get());
        window.pop_front();
      }
      window.push_back(mb->send_async(env()));
    }
    for (auto& p : window) record(p.get());
  });
}

TEST_CASE("checkpoints run in the background and keep the WAL bounded under load", "[mailbox][concurrency]") {
  Scratch s;
  MailboxOptions o;
  o.data_dir = s.dir.string();
  o.wal_checkpoint_bytes = 64 << 10;
  o.wal_limit_bytes = 256 << 10;
  auto mb = open(o);
  const auto wal = s.dir / "mailbox.db-wal";
  std::atomic<std::uintmax_t> largest{0};
  std::atomic<bool> done{false};
  std::thread watcher([&] {  // samples the WAL size while the senders run
    while (!done) {
      std::error_code ec;
      const auto size = fs::file_size(wal, ec);
      if (!ec && size > largest) largest = size;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::vector<std::thread> senders;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&] {
      for (int i = 0; i < 1500; ++i) {
        if (!mb->send(env("detection", R"({"pad":")" + std::string(200, 'p') + "\"}")).ok()) failures++;
      }
    });
  }
  for (auto& t : senders) t.join();
  done = true;
  watcher.join();
  CHECK(failures == 0);
  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == 6000);
  CHECK(st.counters.checkpoints > 0);
  CHECK(st.counters.checkpoint_failures == 0);
  // Without checkpoints the WAL holds every page written: ~50 MiB here (measured).
  // With them it is reset whenever it passes the limit; it overshoots by what the
  // senders write during one round (a round fsyncs), which under TSan on a loaded
  // machine reached 17 MiB (2 of 30 runs past the earlier 12 MiB bound). Half of the
  // unbounded size still tells the two apart.
  INFO("largest WAL seen: " << largest.load() << " bytes");
  CHECK(largest.load() < std::uintmax_t(25) << 20);
  CHECK(Mailbox::check(s.dir.string()).ok());
}
