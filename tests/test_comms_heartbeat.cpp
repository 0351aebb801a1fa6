// Comms presence at stop (issue 20 follow-up): no heartbeat reaches the broker after
// the SHUTDOWN heartbeat, even when a beat is being published while Comms::stop()
// runs (the node's heartbeat publisher may outlive its stop timeout and keep calling
// beat()). Comms is internal (hidden in libedgert), so its sources are compiled in;
// the transport is the real MqttTransport against a real mosquitto on loopback.
#include "comms/comms.hpp"

#include "mqtt_broker.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <edgert/mailbox.hpp>
#include <edgert/mqtt_transport.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::testing::MosquittoBroker;
using edgert::testing::TestClient;
using edgert::testing::wait_until;
using json = nlohmann::json;

namespace {

/// The real MQTT transport, with each RUNNING heartbeat held for `delay` before it is
/// handed on, and its stop (the linger of a busy link) 200 ms late: a beat under way
/// when stop() begins then reaches the broker while the link is still up, so a missing
/// exclusion between beat() and the SHUTDOWN publish shows every time.
class SlowBeatTransport final : public edgert::Transport {
 public:
  SlowBeatTransport(std::unique_ptr<edgert::Transport> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  edgert::Status start(edgert::TransportEvents events) override { return inner_->start(std::move(events)); }
  void stop(std::chrono::milliseconds linger) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    inner_->stop(linger);
  }
  edgert::Result<int> publish(const std::string& topic, std::string_view payload,
                              edgert::PublishOptions options) override {
    if (topic.ends_with("/heartbeat") && payload.find("RUNNING") != std::string_view::npos) {
      std::this_thread::sleep_for(delay_);
    }
    return inner_->publish(topic, payload, options);
  }
  edgert::Status subscribe(const std::string& filter, int qos) override { return inner_->subscribe(filter, qos); }
  edgert::LinkState state() const noexcept override { return inner_->state(); }
  edgert::TransportStats stats() const override { return inner_->stats(); }

 private:
  std::unique_ptr<edgert::Transport> inner_;
  std::chrono::milliseconds delay_;
};

}  // namespace

TEST_CASE("no heartbeat is published after the SHUTDOWN heartbeat, even with beats racing stop()", "[comms]") {
  MosquittoBroker broker;
  broker.start();
  TestClient watcher(broker.port(), "hb-watcher");
  watcher.subscribe("edgert/+/heartbeat");
  watcher.subscribe("edgert/+/status");
  edgert::testing::MadeScratch scratch;

  for (int round = 0; round < 3; ++round) {
    const std::string id = "hb-race-" + std::to_string(round);
    INFO("round " << round);
    edgert::MailboxOptions mo;
    mo.data_dir = (scratch.dir / id).string();
    auto mailbox = edgert::Mailbox::open(mo);
    REQUIRE(mailbox.ok());

    edgert::comms::CommsOptions co;
    co.node_id = id;
    co.config.mqtt.host = "127.0.0.1";
    co.config.mqtt.port = broker.port();
    co.config.mqtt.reconnect_min_ms = 100;
    co.heartbeat_interval = 1000ms;
    co.heartbeat_document = [](const std::string& status) { return json{{"status", status}}.dump(); };
    const int port = broker.port();
    co.make_transport = [port, id]() -> edgert::Result<std::unique_ptr<edgert::Transport>> {
      edgert::MqttOptions o;
      o.host = "127.0.0.1";
      o.port = port;
      o.client_id = id;
      o.reconnect_min = 100ms;
      auto t = edgert::make_mqtt_transport(o);
      if (!t.ok()) return t.status();
      return std::unique_ptr<edgert::Transport>(std::make_unique<SlowBeatTransport>(std::move(t).value(), 20ms));
    };
    edgert::comms::Comms comms(co);
    REQUIRE(comms.start(*mailbox.value()).ok());
    REQUIRE(wait_until([&] { return comms.stats()["connected"].get<bool>(); }, 20s));

    // The beater's own tally: how many beats it handed over, while running and after stop().
    std::atomic<bool> stop_beating{false};
    std::atomic<int> beats{0};
    std::thread beater([&] {
      while (!stop_beating) {
        comms.beat(json{{"status", "RUNNING"}, {"n", beats.load()}}.dump());
        ++beats;
      }
    });
    std::this_thread::sleep_for(150ms);
    comms.stop();
    std::this_thread::sleep_for(100ms);  // beats after stop() returned must go nowhere too
    stop_beating = true;
    beater.join();
    CHECK(beats > 3);

    // The watcher's own tally, in arrival order: the SHUTDOWN heartbeat, then nothing.
    const std::string hb_topic = "edgert/" + id + "/heartbeat";
    const std::string status_topic = "edgert/" + id + "/status";
    REQUIRE(wait_until(
        [&] {
          for (const auto& m : watcher.messages()) {
            if (m.topic == status_topic && m.payload == "offline") return true;
          }
          return false;
        },
        20s));
    std::this_thread::sleep_for(200ms);  // a late beat, if any, would be on the wire by now
    std::size_t running = 0, after_shutdown = 0, shutdowns = 0;
    for (const auto& m : watcher.messages()) {
      if (m.topic != hb_topic) continue;
      const auto doc = json::parse(m.payload);
      if (doc["status"] == "SHUTDOWN") {
        ++shutdowns;
      } else if (shutdowns > 0) {
        ++after_shutdown;
      } else {
        ++running;
      }
    }
    CHECK(running >= 1);
    CHECK(shutdowns == 1);
    CHECK(after_shutdown == 0);
    const auto c = comms.counters();
    INFO("published " << c.heartbeats_published << ", skipped " << c.heartbeats_skipped);
    // Every beat handed over is accounted for: published (SHUTDOWN included) or skipped.
    CHECK(c.heartbeats_published == running + shutdowns);
  }
}
