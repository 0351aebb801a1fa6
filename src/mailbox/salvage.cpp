#include "mailbox/salvage.hpp"

#include "mailbox/row_check.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace edgert::detail {
namespace {

using Stmt = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;

Stmt prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    sqlite3_finalize(s);
    s = nullptr;
  }
  return Stmt(s, &sqlite3_finalize);
}

std::string quoted(const std::string& name) {
  std::string out = "\"";
  for (const char c : name) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

struct Column {
  std::string name;
  bool rowid_alias = false;  // INTEGER PRIMARY KEY
};

// The columns of `table`; empty when its schema cannot be read.
std::vector<Column> columns(sqlite3* db, const std::string& table) {
  std::vector<Column> out;
  Stmt q = prepare(db, "SELECT name, type, pk FROM pragma_table_info(?1)");
  if (!q) return out;
  sqlite3_bind_text(q.get(), 1, table.c_str(), -1, SQLITE_TRANSIENT);
  int pks = 0;
  while (sqlite3_step(q.get()) == SQLITE_ROW) {
    Column c;
    c.name = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0));
    const auto* type = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 1));
    const int pk = sqlite3_column_int(q.get(), 2);
    if (pk > 0) ++pks;
    c.rowid_alias = pk == 1 && type != nullptr && sqlite3_stricmp(type, "INTEGER") == 0;
    out.push_back(std::move(c));
  }
  if (pks != 1) {
    for (auto& c : out) c.rowid_alias = false;  // a composite key is no rowid alias
  }
  return out;
}

// True when a scan for the first row from `from` on can be read (finds one, or the end).
bool readable_from(sqlite3_stmt* probe, std::int64_t from) {
  sqlite3_reset(probe);
  sqlite3_bind_int64(probe, 1, from);
  const int rc = sqlite3_step(probe);
  sqlite3_reset(probe);
  return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

struct TableCopy {
  std::uint64_t saved = 0, damaged = 0, refused = 0, stretches = 0;
  bool schema_unreadable = false;
  /// The copy stopped early: more unreadable stretches than the file has pages, which
  /// no real damage produces (each stretch is at least one unreadable page).
  bool gave_up = false;
  /// The first kShownStretches stretches stepped over, as rowid ranges [first, last].
  std::vector<std::pair<std::int64_t, std::int64_t>> skipped;
};

constexpr std::size_t kShownStretches = 5;

// The pages `db` has, or a generous stand-in when even that cannot be read: what
// bounds the number of unreadable stretches a copy may step over.
std::uint64_t page_count(sqlite3* db) {
  Stmt q = prepare(db, "PRAGMA page_count");
  if (q && sqlite3_step(q.get()) == SQLITE_ROW && sqlite3_column_int64(q.get(), 0) > 0) {
    return static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0));
  }
  return std::uint64_t{1} << 31;  // SQLite's own limit on a database's pages
}

std::string rowid_text(std::int64_t v) {
  if (v == std::numeric_limits<std::int64_t>::min()) return "min";
  if (v == std::numeric_limits<std::int64_t>::max()) return "max";
  return std::to_string(v);
}

// Copies `table` from `old` into `fresh` in rowid order, stepping over unreadable stretches.
TableCopy copy_table(sqlite3* fresh, sqlite3* old, const std::string& table, std::uint64_t max_stretches) {
  TableCopy r;
  const auto want = columns(fresh, table);
  const auto have = columns(old, table);
  if (have.empty()) {
    r.schema_unreadable = true;
    return r;
  }
  std::string cols, marks;
  bool alias = false;
  int n = 0;
  for (const auto& c : want) {
    if (std::none_of(have.begin(), have.end(), [&](const Column& h) { return h.name == c.name; })) continue;
    cols += (n ? ", " : "") + quoted(c.name);
    alias = alias || c.rowid_alias;
    ++n;
  }
  if (n == 0) return r;
  const bool verify = table == "outbox" && std::any_of(have.begin(), have.end(), [](const Column& h) {
                        return h.name == "row_sum";
                      });
  // `rowid >= x`, not `> x`: SQLite seeks `> x` by descending towards x itself, so a
  // scan resumed with `> B` (B the last rowid of a destroyed leaf) would fall into
  // that leaf again, while `>= B + 1` goes past it.
  Stmt sel = prepare(old, "SELECT rowid, " + cols + (verify ? ", " EDGERT_ROW_OK : "") + " FROM " + quoted(table) +
                              " WHERE rowid >= ?1 ORDER BY rowid");
  Stmt probe = prepare(old, "SELECT rowid FROM " + quoted(table) + " WHERE rowid >= ?1 ORDER BY rowid LIMIT 1");
  for (int i = 0; i < n + (alias ? 0 : 1); ++i) marks += i ? ",?" : "?";
  Stmt ins = prepare(fresh, "INSERT INTO " + quoted(table) + " (" + (alias ? "" : "rowid, ") + cols + ") VALUES (" +
                                marks + ")");
  if (!sel || !probe || !ins) {
    r.schema_unreadable = true;
    return r;
  }
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t next = std::numeric_limits<std::int64_t>::min();  // the smallest rowid not yet read
  for (;;) {
    sqlite3_reset(sel.get());
    sqlite3_bind_int64(sel.get(), 1, next);
    int rc;
    bool at_end = false;
    while ((rc = sqlite3_step(sel.get())) == SQLITE_ROW) {
      const std::int64_t rowid = sqlite3_column_int64(sel.get(), 0);
      at_end = rowid == kMax;
      next = at_end ? kMax : rowid + 1;
      if (verify && sqlite3_column_int(sel.get(), n + 1) == 0) {
        ++r.damaged;
        continue;
      }
      sqlite3_reset(ins.get());
      const int first = alias ? 1 : 0;  // with a rowid alias the rowid travels in its column
      for (int i = first; i <= n; ++i) sqlite3_bind_value(ins.get(), i - first + 1, sqlite3_column_value(sel.get(), i));
      if (sqlite3_step(ins.get()) == SQLITE_DONE) {
        ++r.saved;
      } else {
        ++r.refused;  // a constraint the damage broke (a duplicate id): the row stays in the old file
      }
    }
    if (rc == SQLITE_DONE || at_end) break;
    // Unreadable from `next` on: find the smallest x > next whose scan `>= x` can be
    // read again, doubling the step, then halving back. Every rowid in [next, x) lies
    // in the damaged stretch (a seek to it descends into the damage), so no readable
    // row is skipped.
    //
    // Bounded: the step doubles in unsigned arithmetic until it reaches INT64_MAX (at
    // most 64 probes: it used to stop growing at INT64_MAX itself, which from a
    // negative `lo` falls short of the end, and a stretch that began at INT64_MIN, the
    // table's first leaf, was probed forever), then the halving takes at most 64 more.
    // Each stretch moves `next` past at least one rowid, and there are at most as many
    // stretches as the file has pages: the copy ends in time proportional to its size.
    if (++r.stretches > max_stretches) {
      r.gave_up = true;
      return r;
    }
    // The distance in unsigned arithmetic: from INT64_MIN to a large hi it overflows int64.
    auto distance = [](std::int64_t a, std::int64_t b) { return static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a); };
    const std::int64_t lo_start = next;
    std::int64_t lo = next, hi = next;
    std::uint64_t step = 1;
    for (;;) {
      hi = distance(lo, kMax) <= step ? kMax
                                      : static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + step);
      if (readable_from(probe.get(), hi)) break;
      if (hi == kMax) {  // nothing readable after the damage
        if (r.skipped.size() < kShownStretches) r.skipped.emplace_back(lo_start, kMax);
        return r;
      }
      step = step > std::numeric_limits<std::uint64_t>::max() / 2 ? std::numeric_limits<std::uint64_t>::max()
                                                                    : step * 2;
    }
    while (distance(lo, hi) > 1) {
      const std::int64_t mid = static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + distance(lo, hi) / 2);
      (readable_from(probe.get(), mid) ? hi : lo) = mid;
    }
    if (r.skipped.size() < kShownStretches) r.skipped.emplace_back(lo_start, hi - 1);
    next = hi;
  }
  return r;
}

std::optional<std::pair<std::int64_t, std::int64_t>> recorded_totals(sqlite3* old) {
  Stmt q = prepare(old, "SELECT outbox_rows, inbox_rows FROM totals WHERE id = 1");
  if (!q || sqlite3_step(q.get()) != SQLITE_ROW) return std::nullopt;
  return std::make_pair(sqlite3_column_int64(q.get(), 0), sqlite3_column_int64(q.get(), 1));
}

}  // namespace

Result<SalvageReport> salvage_rows(sqlite3* fresh, const std::string& damaged_path) {
  sqlite3* old = nullptr;
  if (sqlite3_open_v2(damaged_path.c_str(), &old, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string why = old ? sqlite3_errmsg(old) : "out of memory";
    sqlite3_close(old);
    return Status{ErrorCode::io_error, damaged_path + ": cannot open the damaged mailbox to salvage it: " + why};
  }
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(old, &sqlite3_close);
  register_row_check(old);
  const auto totals = recorded_totals(old);

  std::vector<std::string> tables;
  {
    Stmt q = prepare(fresh, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                            "AND name != 'totals' ORDER BY name");
    while (q && sqlite3_step(q.get()) == SQLITE_ROW) {
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0)));
    }
  }
  SalvageReport rep;
  rep.totals_known = totals.has_value();
  if (sqlite3_exec(fresh, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Status{ErrorCode::io_error, "cannot write the salvaged mailbox: " + std::string(sqlite3_errmsg(fresh))};
  }
  const std::uint64_t max_stretches = page_count(old);
  for (const auto& t : tables) {
    const TableCopy c = copy_table(fresh, old, t, max_stretches);
    rep.saved += c.saved;
    rep.damaged += c.damaged;
    rep.stretches += c.stretches;
    std::string line = t + ": ";
    if (c.schema_unreadable) {
      line += "unreadable (its schema or first page is damaged), nothing saved";
    } else {
      line += std::to_string(c.saved) + " saved";
    }
    std::optional<std::int64_t> expected;
    if (totals && t == "outbox") expected = totals->first;
    if (totals && t == "inbox") expected = totals->second;
    if (expected) {
      const auto had = static_cast<std::uint64_t>(std::max<std::int64_t>(*expected, 0));
      const std::uint64_t lost = had > c.saved ? had - c.saved : 0;
      rep.lost += lost;
      line += " of " + std::to_string(had) + ", " + std::to_string(lost) + " lost";
    }
    if (c.damaged > 0) line += " (" + std::to_string(c.damaged) + " failed their checksum)";
    if (c.refused > 0) line += " (" + std::to_string(c.refused) + " refused by a constraint)";
    if (c.stretches > 0) {
      line += " (" + std::to_string(c.stretches) + " unreadable stretches skipped: rowids ";
      for (std::size_t i = 0; i < c.skipped.size(); ++i) {
        line += (i ? ", " : "") + rowid_text(c.skipped[i].first) + ".." + rowid_text(c.skipped[i].second);
      }
      if (c.stretches > c.skipped.size()) line += ", ...";
      line += ")";
    }
    if (c.gave_up) {
      line += " (copy stopped: more unreadable stretches than the file's " + std::to_string(max_stretches) +
              " pages; the rows after them were not read)";
    }
    rep.text += (rep.text.empty() ? "" : "; ") + line;
  }
  // Rows from a file older than the checksum (no row_sum) are taken as they were read.
  const char* fix_totals =
      "UPDATE outbox SET row_sum = " EDGERT_ROW_SUM " WHERE row_sum IS NULL; "
      "UPDATE totals SET outbox_rows = (SELECT COUNT(*) FROM outbox), "
      "outbox_bytes = (SELECT COALESCE(SUM(size), 0) FROM outbox), inbox_rows = (SELECT COUNT(*) FROM inbox), "
      "inbox_bytes = (SELECT COALESCE(SUM(size), 0) FROM inbox), "
      "inbox_unacked = (SELECT COUNT(*) FROM inbox WHERE acknowledged = 0), "
      "dead_letters = (SELECT COUNT(*) FROM dead_letter) WHERE id = 1";
  if (sqlite3_exec(fresh, fix_totals, nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_exec(fresh, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::string why = sqlite3_errmsg(fresh);
    sqlite3_exec(fresh, "ROLLBACK", nullptr, nullptr, nullptr);
    return Status{ErrorCode::io_error, "cannot write the rows salvaged from " + damaged_path + ": " + why};
  }
  if (!totals) rep.text += "; the damaged file's totals are unreadable, so how many rows were lost is unknown";
  return rep;
}

}  // namespace edgert::detail
