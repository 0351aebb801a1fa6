// Comms presence: the "edgert-comms" thread (retained status, offline reports, work_offline) and the
// heartbeat's publishing (the node's beat hands each document to beat()).
#include "comms/comms.hpp"

#include "core/log.hpp"
#include "core/printable.hpp"

#include <algorithm>

namespace edgert::comms {

using detail::printable;
namespace {

std::string seconds_text(std::int64_t ms) { return std::to_string(ms / 1000) + " s"; }

}  // namespace

bool Comms::publish_heartbeat_document(const std::string& document, int qos) {
  PublishOptions po;
  po.qos = qos;
  // Stale after three missed beats: a reader of an old document sees it expired.
  po.expiry = std::chrono::seconds(std::max<std::int64_t>(1, options_.heartbeat_interval.count() * 3 / 1000));
  const bool ok = transport_->publish(topic("heartbeat"), document, po).ok();
  std::lock_guard lk(mu_);
  ++(ok ? counters_.heartbeats_published : counters_.heartbeats_skipped);
  return ok;
}

void Comms::beat(const std::string& document) {
  // beat_mu_ makes the check and the publish one step against stop()'s goodbye: a beat
  // either is published before the SHUTDOWN heartbeat or sees beats_closed_ and is
  // dropped. (The node's publisher may outlive its stop timeout and call this late.)
  // It never waits on the network: the publish only queues the message.
  std::lock_guard beat_lk(beat_mu_);
  // built_: transport_ exists and stays until destruction; started_: not stopped.
  if (!built_.load() || options_.heartbeat_interval.count() <= 0) return;
  if (beats_closed_ || !started_.load()) {
    std::lock_guard lk(mu_);
    ++counters_.heartbeats_skipped;  // handed over after stop() began: counted, never published
    return;
  }
  if (transport_->state() != LinkState::connected) {
    std::lock_guard lk(mu_);
    ++counters_.heartbeats_skipped;  // offline: a heartbeat is news, not kept for later
    return;
  }
  (void)publish_heartbeat_document(document, 0);
}

void Comms::monitor_loop() {
  using namespace std::chrono;
  const std::int64_t log_every = options_.config.offline_log_s * 1000;
  std::int64_t next_offline_log = 0;
  bool was_connected = false;
  bool offline_logged = false;
  bool declared_ready = false;
  WorkerPulse* const pulse = options_.link_pulse.get();
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (pulse) pulse->beat();
    cv_.wait_for(lk, milliseconds(250), [this] { return stopping_ || announce_; });
    if (stopping_) break;
    const bool connected = state_ == LinkState::connected;
    const bool announce = std::exchange(announce_, false);
    const std::string reason = state_reason_;
    lk.unlock();
    const std::int64_t now = now_ms();
    if (announce) {
      PublishOptions po;
      po.retain = true;
      (void)transport_->publish(topic("status"), "online", po);
      const auto stats = mailbox_->stats();
      std::lock_guard g(mu_);
      if (offline_since_ms_ != 0) {
        detail::log().info("comms: connected to {}:{} after {} offline; {} message(s) in the outbox to send",
                           printable(options_.config.mqtt.host), options_.config.mqtt.port,
                           seconds_text(now - offline_since_ms_), stats.ok() ? stats.value().outbox_rows : 0);
      }
      offline_since_ms_ = 0;
      attempts_at_connect_ = transport_->stats().connect_attempts;
    }
    if (!connected) {
      std::int64_t since = 0;
      bool begin = false;
      {
        std::lock_guard g(mu_);
        if (was_connected || offline_since_ms_ == 0) offline_since_ms_ = now;
        since = offline_since_ms_;
        // Reported once the outage is real: the first attempt failed, or 3 s passed.
        if (!offline_logged && (!reason.empty() || now - since >= 3000)) {
          offline_logged = true;
          ++counters_.offline_periods;
          begin = true;
        }
      }
      if (begin || (offline_logged && now >= next_offline_log)) {
        const auto stats = mailbox_->stats();
        detail::log().warn(
            "comms: {} {}:{} ({}){}; working offline: {} message(s) wait in the outbox, oldest {}",
            begin ? "cannot reach the broker at" : "still offline from", printable(options_.config.mqtt.host),
            options_.config.mqtt.port, reason.empty() ? "connecting" : printable(reason, 200),
            begin ? "" : " for " + seconds_text(now - since), stats.ok() ? stats.value().outbox_rows : 0,
            stats.ok() ? seconds_text(stats.value().oldest_pending_age_ms) : "?");
        next_offline_log = now + log_every;
        if (pulse && begin) {
          pulse->declare("offline", "cannot reach the broker at " + options_.config.mqtt.host + ":" +
                                        std::to_string(options_.config.mqtt.port) +
                                        (reason.empty() ? std::string() : " (" + reason + ")"));
          declared_ready = false;
        }
      }
      if (!options_.work_offline) {
        const auto ts = transport_->stats();
        std::uint64_t base = 0;
        {
          std::lock_guard g(mu_);
          base = attempts_at_connect_;
        }
        // The attempt under way may still succeed: the ones before it failed.
        const std::uint64_t failed = ts.connect_attempts > base + 1 ? ts.connect_attempts - base - 1 : 0;
        bool fire = false;
        {
          std::lock_guard g(mu_);
          fire = failed >= static_cast<std::uint64_t>(options_.config.mqtt.max_retry_iters) && !shutdown_requested_;
          if (fire) shutdown_requested_ = true;
        }
        if (fire && options_.request_shutdown) {
          options_.request_shutdown("comms: " + std::to_string(failed) + " connection attempts to " +
                                    options_.config.mqtt.host + ":" + std::to_string(options_.config.mqtt.port) +
                                    " failed (last: " + (ts.last_error.empty() ? reason : ts.last_error) +
                                    ") and node.work_offline is false");
        }
      }
    }
    if (connected) {
      if (pulse && !declared_ready) {
        pulse->declare("ready", "connected");
        declared_ready = true;
      }
      offline_logged = false;
      std::lock_guard g(mu_);
      offline_since_ms_ = 0;  // also after an unresponsive spell the same session survived
    }
    was_connected = connected;
    lk.lock();
  }
}

}  // namespace edgert::comms
