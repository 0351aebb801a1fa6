// Mailbox input faults (issue 9): hostile or malformed input, stored rows a reader
// cannot handle, callbacks that throw, and priority-respecting eviction.
#include <edgert/mailbox.hpp>

#include "envelope_builder.hpp"
#include "mailbox_test_util.hpp"
#include "fake_clock.hpp"
#include "scratch_dir.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using Catch::Contains;
using edgert::Envelope;
using edgert::ErrorCode;
using edgert::Mailbox;
using edgert::MailboxOptions;
using edgert::StoreResult;
namespace fs = std::filesystem;
using edgert::testing::raw_exec;

namespace {

using edgert::testing::Scratch;

using edgert::testing::FakeClock;

Envelope env(const std::string& payload = R"({"n":1})", const std::string& id = "") {
  return edgert::testing::result_envelope(payload, id);
}

std::unique_ptr<Mailbox> open(MailboxOptions o) {
  auto m = Mailbox::open(std::move(o));
  REQUIRE(m.ok());
  return std::move(m).value();
}

MailboxOptions options(const Scratch& s, FakeClock& clock) {
  MailboxOptions o;
  o.data_dir = s.dir.string();
  o.clock_ms = clock.fn();
  return o;
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

bool printable_ascii(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

// ---- item 3: nesting depth -------------------------------------------------------

TEST_CASE("a deeply nested payload is refused by send() and store(); nothing is stored", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  const std::string deep = nested(100'000);  // 200 KB, far under the size limit

  auto sent = mb->send(env(deep));
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(sent.status().message(), Contains("nest"));

  auto stored = mb->store(env(deep, "in:deep"));
  REQUIRE_FALSE(stored.ok());
  CHECK(stored.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(stored.status().message(), Contains("nest"));

  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == 0);
  CHECK(st.inbox_rows == 0);
  CHECK(st.counters.rejected == 2);
  CHECK(mb->pending(10).value().empty());
  CHECK(mb->unacked().value().empty());
}

TEST_CASE("the nesting limit is exact and configurable", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_json_depth = 4;
  auto mb = open(o);
  CHECK(mb->send(env(nested(4))).ok());
  CHECK(mb->send(env(R"({"a":{"b":[{"c":1}]}})")).ok());  // depth 4
  CHECK_FALSE(mb->send(env(nested(5))).ok());
  CHECK_FALSE(mb->send(env(R"({"a":{"b":[{"c":[]}]}})")).ok());  // depth 5
  // Brackets inside strings do not count.
  CHECK(mb->send(env(R"({"s":"[[[[[[[[[[{{{{{{{{"})")).ok());
  CHECK(mb->store(env(nested(4), "in:4")).ok());
  CHECK_FALSE(mb->store(env(nested(5), "in:5")).ok());
  const auto st = mb->stats().value();
  CHECK(st.outbox_rows == 3);
  CHECK(st.inbox_rows == 1);
  CHECK(st.counters.rejected == 3);
}

TEST_CASE("rows an older build stored with deep JSON are reported, skipped, and never crash a reader",
          "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  const auto file = s.dir / "mailbox.db";
  std::string good_out, good_in;
  {
    auto mb = open(options(s, clock));
    good_out = mb->send(env(R"({"ok":1})")).value();
    REQUIRE(mb->store(env(R"({"ok":2})", "in:good")).value() == StoreResult::stored);
  }
  const std::string deep_env = R"({"message_id":"out:deep","sender_node_id":"x","recipient_node_id":"fleet",)"
                               R"("timestamp":1,"payload_type":"detection","payload":)" +
                               nested(100'000) + "}";
  const std::string deep_in = R"({"message_id":"in:deep","sender_node_id":"x","recipient_node_id":"fleet",)"
                              R"("timestamp":1,"payload_type":"detection","payload":)" +
                              nested(100'000) + "}";
  // High priority and received first: both sit at the head of their queues.
  raw_exec(file,
           "INSERT INTO outbox (message_id, recipient_node_id, payload_type, envelope_json, size, priority, "
           "attempts, next_attempt_ms, expires_ms, created_ms) VALUES ('out:deep','fleet','detection','" +
               deep_env + "'," + std::to_string(deep_env.size()) + ",100,0,0,9000000000000,0);"
               "INSERT INTO inbox (message_id, sender_node_id, payload_type, envelope_json, size, received_ms, "
               "acknowledged) VALUES ('in:deep','x','detection','" + deep_in + "'," +
               std::to_string(deep_in.size()) + ",0,0);"
               "UPDATE totals SET outbox_rows = outbox_rows + 1, inbox_rows = inbox_rows + 1 WHERE id = 1;");

  auto mb = open(options(s, clock));
  for (int round = 0; round < 2; ++round) {  // a second read skips it again, reported once
    auto p = mb->pending(1);
    REQUIRE(p.ok());
    REQUIRE(p.value().size() == 1);  // the bad head does not starve the good row
    CHECK(p.value()[0].envelope.message_id == good_out);
    auto u = mb->unacked("", 1);
    REQUIRE(u.ok());
    REQUIRE(u.value().size() == 1);
    CHECK(u.value()[0].envelope.message_id == "in:good");
  }
  CHECK(mb->stats().value().counters.unreadable == 2);
  // The rows are kept (nothing lost) and an operator can still remove them.
  CHECK(mb->mark_delivered("out:deep").ok());
  CHECK(mb->ack("in:deep").ok());
}

// ---- item 5: exact validation, bounded and sanitised identifiers ----------------

TEST_CASE("a payload must be exactly one JSON value: NUL, BOM and trailing bytes are refused",
          "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  const std::vector<std::string> bad = {
      std::string("{\"a\":1}\0junk", 12),
      std::string("{\"a\":1}\0", 8),
      "\xEF\xBB\xBF{\"a\":1}",
      "{\"a\":1}{\"b\":2}",
      "{\"a\":1} x",
      "",
  };
  int n = 0;
  for (const auto& payload : bad) {
    INFO("payload #" << n);
    auto r = mb->send(env(payload));
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.status().code() == ErrorCode::invalid_argument);
    auto st = mb->store(env(payload, "in:" + std::to_string(n)));
    CHECK_FALSE(st.ok());
    ++n;
  }
  CHECK(mb->stats().value().outbox_rows == 0);
  CHECK(mb->stats().value().inbox_rows == 0);
  CHECK(mb->stats().value().counters.rejected == 2 * bad.size());
  CHECK(mb->pending(10).value().empty());
  CHECK(mb->unacked().value().empty());
  // Whitespace around the value is part of JSON text and stays accepted.
  CHECK(mb->send(env(" {\"a\":1}\n")).ok());
}

TEST_CASE("every stored envelope round-trips through pending() and unacked()", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  struct Case {
    std::string id, sender, recipient, type, payload;
  };
  const std::vector<Case> cases = {
      {"m:1", "node-a", "fleet", "detection", R"({"n":1})"},
      {"m:\"quoted\"\\", "n\xC3\xA9ud", "\xE2\x9C\x93", "t\ty", R"(["\u0000",1.5,null,true])"},
      {std::string("m:nul\0x", 7), "s", "r", "p", R"("str")"},
      {"m:4", "", "", "t", "42"},
  };
  for (const auto& c : cases) {
    Envelope e{c.id, c.sender, c.recipient, c.type, c.payload, 123};
    REQUIRE(mb->send(e).ok());
    Envelope in = e;
    in.message_id = "in-" + c.id;
    REQUIRE(mb->store(in).ok());
  }
  auto out = mb->pending(10).value();
  auto in = mb->unacked().value();
  REQUIRE(out.size() == cases.size());
  REQUIRE(in.size() == cases.size());
  std::set<std::string> seen_out, seen_in;
  for (const auto& m : out) {
    seen_out.insert(m.envelope.message_id);
    for (const auto& c : cases) {
      if (c.id != m.envelope.message_id) continue;
      CHECK(m.envelope.sender_node_id == c.sender);
      CHECK(m.envelope.recipient_node_id == c.recipient);
      CHECK(m.envelope.payload_type == c.type);
      CHECK(m.envelope.timestamp_ms == 123);
    }
  }
  for (const auto& m : in) seen_in.insert(m.envelope.message_id);
  for (const auto& c : cases) {
    CHECK(seen_out.count(c.id) == 1);
    CHECK(seen_in.count("in-" + c.id) == 1);
  }
}

TEST_CASE("identifiers have bounded lengths", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  const std::string huge(10 << 20, 'x');  // 10 MB message_id, far over the payload limit
  auto r = mb->send(env(R"({"n":1})", huge));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::invalid_argument);
  CHECK(r.status().message().size() < 1000);  // the error does not echo it
  auto st = mb->store(env(R"({"n":1})", huge));
  REQUIRE_FALSE(st.ok());
  CHECK(st.status().message().size() < 1000);

  const std::string at_limit(256, 'a'), over(257, 'a');
  auto with = [&](auto set) {
    Envelope e = env();
    set(e);
    return e;
  };
  CHECK(mb->send(with([&](Envelope& e) { e.message_id = at_limit; })).ok());
  CHECK(mb->send(with([&](Envelope& e) { e.sender_node_id = at_limit; })).ok());
  CHECK(mb->send(with([&](Envelope& e) { e.recipient_node_id = at_limit; })).ok());
  CHECK(mb->send(with([&](Envelope& e) { e.payload_type = at_limit; })).ok());
  CHECK_FALSE(mb->send(with([&](Envelope& e) { e.message_id = over; })).ok());
  CHECK_FALSE(mb->send(with([&](Envelope& e) { e.sender_node_id = over; })).ok());
  CHECK_FALSE(mb->send(with([&](Envelope& e) { e.recipient_node_id = over; })).ok());
  CHECK_FALSE(mb->send(with([&](Envelope& e) { e.payload_type = over; })).ok());
  CHECK_FALSE(mb->store(with([&](Envelope& e) { e.message_id = "in:" + over; })).ok());
  CHECK_FALSE(mb->store(with([&](Envelope& e) { e.message_id = "in:s"; e.sender_node_id = over; })).ok());
  const auto stats = mb->stats().value();
  CHECK(stats.outbox_rows == 4);
  CHECK(stats.inbox_rows == 0);
  CHECK(stats.counters.rejected == 2 + 4 + 2);
}

TEST_CASE("identifiers are sanitised before they appear in error text", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto mb = open(options(s, clock));
  const std::string evil = "evil\n2026-01-01 [ERROR] forged\x1b[31m\x7f";
  auto a = mb->mark_delivered(evil);
  CHECK(a.code() == ErrorCode::not_found);
  CHECK(printable_ascii(a.message()));
  CHECK_THAT(a.message(), Contains("evil"));
  auto b = mb->ack(evil);
  CHECK(b.code() == ErrorCode::not_found);
  CHECK(printable_ascii(b.message()));
  auto c = mb->mark_failed(evil);
  REQUIRE_FALSE(c.ok());
  CHECK(printable_ascii(c.status().message()));
  Envelope e = env("not json", evil);
  e.payload_type = evil;
  auto d = mb->send(e);
  REQUIRE_FALSE(d.ok());
  CHECK(printable_ascii(d.status().message()));
  auto f = mb->store(e);
  REQUIRE_FALSE(f.ok());
  CHECK(printable_ascii(f.status().message()));
}

// ---- item 10: a throwing on_notification -----------------------------------------

TEST_CASE("an on_notification callback that throws is caught and counted; the mailbox keeps working",
          "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_messages = 1;
  o.quota_policy = edgert::QuotaPolicy::evict_oldest;
  std::atomic<int> calls{0};
  o.on_notification = [&](const std::string&) {
    if (calls++ % 2 == 0) throw std::runtime_error("subscriber failed");
    throw 42;  // not even a std::exception
  };
  auto mb = open(o);
  int sent_ok = 0;
  for (int i = 0; i < 4; ++i) {
    if (mb->send(env()).ok()) ++sent_ok;
    clock.ms += 1;
  }
  CHECK(sent_ok == 4);
  CHECK(calls.load() == 3);  // one eviction per send after the first
  const auto st = mb->stats().value();
  CHECK(st.counters.evicted == 3);
  CHECK(st.counters.notification_errors == 3);
  CHECK(st.outbox_rows == 1);
}

// ---- item 13: eviction respects priority -----------------------------------------

TEST_CASE("evict_oldest never evicts a higher priority message for a lower priority newcomer",
          "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.max_messages = 2;
  o.quota_policy = edgert::QuotaPolicy::evict_oldest;
  std::vector<std::string> notes;
  o.on_notification = [&](const std::string& n) { notes.push_back(n); };
  auto mb = open(o);
  auto send = [&](int prio) {
    edgert::SendOptions so;
    so.priority = prio;
    clock.ms += 1;
    return mb->send(env(), so);
  };
  const auto high1 = send(100).value();
  const auto high2 = send(100).value();

  auto low = send(-100);
  REQUIRE_FALSE(low.ok());
  CHECK(low.status().code() == ErrorCode::quota_exceeded);
  CHECK_THAT(low.status().message(), Contains("priority"));
  auto st = mb->stats().value();
  CHECK(st.counters.evicted == 0);
  CHECK(st.counters.rejected == 1);
  CHECK(notes.empty());
  std::set<std::string> kept;
  for (auto& m : mb->pending(10).value()) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{high1, high2});

  // Equal priority: the oldest goes.
  const auto high3 = send(100).value();
  kept.clear();
  for (auto& m : mb->pending(10).value()) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{high2, high3});
  CHECK(mb->stats().value().counters.evicted == 1);
  REQUIRE(notes.size() == 1);
  CHECK_THAT(notes[0], Contains(high1));
}

TEST_CASE("evict_oldest evicts nothing when the lower priority rows cannot make room", "[mailbox_fault]") {
  Scratch s;
  FakeClock clock;
  auto o = options(s, clock);
  o.quota_policy = edgert::QuotaPolicy::evict_oldest;
  auto mb = open(o);
  auto send = [&](int prio, std::size_t pad) {
    edgert::SendOptions so;
    so.priority = prio;
    clock.ms += 1;
    return mb->send(env("\"" + std::string(pad, 'p') + "\""), so);
  };
  const auto low = send(0, 1000).value();
  const auto high = send(10, 1000).value();
  const auto used = mb->stats().value().outbox_bytes;
  mb.reset();
  o.max_bytes = used + 100;
  mb = open(o);
  // Needs ~1,000 more bytes than the priority-0 row frees: refused, nothing evicted.
  auto r = send(0, 2000);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::quota_exceeded);
  std::set<std::string> kept;
  for (auto& m : mb->pending(10).value()) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{low, high});
  CHECK(mb->stats().value().counters.evicted == 0);
  CHECK(mb->stats().value().counters.rejected == 1);
  // A newcomer that fits once the priority-0 row is gone evicts just that row.
  auto ok = send(0, 1000);
  REQUIRE(ok.ok());
  kept.clear();
  for (auto& m : mb->pending(10).value()) kept.insert(m.envelope.message_id);
  CHECK(kept == std::set<std::string>{high, ok.value()});
  CHECK(mb->stats().value().counters.evicted == 1);
}
