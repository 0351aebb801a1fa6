// `edgert-node status` against a real edgert-node: live (running, its components ready),
// stopped cleanly, and killed (not running, nothing shown ready), and without a registry.db.
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using edgert::testing::MadeScratch;
using edgert::testing::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct CliRun {
  int exit = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// `edgert-node status --data-dir DIR [extra]`, its exit code, stdout and stderr.
CliRun status_cli(const fs::path& scratch, const fs::path& data_dir, const std::string& extra = "--json") {
  const fs::path out = scratch / "status.out", err = scratch / "status.err";
  const std::string cmd = std::string("'") + EDGERT_NODE_BIN + "' status --data-dir '" + data_dir.string() + "' " +
                          extra + " > '" + out.string() + "' 2> '" + err.string() + "'";
  const int rc = std::system(cmd.c_str());
  CliRun r;
  r.exit = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

pid_t spawn_node(const fs::path& cfg, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl(EDGERT_NODE_BIN, EDGERT_NODE_BIN, "run", cfg.c_str(), "--duration", "120", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Kills the node if a failed REQUIRE leaves it running.
struct Reaper {
  pid_t pid;
  ~Reaper() {
    if (::waitpid(pid, nullptr, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

json parse(const CliRun& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  auto j = json::parse(r.out, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

const json* find_component(const json& doc, const std::string& id) {
  for (const auto& c : doc["components"]) {
    if (c.value("id", "") == id) return &c;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("edgert-node status reads a live node and then a stopped one", "[registry]") {
  MadeScratch s;
  const fs::path data = s.dir / "data";
  const fs::path cfg = s.dir / "node.yaml";
  std::ofstream(cfg) << "node: {id: status-live, data_dir: " << data.string() << ", heartbeat_interval_ms: 0}\n";
  const pid_t node = spawn_node(cfg, s.dir / "node.log");
  REQUIRE(node > 0);
  Reaper reaper{node};

  // Live: running, the store's own row ready (its first write shows it starting).
  CliRun live;
  auto store_ready = [&] {
    live = status_cli(s.dir, data);
    const auto j = json::parse(live.out, nullptr, false);
    if (!j.is_object()) return false;
    const json* row = find_component(j, "store/registry.db");
    return j["node"]["running"] == true && row != nullptr && (*row)["status"] == "ready";
  };
  {
    const bool ready = wait_until(store_ready, 60s, 100ms);
    INFO("last status: exit " << live.exit << "\n" << live.out << live.err << "\nnode log:\n" << slurp(s.dir / "node.log"));
    REQUIRE(ready);
  }
  json doc = parse(live);
  CHECK(doc["node"]["id"] == "status-live");
  CHECK(doc["node"]["running"] == true);
  CHECK(doc["node"]["pid"] == node);
  CHECK(doc["node"]["last_write_age_s"].get<double>() < 10);
  const json* store = find_component(doc, "store/registry.db");
  REQUIRE(store != nullptr);
  CHECK((*store)["status"] == "ready");
  CHECK((*store)["kind"] == "store");
  CHECK((*store)["heartbeat_age_s"].get<double>() < 10);
  CHECK((*store)["restarts"] == 0);
  CHECK((*store)["last_error"] == "");
  // The exit code agrees with the rows: 0 when every one is ready (or stopped), else 1.
  bool all_ready = true;
  for (const auto& c : doc["components"]) all_ready = all_ready && (c["status"] == "ready" || c["status"] == "stopped");
  CHECK(live.exit == (all_ready ? 0 : 1));
  CHECK(doc["mailbox"]["readable"] == true);
  CHECK(doc["mailbox"]["outbox_rows"] == 0);
  // The table for people, from the same file.
  // --config reads node.data_dir from the node's configuration.
  const fs::path out = s.dir / "by-config.out";
  const int rc = std::system((std::string("'") + EDGERT_NODE_BIN + "' status --json --config '" + cfg.string() + "' > '" +
                              out.string() + "' 2>&1")
                                 .c_str());
  CHECK(WEXITSTATUS(rc) == live.exit);
  CHECK(json::parse(slurp(out), nullptr, false)["node"]["id"] == "status-live");
  const CliRun table = status_cli(s.dir, data, "");
  CHECK(table.exit == live.exit);
  CHECK_THAT(table.out, Catch::Contains("node status-live: running, pid " + std::to_string(node)) &&
                            Catch::Matches("[\\s\\S]*\\nstore +registry\\.db +ready +[\\s\\S]*"));

  SECTION("stopped cleanly") {
    ::kill(node, SIGTERM);
    int wst = 0;
    REQUIRE(::waitpid(node, &wst, 0) == node);
    CHECK(WIFEXITED(wst));
    const CliRun after = status_cli(s.dir, data);
    CHECK(after.exit == 2);
    json stopped = parse(after);
    CHECK(stopped["node"]["running"] == false);
    CHECK(stopped["node"]["state"] == "stopped");
    CHECK_THAT(stopped["node"]["not_running_reason"].get<std::string>(), Catch::Contains("stopped"));
    REQUIRE(find_component(stopped, "store/registry.db") != nullptr);
    for (const auto& c : stopped["components"]) CHECK(c["status"] != "ready");
    // Reading a cleanly closed file creates nothing beside it (no -wal/-shm of this user).
    CHECK_FALSE(fs::exists(data / "registry.db-wal"));
    CHECK_FALSE(fs::exists(data / "registry.db-shm"));
  }
  SECTION("killed") {
    ::kill(node, SIGKILL);
    int wst = 0;
    REQUIRE(::waitpid(node, &wst, 0) == node);
    const CliRun after = status_cli(s.dir, data);
    CHECK(after.exit == 2);
    json killed = parse(after);
    CHECK(killed["node"]["running"] == false);
    CHECK(killed["node"]["state"] == "running");  // what it last wrote
    CHECK_THAT(killed["node"]["not_running_reason"].get<std::string>(),
               Catch::Contains("process " + std::to_string(node) + " is gone"));
    const json* row = find_component(killed, "store/registry.db");
    REQUIRE(row != nullptr);
    CHECK((*row)["status"] == "unknown");
    CHECK((*row)["last_status"] == "ready");
    for (const auto& c : killed["components"]) CHECK(c["status"] != "ready");
    const CliRun table_after = status_cli(s.dir, data, "");
    CHECK(table_after.exit == 2);
    CHECK_THAT(table_after.out, Catch::Contains("NOT RUNNING: process " + std::to_string(node) + " is gone"));
  }
}

TEST_CASE("edgert-node status without a registry.db exits 3 naming the file", "[registry]") {
  MadeScratch s;
  const CliRun r = status_cli(s.dir, s.dir / "nothing-here");
  CHECK(r.exit == 3);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::StartsWith("edgert-node: status: ") &&
                        Catch::Contains((s.dir / "nothing-here" / "registry.db").string()));
}
