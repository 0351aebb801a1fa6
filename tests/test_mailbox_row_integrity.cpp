// Mailbox damage the page-level checks miss (issue 19, item 8): a WAL from another
// mailbox beside mailbox.db, values changed inside stored rows, and a file SQLite
// calls corrupt whose readable rows must be salvaged rather than thrown away.
// Every count here is the test's own: the ids it sent, minus the ones it damaged.
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "log_capture.hpp"
#include "mailbox_test_util.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::Mailbox;
using edgert::MailboxOptions;
namespace fs = std::filesystem;
using edgert::testing::files_with_prefix;
using edgert::testing::LogCapture;
using edgert::testing::raw_count;
using edgert::testing::raw_exec;

namespace {

using edgert::testing::Scratch;

Envelope env(const std::string& sender, int n, std::size_t pad = 0) {
  return edgert::testing::result_envelope(edgert::testing::numbered_payload(n, pad), "", sender);
}

MailboxOptions options(const fs::path& dir) {
  MailboxOptions o;
  o.data_dir = dir.string();
  return o;
}

std::unique_ptr<Mailbox> open(const fs::path& dir) {
  auto m = Mailbox::open(options(dir));
  INFO(m.status().message());
  REQUIRE(m.ok());
  return std::move(m).value();
}

// Sends `n` messages (pipelined) and returns their ids, the test's own record.
std::set<std::string> send_n(Mailbox& mb, const std::string& sender, int n, std::size_t pad = 0) {
  std::vector<edgert::PendingSend> inflight;
  inflight.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) inflight.push_back(mb.send_async(env(sender, i, pad)));
  std::set<std::string> ids;
  for (auto& p : inflight) {
    auto r = p.get();
    REQUIRE(r.ok());
    ids.insert(r.value());
  }
  REQUIRE(ids.size() == static_cast<std::size_t>(n));
  return ids;
}

// The message ids pending() hands out now.
std::set<std::string> pending_ids(Mailbox& mb) {
  auto p = mb.pending(100000);
  INFO(p.status().message());
  REQUIRE(p.ok());
  std::set<std::string> ids;
  for (auto& m : p.value()) ids.insert(m.envelope.message_id);
  return ids;
}

// A FULL checkpoint from another connection, waiting out the mailbox's own threads:
// afterwards the database file holds every committed row.
void checkpoint_full(const fs::path& file) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(FULL)", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const int busy = sqlite3_column_int(st, 0);
  const int log = sqlite3_column_int(st, 1), done = sqlite3_column_int(st, 2);
  sqlite3_finalize(st);
  sqlite3_close(db);
  REQUIRE(busy == 0);
  REQUIRE(log == done);
}

bool any_contains(const std::vector<std::string>& lines, const std::string& a, const std::string& b = "") {
  for (auto& l : lines) {
    if (l.find(a) != std::string::npos && (b.empty() || l.find(b) != std::string::npos)) return true;
  }
  return false;
}

}  // namespace

// ---- a WAL that belongs to another mailbox ---------------------------------------

TEST_CASE("a WAL from another mailbox beside a cleanly closed mailbox.db is kept aside, never replayed",
          "[mailbox_fault]") {
  Scratch sa, sb;
  std::set<std::string> a_ids;
  {
    auto a = open(sa.dir);
    a_ids = send_n(*a, "node-a", 1000);
  }  // clean close: no WAL left
  REQUIRE_FALSE(fs::exists(sa.dir / "mailbox.db-wal"));
  std::set<std::string> b_ids;
  {
    auto b = open(sb.dir);
    b_ids = send_n(*b, "node-b", 100);
    // B as a SIGKILL would leave it: its WAL holds its committed rows.
    REQUIRE(fs::file_size(sb.dir / "mailbox.db-wal") > 0);
    fs::copy_file(sb.dir / "mailbox.db-wal", sa.dir / "mailbox.db-wal");
  }
  LogCapture logs;
  auto a = open(sa.dir);
  const auto got = pending_ids(*a);
  CHECK(got == a_ids);  // every acknowledged message of A, none of B's
  for (auto& id : b_ids) CHECK(got.count(id) == 0);
  CHECK(any_contains(logs.errors(), "mailbox.db-wal", "does not belong"));
  CHECK(files_with_prefix(sa.dir, "mailbox.db-wal.foreign-").size() == 1);
}

TEST_CASE("a WAL from another mailbox beside an uncleanly stopped mailbox.db is kept aside, never replayed",
          "[mailbox_fault]") {
  Scratch sa, sb, crashed;
  fs::create_directories(crashed.dir);
  std::set<std::string> a_ids, b_ids;
  {
    auto a = open(sa.dir);
    a_ids = send_n(*a, "node-a", 1000);
    // Everything A committed is in mailbox.db itself; its WAL stays (no restart).
    checkpoint_full(sa.dir / "mailbox.db");
    // A as a SIGKILL leaves it: the database, its state marker still "open", and a WAL
    // (here B's, put in place of A's own).
    fs::copy_file(sa.dir / "mailbox.db", crashed.dir / "mailbox.db");
    fs::copy_file(sa.dir / "mailbox.db-state", crashed.dir / "mailbox.db-state");
    auto b = open(sb.dir);
    b_ids = send_n(*b, "node-b", 100);
    REQUIRE(fs::file_size(sb.dir / "mailbox.db-wal") > 0);
    fs::copy_file(sb.dir / "mailbox.db-wal", crashed.dir / "mailbox.db-wal");
  }
  LogCapture logs;
  auto a = open(crashed.dir);
  const auto got = pending_ids(*a);
  CHECK(got == a_ids);
  for (auto& id : b_ids) CHECK(got.count(id) == 0);
  CHECK(any_contains(logs.errors(), "mailbox.db-wal", "does not belong"));
  CHECK(files_with_prefix(crashed.dir, "mailbox.db-wal.foreign-").size() == 1);
}

TEST_CASE("a mailbox's own WAL after an unclean stop is replayed, not taken for a foreign one", "[mailbox_fault]") {
  Scratch sa, crashed;
  fs::create_directories(crashed.dir);
  std::set<std::string> a_ids;
  {
    auto a = open(sa.dir);
    a_ids = send_n(*a, "node-a", 300);
    // A snapshot of the three files while A runs: what a SIGKILL leaves.
    for (const char* f : {"mailbox.db", "mailbox.db-wal", "mailbox.db-state"}) {
      fs::copy_file(sa.dir / f, crashed.dir / f);
    }
  }
  LogCapture logs;
  auto a = open(crashed.dir);
  CHECK(pending_ids(*a) == a_ids);
  CHECK_FALSE(any_contains(logs.errors(), "does not belong"));
  CHECK(files_with_prefix(crashed.dir, "mailbox.db-wal.foreign-").empty());
}

// ---- values changed inside stored rows -------------------------------------------

namespace {

// XOR of one bit in SQL (SQLite has no XOR operator).
std::string flip(const std::string& column, int bit) {
  const std::string m = std::to_string(std::int64_t{1} << bit);
  return "(" + column + " | " + m + ") - (" + column + " & " + m + ")";
}

}  // namespace

TEST_CASE("a flipped bit in a stored due time, expiry, envelope or id is reported, counted and never expires",
          "[mailbox_fault]") {
  Scratch s;
  std::atomic<std::int64_t> now{1'790'000'000'000};  // Sep 2026: bit 39 is set
  auto opts = [&] {
    MailboxOptions o = options(s.dir);
    o.clock_ms = [&now] { return now.load(); };
    return o;
  };
  std::vector<std::string> ids;
  {
    auto mb = Mailbox::open(opts());
    REQUIRE(mb.ok());
    for (int i = 0; i < 300; ++i) {
      auto r = mb.value()->send(env("node-a", i, 20));
      REQUIRE(r.ok());
      ids.push_back(r.value());
    }
  }
  const fs::path db = s.dir / "mailbox.db";
  // Each change stands for a bit flip on disk that SQLite's page checks cannot see.
  const std::string late = ids[10], old = ids[20], body = ids[30], named = ids[40];
  std::string renamed = named;
  renamed.back() = renamed.back() == '0' ? '1' : '0';
  raw_exec(db, "UPDATE outbox SET next_attempt_ms = " + flip("next_attempt_ms", 32) + " WHERE message_id = '" +
                   late + "'");  // ~50 days later
  raw_exec(db, "UPDATE outbox SET expires_ms = " + flip("expires_ms", 39) + " WHERE message_id = '" + old + "'");
  REQUIRE(raw_count(db, "SELECT expires_ms < 1262304000000 FROM outbox WHERE message_id = '" + old + "'") == 1);
  raw_exec(db, "UPDATE outbox SET envelope_json = replace(envelope_json, '\"pad\":\"x', '\"pad\":\"y') "
               "WHERE message_id = '" + body + "'");
  raw_exec(db, "UPDATE outbox SET message_id = '" + renamed + "' WHERE message_id = '" + named + "'");
  std::set<std::string> good(ids.begin(), ids.end());
  for (const auto& id : {late, old, body, named}) good.erase(id);
  REQUIRE(good.size() == 296);

  LogCapture logs;
  auto mb = Mailbox::open(opts());
  REQUIRE(mb.ok());
  Mailbox& m = *mb.value();
  // The background pass after open verifies every row, due or not.
  for (int i = 0; i < 400; ++i) {
    auto st = m.stats();
    REQUIRE(st.ok());
    if (st.value().counters.integrity_checks >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto st = m.stats();
  REQUIRE(st.ok());
  REQUIRE(st.value().counters.integrity_checks >= 1);
  CHECK(st.value().counters.unreadable == 4);
  for (const auto& id : {late, old, body, renamed}) {
    INFO(id);
    CHECK(any_contains(logs.errors(), id, "checksum"));
  }
  CHECK(pending_ids(m) == good);

  // Past the (damaged) expiry: the row is not removed as expired, and nothing is counted twice.
  auto cleaned = m.cleanup_expired();
  REQUIRE(cleaned.ok());
  CHECK(cleaned.value() == 0);
  st = m.stats();
  REQUIRE(st.ok());
  CHECK(st.value().counters.expired == 0);
  CHECK(st.value().counters.unreadable == 4);
  CHECK(raw_count(db, "SELECT COUNT(*) FROM outbox WHERE message_id = '" + old + "'") == 1);

  // Rescheduling keeps an intact row's checksum intact.
  const std::string again = *good.begin();
  REQUIRE(m.mark_failed(again).ok());
  now += 3'600'000;
  CHECK(pending_ids(m).count(again) == 1);
  CHECK(m.stats().value().counters.unreadable == 4);
}

// ---- salvage of a file SQLite calls corrupt --------------------------------------

TEST_CASE("a mailbox.db with a destroyed table page is salvaged: every readable row is kept, the file kept aside",
          "[mailbox_fault]") {
  Scratch s;
  std::set<std::string> sent, inbox;
  {
    auto mb = open(s.dir);
    sent = send_n(*mb, "node-a", 2000, 150);
    for (int i = 0; i < 50; ++i) {
      Envelope e = env("node-b", i);
      e.message_id = "in-" + std::to_string(i);
      e.recipient_node_id = "node-a";
      e.timestamp_ms = 1;
      auto r = mb->store(e);
      INFO(r.status().message());
      REQUIRE(r.ok());
      inbox.insert(e.message_id);
    }
  }
  const fs::path db = s.dir / "mailbox.db";
  REQUIRE_FALSE(fs::exists(s.dir / "mailbox.db-wal"));
  // A table leaf page (type 0x0D) from the middle of the file that holds outbox rows:
  // the ids in it are the rows its destruction loses (rows are short: no overflow pages).
  std::string bytes = edgert::testing::read_all(db);
  const std::size_t page = 4096;
  REQUIRE(raw_count(db, "PRAGMA page_size") == static_cast<std::int64_t>(page));
  std::set<std::string> lost;
  std::size_t victim = 0;
  for (std::size_t p = bytes.size() / page / 2; p < bytes.size() / page && victim == 0; ++p) {
    const std::string pg = bytes.substr(p * page, page);
    if (static_cast<unsigned char>(pg[0]) != 0x0D) continue;
    std::set<std::string> ids;
    for (const auto& id : sent) {
      if (pg.find(id) != std::string::npos) ids.insert(id);
    }
    if (ids.size() >= 5) {
      victim = p;
      lost = ids;
    }
  }
  REQUIRE(victim != 0);
  for (std::size_t i = 0; i < 16; ++i) bytes[victim * page + i] = static_cast<char>(0xA5);
  edgert::testing::write_all(db, bytes);
  std::set<std::string> expected = sent;
  for (const auto& id : lost) expected.erase(id);
  REQUIRE(expected.size() == sent.size() - lost.size());

  LogCapture logs;
  auto mb = open(s.dir);
  const auto got = pending_ids(*mb);
  for (const auto& id : expected) {
    if (got.count(id) == 0) UNSCOPED_INFO("not salvaged: " << id);
  }
  CHECK(got == expected);
  auto un = mb->unacked("", 1000);
  REQUIRE(un.ok());
  std::set<std::string> got_inbox;
  for (auto& m : un.value()) got_inbox.insert(m.envelope.message_id);
  CHECK(got_inbox == inbox);
  auto st = mb->stats();
  REQUIRE(st.ok());
  CHECK(st.value().outbox_rows == expected.size());  // totals recomputed from the rows kept
  CHECK(st.value().inbox_rows == inbox.size());
  CHECK(st.value().inbox_unacked == inbox.size());
  const std::string saved = std::to_string(expected.size() + inbox.size());
  const auto errors = logs.errors();
  INFO((errors.empty() ? std::string("no ERROR") : errors.front()));
  CHECK(any_contains(logs.errors(), "salvaged", "outbox: " + std::to_string(expected.size()) + " saved of 2000, " +
                                                    std::to_string(lost.size()) + " lost"));
  std::size_t kept = 0;  // the damaged file itself, not its -wal/-shm
  for (const auto& f : files_with_prefix(s.dir, "mailbox.db.corrupt-")) kept += f.find("-wal") == std::string::npos &&
                                                                                f.find("-shm") == std::string::npos;
  CHECK(kept == 1);
  CHECK(files_with_prefix(s.dir, "mailbox.db.salvage-tmp").empty());
}

// A zeroed type byte on the outbox table leaf holding the smallest rowids (issue 20
// follow-up): the scan fails at once, so the search for the first readable rowid starts
// at INT64_MIN; its doubling step used to stop growing at INT64_MAX, short of the end,
// and probed the same rowid forever. The salvage runs in a child process so a spin
// fails the test instead of hanging it.
TEST_CASE("a salvage past a table leaf with a zeroed type byte ends in seconds and reports what it skipped",
          "[mailbox_fault]") {
  Scratch s;
  constexpr int kRows = 3000;
  std::set<std::string> sent;
  {
    auto mb = open(s.dir);
    sent = send_n(*mb, "node-a", kRows, 300);  // ~1.5 MB of outbox
  }
  const fs::path db = s.dir / "mailbox.db";
  REQUIRE_FALSE(fs::exists(s.dir / "mailbox.db-wal"));
  const std::size_t page = 4096;
  REQUIRE(raw_count(db, "PRAGMA page_size") == static_cast<std::int64_t>(page));
  std::string bytes = edgert::testing::read_all(db);
  REQUIRE(bytes.size() > 1000000);
  auto be = [&](std::size_t at, int n) {
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
    return v;
  };
  // From the outbox's root down the left-most child pointers to its first leaf.
  auto pgno = static_cast<std::size_t>(raw_count(db, "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'"));
  REQUIRE(pgno > 1);
  while (static_cast<unsigned char>(bytes[(pgno - 1) * page]) == 0x05) {
    const std::size_t at = (pgno - 1) * page;
    pgno = be(at + be(at + 12, 2), 4);  // the first cell's left child
  }
  const std::size_t victim = (pgno - 1) * page;
  REQUIRE(static_cast<unsigned char>(bytes[victim]) == 0x0D);
  std::set<std::string> lost;
  const std::string pg = bytes.substr(victim, page);
  for (const auto& id : sent) {
    if (pg.find(id) != std::string::npos) lost.insert(id);
  }
  REQUIRE(lost.size() >= 2);
  bytes[victim] = 0;  // the page type byte only
  edgert::testing::write_all(db, bytes);
  std::set<std::string> expected = sent;
  for (const auto& id : lost) expected.erase(id);

  const fs::path child_log = s.dir.string() + "-salvage.log";
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(child_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 2);
    MailboxOptions o;
    o.data_dir = s.dir.string();
    auto m = Mailbox::open(o);
    if (!m.ok()) std::fprintf(stderr, "open failed: %s\n", m.status().message().c_str());
    std::fflush(stderr);
    ::_exit(m.ok() ? 0 : 1);
  }
  int status = 0;
  bool done = false;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      done = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  const std::string log = edgert::testing::read_all(child_log);
  INFO(log);
  REQUIRE(done);  // a spinning salvage is killed after 120 s
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  INFO("the open with the salvage took " << took.count() << " ms");
  CHECK(took < std::chrono::seconds(60));
  // The skip is reported: which table, how many rows, the stretch and its rowids.
  CHECK_THAT(log, Contains("outbox: " + std::to_string(expected.size()) + " saved of " + std::to_string(kRows) +
                           ", " + std::to_string(lost.size()) + " lost (1 unreadable stretches skipped: rowids"));
  auto mb = open(s.dir);
  CHECK(pending_ids(*mb) == expected);
}
