// The `comms:` configuration section: how a node reaches its MQTT broker, and what it
// obeys (docs/configuration.md, docs/operations.md). Without `comms.mqtt.host` the node
// runs offline: results stay in the mailbox outbox.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace edgert {

/// `comms.mqtt`: the broker connection (edgert/mqtt_transport.hpp).
struct MqttSection {
  std::string host;                        // "" : no broker (the node runs offline)
  std::int64_t port = 1883;                // [1, 65535]
  std::string client_id;                   // "" : node.id
  std::int64_t keepalive_s = 30;           // [5, 65535]
  std::string username;                    // "" : none
  std::string password;                    // prefer EDGERT_COMMS_MQTT_PASSWORD to a file on disk
  std::string ca_file;                     // TLS on when ca_file or ca_path is set
  std::string ca_path;
  std::string cert_file;                   // client certificate, with key_file
  std::string key_file;
  bool tls_insecure = false;               // true: do not verify the broker (tests only)
  std::int64_t protocol = 5;               // 5 (falls back to 3.1.1) or 4 (3.1.1 only)
  std::int64_t session_expiry_s = 604800;  // [0, 4294967295] how long the broker keeps commands for an offline node
  std::int64_t reconnect_min_ms = 500;     // [10, 3600000] first reconnect delay, doubled per failure...
  std::int64_t reconnect_max_ms = 30000;   // [10, 3600000] ...up to this
  double reconnect_jitter = 0.5;           // [0, 1] +- this fraction of each delay
  std::int64_t first_connect_jitter_ms = 0;  // [0, 600000] random delay before the first attempt
  std::int64_t connect_timeout_ms = 10000;   // [100, 600000]
  /// [10, 3600000] after an inbound message could not be stored (and so was not
  /// acknowledged), the reconnect waits this, doubled per deferral in a row up to
  /// reconnect_max_ms (docs/operations.md, "Acknowledgement").
  std::int64_t inbound_retry_ms = 1000;
  /// With node.work_offline false: failed reconnects in a row after which the node
  /// stops (seed behaviour). [1, 1000000]
  std::int64_t max_retry_iters = 10;
};

/// `comms.security`: signed commands (docs/operations.md, "Signed commands").
struct SecuritySection {
  bool require_signed = false;                // true: unsigned or badly signed commands are refused
  std::vector<std::string> allowed_senders;   // [] : any sender (when require_signed, any with a valid signature)
  std::map<std::string, std::string> keys;    // key id -> shared secret (HMAC-SHA256)
  /// [1, 86400] a signed command whose `timestamp` is more than this many seconds
  /// before or after this node's clock is refused (dead letter "stale"); at most
  /// mailbox.inbox_retention_s, the inbox's replay window (docs/operations.md, "Signing").
  std::int64_t command_window_s = 300;
};

struct CommsSection {
  MqttSection mqtt;
  std::string root = "edgert";         // topics are {root}/{node_id}/{channel}
  std::int64_t inflight_window = 100;  // [1, 65535] outbox messages published and not yet acknowledged
  std::int64_t ack_timeout_ms = 30000; // [100, 3600000] no PUBACK by then: the attempt failed (mark_failed)
  std::int64_t offline_log_s = 60;     // [1, 86400] how often a continuing outage is logged
  std::int64_t max_inbound_bytes = 262144;  // [64, 268435456] larger inbound messages are dead-lettered
  /// [1, 1000000] commands stored and waiting to run; beyond it a new command is
  /// refused (dead letter `queue_full`) and never runs.
  std::int64_t max_queued_commands = 1000;
  SecuritySection security;
};

}  // namespace edgert
