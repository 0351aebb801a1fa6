// Crash test: a child sends messages and prints each id as send() returns; we kill it
// with SIGKILL at random moments, 50 rounds. After each round the database passes
// integrity_check and every id the child printed is in the outbox. Zero lost.
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


// `rounds` times: run the child, kill it, check the file and that every id it ever
// printed is stored.
void crash_rounds(const std::string& name, int rounds, bool async, std::uint32_t seed) {
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
