// Forwarder: drains the mailbox outbox to the broker (docs/operations.md, "Delivery").
//
// Two threads, so that publishing never waits for SQLite:
// - "edgert-forward" only publishes: it takes leased rows from a bounded ready queue and
//   hands them to the transport at QoS 1, with the row's remaining TTL as the MQTT v5
//   message expiry, as long as the window has room.
// - "edgert-fwd-db" does every mailbox call: it leases ahead into the ready queue
//   (Mailbox::lease), deletes the rows whose PUBACK came (all that arrived since its
//   last round, in one transaction), marks failed the refused ones, those without a
//   PUBACK within ack_timeout and those in flight when the connection was lost (the
//   mailbox's back-off schedules them again), and gives read-ahead rows back while
//   offline. A round deletes first and frees those rows from the window before it
//   marks failures or leases.
//
// The window counts rows in flight plus rows acknowledged and not yet deleted: a crash
// sends again at most `window` rows (leases live in memory; after a crash every
// unacknowledged row is due again: at-least-once, receivers deduplicate by message_id).
// A row is deleted only after its PUBACK.
//
// Leases alternate between the oldest due rows and the newest, and the newest go to the
// front of the ready queue; a commit also leases its newest rows (up to 32) to the front
// at once. So messages emitted while a backlog drains do not wait behind it.
//
// Neither thread polls: the publisher sleeps until there are rows and room (or a state
// change); the mailbox thread until a commit (Mailbox::set_commit_listener), PUBACKs, a
// failure, a connection change, the ready queue running low, or once a second for rows
// whose retry time came (and every ack_timeout/10 while rows are in flight).
#pragma once

#include "core/log_limit.hpp"

#include <edgert/mailbox.hpp>
#include <edgert/transport.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
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

  /// Starts the threads. Once.
  void start();
  /// Stops leasing and publishing, waits up to `linger` for PUBACKs of rows in flight,
  /// deletes those, releases the rest (they stay in the outbox, due at once) and joins.
  void stop(std::chrono::milliseconds linger);

  // From the transport's network thread; never block.
  void on_published(int mid, bool ok, const std::string& reason);
  void on_state(LinkState state);
  /// Any thread, never blocks: there may be new rows (the mailbox's commit listener).
  void wake();
  /// The network thread, never blocks: it spent `d` in an inbound handler (storing a
  /// message), time in which no PUBACK could be read. ack_timeout does not count it: a
  /// flood of inbound mail must not make the broker look as if it lost PUBACKs.
  void add_network_busy(std::chrono::nanoseconds d) noexcept {
    network_busy_ns_.fetch_add(d.count(), std::memory_order_relaxed);
  }

  /// The topic a row is published on: {root}/{recipient}/inbox for another node,
  /// {root}/{node_id}/notifications for payload_type "notification", else
  /// {root}/{node_id}/payloads.
  std::string topic_for(const Envelope& envelope) const;

  ForwarderCounters counters() const;
  std::size_t in_flight() const;

 private:
  void publish_loop();
  void mailbox_loop();
  /// mark_delivered(ids) in one transaction; empties ids, sets `error` on a failure
  /// (logged). The mailbox thread, mu_ not held. Returns the rows deleted.
  std::size_t delete_acknowledged(std::vector<std::string>& ids, bool& error);
  /// Rows a crash would send again: in flight, acknowledged and not yet deleted. mu_ held.
  std::size_t held() const { return flights_.size() + acked_.size() + deleting_; }
  /// Whether the acknowledged rows should be deleted now rather than batched (forwarder.cpp). mu_ held.
  bool delete_now() const;
  /// The topic of `e` without building a string for the node's own topics.
  const std::string& topic_of(const Envelope& e, std::string& scratch) const;

  struct Flight {
    std::string message_id;
    std::chrono::steady_clock::time_point sent;
    std::int64_t busy_at_send = 0;  // network_busy_ns_ when it was published
  };
  std::atomic<std::int64_t> network_busy_ns_{0};  // add_network_busy() total

  const ForwarderOptions options_;
  const std::string payloads_topic_;       // {root}/{node_id}/payloads
  const std::string notifications_topic_;  // {root}/{node_id}/notifications
  const std::size_t read_ahead_;           // ready queue bound (+32 a commit's fresh rows)
  const std::size_t delete_batch_;         // acknowledgements that make a partial batch worth deleting
  Mailbox& mailbox_;
  Transport& transport_;

  mutable std::mutex mu_;
  std::condition_variable publish_cv_;  // the publisher: rows and room, a state change, stop
  std::condition_variable mailbox_cv_;  // the mailbox thread: work for SQLite
  std::condition_variable settled_cv_;  // stop(): what was in flight is settled
  bool mailbox_woken_ = false;          // a commit, a state change or stop(): look again
  bool more_due_ = true;                // the last lease filled its limit (or a commit came since)
  bool stopping_ = false;               // the publisher returns
  bool mailbox_stopping_ = false;       // the mailbox thread settles and returns (after the publisher)
  bool draining_ = false;               // stop(): no new leases or publishes
  bool connected_ = false;
  bool lost_ = false;                   // the connection dropped since the mailbox thread last looked
  bool publish_blocked_ = false;        // publish() said "not connected": wait for a state change
  std::uint64_t session_ = 0;           // sessions seen; a message id is only matched within one
  std::deque<OutboxMessage> ready_;     // leased, not yet published; newest-first rows at the front
  std::unordered_map<int, Flight> flights_;                 // mid -> row
  // PUBACKs that beat their mid's registration: (mid, publish_calls_ when it came).
  std::vector<std::pair<int, std::uint64_t>> early_acks_;
  struct EarlyRefusal {
    int mid = 0;
    std::uint64_t calls = 0;  // publish_calls_ when it came
    std::string reason;
  };
  std::vector<EarlyRefusal> early_refusals_;
  std::atomic<std::uint64_t> publish_calls_{0};  // publish() calls begun (the publisher counts)
  std::vector<std::string> acked_;      // message ids to delete
  std::size_t deleting_ = 0;            // ids the mailbox thread is deleting, or failed to delete (still held)
  std::vector<std::string> failed_;     // message ids to mark failed
  ForwarderCounters counters_;
  std::thread publisher_;
  std::thread mailbox_thread_;
  // Per-message lines: 10 a minute, then a count (docs/operations.md, "Logs").
  detail::LogLimit refused_log_{10, std::chrono::seconds(60)};
  detail::LogLimit publish_failed_log_{10, std::chrono::seconds(60)};
  detail::LogLimit delete_failed_log_{10, std::chrono::seconds(60)};
};

}  // namespace edgert::comms
