// Transport: how a node's comms reach a broker (docs/operations.md, "Comms").
//
// A Transport is a connection to a publish/subscribe broker that keeps itself
// connected: start() returns at once and the transport connects, and reconnects after
// any loss, on its own network thread, with exponential back-off and jitter. It holds
// no durable state: the node's mailbox outbox is the only send buffer (the forwarder
// publishes a row, and deletes it only when on_published reports the broker's
// acknowledgement), and inbound messages are handed to on_message, which stores them
// before it returns and says whether they may be acknowledged (InboundVerdict).
//
// MqttTransport (edgert/mqtt_transport.hpp) is the implementation edgert ships; a
// host may supply another (a test double, a different protocol) through this
// interface.
//
// Threads: every member function may be called from any thread, concurrently.
// Callbacks run on the transport's network thread, one at a time; they must not call
// stop() (it joins that thread) and should return quickly: while one runs, no
// acknowledgement is processed.
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace edgert {

enum class LinkState : std::uint8_t {
  stopped,       // before start() and after stop()
  connecting,    // a connection attempt is under way, or the next one is scheduled
  connected,     // the broker accepted the session (CONNACK) and has answered within the keepalive window
  unresponsive,  // the socket is up but the broker has not answered within the keepalive window
};

/// "stopped", "connecting", "connected", "unresponsive".
EDGERT_API const char* to_string(LinkState state) noexcept;

/// One message received on a subscribed topic.
struct InboundMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  /// The publisher's retain flag. MqttTransport subscribes with retain-as-published on
  /// MQTT v5, so it is set on every delivery of a retained message; on 3.1.1 only on
  /// deliveries from the broker's retained store (a new subscription's catch-up).
  bool retained = false;
  /// MQTT v5 message-expiry interval left when the broker forwarded it; -1: none set.
  std::int64_t expiry_left_s = -1;
};

/// What on_message did with a message, and so whether the broker may be told it was
/// received (the QoS 1 PUBACK).
enum class InboundVerdict : std::uint8_t {
  /// Kept (stored, or refused and recorded as a dead letter): acknowledge it.
  accepted,
  /// Not kept, for a reason that may pass (the inbox full, the disk full, an I/O
  /// error, the store closing): do NOT acknowledge it. The transport drops the
  /// connection before the acknowledgement is written, so the broker keeps the message
  /// in the node's persistent session and delivers it again after the reconnect
  /// (which waits a back-off; MqttOptions::inbound_retry). Messages that arrive on the
  /// same connection after it are not handed over and not acknowledged either.
  deferred,
};

/// "accepted", "deferred".
EDGERT_API const char* to_string(InboundVerdict verdict) noexcept;

struct PublishOptions {
  int qos = 1;                     // 0 or 1 (2 is refused: invalid_argument)
  bool retain = false;
  /// MQTT v5 message-expiry interval; 0: none. Ignored on MQTT 3.1.1.
  std::chrono::seconds expiry{0};
};

struct TransportEvents {
  /// A state change, with a human reason ("connection refused: not authorised",
  /// "keepalive: no answer from the broker for 45 s", "TLS: certificate verify failed").
  std::function<void(LinkState state, const std::string& reason)> on_state;
  /// The outcome of a publish() that returned a message id: for QoS 1, ok once the
  /// broker's PUBACK arrived (`ok` false if the broker refused it, `reason` says why);
  /// for QoS 0, once it was written to the socket. Never called for a message whose
  /// connection was lost first: the caller's timeout decides (the broker may or may
  /// not have it; at-least-once delivery resends).
  std::function<void(int message_id, bool ok, const std::string& reason)> on_published;
  /// A message on a subscribed topic. Runs on the network thread. `accepted`: the
  /// transport acknowledges a QoS 1 message no earlier than the broker library allows
  /// (for libmosquitto 2.0.11: once on_message has returned, see docs/operations.md);
  /// `deferred`: it is not acknowledged (see InboundVerdict). A callback that throws
  /// counts as `deferred` (and in callback_errors): what it did is unknown. Unset: every
  /// message is accepted.
  std::function<InboundVerdict(const InboundMessage& message)> on_message;
};

struct TransportStats {
  LinkState state = LinkState::stopped;
  std::uint64_t connects = 0;          // sessions the broker accepted
  std::uint64_t connect_attempts = 0;  // attempts started, successful or not
  std::uint64_t disconnects = 0;       // sessions lost or closed
  std::uint64_t published = 0;         // publish() calls that returned a message id
  std::uint64_t acknowledged = 0;      // on_published(ok = true)
  std::uint64_t refused = 0;           // on_published(ok = false)
  std::uint64_t publish_errors = 0;    // publish() calls that returned an error
  std::uint64_t received = 0;          // on_message calls
  std::uint64_t inbound_deferred = 0;  // inbound messages not acknowledged: on_message said `deferred`
                                       // (or threw), or they came after that on the same connection
  std::uint64_t deferrals = 0;         // connections dropped to withhold an acknowledgement
  std::uint64_t callback_errors = 0;   // callbacks that threw (logged at ERROR)
  std::int64_t last_ack_ms = 0;        // wall clock of the last answer from the broker; 0: none yet
  std::int64_t connected_since_ms = 0; // wall clock of the current session's CONNACK; 0: not connected
  std::string last_error;              // why the last attempt or session ended; "" if none
  int protocol = 0;                    // 5 or 4 (3.1.1) for the current or last session; 0: none
};

class EDGERT_API Transport {
 public:
  virtual ~Transport() = default;

  /// Any thread; never blocks on the network. Starts the network thread, which
  /// connects and keeps reconnecting until stop(). Errors: invalid_argument for
  /// options the library refuses (a TLS file that does not exist names it), closed
  /// after stop(); calling it twice is invalid_argument.
  [[nodiscard]] virtual Status start(TransportEvents events) = 0;
  /// Any thread but a callback's; blocks up to `linger` while queued publishes are
  /// written, then disconnects cleanly (the broker does not send the last will) and
  /// joins the network thread. Idempotent.
  virtual void stop(std::chrono::milliseconds linger = std::chrono::milliseconds(2000)) = 0;

  /// Any thread; never blocks on the network. Queues one message and returns its
  /// message id, to be matched with on_published. Errors: again while not connected
  /// (nothing was queued: the transport refuses rather than letting the broker
  /// library buffer it in memory), invalid_argument (topic or QoS), closed.
  [[nodiscard]] virtual Result<int> publish(const std::string& topic, std::string_view payload,
                                            PublishOptions options = {}) = 0;
  /// Any thread; never blocks. Adds a QoS 1 subscription, kept for the transport's
  /// life: it is (re)sent on every connect. Errors: invalid_argument for a bad filter.
  [[nodiscard]] virtual Status subscribe(const std::string& topic_filter, int qos = 1) = 0;

  /// Any thread; never blocks.
  virtual LinkState state() const noexcept = 0;
  /// Any thread; never blocks for long.
  virtual TransportStats stats() const = 0;
};

}  // namespace edgert
