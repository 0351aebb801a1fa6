// Comms end to end against a real mosquitto on loopback (tests/mqtt_broker.hpp):
// delivery only after PUBACK, presence, node-to-node mail, inbound checks and dead
// letters, commands (stored before they run, run once), signing, offline operation.
#include "comms_test_util.hpp"
#include "log_capture.hpp"
#include "numbered.hpp"

#include <edgert/metrics.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using edgert::testing::comms_of;
using edgert::testing::comms_yaml;
using edgert::testing::envelope;
using edgert::testing::make_node;
using edgert::testing::MosquittoBroker;
using edgert::testing::numbered;
using edgert::testing::TestClient;
using edgert::testing::wait_until;
using json = nlohmann::json;

namespace {

using Scratch = edgert::testing::MadeScratch;

std::set<std::string> ids_on(const TestClient& c, const std::string& topic) {
  std::set<std::string> ids;
  for (const auto& m : c.messages()) {
    if (m.topic != topic) continue;
    auto j = json::parse(m.payload, nullptr, false);
    if (j.is_object() && j.contains("message_id")) ids.insert(j["message_id"].get<std::string>());
  }
  return ids;
}

std::size_t count_on(const TestClient& c, const std::string& topic) {
  std::size_t n = 0;
  for (const auto& m : c.messages()) n += m.topic == topic;
  return n;
}

std::vector<std::string> payloads_on(const TestClient& c, const std::string& topic) {
  std::vector<std::string> out;
  for (const auto& m : c.messages()) {
    if (m.topic == topic) out.push_back(m.payload);
  }
  return out;
}

std::string send(edgert::Node& n, const std::string& recipient, const std::string& type, const json& payload) {
  edgert::Envelope e;
  e.sender_node_id = n.config().node.id;
  e.recipient_node_id = recipient;
  e.payload_type = type;
  e.payload = payload.dump();
  auto id = n.mailbox()->send(std::move(e));
  REQUIRE(id.ok());
  return id.value();
}

std::uint64_t outbox_rows(edgert::Node& n) {
  auto s = n.mailbox()->stats();
  REQUIRE(s.ok());
  return s.value().outbox_rows;
}

// Replies to commands reach {root}/backend/inbox; in_reply_to -> reply.
std::map<std::string, json> replies(const TestClient& c) {
  std::map<std::string, json> out;
  for (const auto& p : payloads_on(c, "edgert/backend/inbox")) {
    auto e = json::parse(p, nullptr, false);
    if (!e.is_object() || e.value("payload_type", "") != "command.reply") continue;
    const auto& r = e["payload"];
    out[r["in_reply_to"].get<std::string>()] = r;
  }
  return out;
}

// Runs `sql` on a connection of its own (another process, as far as the node's
// mailbox can tell), waiting out the node's own transactions.
void raw_sql(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  INFO(file.string() << ": " << sql << ": " << msg);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("results reach the broker, node-to-node mail arrives in the other node's inbox, presence is retained",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/#");
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  auto b = make_node(comms_yaml(s.dir, "node-b", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(b->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true && comms_of(*b)["connected"] == true; }));

  std::set<std::string> sent_payloads;
  for (int i = 0; i < 200; ++i) sent_payloads.insert(send(*a, "", "detection", json{{"i", i}}));
  const std::string mail = send(*a, "node-b", "chat", json{{"text", "hello b"}});
  const std::string note = send(*a, "", "notification", json{{"text", "disk ok"}});

  REQUIRE(wait_until([&] { return ids_on(watcher, "edgert/node-a/payloads").size() == 200; }));
  CHECK(ids_on(watcher, "edgert/node-a/payloads") == sent_payloads);
  REQUIRE(wait_until([&] { return ids_on(watcher, "edgert/node-a/notifications").count(note) == 1; }));
  REQUIRE(wait_until([&] { return outbox_rows(*a) == 0; }));
  CHECK(comms_of(*a)["delivered"] == 202);

  // node-b stored the mail in its inbox, unacknowledged, for its host to read.
  REQUIRE(wait_until([&] {
    auto un = b->mailbox()->unacked("chat");
    return un.ok() && un.value().size() == 1;
  }));
  auto un = b->mailbox()->unacked("chat");
  CHECK(un.value()[0].envelope.message_id == mail);
  CHECK(un.value()[0].envelope.sender_node_id == "node-a");
  CHECK(json::parse(un.value()[0].envelope.payload)["text"] == "hello b");

  // Presence: a late subscriber gets the retained `online`; heartbeats flow.
  TestClient late(broker.port(), "late");
  late.subscribe("edgert/node-a/status");
  REQUIRE(late.wait_for([](const auto& ms) { return !ms.empty() && ms.back().payload == "online"; }, 10s));
  REQUIRE(wait_until([&] { return count_on(watcher, "edgert/node-a/heartbeat") >= 2; }, 20s));
  auto hb = json::parse(payloads_on(watcher, "edgert/node-a/heartbeat").back());
  CHECK(hb["node_id"] == "node-a");
  CHECK(hb["status"] == "RUNNING");
  CHECK(hb["comms"]["connected"] == true);
  CHECK(hb["outbox"].contains("messages"));
  CHECK(hb["outbox"].contains("oldest_age_ms"));
  CHECK(hb["process"]["rss_bytes"].get<std::uint64_t>() > 0);
  CHECK(hb["disk"]["free_bytes"].get<std::uint64_t>() > 0);
  CHECK(hb.contains("edgert_version"));

  // The same figures as metrics (edgert_comms_*).
  const auto stats = json::parse(a->stats_json());
  CHECK(stats.dump().find("edgert_comms_delivered_total") != std::string::npos);
  CHECK(stats.dump().find("edgert_comms_dead_letters_total") != std::string::npos);
  CHECK(stats["comms"]["delivered"] == 202);
  {
    // One table (comms.cpp kFigures) serves both: a series equals its stats() figure.
    const auto snap = a->metrics().snapshot();
    const auto c = json::parse(a->comms_json());
    const std::pair<const char*, const char*> pairs[] = {
        {"edgert_comms_published_total", "published"}, {"edgert_comms_delivered_total", "delivered"},
        {"edgert_comms_connects_total", "connects"},    {"edgert_comms_commands_total", "commands_run"},
        {"edgert_comms_in_flight", "in_flight"},        {"edgert_comms_dead_letters_lost_total", "dead_letters_lost"}};
    for (const auto& [metric, key] : pairs) {
      INFO(metric << " vs comms." << key);
      const auto* series = snap.find(metric);
      REQUIRE(series != nullptr);
      CHECK(series->value == c[key].get<double>());
    }
  }

  // A clean stop: the SHUTDOWN heartbeat, then the retained `offline`.
  a->stop();
  REQUIRE(wait_until([&] {
    auto ps = payloads_on(watcher, "edgert/node-a/status");
    return !ps.empty() && ps.back() == "offline";
  }, 10s));
  auto last = json::parse(payloads_on(watcher, "edgert/node-a/heartbeat").back());
  CHECK(last["status"] == "SHUTDOWN");
  b->stop();
}

TEST_CASE("a broker that stops answering leaves the rows in the outbox; they drain once it answers", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/node-a/payloads");
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));

  broker.pause();
  std::set<std::string> sent;
  for (int i = 0; i < 50; ++i) sent.insert(send(*a, "", "detection", json{{"i", i}}));
  std::this_thread::sleep_for(3s);
  CHECK(outbox_rows(*a) == 50);
  CHECK(comms_of(*a)["delivered"] == 0);
  broker.resume();
  REQUIRE(wait_until([&] { return outbox_rows(*a) == 0; }));
  REQUIRE(wait_until([&] { return ids_on(watcher, "edgert/node-a/payloads") == sent; }));
  a->stop();
}

TEST_CASE("stop() with the broker SIGSTOPped returns in bounded time", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  broker.pause();
  for (int i = 0; i < 200; ++i) send(*a, "", "detection", json{{"i", i}});
  std::this_thread::sleep_for(GENERATE(1s, 14s));
  INFO(comms_of(*a).dump());
  const auto began = std::chrono::steady_clock::now();
  a->stop();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  INFO("stop() took " << took.count() << " ms");
  CHECK(took < 15s);
  broker.resume();
}

// From the review: a session that dies after turning unresponsive (broker SIGSTOPped
// past the keepalive) must count its rows in flight as lost, at once; they used to stay
// under the old session's message ids, which the next session reuses.
TEST_CASE("rows in flight when a stalled broker's session is closed drain promptly after it resumes", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/node-a/payloads");
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "  ack_timeout_ms: 60000\n"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  broker.pause();
  std::set<std::string> sent;
  for (int i = 0; i < 50; ++i) sent.insert(send(*a, "", "detection", json{{"i", i}}));
  // unresponsive at ~6 s, libmosquitto closes the session at ~10 s.
  REQUIRE(wait_until([&] { return comms_of(*a)["state"] == "connecting"; }, 30s));
  broker.resume();
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }, 30s));
  for (int i = 50; i < 100; ++i) sent.insert(send(*a, "", "detection", json{{"i", i}}));
  // The mailbox back-off after a failed attempt is 5 s; 25 s is generous for 100 rows.
  const bool drained = wait_until([&] { return outbox_rows(*a) == 0; }, 25s);
  INFO(comms_of(*a).dump());
  CHECK(drained);
  CHECK(wait_until([&] { return ids_on(watcher, "edgert/node-a/payloads") == sent; }, 90s));
  a->stop();
}

TEST_CASE("with no broker at start the pipeline keeps working and the outbox grows; the backlog drains when it appears",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;  // not started yet
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "", R"(streams:
  - name: cam
    capture: {type: pl_source, fps: 50, frames: 200}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return outbox_rows(*a) >= 100; }));
  CHECK(comms_of(*a)["connected"] == false);
  CHECK(a->running());
  broker.start();
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/node-a/payloads");
  REQUIRE(wait_until([&] { return a->pipeline_done() && outbox_rows(*a) == 0; }));
  REQUIRE(wait_until([&] { return ids_on(watcher, "edgert/node-a/payloads").size() >= 200; }));
  a->stop();
}

TEST_CASE("commands sent while the node is offline run exactly once after it reconnects; expired ones are counted",
          "[comms]") {
  Scratch s;
  edgert::testing::BrokerOptions bo;
  bo.persistence = true;
  bo.extra_config = "max_queued_messages 100000\n";  // mosquitto's default, 1000, drops the rest silently
  MosquittoBroker broker(bo);
  broker.start();
  const std::string yaml = comms_yaml(s.dir, "node-a", broker.port());
  std::mutex mu;
  std::map<std::string, int> runs;  // the handler's own tally, by message_id
  auto counting = [&](edgert::Node& n) {
    n.add_command("COUNT", [&](const edgert::CommandRequest& r) -> edgert::Result<std::string> {
      std::lock_guard lk(mu);
      ++runs[r.message_id];
      return std::string("{}");
    });
  };
  {
    auto a = make_node(yaml);  // establishes the persistent session
    counting(*a);
    REQUIRE(a->start().ok());
    REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
    a->stop();
  }
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  constexpr int kCommands = 1000, kExpired = 20;
  for (int i = 0; i < kCommands; ++i) {
    REQUIRE(backend.publish("edgert/node-a/commands", edgert::testing::command("cmd-" + std::to_string(i), "node-a", "COUNT")));
  }
  for (int i = 0; i < kExpired; ++i) {
    REQUIRE(backend.publish("edgert/node-a/commands",
                            envelope("old-" + std::to_string(i), "backend", "node-a", "command",
                                     json{{"command", "COUNT"}}, "", "", edgert::testing::now_ms() + 500)));
  }
  std::this_thread::sleep_for(1s);  // the last ones expire while the node is away
  auto a = make_node(yaml);
  counting(*a);
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return replies(backend).size() == kCommands; }, 120s));
  // The expired ones were queued after the rest: the last reply can arrive before the
  // node has read them.
  CHECK(wait_until([&] { return comms_of(*a)["dead_letters"]["expired"] == kExpired; }, 30s));
  {
    std::lock_guard lk(mu);
    CHECK(runs.size() == kCommands);
    for (const auto& [id, n] : runs) {
      INFO(id);
      CHECK(n == 1);
      CHECK(id.rfind("cmd-", 0) == 0);
    }
  }
  const auto c = comms_of(*a);
  CHECK(c["dead_letters"]["expired"] == kExpired);
  CHECK(c["commands_run"] == kCommands);
  for (const auto& [id, r] : replies(backend)) CHECK(r["ok"] == true);
  a->stop();
}

TEST_CASE("malformed, oversized, deep, misaddressed and replayed messages are dead-lettered or deduplicated and counted",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "  max_inbound_bytes: 4096\n"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands", inbox = "edgert/node-a/inbox";
  REQUIRE(backend.publish(cmds, "{not json"));
  REQUIRE(backend.publish(cmds, std::string("\xff\xfe{}", 4)));
  REQUIRE(backend.publish(inbox, json{{"message_id", "m1"}, {"sender_node_id", "x"}}.dump()));
  REQUIRE(backend.publish(inbox, envelope("big", "backend", "node-a", "chat", json{{"blob", std::string(5000, 'x')}})));
  std::string deep(200, '[');
  deep += std::string(200, ']');
  REQUIRE(backend.publish(inbox, R"({"message_id":"deep","sender_node_id":"backend","recipient_node_id":"node-a","timestamp":1,"payload_type":"chat","payload":)" + deep + "}"));
  REQUIRE(backend.publish(inbox, envelope("elsewhere", "backend", "node-z", "chat", json{{"t", 1}})));
  REQUIRE(backend.publish(cmds, envelope("notcmd", "backend", "node-a", "command", json{{"nope", 1}})));
  const std::string twice = envelope("twice", "backend", "node-a", "chat", json{{"t", 2}});
  REQUIRE(backend.publish(inbox, twice));
  REQUIRE(backend.publish(inbox, twice));
  // A command through the inbox (where signatures are not checked) and a sender id
  // that cannot be a topic level (replies go to {root}/{sender}/inbox).
  REQUIRE(backend.publish(inbox, edgert::testing::command("via-inbox", "node-a", "PING")));
  REQUIRE(backend.publish(cmds, edgert::testing::command("wild", "node-a", "PING", json::object(), "a/+/b")));
  REQUIRE(backend.publish(cmds, edgert::testing::command("ping-1", "node-a", "PING")));

  REQUIRE(wait_until([&] { return replies(backend).count("ping-1") == 1; }));
  REQUIRE(wait_until([&] { return comms_of(*a)["duplicates"] == 1; }));
  // Inbox and command messages are handled apart: the reply to ping-1 can come before
  // the last inbox message was read. Wait until every message has an outcome (12 in
  // all: 9 dead letters, a duplicate, a stored chat, a PING run), then check which.
  CHECK(wait_until([&] {
    const auto c = comms_of(*a);
    std::uint64_t letters = 0;
    for (const auto& [reason, n] : c["dead_letters"].items()) letters += n.get<std::uint64_t>();
    return c["received"] == 12 && letters == 9;
  }));
  const auto c = comms_of(*a);
  INFO(c.dump());
  CHECK(c["dead_letters"]["malformed"] == 5);  // bad JSON, bad UTF-8, too deep, no command name, via inbox
  CHECK(c["dead_letters"]["missing_field"] == 2);  // no recipient; a sender id with '/' and '+'
  CHECK(c["commands_run"] == 1);
  CHECK(c["dead_letters"]["oversized"] == 1);
  CHECK(c["dead_letters"]["wrong_recipient"] == 1);
  CHECK(c["received"] == 12);
  // The deep one is refused before it is parsed (the parser would recurse per level).
  auto letters = a->mailbox()->dead_letters(100);
  REQUIRE(letters.ok());
  std::map<std::string, std::string> reason_of;
  for (const auto& d : letters.value()) reason_of[d.message_id] = d.reason;
  CHECK(reason_of["elsewhere"].find("node-z") != std::string::npos);
  // Too big to be read: kept by reason, without an id.
  bool big_refused = false;
  for (const auto& d : letters.value()) big_refused |= d.message_id.empty() && d.reason.rfind("oversized: 5", 0) == 0;
  CHECK(big_refused);
  CHECK(reason_of["m1"].find("missing field") != std::string::npos);
  bool deep_refused = false;
  for (const auto& d : letters.value()) {
    deep_refused |= d.raw.find("\"deep\"") != std::string::npos && d.reason.find("deeper") != std::string::npos;
  }
  CHECK(deep_refused);
  auto un = a->mailbox()->unacked("chat");
  REQUIRE(un.ok());
  CHECK(un.value().size() == 1);  // `twice`, stored once
  CHECK(replies(backend)["ping-1"]["result"]["pong"] == true);
  CHECK(a->running());
  a->stop();
}

TEST_CASE("with signing required, unsigned, badly signed and unknown senders' commands are refused and counted",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const std::string secret = "0123456789abcdef-secret";
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(),
                                "  security: {require_signed: true, allowed_senders: [backend], keys: {k1: " + secret +
                                    "}}\n"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  backend.subscribe("edgert/intruder/inbox");
  const std::string cmds = "edgert/node-a/commands";
  const json ping{{"command", "PING"}};
  REQUIRE(backend.publish(cmds, envelope("unsigned", "backend", "node-a", "command", ping)));
  REQUIRE(backend.publish(cmds, envelope("wrong", "backend", "node-a", "command", ping, "k1", "not-the-secret-at-all")));
  REQUIRE(backend.publish(cmds, envelope("nokey", "backend", "node-a", "command", ping, "k9", secret)));
  REQUIRE(backend.publish(cmds, envelope("intruder", "intruder", "node-a", "command", ping, "k1", secret)));
  // Signed over another payload than the one sent: a tampered message.
  auto tampered = json::parse(envelope("tampered", "backend", "node-a", "command", ping, "k1", secret));
  tampered["payload"]["command"] = "TRIGGER";
  REQUIRE(backend.publish(cmds, tampered.dump()));
  // The expiry is signed too: stripping it to replay an expired command breaks the signature.
  auto stripped = json::parse(envelope("stripped", "backend", "node-a", "command", ping, "k1", secret,
                                       edgert::testing::now_ms() + 60000));
  stripped.erase("expires_ms");
  REQUIRE(backend.publish(cmds, stripped.dump()));
  REQUIRE(backend.publish(cmds, envelope("good", "backend", "node-a", "command", ping, "k1", secret)));

  REQUIRE(wait_until([&] { return replies(backend).count("good") == 1; }));
  const auto c = comms_of(*a);
  INFO(c.dump());
  CHECK(c["dead_letters"]["unsigned"] == 1);
  CHECK(c["dead_letters"]["bad_signature"] == 4);
  CHECK(c["dead_letters"]["unknown_sender"] == 1);
  CHECK(c["commands_run"] == 1);
  CHECK(replies(backend).size() == 1);
  a->stop();
}

// Issue 19 item 5: freshness of signed commands and replay state (docs/operations.md,
// "Signing"; docs/mailbox.md, "Restoring a backup").
namespace {

const std::string kSecret = "0123456789abcdef-secret";
const std::string kSnapStream = R"(streams:
  - name: snap
    capture: {type: pl_source}
    trigger: {type: manual}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)";

std::string signing_yaml(const std::string& extra = "") {
  return "  security: {require_signed: true, keys: {k1: " + kSecret + "}" + extra + "}\n";
}

// Replies to `id` on the backend's inbox, every copy counted (replies() keeps one).
std::size_t reply_copies(const TestClient& c, const std::string& id) {
  std::size_t n = 0;
  for (const auto& p : payloads_on(c, "edgert/backend/inbox")) {
    auto e = json::parse(p, nullptr, false);
    if (e.is_object() && e.value("payload_type", "") == "command.reply" && e["payload"]["in_reply_to"] == id) ++n;
  }
  return n;
}

std::uint64_t captured(const edgert::Node& n) {
  return json::parse(n.stats_json())["streams"]["snap"]["captured"].get<std::uint64_t>();
}

}  // namespace

TEST_CASE("a captured signed TRIGGER replayed after the mailbox is restored from an earlier backup does not run again",
          "[comms][replay]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const std::string yaml = comms_yaml(s.dir, "node-a", broker.port(), signing_yaml(), kSnapStream);
  const std::string data_dir = (s.dir / "node-a").string(), cmds = "edgert/node-a/commands";
  const std::string backup = (s.dir / "before-trigger.db").string();
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  // The bytes an eavesdropper keeps: a valid signature, a fresh timestamp.
  const std::string trigger = envelope("trigger-1", "backend", "node-a", "command",
                                       json{{"command", "TRIGGER"}, {"args", {{"stream", "snap"}}}}, "k1", kSecret);
  {
    auto a = make_node(yaml);
    REQUIRE(a->start().ok());
    REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
    REQUIRE(edgert::Mailbox::backup(data_dir, backup).ok());  // before the TRIGGER arrives
    REQUIRE(backend.publish(cmds, trigger));
    REQUIRE(wait_until([&] { return reply_copies(backend, "trigger-1") == 1; }));
    REQUIRE(wait_until([&] { return captured(*a) == 1; }));  // the stream's own count: it ran
    a->stop();
  }
  auto restored = edgert::Mailbox::restore(data_dir, backup);
  INFO((restored.ok() ? restored.value() : restored.status().message()));
  REQUIRE(restored.ok());

  auto a = make_node(yaml);
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  REQUIRE(backend.publish(cmds, trigger));  // the replay
  // Inbound messages are handled in order: once this one's reply is out, the replay
  // was judged (and, had it been stored anew, run first: commands run in arrival order).
  REQUIRE(backend.publish(cmds, envelope("ping-after", "backend", "node-a", "command", json{{"command", "PING"}}, "k1",
                                         kSecret)));
  REQUIRE(wait_until([&] { return reply_copies(backend, "ping-after") == 1; }));
  std::this_thread::sleep_for(500ms);  // a second reply to trigger-1 would be out by now
  const auto c = comms_of(*a);
  INFO(c.dump());
  CHECK(c["duplicates"] == 1);    // counted, with its reason: already in the inbox
  CHECK(c["commands_run"] == 1);  // ping-after only
  CHECK(captured(*a) == 0);       // the stream never fired in this run
  CHECK(reply_copies(backend, "trigger-1") == 1);
  a->stop();
}

TEST_CASE("signed commands older or further in the future than comms.security.command_window_s are refused",
          "[comms][replay]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), signing_yaml(", command_window_s: 60")));
  std::mutex mu;
  std::set<std::string> ran;  // the handler's own tally
  a->add_command("COUNT", [&](const edgert::CommandRequest& r) -> edgert::Result<std::string> {
    std::lock_guard lk(mu);
    ran.insert(r.message_id);
    return std::string("{}");
  });
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands";
  const json count{{"command", "COUNT"}};
  const std::int64_t now = edgert::testing::now_ms();
  auto at = [&](const std::string& id, std::int64_t ts) {
    return envelope(id, "backend", "node-a", "command", count, "k1", kSecret, 0, ts);
  };
  REQUIRE(backend.publish(cmds, at("old", now - 100'000)));
  REQUIRE(backend.publish(cmds, at("future", now + 100'000)));
  REQUIRE(backend.publish(cmds, at("ancient", 1)));
  REQUIRE(backend.publish(cmds, at("recent", now - 30'000)));
  REQUIRE(backend.publish(cmds, at("ahead", now + 30'000)));  // a back-end clock a little fast
  REQUIRE(wait_until([&] { return replies(backend).size() == 2; }));
  REQUIRE(wait_until([&] { return comms_of(*a)["dead_letters"]["stale"] == 3; }));
  {
    std::lock_guard lk(mu);
    CHECK(ran == std::set<std::string>{"recent", "ahead"});
  }
  auto letters = a->mailbox()->dead_letters(100);
  REQUIRE(letters.ok());
  std::map<std::string, std::string> reason_of;
  for (const auto& d : letters.value()) reason_of[d.message_id] = d.reason;
  CHECK_THAT(reason_of["old"], Catch::Contains("stale: signed timestamp") && Catch::Contains("s old") &&
                                   Catch::Contains("comms.security.command_window_s (60 s)"));
  CHECK_THAT(reason_of["future"], Catch::Contains("in the future"));
  CHECK_THAT(reason_of["ancient"], Catch::Contains("stale: "));
  CHECK(comms_of(*a)["commands_run"] == 2);
  a->stop();
}

TEST_CASE("a retained command is refused, live and when a node with a fresh data_dir subscribes", "[comms][replay]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  std::mutex mu;
  int runs = 0;  // the handler's own tally
  auto start_node = [&](const std::filesystem::path& dir) {
    auto n = make_node(comms_yaml(dir, "node-a", broker.port(), signing_yaml()));
    n->add_command("COUNT", [&](const edgert::CommandRequest&) -> edgert::Result<std::string> {
      std::lock_guard lk(mu);
      ++runs;
      return std::string("{}");
    });
    REQUIRE(n->start().ok());
    REQUIRE(wait_until([&] { return comms_of(*n)["connected"] == true; }));
    return n;
  };
  const std::string cmds = "edgert/node-a/commands";
  {
    auto a = start_node(s.dir / "first");
    REQUIRE(backend.publish(cmds, envelope("kept", "backend", "node-a", "command", json{{"command", "COUNT"}}, "k1",
                                           kSecret),
                            1, /*retain=*/true));
    REQUIRE(wait_until([&] { return comms_of(*a)["dead_letters"]["retained"] == 1; }));
    auto letters = a->mailbox()->dead_letters(10);
    REQUIRE(letters.ok());
    REQUIRE(letters.value().size() == 1);
    CHECK_THAT(letters.value()[0].reason, Catch::Contains("retained: a retained command"));
    a->stop();
  }
  // A fresh data_dir has no inbox to recognise it by: the broker hands it the retained copy.
  auto b = start_node(s.dir / "fresh");
  REQUIRE(wait_until([&] { return comms_of(*b)["dead_letters"]["retained"] == 1; }));
  REQUIRE(backend.publish(cmds, envelope("ping", "backend", "node-a", "command", json{{"command", "PING"}}, "k1",
                                         kSecret)));
  REQUIRE(wait_until([&] { return replies(backend).count("ping") == 1; }));
  {
    std::lock_guard lk(mu);
    CHECK(runs == 0);
  }
  CHECK(replies(backend).count("kept") == 0);
  b->stop();
}

// Issue 19 item 7.
TEST_CASE("a command with a message id of the full 256 bytes gets its reply", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands";
  std::string id(256, 'x');
  std::string id2 = std::string(255, 'x') + "y";  // differs in the last byte: its own reply
  REQUIRE(backend.publish(cmds, edgert::testing::command(id, "node-a", "PING")));
  REQUIRE(backend.publish(cmds, edgert::testing::command(id2, "node-a", "PING")));
  REQUIRE(wait_until([&] { return replies(backend).size() == 2; }, 20s));
  auto r = replies(backend);
  CHECK(r[id]["ok"] == true);
  CHECK(r[id2]["ok"] == true);
  const auto c = comms_of(*a);
  CHECK(c["replies_failed"] == 0);
  CHECK(c["commands_run"] == 2);
  a->stop();
}

// One heartbeat model (node.heartbeat_interval_ms): the beat comms publishes is the very
// document on_heartbeat received for the same seq, built once by one builder; the
// SHUTDOWN heartbeat (built by the same function) carries the same fields.
TEST_CASE("the published heartbeat is the document on_heartbeat got, one beat every interval", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/node-h/heartbeat");
  std::string yaml = comms_yaml(s.dir, "node-h", broker.port());
  const std::string from = "heartbeat_interval_ms: 1000";
  REQUIRE(yaml.find(from) != std::string::npos);
  yaml.replace(yaml.find(from), from.size(), "heartbeat_interval_ms: 200");
  auto cfg = edgert::parse_config(yaml, "test.yaml", {});
  REQUIRE(cfg.ok());
  std::mutex mu;
  std::map<std::uint64_t, std::string> local;  // seq -> document, this test's own tally
  edgert::NodeOptions opts;
  opts.on_heartbeat = [&](const edgert::NodeHeartbeat& hb) {
    std::lock_guard lk(mu);
    local[hb.tick.seq] = hb.document;
  };
  auto made = edgert::Node::create(std::move(cfg).value(), opts);
  REQUIRE(made.ok());
  auto node = std::move(made).value();
  REQUIRE(node->start().ok());
  REQUIRE(wait_until([&] { return count_on(watcher, "edgert/node-h/heartbeat") >= 5; }, 20s));
  node->stop();
  REQUIRE(wait_until([&] {
    const auto ps = payloads_on(watcher, "edgert/node-h/heartbeat");
    return !ps.empty() && json::parse(ps.back())["status"] == "SHUTDOWN";
  }, 10s));
  const auto published = payloads_on(watcher, "edgert/node-h/heartbeat");
  std::lock_guard lk(mu);
  REQUIRE(!local.empty());
  std::set<std::string> local_keys;
  const auto first_local = json::parse(local.begin()->second);
  for (const auto& item : first_local.items()) local_keys.insert(item.key());
  std::size_t running = 0;
  std::uint64_t last_seq = 0;
  std::int64_t first_ms = 0, last_ms = 0;
  for (const auto& p : published) {
    const auto doc = json::parse(p);
    std::set<std::string> keys;
    for (const auto& item : doc.items()) keys.insert(item.key());
    CHECK(keys == local_keys);
    if (doc["status"] != "RUNNING") continue;
    ++running;
    const auto seq = doc["seq"].get<std::uint64_t>();
    INFO("seq " << seq);
    CHECK(seq > last_seq);  // one clock: beats published in order, none twice
    last_seq = seq;
    REQUIRE(local.count(seq) == 1);
    CHECK(local.at(seq) == p);  // the same bytes: built once
    const auto t = doc["time_ms"].get<std::int64_t>();
    if (first_ms == 0) first_ms = t;
    last_ms = t;
  }
  CHECK(running >= 5);
  // 200 ms apart on average (not 1 s, not 10 s: the interval reaches the publisher).
  if (running >= 2 && last_ms > first_ms) {
    const auto gap = (last_ms - first_ms) / static_cast<std::int64_t>(running - 1);
    INFO("mean gap " << gap << " ms");
    CHECK(gap >= 100);
    CHECK(gap <= 600);
  }
  // The SHUTDOWN heartbeat carries the last beat's seq.
  CHECK(json::parse(published.back())["seq"].get<std::uint64_t>() == local.rbegin()->first);
  const auto c = comms_of(*node);
  CHECK(c["heartbeats_published"].get<std::uint64_t>() >= running + 1);
}

TEST_CASE("process.cpu_percent stays within 0..100 x CPUs under bursts of STATUS commands and heartbeats", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  backend.subscribe("edgert/node-a/heartbeat");
  // Two threads burning CPU in this process: the node's CPU time grows fast, and a
  // reading over a gap of a millisecond or two shows it as far over 100% per core.
  std::atomic<bool> burn{true};
  std::vector<std::thread> burners;
  for (int i = 0; i < 2; ++i) {
    burners.emplace_back([&] {
      volatile std::uint64_t x = 0;
      while (burn.load(std::memory_order_relaxed)) x = x + 1;
    });
  }
  const std::string cmds = "edgert/node-a/commands";
  constexpr int kRounds = 4, kBurst = 40;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kBurst; ++i) {
      REQUIRE(backend.publish(cmds, edgert::testing::command(numbered(numbered("s", round) + "-", i),
                                                              "node-a", "STATUS")));
    }
    std::this_thread::sleep_for(600ms);
  }
  REQUIRE(wait_until([&] { return replies(backend).size() == kRounds * kBurst; }, 60s));
  burn = false;
  for (auto& t : burners) t.join();
  const double top = 100.0 * static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<double> readings;
  for (const auto& [id, r] : replies(backend)) readings.push_back(r["result"]["process"]["cpu_percent"].get<double>());
  for (const auto& p : payloads_on(backend, "edgert/node-a/heartbeat")) {
    readings.push_back(json::parse(p)["process"]["cpu_percent"].get<double>());
  }
  REQUIRE(readings.size() >= static_cast<std::size_t>(kRounds * kBurst));
  double highest = 0;
  for (double v : readings) {
    INFO(v);
    CHECK(v >= 0);
    CHECK(v <= top);
    highest = std::max(highest, v);
  }
  CHECK(highest > 0);  // a window completed: the figure is measured, not a constant
  a->stop();
}

TEST_CASE("a flood of failing commands logs a bounded number of lines; every failure is still counted", "[comms]") {
  // Attached before any node thread logs (the logger's sink list is not safe to change
  // under them) and detached after the node has stopped.
  edgert::testing::LogCapture logs;
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port()));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands";
  constexpr int kFlood = 300;
  for (int i = 0; i < kFlood; ++i) {
    REQUIRE(backend.publish(cmds, edgert::testing::command("bad-" + std::to_string(i), "node-a", "NOPE")));
    REQUIRE(backend.publish(cmds, "{not json " + std::to_string(i)));
  }
  REQUIRE(wait_until([&] { return replies(backend).size() == kFlood; }, 60s));
  REQUIRE(wait_until([&] { return comms_of(*a)["dead_letters"]["malformed"] == kFlood; }));
  const auto c = comms_of(*a);
  CHECK(c["commands_failed"] == kFlood);
  std::size_t failed_lines = 0, dead_letter_lines = 0;
  for (const auto& w : logs.warnings()) {
    failed_lines += w.find("failed: unknown command") != std::string::npos;
    dead_letter_lines += w.find("dead-lettered") != std::string::npos;
  }
  CHECK(failed_lines <= 10);        // LogLimit: 10 a minute, then one line with the count
  CHECK(dead_letter_lines <= 10);
  CHECK(failed_lines >= 1);
  a->stop();
}

TEST_CASE("STATUS replies with the heartbeat document; TRIGGER fires a triggered stream and names an unknown one",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "", R"(streams:
  - name: snap
    capture: {type: pl_source}
    trigger: {type: manual}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands";
  REQUIRE(backend.publish(cmds, edgert::testing::command("s1", "node-a", "STATUS")));
  REQUIRE(backend.publish(cmds, edgert::testing::command("t1", "node-a", "TRIGGER", json{{"stream", "snap"}})));
  REQUIRE(backend.publish(cmds, edgert::testing::command("t2", "node-a", "TRIGGER", json{{"stream", "nope"}})));
  REQUIRE(backend.publish(cmds, edgert::testing::command("u1", "node-a", "SELF_DESTRUCT")));
  REQUIRE(wait_until([&] { return replies(backend).size() == 4; }));
  auto r = replies(backend);
  CHECK(r["s1"]["ok"] == true);
  CHECK(r["s1"]["result"]["node_id"] == "node-a");
  CHECK(r["s1"]["result"]["streams"].contains("snap"));
  CHECK(r["t1"]["ok"] == true);
  CHECK(r["t2"]["ok"] == false);
  CHECK(r["t2"]["error"].get<std::string>().find("nope") != std::string::npos);
  CHECK(r["u1"]["error"].get<std::string>().find("unknown command 'SELF_DESTRUCT'") != std::string::npos);
  REQUIRE(wait_until([&] { return json::parse(a->stats_json())["streams"]["snap"]["captured"] == 1; }));
  a->stop();
}

TEST_CASE("RESTART re-creates a quarantined instance and says why it leaves others alone", "[comms][supervisor]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "", R"(health: {restart: {policy: never}}
streams:
  - name: cam
    capture: {type: pl_source, fps: 50, live_feed: true}
    plugins:
      - signature: pl_probe
        instances:
          - {instance_id: bad, fail: error, quarantine_after: 1, error_backoff_s: 0}
          - {instance_id: good, emit: false}
)"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  REQUIRE(wait_until(
      [&] { return json::parse(a->stats_json())["instances"]["cam/pl_probe/bad"]["state"] == "quarantined"; }));
  TestClient backend(broker.port(), "backend");
  backend.subscribe("edgert/backend/inbox");
  const std::string cmds = "edgert/node-a/commands";
  REQUIRE(backend.publish(cmds, edgert::testing::command("r1", "node-a", "RESTART", json{{"component", "cam/bad"}})));
  REQUIRE(wait_until([&] { return replies(backend).size() == 1; }));
  REQUIRE(backend.publish(cmds, edgert::testing::command("r2", "node-a", "RESTART", json{{"component", "cam/good"}})));
  REQUIRE(backend.publish(cmds, edgert::testing::command("r3", "node-a", "RESTART")));
  REQUIRE(wait_until([&] { return replies(backend).size() == 3; }));
  auto r = replies(backend);
  CHECK(r["r1"]["ok"] == true);
  CHECK(r["r1"]["result"]["restarted"][0]["component"] == "cam/pl_probe/bad");
  CHECK(r["r1"]["result"]["restarted"][0]["done"] == "restarted");
  CHECK(r["r2"]["ok"] == false);
  CHECK(r["r2"]["error"] == "cam/pl_probe/good is running, not quarantined or stuck: nothing to restart");
  CHECK(r["r3"]["error"].get<std::string>().find("RESTART needs args") != std::string::npos);
  CHECK(json::parse(a->stats_json())["instances"]["cam/pl_probe/bad"]["restarts"] == 1);
  a->stop();
}

TEST_CASE("work_offline false: the node asks to stop after max_retry_iters failed attempts and says why", "[comms]") {
  Scratch s;
  MosquittoBroker broker;  // never started: connection refused
  auto fast = [](std::string yaml) {
    const std::string from = "reconnect_max_ms: 1000";
    return yaml.replace(yaml.find(from), from.size(), "reconnect_max_ms: 100, max_retry_iters: 3");
  };
  auto a = make_node(fast(comms_yaml(s.dir, "node-a", broker.port(), "", "", ", work_offline: false")));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return !a->shutdown_reason().empty(); }, 30s));
  const auto why = a->shutdown_reason();
  CHECK(why.find("127.0.0.1:" + std::to_string(broker.port())) != std::string::npos);
  CHECK(why.find("work_offline is false") != std::string::npos);
  CHECK(comms_of(*a)["connect_attempts"].get<int>() >= 4);
  a->stop();

  // work_offline true (the default): no such request, however long it fails.
  auto b = make_node(fast(comms_yaml(s.dir, "node-b", broker.port())));
  REQUIRE(b->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*b)["connect_attempts"].get<int>() >= 8; }, 30s));
  CHECK(b->shutdown_reason().empty());
  b->stop();
}

#ifdef EDGERT_NODE_BIN
TEST_CASE("edgert-node run publishes status, heartbeats and results; killed with SIGKILL, its last will says offline",
          "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const auto cfg = s.dir / "node.yaml";
  {
    std::ofstream(cfg) << comms_yaml(s.dir, "node-k", broker.port(), "", R"(streams:
  - name: cam
    capture: {type: pl_source, fps: 20}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: p}]
)");
  }
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe("edgert/node-k/status");
  TestClient everything(broker.port(), "everything");
  everything.subscribe("edgert/node-k/#");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl(EDGERT_NODE_BIN, EDGERT_NODE_BIN, "run", cfg.c_str(), "--duration", "120", static_cast<char*>(nullptr));
    _exit(127);
  }
  const bool online = watcher.wait_for([](const auto& ms) { return !ms.empty() && ms.back().payload == "online"; }, 60s);
  const bool flowing = everything.wait_for(
      [](const auto& ms) {
        std::size_t results = 0, heartbeats = 0;
        for (const auto& m : ms) {
          results += m.topic == "edgert/node-k/payloads";
          heartbeats += m.topic == "edgert/node-k/heartbeat";
        }
        return results >= 5 && heartbeats >= 1;
      },
      60s);
  ::kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(online);
  CHECK(flowing);
  // keepalive_s 5: the broker gives up on the connection within 1.5 keepalives.
  CHECK(watcher.wait_for([](const auto& ms) { return !ms.empty() && ms.back().payload == "offline"; }, 30s));
}
#endif

// Issue 20: a delete that fails used to free its rows' window slots although the rows
// were still in the outbox (a crash would resend them as well as the next window). The
// rows now stay counted until a retried delete succeeds: at most inflight_window rows
// are ever published and not deleted. A trigger makes every outbox DELETE fail.
TEST_CASE("a failing delete keeps its rows in the window until a retried delete succeeds", "[comms]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const std::string topic = "edgert/node-a/payloads";
  TestClient watcher(broker.port(), "watcher");
  watcher.subscribe(topic);
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "  inflight_window: 4\n"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  const auto db = s.dir / "node-a" / "mailbox.db";
  raw_sql(db,
          "CREATE TRIGGER test_no_delete BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'injected: delete refused'); "
          "END");
  std::set<std::string> sent;
  for (int i = 0; i < 20; ++i) sent.insert(send(*a, "", "detection", json{{"i", i}}));
  REQUIRE(wait_until([&] { return !ids_on(watcher, topic).empty(); }));
  std::this_thread::sleep_for(2s);  // time for many failed deletes and retries
  {
    INFO(comms_of(*a).dump());
    CHECK(ids_on(watcher, topic).size() <= 4);  // own tally, from the broker's side
    CHECK(comms_of(*a)["delivered"] == 0);
    CHECK(outbox_rows(*a) == 20);
  }
  raw_sql(db, "DROP TRIGGER test_no_delete");
  REQUIRE(wait_until([&] { return outbox_rows(*a) == 0; }));
  REQUIRE(wait_until([&] { return ids_on(watcher, topic) == sent; }));
  a->stop();
}
