// Shared by the comms tests: a node configured against a test broker
// (tests/mqtt_broker.hpp), envelopes as a fleet back-end would write them, and an
// HMAC-SHA256 signer written independently of src/comms/signing.cpp.
#pragma once

#include "mqtt_broker.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <edgert/config.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/node.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace edgert::testing {

using json = nlohmann::json;

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// A node `id` with its data under `dir`/`id`, talking to the broker on `port`.
/// `comms_extra` is spliced into the `comms:` mapping, `extra` after it (e.g. streams).
inline std::string comms_yaml(const std::filesystem::path& dir, const std::string& id, int port,
                              const std::string& comms_extra = "", const std::string& extra = "",
                              const std::string& node_extra = "") {
  return "node: {id: " + id + ", data_dir: " + (dir / id).string() + ", heartbeat_interval_ms: 1000" +
         node_extra + "}\n" + "plugins: {paths: [" + std::string(EDGERT_PIPELINE_PLUGIN_DIR) + "]}\n" +
         "comms:\n  mqtt: {host: 127.0.0.1, port: " + std::to_string(port) +
         ", keepalive_s: 5, reconnect_min_ms: 100, reconnect_max_ms: 1000}\n" + comms_extra + extra;
}

inline std::unique_ptr<Node> make_node(const std::string& yaml) {
  auto cfg = parse_config(yaml, "test.yaml", {});
  if (!cfg.ok()) FAIL(cfg.status().message());
  auto made = Node::create(std::move(cfg).value());
  REQUIRE(made.ok());
  return std::move(made).value();
}

inline json comms_of(const Node& n) { return json::parse(n.comms_json()); }

inline std::string hmac_hex(const std::string& key, const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), md, &len);
  std::string out;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

/// An envelope as a back-end would send it; signed with (key_id, secret) if given.
/// `timestamp_ms`: the envelope's timestamp; -1: now.
inline std::string envelope(const std::string& id, const std::string& sender, const std::string& recipient,
                            const std::string& type, const json& payload, const std::string& key_id = "",
                            const std::string& secret = "", std::int64_t expires_ms = 0,
                            std::int64_t timestamp_ms = -1) {
  json e{{"message_id", id},
         {"sender_node_id", sender},
         {"recipient_node_id", recipient},
         {"timestamp", timestamp_ms < 0 ? now_ms() : timestamp_ms},
         {"payload_type", type},
         {"payload", payload}};
  if (expires_ms) e["expires_ms"] = expires_ms;
  if (!key_id.empty()) {
    std::string canonical = id + "\n" + sender + "\n" + recipient + "\n";
    canonical += std::to_string(e["timestamp"].get<std::int64_t>()) + "\n";
    canonical += std::to_string(expires_ms) + "\n";
    canonical += type + "\n" + payload.dump();
    e["signature"] = {{"key_id", key_id}, {"hmac", hmac_hex(secret, canonical)}};
  }
  return e.dump();
}

inline std::string command(const std::string& id, const std::string& recipient, const std::string& name,
                           const json& args = json::object(), const std::string& sender = "backend") {
  return envelope(id, sender, recipient, "command", json{{"command", name}, {"args", args}});
}

}  // namespace edgert::testing
