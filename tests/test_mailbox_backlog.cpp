// A 1-million-row backlog: opening the mailbox must not load it (bounded memory) and
// pending() must page through it. Speed is reported by mailbox_bench (open_1m_ms);
// the bound here is only a generous hang guard for sanitizer builds.
#include <edgert/mailbox.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace {

long rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("opening a 1M-row backlog is fast and does not load it", "[mailbox][slow]") {
  const auto dir = fs::temp_directory_path() / ("edgert-backlog-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  edgert::MailboxOptions o;
  o.data_dir = dir.string();
  { REQUIRE(edgert::Mailbox::open(o).ok()); }  // creates the schema

  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir / "mailbox.db").c_str(), &db) == SQLITE_OK);
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
  // 1M rows with 256-byte payloads, stored the way send() stores them, totals included.
  exec(db,
       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
       "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, priority, attempts, "
       "next_attempt_ms, expires_ms, created_ms) "
       "SELECT 'msg:' || printf('%032d', i), 'fleet', 'detection', "
       "'{\"message_id\":\"msg:' || printf('%032d', i) || '\",\"payload_type\":\"detection\",\"payload\":\"' || "
       "hex(randomblob(123)) || '\"}', 300, i % 3, 0, i, 9000000000000, i FROM n; "
       "UPDATE totals SET outbox_rows = outbox_rows + 1000000, outbox_bytes = outbox_bytes + 300000000;");
  sqlite3_close(db);

  const long rss_before = rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  auto mb = edgert::Mailbox::open(o);
  const auto open_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(mb.ok());
  auto page = mb.value()->pending(100);
  REQUIRE(page.ok());
  REQUIRE(page.value().size() == 100);
  CHECK(page.value()[0].priority == 2);  // highest priority first, across the whole backlog
  const auto st = mb.value()->stats().value();
  CHECK(st.outbox_rows == 1000000);
  const long grew_kib = rss_kib() - rss_before;
  INFO("open took " << open_ms << " ms; RSS grew by " << grew_kib << " KiB");
  CHECK(grew_kib < 64 * 1024);  // the backlog is ~400 MB: it was not loaded
  CHECK(open_ms < 20000);       // hang guard only; see mailbox_bench for the figure
  mb = edgert::Status{};
  fs::remove_all(dir);
}
