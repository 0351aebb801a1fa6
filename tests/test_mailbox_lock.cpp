// One owner per data_dir and Mailbox::restore (docs/mailbox.md, "Second process on one
// data_dir" and "Restoring a backup").
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

using Catch::Contains;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
namespace fs = std::filesystem;
using edgert::testing::files_with_prefix;
using edgert::testing::read_all;
using edgert::testing::write_all;

namespace {

using edgert::testing::Scratch;

Envelope env(int n) { return edgert::testing::numbered_envelope(n); }

MailboxOptions options(const fs::path& dir) {
  MailboxOptions o;
  o.data_dir = dir.string();
  o.busy_timeout_ms = 200;
  return o;
}

// Outbox message ids of the database at `db` (read through SQLite, with any WAL beside it).
std::set<std::string> outbox_ids(const fs::path& db) {
  std::set<std::string> ids;
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT message_id FROM outbox", -1, &st, nullptr) == SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) ids.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(h);
  return ids;
}

// Name -> content of every file in `dir`.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = read_all(e.path());
  return out;
}

// Runs `argv` to completion; returns its exit code and stdout.
std::pair<int, std::string> run(std::vector<std::string> args) {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

}  // namespace

TEST_CASE("lock: a second Mailbox on one data_dir in the same process is refused at once",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  auto first = Mailbox::open(options(s.dir));
  REQUIRE(first.ok());
  const auto id = first.value()->send(env(1));
  REQUIRE(id.ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto second = Mailbox::open(options(s.dir));
  const auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == ErrorCode::io_error);
  CHECK_THAT(second.status().message(), Contains(s.dir.string() + ": in use by"));
  CHECK_THAT(second.status().message(), Contains("(pid " + std::to_string(::getpid()) + " holds " +
                                                 (s.dir / ".lock").string() + ")"));
  CHECK_THAT(second.status().message(), Contains("one node per data_dir"));
  CHECK(waited < std::chrono::seconds(5));  // no busy_timeout wait (generous bound)
  CHECK(first.value()->send(env(2)).ok());  // the owner is unaffected
  first.value().reset();
  auto third = Mailbox::open(options(s.dir));  // released with the first Mailbox
  REQUIRE(third.ok());
  CHECK(third.value()->pending(10).value().size() == 2);
}

TEST_CASE("lock: another process is refused, naming the holder's pid", "[mailbox][mailbox_fault]") {
  Scratch s;
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  const auto [code, out] = run({EDGERT_CRASH_CHILD, s.dir.string(), "race"});
  INFO(out);
  CHECK(code == 3);
  CHECK_THAT(out, Contains("refused " + s.dir.string() + ": in use by another process (pid " +
                           std::to_string(::getpid()) + " holds " + (s.dir / ".lock").string() +
                           "); one node per data_dir"));
  CHECK(files_with_prefix(s.dir, "mailbox.db.corrupt-").empty());
  mb.value().reset();
  // Free again: the same child now opens it.
  int in[2];
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  ::close(in[1]);  // its stdin is at EOF: it exits right after opening
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  std::string child = EDGERT_CRASH_CHILD, dir = s.dir.string(), mode = "race";
  char* argv[] = {child.data(), dir.data(), mode.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE("lock: a child process started by the owner does not inherit the lock", "[mailbox][mailbox_fault]") {
  Scratch s;
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  // A long-lived child spawned while the lock is held (as the plugin scanner is).
  std::string sleep_bin = "/bin/sleep", secs = "60";
  char* argv[] = {sleep_bin.data(), secs.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) == 0);
  mb.value().reset();
  auto again = Mailbox::open(options(s.dir));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  INFO((again.ok() ? std::string("opened") : again.status().message()));
  CHECK(again.ok());
}

TEST_CASE("restore: exactly the backed-up messages return, a stale WAL beside the db notwithstanding",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path backup = s.dir.parent_path() / (s.dir.filename().string() + ".backup");
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(p.string() + suffix, ec);
    }
  } cleanup{backup};
  std::set<std::string> backed_up, later;
  std::string stale_wal;
  {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    for (int i = 0; i < 20; ++i) backed_up.insert(mb.value()->send(env(i)).value());
    REQUIRE(Mailbox::backup(s.dir.string(), backup.string()).ok());
    for (int i = 20; i < 50; ++i) later.insert(mb.value()->send(env(i)).value());
    stale_wal = read_all(s.dir / "mailbox.db-wal");  // the later sends' frames
  }
  REQUIRE(stale_wal.size() > 32);
  write_all(s.dir / "mailbox.db-wal", stale_wal);  // as a crash would leave it
  std::set<std::string> all = backed_up;
  all.insert(later.begin(), later.end());

  auto restored = Mailbox::restore(s.dir.string(), backup.string());
  INFO((restored.ok() ? restored.value() : restored.status().message()));
  REQUIRE(restored.ok());
  CHECK_THAT(restored.value(), Contains("mailbox.db.pre-restore-"));
  CHECK_FALSE(fs::exists(s.dir / "mailbox.db-wal"));
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  std::set<std::string> now;
  for (auto& m : mb.value()->pending(1000).value()) now.insert(m.envelope.message_id);
  CHECK(now == backed_up);
  CHECK(Mailbox::check(s.dir.string()).ok());
  mb.value().reset();
  // The operator's data was moved aside, WAL and all, never deleted.
  const fs::path aside = s.dir / fs::path(restored.value()).filename();
  REQUIRE(fs::exists(aside));
  CHECK(read_all(aside.string() + "-wal") == stale_wal);
  CHECK(outbox_ids(aside) == all);
  CHECK(files_with_prefix(s.dir, "mailbox.db.restore").empty());  // no temporary left
}

// Issue 19 item 5: a backup predates messages the node has since received and acted
// on; restoring it must not make them new again (docs/mailbox.md, "Restoring a backup").
TEST_CASE("restore: the inbox received after the backup is kept, so those messages stay duplicates and do not rerun",
          "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path backup = s.dir.parent_path() / (s.dir.filename().string() + ".replay-backup");
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(p.string() + suffix, ec);
    }
  } cleanup{backup};
  auto cmd = [](const std::string& id) {
    Envelope e;
    e.message_id = id;
    e.sender_node_id = "backend";
    e.recipient_node_id = "node-a";
    e.payload_type = "command";
    e.payload = R"({"command":"TRIGGER"})";
    return e;
  };
  const std::vector<std::string> ids = {"ran-before", "ran-after-backup", "arrived-after", "pending-after"};
  {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    auto& m = *mb.value();
    REQUIRE(m.store(cmd("ran-before")).value() == edgert::StoreResult::stored);
    REQUIRE(m.ack("ran-before").ok());
    REQUIRE(m.store(cmd("ran-after-backup")).value() == edgert::StoreResult::stored);  // unacked in the backup
    REQUIRE(m.send(env(1)).ok());
    REQUIRE(Mailbox::backup(s.dir.string(), backup.string()).ok());
    REQUIRE(m.ack("ran-after-backup").ok());
    REQUIRE(m.store(cmd("arrived-after")).value() == edgert::StoreResult::stored);
    REQUIRE(m.ack("arrived-after").ok());
    REQUIRE(m.store(cmd("pending-after")).value() == edgert::StoreResult::stored);  // stored, not yet run
  }
  auto restored = Mailbox::restore(s.dir.string(), backup.string());
  INFO((restored.ok() ? restored.value() : restored.status().message()));
  REQUIRE(restored.ok());
  CHECK(Mailbox::check(s.dir.string()).ok());
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  auto& m = *mb.value();
  // Only the one the node had not run yet is still to run; none of the others again.
  auto un = m.unacked("command");
  REQUIRE(un.ok());
  std::set<std::string> waiting;
  for (const auto& msg : un.value()) waiting.insert(msg.envelope.message_id);
  CHECK(waiting == std::set<std::string>{"pending-after"});
  for (const auto& id : ids) {
    INFO(id);
    auto again = m.store(cmd(id));
    REQUIRE(again.ok());
    CHECK(again.value() == edgert::StoreResult::duplicate);
  }
  auto st = m.stats();
  REQUIRE(st.ok());
  CHECK(st.value().inbox_rows == ids.size());  // the running totals follow the carried rows
  CHECK(st.value().inbox_unacked == 1);
  CHECK(st.value().outbox_rows == 1);           // the outbox is the backup's
  mb.value().reset();
  CHECK(Mailbox::check(s.dir.string()).ok());
}

TEST_CASE("restore: refused while a Mailbox holds the data_dir, nothing changed", "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path backup = s.dir.parent_path() / (s.dir.filename().string() + ".backup");
  auto mb = Mailbox::open(options(s.dir));
  REQUIRE(mb.ok());
  REQUIRE(mb.value()->send(env(1)).ok());
  REQUIRE(Mailbox::backup(s.dir.string(), backup.string()).ok());
  REQUIRE(mb.value()->send(env(2)).ok());
  // The open mailbox's own checkpointer may rewrite mailbox.db, -wal and -shm at any
  // moment (its idle round), so "nothing changed" is checked as: the same files, the same
  // database file (not one renamed over it) and the same rows, not the same bytes.
  auto names = [&] {
    std::set<std::string> out;
    for (auto& e : fs::directory_iterator(s.dir)) out.insert(e.path().filename().string());
    return out;
  };
  auto inode = [&] {
    struct stat sb {};
    REQUIRE(::stat((s.dir / "mailbox.db").c_str(), &sb) == 0);
    return sb.st_ino;
  };
  const auto names_before = names();
  const auto inode_before = inode();
  const auto ids_before = outbox_ids(s.dir / "mailbox.db");
  REQUIRE(ids_before.size() == 2);
  auto r = Mailbox::restore(s.dir.string(), backup.string());
  fs::remove(backup);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::io_error);
  CHECK_THAT(r.status().message(), Contains("in use by"));
  CHECK_THAT(r.status().message(), Contains("pid " + std::to_string(::getpid())));
  CHECK(names() == names_before);
  CHECK(inode() == inode_before);
  CHECK(outbox_ids(s.dir / "mailbox.db") == ids_before);
  CHECK(mb.value()->pending(10).value().size() == 2);
}

TEST_CASE("restore: a corrupt or non-mailbox backup is refused and nothing changes", "[mailbox][mailbox_fault]") {
  Scratch s;
  const fs::path bad = s.dir.parent_path() / (s.dir.filename().string() + ".bad");
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(p.string() + suffix, ec);
    }
  } cleanup{bad};
  {
    auto mb = Mailbox::open(options(s.dir));
    REQUIRE(mb.ok());
    for (int i = 0; i < 5; ++i) REQUIRE(mb.value()->send(env(i)).ok());
  }
  std::string expect;
  SECTION("garbage bytes") {
    write_all(bad, std::string(8192, '\x5a'));
    expect = "not a database";
  }
  SECTION("a SQLite database without the mailbox schema") {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(bad.c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, "CREATE TABLE foo(x); INSERT INTO foo VALUES (1);", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(h);
    expect = "not a mailbox";
  }
  SECTION("a mailbox with a damaged page") {
    REQUIRE(Mailbox::backup(s.dir.string(), bad.string()).ok());
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    const std::string garbage(4096, '\x33');
    f.seekp(4096);  // page 2: a table's root
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    expect = "";  // SQLite's wording varies: "malformed" or an integrity_check finding
  }
  SECTION("a file that does not exist") {
    expect = "No such file";
  }
  const auto before = snapshot(s.dir);
  auto r = Mailbox::restore(s.dir.string(), bad.string());
  REQUIRE_FALSE(r.ok());
  INFO(r.status().message());
  CHECK(r.status().code() == ErrorCode::io_error);
  CHECK_THAT(r.status().message(), Contains(bad.string()));
  if (!expect.empty()) CHECK_THAT(r.status().message(), Contains(expect));
  auto after = snapshot(s.dir);
  after.erase(".lock");  // restore takes the lock, which rewrites the file
  auto before_nolock = before;
  before_nolock.erase(".lock");
  CHECK(after == before_nolock);
  CHECK(outbox_ids(s.dir / "mailbox.db").size() == 5);
}
