// Crash test: a child sends messages and prints each id as send() returns; we kill it
// with SIGKILL at random moments, 75 rounds. After each round the database passes
// integrity_check and every id the child printed is in the outbox. Zero lost.
// 20 more rounds then start two processes at once on the killed child's data_dir
// (recovering its WAL): exactly one opens it, the other is refused by the data_dir lock
// (docs/mailbox.md, "Second process on one data_dir"), and nothing is quarantined.
#include <edgert/mailbox.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <string>

extern char** environ;
namespace fs = std::filesystem;

namespace {

std::set<std::string> stored_ids(const std::string& db_path) {
  std::set<std::string> ids;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT message_id FROM outbox", -1, &st, nullptr) == SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) ids.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ids;
}

// Runs the child until `kill_after` past its first committed message (so slow
// starts under sanitizers still give every round real traffic), kills it, and
// returns everything it printed.
std::string run_and_kill(const std::string& dir, std::chrono::milliseconds kill_after, bool async) {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::string child = EDGERT_CRASH_CHILD;
  std::string mode = async ? "async" : "blocking";
  char* argv[] = {child.data(), const_cast<char*>(dir.c_str()), mode.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, child.c_str(), &fa, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);

  std::string printed;
  char buf[65536];
  // Until the first id arrives the deadline is a startup bound, not the kill time.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool started = false, killed = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!killed && left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, killed ? 1000 : static_cast<int>(std::max<long>(1, left.count()))) <= 0) {
      if (killed) break;
      continue;
    }
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;  // EOF after the kill (or the child died)
    printed.append(buf, static_cast<std::size_t>(n));
    if (!started) {
      started = true;
      deadline = std::chrono::steady_clock::now() + kill_after;
    }
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));  // it died by our SIGKILL, not by an error of its own
  return printed;
}


// What two children racing to open one data_dir did, each tallied on its own.
struct RaceTally {
  int opened = 0;         // printed "opened <id>"
  int lock_refusals = 0;  // printed "refused" with the data_dir lock message
  int other_lines = 0;    // printed anything else (or nothing)
  int exit_ok = 0;        // exited 0 (the winner, after its stdin closed)
  int exit_refused = 0;   // exited 3 (refused at open)
  int exit_other = 0;
  int corrupt_files = 0;  // mailbox.db.corrupt-* in the data_dir afterwards
};

// Starts two race children at once on `dir`; each either opens the mailbox (and sends
// one message, whose id joins `printed`) or is refused. The winner holds the mailbox
// until both have answered, so the two opens always overlap.
void race_to_open(const std::string& dir, std::set<std::string>& printed, RaceTally& tally) {
  struct Child {
    pid_t pid = 0;
    int to_child = -1, from_child = -1;
    std::string out;
  } children[2];
  std::string child = EDGERT_CRASH_CHILD;
  std::string mode = "race";
  for (auto& c : children) {
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    char* argv[] = {child.data(), const_cast<char*>(dir.c_str()), mode.data(), nullptr};
    REQUIRE(posix_spawn(&c.pid, child.c_str(), &fa, nullptr, argv, environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    c.to_child = in[1];
    c.from_child = out[0];
  }
  // Each child's first line (the answer to its open), within a generous bound.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (auto& c : children) {
    char buf[4096];
    while (c.out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{c.from_child, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::read(c.from_child, buf, sizeof buf);
      if (n <= 0) break;
      c.out.append(buf, static_cast<std::size_t>(n));
    }
  }
  for (auto& c : children) {
    ::close(c.to_child);  // the winner closes its mailbox and exits
    int status = 0;
    REQUIRE(::waitpid(c.pid, &status, 0) == c.pid);
    ::close(c.from_child);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    tally.exit_ok += code == 0;
    tally.exit_refused += code == 3;
    tally.exit_other += code != 0 && code != 3;
    const std::string line = c.out.substr(0, c.out.find('\n'));
    UNSCOPED_INFO("race child said: " << line);
    if (line.rfind("opened ", 0) == 0) {
      ++tally.opened;
      printed.insert(line.substr(7));
    } else if (line.rfind("refused ", 0) == 0 && line.find("in use by another process (pid ") != std::string::npos &&
               line.find("one node per data_dir") != std::string::npos) {
      ++tally.lock_refusals;
    } else {
      ++tally.other_lines;
    }
  }
  for (auto& e : fs::directory_iterator(dir)) {
    tally.corrupt_files += e.path().filename().string().rfind("mailbox.db.corrupt-", 0) == 0;
  }
}

// `rounds` times: run the child, kill it, (with `race`, let two processes race to open
// the data_dir), check the file and that every id ever printed is stored.
void crash_rounds(const std::string& name, int rounds, bool async, std::uint32_t seed, bool race = false) {
  const auto dir = fs::temp_directory_path() / ("edgert-crash-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> when(0, 200);
  std::set<std::string> all_printed;
  int rounds_with_output = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::string printed = run_and_kill(dir.string(), std::chrono::milliseconds(when(rng)), async);
    std::istringstream lines(printed);
    std::string line;
    std::size_t n = 0;
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      all_printed.insert(line);
      ++n;
    }
    rounds_with_output += n > 0;
    if (race) {
      RaceTally tally;
      race_to_open(dir.string(), all_printed, tally);
      INFO(name << " round " << round);
      CHECK(tally.opened == 1);
      CHECK(tally.lock_refusals == 1);
      CHECK(tally.other_lines == 0);
      CHECK(tally.exit_ok == 1);
      CHECK(tally.exit_refused == 1);
      CHECK(tally.exit_other == 0);
      REQUIRE(tally.corrupt_files == 0);
    }
    const auto check = edgert::Mailbox::check(dir.string());
    INFO(name << " round " << round << ": " << check.message());
    REQUIRE(check.ok());
    const auto ids = stored_ids((dir / "mailbox.db").string());
    std::size_t lost = 0;
    for (const auto& id : all_printed) lost += ids.count(id) == 0;
    INFO(name << " round " << round << ": " << all_printed.size() << " ids printed so far");
    REQUIRE(lost == 0);
  }
  CHECK(rounds_with_output == rounds);  // every round had real traffic when it was killed
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("SIGKILL at random moments loses no committed message", "[mailbox][crash]") {
  crash_rounds("send", 50, false, 20261122);
}

TEST_CASE("SIGKILL at random moments loses no message whose send_async completed", "[mailbox][crash]") {
  crash_rounds("send_async", 25, true, 20261123);
}

TEST_CASE("after a SIGKILL two processes race to open the data_dir: one wins, none lost, none quarantined",
          "[mailbox][crash][mailbox_fault]") {
  crash_rounds("race", 20, false, 20261127, /*race=*/true);
}
