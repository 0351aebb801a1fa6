// Forwarder: drains the mailbox outbox to the broker (docs/operations.md, "Delivery").
//
// One thread leases up to `window` due rows (Mailbox::lease), publishes each at QoS 1
// with the row's remaining TTL as the MQTT v5 message expiry, and marks a row
// delivered only when its PUBACK arrives (batched: one transaction per wake). A row
// whose PUBACK does not come within ack_timeout, or whose connection is lost first,
// is marked failed (the mailbox's back-off schedules it again). Leases keep an
// in-flight row from being handed out twice; after a crash they are gone and every
// unacknowledged row is published again (at-least-once; receivers deduplicate by
// message_id).
//
// Rounds alternate between the oldest due rows and the newest, so messages emitted
// while a backlog drains are not queued behind all of it.
//
// The thread sleeps until woken: by a commit (Mailbox::set_commit_listener), a PUBACK,
// a connection change, or once a second for rows whose retry time came.
#pragma once

#include "core/log_limit.hpp"

#include <edgert/mailbox.hpp>
#include <edgert/transport.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace edgert::comms {

struct ForwarderOptions {
  std::string node_id;
  std::string root = "edgert";
  std::size_t window = 100;
  std::chrono::milliseconds ack_timeout{30000};
};

struct ForwarderCounters {
  std::uint64_t published = 0;       // rows handed to the transport
  std::uint64_t delivered = 0;       // rows removed after their PUBACK
  std::uint64_t refused = 0;         // PUBACKs with an error reason (marked failed)
  std::uint64_t ack_timeouts = 0;    // no PUBACK within ack_timeout (marked failed)
  std::uint64_t lost_in_flight = 0;  // in flight when the connection dropped (marked failed)
  std::uint64_t publish_errors = 0;  // publish() refused other than for a lost connection
  std::uint64_t mailbox_errors = 0;  // lease/mark calls that failed (logged)
};

class Forwarder {
 public:
  Forwarder(ForwarderOptions options, Mailbox& mailbox, Transport& transport);
  ~Forwarder();  // stop()
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  /// Starts the thread. Once.
  void start();
  /// Stops leasing, waits up to `linger` for PUBACKs of rows in flight, marks those
  /// delivered, releases the rest (they stay in the outbox, due at once) and joins.
  void stop(std::chrono::milliseconds linger);

  // From the transport's network thread; never block.
  void on_published(int mid, bool ok, const std::string& reason);
  void on_state(LinkState state);
  /// Any thread, never blocks: there may be new rows (the mailbox's commit listener).
  void wake();

  /// The topic a row is published on: {root}/{recipient}/inbox for another node,
  /// {root}/{node_id}/notifications for payload_type "notification", else
  /// {root}/{node_id}/payloads.
  std::string topic_for(const Envelope& envelope) const;

  ForwarderCounters counters() const;
  std::size_t in_flight() const;

 private:
  void run();
  struct Flight {
    std::string message_id;
    std::chrono::steady_clock::time_point sent;
  };

  const ForwarderOptions options_;
  Mailbox& mailbox_;
  Transport& transport_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  bool draining_ = false;        // stop(): no new leases
  bool connected_ = false;
  bool lost_ = false;            // the connection dropped since the thread last looked
  std::uint64_t session_ = 0;    // sessions seen; a message id is only matched within one
  std::unordered_map<int, Flight> flights_;        // mid -> row
  std::unordered_set<int> early_acks_;             // PUBACKs that beat the mid's registration
  std::unordered_map<int, std::string> early_refusals_;
  std::vector<std::string> acked_;                 // message ids to mark delivered
  std::vector<std::string> failed_;                // message ids to mark failed
  ForwarderCounters counters_;
  bool newest_next_ = false;                       // alternate lease order
  std::thread thread_;
  // Per-message lines: 10 a minute, then a count (docs/operations.md, "Logs").
  detail::LogLimit refused_log_{10, std::chrono::seconds(60)};
  detail::LogLimit publish_failed_log_{10, std::chrono::seconds(60)};
};

}  // namespace edgert::comms
