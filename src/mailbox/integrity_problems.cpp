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

}  // namespace

ReindexPlan reindex_plan(sqlite3* db, const std::vector<std::string>& problems) {
  ReindexPlan plan;
  plan.index_only = true;
  for (const auto& line : problems) {
    const std::string name = index_named(db, line);
    if (name.empty()) {
      plan.index_only = false;
      break;
    }
    plan.indexes.insert(name);
  }
  if (!plan.index_only) plan.indexes.clear();
  return plan;
}

}  // namespace edgert::detail
