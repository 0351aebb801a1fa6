// The `comms:` section, the inbound envelope reader and the signing text, without a
// broker (the end-to-end behaviour is in test_comms.cpp).
#include <edgert/config.hpp>

#include "comms/comms.hpp"
#include "comms/inbound.hpp"
#include "comms/signing.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace {

std::string errors_of(const std::string& yaml, const edgert::EnvVars& env = {}) {
  auto cfg = edgert::parse_config(yaml, "node.yaml", env);
  return cfg.ok() ? std::string() : cfg.status().message();
}

}  // namespace

TEST_CASE("comms: keys are read, defaulted and checked with the file, line and key named", "[comms]") {
  auto cfg = edgert::parse_config("node: {id: n1}\n", "node.yaml", {});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.mqtt.host.empty());  // no broker: the node runs offline
  CHECK(cfg->comms.root == "edgert");
  CHECK(cfg->node.work_offline);
  CHECK(cfg->node.heartbeat_interval_ms == 10000);

  cfg = edgert::parse_config(R"(node: {id: n1, work_offline: false, heartbeat_interval_ms: 5000}
comms:
  root: fleet
  inflight_window: 20
  mqtt: {host: broker.local, port: 8883, ca_file: ca.pem, max_retry_iters: 4}
  security: {require_signed: true, keys: {k1: "0123456789abcdef0"}, allowed_senders: [ops]}
)",
                             "node.yaml", {{"EDGERT_COMMS_MQTT_PASSWORD", "pw"}});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.mqtt.host == "broker.local");
  CHECK(cfg->comms.mqtt.port == 8883);
  CHECK(cfg->comms.mqtt.password == "pw");
  CHECK(cfg->comms.mqtt.max_retry_iters == 4);
  CHECK(cfg->comms.inflight_window == 20);
  CHECK(cfg->comms.security.allowed_senders == std::vector<std::string>{"ops"});
  CHECK_FALSE(cfg->node.work_offline);

  CHECK(errors_of("comms: {mqtt: {host: h, port: 70000}}\n").find("node.yaml:1: comms.mqtt.port") != std::string::npos);
  CHECK(errors_of("comms: {root: a/b}\n").find("comms.root: must be one MQTT topic level") != std::string::npos);
  CHECK(errors_of("comms: {mqtt: {host: h, cert_file: c.pem}}\n").find("cert_file and key_file go together") !=
        std::string::npos);
  CHECK(errors_of("comms: {security: {require_signed: true}}\n").find("no keys are configured") != std::string::npos);
  CHECK(errors_of("comms: {security: {keys: {k: short}}}\n").find("comms.security.keys.k: secret shorter") !=
        std::string::npos);
  CHECK(errors_of("comms: {mqtt: {host: h, protocol: 3}}\n").find("comms.mqtt.protocol") != std::string::npos);
  CHECK(errors_of("comms: {mqtt: {hots: h}}\n").find("hots") != std::string::npos);

  // The inbound bounds (docs/configuration.md): defaults, values, ranges.
  cfg = edgert::parse_config("node: {id: n1}\n", "node.yaml", {});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.max_queued_commands == 1000);
  CHECK(cfg->comms.mqtt.inbound_retry_ms == 1000);
  cfg = edgert::parse_config("node: {id: n1}\ncomms: {max_queued_commands: 7, mqtt: {inbound_retry_ms: 250}}\n",
                             "node.yaml", {});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.max_queued_commands == 7);
  CHECK(cfg->comms.mqtt.inbound_retry_ms == 250);
  CHECK(errors_of("comms: {max_queued_commands: 0}\n").find("node.yaml:1: comms.max_queued_commands") !=
        std::string::npos);
  CHECK(errors_of("comms: {mqtt: {inbound_retry_ms: 5}}\n").find("comms.mqtt.inbound_retry_ms") != std::string::npos);
}

TEST_CASE("comms.security.command_window_s: defaulted, bounded, and never longer than mailbox.inbox_retention_s",
          "[comms]") {
  auto cfg = edgert::parse_config("node: {id: n1}\n", "node.yaml", {});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.security.command_window_s == 300);
  CHECK(cfg->comms.security.command_window_s <= cfg->mailbox.inbox_retention_s);
  cfg = edgert::parse_config("comms: {security: {command_window_s: 60}}\n", "node.yaml", {});
  REQUIRE(cfg.ok());
  CHECK(cfg->comms.security.command_window_s == 60);
  CHECK(errors_of("comms: {security: {command_window_s: 0}}\n").find("comms.security.command_window_s") !=
        std::string::npos);
  // Both keys named, in the file and through the environment alike.
  const std::string both =
      errors_of("mailbox: {inbox_retention_s: 600}\ncomms: {security: {command_window_s: 900}}\n");
  CHECK(both.find("node.yaml: comms.security.command_window_s: 900 s is longer than mailbox.inbox_retention_s "
                  "(600 s)") != std::string::npos);
  const std::string env =
      errors_of("mailbox: {inbox_retention_s: 600}\n", {{"EDGERT_COMMS_SECURITY_COMMAND_WINDOW_S", "601"}});
  CHECK(env.find("601 s is longer than mailbox.inbox_retention_s (600 s)") != std::string::npos);
  CHECK(errors_of("mailbox: {inbox_retention_s: 600}\ncomms: {security: {command_window_s: 600}}\n").empty());
}

TEST_CASE("inbound envelopes: every problem names its reason and the field at fault", "[comms]") {
  using edgert::comms::InboundEnvelope;
  using edgert::comms::InboundProblem;
  using edgert::comms::parse_inbound;
  edgert::comms::InboundLimits lim;
  lim.max_bytes = 1000;
  lim.max_depth = 8;
  lim.max_id_bytes = 16;
  auto problem = [&](const std::string& raw) {
    auto r = parse_inbound(raw, lim);
    REQUIRE(std::holds_alternative<InboundProblem>(r));
    const auto& p = std::get<InboundProblem>(r);
    return std::string(edgert::comms::kDeadLetterReasons[p.reason]) + ": " + p.why;
  };
  const std::string ok =
      R"({"message_id":"m1","sender_node_id":"s","recipient_node_id":"r","timestamp":5,"payload_type":"t","payload":{"b":1,"a":[1,2]}})";
  auto r = parse_inbound(ok, lim);
  REQUIRE(std::holds_alternative<InboundEnvelope>(r));
  const auto& e = std::get<InboundEnvelope>(r).envelope;
  CHECK(e.message_id == "m1");
  CHECK(e.timestamp_ms == 5);
  CHECK(e.payload == R"({"a":[1,2],"b":1})");

  CHECK(problem(std::string(1001, ' ')).rfind("oversized: 1001 bytes", 0) == 0);
  CHECK(problem("").rfind("malformed", 0) == 0);
  CHECK(problem("[1]") == "malformed: not a JSON object");
  CHECK(problem(std::string("{\"a\":1}\0", 8)) == "malformed: contains a NUL byte");
  CHECK(problem(std::string(20, '[') + std::string(20, ']')).find("deeper than 8") != std::string::npos);
  CHECK(problem(R"({"message_id":"m1"})") == "missing_field: missing field 'sender_node_id'");
  CHECK(problem(R"({"message_id":7,"sender_node_id":"s","recipient_node_id":"r","timestamp":5,"payload_type":"t","payload":1})") ==
        "missing_field: field 'message_id' must be a string");
  CHECK(problem(R"({"message_id":"m1","sender_node_id":"s","recipient_node_id":"r","timestamp":"x","payload_type":"t","payload":1})")
            .find("'timestamp' must be an integer") != std::string::npos);
  CHECK(problem(R"({"message_id":"0123456789abcdefX","sender_node_id":"s","recipient_node_id":"r","timestamp":5,"payload_type":"t","payload":1})")
            .find("longer than 16 bytes") != std::string::npos);
  CHECK(problem(R"({"message_id":"m1","sender_node_id":"s","recipient_node_id":"r","timestamp":5,"payload_type":"t","payload":1,"signature":"x"})")
            .rfind("bad_signature", 0) == 0);
  // Identifiers become topic levels and lines of the signed text.
  for (const char* bad : {"a/b", "a+", "#", "a\nb", "a\x01"}) {
    INFO(bad);
    nlohmann::json j{{"message_id", "m1"}, {"sender_node_id", bad}, {"recipient_node_id", "r"},
                     {"timestamp", 5}, {"payload_type", "t"}, {"payload", 1}};
    CHECK(problem(j.dump()) == "missing_field: field 'sender_node_id' holds a control character, '/', '+' or '#'");
  }
}

TEST_CASE("the signed text covers every canonical field and the HMAC matches RFC 4231", "[comms]") {
  // RFC 4231 test case 2.
  CHECK(edgert::comms::hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  edgert::Envelope e{"m", "s", "r", "command", "", 42};
  const auto payload = nlohmann::json::parse(R"({"z":1,"a":"x"})");
  CHECK(edgert::comms::canonical_text(e, 7, payload) == "m\ns\nr\n42\n7\ncommand\n{\"a\":\"x\",\"z\":1}");
  CHECK(edgert::comms::digest_equal("abc", "abc"));
  CHECK_FALSE(edgert::comms::digest_equal("abc", "abd"));
  CHECK_FALSE(edgert::comms::digest_equal("abc", "ab"));
}
