// MqttTransport: the Transport edgert ships, on libmosquitto (docs/operations.md).
//
//   edgert::MqttOptions o;
//   o.host = "broker.local"; o.client_id = "cam-7";
//   o.will_topic = "edgert/cam-7/status"; o.will_payload = "offline";
//   auto t = edgert::make_mqtt_transport(o);
//   if (!t) return fail(t.status());
//   if (auto st = t.value()->start({.on_state = ..., .on_published = ..., .on_message = ...}); !st) return fail(st);
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>
#include <edgert/transport.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace edgert {

struct MqttOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id;               // not empty; the node id by default (comms config)
  int keepalive_s = 30;                // [5, 65535]
  std::string username;                // "" : none
  std::string password;

  // TLS: on when ca_file or ca_path is set. The broker's certificate is verified
  // against them, host name included, unless tls_insecure (never the default).
  std::string ca_file;
  std::string ca_path;
  std::string cert_file;               // client certificate (mutual TLS), with key_file
  std::string key_file;
  bool tls_insecure = false;

  /// 5: MQTT v5, falling back to 3.1.1 if the broker refuses v5 ("unsupported
  /// protocol version"); 4: MQTT 3.1.1 only. Message expiry and session expiry need v5.
  int protocol = 5;
  /// false: a persistent session (clean start off), so QoS 1 messages for this client
  /// that arrive while it is offline wait at the broker.
  bool clean_start = false;
  std::uint32_t session_expiry_s = 7 * 24 * 3600;  // v5: how long the broker keeps the session

  // Last will: published by the broker if the connection is lost without DISCONNECT.
  std::string will_topic;              // "" : no will
  std::string will_payload;
  int will_qos = 1;
  bool will_retain = true;

  // Reconnection: attempt n (from 0) waits min(reconnect_min * 2^n, reconnect_max),
  // then +- reconnect_jitter of that (0..1). The first attempt after start() waits a
  // random 0..first_connect_jitter, so a fleet that starts together (or a broker that
  // restarts) is not met by every client in the same instant.
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
  double reconnect_jitter = 0.5;
  std::chrono::milliseconds first_connect_jitter{0};
  std::chrono::milliseconds connect_timeout{10000};  // TCP + TLS + CONNACK
  /// After on_message deferred a message (InboundVerdict::deferred), the connection is
  /// dropped and the next attempt waits min(inbound_retry * 2^n, reconnect_max), +-
  /// reconnect_jitter, n counting deferrals since on_message last accepted a message:
  /// a store that stays full is retried less and less often. While the connection is
  /// down for this, outbound messages wait in the outbox too (docs/operations.md,
  /// "Acknowledgement").
  std::chrono::milliseconds inbound_retry{1000};

  /// The broker library's own in-flight bound for QoS 1; publish() beyond it still
  /// succeeds (the library queues in memory), so the forwarder's window should be
  /// at most this.
  int max_inflight = 1000;

  /// Called (on the network thread) before each attempt with its number (from 1),
  /// for metrics and tests; must not block.
  std::function<void(std::uint64_t attempt)> on_connect_attempt;
};

/// Any thread; does no I/O. Errors: invalid_argument naming the option at fault
/// (empty host or client id, a port outside 1..65535, a keepalive outside 5..65535,
/// cert_file without key_file, protocol not 4 or 5).
EDGERT_API Result<std::unique_ptr<Transport>> make_mqtt_transport(MqttOptions options);

}  // namespace edgert
