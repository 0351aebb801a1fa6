// registry.db (src/registry/registry_store.hpp): batched writes of a ComponentRegistry,
// the restart history, a damaged file moved aside, failing writes retried, and reading
// it from another connection while a writer holds the write lock. Real SQLite files.
#include <edgert/component_registry.hpp>
#include <edgert/node_status.hpp>

#include "registry/registry_store.hpp"

#include "fake_clock.hpp"
#include "log_capture.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using edgert::ComponentRegistry;
using edgert::ComponentStatus;
using edgert::detail::read_registry_db;
using edgert::detail::RegistryStore;
using edgert::detail::StoredComponentRow;
using edgert::testing::FakeClocks;
using edgert::testing::LogCapture;
using edgert::testing::MadeScratch;
namespace fs = std::filesystem;

namespace {

ComponentRegistry::Options registry_options(FakeClocks& clocks) {
  ComponentRegistry::Options o;
  o.steady_ms = clocks.steady_fn();
  o.wall_ms = clocks.wall_fn();
  return o;
}

RegistryStore::Options store_options(const fs::path& path, FakeClocks& clocks) {
  RegistryStore::Options o;
  o.path = path.string();
  o.node_id = "node-t";
  o.version = "9.9.9";
  o.wall_ms = clocks.wall_fn();
  return o;
}

std::map<std::string, StoredComponentRow> rows_of(const fs::path& path) {
  auto stored = read_registry_db(path.string());
  REQUIRE(stored.ok());
  std::map<std::string, StoredComponentRow> out;
  for (auto& r : stored.value().components) out[r.id] = r;
  return out;
}

// A plain read-write connection, as another program would open the file.
struct RawDb {
  sqlite3* db = nullptr;
  explicit RawDb(const fs::path& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
  }
  ~RawDb() { sqlite3_close(db); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO(sql << ": " << (err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
};

std::vector<fs::path> moved_aside(const fs::path& dir, const std::string& kind) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("registry.db." + kind + "-", 0) == 0 && name.find("-wal") == std::string::npos &&
        name.find("-shm") == std::string::npos) {
      out.push_back(e.path());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("registry store round-trip through a real file and a fake clock", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto cam = reg.register_component("cam", "stream", {{"camera", "front"}});
  auto det = reg.register_component("det-1", "instance", {}, {.expects_progress = true});
  cam.beat();
  det.progress();
  reg.sweep();  // starting -> ready
  clocks.advance(250);
  cam.report_error("capture: end of file");
  det.add_restart();
  det.add_restart();
  const fs::path path = s.dir / "registry.db";
  {
    RegistryStore store(reg, store_options(path, clocks));
    REQUIRE(store.write_batch().ok());
    auto stored = read_registry_db(path.string());
    REQUIRE(stored.ok());
    const auto& n = stored.value().node;
    CHECK(n.node_id == "node-t");
    CHECK(n.pid == static_cast<std::int64_t>(::getpid()));
    CHECK(n.version == "9.9.9");
    CHECK(n.state == "running");
    CHECK(n.last_write_ms == clocks.wall.load());
    CHECK(n.started_at_ms == clocks.wall.load());
    CHECK(n.write_interval_ms == 1000);
    REQUIRE(stored.value().components.size() == 2);
    // Sorted by kind, then name.
    CHECK(stored.value().components[0].id == "instance/det-1");
    CHECK(stored.value().components[1].id == "stream/cam");
    auto rows = rows_of(path);
    const auto& c = rows.at("stream/cam");
    CHECK(c.status == "ready");
    CHECK(c.labels == std::map<std::string, std::string>{{"camera", "front"}});
    CHECK(c.last_error == "capture: end of file");
    CHECK(c.last_error_ms == clocks.wall.load());
    CHECK(c.last_heartbeat_ms == clocks.wall.load() - 250);
    CHECK(c.attached);
    const auto& d = rows.at("instance/det-1");
    CHECK(d.restarts == 2);
    CHECK(d.expects_progress);
    CHECK(d.last_progress_ms == clocks.wall.load() - 250);

    // The restart history: durable per call, filtered by component and time, pruned.
    const std::int64_t t0 = clocks.wall.load();
    REQUIRE(store.record_restart("instance/det-1", t0 - 5000, "quarantined: 5 errors").ok());
    REQUIRE(store.record_restart("instance/det-1", t0 - 1000, "stalled").ok());
    REQUIRE(store.record_restart("stream/cam", t0 - 1000, "reconnect").ok());
    CHECK(store.record_restart("", t0, "x").code() == edgert::ErrorCode::invalid_argument);
    auto since = store.restarts_since("instance/det-1", t0 - 2000);
    REQUIRE(since.ok());
    REQUIRE(since.value().size() == 1);
    CHECK(since.value()[0].reason == "stalled");
    CHECK(since.value()[0].at_ms == t0 - 1000);
    REQUIRE(store.restarts_since("instance/det-1", 0).value().size() == 2);

    clocks.advance(1000);
    cam.reset();  // released: stopped
    store.stop();
    auto after = read_registry_db(path.string());
    REQUIRE(after.ok());
    CHECK(after.value().node.state == "stopped");
    CHECK(after.value().node.last_write_ms == clocks.wall.load());
    CHECK(rows_of(path).at("stream/cam").status == "stopped");
  }
  // A node restart: the history is still there, the old run's rows are replaced.
  ComponentRegistry reg2(registry_options(clocks));
  auto only = reg2.register_component("det-1", "instance");
  RegistryStore store2(reg2, store_options(path, clocks));
  REQUIRE(store2.write_batch().ok());
  auto rows = rows_of(path);
  CHECK(rows.size() == 1);
  CHECK(rows.count("instance/det-1") == 1);
  REQUIRE(store2.restarts_since("instance/det-1", 0).value().size() == 2);
  auto pruned = store2.prune(clocks.wall.load() - 3000);
  REQUIRE(pruned.ok());
  CHECK(pruned.value() == 1);
  CHECK(store2.restarts_since("instance/det-1", 0).value().size() == 1);
  CHECK(store2.restarts_since("stream/cam", 0).value().size() == 1);
}

TEST_CASE("a registry batch writes only the rows that changed", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto a = reg.register_component("a", "worker");
  auto b = reg.register_component("b", "worker");
  auto c = reg.register_component("c", "worker");
  for (auto* h : {&a, &b, &c}) h->beat();
  reg.sweep();
  const fs::path path = s.dir / "registry.db";
  RegistryStore store(reg, store_options(path, clocks));
  REQUIRE(store.write_batch().ok());
  const std::int64_t t1 = clocks.wall.load();
  CHECK(store.stats().last_batch_rows == 3);

  // Nothing changed (time passes, nobody beats, no sweep): only the node row.
  clocks.advance(1000);
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().last_batch_rows == 0);
  CHECK(read_registry_db(path.string()).value().node.last_write_ms == clocks.wall.load());

  // One status change: one row.
  clocks.advance(1000);
  b.set_status(ComponentStatus::degraded, "half the frames");
  REQUIRE(store.write_batch().ok());
  const std::int64_t t3 = clocks.wall.load();
  CHECK(store.stats().last_batch_rows == 1);
  auto rows = rows_of(path);
  CHECK(rows.at("worker/a").written_ms == t1);  // counted from the file, not the store
  CHECK(rows.at("worker/b").written_ms == t3);
  CHECK(rows.at("worker/b").status == "degraded");
  CHECK(rows.at("worker/c").written_ms == t1);

  // A heartbeat is a change once it moved by at least heartbeat_resolution (500 ms).
  a.beat();  // 2 s after the one written
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().last_batch_rows == 1);
  clocks.advance(100);
  a.beat();
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().last_batch_rows == 0);
  clocks.advance(1000);
  a.beat();
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().last_batch_rows == 1);
  CHECK(rows_of(path).at("worker/a").written_ms == clocks.wall.load());

  // A row that left the registry is deleted.
  REQUIRE(reg.remove("worker/c"));
  clocks.advance(1000);
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().rows_deleted == 1);
  rows = rows_of(path);
  CHECK(rows.size() == 2);
  CHECK(rows.count("worker/c") == 0);
  CHECK(store.stats().rows_written == 6);
  CHECK(store.stats().batches == 7);
}

TEST_CASE("a corrupt registry.db is moved aside and a fresh one started", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto a = reg.register_component("a", "worker");
  const fs::path path = s.dir / "registry.db";
  LogCapture logs;

  SECTION("not a database") {
    std::ofstream(path) << std::string(8192, 'x');
  }
  SECTION("a database truncated in the middle") {
    {
      RegistryStore first(reg, store_options(path, clocks));
      for (int i = 0; i < 300; ++i) {
        REQUIRE(first.record_restart("worker/a", i, std::string(200, 'r')).ok());
      }
    }  // closed: checkpointed into the main file
    const auto size = fs::file_size(path);
    REQUIRE(size > 4 * 4096);
    fs::resize_file(path, size / 2 + 100);
  }
  const auto original_size = fs::file_size(path);

  RegistryStore store(reg, store_options(path, clocks));
  REQUIRE(store.write_batch().ok());
  CHECK(store.stats().moved_aside == 1);
  const auto aside = moved_aside(s.dir, "corrupt");
  REQUIRE(aside.size() == 1);
  CHECK(fs::file_size(aside[0]) == original_size);  // kept as it was
  CHECK(rows_of(path).count("worker/a") == 1);
  CHECK(store.restarts_since("worker/a", 0).value().empty());
  const auto errors = logs.errors();
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Catch::Contains(path.string() + " is damaged") && Catch::Contains(aside[0].string()));
}

TEST_CASE("a registry.db from a newer schema is moved aside", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  const fs::path path = s.dir / "registry.db";
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE future(x); PRAGMA user_version = 99");
  }
  CHECK(read_registry_db(path.string()).status().code() == edgert::ErrorCode::unsupported);
  LogCapture logs;
  RegistryStore store(reg, store_options(path, clocks));
  REQUIRE(store.write_batch().ok());
  REQUIRE(moved_aside(s.dir, "newer").size() == 1);
  CHECK(read_registry_db(path.string()).ok());
  REQUIRE(logs.errors().size() == 1);
  CHECK_THAT(logs.errors()[0], Catch::Contains("from a newer edgert") && Catch::Contains("schema version 99"));
}

TEST_CASE("failing registry writes are logged once and counted and retried", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto a = reg.register_component("a", "worker");
  const fs::path path = s.dir / "registry.db";
  RegistryStore store(reg, store_options(path, clocks));
  REQUIRE(store.write_batch().ok());
  LogCapture logs;
  {
    RawDb raw(path);
    raw.exec("CREATE TRIGGER test_full BEFORE INSERT ON node BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END");
  }
  a.set_status(ComponentStatus::degraded, "changed while failing");
  for (int i = 0; i < 5; ++i) {
    clocks.advance(1000);
    const auto st = store.write_batch();
    CHECK(st.code() == edgert::ErrorCode::io_error);
    CHECK_THAT(st.message(), Catch::Contains(path.string()) && Catch::Contains("injected: disk full"));
  }
  CHECK(store.stats().failures == 5);
  CHECK(logs.errors().size() == 1);
  CHECK(rows_of(path).at("worker/a").status == "starting");  // nothing of the failed batches landed
  {
    RawDb raw(path);
    raw.exec("DROP TRIGGER test_full");
  }
  clocks.advance(1000);
  REQUIRE(store.write_batch().ok());
  CHECK(rows_of(path).at("worker/a").status == "degraded");
  const auto warnings = logs.warnings();
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("after 5 failed attempt(s)"));
  CHECK(store.stats().last_error.empty());
}

TEST_CASE("registry.db is read while a writer holds a write transaction", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto a = reg.register_component("a", "worker");
  a.beat();
  reg.sweep();
  const fs::path path = s.dir / "registry.db";
  RegistryStore store(reg, store_options(path, clocks));
  REQUIRE(store.write_batch().ok());

  RawDb writer(path);
  writer.exec("BEGIN IMMEDIATE");
  writer.exec("UPDATE components SET status = 'failed'");
  writer.exec("UPDATE node SET state = 'stopped'");
  const auto start = std::chrono::steady_clock::now();
  auto stored = read_registry_db(path.string(), 60000);
  REQUIRE(stored.ok());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));  // not a busy wait
  CHECK(stored.value().node.state == "running");  // the last commit, not the open transaction
  REQUIRE(stored.value().components.size() == 1);
  CHECK(stored.value().components[0].status == "ready");

  // The whole status view too, read-only beside the writer (no mailbox here).
  edgert::NodeStatusOptions o;
  o.wall_ms = clocks.wall_fn();
  auto status = edgert::read_node_status(s.dir.string(), o);
  REQUIRE(status.ok());
  CHECK(status.value().running);
  CHECK(status.value().exit_code() == 0);
  CHECK_FALSE(status.value().mailbox.readable);
  CHECK_THAT(status.value().mailbox.error, Catch::Contains("mailbox.db"));
  writer.exec("COMMIT");
  CHECK(read_registry_db(path.string()).value().node.state == "stopped");
}

TEST_CASE("node status judges a stale or dead writer as not running", "[registry]") {
  MadeScratch s;
  FakeClocks clocks;
  ComponentRegistry reg(registry_options(clocks));
  auto a = reg.register_component("a", "worker");
  a.beat();
  reg.sweep();
  const fs::path path = s.dir / "registry.db";
  RegistryStore::Options so = store_options(path, clocks);
  RegistryStore store(reg, so);
  REQUIRE(store.write_batch().ok());
  edgert::NodeStatusOptions o;
  o.wall_ms = clocks.wall_fn();
  auto at = [&](std::int64_t later_ms) {
    clocks.wall += later_ms;
    auto st = edgert::read_node_status(s.dir.string(), o);
    clocks.wall -= later_ms;
    REQUIRE(st.ok());
    return std::move(st).value();
  };
  // Three intervals, at least 3 s: 3000 ms is still running, 3001 is not.
  CHECK(at(3000).running);
  const auto stale = at(3001);
  CHECK_FALSE(stale.running);
  CHECK(stale.exit_code() == 2);
  CHECK_THAT(stale.not_running_reason, Catch::Contains("no write for 3.0 s"));
  REQUIRE(stale.components.size() == 1);
  CHECK(stale.components[0].status == "unknown");
  CHECK(stale.components[0].last_status == "ready");
  CHECK_THAT(stale.to_table(), Catch::Contains("NOT RUNNING: no write for"));
  CHECK_THAT(stale.to_json(), !Catch::Contains("\"status\":\"ready\"") && Catch::Contains("\"running\":false"));

  // A pid that is gone (a child that exited and was reaped).
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int wst = 0;
  REQUIRE(::waitpid(child, &wst, 0) == child);
  so.pid = child;
  RegistryStore dead(reg, so);
  REQUIRE(dead.write_batch().ok());
  const auto gone = at(0);
  CHECK_FALSE(gone.running);
  CHECK_THAT(gone.not_running_reason, Catch::Contains("process " + std::to_string(child) + " is gone"));
  CHECK(gone.components[0].status == "unknown");
}

TEST_CASE("status names the missing or unreadable registry.db", "[registry]") {
  MadeScratch s;
  auto missing = edgert::read_node_status(s.dir.string());
  CHECK(missing.status().code() == edgert::ErrorCode::not_found);
  CHECK_THAT(missing.status().message(), Catch::Contains((s.dir / "registry.db").string()));
  std::ofstream(s.dir / "registry.db") << std::string(4096, 'x');
  auto garbage = edgert::read_node_status(s.dir.string());
  CHECK(garbage.status().code() == edgert::ErrorCode::io_error);
  CHECK_THAT(garbage.status().message(), Catch::Contains((s.dir / "registry.db").string()));
}
