#include "comms/forwarder.hpp"

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

#include <algorithm>
#include <deque>

namespace edgert::comms {

using detail::printable;
namespace {

using detail::wall_clock_ms;

}  // namespace

Forwarder::Forwarder(ForwarderOptions options, Mailbox& mailbox, Transport& transport)
    : options_(std::move(options)), mailbox_(mailbox), transport_(transport) {}

Forwarder::~Forwarder() { stop(std::chrono::milliseconds(0)); }

void Forwarder::start() {
  connected_ = transport_.state() == LinkState::connected;
  thread_ = std::thread([this] {
    detail::set_current_thread_name("edgert-forward");
    run();
  });
}

void Forwarder::stop(std::chrono::milliseconds linger) {
  if (!thread_.joinable()) return;
  {
    std::unique_lock lk(mu_);
    draining_ = true;
    woken_ = true;
    cv_.notify_all();
    // PUBACKs still due: wait for them (the thread keeps marking what arrives).
    cv_.wait_for(lk, linger, [this] { return flights_.empty() && acked_.empty(); });
    stopping_ = true;
    cv_.notify_all();
  }
  thread_.join();
}

std::string Forwarder::topic_for(const Envelope& e) const {
  if (!e.recipient_node_id.empty() && e.recipient_node_id != options_.node_id) {
    return options_.root + "/" + e.recipient_node_id + "/inbox";
  }
  return options_.root + "/" + options_.node_id + (e.payload_type == "notification" ? "/notifications" : "/payloads");
}

void Forwarder::on_published(int mid, bool ok, const std::string& reason) {
  std::lock_guard lk(mu_);
  auto it = flights_.find(mid);
  if (it == flights_.end()) {
    // The mid is not registered yet (publish() returned after the PUBACK came), or it
    // belongs to a row already given up on: keep it briefly for the first case.
    if (ok) {
      early_acks_.insert(mid);
    } else {
      early_refusals_[mid] = reason;
    }
    return;
  }
  if (ok) {
    acked_.push_back(std::move(it->second.message_id));
  } else {
    ++counters_.refused;
    if (auto v = refused_log_.admit(); v.log) {
      detail::log().warn("comms: the broker refused message {}: {}; retried after back-off{}",
                         printable(it->second.message_id), printable(reason), v.suffix());
    }
    failed_.push_back(std::move(it->second.message_id));
  }
  flights_.erase(it);
  // Deletes are batched: the thread is woken once a quarter of the window is back (or
  // nothing is left in flight); otherwise its 5 ms round picks them up.
  if (!ok || acked_.size() >= std::max<std::size_t>(1, options_.window / 4) || flights_.empty()) {
    woken_ = true;
    cv_.notify_all();
  }
}

void Forwarder::on_state(LinkState state) {
  std::lock_guard lk(mu_);
  // The session is over (a fresh one numbers its messages from 1 again): whatever it
  // had in flight failed, now, before a PUBACK of the next session could match an old
  // message id. A stalled broker goes connected -> unresponsive -> connecting; only
  // unresponsive keeps the session, so it keeps what is in flight.
  if (state == LinkState::connecting || state == LinkState::stopped) {
    if (!flights_.empty()) {
      counters_.lost_in_flight += flights_.size();
      detail::log().info("comms: connection lost with {} message(s) awaiting PUBACK; they will be sent again",
                         flights_.size());
      for (auto& [mid, f] : flights_) failed_.push_back(std::move(f.message_id));
      flights_.clear();
    }
    early_acks_.clear();
    early_refusals_.clear();
    lost_ = true;
  }
  if (state == LinkState::connected && !connected_) ++session_;
  connected_ = state == LinkState::connected;
  woken_ = true;
  cv_.notify_all();
}

void Forwarder::wake() {
  std::lock_guard lk(mu_);
  woken_ = true;
  cv_.notify_all();
}

ForwarderCounters Forwarder::counters() const {
  std::lock_guard lk(mu_);
  return counters_;
}

std::size_t Forwarder::in_flight() const {
  std::lock_guard lk(mu_);
  return flights_.size();
}

void Forwarder::run() {
  // A row is leased a little longer than its PUBACK may take, so the lease never
  // runs out while this thread still holds it (read ahead, in flight, or acknowledged
  // and waiting for its delete).
  const auto lease_for = options_.ack_timeout + std::chrono::seconds(30);
  // Read-ahead: rows leased and not yet published, so a PUBACK is answered by a
  // publish at once, without a SQLite read in between. Deletes are batched the same
  // way: one transaction per window/2 acknowledgements, or every kDeleteEvery.
  const std::size_t read_ahead = std::max<std::size_t>(options_.window, 256);
  const std::size_t delete_batch = std::max<std::size_t>(1, options_.window / 2);
  constexpr auto kDeleteEvery = std::chrono::milliseconds(20);
  std::deque<OutboxMessage> ready;
  std::vector<std::string> to_delete;
  auto last_delete = std::chrono::steady_clock::now();

  auto flush_deletes = [&] {
    if (to_delete.empty()) return;
    auto r = mailbox_.mark_delivered(to_delete);
    std::lock_guard g(mu_);
    if (r.ok()) {
      counters_.delivered += r.value();
    } else {
      ++counters_.mailbox_errors;
      detail::log().error("comms: marking {} delivered message(s) failed: {} (they may be sent again)",
                          to_delete.size(), r.status().message());
    }
    to_delete.clear();
    last_delete = std::chrono::steady_clock::now();
  };
  auto give_back = [&] {  // read-ahead rows go back to the outbox, due at once
    if (ready.empty()) return;
    std::vector<std::string> ids;
    for (auto& m : ready) ids.push_back(std::move(m.envelope.message_id));
    ready.clear();
    mailbox_.release(ids);
  };

  std::unique_lock lk(mu_);
  while (!stopping_) {
    std::vector<std::string> failed = std::move(failed_);
    failed_.clear();
    for (auto& id : acked_) to_delete.push_back(std::move(id));
    acked_.clear();
    const auto now = std::chrono::steady_clock::now();
    const bool lost = std::exchange(lost_, false);
    for (auto it = flights_.begin(); it != flights_.end();) {
      if (now - it->second.sent >= options_.ack_timeout) {
        ++counters_.ack_timeouts;
        failed.push_back(std::move(it->second.message_id));
        it = flights_.erase(it);
      } else {
        ++it;
      }
    }
    const bool connected = connected_ && !draining_;
    const std::size_t flying = flights_.size();
    lk.unlock();

    if (!connected || lost) give_back();
    if (!failed.empty()) {
      if (auto r = mailbox_.mark_failed(failed); !r.ok()) {
        {
          std::lock_guard g(mu_);
          ++counters_.mailbox_errors;
        }
        detail::log().error("comms: marking {} message(s) failed: {}", failed.size(), r.status().message());
        mailbox_.release(failed);
      }
    }
    if (to_delete.size() >= delete_batch || (!to_delete.empty() && now - last_delete >= kDeleteEvery) ||
        (!to_delete.empty() && flying == 0)) {
      flush_deletes();
    }
    // Acknowledged rows not yet deleted count against the window: a crash sends again
    // what is in flight and what is acknowledged but not deleted, so together they are
    // at most `window` (the duplicates a crash can cause).
    const std::size_t held = flying + to_delete.size();
    std::size_t room = connected && held < options_.window ? options_.window - held : 0;
    if (connected && ready.size() < options_.window) {
      const bool newest = newest_next_;
      newest_next_ = !newest_next_;
      auto rows = mailbox_.lease(read_ahead - ready.size(), lease_for,
                                 newest ? LeaseOrder::newest_first : LeaseOrder::priority_first);
      if (rows.ok()) {
        // Newest-first rows go to the front: they are what the round is for.
        if (newest) {
          for (auto it = rows.value().rbegin(); it != rows.value().rend(); ++it) ready.push_front(std::move(*it));
        } else {
          for (auto& m : rows.value()) ready.push_back(std::move(m));
        }
      } else {
        {
          std::lock_guard g(mu_);
          ++counters_.mailbox_errors;
        }
        if (rows.status().code() != ErrorCode::closed) {
          detail::log().error("comms: reading the outbox failed: {}", rows.status().message());
        }
      }
    }

    std::size_t sent = 0;
    const std::int64_t wall = wall_clock_ms();
    while (room > 0 && !ready.empty()) {
      OutboxMessage& m = ready.front();
      PublishOptions po;
      po.qos = 1;
      po.expiry = std::chrono::seconds(std::max<std::int64_t>(1, (m.expires_ms - wall + 999) / 1000));
      std::uint64_t session = 0;
      {
        std::lock_guard g(mu_);
        session = session_;
      }
      auto mid = transport_.publish(topic_for(m.envelope), m.envelope_json, po);
      if (!mid.ok() && (mid.status().code() == ErrorCode::again || mid.status().code() == ErrorCode::closed)) {
        break;  // not connected: nothing was queued; the rows stay read ahead until the state says so
      }
      std::string id = std::move(m.envelope.message_id);
      ready.pop_front();
      lk.lock();
      if (mid.ok() && session != session_) {
        // The session changed while it was being published: its id may belong to
        // either session, so it counts as lost (sent again; at worst a duplicate).
        ++counters_.published;
        ++counters_.lost_in_flight;
        failed_.push_back(std::move(id));
        woken_ = true;
      } else if (mid.ok()) {
        ++counters_.published;
        ++sent;
        --room;
        const int n = mid.value();
        if (early_acks_.erase(n) != 0) {
          to_delete.push_back(std::move(id));
        } else if (auto r = early_refusals_.find(n); r != early_refusals_.end()) {
          ++counters_.refused;
          failed_.push_back(std::move(id));
          early_refusals_.erase(r);
          woken_ = true;
        } else {
          flights_[n] = Flight{std::move(id), std::chrono::steady_clock::now()};
        }
      } else {
        ++counters_.publish_errors;
        failed_.push_back(id);
        woken_ = true;
        if (auto v = publish_failed_log_.admit(); v.log) {
          detail::log().error("comms: publishing message {} failed: {}{}", printable(id), mid.status().message(),
                              v.suffix());
        }
      }
      lk.unlock();
    }

    lk.lock();
    early_acks_.clear();  // any PUBACK for a mid registered above has been matched by now
    early_refusals_.clear();
    if (stopping_) break;
    cv_.notify_all();  // stop() waits for flights_ to empty
    if (sent > 0 && !ready.empty() && flights_.size() < options_.window) continue;
    const bool busy = !flights_.empty() || !acked_.empty() || !to_delete.empty();
    cv_.wait_for(lk, busy ? std::chrono::milliseconds(5) : std::chrono::milliseconds(1000),
                 [this] { return woken_ || stopping_; });
    woken_ = false;
  }
  // Stopping: what was acknowledged is deleted; what is still in flight or read ahead
  // goes back to the outbox, due at once.
  for (auto& id : acked_) to_delete.push_back(std::move(id));
  acked_.clear();
  std::vector<std::string> rest, failed = std::move(failed_);
  failed_.clear();
  for (auto& [mid, f] : flights_) rest.push_back(std::move(f.message_id));
  flights_.clear();
  lk.unlock();
  flush_deletes();
  give_back();
  if (!rest.empty()) mailbox_.release(rest);
  // Failures not yet recorded (a refusal, a lost session just before stop): their
  // attempt counts, and their leases end either way.
  if (!failed.empty() && !mailbox_.mark_failed(failed).ok()) mailbox_.release(failed);
}

}  // namespace edgert::comms
