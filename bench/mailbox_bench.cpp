// mailbox_bench: durable sends per second, 256-byte payloads, in one run.
//   (a) per_message : the seed's way: per message a new connection, one INSERT, commit,
//                     close; SQLite defaults (rollback journal, synchronous FULL)
//   (b) group       : Mailbox::send, 8 concurrent senders, group commit, WAL NORMAL
//   (c) single_txn  : Mailbox::send, 8 senders, one transaction per message (max_batch 1)
//   (d) raw_batch   : the same rows by raw sqlite3 in 10,000-row transactions, WAL NORMAL
//   (e) group_full  : (b) with synchronous FULL
//   (f) async       : Mailbox::send_async, 8 senders each keeping 64 messages in flight,
//                     group commit, WAL NORMAL
//   (g) raw_txn8    : (d) in 8-row transactions: what SQLite itself does when each commit
//                     carries one row per sender, the most 8 blocking senders can group
//   open_1m_ms      : Mailbox::open on a 1,000,000-row backlog written straight into the
//                     file (skip with --no-backlog): the bounded check (docs/mailbox.md,
//                     "Bounded check at open"), median of 3 opens alternated with...
//   open_1m_full_check_ms: ...the same open with quick_check over every page (the open
//                     before issue 20), median of 3
//   open_1m_restart_ms: the open after that run closed cleanly with its background
//                     integrity_check complete: quick_check skipped (docs/mailbox.md)
//   (h) drain       : a backlog of --drain N rows (default 2.5 x --messages: 100,000)
//                     drained as the MQTT forwarder does: lease(100), then one
//                     mark_delivered(vector) per batch, in msgs/s (goal >= 50,000);
//                     against pending(100) and one mark_delivered(id) per row, on a
//                     quarter as many rows
// Each figure is measured in each of --rounds rounds (default 5); the median is
// reported, and ratios are taken within a round.
// Usage: mailbox_bench [--messages N] [--rounds R] [--dir DIR] [--no-backlog] [--drain N] [--json]
#include <edgert/log.hpp>
#include <edgert/mailbox.hpp>

#include <sqlite3.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kPayload = "\"" + std::string(254, 'x') + "\"";  // 256 bytes of JSON

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "mailbox_bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    std::exit(1);
  }
}

// (a) The seed's Python Mailbox: connect, insert, commit, close, per message.
double per_message(const fs::path& dir, int n) {
  const auto path = (dir / "seed.db").string();
  {
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    check(sqlite3_exec(db,
                       "CREATE TABLE outbox (message_id TEXT PRIMARY KEY, recipient_node_id TEXT NOT NULL, "
                       "recipient_http_url TEXT NOT NULL, envelope_json TEXT NOT NULL, attempts INTEGER DEFAULT 0, "
                       "next_attempt_at TEXT NOT NULL, expires_at TEXT NOT NULL, created_at TEXT NOT NULL)",
                       nullptr, nullptr, nullptr),
          db, "schema");
    sqlite3_close(db);
  }
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    sqlite3_stmt* st = nullptr;
    check(sqlite3_prepare_v2(db, "INSERT INTO outbox VALUES (?, 'fleet', 'mqtt://fleet', ?, 0, ?, ?, ?)", -1, &st,
                             nullptr),
          db, "prepare");
    const std::string id = "msg:seed-" + std::to_string(i);
    const std::string envelope = "{\"message_id\":\"" + id + "\",\"payload\":" + kPayload + "}";
    sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, envelope.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, "2026-11-22T00:00:00", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, "2026-11-23T00:00:00", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, "2026-11-22T00:00:00", -1, SQLITE_STATIC);
    check(sqlite3_step(st), db, "insert");  // autocommit: one transaction
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  return n / seconds_since(t0);
}

// (b), (c), (e), (f): Mailbox::send (window 0) or send_async with up to `window`
// messages in flight per thread, from `threads` threads.
// With `latency_us`, also collects how long each blocking send() took.
double mailbox_sends(const fs::path& dir, int n, int threads, std::size_t max_batch, bool full, int window = 0,
                     std::vector<double>* latency_us = nullptr) {
  edgert::MailboxOptions o;
  o.data_dir = dir.string();
  o.max_batch = max_batch;
  o.synchronous_full = full;
  auto mb = edgert::Mailbox::open(o);
  if (!mb.ok()) {
    std::fprintf(stderr, "mailbox_bench: %s\n", mb.status().message().c_str());
    std::exit(1);
  }
  std::atomic<int> next{0}, failed{0};
  std::vector<std::vector<double>> took(static_cast<std::size_t>(threads));
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, mine = &took[static_cast<std::size_t>(t)]] {
      edgert::Envelope e;
      e.sender_node_id = "bench";
      e.recipient_node_id = "fleet";
      e.payload_type = "detection";
      std::deque<edgert::PendingSend> in_flight;
      while (next.fetch_add(1) < n) {
        e.message_id.clear();
        e.payload = kPayload;
        if (window == 0) {
          const auto s0 = Clock::now();
          if (!mb.value()->send(e).ok()) failed++;
          if (latency_us) mine->push_back(seconds_since(s0) * 1e6);
          continue;
        }
        if (static_cast<int>(in_flight.size()) == window) {
          if (!in_flight.front().get().ok()) failed++;
          in_flight.pop_front();
        }
        in_flight.push_back(mb.value()->send_async(e));
      }
      for (auto& f : in_flight) {
        if (!f.get().ok()) failed++;
      }
    });
  }
  for (auto& t : pool) t.join();
  const double rate = n / seconds_since(t0);
  if (latency_us) {
    for (auto& v : took) latency_us->insert(latency_us->end(), v.begin(), v.end());
  }
  const auto st = mb.value()->stats().value();
  std::fprintf(stderr, "  [%d senders, window %d, max_batch %zu: %.1f rows per commit]\n", threads, window, max_batch,
               double(st.counters.sent) / double(std::max<std::uint64_t>(1, st.counters.commits)));
  if (failed) {
    std::fprintf(stderr, "mailbox_bench: %d sends failed\n", failed.load());
    std::exit(1);
  }
  return rate;
}

// (d) The ceiling: identical rows into the same schema in `txn`-row transactions
// (10,000 for (d), 8 for (g)), WAL NORMAL, one thread, no per-message wake-ups.
double raw_batch(const fs::path& dir, int n, int txn) {
  {
    edgert::MailboxOptions o;
    o.data_dir = dir.string();
    if (!edgert::Mailbox::open(o).ok()) std::exit(1);  // creates the schema
  }
  sqlite3* db = nullptr;
  check(sqlite3_open((dir / "mailbox.db").c_str(), &db), db, "open");
  check(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=8192;", nullptr,
                     nullptr, nullptr),
        db, "pragma");
  sqlite3_stmt* st = nullptr;
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, "
                           "priority, attempts, next_attempt_ms, expires_ms, created_ms) VALUES (?,?,?,?,?,0,0,?,?,?)",
                           -1, &st, nullptr),
        db, "prepare");
  const auto t0 = Clock::now();
  std::int64_t txn_rows = 0, txn_bytes = 0;
  for (int i = 0; i < n; ++i) {
    if (i % txn == 0) check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    const std::string id = "msg:raw-" + std::to_string(i);
    const std::string envelope = "{\"message_id\":\"" + id +
                                 "\",\"sender_node_id\":\"bench\",\"recipient_node_id\":\"fleet\",\"timestamp\":1,"
                                 "\"payload_type\":\"detection\",\"payload\":" +
                                 kPayload + "}";
    sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, "fleet", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, "detection", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, envelope.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, static_cast<sqlite3_int64>(envelope.size()));
    sqlite3_bind_int64(st, 6, 1);
    sqlite3_bind_int64(st, 7, 9000000000000);
    sqlite3_bind_int64(st, 8, 1);
    check(sqlite3_step(st), db, "insert");
    sqlite3_reset(st);
    ++txn_rows;
    txn_bytes += static_cast<std::int64_t>(envelope.size());
    if (i % txn == txn - 1 || i == n - 1) {  // the running totals, as the mailbox keeps them
      const std::string totals = "UPDATE totals SET outbox_rows = outbox_rows + " + std::to_string(txn_rows) +
                                 ", outbox_bytes = outbox_bytes + " + std::to_string(txn_bytes) + " WHERE id = 1";
      check(sqlite3_exec(db, totals.c_str(), nullptr, nullptr, nullptr), db, "totals");
      check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
      txn_rows = txn_bytes = 0;
    }
  }
  const double rate = n / seconds_since(t0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rate;
}

// Opens of a 1,000,000-row backlog, in ms. `first`: the backlog as written straight
// into the file (as after a crash, or any change since the last clean close: open runs
// PRAGMA quick_check over every page). `restart`: the open after that run closed
// cleanly with its integrity_check complete (quick_check skipped, docs/mailbox.md).
struct OpenMs {
  double first = -1, restart = -1, full = -1;  // full: with quick_check over every page (before issue 20)
};
OpenMs open_backlog_ms(const fs::path& dir) {
  edgert::MailboxOptions o;
  o.data_dir = dir.string();
  if (!edgert::Mailbox::open(o).ok()) std::exit(1);
  sqlite3* db = nullptr;
  check(sqlite3_open((dir / "mailbox.db").c_str(), &db), db, "open");
  // Complete envelopes (the mailbox skips rows it cannot decode) queued over the last
  // 1000 s of real time (times in 1970 would be rebased as an unset clock's).
  const long long start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count() - 1000000;
  const std::string t = std::to_string(start_ms);
  const std::string sql =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; "
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
      "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, priority, "
      "attempts, next_attempt_ms, expires_ms, created_ms) "
      "SELECT 'msg:' || printf('%032d', i), 'fleet', 'detection', "
      "'{\"message_id\":\"msg:' || printf('%032d', i) || '\",\"sender_node_id\":\"bench\",' || "
      "'\"recipient_node_id\":\"fleet\",\"payload_type\":\"detection\",\"timestamp\":' || (" + t +
      " + i) || ',\"payload\":\"' || hex(randomblob(100)) || '\"}', 300, i % 3, 0, " + t + " + i, " + t +
      " + 86400000000, " + t + " + i FROM n; "
      "UPDATE totals SET outbox_rows = outbox_rows + 1000000, outbox_bytes = outbox_bytes + 300000000; "
      "PRAGMA wal_checkpoint(TRUNCATE);";
  check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, "backlog");
  sqlite3_close(db);
  OpenMs out;
  // Today's open (quick_check over every page, as before issue 20's bounded check) and
  // the default one, alternated three times on the same file; each closes at once (its
  // background check interrupted, so the next open is not a verified restart), and the
  // -check-owed file a bounded open leaves is removed, as if another program had written
  // the file again. Medians.
  std::vector<double> bounded_ms, full_ms;
  for (int i = 0; i < 3; ++i) {
    for (const bool full : {true, false}) {
      edgert::MailboxOptions oi = o;
      oi.quick_check_max_bytes = full ? UINT64_MAX : 64ull << 20;  // bounded: opted in
      {
        const auto t0 = Clock::now();
        auto mb = edgert::Mailbox::open(oi);
        (full ? full_ms : bounded_ms).push_back(seconds_since(t0) * 1000);
        if (!mb.ok() || mb.value()->pending(100).value().size() != 100) std::exit(1);
      }
      fs::remove(dir / "mailbox.db-check-owed");
    }
  }
  std::sort(bounded_ms.begin(), bounded_ms.end());
  std::sort(full_ms.begin(), full_ms.end());
  out.full = full_ms[1];
  {
    out.first = bounded_ms[1];
    auto mb = edgert::Mailbox::open(o);
    if (!mb.ok() || mb.value()->pending(100).value().size() != 100) std::exit(1);
    // Then the run goes on until its background integrity_check has completed (a node
    // that ran for more than a few seconds), and closes cleanly.
    const auto deadline = Clock::now() + std::chrono::seconds(600);
    while (mb.value()->stats().value().counters.integrity_checks == 0) {
      if (Clock::now() > deadline) std::exit(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  const auto t0 = Clock::now();
  auto mb = edgert::Mailbox::open(o);
  out.restart = seconds_since(t0) * 1000;
  if (!mb.ok() || mb.value()->pending(100).value().size() != 100) std::exit(1);
  return out;
}

double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// `rows` due outbox rows with complete envelopes, written straight into the file (not
// part of what is measured), then the mailbox opened on them.
std::unique_ptr<edgert::Mailbox> backlog_of(const fs::path& dir, int rows) {
  edgert::MailboxOptions o;
  o.data_dir = dir.string();
  if (!edgert::Mailbox::open(o).ok()) std::exit(1);  // creates the schema
  sqlite3* db = nullptr;
  check(sqlite3_open((dir / "mailbox.db").c_str(), &db), db, "open");
  const long long start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count() - 1000000;
  const std::string t = std::to_string(start_ms), n = std::to_string(rows);
  const std::string sql =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; "
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " + n + ") "
      "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, priority, "
      "attempts, next_attempt_ms, expires_ms, created_ms) "
      "SELECT 'msg:' || printf('%032d', i), 'fleet', 'detection', "
      "'{\"message_id\":\"msg:' || printf('%032d', i) || '\",\"sender_node_id\":\"bench\",' || "
      "'\"recipient_node_id\":\"fleet\",\"payload_type\":\"detection\",\"timestamp\":' || (" + t +
      " + i) || ',\"payload\":\"' || hex(randomblob(127)) || '\"}', 400, 0, 0, " + t + " + i, " + t +
      " + 86400000000, " + t + " + i FROM n; "
      "UPDATE totals SET outbox_rows = outbox_rows + " + n + ", outbox_bytes = outbox_bytes + 400 * " + n + "; "
      "PRAGMA wal_checkpoint(TRUNCATE);";
  check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, "backlog");
  sqlite3_close(db);
  auto mb = edgert::Mailbox::open(o);
  if (!mb.ok()) {
    std::fprintf(stderr, "mailbox_bench: %s\n", mb.status().message().c_str());
    std::exit(1);
  }
  return std::move(mb).value();
}

// (h) Drains a `rows` backlog; msgs/s. `batch`: lease(100) + mark_delivered(vector);
// otherwise pending(100) + mark_delivered(id) per row. Exits if any row is missed.
double drain(const fs::path& dir, int rows, bool batch) {
  auto mb = backlog_of(dir, rows);
  std::size_t done = 0;
  std::vector<std::string> ids;
  const double cpu0 = process_cpu_s();
  const auto t0 = Clock::now();
  double read_s = 0;
  for (;;) {
    const auto r0 = Clock::now();
    auto got = batch ? mb->lease(100, std::chrono::seconds(60)) : mb->pending(100);
    if (!got.ok()) {
      std::fprintf(stderr, "mailbox_bench: %s\n", got.status().message().c_str());
      std::exit(1);
    }
    read_s += seconds_since(r0);
    if (got.value().empty()) break;
    ids.clear();
    for (auto& m : got.value()) ids.push_back(std::move(m.envelope.message_id));
    if (batch) {
      auto n = mb->mark_delivered(ids);
      if (!n.ok() || n.value() != ids.size()) std::exit(1);
    } else {
      for (const auto& id : ids) {
        if (!mb->mark_delivered(id).ok()) std::exit(1);
      }
    }
    done += ids.size();
  }
  const double total_s = seconds_since(t0), cpu_s = process_cpu_s() - cpu0;
  const double rate = static_cast<double>(done) / total_s;
  // On a shared machine the wall-clock rate depends on the CPU the run got: the CPU
  // time (all of the process's threads) says how much that was.
  std::fprintf(stderr,
               "  [drain %s: %.0f msgs/s, %.0f%% of the time reading due rows, %.2f s wall, %.2f s CPU: %.0f msgs "
               "per CPU-second]\n",
               batch ? "lease+batch" : "pending+single", rate, 100 * read_s / total_s, total_s, cpu_s,
               static_cast<double>(done) / cpu_s);
  if (done != static_cast<std::size_t>(rows) || mb->stats().value().outbox_rows != 0) {
    std::fprintf(stderr, "mailbox_bench: drained %zu of %d rows\n", done, rows);
    std::exit(1);
  }
  return rate;
}

}  // namespace

// Median of the rounds, and the range for the table.
struct Stat {
  std::vector<double> v;
  double median() const {
    auto s = v;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[s.size() / 2];
  }
  double min() const { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
  double max() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

int main(int argc, char** argv) {
  int messages = 40000, rounds = 5, drain_rows = 0;
  bool json = false, backlog = true;
  std::string base = (fs::temp_directory_path() / ("edgert-mailbox-bench-" + std::to_string(::getpid()))).string();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--no-backlog")) {
      backlog = false;
    } else if (!std::strcmp(argv[i], "--messages") && i + 1 < argc) {
      messages = std::max(100, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--drain") && i + 1 < argc) {
      drain_rows = std::max(400, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) {
      base = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--messages N] [--rounds R] [--dir DIR] [--no-backlog] [--drain N] [--json]\n",
                   argv[0]);
      return 2;
    }
  }
  if (drain_rows == 0) drain_rows = messages / 2 * 5;
  (void)edgert::set_log_level("warning");
  fs::remove_all(base);
  auto dir = [&](const char* name) {
    const auto d = fs::path(base) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  };
  // Every figure is measured once per round, the rounds one after another; ratios are
  // taken within a round (the machine's speed drifts between rounds) and the median
  // over the rounds is reported.
  Stat a, b, c, d, e, f, g, b_a, b_c, b_d, b_g, f_d, p50, p99, p999, pmax, h_lease, h_single, h_ratio;
  const int per_message_n = std::max(50, messages / 100);  // each one fsyncs: keep the run short
  for (int r = 0; r < rounds; ++r) {
    a.v.push_back(per_message(dir("a"), per_message_n));
    std::vector<double> lat;
    b.v.push_back(mailbox_sends(dir("b"), messages, 8, 256, false, 0, &lat));
    std::sort(lat.begin(), lat.end());
    auto at = [&](double q) { return lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * lat.size()))]; };
    p50.v.push_back(at(0.5));
    p99.v.push_back(at(0.99));
    p999.v.push_back(at(0.999));
    pmax.v.push_back(lat.back());
    c.v.push_back(mailbox_sends(dir("c"), messages / 4, 8, 1, false));
    d.v.push_back(raw_batch(dir("d"), messages * 2, 10000));
    e.v.push_back(mailbox_sends(dir("e"), messages / 4, 8, 256, true));
    f.v.push_back(mailbox_sends(dir("f"), messages * 2, 8, 256, false, 64));
    g.v.push_back(raw_batch(dir("g"), messages, 8));
    b_a.v.push_back(b.v.back() / a.v.back());
    b_c.v.push_back(b.v.back() / c.v.back());
    b_d.v.push_back(b.v.back() / d.v.back());
    b_g.v.push_back(b.v.back() / g.v.back());
    f_d.v.push_back(f.v.back() / d.v.back());
    h_lease.v.push_back(drain(dir("h"), drain_rows, true));
    h_single.v.push_back(drain(dir("h1"), drain_rows / 4, false));
    h_ratio.v.push_back(h_lease.v.back() / h_single.v.back());
  }
  const OpenMs open_ms = backlog ? open_backlog_ms(dir("backlog")) : OpenMs{};
  fs::remove_all(base);

  if (json) {
    std::printf("{\"payload_bytes\": 256, \"senders\": 8, \"rounds\": %d, \"rows_per_s\": {\"per_message\": %.0f, "
                "\"group\": %.0f, \"single_txn\": %.0f, \"raw_batch\": %.0f, \"group_full\": %.0f, \"async\": %.0f, "
                "\"raw_txn8\": %.0f},\n"
                "  \"group_vs_per_message\": %.2f, \"group_vs_single_txn\": %.2f, \"group_vs_raw_batch\": %.3f, "
                "\"group_vs_raw_txn8\": %.3f, \"async_vs_raw_batch\": %.3f,\n"
                "  \"group_send_us\": {\"p50\": %.0f, \"p99\": %.0f, \"p999\": %.0f, \"max\": %.0f}, \"open_1m_ms\": %.0f, "
                "\"open_1m_restart_ms\": %.0f, \"open_1m_full_check_ms\": %.0f,\n"
                "  \"drain\": {\"rows\": %d, \"lease_batch_msgs_per_s\": %.0f, \"single_msgs_per_s\": %.0f, "
                "\"lease_batch_vs_single\": %.2f}}\n",
                rounds, a.median(), b.median(), c.median(), d.median(), e.median(), f.median(), g.median(),
                b_a.median(), b_c.median(), b_d.median(), b_g.median(), f_d.median(), p50.median(), p99.median(),
                p999.median(), pmax.median(), open_ms.first, open_ms.restart, open_ms.full, drain_rows, h_lease.median(),
                h_single.median(), h_ratio.median());
    return 0;
  }
  std::printf("mailbox_bench: 256-byte payloads, 8 senders where concurrent; median (min-max) of %d rounds\n\n",
              rounds);
  auto row = [](const char* what, const Stat& s) {
    std::printf("  %-42s: %8.0f rows/s  (%.0f-%.0f)\n", what, s.median(), s.min(), s.max());
  };
  row("(a) per message, new connection, defaults", a);
  row("(b) send(), group commit, NORMAL", b);
  row("(c) send(), one txn per message, NORMAL", c);
  row("(d) raw sqlite3, 10k-row transactions", d);
  row("(e) send(), group commit, FULL", e);
  row("(f) send_async(), 64 in flight per sender", f);
  row("(g) raw sqlite3, 8-row transactions", g);
  std::printf("  %-42s: %8.0f msgs/s (%.0f-%.0f) goal >= 50000\n", "(h) drain: lease(100) + mark_delivered(vector)",
              h_lease.median(), h_lease.min(), h_lease.max());
  std::printf("  %-42s: %8.0f msgs/s (%.0f-%.0f)\n", "(h) drain: pending(100) + mark_delivered(id)",
              h_single.median(), h_single.min(), h_single.max());
  auto ratio = [](const char* what, const Stat& s, const char* goal) {
    std::printf("  %-21s = %6.3f  (%.3f-%.3f) %s\n", what, s.median(), s.min(), s.max(), goal);
  };
  std::printf("\n");
  ratio("group_vs_per_message", b_a, "goal >= 20");
  ratio("group_vs_single_txn", b_c, "goal >= 2");
  ratio("group_vs_raw_batch", b_d, "goal >= 0.5");
  ratio("group_vs_raw_txn8", b_g, "send() against SQLite's own 8-row-commit ceiling");
  ratio("async_vs_raw_batch", f_d, "");
  ratio("drain lease_vs_single", h_ratio, "");
  std::printf("\n  (b) send() latency, us: p50 %.0f, p99 %.0f, p99.9 %.0f, max %.0f (medians; max ranged %.0f-%.0f)\n",
              p50.median(), p99.median(), p999.median(), pmax.median(), pmax.min(), pmax.max());
  if (backlog) {
    std::printf("  open with 1M pending  = %.0f ms (goal well under 1000; bounded check, docs/mailbox.md)\n",
                open_ms.first);
    std::printf("  same, full quick_check= %.0f ms (quick_check_max_bytes = UINT64_MAX: the open before issue 20)\n",
                open_ms.full);
    std::printf("  restart, 1M pending   = %.0f ms (after a clean close that followed a complete integrity_check)\n",
                open_ms.restart);
  }
  return 0;
}
