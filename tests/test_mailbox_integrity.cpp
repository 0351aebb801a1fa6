// Corruption the open-time checks miss (docs/mailbox.md, "Corruption" and "A damaged or
// missing WAL"): index damage that passes quick_check is found by the background
// integrity_check and rebuilt; damage REINDEX cannot fix is reported and counted; a WAL
// cut short by a damaged frame, and a WAL deleted after an unclean stop, are reported
// before SQLite silently drops what they held.
#include <edgert/mailbox.hpp>

#include "mailbox/integrity_problems.hpp"

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::Mailbox;
using edgert::MailboxCounters;
using edgert::MailboxOptions;
namespace fs = std::filesystem;
using edgert::testing::files_with_prefix;
using edgert::testing::read_all;
using edgert::testing::write_all;
using edgert::testing::capture_stderr;

namespace {

using edgert::testing::Scratch;

std::string id_of(int n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "id-%05d", n);
  return buf;
}

Envelope env(int n) {
  Envelope e = edgert::testing::numbered_envelope(n);
  e.message_id = id_of(n);
  return e;
}

MailboxOptions options(const fs::path& dir) {
  MailboxOptions o;
  o.data_dir = dir.string();
  o.busy_timeout_ms = 200;
  return o;
}

// A healthy mailbox holding messages id-00000 .. id-<n-1>, closed again.
void make_live(const fs::path& dir, int n) {
  auto mb = Mailbox::open(options(dir));
  REQUIRE(mb.ok());
  std::vector<edgert::PendingSend> sends;
  for (int i = 0; i < n; ++i) sends.push_back(mb.value()->send_async(env(i)));
  for (auto& s : sends) REQUIRE(s.get().ok());
}

// One-row answer of `sql` on a fresh raw connection to `db` (independent of the mailbox).
std::string query(const fs::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const auto* t = sqlite3_column_text(st, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return out;
}

std::uint32_t be32(const std::string& b, std::size_t at) {
  return (std::uint32_t(std::uint8_t(b[at])) << 24) | (std::uint32_t(std::uint8_t(b[at + 1])) << 16) |
         (std::uint32_t(std::uint8_t(b[at + 2])) << 8) | std::uint32_t(std::uint8_t(b[at + 3]));
}

// Polls stats() until `done` holds for its counters, or 60 s pass.
MailboxCounters wait_for(Mailbox& mb, const std::function<bool(const MailboxCounters&)>& done) {
  MailboxCounters last;
  edgert::testing::wait_until(
      [&] {
        auto st = mb.stats();
        REQUIRE(st.ok());
        last = st.value().counters;
        return done(last);
      },
      std::chrono::seconds(60), std::chrono::milliseconds(20));
  return last;
}

// Marks every pending message delivered; returns how many mark_delivered() accepted
// and counts in `refused` those it did not (a row its index no longer finds).
int deliver_all(Mailbox& mb, int& refused) {
  int ok = 0;
  refused = 0;
  for (int round = 0; round < 40; ++round) {
    auto p = mb.pending(500);
    REQUIRE(p.ok());
    if (p.value().empty()) break;
    for (const auto& m : p.value()) {
      if (mb.mark_delivered(m.envelope.message_id).ok()) {
        ++ok;
      } else {
        ++refused;
      }
    }
  }
  return ok;
}

}  // namespace

TEST_CASE("integrity: index damage quick_check misses is repaired in the background", "[mailbox][mailbox_fault]") {
  Scratch s;
  constexpr int kRows = 3000;
  make_live(s.dir, kRows);
  const fs::path db = s.dir / "mailbox.db";
  REQUIRE_FALSE(fs::exists(s.dir / "mailbox.db-wal"));  // checkpointed on close: all in the file

  // The message_id index (UNIQUE): its root page, then the right-most leaf below it.
  const int page_size = std::stoi(query(db, "PRAGMA page_size"));
  const int root = std::stoi(query(db, "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_outbox_1'"));
  std::string bytes = read_all(db);
  std::size_t page = static_cast<std::size_t>(root - 1) * static_cast<std::size_t>(page_size);
  while (std::uint8_t(bytes[page]) == 0x02) {  // interior index page: follow its right-most pointer
    page = static_cast<std::size_t>(be32(bytes, page + 8) - 1) * static_cast<std::size_t>(page_size);
  }
  REQUIRE(std::uint8_t(bytes[page]) == 0x0a);  // an index leaf
  // 4-bit flips in the key text of a few entries (not in the page's structure, which
  // quick_check would see): these rows can no longer be found by message_id.
  int flipped = 0;
  for (std::size_t at = page + 8; at + 8 < page + static_cast<std::size_t>(page_size) && flipped < 3; ++at) {
    if (bytes.compare(at, 3, "id-") == 0) {
      bytes[at + 7] = static_cast<char>(bytes[at + 7] ^ 0x0f);
      ++flipped;
      at += 8;
    }
  }
  REQUIRE(flipped == 3);
  write_all(db, bytes);
  REQUIRE(query(db, "PRAGMA quick_check") == "ok");      // open's check passes...
  REQUIRE(query(db, "PRAGMA integrity_check") != "ok");  // ...the full one does not

  MailboxCounters c;
  int delivered = 0, refused = 0;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    c = wait_for(*mb.value(), [](const MailboxCounters& k) {
      return k.integrity_repairs + k.integrity_failures > 0 && k.integrity_checks >= 2;
    });
    delivered = deliver_all(*mb.value(), refused);
    auto st = mb.value()->stats();
    REQUIRE(st.ok());
    CHECK(st.value().outbox_rows == 0);
  });
  INFO(log);
  CHECK(c.integrity_repairs == 1);
  CHECK(c.integrity_failures == 0);
  CHECK(c.integrity_checks == 2);  // the check that found the damage, and the re-check
  CHECK(delivered == kRows);
  CHECK(refused == 0);
  CHECK_THAT(log, Contains("REINDEX"));
  CHECK_THAT(log, Contains("sqlite_autoindex_outbox_1"));
  CHECK(query(db, "PRAGMA integrity_check") == "ok");
}

TEST_CASE("integrity: a healthy mailbox is checked once, nothing repaired", "[mailbox][mailbox_fault]") {
  Scratch s;
  make_live(s.dir, 200);
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  const auto c = wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_checks >= 1; });
  CHECK(c.integrity_checks == 1);
  CHECK(c.integrity_repairs == 0);
  CHECK(c.integrity_failures == 0);
}

TEST_CASE("integrity: table damage REINDEX cannot repair is an ERROR and counted", "[mailbox][mailbox_fault]") {
  Scratch s;
  make_live(s.dir, 300);
  const fs::path db = s.dir / "mailbox.db";
  const int page_size = std::stoi(query(db, "PRAGMA page_size"));
  // In an outbox table leaf, the message_id column of id-00002 (not the copy inside
  // envelope_json, which follows a quote) becomes id-00001: two rows now hold one
  // UNIQUE id, which no index rebuild can accept.
  std::string bytes = read_all(db);
  bool changed = false;
  for (std::size_t page = 0; page + static_cast<std::size_t>(page_size) <= bytes.size() && !changed;
       page += static_cast<std::size_t>(page_size)) {
    const std::size_t hdr = page == 0 ? 100 : 0;
    if (std::uint8_t(bytes[page + hdr]) != 0x0d) continue;  // table leaf pages only
    const std::string body = bytes.substr(page, static_cast<std::size_t>(page_size));
    for (std::size_t at = body.find("id-00002"); at != std::string::npos; at = body.find("id-00002", at + 1)) {
      if (at > 0 && body[at - 1] == '"') continue;
      bytes[page + at + 7] = '1';
      changed = true;
      break;
    }
  }
  REQUIRE(changed);
  write_all(db, bytes);
  REQUIRE(query(db, "PRAGMA quick_check") == "ok");
  REQUIRE(query(db, "PRAGMA integrity_check") != "ok");

  MailboxCounters c;
  bool sent_after = false;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    c = wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_repairs + k.integrity_failures > 0; });
    sent_after = mb.value()->send(env(5000)).ok();  // the node keeps running on the readable rows
  });
  INFO(log);
  CHECK(c.integrity_failures == 1);
  CHECK(c.integrity_repairs == 0);
  CHECK(sent_after);
  CHECK_THAT(log, Contains("error"));
  CHECK_THAT(log, Contains("REINDEX cannot repair"));
  CHECK_THAT(log, Contains(db.string()));
  CHECK_THAT(log, Contains("sqlite_autoindex_outbox_1"));
}

namespace {

// A child process opens the mailbox, commits `n` messages one transaction each, and
// is killed (SIGKILL) without closing it: no checkpoint, the WAL holds them all.
// Returns the number the child saw acknowledged (a failed send makes it exit instead).
int commit_and_die(const fs::path& dir, int n) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    MailboxOptions o = options(dir);
    o.wal_checkpoint_bytes = 1ull << 30;
    o.wal_limit_bytes = 1ull << 30;
    auto mb = Mailbox::open(o);
    if (!mb.ok()) ::_exit(2);
    for (int i = 0; i < n; ++i) {
      if (!mb.value()->send(env(i)).ok()) ::_exit(3);
    }
    // Dies as kill -9 would (an _exit() with the mailbox's threads alive is also a
    // thread leak to ThreadSanitizer).
    ::kill(::getpid(), SIGKILL);
    ::_exit(4);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("child exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);
  return n;
}

std::size_t pending_count(Mailbox& mb) {
  auto p = mb.pending(100000);
  REQUIRE(p.ok());
  return p.value().size();
}

}  // namespace

TEST_CASE("integrity: a WAL cut short by a damaged frame is reported with counts, a copy kept",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const int acked = commit_and_die(s.dir, 300);
  const fs::path wal = s.dir / "mailbox.db-wal";
  std::string bytes = read_all(wal);
  REQUIRE(bytes.size() > 32);
  const std::size_t page_size = be32(bytes, 8);
  const std::size_t frame = 24 + page_size;
  const std::size_t frames = (bytes.size() - 32) / frame;
  REQUIRE(frames > 100);
  // A frame in the middle that does not itself end a transaction; its page number
  // takes a 4-bit flip, so its checksum no longer matches.
  std::size_t k = frames / 2;  // 1-based frame number
  while (be32(bytes, 32 + (k - 1) * frame + 4) != 0) --k;
  const std::size_t at = 32 + (k - 1) * frame + 3;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x0f);
  write_all(wal, bytes);

  std::size_t recovered = 0;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    recovered = pending_count(*mb.value());
  });
  INFO(log);
  REQUIRE(recovered < static_cast<std::size_t>(acked));  // SQLite did stop replaying there
  CHECK_THAT(log, Contains("error"));
  CHECK_THAT(log, Contains("WAL damaged at frame " + std::to_string(k) + " of " + std::to_string(frames) + ":"));
  // The count reported is what was really lost: every acknowledged message not recovered.
  const auto tail = log.find(" committed transactions (");
  REQUIRE(tail != std::string::npos);
  auto head = tail;
  while (head > 0 && std::isdigit(static_cast<unsigned char>(log[head - 1]))) --head;
  REQUIRE(head < tail);
  CHECK(std::stoul(log.substr(head, tail - head)) == static_cast<std::size_t>(acked) - recovered);
  const auto copies = files_with_prefix(s.dir, "mailbox.db-wal.damaged-");
  REQUIRE(copies.size() == 1);
  CHECK(read_all(s.dir / copies[0]) == bytes);
  CHECK_THAT(log, Contains((s.dir / copies[0]).string()));
}

TEST_CASE("integrity: an intact WAL after a crash is replayed without a report", "[mailbox][mailbox_fault]") {
  Scratch s;
  const int acked = commit_and_die(s.dir, 100);
  std::size_t recovered = 0;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    recovered = pending_count(*mb.value());
  });
  INFO(log);
  CHECK(recovered == static_cast<std::size_t>(acked));
  CHECK(log.find("WAL") == std::string::npos);
  CHECK(files_with_prefix(s.dir, "mailbox.db-wal.damaged-").empty());
}

TEST_CASE("integrity: a WAL deleted after an unclean stop is reported; a clean stop is not",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  SECTION("unclean stop, WAL deleted: WARNING") {
    commit_and_die(s.dir, 50);
    REQUIRE(fs::exists(s.dir / "mailbox.db-wal"));
    fs::remove(s.dir / "mailbox.db-wal");
    fs::remove(s.dir / "mailbox.db-shm");
    const std::string log = capture_stderr(s.dir, [&] { REQUIRE(Mailbox::open(options(s.dir)).ok()); });
    INFO(log);
    CHECK_THAT(log, Contains("warning"));
    CHECK_THAT(log, Contains((s.dir / "mailbox.db-wal").string() + " is missing"));
    CHECK_THAT(log, Contains("may be lost"));
    // That open closed cleanly: the next one has nothing to report.
    const std::string again = capture_stderr(s.dir, [&] { REQUIRE(Mailbox::open(options(s.dir)).ok()); });
    CHECK(again.find("may be lost") == std::string::npos);
  }
  SECTION("clean stop (the WAL is checkpointed and removed on close): no warning") {
    make_live(s.dir, 50);
    REQUIRE_FALSE(fs::exists(s.dir / "mailbox.db-wal"));
    const std::string log = capture_stderr(s.dir, [&] { REQUIRE(Mailbox::open(options(s.dir)).ok()); });
    INFO(log);
    CHECK(log.find("may be lost") == std::string::npos);
  }
  SECTION("unclean stop, WAL present: replayed, no warning") {
    commit_and_die(s.dir, 50);
    std::size_t recovered = 0;
    const std::string log = capture_stderr(s.dir, [&] {
      auto mb = Mailbox::open(options(s.dir));
      REQUIRE(mb.ok());
      recovered = pending_count(*mb.value());
    });
    INFO(log);
    CHECK(recovered == 50);
    CHECK(log.find("may be lost") == std::string::npos);
  }
}

TEST_CASE("integrity: open skips quick_check only on a file unchanged since a verified clean close; damage at rest "
          "is then found in the background and the next open salvages",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path db = s.dir / "mailbox.db";
  constexpr int kRows = 2000;
  // A run whose background integrity_check completed clean, closed cleanly: the marker
  // records the file as the close left it.
  {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    std::vector<edgert::PendingSend> sends;
    for (int i = 0; i < kRows; ++i) sends.push_back(mb.value()->send_async(env(i)));
    for (auto& p : sends) REQUIRE(p.get().ok());
    wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_checks >= 1; });
  }
  CHECK_THAT(read_all(s.dir / "mailbox.db-state"), Contains("clean verified"));
  std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    auto p = mb.value()->pending(10 * kRows);
    REQUIRE(p.ok());
    CHECK(p.value().size() == static_cast<std::size_t>(kRows));
    wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_checks >= 1; });
  });
  CHECK_THAT(log, Contains("quick_check skipped"));
  CHECK_THAT(read_all(s.dir / "mailbox.db-state"), Contains("clean verified"));

  // Damage quick_check sees (the header of an outbox table leaf from the middle of the
  // file destroyed, as in test_mailbox_row_integrity), written in place with the file's
  // times put back: to the marker the file looks as the close left it.
  const auto page_size = static_cast<std::size_t>(std::stoi(query(db, "PRAGMA page_size")));
  struct stat before {};
  REQUIRE(::stat(db.c_str(), &before) == 0);
  std::string bytes = read_all(db);
  bool changed = false;
  for (std::size_t p = bytes.size() / page_size / 2; p < bytes.size() / page_size && !changed; ++p) {
    const std::size_t page = p * page_size;
    if (std::uint8_t(bytes[page]) != 0x0d) continue;
    if (bytes.substr(page, page_size).find("id-00") == std::string::npos) continue;
    for (std::size_t i = 0; i < 16; ++i) bytes[page + i] = static_cast<char>(0xA5);
    changed = true;
  }
  REQUIRE(changed);
  {
    // quick_check would see it: asked of a copy (a connection to the file itself leaves
    // a -wal behind, which alone makes the next open run quick_check).
    const fs::path copy = s.dir.string() + "-copy.db";
    write_all(copy, bytes);
    CHECK(query(copy, "PRAGMA quick_check") != "ok");
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(copy.string() + suffix);
  }
  write_all(db, bytes);
  const timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, db.c_str(), times, 0) == 0);

  // The next open trusts the marker, so the background check is what finds it...
  MailboxCounters c;
  log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    c = wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_failures > 0; });
  });
  INFO(log);
  CHECK_THAT(log, Contains("quick_check skipped"));
  CHECK(c.integrity_failures == 1);
  CHECK(read_all(s.dir / "mailbox.db-state").find("verified") == std::string::npos);
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());

  // ...and the one after runs quick_check again, which moves the file aside and salvages it.
  log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
  });
  INFO(log);
  CHECK(log.find("quick_check skipped") == std::string::npos);
  CHECK_THAT(log, Contains("is corrupt"));
  CHECK_FALSE(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
}

namespace {

// Destroys the header of a leaf page of b-tree `name` (a table or an index) in use
// (dbstat, so never a free page that still holds old content): the middle one of its
// leaves. Returns whether it had one.
bool destroy_page(const fs::path& db, const std::string& name) {
  const auto page_size = static_cast<std::size_t>(std::stoi(query(db, "PRAGMA page_size")));
  const std::string leaves = query(db, "SELECT count(*) FROM dbstat WHERE name = '" + name + "' AND pagetype = 'leaf'");
  if (leaves.empty() || std::stoi(leaves) == 0) return false;
  const std::string pageno = query(db, "SELECT pageno FROM dbstat WHERE name = '" + name +
                                           "' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET " +
                                           std::to_string(std::stoi(leaves) / 2));
  const std::size_t page = (static_cast<std::size_t>(std::stoll(pageno)) - 1) * page_size;
  std::string bytes = read_all(db);
  if (page + page_size > bytes.size()) return false;
  for (std::size_t i = 0; i < 16; ++i) bytes[page + i] = static_cast<char>(0xA5);
  write_all(db, bytes);
  return true;
}

// The file's modification time moved on: to the marker, no longer the file the last
// close vouched for.
void touch(const fs::path& db) {
  const timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  REQUIRE(::utimensat(AT_FDCWD, db.c_str(), times, 0) == 0);
}

}  // namespace

TEST_CASE("integrity: a file over quick_check_max_bytes is checked in part at open; outbox table damage is found in "
          "the background and the next open checks in full and salvages",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path db = s.dir / "mailbox.db";
  const fs::path owed = s.dir / "mailbox.db-check-owed";
  constexpr int kRows = 2000;
  make_live(s.dir, kRows);
  MailboxOptions o = options(s.dir);
  o.quick_check_max_bytes = 4096;  // every file here is larger
  REQUIRE(query(db, "PRAGMA freelist_count") == "0");

  // A healthy file: opened on the bounded check, owed a full check until this run's
  // integrity_check vouches for it.
  touch(db);
  std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(o);
    REQUIRE(mb.ok());
    CHECK(fs::exists(owed));
    CHECK(pending_count(*mb.value()) == static_cast<std::size_t>(kRows));
    const auto c = wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_checks >= 1; });
    CHECK(c.integrity_failures == 0);
  });
  INFO(log);
  CHECK_THAT(log, Contains("checked at open only in part"));
  CHECK_FALSE(fs::exists(owed));
  CHECK_THAT(read_all(s.dir / "mailbox.db-state"), Contains("clean verified"));

  // Damage in an outbox table leaf, which the bounded check does not read: the open
  // succeeds, the background check finds it...
  REQUIRE(destroy_page(db, "outbox"));
  MailboxCounters c;
  log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(o);
    REQUIRE(mb.ok());
    c = wait_for(*mb.value(), [](const MailboxCounters& k) { return k.integrity_failures > 0; });
  });
  INFO(log);
  CHECK_THAT(log, Contains("checked at open only in part"));
  CHECK(c.integrity_failures == 1);
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  CHECK(fs::exists(owed));
  CHECK(read_all(s.dir / "mailbox.db-state").find("verified") == std::string::npos);

  // ...and the next open, owed a full check, runs quick_check over every page: SQLite
  // calls the file corrupt, it is moved aside and its readable rows salvaged.
  log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(o);
    REQUIRE(mb.ok());
    const std::size_t kept = pending_count(*mb.value());
    CHECK(kept > 0);
    CHECK(kept < static_cast<std::size_t>(kRows));
  });
  INFO(log);
  CHECK(log.find("checked at open only in part") == std::string::npos);
  CHECK_THAT(log, Contains("is corrupt"));
  CHECK_FALSE(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  CHECK_FALSE(fs::exists(owed));
}

TEST_CASE("integrity: the bounded check at open reads every outbox index page: a damaged one is salvaged at once",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path db = s.dir / "mailbox.db";
  make_live(s.dir, 2000);
  MailboxOptions o = options(s.dir);
  o.quick_check_max_bytes = 4096;
  // A leaf of the UNIQUE index on outbox.message_id.
  REQUIRE(destroy_page(db, "sqlite_autoindex_outbox_1"));
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(o);
    REQUIRE(mb.ok());
    CHECK(pending_count(*mb.value()) == 2000);  // an index page holds no row: nothing lost
  });
  INFO(log);
  CHECK_THAT(log, Contains("is corrupt"));
  CHECK_FALSE(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  CHECK_FALSE(fs::exists(s.dir / "mailbox.db-check-owed"));
}

TEST_CASE("integrity: a large file with free pages gets the full quick_check at open", "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path db = s.dir / "mailbox.db";
  make_live(s.dir, 2000);
  {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    auto p = mb.value()->pending(1000);  // the first 1000 delivered: the deletes leave free pages
    REQUIRE(p.ok());
    REQUIRE(p.value().size() == 1000);
    for (const auto& m : p.value()) REQUIRE(mb.value()->mark_delivered(m.envelope.message_id).ok());
  }
  REQUIRE(query(db, "PRAGMA freelist_count") != "0");
  REQUIRE(destroy_page(db, "outbox"));
  MailboxOptions o = options(s.dir);
  o.quick_check_max_bytes = 4096;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(o);
    REQUIRE(mb.ok());
  });
  INFO(log);
  CHECK(log.find("checked at open only in part") == std::string::npos);
  CHECK_THAT(log, Contains("is corrupt"));
  CHECK_FALSE(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
}

// ---- what REINDEX may repair (issue 20 follow-up) ---------------------------------

namespace {

// integrity_check's rows for `db` (a raw connection: what the background check reads),
// plus the error that stopped it, if one did.
std::vector<std::string> integrity_rows(sqlite3* h) {
  std::vector<std::string> rows;
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, ("PRAGMA integrity_check(" + std::to_string(edgert::detail::kIntegrityMaxProblems) + ")").c_str(), -1, &st, nullptr) == SQLITE_OK);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* t = sqlite3_column_text(st, 0);
    const std::string row = t ? reinterpret_cast<const char*>(t) : "";
    if (row != "ok") rows.push_back(row);
  }
  if (rc != SQLITE_DONE) rows.emplace_back(sqlite3_errmsg(h));
  sqlite3_finalize(st);
  return rows;
}

}  // namespace

TEST_CASE("integrity: an index page pointer aimed at an outbox table page is never left to REINDEX",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  make_live(s.dir, 3000);
  const fs::path db = s.dir / "mailbox.db";
  const auto page_size = static_cast<std::size_t>(std::stoi(query(db, "PRAGMA page_size")));
  const auto index_root =
      static_cast<unsigned>(std::stoi(query(db, "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_outbox_1'")));
  const auto table_root = static_cast<unsigned>(std::stoi(query(db, "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'")));
  // The crafted file: the message_id index's root (interior) page gets its first
  // child pointer aimed at an outbox table leaf. REINDEX would free that page, which
  // the outbox table still uses.
  std::string bytes = read_all(db);
  const std::size_t root_at = static_cast<std::size_t>(index_root - 1) * page_size;
  REQUIRE(std::uint8_t(bytes[root_at]) == 0x02);
  std::uint32_t table_leaf = 0;
  for (std::size_t p = bytes.size() / page_size / 2; p < bytes.size() / page_size && table_leaf == 0; ++p) {
    if (std::uint8_t(bytes[p * page_size]) == 0x0d &&
        bytes.substr(p * page_size, page_size).find("id-0") != std::string::npos) {
      table_leaf = static_cast<std::uint32_t>(p + 1);
    }
  }
  REQUIRE(table_leaf != 0);
  const std::size_t cell = root_at + ((std::size_t(std::uint8_t(bytes[root_at + 12])) << 8) | std::uint8_t(bytes[root_at + 13]));
  for (int i = 0; i < 4; ++i) bytes[cell + static_cast<std::size_t>(i)] = static_cast<char>(table_leaf >> (24 - 8 * i));
  write_all(db, bytes);

  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  // What this SQLite reports for the file: a page referenced twice, never index-only.
  const auto rows = integrity_rows(h);
  std::string all;
  for (const auto& r : rows) all += r + "\n";
  INFO(all);
  CHECK_THAT(all, Contains("2nd reference to page " + std::to_string(table_leaf)));
  CHECK_FALSE(edgert::detail::reindex_plan(h, rows).index_only);

  // The same finding as newer SQLite words it, with the index's root page first, one
  // finding a row or one a line after the database header: a page shared with a table.
  const std::string idx = std::to_string(index_root);
  const std::string shared = "Tree " + idx + " page " + idx + " cell 0: 2nd reference to page " + std::to_string(table_leaf);
  CHECK_FALSE(edgert::detail::reindex_plan(h, {shared}).index_only);
  CHECK_FALSE(edgert::detail::reindex_plan(h, {"*** in database main ***\n" + shared}).index_only);
  CHECK_FALSE(
      edgert::detail::reindex_plan(h, {shared, "row 12 missing from index sqlite_autoindex_outbox_1"}).index_only);
  CHECK_FALSE(edgert::detail::reindex_plan(h, {"Tree " + idx + " page 9: invalid page number 99999"}).index_only);
  // A table's own b-tree, and a report cut short at the limit (what follows is unseen).
  CHECK_FALSE(edgert::detail::reindex_plan(h, {"Tree " + std::to_string(table_root) + " page 9 cell 2: Rowid 5 out of order"})
                  .index_only);
  std::vector<std::string> many;
  for (int i = 0; i < edgert::detail::kIntegrityMaxProblems; ++i) many.push_back("row " + std::to_string(i + 1) + " missing from index outbox_due");
  CHECK_FALSE(edgert::detail::reindex_plan(h, many).index_only);
  // Index-only findings are still REINDEX's to repair.
  const auto plan = edgert::detail::reindex_plan(
      h,
      {"row 7 missing from index sqlite_autoindex_outbox_1", "wrong # of entries in index sqlite_autoindex_outbox_1",
       "*** in database main ***\nTree " + idx + " page " + idx + " cell 3: Rowid 12 out of order"});
  CHECK(plan.index_only);
  CHECK(plan.indexes == std::set<std::string>{"sqlite_autoindex_outbox_1"});
  sqlite3_close(h);
}
