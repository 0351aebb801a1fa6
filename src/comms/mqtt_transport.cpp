// MqttTransport on libmosquitto (include/edgert/mqtt_transport.hpp, docs/operations.md
// "MQTT transport").
//
// One network thread per transport owns the libmosquitto client. Every connection
// attempt gets a fresh `struct mosquitto`, destroyed when that connection ends: the
// library's in-memory queue of unacknowledged QoS 1 messages dies with it, so nothing
// a lost session held is resent behind the outbox's back, and no on_published can
// arrive for a message whose connection was lost (transport.hpp's contract).
#include <edgert/mqtt_transport.hpp>

#include "core/clock.hpp"
#include "core/log_limit.hpp"
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

namespace edgert {

const char* to_string(LinkState state) noexcept {
  switch (state) {
    case LinkState::stopped: return "stopped";
    case LinkState::connecting: return "connecting";
    case LinkState::connected: return "connected";
    case LinkState::unresponsive: return "unresponsive";
  }
  return "unknown";
}

const char* to_string(InboundVerdict verdict) noexcept {
  return verdict == InboundVerdict::accepted ? "accepted" : "deferred";
}

namespace {

using Clock = std::chrono::steady_clock;

using detail::wall_clock_ms;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

void init_library() {
  static std::once_flag once;
  // Never paired with mosquitto_lib_cleanup: other transports (and the OpenSSL state
  // it owns) may live until exit.
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// The broker's refusal of a CONNECT in words ("not authorised").
std::string connack_reason(int protocol, int rc) {
  if (protocol == 5) {
    if (rc == MQTT_RC_NOT_AUTHORIZED) return "not authorised";
    return lower(mosquitto_reason_string(rc));
  }
  // "Connection Refused: not authorised." -> "not authorised"
  std::string s = mosquitto_connack_string(rc);
  const auto colon = s.find(": ");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return lower(s);
}

/// "error:0A000086:SSL routines::certificate verify failed" -> "certificate verify failed".
std::string openssl_reason(const std::string& line) {
  const auto colon = line.rfind(':');
  std::string s = colon == std::string::npos ? line : line.substr(colon + 1);
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s.empty() ? line : s;
}

class MqttTransport final : public Transport {
 public:
  explicit MqttTransport(MqttOptions o) : opts_(std::move(o)), protocol_now_(opts_.protocol) {
    std::random_device rd;
    rng_.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
    ack_prefix_ = "Client " + opts_.client_id + " received ";
    who_ = "mqtt " + detail::printable(opts_.client_id);
  }

  ~MqttTransport() override { stop(std::chrono::milliseconds(0)); }

  MqttTransport(const MqttTransport&) = delete;
  MqttTransport& operator=(const MqttTransport&) = delete;

  Status start(TransportEvents events) override {
    std::lock_guard lk(life_mu_);
    if (stopped_) return {ErrorCode::closed, who_ + ": start: the transport was stopped"};
    if (started_) return {ErrorCode::invalid_argument, who_ + ": start: already started"};
    for (const auto* f : {&opts_.ca_file, &opts_.cert_file, &opts_.key_file}) {
      if (!f->empty() && !std::filesystem::is_regular_file(*f))
        return {ErrorCode::invalid_argument, who_ + ": TLS file not found: " + detail::printable(*f, 200)};
    }
    if (!opts_.ca_path.empty() && !std::filesystem::is_directory(opts_.ca_path))
      return {ErrorCode::invalid_argument,
              who_ + ": TLS ca_path is not a directory: " + detail::printable(opts_.ca_path, 200)};
    init_library();
    // A trial client proves the library accepts every option before the thread starts.
    std::string why;
    mosquitto* probe = make_client(opts_.protocol, &why);
    if (!probe) return {ErrorCode::invalid_argument, who_ + ": " + why};
    mosquitto_destroy(probe);
    events_ = std::move(events);
    started_ = true;
    state_.store(LinkState::connecting);
    thread_ = std::thread([this] { run(); });
    return {};
  }

  void stop(std::chrono::milliseconds linger) override {
    if (std::this_thread::get_id() == net_thread_id_.load()) {
      detail::log().error("{}: stop() called from a transport callback; ignored (it would join its own thread)",
                          who_);
      return;
    }
    std::lock_guard lk(life_mu_);
    if (stopped_) return;
    stopped_ = true;
    {
      std::lock_guard wl(wait_mu_);
      stop_requested_.store(true);
      linger_ = linger;
    }
    wait_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    state_.store(LinkState::stopped);
  }

  Result<int> publish(const std::string& topic, std::string_view payload, PublishOptions o) override {
    if (o.qos != 0 && o.qos != 1) {
      publish_errors_.fetch_add(1);
      return Status{ErrorCode::invalid_argument,
                    who_ + ": publish: QoS " + std::to_string(o.qos) + " is not supported (0 or 1)"};
    }
    if (topic.empty() || mosquitto_pub_topic_check2(topic.data(), topic.size()) != MOSQ_ERR_SUCCESS ||
        mosquitto_validate_utf8(topic.data(), static_cast<int>(topic.size())) != MOSQ_ERR_SUCCESS) {
      publish_errors_.fetch_add(1);
      return Status{ErrorCode::invalid_argument,
                    who_ + ": publish: invalid topic '" + detail::printable(topic, 200) + "'"};
    }
    if (payload.size() > MQTT_MAX_PAYLOAD) {
      publish_errors_.fetch_add(1);
      return Status{ErrorCode::invalid_argument, who_ + ": publish: payload of " +
                                                     std::to_string(payload.size()) + " bytes is too large"};
    }
    std::lock_guard lk(client_mu_);
    if (stop_requested_.load() || !started_.load()) {
      publish_errors_.fetch_add(1);
      return Status{ErrorCode::closed, who_ + ": publish: the transport is not running"};
    }
    // Only a session that the broker answers takes messages: handing libmosquitto one
    // otherwise would buffer it in memory (and 2.0.11 sends a message it refused with
    // MOSQ_ERR_NO_CONN once it reconnects).
    if (!client_ || !session_up_.load() || state_.load() != LinkState::connected) {
      publish_errors_.fetch_add(1);
      return Status{ErrorCode::again, who_ + ": publish: not connected (" + to_string(state_.load()) + ")"};
    }
    mosquitto_property* props = nullptr;
    if (o.expiry.count() > 0 && session_protocol_ == 5) {
      const auto s = static_cast<std::uint32_t>(std::min<std::int64_t>(o.expiry.count(), 0xFFFFFFFFLL));
      mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, s);
    }
    int mid = 0;
    const int rc = mosquitto_publish_v5(client_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                        payload.data(), o.qos, o.retain, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
      publish_errors_.fetch_add(1);
      // NO_CONN: the connection broke under us; the message sits in a client that the
      // network thread destroys before reconnecting, so it is never sent.
      const ErrorCode code = (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_NOMEM)
                                 ? ErrorCode::again
                                 : ErrorCode::invalid_argument;
      return Status{code, who_ + ": publish to '" + detail::printable(topic, 200) +
                              "' failed: " + mosquitto_strerror(rc)};
    }
    published_.fetch_add(1);
    return mid;
  }

  Status subscribe(const std::string& filter, int qos) override {
    if (qos != 0 && qos != 1)
      return {ErrorCode::invalid_argument,
              who_ + ": subscribe: QoS " + std::to_string(qos) + " is not supported (0 or 1)"};
    if (filter.empty() || mosquitto_sub_topic_check2(filter.data(), filter.size()) != MOSQ_ERR_SUCCESS ||
        mosquitto_validate_utf8(filter.data(), static_cast<int>(filter.size())) != MOSQ_ERR_SUCCESS)
      return {ErrorCode::invalid_argument,
              who_ + ": subscribe: invalid topic filter '" + detail::printable(filter, 200) + "'"};
    {
      std::lock_guard lk(subs_mu_);
      bool known = false;
      for (auto& s : subs_) {
        if (s.first == filter) {
          s.second = qos;
          known = true;
        }
      }
      if (!known) subs_.emplace_back(filter, qos);
    }
    // Sent now if a session is up; otherwise, and after every reconnect, by on_connect
    // (which marks the session up before it reads subs_, so a filter added meanwhile is
    // sent at least once).
    std::lock_guard lk(client_mu_);
    if (client_ && session_up_.load()) send_subscribe(client_, filter, qos);
    return {};
  }

  LinkState state() const noexcept override { return state_.load(); }

  TransportStats stats() const override {
    TransportStats s;
    s.state = state_.load();
    s.connects = connects_.load();
    s.connect_attempts = connect_attempts_.load();
    s.disconnects = disconnects_.load();
    s.published = published_.load();
    s.acknowledged = acknowledged_.load();
    s.refused = refused_.load();
    s.publish_errors = publish_errors_.load();
    s.received = received_.load();
    s.inbound_deferred = inbound_deferred_.load();
    s.deferrals = deferrals_.load();
    s.callback_errors = callback_errors_.load();
    s.last_ack_ms = last_ack_wall_ms_.load();
    s.connected_since_ms = connected_since_ms_.load();
    std::lock_guard lk(stats_mu_);
    s.last_error = last_error_;
    s.protocol = stats_protocol_;
    return s;
  }

 private:
  // ---- client construction ---------------------------------------------------------

  mosquitto* make_client(int protocol, std::string* why) {
    mosquitto* m = mosquitto_new(opts_.client_id.c_str(), opts_.clean_start, this);
    if (!m) {
      *why = "mosquitto_new failed (out of memory or bad client id)";
      return nullptr;
    }
    auto fail = [&](const std::string& what, int rc) {
      *why = what + ": " + mosquitto_strerror(rc);
      mosquitto_destroy(m);
      return nullptr;
    };
    int rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    if (rc) return fail("protocol", rc);
    if ((rc = mosquitto_threaded_set(m, true))) return fail("threaded", rc);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if ((rc = mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, opts_.max_inflight))) return fail("max_inflight", rc);
    if (!opts_.username.empty()) {
      if ((rc = mosquitto_username_pw_set(m, opts_.username.c_str(),
                                          opts_.password.empty() ? nullptr : opts_.password.c_str())))
        return fail("username", rc);
    }
    if (!opts_.ca_file.empty() || !opts_.ca_path.empty()) {
      rc = mosquitto_tls_set(m, opts_.ca_file.empty() ? nullptr : opts_.ca_file.c_str(),
                             opts_.ca_path.empty() ? nullptr : opts_.ca_path.c_str(),
                             opts_.cert_file.empty() ? nullptr : opts_.cert_file.c_str(),
                             opts_.key_file.empty() ? nullptr : opts_.key_file.c_str(), nullptr);
      if (rc) return fail("TLS (ca_file/ca_path/cert_file/key_file)", rc);
      if (opts_.tls_insecure && (rc = mosquitto_tls_insecure_set(m, true))) return fail("tls_insecure", rc);
    }
    if (!opts_.will_topic.empty()) {
      rc = mosquitto_will_set_v5(m, opts_.will_topic.c_str(), static_cast<int>(opts_.will_payload.size()),
                                 opts_.will_payload.data(), opts_.will_qos, opts_.will_retain, nullptr);
      if (rc) return fail("will_topic '" + detail::printable(opts_.will_topic, 200) + "'", rc);
    }
    mosquitto_connect_v5_callback_set(m, &MqttTransport::cb_connect);
    mosquitto_disconnect_v5_callback_set(m, &MqttTransport::cb_disconnect);
    mosquitto_publish_v5_callback_set(m, &MqttTransport::cb_publish);
    mosquitto_message_v5_callback_set(m, &MqttTransport::cb_message);
    mosquitto_subscribe_v5_callback_set(m, &MqttTransport::cb_subscribe);
    mosquitto_log_callback_set(m, &MqttTransport::cb_log);
    return m;
  }

  // Caller holds client_mu_ or runs on the network thread inside on_connect.
  void send_subscribe(mosquitto* m, const std::string& filter, int qos) {
    int mid = 0;
    // MQTT v5: retain-as-published, so InboundMessage::retained is the publisher's flag
    // on every delivery, the live one included (comms refuses retained commands). 3.1.1
    // has no such option: the flag is then set only on deliveries from the broker's
    // retained store. session_protocol_: written under client_mu_ on this thread.
    const int options = session_protocol_ == 5 ? MQTT_SUB_OPT_RETAIN_AS_PUBLISHED : 0;
    const int rc = mosquitto_subscribe_v5(m, &mid, filter.c_str(), qos, options, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      detail::log().warn("{}: subscribe to '{}' not sent now ({}); it is sent again on the next connect", who_,
                         detail::printable(filter, 200), mosquitto_strerror(rc));
      return;
    }
    std::lock_guard lk(sub_mids_mu_);
    sub_mids_[mid] = filter;
  }

  // ---- the network thread ---------------------------------------------------------

  /// Waits up to `d` or until stop(); false if stop() was asked.
  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lk(wait_mu_);
    return !wait_cv_.wait_for(lk, d, [this] { return stop_requested_.load(); });
  }

  std::chrono::milliseconds backoff(unsigned n) { return backoff(n, opts_.reconnect_min); }

  std::chrono::milliseconds backoff(unsigned n, std::chrono::milliseconds min) {
    const double base = static_cast<double>(min.count()) *
                        std::pow(2.0, static_cast<double>(std::min(n, 30U)));
    const double capped = std::min(base, static_cast<double>(opts_.reconnect_max.count()));
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    const double d = capped * (1.0 + opts_.reconnect_jitter * u(rng_));
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::max(0.0, d)));
  }

  void run() {
    net_thread_id_.store(std::this_thread::get_id());
    detail::set_current_thread_name("edgert-mqtt");
    if (opts_.first_connect_jitter.count() > 0) {
      std::uniform_int_distribution<std::int64_t> u(0, opts_.first_connect_jitter.count());
      set_state(LinkState::connecting, "first attempt after a random delay (first_connect_jitter)");
      if (!sleep_for(std::chrono::milliseconds(u(rng_)))) return finish();
    }
    unsigned failures = 0;  // consecutive attempts without a session
    std::string last_reason;
    while (!stop_requested_.load()) {
      const bool had_session = connect_once();
      if (stop_requested_.load()) break;
      std::string reason;
      {
        std::lock_guard lk(stats_mu_);
        reason = last_error_;
      }
      if (had_session) failures = 0;
      if (fallback_now_) {
        fallback_now_ = false;
        continue;  // retry at once with MQTT 3.1.1
      }
      const bool deferred = attempt_.deferring;
      const auto wait = deferred ? backoff(defer_streak_++, opts_.inbound_retry) : backoff(failures);
      if (!deferred) ++failures;
      set_state(LinkState::connecting, reason);
      // A storm of identical failures is one WARNING; the rest are DEBUG. Deferrals
      // repeat while the store stays full: at most a few lines a minute, then a count.
      if (deferred) {
        static detail::LogLimit defer_lines{5, std::chrono::seconds(60)};
        if (auto v = defer_lines.admit(); v.log) {
          detail::log().warn("{}: {}:{}: {}; next attempt in {} ms (deferral {} in a row){}", who_,
                             detail::printable(opts_.host), opts_.port, reason, wait.count(), defer_streak_,
                             v.suffix());
        }
      } else if (had_session || reason != last_reason) {
        detail::log().warn("{}: {}:{}: {}; next attempt in {} ms", who_, detail::printable(opts_.host),
                           opts_.port, reason, wait.count());
      } else {
        detail::log().debug("{}: attempt {} failed: {}; next in {} ms", who_, failures, reason, wait.count());
      }
      last_reason = reason;
      if (!sleep_for(wait)) break;
    }
    finish();
  }

  void finish() { set_state(LinkState::stopped, "stopped"); }

  /// One connection attempt and, if the broker accepts it, the whole session. Returns
  /// whether a session was up. Leaves the reason it ended in last_error_.
  bool connect_once() {
    const std::uint64_t attempt = connect_attempts_.fetch_add(1) + 1;
    guarded("on_connect_attempt", [&] {
      if (opts_.on_connect_attempt) opts_.on_connect_attempt(attempt);
    });
    std::string why;
    mosquitto* m = make_client(protocol_now_, &why);
    if (!m) {
      record_error(why);
      return false;
    }
    {
      std::lock_guard lk(client_mu_);
      client_ = m;
      session_up_.store(false);
      session_protocol_ = protocol_now_;
    }
    attempt_ = {};
    {
      std::lock_guard lk(log_mu_);
      tls_error_.clear();
      last_log_error_.clear();
    }
    mosquitto_property* props = nullptr;
    if (protocol_now_ == 5)
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, opts_.session_expiry_s);
    // Blocking for the DNS lookup and the TCP handshake only (TLS and CONNACK follow in
    // mosquitto_loop below, bounded by connect_timeout).
    int rc = mosquitto_connect_bind_v5(m, opts_.host.c_str(), opts_.port, opts_.keepalive_s, nullptr, props);
    int err = errno;
    mosquitto_property_free_all(&props);
    const auto began = Clock::now();
    bool had_session = false;
    if (rc != MOSQ_ERR_SUCCESS) {
      record_error(loss_reason(rc, err, false));
    } else {
      // libmosquitto pings after keepalive_s without traffic (second granularity), so an
      // idle healthy link hears an answer at least every keepalive_s + ~0.1 s; one more
      // second keeps it from flapping, and stays below the 1.5 x keepalive after which
      // the broker itself gives up on the client.
      const std::int64_t window_ms = static_cast<std::int64_t>(opts_.keepalive_s) * 1000 + 1000;
      while (true) {
        if (stop_requested_.load()) {
          close_cleanly(m);
          break;
        }
        rc = mosquitto_loop(m, 100, 1);
        err = errno;
        if (attempt_.connack_seen) had_session = had_session || attempt_.accepted;
        if (attempt_.refused) {
          record_error(attempt_.refusal);
          break;
        }
        if (attempt_.deferring) {
          record_error("an inbound message was not stored (deferred): connection dropped before its PUBACK, the "
                       "broker delivers it again");
          break;
        }
        if (rc != MOSQ_ERR_SUCCESS || attempt_.disconnected) {
          record_error(
              loss_reason(rc != MOSQ_ERR_SUCCESS ? rc : attempt_.disconnect_rc, err, attempt_.accepted));
          break;
        }
        if (!attempt_.accepted) {
          if (Clock::now() - began > opts_.connect_timeout) {
            record_error("timeout: no CONNACK within " + std::to_string(opts_.connect_timeout.count()) + " ms");
            break;
          }
          continue;
        }
        const std::int64_t silent = steady_ms() - last_ack_steady_ms_.load();
        const LinkState s = state_.load();
        if (silent > window_ms && s == LinkState::connected) {
          set_state(LinkState::unresponsive,
                    "keepalive: no answer from the broker for " + std::to_string(silent / 1000) + " s");
        } else if (silent <= window_ms && s == LinkState::unresponsive) {
          set_state(LinkState::connected, "the broker answers again");
        }
      }
    }
    {
      std::lock_guard lk(client_mu_);
      session_up_.store(false);
      client_ = nullptr;
    }
    if (had_session) {
      disconnects_.fetch_add(1);
      connected_since_ms_.store(0);
    }
    mosquitto_destroy(m);
    return had_session;
  }

  /// stop(): write what is queued (up to linger), then DISCONNECT so the broker
  /// discards the will.
  void close_cleanly(mosquitto* m) {
    if (!attempt_.accepted || attempt_.disconnected) return;
    std::chrono::milliseconds linger;
    {
      std::lock_guard lk(wait_mu_);
      linger = linger_;
    }
    const auto until = Clock::now() + linger;
    while (mosquitto_want_write(m) && Clock::now() < until) {
      if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS) return;
    }
    {
      std::lock_guard lk(client_mu_);
      session_up_.store(false);  // no publish() slips in behind the DISCONNECT
    }
    if (mosquitto_disconnect_v5(m, MQTT_RC_NORMAL_DISCONNECTION, nullptr) != MOSQ_ERR_SUCCESS) return;
    const auto bye = Clock::now() + std::chrono::seconds(2);
    while (!attempt_.disconnected && Clock::now() < bye) {
      if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS) break;
    }
    record_error("");
  }

  std::string loss_reason(int rc, int err, bool was_up) {
    std::string tls_error, log_error;
    {
      std::lock_guard lk(log_mu_);
      tls_error = tls_error_;
      log_error = last_log_error_;
    }
    if (!tls_error.empty()) return "TLS: " + tls_error;
    if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE) return "TLS: handshake failed";
    if (rc == MOSQ_ERR_KEEPALIVE) return "keepalive: no answer from the broker, connection closed";
    std::string what = rc == MOSQ_ERR_ERRNO ? std::string(std::strerror(err)) : mosquitto_strerror(rc);
    if (!what.empty() && what.back() == '.') what.pop_back();
    if (!log_error.empty() && rc != MOSQ_ERR_ERRNO) what += " (" + log_error + ")";
    return (was_up ? "connection lost: " : "connect failed: ") + lower(what);
  }

  void record_error(const std::string& e) {
    std::lock_guard lk(stats_mu_);
    last_error_ = e;
  }

  /// on_state runs on a change of state, and again for `connecting` when the reason
  /// changes (a transport that never connects says why: "TLS: certificate verify failed").
  void set_state(LinkState s, const std::string& reason) {
    const LinkState old = state_.exchange(s);
    if (old == s && (s != LinkState::connecting || reason == reported_reason_)) return;
    reported_reason_ = reason;
    if (s == LinkState::unresponsive) detail::log().warn("{}: broker unresponsive: {}", who_, reason);
    guarded("on_state", [&] {
      if (events_.on_state) events_.on_state(s, reason);
    });
  }

  template <class F>
  void guarded(const char* name, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      callback_errors_.fetch_add(1);
      if (auto v = callback_error_log_.admit(); v.log) {
        detail::log().error("{}: {} callback threw: {}{}", who_, name, detail::printable(e.what(), 200), v.suffix());
      }
    } catch (...) {
      callback_errors_.fetch_add(1);
      if (auto v = callback_error_log_.admit(); v.log) {
        detail::log().error("{}: {} callback threw a non-standard exception{}", who_, name, v.suffix());
      }
    }
  }

  void answered() {
    last_ack_steady_ms_.store(steady_ms());
    last_ack_wall_ms_.store(wall_clock_ms());
  }

  // ---- libmosquitto callbacks (network thread, inside mosquitto_loop) ----------------

  static MqttTransport* self(void* obj) { return static_cast<MqttTransport*>(obj); }

  static void cb_connect(mosquitto* m, void* obj, int rc, int flags, const mosquitto_property*) {
    auto* t = self(obj);
    t->attempt_.connack_seen = true;
    const int proto = t->protocol_now_;
    if (rc != 0) {
      const bool unsupported =
          (proto == 5 && rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION) || (proto == 4 && rc == 1);
      t->attempt_.refused = true;
      t->attempt_.refusal = "connection refused: " + connack_reason(proto, rc);
      if (unsupported && proto == 5 && t->opts_.protocol == 5) {
        detail::log().info("{}: the broker refuses MQTT v5; falling back to MQTT 3.1.1", t->who_);
        t->protocol_now_ = 4;
        t->fallback_now_ = true;
      }
      return;
    }
    t->answered();
    t->attempt_.accepted = true;
    t->connects_.fetch_add(1);
    t->connected_since_ms_.store(wall_clock_ms());
    {
      std::lock_guard lk(t->stats_mu_);
      t->stats_protocol_ = proto;
      t->last_error_.clear();
    }
    t->session_up_.store(true);
    std::vector<std::pair<std::string, int>> subs;
    {
      std::lock_guard lk(t->subs_mu_);
      subs = t->subs_;
    }
    for (const auto& [filter, qos] : subs) t->send_subscribe(m, filter, qos);
    detail::log().info("{}: connected to {}:{} (MQTT {}{})", t->who_, detail::printable(t->opts_.host),
                       t->opts_.port, proto == 5 ? "v5" : "3.1.1",
                       (flags & 1) ? ", session present" : "");
    t->set_state(LinkState::connected, "connected (MQTT " + std::string(proto == 5 ? "v5" : "3.1.1") +
                                           ((flags & 1) ? ", session present)" : ")"));
  }

  static void cb_disconnect(mosquitto*, void* obj, int rc, const mosquitto_property*) {
    auto* t = self(obj);
    t->attempt_.disconnected = true;
    t->attempt_.disconnect_rc = rc;
    t->session_up_.store(false);
  }

  static void cb_publish(mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
    auto* t = self(obj);
    // >= 0x80 is a refusal; 0x10 (no matching subscribers) is a success.
    const bool ok = reason < 0x80;
    std::string why;
    if (ok) {
      t->acknowledged_.fetch_add(1);
    } else {
      t->refused_.fetch_add(1);
      why = lower(mosquitto_reason_string(reason));
    }
    t->guarded("on_published", [&] {
      if (t->events_.on_published) t->events_.on_published(mid, ok, why);
    });
  }

  static void cb_message(mosquitto* m, void* obj, const mosquitto_message* msg, const mosquitto_property* props) {
    auto* t = self(obj);
    InboundMessage in;
    in.topic = msg->topic ? msg->topic : "";
    if (msg->payload && msg->payloadlen > 0)
      in.payload.assign(static_cast<const char*>(msg->payload), static_cast<std::size_t>(msg->payloadlen));
    in.qos = msg->qos;
    in.retained = msg->retain;
    std::uint32_t left = 0;
    if (props && mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left, false))
      in.expiry_left_s = left;
    // A connection being dropped to withhold an acknowledgement hands nothing more
    // over: what follows is not acknowledged either and comes again after the reconnect.
    if (t->attempt_.deferring) {
      t->inbound_deferred_.fetch_add(1);
      return;
    }
    t->received_.fetch_add(1);
    InboundVerdict verdict = InboundVerdict::deferred;  // stays so if the callback throws
    t->guarded("on_message", [&] {
      verdict = t->events_.on_message ? t->events_.on_message(in) : InboundVerdict::accepted;
    });
    if (verdict == InboundVerdict::accepted) {
      t->defer_streak_ = 0;
      return;
    }
    // libmosquitto 2.0.11 has already queued this message's PUBACK (handle__publish
    // queues it, then calls us), and in threaded mode only this thread writes, after
    // the read phase of mosquitto_loop. Shutting the socket down now means neither it
    // nor any PUBACK queued behind it is ever written: the broker keeps the message in
    // the persistent session and sends it again after the reconnect (DUP set).
    // mosquitto_disconnect() would not do: its DISCONNECT queues behind the PUBACK.
    // The descriptor stays open (libmosquitto still owns it); a write now fails with
    // EPIPE (mosquitto_new ignores SIGPIPE) and the loop ends the connection.
    t->attempt_.deferring = true;
    t->inbound_deferred_.fetch_add(1);
    t->deferrals_.fetch_add(1);
    const int fd = mosquitto_socket(m);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }

  static void cb_subscribe(mosquitto*, void* obj, int mid, int count, const int* granted, const mosquitto_property*) {
    auto* t = self(obj);
    std::string filter;
    {
      std::lock_guard lk(t->sub_mids_mu_);
      auto it = t->sub_mids_.find(mid);
      if (it != t->sub_mids_.end()) {
        filter = it->second;
        t->sub_mids_.erase(it);
      }
    }
    for (int i = 0; i < count; ++i) {
      if (granted[i] >= 0x80)
        detail::log().warn("{}: the broker refused the subscription to '{}': {}", t->who_,
                           detail::printable(filter, 200), lower(mosquitto_reason_string(granted[i])));
    }
  }

  /// Broker answers without a callback of their own (PINGRESP) are seen here: the
  /// library logs "Client <id> received PINGRESP" at MOSQ_LOG_DEBUG when it reads one.
  static void cb_log(mosquitto*, void* obj, int level, const char* line) {
    auto* t = self(obj);
    if (!line) return;
    const std::string_view s(line);
    if (level == MOSQ_LOG_DEBUG) {
      if (s.substr(0, t->ack_prefix_.size()) == t->ack_prefix_) {
        const auto what = s.substr(t->ack_prefix_.size());
        for (const char* p : {"PINGRESP", "PUBACK", "SUBACK", "UNSUBACK", "PUBLISH", "CONNACK"}) {
          if (what.substr(0, std::strlen(p)) == p) {
            t->answered();
            break;
          }
        }
      }
      return;
    }
    if (level == MOSQ_LOG_ERR || level == MOSQ_LOG_WARNING) {
      // libmosquitto reports TLS failures only here: "OpenSSL Error[0]: error:...:certificate verify failed".
      // (Any thread: the library also logs from publish().)
      std::lock_guard lk(t->log_mu_);
      if (s.find("OpenSSL Error") != std::string_view::npos)
        t->tls_error_ = detail::printable(openssl_reason(std::string(s)), 200);
      else
        t->last_log_error_ = detail::printable(s, 200);
    }
  }

  // ---- state ----------------------------------------------------------------------

  struct Attempt {  // network thread only
    bool connack_seen = false;
    bool accepted = false;
    bool refused = false;
    bool disconnected = false;
    bool deferring = false;  // on_message deferred a message: the connection is being dropped
    int disconnect_rc = 0;
    std::string refusal;
  };

  const MqttOptions opts_;
  std::string who_;
  std::string ack_prefix_;
  TransportEvents events_;  // set before the thread starts, read only by it

  std::mutex life_mu_;  // start/stop
  std::atomic<bool> started_{false};
  bool stopped_ = false;
  std::thread thread_;
  std::atomic<std::thread::id> net_thread_id_{};  // set by the thread itself, for stop()'s self-check

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::atomic<bool> stop_requested_{false};
  std::chrono::milliseconds linger_{0};

  // Network thread only.
  std::mt19937_64 rng_;
  int protocol_now_;
  bool fallback_now_ = false;
  Attempt attempt_;
  std::string reported_reason_;
  unsigned defer_streak_ = 0;  // deferrals since on_message last accepted a message

  // client_mu_ guards the current client against publish()/subscribe() while the
  // network thread creates or destroys it.
  mutable std::mutex client_mu_;
  mosquitto* client_ = nullptr;
  int session_protocol_ = 0;
  std::atomic<bool> session_up_{false};  // CONNACK accepted, no disconnect yet

  std::mutex subs_mu_;
  std::vector<std::pair<std::string, int>> subs_;

  std::mutex log_mu_;  // what cb_log saw during the current attempt
  std::string tls_error_;
  std::string last_log_error_;

  std::mutex sub_mids_mu_;
  std::map<int, std::string> sub_mids_;

  std::atomic<LinkState> state_{LinkState::stopped};
  std::atomic<std::int64_t> last_ack_steady_ms_{0};
  std::atomic<std::int64_t> last_ack_wall_ms_{0};
  std::atomic<std::int64_t> connected_since_ms_{0};
  std::atomic<std::uint64_t> connects_{0}, connect_attempts_{0}, disconnects_{0}, published_{0},
      acknowledged_{0}, refused_{0}, publish_errors_{0}, received_{0}, callback_errors_{0},
      inbound_deferred_{0}, deferrals_{0};
  // Callbacks that throw, once per message: 10 a minute, then a count.
  detail::LogLimit callback_error_log_{10, std::chrono::seconds(60)};
  mutable std::mutex stats_mu_;
  std::string last_error_;
  int stats_protocol_ = 0;
};

Status check_options(const MqttOptions& o) {
  auto bad = [](const std::string& m) { return Status{ErrorCode::invalid_argument, "mqtt options: " + m}; };
  if (o.host.empty()) return bad("host is empty");
  if (o.client_id.empty()) return bad("client_id is empty");
  if (o.client_id.size() > 65535) return bad("client_id is longer than 65535 bytes");
  if (o.port < 1 || o.port > 65535) return bad("port " + std::to_string(o.port) + " is outside 1..65535");
  if (o.keepalive_s < 5 || o.keepalive_s > 65535)
    return bad("keepalive_s " + std::to_string(o.keepalive_s) + " is outside 5..65535");
  if (!o.cert_file.empty() && o.key_file.empty()) return bad("cert_file is set without key_file");
  if (o.cert_file.empty() && !o.key_file.empty()) return bad("key_file is set without cert_file");
  if (o.protocol != 4 && o.protocol != 5)
    return bad("protocol " + std::to_string(o.protocol) + " is not 4 (3.1.1) or 5");
  if (o.will_qos != 0 && o.will_qos != 1) return bad("will_qos " + std::to_string(o.will_qos) + " is not 0 or 1");
  if (o.reconnect_min.count() <= 0) return bad("reconnect_min must be positive");
  if (o.reconnect_max < o.reconnect_min) return bad("reconnect_max is below reconnect_min");
  if (!(o.reconnect_jitter >= 0.0 && o.reconnect_jitter <= 1.0)) return bad("reconnect_jitter is outside 0..1");
  if (o.first_connect_jitter.count() < 0) return bad("first_connect_jitter is negative");
  if (o.connect_timeout.count() <= 0) return bad("connect_timeout must be positive");
  if (o.inbound_retry.count() <= 0) return bad("inbound_retry must be positive");
  if (o.max_inflight < 1 || o.max_inflight > 65535)
    return bad("max_inflight " + std::to_string(o.max_inflight) + " is outside 1..65535");
  if (!o.will_topic.empty() && mosquitto_pub_topic_check2(o.will_topic.data(), o.will_topic.size()) != 0)
    return bad("will_topic '" + detail::printable(o.will_topic, 200) + "' is not a valid topic");
  return {};
}

}  // namespace

Result<std::unique_ptr<Transport>> make_mqtt_transport(MqttOptions options) {
  if (auto st = check_options(options); !st) return st;
  return std::unique_ptr<Transport>(std::make_unique<MqttTransport>(std::move(options)));
}

}  // namespace edgert
