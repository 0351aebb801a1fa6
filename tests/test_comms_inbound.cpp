// Inbound messages under pressure (issue 19 items 3, 4 and 6, comms side), against a
// real mosquitto on loopback: a message the inbox cannot store is not acknowledged and
// arrives again once there is room; a flood of commands is bounded and cannot stall
// delivery of the outbox. Scaled to run in seconds under ASan; bench/ holds the sizes
// of the issue (EDGERT_INBOUND_FLOOD_MAILS, EDGERT_STATUS_FLOOD_COMMANDS below).
#include "comms_test_util.hpp"
#include "skip.hpp"
#include "log_capture.hpp"

#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

using namespace std::chrono_literals;
using edgert::testing::comms_of;
using edgert::testing::comms_yaml;
using edgert::testing::envelope;
using edgert::testing::make_node;
using edgert::testing::MosquittoBroker;
using edgert::testing::TestClient;
using edgert::testing::wait_until;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Scratch = edgert::testing::MadeScratch;

// Mounts a tmpfs of `size` on `dir` for the guard's lifetime (needs root).
struct SmallDisk {
  fs::path dir;
  bool mounted = false;
  SmallDisk(const fs::path& d, const char* size) : dir(d) {
    fs::create_directories(dir);
    mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, size) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// Every message_id in the inbox (acknowledged or not) of `type`.
std::set<std::string> inbox_ids(edgert::Node& n, const std::string& type) {
  std::set<std::string> ids;
  auto got = n.mailbox()->unacked(type, 1'000'000);
  REQUIRE(got.ok());
  for (const auto& m : got.value()) ids.insert(m.envelope.message_id);
  return ids;
}

}  // namespace

TEST_CASE("inbound mail the inbox cannot store (its free-space floor reached) is not acknowledged; the broker "
          "delivers it again and every mail is stored once there is room; results are still taken meanwhile",
          "[comms][inbound][root][inbox_floor]") {
  Scratch s;
  SmallDisk disk(s.dir / "node-a", "size=16m");
  if (!disk.mounted) EDGERT_SKIP("cannot mount a 16 MiB tmpfs here (needs root / CAP_SYS_ADMIN)");
  edgert::testing::BrokerOptions bo;
  bo.extra_config = "max_queued_messages 0\n";  // mosquitto's default (1000) would drop some silently
  MosquittoBroker broker(bo);
  broker.start();
  edgert::testing::LogCapture logs;
  // The inbox stops while less than 4 MiB are free: the flood below reaches that.
  constexpr std::uint64_t kFloor = 4u << 20;
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "", "mailbox: {inbox_min_free_bytes: " +
                                                                        std::to_string(kFloor) + "}\n"));
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }, 30s));
  TestClient fleet(broker.port(), "fleet");
  fleet.subscribe("edgert/fleet/inbox");  // results addressed to "fleet"

  // Something else on the volume leaves the inbox about 1 MiB above its floor.
  const fs::path filler = disk.dir / "filler";
  {
    struct statvfs v {};
    REQUIRE(::statvfs(disk.dir.c_str(), &v) == 0);
    const std::uint64_t free = static_cast<std::uint64_t>(v.f_bavail) * v.f_frsize;
    REQUIRE(free > kFloor + (1u << 20));
    std::ofstream f(filler, std::ios::binary);
    const std::string block(4096, 'f');
    for (std::uint64_t n = 0; n + block.size() <= free - kFloor - (1u << 20); n += block.size())
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
    REQUIRE(f.good());
  }

  // The flood: the publisher waits for the broker's PUBACK of each mail; `sent` is its tally.
  const int kMails = env_int("EDGERT_INBOUND_FLOOD_MAILS", 800);
  TestClient pub(broker.port(), "backend");
  std::set<std::string> sent;
  const std::string pad(3000, 'p');
  for (int i = 0; i < kMails; ++i) {
    const std::string id = "mail-" + std::to_string(i);
    REQUIRE(pub.publish("edgert/node-a/inbox", envelope(id, "backend", "node-a", "chat", json{{"n", i}, {"pad", pad}})));
    sent.insert(id);
  }
  // The node refused to acknowledge what it could not store...
  REQUIRE(wait_until([&] { return comms_of(*a)["inbound_deferred"].get<std::uint64_t>() > 0; }, 30s));
  const auto full = comms_of(*a);
  INFO(full.dump());
  CHECK(full["dead_letters"]["store_failed"] == 0);  // never dead-lettered (and so acknowledged) for that
  CHECK(full["inbound_deferrals"].get<std::uint64_t>() > 0);
  const auto stored_while_full = inbox_ids(*a, "chat").size();
  CHECK(stored_while_full > 0);
  CHECK(stored_while_full < sent.size());
  // ...while results are still taken: the floor keeps room for them.
  edgert::Envelope r;
  r.sender_node_id = "node-a";
  r.recipient_node_id = "fleet";
  r.payload_type = "detection";
  r.payload = R"({"during": "flood"})";
  auto result_id = a->mailbox()->send(std::move(r));
  INFO(result_id.status().message());
  REQUIRE(result_id.ok());

  // Once there is room again, the broker delivers what it held back: every mail the
  // publisher sent is in the inbox, each once, none dead-lettered.
  fs::remove(filler);
  const bool all = wait_until([&] { return inbox_ids(*a, "chat").size() == sent.size(); }, 60s);
  const auto ids = inbox_ids(*a, "chat");
  const auto after = comms_of(*a);
  INFO(after.dump());
  CHECK(all);
  CHECK(ids == sent);
  for (const auto& [reason, n] : after["dead_letters"].items()) {
    INFO(reason);
    CHECK(n == 0);
  }
  // The result is delivered (at least once; a session dropped to withhold a PUBACK
  // may cost a resend, as any lost connection does).
  CHECK(wait_until(
      [&] {
        for (const auto& m : fleet.messages())
          if (m.payload.find(result_id.value()) != std::string::npos) return true;
        return false;
      },
      30s));
  // The log stays small: deferrals are rate-limited lines, not one per message.
  const auto warnings = logs.warnings(), errors = logs.errors();
  INFO("warnings " << warnings.size() << ", errors " << errors.size());
  CHECK(errors.empty());
  CHECK(warnings.size() < 60);
  a->stop();
}

TEST_CASE("a flood of STATUS commands is bounded (max_queued_commands, refusals counted) and never stalls the "
          "delivery of the outbox",
          "[comms][inbound]") {
  Scratch s;
  edgert::testing::BrokerOptions bo;
  bo.extra_config = "max_queued_messages 0\n";
  MosquittoBroker broker(bo);  // started once the backlog is in the outbox
  // A short ack timeout: a forwarder starved by the command flood shows up as timeouts.
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(), "  ack_timeout_ms: 5000\n  max_queued_commands: 50\n"));
  REQUIRE(a->start().ok());
  // A backlog waits in the outbox before the node can connect.
  const int kResults = env_int("EDGERT_STATUS_FLOOD_RESULTS", 2000);
  std::set<std::string> results;
  for (int i = 0; i < kResults; ++i) {
    edgert::Envelope e;
    e.sender_node_id = "node-a";
    e.recipient_node_id = "fleet";
    e.payload_type = "detection";
    e.payload = json{{"n", i}}.dump();
    auto id = a->mailbox()->send(std::move(e));
    REQUIRE(id.ok());
    results.insert(id.value());
  }
  broker.start();
  TestClient sub(broker.port(), "fleet");
  sub.subscribe("edgert/fleet/inbox");  // results addressed to "fleet"
  sub.subscribe("edgert/backend/inbox");
  // The flood, while the backlog drains. The publisher keeps its own count. (It starts
  // once the node is subscribed: the broker keeps nothing for a session it never saw.)
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }, 30s));
  std::this_thread::sleep_for(500ms);  // the SUBACK
  const int kCommands = env_int("EDGERT_STATUS_FLOOD_COMMANDS", 3000);
  TestClient backend(broker.port(), "backend");
  for (int i = 0; i < kCommands; ++i) {
    REQUIRE(backend.publish("edgert/node-a/commands", edgert::testing::command("st-" + std::to_string(i), "node-a", "STATUS")));
  }
  // Every result reaches the subscriber once, and no PUBACK waited past the timeout.
  auto delivered = [&] {
    std::map<std::string, int> n;
    for (const auto& m : sub.messages()) {
      if (m.topic != "edgert/fleet/inbox") continue;
      auto j = json::parse(m.payload, nullptr, false);
      if (j.is_object()) ++n[j.value("message_id", "")];
    }
    return n;
  };
  REQUIRE(wait_until([&] { return delivered().size() == results.size(); }, 90s));
  // Every command is accounted for: run (and replied to) or refused as queue_full.
  const auto accounted = [&] {
    const auto c = comms_of(*a);
    return c["commands_run"].get<std::uint64_t>() + c["commands_failed"].get<std::uint64_t>() +
           c["dead_letters"]["queue_full"].get<std::uint64_t>();
  };
  const bool all_accounted = wait_until([&] { return accounted() == static_cast<std::uint64_t>(kCommands); }, 90s);
  INFO(comms_of(*a).dump());
  REQUIRE(all_accounted);
  REQUIRE(wait_until([&] { return comms_of(*a)["commands_queued"] == 0; }, 30s));
  const auto c = comms_of(*a);
  INFO(c.dump());
  CHECK(c["ack_timeouts"] == 0);
  CHECK(c["lost_in_flight"] == 0);
  CHECK(c["inbound_deferred"] == 0);
  CHECK(c["dead_letters"]["queue_full"].get<std::uint64_t>() > 0);  // the bound was reached and held
  CHECK(c["commands_failed"] == 0);
  const auto got = delivered();
  for (const auto& id : results) {
    INFO(id);
    CHECK(got.count(id) == 1);
    if (got.count(id)) CHECK(got.at(id) == 1);  // at-least-once, yet no resend without a cause
  }
  // Replies: one per command run, counted at the subscriber.
  std::set<std::string> replied;
  REQUIRE(wait_until(
      [&] {
        replied.clear();
        for (const auto& m : sub.messages()) {
          if (m.topic != "edgert/backend/inbox") continue;
          auto j = json::parse(m.payload, nullptr, false);
          if (j.is_object() && j.value("payload_type", "") == "command.reply")
            replied.insert(j["payload"]["in_reply_to"].get<std::string>());
        }
        return replied.size() == c["commands_run"].get<std::uint64_t>();
      },
      60s));
  // Commands never wait in the inbox beyond the bound.
  auto st = a->mailbox()->stats();
  REQUIRE(st.ok());
  CHECK(st.value().inbox_unacked == 0);
  a->stop();
}

TEST_CASE("replay protection spaces: unsigned mail cannot block a signed command with its id; the same id with other "
          "content is a dead letter (`conflict`), an exact replay a duplicate",
          "[comms][inbound]") {
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const std::string secret = "0123456789abcdef-secret";
  auto a = make_node(comms_yaml(s.dir, "node-a", broker.port(),
                                "  security: {require_signed: true, keys: {k1: " + secret + "}}\n"));
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> runs;  // the handler's own tally: message_id -> args seen
  a->add_command("COUNT", [&](const edgert::CommandRequest& r) -> edgert::Result<std::string> {
    std::lock_guard lk(mu);
    runs[r.message_id].push_back(r.args_json);
    return std::string("{}");
  });
  REQUIRE(a->start().ok());
  REQUIRE(wait_until([&] { return comms_of(*a)["connected"] == true; }));
  TestClient backend(broker.port(), "backend");
  TestClient intruder(broker.port(), "intruder");
  const std::string cmds = "edgert/node-a/commands", inbox = "edgert/node-a/inbox";
  auto count = [](int n) { return json{{"command", "COUNT"}, {"args", {{"n", n}}}}; };
  // The issue's case: unsigned mail with the id of a signed command that follows it.
  REQUIRE(intruder.publish(inbox, envelope("cmd-1001", "backend", "node-a", "chat", json{{"text", "hi"}})));
  // An unsigned command with the id first (refused: unsigned), then the signed one.
  REQUIRE(intruder.publish(cmds, envelope("cmd-1002", "backend", "node-a", "command", count(0))));
  REQUIRE(backend.publish(cmds, envelope("cmd-1001", "backend", "node-a", "command", count(1), "k1", secret)));
  REQUIRE(backend.publish(cmds, envelope("cmd-1002", "backend", "node-a", "command", count(2), "k1", secret)));
  // The same id, validly signed, with other content: refused as a conflict, not run.
  REQUIRE(backend.publish(cmds, envelope("cmd-1001", "backend", "node-a", "command", count(99), "k1", secret)));
  // An exact replay of a signed command: a duplicate, not run again.
  const std::string once = envelope("cmd-1003", "backend", "node-a", "command", count(3), "k1", secret);
  REQUIRE(backend.publish(cmds, once));
  REQUIRE(backend.publish(cmds, once));
  REQUIRE(wait_until([&] {
    const auto c = comms_of(*a);
    return c["commands_run"] == 3 && c["dead_letters"]["conflict"] == 1 && c["duplicates"] == 1;
  }, 30s));
  std::this_thread::sleep_for(500ms);  // room for a wrong extra run to show
  const auto c = comms_of(*a);
  INFO(c.dump());
  {
    std::lock_guard lk(mu);
    REQUIRE(runs.size() == 3);
    CHECK(runs["cmd-1001"] == std::vector<std::string>{R"({"n":1})"});
    CHECK(runs["cmd-1002"] == std::vector<std::string>{R"({"n":2})"});
    CHECK(runs["cmd-1003"] == std::vector<std::string>{R"({"n":3})"});
  }
  CHECK(c["commands_run"] == 3);
  CHECK(c["dead_letters"]["unsigned"] == 1);
  CHECK(c["dead_letters"]["conflict"] == 1);
  CHECK(c["duplicates"] == 1);
  // The mail is kept too, in its own space.
  const auto mail = a->mailbox()->unacked("chat");
  REQUIRE(mail.ok());
  REQUIRE(mail.value().size() == 1);
  CHECK(mail.value()[0].envelope.message_id == "cmd-1001");
  // The conflict is a dead letter with its reason, not a silent drop.
  auto letters = a->mailbox()->dead_letters(10);
  REQUIRE(letters.ok());
  CHECK(std::any_of(letters.value().begin(), letters.value().end(), [](const edgert::DeadLetter& d) {
    return d.message_id == "cmd-1001" && d.reason.rfind("conflict: ", 0) == 0;
  }));
  a->stop();
}
