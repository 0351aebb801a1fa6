// Comms: construction, start/stop, the link state and the one table of figures (stats() and metrics).
#include "comms/comms.hpp"

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

#include <edgert/mqtt_transport.hpp>

#include <algorithm>

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

}  // namespace

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
  ev.on_message = [this](const InboundMessage& m) {
    const auto t0 = std::chrono::steady_clock::now();
    const InboundVerdict v = on_message(m);
    forwarder_->add_network_busy(std::chrono::steady_clock::now() - t0);
    return v;
  };
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
  // transport's linger below waits for them to be written. Built before beat_mu_ is
  // taken (the builder reads stats and may be slow); published under it, after which
  // beat() publishes nothing: no RUNNING heartbeat can follow the SHUTDOWN one.
  std::string goodbye;
  const bool heartbeat = options_.heartbeat_interval.count() > 0 && options_.heartbeat_document;
  if (heartbeat && transport_ && transport_->state() == LinkState::connected) {
    try {
      goodbye = options_.heartbeat_document("SHUTDOWN");
    } catch (const std::exception& e) {
      detail::log().error("comms: building the SHUTDOWN heartbeat failed: {}", e.what());
    }
  }
  {
    std::lock_guard beat_lk(beat_mu_);
    beats_closed_ = true;
    if (transport_ && transport_->state() == LinkState::connected) {
      if (!goodbye.empty()) (void)publish_heartbeat_document(goodbye, 1);
      PublishOptions po;
      po.retain = true;
      (void)transport_->publish(topic("status"), "offline", po);
    }
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

CommsCounters Comms::counters() const {
  std::lock_guard lk(mu_);
  CommsCounters c = counters_;
  c.commands_queued = queued_commands_;
  return c;
}

namespace {

using Sample = CommsSample;

/// One comms figure: its key in stats() (nullptr: metric only), its series
/// edgert_comms_<metric> (nullptr: stats() only), and how to read it.
struct Figure {
  const char* key;
  const char* metric;
  MetricType type;
  const char* help;
  std::uint64_t (*get)(const Sample&);
};

#define EDGERT_FIG(expr) [](const Sample& s) -> std::uint64_t { return static_cast<std::uint64_t>(expr); }
// The one list of the integer figures: register_metrics() and stats() both read it
// (docs/metrics.md, docs/operations.md "Comms figures"). `connected`,
// `last_ack_age_seconds` and the per-reason dead letters are added by each.
const Figure kFigures[] = {
    {"in_flight", "in_flight", MetricType::gauge, "outbox messages published and awaiting their PUBACK",
     EDGERT_FIG(s.in_flight)},
    {"connects", "connects_total", MetricType::counter, "sessions the broker accepted", EDGERT_FIG(s.t.connects)},
    {"reconnects", nullptr, MetricType::counter, "", EDGERT_FIG(s.t.connects > 0 ? s.t.connects - 1 : 0)},
    {"connect_attempts", "connect_attempts_total", MetricType::counter, "connection attempts",
     EDGERT_FIG(s.t.connect_attempts)},
    {"published", "published_total", MetricType::counter, "outbox messages published", EDGERT_FIG(s.f.published)},
    {"delivered", "delivered_total", MetricType::counter, "outbox messages removed after their PUBACK",
     EDGERT_FIG(s.f.delivered)},
    {"refused", "refused_total", MetricType::counter, "PUBACKs with an error reason", EDGERT_FIG(s.f.refused)},
    {"ack_timeouts", "ack_timeouts_total", MetricType::counter, "messages without a PUBACK within comms.ack_timeout_ms",
     EDGERT_FIG(s.f.ack_timeouts)},
    {"lost_in_flight", "lost_in_flight_total", MetricType::counter, "messages in flight when the connection dropped",
     EDGERT_FIG(s.f.lost_in_flight)},
    {"publish_errors", nullptr, MetricType::counter, "", EDGERT_FIG(s.f.publish_errors)},
    {"received", "received_total", MetricType::counter, "inbound messages", EDGERT_FIG(s.c.received)},
    {"stored", nullptr, MetricType::counter, "", EDGERT_FIG(s.c.stored)},
    {"duplicates", "duplicates_total", MetricType::counter, "inbound messages already in the inbox",
     EDGERT_FIG(s.c.duplicates)},
    {"commands_run", "commands_total", MetricType::counter, "commands whose handler returned a result",
     EDGERT_FIG(s.c.commands_run)},
    {"commands_failed", "commands_failed_total", MetricType::counter, "commands that failed or were unknown",
     EDGERT_FIG(s.c.commands_failed)},
    {"inbound_deferred", "inbound_deferred_total", MetricType::counter,
     "inbound messages not stored for a passing reason (inbox or disk full, I/O error) and so not acknowledged: the "
     "broker delivers them again",
     EDGERT_FIG(s.c.inbound_deferred)},
    {"inbound_deferrals", nullptr, MetricType::counter, "", EDGERT_FIG(s.t.deferrals)},
    {"dead_letters_lost", "dead_letters_lost_total", MetricType::counter,
     "refused inbound messages whose dead letter could not be stored", EDGERT_FIG(s.c.dead_letters_lost)},
    {"commands_queued", "commands_queued", MetricType::gauge,
     "commands stored and waiting to run (bounded by comms.max_queued_commands)", EDGERT_FIG(s.c.commands_queued)},
    {"replies_failed", nullptr, MetricType::counter, "", EDGERT_FIG(s.c.replies_failed)},
    {"heartbeats_published", nullptr, MetricType::counter, "", EDGERT_FIG(s.c.heartbeats_published)},
    {"heartbeats_skipped", nullptr, MetricType::counter, "", EDGERT_FIG(s.c.heartbeats_skipped)},
    {"offline_periods", nullptr, MetricType::counter, "", EDGERT_FIG(s.c.offline_periods)},
};
#undef EDGERT_FIG

}  // namespace

CommsSample Comms::sample() const {
  CommsSample s;
  const bool built = built_.load(std::memory_order_acquire);
  if (built) {
    s.t = transport_->stats();
    s.f = forwarder_->counters();
    s.in_flight = forwarder_->in_flight();
  }
  s.c = counters();
  return s;
}

MetricsRegistration Comms::register_metrics(MetricsRegistry& registry) const {
  std::vector<SeriesSpec> series = {
      {"edgert_comms_connected", {}, "1 while the broker has answered within the keepalive window, else 0",
       MetricType::gauge},
      {"edgert_comms_last_ack_age_seconds", {}, "seconds since the broker last answered; -1 if it never did",
       MetricType::gauge},
  };
  for (const Figure& f : kFigures) {
    if (f.metric) series.push_back(SeriesSpec{std::string("edgert_comms_") + f.metric, {}, f.help, f.type});
  }
  for (const char* reason : kDeadLetterReasons) {
    series.push_back(SeriesSpec{"edgert_comms_dead_letters_total", {{"reason", reason}},
                                "inbound messages dead-lettered, by reason", MetricType::counter});
  }
  return registry.register_collector(std::move(series), [this](std::span<double> out) {
    const Sample s = sample();
    const std::int64_t now = wall_clock_ms();
    std::size_t i = 0;
    out[i++] = s.t.state == LinkState::connected ? 1 : 0;
    out[i++] = s.t.last_ack_ms > 0 ? static_cast<double>(now - s.t.last_ack_ms) / 1000.0 : -1;
    for (const Figure& f : kFigures) {
      if (f.metric) out[i++] = static_cast<double>(f.get(s));
    }
    for (std::uint64_t v : s.c.dead_letters) out[i++] = static_cast<double>(v);
  });
}

nlohmann::json Comms::stats() const {
  nlohmann::json j;
  j["enabled"] = enabled();
  if (!enabled()) {
    j["state"] = "offline (no comms.mqtt.host)";
    return j;
  }
  const Sample s = sample();
  j["broker"] = options_.config.mqtt.host + ":" + std::to_string(options_.config.mqtt.port);
  j["state"] = to_string(s.t.state);
  j["connected"] = s.t.state == LinkState::connected;
  {
    std::lock_guard lk(mu_);
    j["offline_since_ms"] = offline_since_ms_;
  }
  j["last_ack_ms"] = s.t.last_ack_ms;
  j["connected_since_ms"] = s.t.connected_since_ms;
  j["last_error"] = s.t.last_error;
  j["protocol"] = s.t.protocol;
  for (const Figure& f : kFigures) j[f.key] = f.get(s);
  nlohmann::json dl = nlohmann::json::object();
  for (std::size_t i = 0; i < kDeadLetterReasonCount; ++i) dl[kDeadLetterReasons[i]] = s.c.dead_letters[i];
  j["dead_letters"] = std::move(dl);
  return j;
}

}  // namespace edgert::comms
