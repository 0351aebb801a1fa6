// Mailbox::open under faults (docs/mailbox.md, "Durability and recovery"): only a file
// SQLite reports as corrupt or not a database is quarantined; every other failure
// leaves the file untouched and makes open fail with a message naming cause and file.
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "skip.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
namespace fs = std::filesystem;
using edgert::testing::files_with_prefix;
using edgert::testing::read_all;
using edgert::testing::write_all;
using edgert::testing::capture_stderr;

namespace {

using edgert::testing::Scratch;

Envelope env(int n) { return edgert::testing::numbered_envelope(n); }

MailboxOptions options(const fs::path& dir) {
  MailboxOptions o;
  o.data_dir = dir.string();
  o.busy_timeout_ms = 200;
  return o;
}

// A healthy mailbox holding `n` pending messages, closed again.
void make_live(const fs::path& dir, int n) {
  auto mb = Mailbox::open(options(dir));
  REQUIRE(mb.ok());
  for (int i = 0; i < n; ++i) REQUIRE(mb.value()->send(env(i)).ok());
}

std::size_t pending_count(const fs::path& dir) {
  auto mb = Mailbox::open(options(dir));
  REQUIRE(mb.ok());
  auto p = mb.value()->pending(1000);
  REQUIRE(p.ok());
  return p.value().size();
}

}  // namespace

TEST_CASE("open: garbage bytes are quarantined and a fresh mailbox starts", "[mailbox][mailbox_fault]") {
  Scratch s;
  fs::create_directories(s.dir);
  const std::string garbage(8192, '\x5a');
  write_all(s.dir / "mailbox.db", garbage);
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  const auto moved = files_with_prefix(s.dir, "mailbox.db.corrupt-");
  REQUIRE(moved.size() == 1);
  CHECK(read_all(s.dir / moved[0]) == garbage);  // kept byte for byte
  REQUIRE(mb.value()->send(env(1)).ok());
  CHECK(mb.value()->pending(10).value().size() == 1);
}

TEST_CASE("open: two quarantines in the same second keep both files", "[mailbox][mailbox_fault]") {
  Scratch s;
  fs::create_directories(s.dir);
  const std::string first(8192, '\x5a');
  const std::string second(8192, '\x33');
  MailboxOptions o = options(s.dir);
  o.clock_ms = [] { return std::int64_t{1'700'000'000'000}; };  // both stamps identical
  write_all(s.dir / "mailbox.db", first);
  { REQUIRE(Mailbox::open(o).ok()); }
  fs::remove(s.dir / "mailbox.db-wal");
  fs::remove(s.dir / "mailbox.db-shm");
  write_all(s.dir / "mailbox.db", second);
  { REQUIRE(Mailbox::open(o).ok()); }
  const auto moved = files_with_prefix(s.dir, "mailbox.db.corrupt-");
  std::vector<std::string> contents;
  for (const auto& name : moved) {
    if (name.find("-wal") == std::string::npos && name.find("-shm") == std::string::npos) {
      contents.push_back(read_all(s.dir / name));
    }
  }
  REQUIRE(contents.size() == 2);
  CHECK(((contents[0] == first && contents[1] == second) || (contents[0] == second && contents[1] == first)));
}

TEST_CASE("open: a database locked by another connection is an error, never quarantined",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  make_live(s.dir, 3);
  const fs::path db = s.dir / "mailbox.db";
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  SECTION("WAL database held in exclusive locking mode") {
    REQUIRE(sqlite3_exec(other, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; DELETE FROM idempotency;", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
  }
  SECTION("rollback-journal database mid-creation (a second opener racing the first)") {
    REQUIRE(sqlite3_exec(other, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN EXCLUSIVE; DELETE FROM idempotency;", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
  }
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE_FALSE(mb.ok());
  CHECK(mb.status().code() == ErrorCode::io_error);
  CHECK_THAT(mb.status().message(), Contains("locked") || Contains("busy"));
  CHECK_THAT(mb.status().message(), Contains(db.string()));
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  REQUIRE(fs::exists(db));
  REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  CHECK(pending_count(s.dir) == 3);  // the live messages are all still there
}

TEST_CASE("open: a zero-byte mailbox.db is reported at WARNING, and a WAL beside it is kept",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  fs::create_directories(s.dir);
  write_all(s.dir / "mailbox.db", "");
  const std::string wal(4096, '\x42');
  const bool with_wal = GENERATE(false, true);
  if (with_wal) write_all(s.dir / "mailbox.db-wal", wal);
  bool opened = false;
  const std::string log = capture_stderr(s.dir, [&] {
    auto mb = Mailbox::open(options(s.dir));
    opened = mb.ok();
    if (opened) opened = mb.value()->send(env(1)).ok();
  });
  INFO(log);
  CHECK(opened);
  CHECK_THAT(log, Contains("warn"));
  CHECK_THAT(log, Contains("zero bytes"));
  CHECK(fs::file_size(s.dir / "mailbox.db") > 0);  // now a real database
  const auto kept = files_with_prefix(s.dir, "mailbox.db-wal.orphan-");
  if (with_wal) {
    REQUIRE(kept.size() == 1);
    CHECK(read_all(s.dir / kept[0]) == wal);
    CHECK_THAT(log, Contains(kept[0]));
  } else {
    CHECK(kept.empty());
  }
}

// The database moved or deleted with its WAL left behind: SQLite would create an empty
// database and discard the WAL (found in review).
TEST_CASE("open: a WAL without its mailbox.db is refused and left untouched", "[mailbox][mailbox_fault]") {
  Scratch s;
  fs::create_directories(s.dir);
  const std::string wal(8192, '\x42');
  write_all(s.dir / "mailbox.db-wal", wal);
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE_FALSE(mb.ok());
  CHECK(mb.status().code() == edgert::ErrorCode::io_error);
  CHECK_THAT(mb.status().message(), Contains("mailbox.db is missing but its 8192-byte WAL"));
  CHECK_THAT(mb.status().message(), Contains("left untouched"));
  CHECK_FALSE(fs::exists(s.dir / "mailbox.db"));
  CHECK(read_all(s.dir / "mailbox.db-wal") == wal);
  // Once the operator moved it away, the node starts.
  fs::rename(s.dir / "mailbox.db-wal", s.dir / "kept.wal");
  CHECK(Mailbox::open(options(s.dir)).ok());
}

TEST_CASE("open: a mailbox.db the process may not open is an error naming the cause",
          "[mailbox][mailbox_fault][root][open_denied]") {
  if (::geteuid() != 0) EDGERT_SKIP("needs root to fork a child that drops to uid 65534");
  Scratch s;
  make_live(s.dir, 2);
  const fs::path db = s.dir / "mailbox.db";
  fs::permissions(s.dir, fs::perms::all);  // the directory is writable: a rename would succeed
  fs::permissions(db, fs::perms::owner_read | fs::perms::owner_write);  // root only
  const fs::path report = s.dir.parent_path() / (s.dir.filename().string() + ".child");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 10;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      auto mb = Mailbox::open(options(s.dir));
      std::ofstream(report) << (mb.ok() ? std::string("opened") : mb.status().message());
      rc = mb.ok() ? 1 : 0;
    }
    std::_Exit(rc);
  }
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) != 10);
  const std::string message = read_all(report);
  fs::remove(report);
  INFO(message);
  CHECK(WEXITSTATUS(wstatus) == 0);  // open failed
  CHECK_THAT(message, Contains("Permission denied"));
  CHECK_THAT(message, Contains(db.string()));
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  REQUIRE(fs::exists(db));
  CHECK(pending_count(s.dir) == 2);
}

TEST_CASE("open: a read-only mailbox.db fails at open, not at the first send",
          "[mailbox][mailbox_fault][root][open_readonly_db]") {
  Scratch s;
  make_live(s.dir, 2);
  const fs::path db = s.dir / "mailbox.db";
  // Root ignores file modes; the immutable attribute binds root as well.
  const std::string chattr = "chattr +i '" + db.string() + "' 2>/dev/null";
  if (std::system(chattr.c_str()) != 0) {
    EDGERT_SKIP("chattr +i failed (needs root / CAP_LINUX_IMMUTABLE and a file system that has it)");
  }
  auto mb = Mailbox::open(options(s.dir));
  const std::string unchattr = "chattr -i '" + db.string() + "'";
  REQUIRE(std::system(unchattr.c_str()) == 0);
  if (mb.ok()) {
    INFO("open succeeded; a send says: " << mb.value()->send(env(9)).status().message());
    FAIL("a read-only mailbox opened");
  }
  CHECK(mb.status().code() == ErrorCode::io_error);
  CHECK_THAT(mb.status().message(), Contains("read-only") || Contains("not permitted"));
  CHECK_THAT(mb.status().message(), Contains(db.string()));
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  CHECK(pending_count(s.dir) == 2);
}

TEST_CASE("open: a read-only data directory fails at open", "[mailbox][mailbox_fault][root][open_readonly_dir]") {
  Scratch s;
  make_live(s.dir, 1);
  const std::string chattr = "chattr +i '" + s.dir.string() + "' 2>/dev/null";
  if (std::system(chattr.c_str()) != 0) {
    EDGERT_SKIP("chattr +i failed (needs root / CAP_LINUX_IMMUTABLE and a file system that has it)");
  }
  auto mb = Mailbox::open(options(s.dir));
  const std::string unchattr = "chattr -i '" + s.dir.string() + "'";
  REQUIRE(std::system(unchattr.c_str()) == 0);
  if (mb.ok()) {
    INFO("open succeeded; a send says: " << mb.value()->send(env(9)).status().message());
    FAIL("a mailbox in a read-only directory opened");
  }
  CHECK(mb.status().code() == ErrorCode::io_error);
  CHECK_THAT(mb.status().message(), Contains(s.dir.string()));
  CHECK_THAT(mb.status().message(), Contains("not writable"));
  CHECK_THAT(mb.status().message(), !Contains("corrupt"));  // the cause, not a misdiagnosis
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  CHECK(pending_count(s.dir) == 1);
}

TEST_CASE("open: a healthy mailbox on a full disk fails without quarantine",
          "[mailbox][mailbox_fault][root][open_disk_full]") {
  Scratch s;
  fs::create_directories(s.dir);
  if (::mount("tmpfs", s.dir.c_str(), "tmpfs", 0, "size=1m") != 0) {
    EDGERT_SKIP("cannot mount a 1 MiB tmpfs here (needs root / CAP_SYS_ADMIN)");
  }
  struct Unmount {
    fs::path dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{s.dir};
  make_live(s.dir, 5);
  REQUIRE_FALSE(fs::exists(s.dir / "mailbox.db-shm"));  // a clean close removed it
  // Without the reserve the last run left (open gives it back first): a disk with no
  // room at all.
  fs::remove(s.dir / "mailbox.reserve");
  {
    std::ofstream fill(s.dir / "fill", std::ios::binary);
    const std::string block(4096, 'x');
    while (fill.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }
  {
    auto mb = Mailbox::open(options(s.dir));
    if (mb.ok()) {
      WARN("open succeeded on the full disk (SQLite needed no new space); nothing to check");
    } else {
      CHECK(mb.status().code() == ErrorCode::io_error);
      CHECK_THAT(mb.status().message(), Contains((s.dir / "mailbox.db").string()));
      CHECK_THAT(mb.status().message(), Contains("free disk space"));
    }
  }  // closed (and the data_dir lock released) before the files are looked at again
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  fs::remove(s.dir / "fill");
  CHECK(pending_count(s.dir) == 5);
}
