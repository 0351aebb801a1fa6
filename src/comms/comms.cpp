#include "comms/comms.hpp"

#include "core/clock.hpp"
#include "comms/inbound.hpp"
#include "comms/signing.hpp"
#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

#include <edgert/mqtt_transport.hpp>

#include <algorithm>
#include <array>
#include <utility>

namespace edgert::comms {

using detail::printable;
namespace {

using detail::wall_clock_ms;

MqttOptions mqtt_options(const CommsOptions& o) {
  const MqttSection& m = o.config.mqtt;
  MqttOptions t;
  t.host = m.host;
  t.port = static_cast<int>(m.port);
  t.client_id = m.client_id.empty() ? o.node_id : m.client_id;
  t.keepalive_s = static_cast<int>(m.keepalive_s);
  t.username = m.username;
  t.password = m.password;
  t.ca_file = m.ca_file;
  t.ca_path = m.ca_path;
  t.cert_file = m.cert_file;
  t.key_file = m.key_file;
  t.tls_insecure = m.tls_insecure;
  t.protocol = static_cast<int>(m.protocol);
  t.clean_start = false;
  t.session_expiry_s = static_cast<std::uint32_t>(m.session_expiry_s);
  t.will_topic = o.config.root + "/" + o.node_id + "/status";
  t.will_payload = "offline";
  t.will_qos = 1;
  t.will_retain = true;
  t.reconnect_min = std::chrono::milliseconds(m.reconnect_min_ms);
  t.reconnect_max = std::chrono::milliseconds(m.reconnect_max_ms);
  t.reconnect_jitter = m.reconnect_jitter;
  t.first_connect_jitter = std::chrono::milliseconds(m.first_connect_jitter_ms);
  t.connect_timeout = std::chrono::milliseconds(m.connect_timeout_ms);
  t.inbound_retry = std::chrono::milliseconds(m.inbound_retry_ms);
  t.max_inflight = static_cast<int>(std::max<std::int64_t>(o.config.inflight_window, 20));
  return t;
}

std::string seconds_text(std::int64_t ms) { return std::to_string(ms / 1000) + " s"; }

// 2020-01-01T00:00:00Z: a wall clock before it is unset (a device booted without RTC
// or NTP), and no timestamp can be judged against it.
constexpr std::int64_t kClockSetMs = 1577836800000;

/// The replay-protection space of an inbound message (docs/operations.md, "Replay
/// protection"): a verified command is checked only against commands verified with the
/// same key from the same sender; unsigned commands (signing not required) and mail,
/// which anyone on the broker can send under any name, each get spaces of their own,
/// so they can never take an id a signed command will use. Sender ids hold no '/'
/// (parse_inbound), so the last level is always the sender.
std::string inbound_scope(bool is_command, const InboundEnvelope& in) {
  const std::string& sender = in.envelope.sender_node_id;
  if (!is_command) return "inbox/" + sender;
  if (in.hmac.empty()) return "commands/unsigned/" + sender;
  return "commands/" + in.key_id + "/" + sender;  // the signature was verified before the store
}

/// One log limit per dead-letter reason: ten lines a minute each, then a count.
template <std::size_t... I>
std::array<detail::LogLimit, sizeof...(I)> per_reason_limits(std::index_sequence<I...>) {
  return {{((void)I, detail::LogLimit{10, std::chrono::seconds(60)})...}};
}

}  // namespace

std::string reply_key(const std::string& message_id, std::size_t max_key_bytes) {
  std::string key = "reply:" + message_id;
  if (key.size() <= max_key_bytes) return key;
  // '#' cannot occur in an inbound message id (inbound.cpp), so a hashed key never
  // equals a plain one. The digest is cut to fit: all 256 bits from max_key_bytes 70
  // up, 40 bits at the smallest mailbox.max_id_bytes (16).
  const std::size_t hex = std::min<std::size_t>(64, max_key_bytes > 16 ? max_key_bytes - 6 : 10);
  return "reply#" + sha256_hex(message_id).substr(0, hex);
}

// "" if `timestamp_ms` is within +- window_s of `now`; else why not.
std::string stale_reason(std::int64_t timestamp_ms, std::int64_t now, std::int64_t window_s) {
  if (now < kClockSetMs) {
    return "this node's clock reads " + std::to_string(now) +
           " ms since the epoch, before 2020: it is unset, so no signed command can be checked for freshness "
           "(set the clock, e.g. NTP)";
  }
  if (timestamp_ms < 0) return "signed timestamp " + std::to_string(timestamp_ms) + " ms is before 1970";
  const std::int64_t window_ms = window_s * 1000;
  const std::int64_t age = now - timestamp_ms;  // both in [0, 2^63): cannot overflow
  if (age > window_ms) {
    return "signed timestamp " + std::to_string(timestamp_ms) + " ms is " + std::to_string(age / 1000) +
           " s old, outside comms.security.command_window_s (" + std::to_string(window_s) + " s)";
  }
  if (-age > window_ms) {
    return "signed timestamp " + std::to_string(timestamp_ms) + " ms is " + std::to_string(-age / 1000) +
           " s in the future, outside comms.security.command_window_s (" + std::to_string(window_s) +
           " s); check both clocks";
  }
  return "";
}

Comms::Comms(CommsOptions options) : options_(std::move(options)) {}

Comms::~Comms() { stop(); }

bool Comms::enabled() const noexcept {
  return static_cast<bool>(options_.make_transport) || !options_.config.mqtt.host.empty();
}

std::int64_t Comms::now_ms() const { return options_.clock_ms ? options_.clock_ms() : wall_clock_ms(); }

std::string Comms::topic(const std::string& channel) const {
  return options_.config.root + "/" + options_.node_id + "/" + channel;
}

Status Comms::start(Mailbox& mailbox) {
  if (!enabled()) return {};
  mailbox_ = &mailbox;
  auto made = options_.make_transport ? options_.make_transport() : make_mqtt_transport(mqtt_options(options_));
  if (!made.ok()) return Status{made.status().code(), "comms: " + made.status().message()};
  transport_ = std::move(made).value();
  ForwarderOptions fo;
  fo.node_id = options_.node_id;
  fo.root = options_.config.root;
  fo.window = static_cast<std::size_t>(options_.config.inflight_window);
  fo.ack_timeout = std::chrono::milliseconds(options_.config.ack_timeout_ms);
  forwarder_ = std::make_unique<Forwarder>(fo, mailbox, *transport_);
  {
    // Commands stored before a restart and not yet run count against the bound; read
    // once, at most the bound plus one rows, before the transport can deliver more.
    const auto max_q = static_cast<std::size_t>(options_.config.max_queued_commands);
    auto waiting = mailbox.unacked("command", max_q + 1);
    std::lock_guard lk(mu_);
    queued_commands_ = waiting.ok() ? waiting.value().size() : 0;
  }
  built_.store(true, std::memory_order_release);
  for (const char* channel : {"commands", "inbox"}) {
    if (Status st = transport_->subscribe(topic(channel), 1); !st.ok()) return Status{st.code(), "comms: " + st.message()};
  }
  forwarder_->start();
  mailbox.set_commit_listener([f = forwarder_.get()] { f->wake(); });
  {
    std::lock_guard lk(mu_);
    offline_since_ms_ = now_ms();
  }
  dispatcher_ = std::thread([this] {
    detail::set_current_thread_name("edgert-commands");
    dispatch_loop();
  });
  monitor_ = std::thread([this] {
    detail::set_current_thread_name("edgert-comms");
    monitor_loop();
  });
  TransportEvents ev;
  ev.on_state = [this](LinkState s, const std::string& why) { on_state(s, why); };
  ev.on_published = [this](int mid, bool ok, const std::string& why) { forwarder_->on_published(mid, ok, why); };
  ev.on_message = [this](const InboundMessage& m) { return on_message(m); };
  started_ = true;
  if (Status st = transport_->start(std::move(ev)); !st.ok()) {
    stop();
    return Status{st.code(), "comms: " + st.message()};
  }
  const auto& m = options_.config.mqtt;
  detail::log().info("comms: connecting to {}:{} as {} (topics {}/{}/...)", printable(m.host), m.port,
                     printable(options_.node_id), options_.config.root, printable(options_.node_id));
  return {};
}

void Comms::stop() {
  if (!started_.exchange(false)) return;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (monitor_.joinable()) monitor_.join();
  // The goodbye: the last heartbeat and the retained `offline`, both at QoS 1 so the
  // transport's linger below waits for them to be written.
  if (transport_ && transport_->state() == LinkState::connected) {
    if (options_.heartbeat_period.count() > 0) (void)publish_heartbeat("SHUTDOWN", 1);
    PublishOptions po;
    po.retain = true;
    (void)transport_->publish(topic("status"), "offline", po);
  }
  if (mailbox_) mailbox_->set_commit_listener({});
  if (forwarder_) forwarder_->stop(std::chrono::milliseconds(2000));
  if (transport_) transport_->stop(std::chrono::milliseconds(2000));
  if (dispatcher_.joinable()) dispatcher_.join();
  const auto c = forwarder_ ? forwarder_->counters() : ForwarderCounters{};
  detail::log().info("comms: stopped; {} message(s) published, {} delivered this run", c.published, c.delivered);
}

void Comms::on_state(LinkState s, const std::string& reason) {
  if (forwarder_) forwarder_->on_state(s);
  std::lock_guard lk(mu_);
  if (s == LinkState::connected && state_ != LinkState::connected && state_ != LinkState::unresponsive) {
    announce_ = true;
  }
  state_ = s;
  state_reason_ = reason;
  cv_.notify_all();
}

InboundVerdict Comms::dead_letter(const InboundMessage& m, std::size_t reason, const std::string& why,
                                  const std::string& id, const std::string& sender) {
  DeadLetter d;
  d.message_id = id;
  d.sender_node_id = sender;
  d.source = m.topic;
  d.reason = std::string(kDeadLetterReasons[reason]) + ": " + why;
  d.raw = m.payload;
  const Status stored = mailbox_->dead_letter(std::move(d));
  // Counted once the letter is stored (or its loss is known): whoever sees the count
  // move can read the letter.
  std::uint64_t n = 0;
  {
    std::lock_guard lk(mu_);
    n = ++counters_.dead_letters[reason];
    if (!stored.ok()) ++counters_.dead_letters_lost;
  }
  // At most ten WARNINGs a minute per reason, then a count: a hostile peer or a flood
  // must not be able to grow the log (the counters have every one).
  static auto lines = per_reason_limits(std::make_index_sequence<kDeadLetterReasonCount>{});
  if (auto v = lines[reason].admit(); v.log) {
    detail::log().warn("comms: dead-lettered a message on {} (message_id {}, sender {}): {} [{} #{}]{}",
                       printable(m.topic), printable(id.empty() ? "?" : id), printable(sender.empty() ? "?" : sender),
                       printable(why, 200), kDeadLetterReasons[reason], n, v.suffix());
  }
  if (!stored.ok()) {
    // The message is refused either way; what could not be kept is counted. (Not
    // deferred: a peer's garbage must not be able to hold the connection down.)
    static detail::LogLimit lost_lines{10, std::chrono::seconds(60)};
    if (auto v = lost_lines.admit(); v.log) {
      detail::log().error("comms: a dead letter ({}, message_id {}) was not stored, counted in "
                          "comms.dead_letters_lost: {}{}",
                          kDeadLetterReasons[reason], printable(id.empty() ? "?" : id), stored.message(), v.suffix());
    }
  }
  return InboundVerdict::accepted;
}

InboundVerdict Comms::on_message(const InboundMessage& m) {
  {
    std::lock_guard lk(mu_);
    ++counters_.received;
  }
  const std::string commands_topic = topic("commands"), inbox_topic = topic("inbox");
  const bool is_command = m.topic == commands_topic;
  if (!is_command && m.topic != inbox_topic) {
    return dead_letter(m, reason_index("unknown_topic"), "not a topic this node reads", "", "");
  }
  InboundLimits limits;
  limits.max_bytes = static_cast<std::size_t>(options_.config.max_inbound_bytes);
  limits.max_depth = options_.max_json_depth;
  limits.max_id_bytes = options_.max_id_bytes;
  auto parsed = parse_inbound(m.payload, limits);
  if (auto* p = std::get_if<InboundProblem>(&parsed)) return dead_letter(m, p->reason, p->why, p->message_id, p->sender);
  auto& in = std::get<InboundEnvelope>(parsed);
  const Envelope& e = in.envelope;
  if (e.recipient_node_id != options_.node_id) {
    return dead_letter(m, reason_index("wrong_recipient"),
                       "addressed to '" + e.recipient_node_id + "', this node is '" + options_.node_id + "'",
                       e.message_id, e.sender_node_id);
  }
  if ((in.expires_ms > 0 && in.expires_ms <= now_ms()) || m.expiry_left_s == 0) {
    return dead_letter(m, reason_index("expired"), "expired at " + std::to_string(in.expires_ms) + " ms",
                       e.message_id, e.sender_node_id);
  }
  if (!is_command && e.payload_type == "command") {
    // Commands come only through the commands topic, where signatures and senders are
    // checked: one in the inbox would otherwise run unchecked.
    return dead_letter(m, reason_index("malformed"), "a command on the inbox topic (send it to .../commands)",
                       e.message_id, e.sender_node_id);
  }
  if (is_command && m.retained) {
    // A retained command is handed to every new subscription: a node started with a
    // fresh data_dir (no inbox to deduplicate against) would run it again.
    return dead_letter(m, reason_index("retained"),
                       "a retained command (the broker hands it to every new session); publish commands with "
                       "retain false",
                       e.message_id, e.sender_node_id);
  }
  if (is_command) {
    const auto& sec = options_.config.security;
    if (in.hmac.empty()) {
      if (sec.require_signed) {
        return dead_letter(m, reason_index("unsigned"), "unsigned command (comms.security.require_signed)",
                           e.message_id, e.sender_node_id);
      }
    } else {
      auto key = sec.keys.find(in.key_id);
      if (key == sec.keys.end()) {
        return dead_letter(m, reason_index("bad_signature"), "signed with unknown key '" + in.key_id + "'",
                           e.message_id, e.sender_node_id);
      }
      if (!digest_equal(hmac_sha256_hex(key->second, canonical_text(e, in.expires_ms, in.payload)), in.hmac)) {
        return dead_letter(m, reason_index("bad_signature"), "signature does not match (key '" + in.key_id + "')",
                           e.message_id, e.sender_node_id);
      }
      // Freshness: the signed timestamp within +- command_window_s of this node's
      // clock. Within the window the inbox deduplicates a replay (its retention is at
      // least the window, checked at config load); outside it the age refuses it.
      if (std::string why = stale_reason(e.timestamp_ms, now_ms(), sec.command_window_s); !why.empty()) {
        return dead_letter(m, reason_index("stale"), why, e.message_id, e.sender_node_id);
      }
    }
    if (!sec.allowed_senders.empty() &&
        std::find(sec.allowed_senders.begin(), sec.allowed_senders.end(), e.sender_node_id) ==
            sec.allowed_senders.end()) {
      return dead_letter(m, reason_index("unknown_sender"),
                         "sender '" + e.sender_node_id + "' is not in comms.security.allowed_senders", e.message_id,
                         e.sender_node_id);
    }
    if (e.payload_type != "command" || !in.payload.is_object() || !in.payload.contains("command") ||
        !in.payload["command"].is_string()) {
      return dead_letter(m, reason_index("malformed"),
                         "a command needs payload_type \"command\" and payload {\"command\": \"NAME\", \"args\": {...}}",
                         e.message_id, e.sender_node_id);
    }
  }
  if (is_command) {
    // A flood of commands must not grow the inbox or the command thread's work without
    // bound: beyond max_queued_commands waiting, a new one is refused and never runs.
    // (Only this thread adds to queued_commands_, so the check holds until the store.)
    std::uint64_t queued = 0;
    {
      std::lock_guard lk(mu_);
      queued = queued_commands_;
    }
    if (queued >= static_cast<std::uint64_t>(options_.config.max_queued_commands)) {
      return dead_letter(m, reason_index("queue_full"),
                         std::to_string(queued) + " commands wait to run (comms.max_queued_commands); not run",
                         e.message_id, e.sender_node_id);
    }
  }
  // Stored before anything acts on it: a replayed message_id is not run twice, and a
  // command stored before a crash runs after the restart. Replay protection is per
  // space (inbound_scope): nothing unauthenticated shares one with a verified command.
  StoreOptions so;
  so.scope = inbound_scope(is_command, in);
  auto stored = mailbox_->store(e, so);
  if (!stored.ok()) {
    if (stored.status().code() == ErrorCode::invalid_argument) {
      // The inbox refuses the message itself (its own input checks): it never will take it.
      return dead_letter(m, reason_index("store_failed"), stored.status().message(), e.message_id,
                         e.sender_node_id);
    }
    // Full (inbox quota or disk), an I/O error, the mailbox closing: not kept, so not
    // acknowledged either. The transport drops the connection before the PUBACK and the
    // broker delivers the message again after a back-off (docs/operations.md,
    // "Acknowledgement"). Never dead-lettered for this: that would acknowledge it.
    std::uint64_t n = 0;
    {
      std::lock_guard lk(mu_);
      n = ++counters_.inbound_deferred;
    }
    static detail::LogLimit deferred_lines{5, std::chrono::seconds(60)};
    if (auto v = deferred_lines.admit(); v.log) {
      detail::log().warn("comms: message {} from {} on {} not stored ({}); not acknowledged, the broker delivers it "
                         "again [inbound_deferred #{}]{}",
                         printable(e.message_id), printable(e.sender_node_id), printable(m.topic),
                         stored.status().message(), n, v.suffix());
    }
    return InboundVerdict::deferred;
  }
  if (stored.value() == StoreResult::conflict) {
    // Same space, same id, other content: a forgery, a sender reusing ids, or a replay
    // altered on the way. Refused visibly, never dropped silently, never run.
    return dead_letter(m, reason_index("conflict"),
                       "message_id already stored in '" + so.scope + "' with other content; not stored, not run",
                       e.message_id, e.sender_node_id);
  }
  std::lock_guard lk(mu_);
  if (stored.value() == StoreResult::duplicate) {
    ++counters_.duplicates;
    return InboundVerdict::accepted;
  }
  ++counters_.stored;
  if (is_command) {
    ++queued_commands_;
    commands_waiting_ = true;
    cv_.notify_all();
  }
  return InboundVerdict::accepted;
}

void Comms::run_command(const InboxMessage& msg) {
  CommandRequest req;
  req.message_id = msg.envelope.message_id;
  req.sender_node_id = msg.envelope.sender_node_id;
  nlohmann::json reply{{"in_reply_to", req.message_id}};
  const auto payload = nlohmann::json::parse(msg.envelope.payload, nullptr, false);
  Result<std::string> result = Status{ErrorCode::invalid_argument, "malformed command payload"};
  if (payload.is_object() && payload.contains("command") && payload["command"].is_string()) {
    req.name = payload["command"].get<std::string>();
    req.args_json = payload.contains("args") ? payload["args"].dump() : "{}";
    auto h = options_.commands.find(req.name);
    if (h == options_.commands.end()) {
      result = Status{ErrorCode::not_found, "unknown command '" + req.name + "'"};
    } else {
      try {
        result = h->second(req);
      } catch (const std::exception& ex) {
        result = Status{ErrorCode::internal, std::string("the handler threw: ") + ex.what()};
      } catch (...) {
        result = Status{ErrorCode::internal, "the handler threw"};
      }
    }
  }
  reply["command"] = req.name;
  if (result.ok()) {
    reply["ok"] = true;
    auto value = result.value().empty() ? nlohmann::json() : nlohmann::json::parse(result.value(), nullptr, false);
    reply["result"] = value.is_discarded() ? nlohmann::json(result.value()) : std::move(value);
  } else {
    reply["ok"] = false;
    reply["error"] = result.status().message();
    if (auto v = command_failed_log_.admit(); v.log) {
      detail::log().warn("comms: command {} ({} from {}) failed: {}{}", printable(req.name),
                         printable(req.message_id), printable(req.sender_node_id), result.status().message(),
                         v.suffix());
    }
  }
  {
    std::lock_guard lk(mu_);
    ++(result.ok() ? counters_.commands_run : counters_.commands_failed);
  }
  Envelope r;
  r.sender_node_id = options_.node_id;
  r.recipient_node_id = req.sender_node_id;
  r.payload_type = "command.reply";
  r.payload = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  SendOptions so;
  so.ttl = std::chrono::seconds(3600);
  so.priority = 2;
  // A command run again after a crash replies once.
  so.idempotency_key = reply_key(req.message_id, options_.max_id_bytes);
  if (auto sent = mailbox_->send(std::move(r), so); !sent.ok()) {
    std::lock_guard lk(mu_);
    ++counters_.replies_failed;
    if (auto v = reply_failed_log_.admit(); v.log) {
      detail::log().error("comms: the reply to command {} was not stored: {}{}", printable(req.message_id),
                          sent.status().message(), v.suffix());
    }
  }
}

void Comms::dispatch_loop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (!commands_waiting_) {
      cv_.wait_for(lk, std::chrono::seconds(5), [this] { return commands_waiting_ || stopping_; });
      continue;
    }
    commands_waiting_ = false;
    lk.unlock();
    auto batch = mailbox_->unacked("command", 64);
    if (batch.ok()) {
      for (const auto& msg : batch.value()) {
        {
          std::lock_guard g(mu_);
          if (stopping_) break;  // the rest stay stored and unacknowledged: they run after the restart
        }
        run_command(msg);
        if (Status st = mailbox_->ack(msg.envelope.message_id, msg.scope); !st.ok()) {
          if (auto v = ack_failed_log_.admit(); v.log) {
            detail::log().error("comms: acknowledging command {} failed: {}{}", printable(msg.envelope.message_id),
                                st.message(), v.suffix());
          }
        } else {
          std::lock_guard g(mu_);
          if (queued_commands_ > 0) --queued_commands_;
        }
      }
    } else if (batch.status().code() != ErrorCode::closed) {
      detail::log().error("comms: reading stored commands failed: {}", batch.status().message());
    }
    lk.lock();
    if (batch.ok() && batch.value().size() == 64) commands_waiting_ = true;  // more may wait
  }
}

bool Comms::publish_heartbeat(const std::string& status, int qos) {
  if (!options_.heartbeat_document) return false;
  std::string doc;
  try {
    doc = options_.heartbeat_document(status);
  } catch (const std::exception& e) {
    detail::log().error("comms: building the heartbeat failed: {}", e.what());
    return false;
  }
  PublishOptions po;
  po.qos = qos;
  po.expiry = std::chrono::seconds(std::max<std::int64_t>(1, options_.heartbeat_period.count() * 3 / 1000));
  const bool ok = transport_->publish(topic("heartbeat"), doc, po).ok();
  std::lock_guard lk(mu_);
  ++(ok ? counters_.heartbeats_published : counters_.heartbeats_skipped);
  return ok;
}

void Comms::monitor_loop() {
  using namespace std::chrono;
  const auto period = options_.heartbeat_period;
  auto next_heartbeat = steady_clock::now() + (period.count() > 0 ? period : hours(24 * 365));
  const std::int64_t log_every = options_.config.offline_log_s * 1000;
  std::int64_t next_offline_log = 0;
  bool was_connected = false;
  bool offline_logged = false;
  std::unique_lock lk(mu_);
  while (!stopping_) {
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
      offline_logged = false;
      std::lock_guard g(mu_);
      offline_since_ms_ = 0;  // also after an unresponsive spell the same session survived
    }
    was_connected = connected;
    if (period.count() > 0 && steady_clock::now() >= next_heartbeat) {
      next_heartbeat = steady_clock::now() + period;
      if (connected) {
        (void)publish_heartbeat("RUNNING", 0);
      } else {
        std::lock_guard g(mu_);
        ++counters_.heartbeats_skipped;
      }
    }
    lk.lock();
  }
}

MetricsRegistration Comms::register_metrics(MetricsRegistry& registry) const {
  auto counter = [](const char* name, const char* help) {
    return SeriesSpec{std::string("edgert_comms_") + name, {}, help, MetricType::counter};
  };
  auto gauge = [](const char* name, const char* help) {
    return SeriesSpec{std::string("edgert_comms_") + name, {}, help, MetricType::gauge};
  };
  std::vector<SeriesSpec> series = {
      gauge("connected", "1 while the broker has answered within the keepalive window, else 0"),
      gauge("in_flight", "outbox messages published and awaiting their PUBACK"),
      gauge("last_ack_age_seconds", "seconds since the broker last answered; -1 if it never did"),
      counter("connects_total", "sessions the broker accepted"),
      counter("connect_attempts_total", "connection attempts"),
      counter("published_total", "outbox messages published"),
      counter("delivered_total", "outbox messages removed after their PUBACK"),
      counter("refused_total", "PUBACKs with an error reason"),
      counter("ack_timeouts_total", "messages without a PUBACK within comms.ack_timeout_ms"),
      counter("lost_in_flight_total", "messages in flight when the connection dropped"),
      counter("received_total", "inbound messages"),
      counter("duplicates_total", "inbound messages already in the inbox"),
      counter("commands_total", "commands whose handler returned a result"),
      counter("commands_failed_total", "commands that failed or were unknown"),
      counter("inbound_deferred_total", "inbound messages not stored for a passing reason (inbox or disk full, "
                                        "I/O error) and so not acknowledged: the broker delivers them again"),
      counter("dead_letters_lost_total", "refused inbound messages whose dead letter could not be stored"),
      gauge("commands_queued", "commands stored and waiting to run (bounded by comms.max_queued_commands)"),
  };
  for (const char* reason : kDeadLetterReasons) {
    series.push_back(SeriesSpec{"edgert_comms_dead_letters_total", {{"reason", reason}},
                                "inbound messages dead-lettered, by reason", MetricType::counter});
  }
  return registry.register_collector(std::move(series), [this](std::span<double> out) {
    const bool built = built_.load(std::memory_order_acquire);
    const auto t = built ? transport_->stats() : TransportStats{};
    const auto f = built ? forwarder_->counters() : ForwarderCounters{};
    const auto c = counters();
    const std::int64_t now = wall_clock_ms();
    std::size_t i = 0;
    out[i++] = t.state == LinkState::connected ? 1 : 0;
    out[i++] = built ? static_cast<double>(forwarder_->in_flight()) : 0;
    out[i++] = t.last_ack_ms > 0 ? static_cast<double>(now - t.last_ack_ms) / 1000.0 : -1;
    for (std::uint64_t v : {t.connects, t.connect_attempts, f.published, f.delivered, f.refused, f.ack_timeouts,
                            f.lost_in_flight, c.received, c.duplicates, c.commands_run, c.commands_failed,
                            c.inbound_deferred, c.dead_letters_lost, c.commands_queued}) {
      out[i++] = static_cast<double>(v);
    }
    for (std::uint64_t v : c.dead_letters) out[i++] = static_cast<double>(v);
  });
}

CommsCounters Comms::counters() const {
  std::lock_guard lk(mu_);
  CommsCounters c = counters_;
  c.commands_queued = queued_commands_;
  return c;
}

nlohmann::json Comms::stats() const {
  nlohmann::json j;
  j["enabled"] = enabled();
  if (!enabled()) {
    j["state"] = "offline (no comms.mqtt.host)";
    return j;
  }
  const auto c = counters();
  const bool built = built_.load(std::memory_order_acquire);
  const auto t = built ? transport_->stats() : TransportStats{};
  const auto f = built ? forwarder_->counters() : ForwarderCounters{};
  j["broker"] = options_.config.mqtt.host + ":" + std::to_string(options_.config.mqtt.port);
  j["state"] = to_string(t.state);
  j["connected"] = t.state == LinkState::connected;
  {
    std::lock_guard lk(mu_);
    j["offline_since_ms"] = offline_since_ms_;
  }
  j["last_ack_ms"] = t.last_ack_ms;
  j["connected_since_ms"] = t.connected_since_ms;
  j["last_error"] = t.last_error;
  j["protocol"] = t.protocol;
  j["connects"] = t.connects;
  j["reconnects"] = t.connects > 0 ? t.connects - 1 : 0;
  j["connect_attempts"] = t.connect_attempts;
  j["in_flight"] = built ? forwarder_->in_flight() : 0;
  j["published"] = f.published;
  j["delivered"] = f.delivered;
  j["refused"] = f.refused;
  j["ack_timeouts"] = f.ack_timeouts;
  j["lost_in_flight"] = f.lost_in_flight;
  j["publish_errors"] = f.publish_errors;
  j["received"] = c.received;
  j["stored"] = c.stored;
  j["duplicates"] = c.duplicates;
  j["inbound_deferred"] = c.inbound_deferred;
  j["inbound_deferrals"] = t.deferrals;
  j["dead_letters_lost"] = c.dead_letters_lost;
  j["commands_queued"] = c.commands_queued;
  nlohmann::json dl = nlohmann::json::object();
  for (std::size_t i = 0; i < kDeadLetterReasonCount; ++i) dl[kDeadLetterReasons[i]] = c.dead_letters[i];
  j["dead_letters"] = std::move(dl);
  j["commands_run"] = c.commands_run;
  j["commands_failed"] = c.commands_failed;
  j["replies_failed"] = c.replies_failed;
  j["heartbeats_published"] = c.heartbeats_published;
  j["heartbeats_skipped"] = c.heartbeats_skipped;
  j["offline_periods"] = c.offline_periods;
  return j;
}

}  // namespace edgert::comms
