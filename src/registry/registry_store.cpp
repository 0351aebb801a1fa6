#include "registry/registry_store.hpp"

#include "core/log.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <stdexcept>

namespace edgert::detail {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS node(
  only INTEGER PRIMARY KEY CHECK (only = 1),
  node_id TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  last_write_ms INTEGER NOT NULL,
  write_interval_ms INTEGER NOT NULL,
  version TEXT NOT NULL,
  state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS components(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL,
  labels TEXT NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  last_progress_ms INTEGER NOT NULL,
  expects_progress INTEGER NOT NULL,
  heartbeat_period_ms INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  last_error_ms INTEGER NOT NULL,
  restarts INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  attached INTEGER NOT NULL,
  written_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS restart_history(
  component_id TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS restart_history_by_component ON restart_history(component_id, at_ms);
CREATE INDEX IF NOT EXISTS restart_history_by_time ON restart_history(at_ms);
)sql";

std::int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

std::string utc_stamp(std::int64_t now_ms) {
  const std::time_t t = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  return stamp;
}

// Moves `path` and its -wal/-shm to the first free <path>.<kind>-<stamp>[-N]. Returns
// the new name, or io_error naming the file and the cause.
Result<std::string> move_aside(const std::string& path, const std::string& kind, std::int64_t now_ms) {
  const std::string base = path + "." + kind + "-" + utc_stamp(now_ms);
  for (int n = 1; n <= 1000; ++n) {
    const std::string to = n == 1 ? base : base + "-" + std::to_string(n);
    if (exists(to) || exists(to + "-wal") || exists(to + "-shm")) continue;
    if (::rename(path.c_str(), to.c_str()) != 0) {
      const int err = errno;
      return Status{ErrorCode::io_error, path + ": cannot move it to " + to + ": " + std::strerror(err)};
    }
    for (const char* suffix : {"-wal", "-shm"}) {
      if (!exists(path + suffix)) continue;
      if (::rename((path + suffix).c_str(), (to + suffix).c_str()) != 0) {
        // A WAL left beside the fresh file would be replayed into it: refuse.
        const int err = errno;
        return Status{ErrorCode::io_error, path + suffix + ": cannot move it to " + to + suffix + ": " +
                                               std::strerror(err) + " (" + path + " was moved to " + to + ")"};
      }
    }
    return to;
  }
  return Status{ErrorCode::io_error, path + ": cannot move it aside: 1000 names " + base + "-N are taken"};
}

bool is_corruption(const SQLite::Exception& e) {
  const int primary = e.getErrorCode() & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

std::string labels_json(const ComponentLabels& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::int64_t abs_diff(std::int64_t a, std::int64_t b) { return a > b ? a - b : b - a; }

}  // namespace

RegistryStore::RegistryStore(const ComponentRegistry& registry, Options options)
    : registry_(registry), options_(std::move(options)) {
  if (options_.path.empty()) throw std::invalid_argument("registry store: empty path");
  if (options_.interval.count() <= 0) throw std::invalid_argument("registry store: interval must be > 0");
  if (options_.pid == 0) options_.pid = static_cast<std::int64_t>(::getpid());
  started_at_ms_ = now_ms();
}

RegistryStore::~RegistryStore() { stop(); }

std::int64_t RegistryStore::now_ms() const { return options_.wall_ms ? options_.wall_ms() : system_ms(); }

void RegistryStore::start() {
  std::lock_guard lk(thread_mu_);
  if (stopped_ || thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void RegistryStore::run() {
  std::unique_lock lk(thread_mu_);
  while (!stop_requested_) {
    lk.unlock();
    (void)write_batch();
    lk.lock();
    cv_.wait_for(lk, options_.interval, [this] { return stop_requested_; });
  }
}

void RegistryStore::stop() {
  {
    std::lock_guard lk(thread_mu_);
    if (stopped_) return;
    stopped_ = true;
    stop_requested_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Status st;
  {
    std::lock_guard lk(db_mu_);
    st = write_locked(/*final_batch=*/true);
    close_locked();
  }
  call_after_batch(st);
}

void RegistryStore::call_after_batch(const Status& st) noexcept {
  if (!options_.after_batch) return;
  try {
    options_.after_batch(st);
  } catch (const std::exception& e) {
    log().error("registry store: the after-batch callback threw: {}", e.what());
  } catch (...) {
    log().error("registry store: the after-batch callback threw an unknown exception");
  }
}

Status RegistryStore::write_batch() {
  Status st;
  {
    std::lock_guard lk(db_mu_);
    st = write_locked(/*final_batch=*/false);
  }
  call_after_batch(st);
  return st;
}

RegistryStoreStats RegistryStore::stats() const {
  std::lock_guard lk(db_mu_);
  return stats_;
}

void RegistryStore::close_locked() noexcept {
  db_.reset();
  written_.clear();
}

void RegistryStore::note_failure_locked(const Status& st) {
  ++stats_.failures;
  ++failures_in_run_;
  stats_.last_error = st.message();
  if (!failing_) {
    failing_ = true;
    log().error("registry store: {}; the node keeps running, the registry is kept in memory and the write is retried "
                "every {} ms (further failures are only counted until one succeeds)",
                st.message(), options_.interval.count());
  }
}

void RegistryStore::note_success_locked() {
  if (failing_) {
    log().warn("registry store: {} written again after {} failed attempt(s)", options_.path, failures_in_run_);
  }
  failing_ = false;
  failures_in_run_ = 0;
  stats_.last_error.clear();
}

Status RegistryStore::open_locked() {
  if (db_) return {};
  const std::string& path = options_.path;
  {
    std::error_code ec;
    const fs::path dir = fs::path(path).parent_path();
    if (!dir.empty()) fs::create_directories(dir, ec);
    if (ec) return {ErrorCode::io_error, path + ": cannot create its folder " + dir.string() + ": " + ec.message()};
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<SQLite::Database> db;
    try {
      db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    } catch (const SQLite::Exception& e) {
      return {ErrorCode::io_error, path + ": cannot open it: " + e.what() + "; the file was left untouched"};
    }
    sqlite3_busy_timeout(db->getHandle(), options_.busy_timeout_ms);
    if (sqlite3_db_readonly(db->getHandle(), "main") == 1) {
      return {ErrorCode::io_error, path + ": SQLite could open it only read-only (permissions?)"};
    }
    std::string damaged;  // why the file is moved aside; "" when it is usable
    std::string kind = "corrupt";
    try {
      (void)db->execAndGet("SELECT count(*) FROM sqlite_schema").getInt64();
      const std::string verdict = db->execAndGet("PRAGMA quick_check").getString();
      if (verdict != "ok") {
        damaged = "quick_check: " + verdict;
      } else if (const int v = db->execAndGet("PRAGMA user_version").getInt(); v > kRegistrySchemaVersion) {
        damaged = "schema version " + std::to_string(v) + " is newer than this build's " +
                  std::to_string(kRegistrySchemaVersion);
        kind = "newer";
      }
    } catch (const SQLite::Exception& e) {
      if (!is_corruption(e)) {
        return {ErrorCode::io_error, path + ": cannot read it: " + e.what() + "; the file was left untouched"};
      }
      damaged = e.what();
    }
    if (!damaged.empty()) {
      db.reset();  // closed before the rename
      if (attempt > 0) return {ErrorCode::io_error, path + ": a freshly created file is reported damaged: " + damaged};
      auto moved = move_aside(path, kind, now_ms());
      if (!moved.ok()) return moved.status();
      ++stats_.moved_aside;
      log().error("registry store: {} is {} ({}); moved it to {} and started a fresh registry.db (the restart "
                  "history it held stays in the moved file)",
                  path, kind == "newer" ? "from a newer edgert" : "damaged", damaged, moved.value());
      continue;
    }
    try {
      const std::string mode = db->execAndGet("PRAGMA journal_mode=WAL").getString();
      if (mode != "wal") return {ErrorCode::io_error, path + ": cannot switch it to WAL (journal_mode is " + mode + ")"};
      db->exec("PRAGMA synchronous=NORMAL");
      SQLite::Transaction tx(*db);
      db->exec(kSchema);
      db->exec("PRAGMA user_version=" + std::to_string(kRegistrySchemaVersion));
      tx.commit();
    } catch (const SQLite::Exception& e) {
      return {ErrorCode::io_error, path + ": cannot prepare it: " + e.what()};
    }
    db_ = std::move(db);
    written_.clear();
    fresh_connection_ = true;
    return {};
  }
  return {ErrorCode::io_error, path + ": cannot open it"};  // not reached
}

bool RegistryStore::changed(const ComponentInfo& now, const ComponentInfo& b) const {
  if (now.status != b.status || now.reason != b.reason || now.labels != b.labels || now.name != b.name ||
      now.kind != b.kind || now.expects_progress != b.expects_progress || now.heartbeat_period != b.heartbeat_period ||
      now.last_error != b.last_error || now.last_error_ms != b.last_error_ms || now.restarts != b.restarts ||
      now.created_ms != b.created_ms || now.updated_ms != b.updated_ms || now.attached != b.attached) {
    return true;
  }
  const std::int64_t res = options_.heartbeat_resolution.count();
  return abs_diff(now.last_heartbeat_ms, b.last_heartbeat_ms) >= res ||
         abs_diff(now.last_progress_ms, b.last_progress_ms) >= res;
}

Status RegistryStore::write_locked(bool final_batch) {
  if (Status st = open_locked(); !st.ok()) {
    note_failure_locked(st);
    return st;
  }
  // The snapshot takes the registry's mutex briefly; beats never wait for it.
  std::vector<ComponentInfo> rows = registry_.snapshot();
  const std::int64_t now = now_ms();
  std::vector<std::pair<const ComponentInfo*, std::string>> upserts;  // row, its labels as JSON
  std::size_t known = 0;  // rows of the snapshot the file already holds
  for (const auto& row : rows) {
    const auto it = written_.find(row.id);
    known += it != written_.end();
    if (fresh_connection_ || it == written_.end() || changed(row, it->second)) {
      upserts.emplace_back(&row, labels_json(row.labels));
    }
  }
  // Ids are unique: when every row the file holds is in the snapshot, none left.
  std::vector<std::string> gone;
  if (known < written_.size()) {
    std::set<std::string_view> present;
    for (const auto& row : rows) present.insert(row.id);
    for (const auto& [id, w] : written_) {
      if (present.count(id) == 0) gone.push_back(id);
    }
  }
  try {
    SQLite::Transaction tx(*db_);
    if (fresh_connection_) db_->exec("DELETE FROM components");
    SQLite::Statement up(*db_,
                         "INSERT INTO components(id, name, kind, status, reason, labels, last_heartbeat_ms, "
                         "last_progress_ms, expects_progress, heartbeat_period_ms, last_error, last_error_ms, restarts, "
                         "created_ms, updated_ms, attached, written_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                         "ON CONFLICT(id) DO UPDATE SET name=excluded.name, kind=excluded.kind, "
                         "status=excluded.status, reason=excluded.reason, labels=excluded.labels, "
                         "last_heartbeat_ms=excluded.last_heartbeat_ms, last_progress_ms=excluded.last_progress_ms, "
                         "expects_progress=excluded.expects_progress, heartbeat_period_ms=excluded.heartbeat_period_ms, "
                         "last_error=excluded.last_error, last_error_ms=excluded.last_error_ms, "
                         "restarts=excluded.restarts, created_ms=excluded.created_ms, updated_ms=excluded.updated_ms, "
                         "attached=excluded.attached, written_ms=excluded.written_ms");
    for (const auto& [row, labels] : upserts) {
      up.bind(1, row->id);
      up.bind(2, row->name);
      up.bind(3, row->kind);
      up.bind(4, std::string(to_string(row->status)));
      up.bind(5, row->reason);
      up.bind(6, labels);
      up.bind(7, static_cast<std::int64_t>(row->last_heartbeat_ms));
      up.bind(8, static_cast<std::int64_t>(row->last_progress_ms));
      up.bind(9, row->expects_progress ? 1 : 0);
      up.bind(10, static_cast<std::int64_t>(row->heartbeat_period.count()));
      up.bind(11, row->last_error);
      up.bind(12, static_cast<std::int64_t>(row->last_error_ms));
      up.bind(13, static_cast<std::int64_t>(row->restarts));
      up.bind(14, static_cast<std::int64_t>(row->created_ms));
      up.bind(15, static_cast<std::int64_t>(row->updated_ms));
      up.bind(16, row->attached ? 1 : 0);
      up.bind(17, static_cast<std::int64_t>(now));
      up.exec();
      up.reset();
    }
    if (!gone.empty()) {
      SQLite::Statement del(*db_, "DELETE FROM components WHERE id = ?");
      for (const auto& id : gone) {
        del.bind(1, id);
        del.exec();
        del.reset();
      }
    }
    SQLite::Statement node(*db_,
                           "INSERT OR REPLACE INTO node(only, node_id, pid, started_at_ms, last_write_ms, "
                           "write_interval_ms, version, state) VALUES (1,?,?,?,?,?,?,?)");
    node.bind(1, options_.node_id);
    node.bind(2, static_cast<std::int64_t>(options_.pid));
    node.bind(3, static_cast<std::int64_t>(started_at_ms_));
    node.bind(4, static_cast<std::int64_t>(now));
    node.bind(5, static_cast<std::int64_t>(options_.interval.count()));
    node.bind(6, options_.version);
    node.bind(7, final_batch ? "stopped" : "running");
    node.exec();
    tx.commit();
  } catch (const std::exception& e) {
    Status st{ErrorCode::io_error, options_.path + ": cannot write the registry: " + e.what()};
    note_failure_locked(st);
    close_locked();  // reopened (and rewritten in full) by the next attempt
    return st;
  }
  // Committed: what the file now holds.
  fresh_connection_ = false;
  for (const auto& [row, labels] : upserts) written_[row->id] = *row;
  for (const auto& id : gone) written_.erase(id);
  ++stats_.batches;
  stats_.rows_written += upserts.size();
  stats_.rows_deleted += gone.size();
  stats_.last_batch_rows = upserts.size();
  note_success_locked();
  return {};
}

Status RegistryStore::record_restart(std::string_view component_id, std::int64_t at_ms, std::string_view reason) {
  if (component_id.empty()) return {ErrorCode::invalid_argument, "record_restart: empty component id"};
  std::lock_guard lk(db_mu_);
  if (Status st = open_locked(); !st.ok()) return st;
  try {
    SQLite::Statement ins(*db_, "INSERT INTO restart_history(component_id, at_ms, reason) VALUES (?,?,?)");
    ins.bind(1, std::string(component_id));
    ins.bind(2, static_cast<std::int64_t>(at_ms));
    ins.bind(3, std::string(reason));
    ins.exec();
  } catch (const std::exception& e) {
    close_locked();
    return {ErrorCode::io_error, options_.path + ": cannot record a restart of " + std::string(component_id) + ": " +
                                     e.what()};
  }
  return {};
}

Result<std::vector<RestartRecord>> RegistryStore::restarts_since(std::string_view component_id, std::int64_t since_ms) {
  std::lock_guard lk(db_mu_);
  if (Status st = open_locked(); !st.ok()) return st;
  std::vector<RestartRecord> out;
  try {
    SQLite::Statement q(*db_, "SELECT at_ms, reason FROM restart_history WHERE component_id = ? AND at_ms >= ? "
                              "ORDER BY at_ms, rowid");
    q.bind(1, std::string(component_id));
    q.bind(2, static_cast<std::int64_t>(since_ms));
    while (q.executeStep()) {
      out.push_back({std::string(component_id), q.getColumn(0).getInt64(), q.getColumn(1).getString()});
    }
  } catch (const std::exception& e) {
    close_locked();
    return Status{ErrorCode::io_error, options_.path + ": cannot read the restart history of " +
                                           std::string(component_id) + ": " + e.what()};
  }
  return out;
}

Result<std::uint64_t> RegistryStore::prune(std::int64_t before_ms) {
  std::lock_guard lk(db_mu_);
  if (Status st = open_locked(); !st.ok()) return st;
  try {
    SQLite::Statement del(*db_, "DELETE FROM restart_history WHERE at_ms < ?");
    del.bind(1, static_cast<std::int64_t>(before_ms));
    return static_cast<std::uint64_t>(del.exec());
  } catch (const std::exception& e) {
    close_locked();
    return Status{ErrorCode::io_error, options_.path + ": cannot prune the restart history: " + e.what()};
  }
}

// ---- reading -------------------------------------------------------------------------

namespace {

// A file: URI for `path` (percent-encoding what a URI would take as syntax).
std::string file_uri(const std::string& path, const char* query) {
  std::string out = "file:";
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '%' || c == '?' || c == '#' || u < 0x21 || u >= 0x7f) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "?" + query;
}

// One read of the node row and the component rows, in one read transaction.
Result<StoredRegistry> read_once(const std::string& path, const std::string& name, int busy_timeout_ms) {
  StoredRegistry out;
  try {
    SQLite::Database db(name, SQLite::OPEN_READONLY | SQLite::OPEN_URI);
    sqlite3_busy_timeout(db.getHandle(), busy_timeout_ms);
    db.exec("BEGIN");  // one read transaction: the node row and the rows of one commit
    const int version = db.execAndGet("PRAGMA user_version").getInt();
    if (version == 0) {
      return Status{ErrorCode::io_error, path + ": not a registry.db (schema version 0: not written by edgert, or "
                                                "being created right now)"};
    }
    if (version > kRegistrySchemaVersion) {
      return Status{ErrorCode::unsupported, path + ": schema version " + std::to_string(version) +
                                                " is newer than this build's " +
                                                std::to_string(kRegistrySchemaVersion) + "; use a newer edgert-node"};
    }
    {
      SQLite::Statement q(db, "SELECT node_id, pid, started_at_ms, last_write_ms, write_interval_ms, version, state "
                              "FROM node WHERE only = 1");
      if (!q.executeStep()) return Status{ErrorCode::io_error, path + ": holds no node row yet"};
      auto& n = out.node;
      n.node_id = q.getColumn(0).getString();
      n.pid = q.getColumn(1).getInt64();
      n.started_at_ms = q.getColumn(2).getInt64();
      n.last_write_ms = q.getColumn(3).getInt64();
      n.write_interval_ms = q.getColumn(4).getInt64();
      n.version = q.getColumn(5).getString();
      n.state = q.getColumn(6).getString();
    }
    SQLite::Statement q(db, "SELECT id, name, kind, status, reason, labels, last_heartbeat_ms, last_progress_ms, "
                            "expects_progress, heartbeat_period_ms, last_error, last_error_ms, restarts, created_ms, "
                            "updated_ms, attached, written_ms FROM components ORDER BY kind, name, id");
    while (q.executeStep()) {
      StoredComponentRow r;
      r.id = q.getColumn(0).getString();
      r.name = q.getColumn(1).getString();
      r.kind = q.getColumn(2).getString();
      r.status = q.getColumn(3).getString();
      r.reason = q.getColumn(4).getString();
      const auto labels = nlohmann::json::parse(q.getColumn(5).getString(), nullptr, false);
      if (labels.is_object()) {
        for (const auto& [k, v] : labels.items()) r.labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
      r.last_heartbeat_ms = q.getColumn(6).getInt64();
      r.last_progress_ms = q.getColumn(7).getInt64();
      r.expects_progress = q.getColumn(8).getInt() != 0;
      r.heartbeat_period_ms = q.getColumn(9).getInt64();
      r.last_error = q.getColumn(10).getString();
      r.last_error_ms = q.getColumn(11).getInt64();
      r.restarts = static_cast<std::uint64_t>(q.getColumn(12).getInt64());
      r.created_ms = q.getColumn(13).getInt64();
      r.updated_ms = q.getColumn(14).getInt64();
      r.attached = q.getColumn(15).getInt() != 0;
      r.written_ms = q.getColumn(16).getInt64();
      out.components.push_back(std::move(r));
    }
    db.exec("COMMIT");
  } catch (const std::exception& e) {
    return Status{ErrorCode::io_error, path + ": cannot read it: " + e.what()};
  }
  return out;
}

}  // namespace

Result<StoredRegistry> read_registry_db(const std::string& path, int busy_timeout_ms) {
  {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT) {
        return Status{ErrorCode::not_found, path + ": no registry.db here (no node has run with this data_dir, or "
                                                   "one older than edgert's registry store)"};
      }
      return Status{ErrorCode::io_error, path + ": cannot look at it: " + std::strerror(err)};
    }
  }
  // A node that stopped cleanly left no -wal/-shm. A read-only connection would create
  // both (owned by whoever runs `status`, which may keep a node running as another user
  // from opening the file): such a file is read as immutable instead, creating nothing.
  // Should a node start meanwhile (a -wal appears), the read is done again normally.
  if (!exists(path + "-wal") && !exists(path + "-shm")) {
    auto quiet = read_once(path, file_uri(path, "mode=ro&immutable=1"), busy_timeout_ms);
    if (!exists(path + "-wal")) return quiet;
  }
  return read_once(path, file_uri(path, "mode=ro"), busy_timeout_ms);
}

}  // namespace edgert::detail
