// Forwarder: the publish thread and the mailbox thread that drain the outbox (forwarder.hpp).
#include "comms/forwarder.hpp"

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

#include <algorithm>
#include <iterator>

namespace edgert::comms {

using detail::printable;
using detail::wall_clock_ms;
using SteadyClock = std::chrono::steady_clock;

Forwarder::Forwarder(ForwarderOptions options, Mailbox& mailbox, Transport& transport)
    : options_(std::move(options)),
      payloads_topic_(options_.root + "/" + options_.node_id + "/payloads"),
      notifications_topic_(options_.root + "/" + options_.node_id + "/notifications"),
      // Enough read-ahead that a PUBACK is answered by a publish from memory while the
      // mailbox thread leases the next batch; small enough that fresh rows (leased
      // newest-first, to the front) never wait behind much of it.
      read_ahead_(std::max<std::size_t>(2 * options_.window, 256)),
      delete_batch_(std::max<std::size_t>(1, options_.window / 8)),
      mailbox_(mailbox),
      transport_(transport) {
  flights_.reserve(options_.window * 2);
}

Forwarder::~Forwarder() { stop(std::chrono::milliseconds(0)); }

void Forwarder::start() {
  {
    std::lock_guard lk(mu_);
    connected_ = transport_.state() == LinkState::connected;
  }
  mailbox_thread_ = std::thread([this] {
    detail::set_current_thread_name("edgert-fwd-db");
    mailbox_loop();
  });
  publisher_ = std::thread([this] {
    detail::set_current_thread_name("edgert-forward");
    publish_loop();
  });
}

void Forwarder::stop(std::chrono::milliseconds linger) {
  if (!publisher_.joinable() && !mailbox_thread_.joinable()) return;
  {
    std::unique_lock lk(mu_);
    draining_ = true;
    mailbox_woken_ = true;
    mailbox_cv_.notify_all();
    publish_cv_.notify_all();
    // PUBACKs still due: wait for them (the mailbox thread keeps deleting what arrives).
    settled_cv_.wait_for(lk, linger, [this] { return flights_.empty() && acked_.empty() && deleting_ == 0; });
    stopping_ = true;
    publish_cv_.notify_all();
  }
  // The publisher first: a batch it was publishing is registered (or put back) before
  // the mailbox thread settles what is left.
  if (publisher_.joinable()) publisher_.join();
  {
    std::lock_guard lk(mu_);
    mailbox_stopping_ = true;
    mailbox_cv_.notify_all();
  }
  if (mailbox_thread_.joinable()) mailbox_thread_.join();
}

std::string Forwarder::topic_for(const Envelope& e) const {
  std::string scratch;
  return topic_of(e, scratch);
}

const std::string& Forwarder::topic_of(const Envelope& e, std::string& scratch) const {
  if (!e.recipient_node_id.empty() && e.recipient_node_id != options_.node_id) {
    scratch.clear();
    scratch.append(options_.root).append("/").append(e.recipient_node_id).append("/inbox");
    return scratch;
  }
  return e.payload_type == "notification" ? notifications_topic_ : payloads_topic_;
}

void Forwarder::on_published(int mid, bool ok, const std::string& reason) {
  std::lock_guard lk(mu_);
  auto it = flights_.find(mid);
  if (it == flights_.end()) {
    // The mid is not registered yet (the publisher registers a batch once it is
    // published), or it belongs to a row already given up on: keep it until the
    // publisher's next registration, which matches the first case.
    // Stamped with the publish() calls begun so far: the answer to a publish can only
    // come after that publish began, so it is matched only to a row whose publish()
    // began before this moment. A late PUBACK for an old row given up on whose mid
    // (they wrap at 65535) a row of the batch is about to get again does not match it.
    const std::uint64_t calls = publish_calls_.load();
    if (ok) {
      early_acks_.emplace_back(mid, calls);
    } else {
      early_refusals_.push_back(EarlyRefusal{mid, calls, reason});
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
  if (!ok) publish_cv_.notify_one();  // a refused row leaves the window at once
  if (!ok || delete_now()) mailbox_cv_.notify_one();
}

// Acknowledged rows hold their window slots until deleted. While they are what keeps
// rows that are ready from being published (the window is full), the mailbox thread
// deletes at once, and the PUBACKs that arrive during one delete make the next (group
// commit): waiting for a fuller batch idled the wire (mqtt_bench's outbox drain: 31-32k
// -> 39-41k msgs/s, docs/performance.md). Otherwise a partial batch waits for an eighth
// of the window, or 1 ms: below saturation that keeps the transactions, and the WAL
// pages each one writes, to about one a millisecond instead of one per PUBACK.
bool Forwarder::delete_now() const {
  if (acked_.empty()) return false;
  return acked_.size() >= delete_batch_ || flights_.empty() || (held() >= options_.window && !ready_.empty());
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
  publish_blocked_ = false;
  mailbox_woken_ = true;
  mailbox_cv_.notify_all();
  publish_cv_.notify_all();
  settled_cv_.notify_all();
}

void Forwarder::wake() {
  std::lock_guard lk(mu_);
  mailbox_woken_ = true;
  // Offline, a commit has nothing to start: the reconnect (on_state) wakes the thread,
  // which then sees mailbox_woken_. No wake-up per send while the outbox fills.
  if (connected_ && !draining_) mailbox_cv_.notify_one();
}

ForwarderCounters Forwarder::counters() const {
  std::lock_guard lk(mu_);
  return counters_;
}

std::size_t Forwarder::in_flight() const {
  std::lock_guard lk(mu_);
  return flights_.size();
}

// The publish thread: no SQLite, one lock to take a batch and one to register it.
void Forwarder::publish_loop() {
  std::vector<OutboxMessage> batch;
  std::vector<int> mids;  // per published row of `batch`: its mid, or -1 (publish refused it)
  std::vector<std::uint64_t> calls;  // per published row: publish_calls_ once its publish() began
  std::vector<std::string> errors;
  std::string scratch;
  batch.reserve(options_.window);
  mids.reserve(options_.window);
  const std::size_t low_water = read_ahead_ / 2;
  std::unique_lock lk(mu_);
  while (!stopping_) {
    const std::size_t in_window = held();
    if (!connected_ || draining_ || publish_blocked_ || in_window >= options_.window || ready_.empty()) {
      if (publish_blocked_) {
        // The transport refused for want of a session while its state still said
        // connected: the state change is on its way; look again in 100 ms at the latest.
        publish_cv_.wait_for(lk, std::chrono::milliseconds(100), [this] { return stopping_ || !publish_blocked_; });
        publish_blocked_ = false;
      } else {
        publish_cv_.wait(lk);
      }
      continue;
    }
    const std::size_t n = std::min(options_.window - in_window, ready_.size());
    batch.clear();
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(ready_.front()));
      ready_.pop_front();
    }
    if (ready_.size() < low_water && more_due_) mailbox_cv_.notify_one();  // lease the next batch now
    const std::uint64_t session = session_;
    lk.unlock();

    mids.clear();
    calls.clear();
    errors.clear();
    bool blocked = false;
    const std::int64_t wall = wall_clock_ms();
    PublishOptions po;
    po.qos = 1;
    for (const OutboxMessage& m : batch) {
      po.expiry = std::chrono::seconds(std::max<std::int64_t>(1, (m.expires_ms - wall + 999) / 1000));
      const std::uint64_t call = publish_calls_.fetch_add(1) + 1;
      auto mid = transport_.publish(topic_of(m.envelope, scratch), m.envelope_json, po);
      if (mid.ok()) {
        mids.push_back(mid.value());
        calls.push_back(call);
      } else if (mid.status().code() == ErrorCode::again || mid.status().code() == ErrorCode::closed) {
        blocked = true;  // not connected: nothing was queued; the rest go back to the queue
        break;
      } else {
        mids.push_back(-1);
        calls.push_back(call);
        errors.push_back(mid.status().message());
      }
    }
    const auto sent_at = SteadyClock::now();
    const std::int64_t busy_at_send = network_busy_ns_.load(std::memory_order_relaxed);

    lk.lock();
    // Rows not handed over go back to the front, in their order.
    for (std::size_t i = batch.size(); i-- > mids.size();) ready_.push_front(std::move(batch[i]));
    if (blocked) {
      publish_blocked_ = true;
      mailbox_woken_ = true;  // offline after all: the mailbox thread gives the read-ahead back
      mailbox_cv_.notify_one();
    }
    std::sort(early_acks_.begin(), early_acks_.end());
    bool for_mailbox = false;
    std::size_t error_i = 0;
    for (std::size_t i = 0; i < mids.size(); ++i) {
      std::string& id = batch[i].envelope.message_id;
      const int mid = mids[i];
      if (mid < 0) {
        ++counters_.publish_errors;
        const std::string& why = errors[error_i++];
        if (auto v = publish_failed_log_.admit(); v.log) {
          detail::log().error("comms: publishing message {} failed: {}{}", printable(id), why, v.suffix());
        }
        failed_.push_back(std::move(id));
        for_mailbox = true;
        continue;
      }
      ++counters_.published;
      if (session != session_) {
        // The session changed while the batch was being published: the id may belong to
        // either session, so the row counts as lost (sent again; at worst a duplicate).
        ++counters_.lost_in_flight;
        failed_.push_back(std::move(id));
        for_mailbox = true;
      } else if (auto a = std::lower_bound(early_acks_.begin(), early_acks_.end(), std::make_pair(mid, calls[i]));
                 a != early_acks_.end() && a->first == mid) {
        // A PUBACK for this mid that came after this row's publish() began.
        acked_.push_back(std::move(id));
      } else if (auto r = std::find_if(early_refusals_.begin(), early_refusals_.end(),
                                       [mid, call = calls[i]](const EarlyRefusal& e) {
                                         return e.mid == mid && e.calls >= call;
                                       });
                 r != early_refusals_.end()) {
        ++counters_.refused;
        if (auto v = refused_log_.admit(); v.log) {
          detail::log().warn("comms: the broker refused message {}: {}; retried after back-off{}", printable(id),
                             printable(r->reason), v.suffix());
        }
        failed_.push_back(std::move(id));
        for_mailbox = true;
      } else {
        flights_.emplace(mid, Flight{std::move(id), sent_at, busy_at_send});
      }
    }
    // Every PUBACK for a mid registered above has been matched by now; what is left
    // belongs to rows given up on.
    early_acks_.clear();
    early_refusals_.clear();
    if (for_mailbox || delete_now()) {
      mailbox_cv_.notify_one();
    }
  }
}

// Deletes the acknowledged rows in `ids` in one transaction (mailbox thread, mu_ not
// held) and empties `ids`; returns the rows deleted. On a failure nothing is deleted,
// `ids` is kept (the caller tries again later, the rows still counted against the
// window: a crash then resends at most the window), `error` is set and the failure
// logged (rate-limited: a full disk fails every retry).
std::size_t Forwarder::delete_acknowledged(std::vector<std::string>& ids, bool& error) {
  if (ids.empty()) return 0;
  auto r = mailbox_.mark_delivered(ids);
  if (!r.ok()) {
    error = true;
    if (auto v = delete_failed_log_.admit(); v.log) {
      detail::log().error("comms: deleting {} acknowledged message(s) failed: {}; they stay in the window and the "
                          "delete is retried{}",
                          ids.size(), r.status().message(), v.suffix());
    }
    return 0;
  }
  ids.clear();
  return r.value();
}

// The mailbox thread: every SQLite call of the forwarder.
void Forwarder::mailbox_loop() {
  // A row is leased a little longer than its PUBACK may take, so the lease never runs
  // out while the forwarder still holds it (read ahead, in flight, or acknowledged and
  // waiting for its delete).
  const auto lease_for = options_.ack_timeout + std::chrono::seconds(30);
  const auto check_every = std::clamp<std::chrono::milliseconds>(options_.ack_timeout / 10, std::chrono::milliseconds(10),
                                                                 std::chrono::milliseconds(250));
  constexpr auto kPoll = std::chrono::seconds(1);         // rows whose retry time came
  constexpr auto kDeleteRetry = std::chrono::milliseconds(100);  // after a failed delete
  const std::size_t low_water = read_ahead_ / 2;
  constexpr auto kDeleteDelay = std::chrono::milliseconds(1);  // a partial batch waits at most this (delete_now())
  constexpr std::size_t kFreshLease = 32;  // a commit's newest rows, leased at once
  // At most this many rows per lease: a lease runs under the mailbox's lock on this
  // thread, and PUBACKs that arrive meanwhile wait for it before their delete frees
  // their window slots. 64 rows take about 0.2 ms here; the read-ahead refills over
  // several rounds, deletes in between (measured against one lease of up to 256 rows:
  // outbox drain 39-41k -> 44-58k msgs/s; 32 rows was slower again).
  constexpr std::size_t kLeaseChunk = 64;
  std::vector<std::string> to_delete, failed, give_back;
  std::vector<OutboxMessage> rows;
  bool newest = false;  // alternate lease order
  auto next_check = SteadyClock::now() + check_every;
  auto next_poll = SteadyClock::now() + kPoll;
  // to_delete outlives a round only after a failed delete: those rows are retried from
  // delete_retry_at on, and stay counted in deleting_ (the window) until then.
  auto delete_retry_at = SteadyClock::time_point::min();

  std::unique_lock lk(mu_);
  while (!mailbox_stopping_) {
    const auto now = SteadyClock::now();
    if (to_delete.empty()) {
      to_delete.swap(acked_);
    } else {
      to_delete.insert(to_delete.end(), std::make_move_iterator(acked_.begin()), std::make_move_iterator(acked_.end()));
      acked_.clear();
    }
    deleting_ = to_delete.size();
    failed.swap(failed_);
    if (now >= next_check) {
      next_check = now + check_every;
      const std::int64_t busy = network_busy_ns_.load(std::memory_order_relaxed);
      for (auto it = flights_.begin(); it != flights_.end();) {
        // Time the network thread spent in our own inbound handlers is not the broker's.
        const auto waited = now - it->second.sent - std::chrono::nanoseconds(busy - it->second.busy_at_send);
        if (waited >= options_.ack_timeout) {
          ++counters_.ack_timeouts;
          failed.push_back(std::move(it->second.message_id));
          it = flights_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (now >= next_poll) {
      next_poll = now + kPoll;
      more_due_ = true;
    }
    const bool woken = std::exchange(mailbox_woken_, false);  // a commit (or a state change)
    if (woken) more_due_ = true;
    const bool lost = std::exchange(lost_, false);
    const bool connected = connected_ && !draining_;
    if (!connected || lost) {  // read-ahead rows go back to the outbox, due at once
      for (auto& m : ready_) give_back.push_back(std::move(m.envelope.message_id));
      ready_.clear();
      more_due_ = true;
    }
    std::size_t want = 0;
    LeaseOrder order = LeaseOrder::priority_first;
    if (connected && more_due_ && ready_.size() < low_water) {
      want = std::min(read_ahead_ - ready_.size(), kLeaseChunk);
      order = newest ? LeaseOrder::newest_first : LeaseOrder::priority_first;
      newest = !newest;
    } else if (connected && woken && ready_.size() < read_ahead_ + kFreshLease) {
      // Rows just committed jump the read-ahead at once (to its front) instead of
      // waiting for it to run low: fresh results do not queue behind a backlog.
      want = kFreshLease;
      order = LeaseOrder::newest_first;
    }
    lk.unlock();

    // The deletes first, and their rows leave the window at once: acknowledged rows
    // count against the window until deleted (a crash resends at most the window), so
    // a delete that waited for this round's lease would keep the publisher idle.
    bool mailbox_error = false;
    if (!to_delete.empty() && now >= delete_retry_at) {
      const std::size_t deleted = delete_acknowledged(to_delete, mailbox_error);
      if (!to_delete.empty()) delete_retry_at = SteadyClock::now() + kDeleteRetry;
      lk.lock();
      counters_.delivered += deleted;
      deleting_ = to_delete.size();  // 0, or the rows of a failed delete: still held
      publish_cv_.notify_one();
      settled_cv_.notify_all();
      lk.unlock();
    }
    if (!give_back.empty()) {
      mailbox_.release(give_back);
      give_back.clear();
    }
    if (!failed.empty()) {
      if (auto r = mailbox_.mark_failed(failed); !r.ok()) {
        mailbox_error = true;
        detail::log().error("comms: marking {} message(s) failed: {}", failed.size(), r.status().message());
        mailbox_.release(failed);
      }
      failed.clear();
    }
    rows.clear();
    bool lease_error = false;
    if (want > 0) {
      if (auto r = mailbox_.lease(want, lease_for, order); r.ok()) {
        rows = std::move(r).value();
      } else {
        lease_error = true;
        if (r.status().code() != ErrorCode::closed) {
          detail::log().error("comms: reading the outbox failed: {}", r.status().message());
        }
      }
    }

    lk.lock();
    counters_.mailbox_errors += (mailbox_error ? 1 : 0) + (lease_error ? 1 : 0);
    if (want > 0) {
      // A short read: nothing more is due until a commit, a release or the next poll.
      more_due_ = !lease_error && rows.size() == want;
      // Newest-first rows go to the front: they are what the round is for.
      if (order == LeaseOrder::newest_first) {
        for (auto it = rows.rbegin(); it != rows.rend(); ++it) ready_.push_front(std::move(*it));
      } else {
        for (auto& m : rows) ready_.push_back(std::move(m));
      }
    }
    publish_cv_.notify_one();
    settled_cv_.notify_all();
    if (mailbox_stopping_) break;
    const bool retrying = !to_delete.empty();  // a failed delete waits for delete_retry_at
    auto work = [this, low_water, retrying] {
      return mailbox_stopping_ || mailbox_woken_ || lost_ || !failed_.empty() ||
             (!retrying && delete_now()) ||
             (connected_ && !draining_ && more_due_ && ready_.size() < low_water);
    };
    if (work()) continue;
    auto until = next_poll;
    if (!flights_.empty()) until = std::min(until, next_check);
    if (retrying) {
      until = std::min(until, delete_retry_at);
    } else if (!acked_.empty()) {
      until = std::min(until, SteadyClock::now() + kDeleteDelay);
    }
    mailbox_cv_.wait_until(lk, until, work);
  }
  // Stopping (the publisher has returned): what was acknowledged is deleted (with what
  // a failed delete left); what is still in flight or read ahead goes back to the
  // outbox, due at once.
  to_delete.insert(to_delete.end(), std::make_move_iterator(acked_.begin()), std::make_move_iterator(acked_.end()));
  acked_.clear();
  failed.swap(failed_);
  std::vector<std::string> rest;
  for (auto& [mid, f] : flights_) rest.push_back(std::move(f.message_id));
  flights_.clear();
  for (auto& m : ready_) rest.push_back(std::move(m.envelope.message_id));
  ready_.clear();
  lk.unlock();
  bool mailbox_error = false;
  const std::size_t deleted = delete_acknowledged(to_delete, mailbox_error);
  if (!rest.empty()) mailbox_.release(rest);
  // Failures not yet recorded (a refusal, a lost session just before stop): their
  // attempt counts, and their leases end either way.
  if (!failed.empty() && !mailbox_.mark_failed(failed).ok()) mailbox_.release(failed);
  lk.lock();
  counters_.delivered += deleted;
  deleting_ = 0;  // failed now as well: the rows stay in the outbox and are sent again (a duplicate, never a loss)
  if (mailbox_error) ++counters_.mailbox_errors;
  settled_cv_.notify_all();
}

}  // namespace edgert::comms
