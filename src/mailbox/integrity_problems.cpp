#include "mailbox/integrity_problems.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <cstring>

namespace edgert::detail {
namespace {

// The index a problem line names, or "" when it is not about an index alone.
// integrity_check words index problems as "row N missing from index X", "wrong # of
// entries in index X", "non-unique entry in UNIQUE index X"; a damaged b-tree as
// "Tree <root page> page ...", which is an index when that root page is one.
std::string index_named(sqlite3* db, const std::string& line) {
  for (const char* marker : {"missing from index ", "entries in index ", "in UNIQUE index "}) {
    if (const auto at = line.find(marker); at != std::string::npos) return line.substr(at + std::strlen(marker));
  }
  unsigned root = 0;
  if (std::sscanf(line.c_str(), "Tree %u page", &root) != 1) return {};
  sqlite3_stmt* q = nullptr;
  std::string name;
  if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'index' AND rootpage = ?", -1, &q,
                         nullptr) == SQLITE_OK) {
    sqlite3_bind_int64(q, 1, root);
    if (sqlite3_step(q) == SQLITE_ROW) name = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  }
  sqlite3_finalize(q);
  return name;
}

// A finding about a page more than one b-tree claims (or a pointer to a page that
// cannot be one): REINDEX drops the index's b-tree and frees its pages, and one of
// them may be a page a table still uses; the freed page would then be reused and
// overwritten. So such a finding is never index-only, whichever tree reports it.
bool page_shared_or_invalid(const std::string& line) {
  return line.find("2nd reference to page") != std::string::npos ||
         line.find("invalid page number") != std::string::npos;
}

}  // namespace

ReindexPlan reindex_plan(sqlite3* db, const std::vector<std::string>& problems) {
  ReindexPlan plan;
  plan.index_only = true;
  std::size_t findings = 0;
  for (const auto& row : problems) {
    // One row may hold several findings, one a line: SQLite reports the b-tree
    // findings as one row, "*** in database main ***\n<finding>\n<finding>...". The
    // header names no damage; every finding is judged on its own.
    std::size_t begin = 0;
    while (begin <= row.size()) {
      std::size_t end = row.find('\n', begin);
      if (end == std::string::npos) end = row.size();
      const std::string line = row.substr(begin, end - begin);
      begin = end + 1;
      if (line.empty() || line.rfind("*** in database ", 0) == 0) continue;
      ++findings;
      const std::string name = page_shared_or_invalid(line) ? std::string{} : index_named(db, line);
      if (name.empty()) {
        plan.index_only = false;
      } else {
        plan.indexes.insert(name);
      }
    }
  }
  // Nothing placed, or the report cut short at its limit: the findings not seen may
  // involve a table (a page shared with one is reported once, wherever the limit fell).
  if (findings == 0 || findings >= static_cast<std::size_t>(kIntegrityMaxProblems)) plan.index_only = false;
  if (!plan.index_only) plan.indexes.clear();
  return plan;
}

}  // namespace edgert::detail
