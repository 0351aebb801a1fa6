// Internal: what integrity_check's findings allow the background check to repair
// (integrity.hpp). Apart from integrity.cpp so the tests can compile it in and feed it
// findings worded as any SQLite version words them.
#pragma once

#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace edgert::detail {

/// The findings the background check asks integrity_check for, at most.
inline constexpr int kIntegrityMaxProblems = 100;

struct ReindexPlan {
  /// True when every finding is about an index alone: REINDEX rebuilds them from the
  /// table rows and loses nothing. False when any finding may involve a table.
  bool index_only = false;
  std::set<std::string> indexes;  // the indexes named, when index_only
};

/// `problems`: the rows PRAGMA integrity_check returned (not "ok"), or the error that
/// stopped it. `db`: a connection to the same file, to look up which root pages are
/// indexes. Never fails: a finding it cannot place makes the plan not index-only.
ReindexPlan reindex_plan(sqlite3* db, const std::vector<std::string>& problems);

}  // namespace edgert::detail
