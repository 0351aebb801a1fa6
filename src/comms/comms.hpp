// Comms: a node's link to the fleet (docs/operations.md). Owns the transport, the
// forwarder (outbox -> broker), inbound handling (broker -> inbox -> command
// handlers), presence (retained status, last will) and the published heartbeat.
//
// Threads: the transport's network thread (callbacks: inbound checks and storage,
// PUBACKs), "edgert-forward" and "edgert-fwd-db" (the forwarder), "edgert-commands"
// (handlers, replies) and "edgert-comms" (heartbeat, status announcements, offline
// reports, the work_offline check). start()/stop() from the runtime's start/stop thread.
//
// Files: comms.cpp (construction, start/stop, figures), comms_inbound.cpp (inbound
// policy), comms_commands.cpp (the command dispatcher), comms_presence.cpp (status,
// heartbeat, offline reports), forwarder.cpp (outbox -> broker).
#pragma once

#include "comms/forwarder.hpp"
#include "core/log_limit.hpp"

#include <edgert/worker_pulse.hpp>
#include <edgert/commands.hpp>
#include <edgert/comms_config.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/metrics.hpp>
#include <edgert/transport.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace edgert::comms {

struct CommsOptions {
  std::string node_id;
  CommsSection config;
  bool work_offline = true;
  /// The node's heartbeat interval (node.heartbeat_interval_ms). Comms keeps no
  /// heartbeat clock of its own: the node hands it each beat (beat()). This sets the
  /// documents' expiry (3 intervals); 0: no heartbeat, not even the SHUTDOWN one.
  std::chrono::milliseconds heartbeat_interval{10000};
  std::size_t max_json_depth = 64;                    // inbound limits (the mailbox's)
  std::size_t max_id_bytes = 256;
  /// The node's one heartbeat builder, for `status` ("RUNNING", "SHUTDOWN"): the
  /// SHUTDOWN heartbeat and STATUS's reply (the beats come built, through beat()).
  std::function<std::string(const std::string& status)> heartbeat_document;
  /// Called once (from the comms thread) when work_offline is false and the broker
  /// stayed out of reach for max_retry_iters attempts.
  std::function<void(const std::string& reason)> request_shutdown;
  std::map<std::string, CommandHandler> commands;
  /// Makes the transport; empty: MqttTransport from config.mqtt.
  std::function<Result<std::unique_ptr<Transport>>()> make_transport;
  /// Wall clock in ms; injectable for tests of expiry.
  std::function<std::int64_t()> clock_ms;
  /// Optional: the link's heartbeat (the Node's `comms/link` registry row). Beaten by
  /// the comms thread each turn (every 250 ms); declared `offline` when an outage is
  /// reported and `ready` when connected.
  std::shared_ptr<WorkerPulse> link_pulse;
};

/// Why inbound messages were dead-lettered, one counter each.
inline constexpr const char* kDeadLetterReasons[] = {
    "oversized", "malformed",     "missing_field",  "wrong_recipient", "expired",
    "unsigned",  "bad_signature", "unknown_sender", "unknown_topic",   "store_failed",
    "queue_full", "conflict",     "stale",          "retained"};
inline constexpr std::size_t kDeadLetterReasonCount = std::size(kDeadLetterReasons);

/// "" if a signed command's `timestamp_ms` lies within +- `window_s` of `now_ms`
/// (comms.security.command_window_s); else the reason it is refused as stale,
/// including a clock before 2020 (unset: nothing can be judged against it).
std::string stale_reason(std::int64_t timestamp_ms, std::int64_t now_ms, std::int64_t window_s);

/// The idempotency key of the reply to command `message_id`: "reply:" + the id, or,
/// when that exceeds `max_key_bytes` (the mailbox's max_id_bytes, >= 16), "reply#" +
/// hex SHA-256 of the id cut to fit, so a command with an id of the full allowed
/// length still gets its reply.
std::string reply_key(const std::string& message_id, std::size_t max_key_bytes);

struct CommsCounters {
  std::uint64_t received = 0;        // inbound messages handed over by the transport
  std::uint64_t stored = 0;          // stored in the inbox
  std::uint64_t duplicates = 0;      // message_id already in the inbox: not run again
  /// Not stored for a reason that may pass (inbox quota, disk full, I/O error, the
  /// mailbox closing) and therefore not acknowledged: the broker delivers it again.
  std::uint64_t inbound_deferred = 0;
  std::uint64_t dead_letters_lost = 0;  // dead letters the mailbox could not store (counted here, not kept)
  std::uint64_t commands_queued = 0;    // gauge: commands stored and waiting to run (counters() fills it)
  std::uint64_t dead_letters[kDeadLetterReasonCount] = {};
  std::uint64_t commands_run = 0;    // handlers that returned a result
  std::uint64_t commands_failed = 0; // handlers that returned an error or threw, unknown commands
  std::uint64_t replies_failed = 0;  // replies the outbox refused
  std::uint64_t heartbeats_published = 0;
  std::uint64_t heartbeats_skipped = 0;  // not connected at the time
  std::uint64_t offline_periods = 0;
};

/// What the comms figures (stats(), register_metrics()) are read from, at one moment.
struct CommsSample {
  TransportStats t;
  ForwarderCounters f;
  CommsCounters c;
  std::size_t in_flight = 0;
};

class Comms {
 public:
  explicit Comms(CommsOptions options);
  ~Comms();
  Comms(const Comms&) = delete;
  Comms& operator=(const Comms&) = delete;

  /// Before start(): adds or replaces a command handler.
  void add_command(std::string name, CommandHandler handler) { options_.commands[std::move(name)] = std::move(handler); }
  /// Whether a broker is configured (comms.mqtt.host set, or a transport factory given).
  bool enabled() const noexcept;
  /// Before start(): the link's heartbeat (CommsOptions::link_pulse).
  void set_link_pulse(std::shared_ptr<WorkerPulse> pulse) { options_.link_pulse = std::move(pulse); }
  /// Starts everything; the transport connects in the background. Errors: what the
  /// transport factory or start() refused (a TLS file missing, say).
  [[nodiscard]] Status start(Mailbox& mailbox);
  /// Publishes the SHUTDOWN heartbeat and the retained `offline` status (if
  /// connected), returns rows in flight to the outbox, disconnects. Idempotent.
  void stop();

  /// Any thread: publishes one beat's document on {root}/{id}/heartbeat at QoS 0 if
  /// connected, else counts it in heartbeats_skipped. Does nothing when no broker is
  /// configured or comms is not running. Never blocks on the network.
  void beat(const std::string& document);

  /// Registers the comms figures with `registry` (edgert_comms_*, docs/metrics.md);
  /// valid until the returned registration is destroyed, which must happen before this.
  [[nodiscard]] MetricsRegistration register_metrics(MetricsRegistry& registry) const;
  /// Any thread: the "comms" section of heartbeats and stats.
  nlohmann::json stats() const;
  CommsCounters counters() const;
  std::string topic(const std::string& channel) const;

 private:
  InboundVerdict on_message(const InboundMessage& m);
  void on_state(LinkState state, const std::string& reason);
  /// Records a refused message (always `accepted`: a refusal is kept as a dead letter,
  /// or counted in dead_letters_lost when even that cannot be stored).
  InboundVerdict dead_letter(const InboundMessage& m, std::size_t reason, const std::string& why,
                             const std::string& id, const std::string& sender);
  void dispatch_loop();
  void monitor_loop();
  void run_command(const InboxMessage& msg);
  std::int64_t now_ms() const;
  CommsSample sample() const;
  bool publish_heartbeat_document(const std::string& document, int qos);

  CommsOptions options_;
  Mailbox* mailbox_ = nullptr;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Forwarder> forwarder_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  CommsCounters counters_;
  bool stopping_ = false;
  bool commands_waiting_ = true;  // run once at start: commands stored before a crash
  /// Commands stored and not yet acknowledged (comms.max_queued_commands bounds it).
  /// Counted at start() from the inbox, then kept by on_message and the dispatcher.
  std::uint64_t queued_commands_ = 0;
  bool announce_ = false;         // publish the retained `online` status
  LinkState state_ = LinkState::stopped;
  std::string state_reason_;
  std::int64_t offline_since_ms_ = 0;  // 0: connected (or never tried)
  std::uint64_t attempts_at_connect_ = 0;
  bool shutdown_requested_ = false;
  /// Held by beat() across its check and publish, and by stop() while it closes the
  /// beats and publishes the goodbye: nothing is published after SHUTDOWN. Taken
  /// before mu_, never while holding it.
  std::mutex beat_mu_;
  bool beats_closed_ = false;  // guarded by beat_mu_; set once by stop()
  std::thread dispatcher_, monitor_;
  std::atomic<bool> started_{false};
  std::atomic<bool> built_{false};  // transport_ and forwarder_ exist (kept until destruction)

  // Per-message log lines: the first 10 of each kind per minute, then a count
  // (docs/operations.md, "Logs"); a peer's flood never grows the log without bound.
  static constexpr std::uint64_t kLogBurst = 10;
  static constexpr std::chrono::seconds kLogWindow{60};
  detail::LogLimit command_failed_log_{kLogBurst, kLogWindow};
  detail::LogLimit reply_failed_log_{kLogBurst, kLogWindow};
  detail::LogLimit ack_failed_log_{kLogBurst, kLogWindow};
};

}  // namespace edgert::comms
