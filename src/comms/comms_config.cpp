// The `comms:` section (docs/configuration.md, docs/operations.md).
#include "comms/comms_config.hpp"

namespace edgert::config {
namespace {

// An MQTT topic level: no wildcards, no separators, not empty.
Rule<std::string> topic_level() {
  return [](const std::string& v, const std::string&) -> std::string {
    if (v.empty()) return "must not be empty";
    if (v.find_first_of("/+#") != std::string::npos || v.find('\0') != std::string::npos) {
      return "must be one MQTT topic level (no '/', '+' or '#'); got '" + v + "'";
    }
    return "";
  };
}

const Table<MqttSection>& mqtt_table() {
  static const Table<MqttSection> t = [] {
    Table<MqttSection> s;
    s.key("host", &MqttSection::host)
        .key("port", &MqttSection::port, between(1, 65535))
        .key("client_id", &MqttSection::client_id)
        .key("keepalive_s", &MqttSection::keepalive_s, between(5, 65535))
        .key("username", &MqttSection::username)
        .key("password", &MqttSection::password)
        .path_key("ca_file", &MqttSection::ca_file)
        .path_key("ca_path", &MqttSection::ca_path)
        .path_key("cert_file", &MqttSection::cert_file)
        .path_key("key_file", &MqttSection::key_file)
        .key("tls_insecure", &MqttSection::tls_insecure)
        .key<std::int64_t>("protocol", &MqttSection::protocol,
                           [](const std::int64_t& v, const std::string&) -> std::string {
                             return v == 4 || v == 5 ? "" : "expected 5 (MQTT v5, falls back to 3.1.1) or 4 (3.1.1)";
                           })
        .key("session_expiry_s", &MqttSection::session_expiry_s, between(0, 4294967295LL))
        .key("reconnect_min_ms", &MqttSection::reconnect_min_ms, between(10, 3600000))
        .key("reconnect_max_ms", &MqttSection::reconnect_max_ms, between(10, 3600000))
        .key("reconnect_jitter", &MqttSection::reconnect_jitter, number_between(0, 1))
        .key("first_connect_jitter_ms", &MqttSection::first_connect_jitter_ms, between(0, 600000))
        .key("connect_timeout_ms", &MqttSection::connect_timeout_ms, between(100, 600000))
        .key("inbound_retry_ms", &MqttSection::inbound_retry_ms, between(10, 3600000))
        .key("max_retry_iters", &MqttSection::max_retry_iters, between(1, 1000000))
        .check([](const MqttSection& m, const YAML::Node& map, const std::string& path, Context& ctx) {
          if (m.cert_file.empty() != m.key_file.empty()) {
            ctx.add(map, path, "cert_file and key_file go together (mutual TLS); only one is set");
          }
          if (m.reconnect_min_ms > m.reconnect_max_ms) {
            ctx.add(map, path + ".reconnect_min_ms", "must not exceed reconnect_max_ms");
          }
        });
    return s;
  }();
  return t;
}

const Table<SecuritySection>& security_table() {
  static const Table<SecuritySection> t = [] {
    Table<SecuritySection> s;
    s.key("require_signed", &SecuritySection::require_signed)
        .key("allowed_senders", &SecuritySection::allowed_senders)
        .key("keys", &SecuritySection::keys)
        // Under a second would refuse commands over any real network; a day is the
        // inbox's default replay window, which must cover it.
        .key("command_window_s", &SecuritySection::command_window_s, between(1, 86400))
        .check([](const SecuritySection& sec, const YAML::Node& map, const std::string& path, Context& ctx) {
          if (sec.require_signed && sec.keys.empty()) {
            ctx.add(map, path + ".require_signed", "is true but no keys are configured: every command would be refused");
          }
          for (const auto& [id, secret] : sec.keys) {
            if (secret.size() < 16) ctx.add(map, path + ".keys." + id, "secret shorter than 16 bytes");
          }
        });
    return s;
  }();
  return t;
}

}  // namespace

const Table<CommsSection>& comms_table() {
  static const Table<CommsSection> t = [] {
    Table<CommsSection> s;
    s.section("mqtt", &CommsSection::mqtt, mqtt_table())
        .key("root", &CommsSection::root, topic_level())
        .key("inflight_window", &CommsSection::inflight_window, between(1, 65535))
        .key("ack_timeout_ms", &CommsSection::ack_timeout_ms, between(100, 3600000))
        .key("offline_log_s", &CommsSection::offline_log_s, between(1, 86400))
        .key("max_inbound_bytes", &CommsSection::max_inbound_bytes, between(64, 268435456))
        .key("max_queued_commands", &CommsSection::max_queued_commands, between(1, 1000000))
        .section("security", &CommsSection::security, security_table());
    return s;
  }();
  return t;
}

}  // namespace edgert::config
