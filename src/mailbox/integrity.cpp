#include "mailbox/integrity.hpp"
#include "mailbox/integrity_problems.hpp"
#include "mailbox/row_check.hpp"

#include "core/log.hpp"
#include "core/thread_name.hpp"
#include "mailbox/envelope_check.hpp"

#include <sqlite3.h>

#include <chrono>
#include <set>
#include <vector>

namespace edgert::detail {

struct IntegrityChecker::Outcome {
  enum Kind { ok, damaged, interrupted, error } kind = error;
  std::vector<std::string> problems;  // integrity_check's lines, or the error that stopped it
};

namespace {

// What integrity_check reports, at most; the first few are logged.
constexpr int kMaxProblems = kIntegrityMaxProblems;
constexpr std::size_t kLogged = 3;

std::string summary(const std::vector<std::string>& problems) {
  std::string out = std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") + "; first: ";
  for (std::size_t i = 0; i < problems.size() && i < kLogged; ++i) out += (i ? "; " : "") + problems[i];
  return printable(out, 400);
}

std::string quoted(const std::string& name) {
  std::string out = "\"";
  for (const char c : name) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

IntegrityChecker::IntegrityChecker(std::string path, sqlite3* writer, std::mutex& writer_mu,
                                   std::function<void(const std::string&)> on_damaged_row)
    : path_(std::move(path)), writer_(writer), writer_mu_(writer_mu), on_damaged_row_(std::move(on_damaged_row)) {
  thread_ = std::thread([this] {
    set_current_thread_name("edgert-integ");
    run();
  });
}

IntegrityChecker::~IntegrityChecker() { stop(); }

void IntegrityChecker::stop() {
  std::lock_guard once(stop_mu_);
  if (!thread_.joinable()) return;
  stop_ = true;
  {
    // The connection lives while db_mu_ is held; sqlite3_interrupt() stops a statement
    // already running, the progress handler one that starts after this.
    std::lock_guard lk(db_mu_);
    if (db_ != nullptr) sqlite3_interrupt(db_);
  }
  thread_.join();
}

int IntegrityChecker::on_progress(void* self) {
  return static_cast<IntegrityChecker*>(self)->stop_.load(std::memory_order_relaxed) ? 1 : 0;
}

IntegrityChecker::Outcome IntegrityChecker::check(sqlite3* db) {
  Outcome out;
  sqlite3_stmt* q = nullptr;
  int rc = sqlite3_prepare_v2(db, ("PRAGMA integrity_check(" + std::to_string(kMaxProblems) + ")").c_str(), -1, &q,
                              nullptr);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) break;
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    const std::string line = text ? text : "";
    if (line != "ok") out.problems.push_back(line);
  }
  const int primary = rc & 0xff;
  if (primary == SQLITE_DONE) {
    out.kind = out.problems.empty() ? Outcome::ok : Outcome::damaged;
  } else if (primary == SQLITE_INTERRUPT || stop_) {
    out.kind = Outcome::interrupted;
  } else {
    // A page too damaged to read stops the check itself: that is a finding, too.
    out.kind = primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ? Outcome::damaged : Outcome::error;
    out.problems.push_back(sqlite3_errmsg(db));
  }
  sqlite3_finalize(q);
  return out;
}

void IntegrityChecker::verify_rows(sqlite3* db) {
  if (!on_damaged_row_ || stop_) return;
  if (register_row_check(db) != SQLITE_OK) {
    log().warn("mailbox {}: cannot register the row checksum function on the check's connection; row checksums "
               "are verified only as rows are read",
               path_);
    return;
  }
  sqlite3_stmt* q = nullptr;
  std::vector<std::string> damaged;
  int rc = sqlite3_prepare_v2(db, "SELECT message_id FROM outbox WHERE NOT " EDGERT_ROW_OK, -1, &q, nullptr);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) break;
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    damaged.emplace_back(text ? text : "");
  }
  if ((rc & 0xff) != SQLITE_DONE && !stop_) {
    log().warn("mailbox {}: the row checksum pass could not finish ({}); rows are still verified as they are read",
               path_, sqlite3_errmsg(db));
  }
  sqlite3_finalize(q);
  if (damaged.empty()) return;
  std::lock_guard writer_idle(writer_mu_);
  for (const auto& id : damaged) on_damaged_row_(id);
}

void IntegrityChecker::run() {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    log().warn("mailbox {}: cannot open a connection for the background integrity_check ({}); not checked", path_,
               db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return;
  }
  sqlite3_busy_timeout(db, 1000);
  sqlite3_progress_handler(db, 1000, &IntegrityChecker::on_progress, this);
  {
    std::lock_guard lk(db_mu_);
    db_ = db;
  }
  const auto started = std::chrono::steady_clock::now();
  Outcome first = stop_ ? Outcome{Outcome::interrupted, {}} : check(db);
  if (first.kind == Outcome::ok || first.kind == Outcome::damaged) verify_rows(db);
  if (first.kind == Outcome::ok || first.kind == Outcome::damaged) ++checks_;
  if (first.kind == Outcome::ok) {
    log().debug("mailbox {}: integrity_check ok ({} ms)", path_,
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                    .count());
  } else if (first.kind == Outcome::error) {
    log().warn("mailbox {}: the background integrity_check could not run ({}); not checked", path_,
               summary(first.problems));
  } else if (first.kind == Outcome::damaged) {
    // Index-only damage is rebuilt from the table rows, which lose nothing.
    const ReindexPlan plan = reindex_plan(db, first.problems);
    const std::set<std::string>& indexes = plan.indexes;
    const bool index_only = plan.index_only;
    std::string names;
    for (const auto& n : indexes) names += (names.empty() ? "" : ", ") + n;
    if (index_only && stop_) {
      log().warn("mailbox {}: integrity_check found damage in index {} ({}); closing before REINDEX could repair "
                 "it: the next open checks again",
                 path_, printable(names, 200), summary(first.problems));
    } else if (index_only) {
      log().warn("mailbox {}: integrity_check found damage in index {} ({}); rebuilding it with REINDEX", path_,
                 printable(names, 200), summary(first.problems));
      std::string sql;
      for (const auto& n : indexes) sql += "REINDEX " + quoted(n) + ";";
      std::string reindex_error;
      int reindex_rc = SQLITE_OK;
      {
        std::lock_guard writer_idle(writer_mu_);
        // stop() must not wait for a REINDEX of a large outbox (close() is bounded): the
        // same progress handler interrupts it, and the interrupted REINDEX rolls back.
        sqlite3_progress_handler(writer_, 1000, &IntegrityChecker::on_progress, this);
        char* err = nullptr;
        reindex_rc = sqlite3_exec(writer_, sql.c_str(), nullptr, nullptr, &err);
        if (reindex_rc != SQLITE_OK) reindex_error = err ? err : sqlite3_errmsg(writer_);
        sqlite3_free(err);
        sqlite3_progress_handler(writer_, 0, nullptr, nullptr);
      }
      Outcome again;
      if (reindex_rc == SQLITE_INTERRUPT || (reindex_rc & 0xff) == SQLITE_FULL || (reindex_rc & 0xff) == SQLITE_BUSY) {
        // Not damage REINDEX cannot repair: it did not get to finish. Nothing changed.
        log().warn("mailbox {}: REINDEX of index {} did not finish ({}); the next open checks again", path_,
                   printable(names, 200), printable(reindex_error, 200));
        again.kind = Outcome::interrupted;
      } else if (reindex_error.empty()) {
        again = check(db);
        if (again.kind == Outcome::ok || again.kind == Outcome::damaged) ++checks_;
      }
      if (again.kind == Outcome::ok) {
        ++repairs_;
        log().warn("mailbox {}: REINDEX repaired index {}; integrity_check is ok again", path_, printable(names, 200));
      } else if (again.kind == Outcome::interrupted && reindex_rc != SQLITE_OK) {
        // REINDEX did not finish: reported above.
      } else if (again.kind == Outcome::interrupted) {
        log().warn("mailbox {}: REINDEX rebuilt index {}; closing before the re-check finished: the next open "
                   "checks again",
                   path_, printable(names, 200));
      } else {
        if (reindex_error.empty()) {
          reindex_error = (again.kind == Outcome::damaged ? "integrity_check still reports "
                                                          : "the re-check could not run: ") +
                          summary(again.problems);
        }
        ++failures_;
        log().error("mailbox {}: integrity_check found damage REINDEX cannot repair ({}); REINDEX: {}; the mailbox "
                    "keeps running on the rows it can read; stop the node and salvage the file (docs/mailbox.md, "
                    "\"Corruption\")",
                    path_, summary(first.problems), printable(reindex_error, 300));
      }
    } else {
      ++failures_;
      log().error("mailbox {}: integrity_check found damage REINDEX cannot repair ({}); the mailbox keeps running on "
                  "the rows it can read; stop the node and salvage the file (docs/mailbox.md, \"Corruption\")",
                  path_, summary(first.problems));
    }
  }
  {
    std::lock_guard lk(db_mu_);
    db_ = nullptr;
  }
  sqlite3_close(db);
}

}  // namespace edgert::detail
