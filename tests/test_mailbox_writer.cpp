// The mailbox's writer under faults (issue 9, items 4 and 11): a message that cannot
// be stored (a reused message_id, a row the database refuses) gets its own answer and
// never fails the rest of its group commit; close() is bounded while another process
// holds the write lock, and answers every queued message.
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
using edgert::PendingSend;
namespace fs = std::filesystem;
using edgert::testing::raw_exec;
using edgert::testing::raw_count;

namespace {

using edgert::testing::Scratch;

Envelope env(const std::string& payload = R"({"n":1})", const std::string& id = "") {
  return edgert::testing::result_envelope(payload, id);
}

std::unique_ptr<Mailbox> open(MailboxOptions o) {
  auto m = Mailbox::open(std::move(o));
  INFO((m.ok() ? std::string() : m.status().message()));
  REQUIRE(m.ok());
  return std::move(m).value();
}

MailboxOptions options(const Scratch& s) {
  MailboxOptions o;
  o.data_dir = s.dir.string();
  return o;
}

// Another connection (standing in for another process) holds the write lock.
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
  WriteLockHolder(const WriteLockHolder&) = delete;
  WriteLockHolder& operator=(const WriteLockHolder&) = delete;
};

// Threads of this process whose name is `name` (set by the mailbox for its writer and
// checkpointer threads).
int threads_named(const std::string& name) {
  int n = 0;
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream in(t.path() / "comm");
    std::string comm;
    std::getline(in, comm);
    if (comm == name) ++n;
  }
  return n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// Issue 9 item 4, the reported scenario: 4 threads x 5,000 send_async and one thread
// re-sending one message_id 200 times, all in the same group commits. Even resends
// carry the stored content (idempotent: answered with the id), odd ones different
// content (refused as a duplicate). Each thread keeps its own tallies.
TEST_CASE("a reused message_id gets its own answer; its group commits unaffected", "[mailbox][concurrency]") {
  Scratch s;
  auto mb = open(options(s));
  constexpr int kThreads = 4, kPerThread = 5000, kResends = 200;
  const std::string dup_id = "msg:caller-chosen-0001";
  Envelope original = env(R"({"v":"original"})", dup_id);
  original.timestamp_ms = 1'700'000'000'000;

  std::atomic<bool> go{false};
  std::vector<int> ok(kThreads, 0), failed(kThreads, 0);
  std::vector<std::string> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      std::deque<PendingSend> window;
      auto settle = [&] {
        auto r = window.front().get();
        window.pop_front();
        if (r.ok()) {
          ++ok[static_cast<std::size_t>(t)];
        } else {
          if (failed[static_cast<std::size_t>(t)]++ == 0) first_error[static_cast<std::size_t>(t)] = r.status().message();
        }
      };
      for (int i = 0; i < kPerThread; ++i) {
        window.push_back(mb->send_async(env(R"({"t":)" + std::to_string(t) + R"(,"i":)" + std::to_string(i) + "}")));
        if (window.size() >= 64) settle();
      }
      while (!window.empty()) settle();
    });
  }
  int same_ok = 0, conflict_refused = 0, other = 0;
  bool stored_first = false;
  std::string conflict_message;
  threads.emplace_back([&] {
    while (!go) std::this_thread::yield();
    auto first = mb->send(original);  // stored once, first
    stored_first = first.ok() && first.value() == dup_id;
    std::vector<std::pair<bool, PendingSend>> inflight;
    for (int i = 1; i < kResends; ++i) {
      const bool same = i % 2 == 0;
      Envelope e = original;
      if (!same) e.payload = R"({"v":"changed )" + std::to_string(i) + R"("})";
      inflight.emplace_back(same, mb->send_async(e));
      if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    for (auto& [same, p] : inflight) {
      auto r = p.get();
      if (same && r.ok() && r.value() == dup_id) {
        ++same_ok;
      } else if (!same && !r.ok() && r.status().code() == ErrorCode::invalid_argument) {
        ++conflict_refused;
        conflict_message = r.status().message();
      } else {
        ++other;
      }
    }
  });
  go = true;
  for (auto& t : threads) t.join();

  int innocent_ok = 0, innocent_failed = 0;
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t << " first error: " << first_error[static_cast<std::size_t>(t)]);
    CHECK(failed[static_cast<std::size_t>(t)] == 0);
    innocent_ok += ok[static_cast<std::size_t>(t)];
    innocent_failed += failed[static_cast<std::size_t>(t)];
  }
  CHECK(stored_first);
  CHECK(innocent_failed == 0);
  CHECK(innocent_ok == kThreads * kPerThread);
  CHECK(same_ok == kResends / 2 - 1);       // 99 identical resends answered with the id
  CHECK(conflict_refused == kResends / 2);  // 100 conflicting ones refused
  CHECK(other == 0);
  CHECK_THAT(conflict_message, Contains(dup_id) && Contains("already in the outbox"));

  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == std::uint64_t(kThreads * kPerThread + 1));
  CHECK(st.counters.sent == std::uint64_t(kThreads * kPerThread + 1));
  CHECK(st.counters.idempotent_hits == std::uint64_t(kResends / 2 - 1));
  CHECK(st.counters.duplicates == std::uint64_t(kResends / 2));
  CHECK(st.counters.write_errors == 0);
  REQUIRE(mb->close().ok());
  const fs::path file = s.dir / "mailbox.db";
  CHECK(raw_count(file, "SELECT COUNT(*) FROM outbox") == kThreads * kPerThread + 1);
  CHECK(raw_count(file, "SELECT COUNT(*) FROM outbox WHERE message_id = 'msg:caller-chosen-0001' AND "
                        "envelope_json LIKE '%\"original\"%'") == 1);
}

TEST_CASE("an identical resend without a timestamp is idempotent; a conflicting one names the id", "[mailbox]") {
  Scratch s;
  auto mb = open(options(s));
  const auto first = mb->send(env(R"({"a":1})", "order-17"));
  REQUIRE(first.ok());
  // timestamp_ms 0 both times: the mailbox stamped the first; the resend still matches.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto again = mb->send(env(R"({"a":1})", "order-17"));
  INFO((again.ok() ? std::string() : again.status().message()));
  REQUIRE(again.ok());
  CHECK(again.value() == "order-17");
  const auto clash = mb->send(env(R"({"a":2})", "order-17"));
  REQUIRE_FALSE(clash.ok());
  CHECK(clash.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(clash.status().message(), Contains("order-17") && Contains("different content"));
  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == 1);
  CHECK(st.counters.sent == 1);
  CHECK(st.counters.idempotent_hits == 1);
  CHECK(st.counters.duplicates == 1);
}

// Any row the database refuses (here a trigger stands in for a constraint an older or
// newer schema might add) fails only that row's send.
TEST_CASE("a row the database refuses fails only its own send", "[mailbox][concurrency]") {
  Scratch s;
  { auto mb = open(options(s)); }
  raw_exec(s.dir / "mailbox.db",
           "CREATE TRIGGER refuse_poison BEFORE INSERT ON outbox WHEN NEW.payload_type = 'poison' "
           "BEGIN SELECT RAISE(ABORT, 'poison refused by trigger'); END;");
  auto mb = open(options(s));
  std::vector<std::pair<bool, PendingSend>> inflight;
  for (int i = 0; i < 2000; ++i) {
    Envelope e = env(R"({"i":)" + std::to_string(i) + "}");
    const bool poison = i % 50 == 7;
    if (poison) e.payload_type = "poison";
    inflight.emplace_back(poison, mb->send_async(e));
  }
  int good_ok = 0, good_failed = 0, poison_failed = 0, poison_ok = 0;
  std::string poison_message, good_message;
  for (auto& [poison, p] : inflight) {
    auto r = p.get();
    if (poison) {
      r.ok() ? ++poison_ok : ++poison_failed;
      if (!r.ok()) poison_message = r.status().message();
    } else {
      r.ok() ? ++good_ok : ++good_failed;
      if (!r.ok()) good_message = r.status().message();
    }
  }
  INFO(good_message);
  CHECK(good_failed == 0);
  CHECK(good_ok == 2000 - 40);
  CHECK(poison_ok == 0);
  CHECK(poison_failed == 40);
  CHECK_THAT(poison_message, Contains("poison refused by trigger") && Contains("msg:"));
  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == std::uint64_t(good_ok));
  CHECK(st.counters.sent == std::uint64_t(good_ok));
  CHECK(st.counters.write_errors == 40);
}

// Issue 9 item 11: another process holds the write lock; 2,048 messages are queued.
TEST_CASE("close() is bounded while another process holds the write lock", "[mailbox][concurrency]") {
  Scratch s;
  auto o = options(s);
  o.close_timeout = std::chrono::milliseconds(1000);
  auto mb = open(o);
  const fs::path file = s.dir / "mailbox.db";
  std::vector<PendingSend> inflight;
  double close_s = 0;
  {
    WriteLockHolder lock(file);
    for (int i = 0; i < 2048; ++i) inflight.push_back(mb->send_async(env(R"({"i":)" + std::to_string(i) + "}")));
    const auto t0 = std::chrono::steady_clock::now();
    const auto st = mb->close();
    close_s = seconds_since(t0);
    CHECK(st.ok());
    int ok = 0, closed = 0, other = 0;
    std::string closed_message, other_message;
    for (auto& p : inflight) {
      CHECK(p.ready());  // close() answered every queued message
      auto r = p.get();
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == ErrorCode::closed) {
        ++closed;
        closed_message = r.status().message();
      } else {
        ++other;
        other_message = r.status().message();
      }
    }
    INFO(other_message);
    CHECK(ok == 0);
    CHECK(closed == 2048);
    CHECK(other == 0);
    CHECK_THAT(closed_message, Contains("closed before this message could be committed") && Contains(file.string()) &&
                                   Contains("locked by another process"));
  }
  WARN("close() with 2,048 queued messages and the write lock held took " << close_s << " s");
  CHECK(close_s < 10.0);
  // After close(), every call says closed.
  auto sent = mb->send(env());
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.status().code() == ErrorCode::closed);
  CHECK(mb->pending(10).status().code() == ErrorCode::closed);
  CHECK(mb->stats().status().code() == ErrorCode::closed);
  CHECK(mb->mark_delivered("x").code() == ErrorCode::closed);
  CHECK(mb->store(env("{}", "in-1")).status().code() == ErrorCode::closed);
  CHECK(mb->close().ok());
  mb.reset();
  CHECK(raw_count(file, "SELECT COUNT(*) FROM outbox") == 0);
}

TEST_CASE("close() with nothing queued is fast, idempotent, and stops both threads", "[mailbox]") {
  Scratch s;
  auto mb = open(options(s));
  REQUIRE(mb->send(env()).ok());
  // The threads name themselves once they run: give them time to.
  for (int i = 0; i < 500 && (threads_named("edgert-mailbox") != 1 || threads_named("edgert-ckpt") != 1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(threads_named("edgert-mailbox") == 1);
  REQUIRE(threads_named("edgert-ckpt") == 1);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(mb->close().ok());
  const double first = seconds_since(t0);
  CHECK(mb->close().ok());
  CHECK(first < 2.0);
  CHECK(threads_named("edgert-mailbox") == 0);
  CHECK(threads_named("edgert-ckpt") == 0);
  // Both connections are closed: the last one to close checkpointed and removed the WAL.
  CHECK_FALSE(fs::exists(s.dir / "mailbox.db-wal"));
  CHECK(raw_count(s.dir / "mailbox.db", "SELECT COUNT(*) FROM outbox") == 1);
}

// Senders racing close(): every call returns (stored or `closed`), and every id a
// sender was given is in the file.
TEST_CASE("sends racing close() are either committed or answered closed", "[mailbox][concurrency]") {
  Scratch s;
  auto mb = open(options(s));
  std::atomic<bool> stop{false};
  std::vector<int> ok(3, 0), closed(3, 0), other(3, 0);
  std::vector<std::thread> senders;
  for (std::size_t t = 0; t < 3; ++t) {
    senders.emplace_back([&, t] {
      while (!stop) {
        auto r = t == 0 ? mb->send(env()) : mb->send_async(env()).get();
        if (r.ok()) {
          ++ok[t];
        } else if (r.status().code() == ErrorCode::closed) {
          if (++closed[t] > 3) return;
        } else {
          ++other[t];
        }
      }
    });
  }
  while (mb->stats().value().counters.sent < 300) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(mb->close().ok());
  stop = true;
  for (auto& t : senders) t.join();
  int total = 0;
  for (std::size_t t = 0; t < 3; ++t) {
    CHECK(other[t] == 0);
    total += ok[t];
  }
  mb.reset();
  CHECK(raw_count(s.dir / "mailbox.db", "SELECT COUNT(*) FROM outbox") == total);
}
