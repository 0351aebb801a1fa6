// mqtt_bench: comms (docs/operations.md) against a local mosquitto it starts on a free
// loopback port. Issue 12's "Benchmark" parts, each a key of the --json object:
//   bare_qos1        a bare libmosquitto v5 publisher, N pre-built messages at QoS 1
//                    with at most `window` unacknowledged: msgs/s
//   outbox_drain     a Node draining N messages already in its outbox, same window:
//                    msgs/s from the first CONNACK to the last delete; outbox_vs_bare_qos1
//   backlog          a node offline with 100,000 messages in the outbox; the broker
//                    starts: seconds until the outbox is empty, and the delay of fresh
//                    messages sent every 10 ms during the drain (p50/p99)
//   latency          synthetic_camera -> bench_sink (emit per frame) with the broker
//                    up: wall clock at the subscriber minus the result's detected_at
//   offline          a backlog of --offline-messages (8.64 M with --full: 24 h at
//                    100 msg/s) stored under a disk quota (mailbox.max_bytes), then
//                    drained: file size, drain rate, fresh-message delay during it
// Figures and how to rerun: docs/performance.md, "Comms (issue 12)". Goals are reported
// (goal_met), never turned into a failing exit status: only errors are.
// Usage: mqtt_bench [--json] [--quick] [--full] [--messages N] [--window W]
//                   [--offline-messages N] [--only part,...]
#include <edgert/config.hpp>
#include <edgert/log.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/node.hpp>

#include <arpa/inet.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kPluginDir = EDGERT_BENCH_PLUGIN_DIR;     // the bundled plugins
const std::string kBenchPluginDir = EDGERT_BENCH_SINK_DIR;  // bench_sink

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

bool wait_for(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
  socklen_t n = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// A mosquitto on 127.0.0.1 with logging reduced to errors (per-message logging would
// measure the log file) and no per-client queue limit (its default, 1000, drops).
class Broker {
 public:
  explicit Broker(const fs::path& dir) : dir_(dir), port_(free_port()) {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "mosquitto.conf") << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\nuser root\n"
                                           << "log_dest file " << (dir_ / "mosquitto.log").string()
                                           << "\nlog_type error\nmax_queued_messages 0\nmax_inflight_messages 0\n";
  }
  ~Broker() { stop(); }
  void start() {
    pid_ = fork();
    if (pid_ == 0) {
      execl("/usr/sbin/mosquitto", "mosquitto", "-c", (dir_ / "mosquitto.conf").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (!wait_for([this] { return port_open(port_); }, 10s)) throw std::runtime_error("mosquitto did not start");
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }

 private:
  fs::path dir_;
  int port_;
  pid_t pid_ = -1;
};

// A libmosquitto v5 client on its own loop thread.
struct Client {
  mosquitto* m = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::int64_t in_flight = 0;
  std::atomic<std::uint64_t> acked{0}, received{0};
  std::function<void(const mosquitto_message*)> on_message;

  Client(int port, const std::string& id) {
    m = mosquitto_new(id.c_str(), true, this);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, 65535);
    mosquitto_publish_v5_callback_set(m, [](mosquitto*, void* self, int, int, const mosquitto_property*) {
      auto* c = static_cast<Client*>(self);
      std::lock_guard lk(c->mu);
      --c->in_flight;
      ++c->acked;
      c->cv.notify_all();
    });
    mosquitto_message_callback_set(m, [](mosquitto*, void* self, const mosquitto_message* msg) {
      auto* c = static_cast<Client*>(self);
      if (c->on_message) c->on_message(msg);
      ++c->received;
    });
    if (mosquitto_connect_bind_v5(m, "127.0.0.1", port, 60, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
      throw std::runtime_error("client connect");
    }
    mosquitto_loop_start(m);
  }
  ~Client() {
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
  }
  void subscribe(const std::string& topic) {
    mosquitto_subscribe_v5(m, nullptr, topic.c_str(), 1, 0, nullptr);
    std::this_thread::sleep_for(200ms);  // the SUBACK; nothing is published before it in this bench
  }
};

std::string sample_envelope(std::size_t i) {
  json p{{"stream", "cam0"}, {"instance_id", "motion"}, {"seq", i}, {"objects", {{{"x", 10}, {"y", 20}, {"w", 64}, {"h", 48}}}}};
  json e{{"message_id", "msg:" + std::to_string(i)}, {"sender_node_id", "bench"}, {"recipient_node_id", ""},
         {"timestamp", wall_ms()}, {"payload_type", "detection"}, {"payload", p}};
  return e.dump();
}

double bare_qos1(int port, std::size_t n, std::size_t window) {
  std::vector<std::string> msgs;
  for (std::size_t i = 0; i < n; ++i) msgs.push_back(sample_envelope(i));
  Client c(port, "bare-publisher");
  std::this_thread::sleep_for(200ms);  // CONNACK
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    std::unique_lock lk(c.mu);
    c.cv.wait(lk, [&] { return c.in_flight < static_cast<std::int64_t>(window); });
    ++c.in_flight;
    lk.unlock();
    if (mosquitto_publish_v5(c.m, nullptr, "bench/bare/payloads", static_cast<int>(msgs[i].size()), msgs[i].data(), 1,
                             false, nullptr) != MOSQ_ERR_SUCCESS) {
      throw std::runtime_error("bare publish failed");
    }
  }
  std::unique_lock lk(c.mu);
  c.cv.wait(lk, [&] { return c.acked.load() == n; });
  return static_cast<double>(n) / seconds_since(t0);
}

std::string node_yaml(const fs::path& data, int port, std::size_t window, const std::string& extra = "") {
  return "node: {id: bench-node, data_dir: " + data.string() + ", heartbeat_interval_ms: 0}\n" +
         "plugins: {paths: [" + kPluginDir + ", " + kBenchPluginDir + "]}\n" +
         "comms:\n  inflight_window: " + std::to_string(window) + "\n  mqtt: {host: 127.0.0.1, port: " +
         std::to_string(port) + ", reconnect_min_ms: 50, reconnect_max_ms: 200}\n" + extra;
}

std::unique_ptr<edgert::Node> make_node(const std::string& yaml) {
  auto cfg = edgert::parse_config(yaml, "mqtt_bench.yaml", {});
  if (!cfg.ok()) throw std::runtime_error(cfg.status().message());
  auto node = edgert::Node::create(std::move(cfg).value());
  if (!node.ok()) throw std::runtime_error(node.status().message());
  return std::move(node).value();
}

json comms_of(const edgert::Node& n) { return json::parse(n.comms_json()); }

void fill_outbox(edgert::Mailbox& mb, std::size_t n, std::size_t first = 0) {
  std::vector<edgert::PendingSend> pending;
  pending.reserve(4096);
  for (std::size_t i = first; i < first + n; ++i) {
    edgert::Envelope e;
    e.sender_node_id = "bench-node";
    e.payload_type = "detection";
    e.payload = json{{"seq", i}, {"objects", {{{"x", 10}, {"y", 20}, {"w", 64}, {"h", 48}}}}}.dump();
    pending.push_back(mb.send_async(std::move(e)));
    if (pending.size() == 4096) {
      for (auto& p : pending) {
        if (!p.get().ok()) throw std::runtime_error("filling the outbox failed");
      }
      pending.clear();
    }
  }
  for (auto& p : pending) {
    if (!p.get().ok()) throw std::runtime_error("filling the outbox failed");
  }
}

// Drains an outbox of n messages already stored: msgs/s from the first CONNACK.
double outbox_drain(const fs::path& dir, int port, std::size_t n, std::size_t window) {
  const fs::path data = dir / "drain";
  fs::remove_all(data);
  {
    edgert::MailboxOptions o;
    o.data_dir = data.string();
    auto mb = edgert::Mailbox::open(o);
    if (!mb.ok()) throw std::runtime_error(mb.status().message());
    fill_outbox(*mb.value(), n);
  }
  auto node = make_node(node_yaml(data, port, window));
  if (auto st = node->start(); !st.ok()) throw std::runtime_error(st.message());
  if (!wait_for([&] { return comms_of(*node)["connected"] == true; }, 30s)) throw std::runtime_error("no connect");
  const auto t0 = Clock::now();
  if (!wait_for([&] { return comms_of(*node)["delivered"].get<std::size_t>() >= n; }, 600s)) {
    throw std::runtime_error("outbox did not drain");
  }
  const double rate = static_cast<double>(n) / seconds_since(t0);
  node->stop();
  return rate;
}

// A backlog of n while offline, then the broker: drain time, and the delay of fresh
// messages (one every 10 ms) sent during the drain.
json backlog(const fs::path& dir, std::size_t n, std::size_t window, const std::string& mailbox_extra) {
  const fs::path data = dir / ("backlog-" + std::to_string(n));
  fs::remove_all(data);
  Broker broker(dir / ("broker-backlog-" + std::to_string(n)));
  auto node = make_node(node_yaml(data, broker.port(), window, mailbox_extra));
  if (auto st = node->start(); !st.ok()) throw std::runtime_error(st.message());
  const auto f0 = Clock::now();
  fill_outbox(*node->mailbox(), n);
  const double fill_s = seconds_since(f0);
  std::uint64_t db_bytes = 0;
  for (const auto& f : fs::directory_iterator(data)) {
    if (f.path().filename().string().rfind("mailbox.db", 0) == 0 && f.is_regular_file()) db_bytes += f.file_size();
  }
  broker.start();
  Client sub(broker.port(), "bench-sub");
  std::mutex mu;
  std::vector<double> fresh_delay_ms;
  sub.on_message = [&](const mosquitto_message* m) {
    const std::string_view p(static_cast<const char*>(m->payload), static_cast<std::size_t>(m->payloadlen));
    if (p.find("\"fresh\"") == std::string_view::npos) return;
    auto e = json::parse(p, nullptr, false);
    if (!e.is_object()) return;
    std::lock_guard lk(mu);
    fresh_delay_ms.push_back(static_cast<double>(wall_ms() - e["payload"]["sent_ms"].get<std::int64_t>()));
  };
  sub.subscribe("edgert/bench-node/payloads");
  const auto t0 = Clock::now();
  std::atomic<bool> draining{true};
  std::thread fresh([&] {
    for (int i = 0; draining; ++i) {
      edgert::Envelope e;
      e.sender_node_id = "bench-node";
      e.payload_type = "detection";
      e.payload = json{{"fresh", i}, {"sent_ms", wall_ms()}}.dump();
      (void)node->mailbox()->send(std::move(e));
      std::this_thread::sleep_for(10ms);
    }
  });
  const bool drained = wait_for([&] { return comms_of(*node)["delivered"].get<std::size_t>() >= n; }, 3600s);
  const double drain_s = seconds_since(t0);
  draining = false;
  fresh.join();
  wait_for([&] { return node->mailbox()->stats().value().outbox_rows == 0; }, 30s);
  node->stop();
  std::lock_guard lk(mu);
  return json{{"messages", n},
              {"drained", drained},
              {"fill_s", fill_s},
              {"db_bytes", db_bytes},
              {"drain_s", drain_s},
              {"drain_msgs_per_s", static_cast<double>(n) / drain_s},
              {"fresh_sent_during_drain", fresh_delay_ms.size()},
              {"fresh_p50_ms", percentile(fresh_delay_ms, 0.50)},
              {"fresh_p99_ms", percentile(fresh_delay_ms, 0.99)}};
}

json latency(const fs::path& dir, double seconds) {
  Broker broker(dir / "broker-latency");
  broker.start();
  Client sub(broker.port(), "latency-sub");
  std::mutex mu;
  std::vector<double> ms;
  sub.on_message = [&](const mosquitto_message* m) {
    auto e = json::parse(std::string_view(static_cast<const char*>(m->payload), static_cast<std::size_t>(m->payloadlen)),
                         nullptr, false);
    if (!e.is_object() || !e["payload"].contains("detected_at")) return;
    std::lock_guard lk(mu);
    ms.push_back(static_cast<double>(wall_ms() - e["payload"]["detected_at"].get<std::int64_t>()));
  };
  sub.subscribe("edgert/bench-node/payloads");
  const fs::path data = dir / "latency";
  fs::remove_all(data);
  auto node = make_node(node_yaml(data, broker.port(), 100, R"(streams:
  - name: cam0
    capture: {type: synthetic_camera, width: 320, height: 240, frame_rate: 30, live_feed: true}
    plugins:
      - signature: bench_sink
        instances: [{instance_id: s, emit_age: true}]
)"));
  if (auto st = node->start(); !st.ok()) throw std::runtime_error(st.message());
  wait_for([&] { return comms_of(*node)["connected"] == true; }, 30s);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  node->stop();
  std::lock_guard lk(mu);
  return json{{"results", ms.size()}, {"p50_ms", percentile(ms, 0.5)}, {"p99_ms", percentile(ms, 0.99)}};
}

}  // namespace

int main(int argc, char** argv) {
  bool as_json = false, quick = false, full = false;
  std::size_t n = 100000, window = 100, offline_n = 200000;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--json") as_json = true;
    else if (a == "--quick") quick = true;
    else if (a == "--full") full = true;
    else if (a == "--messages") n = std::stoul(next());
    else if (a == "--window") window = std::stoul(next());
    else if (a == "--offline-messages") offline_n = std::stoul(next());
    else if (a == "--only") only = next();
    else {
      std::fprintf(stderr, "usage: mqtt_bench [--json] [--quick] [--full] [--messages N] [--window W] "
                           "[--offline-messages N] [--only bare,outbox,backlog,latency,offline]\n");
      return 2;
    }
  }
  if (quick) {
    n = 5000;
    offline_n = 5000;
  }
  if (full) offline_n = 8640000;
  auto want = [&](const char* part) { return only.empty() || ("," + only + ",").find(std::string(",") + part + ",") != std::string::npos; };
  (void)edgert::set_log_level("warning");
  mosquitto_lib_init();
  const fs::path dir = fs::temp_directory_path() / ("edgert-mqtt-bench-" + std::to_string(::getpid()));
  json out;
  int rc = 0;
  try {
    out["messages"] = n;
    out["window"] = window;
    double bare = 0, drained = 0;
    if (want("bare") || want("outbox")) {
      Broker broker(dir / "broker-main");
      broker.start();
      if (want("bare")) {
        bare = bare_qos1(broker.port(), n, window);
        out["bare_qos1_msgs_per_s"] = bare;
      }
      if (want("outbox")) {
        drained = outbox_drain(dir, broker.port(), n, window);
        out["outbox_msgs_per_s"] = drained;
      }
      if (bare > 0 && drained > 0) out["outbox_vs_bare_qos1"] = drained / bare;
    }
    if (want("backlog")) {
      const std::size_t backlog_n = quick ? 5000 : 100000;
      auto b = backlog(dir, backlog_n, window, "");
      out["backlog"] = b;
      out[quick ? "backlog_5k_drain_s" : "backlog_100k_drain_s"] = b["drain_s"];
    }
    if (want("latency")) {
      auto l = latency(dir, quick ? 2.0 : 10.0);
      out["latency"] = l;
      out["emit_to_subscriber_p50_ms"] = l["p50_ms"];
      out["emit_to_subscriber_p99_ms"] = l["p99_ms"];
    }
    if (want("offline")) {
      // The quota the node runs with: ~400 bytes a row is ample for these messages.
      const std::uint64_t quota = static_cast<std::uint64_t>(offline_n) * 400;
      auto o = backlog(dir, offline_n, window, "mailbox: {max_bytes: " + std::to_string(quota) + "}\n");
      o["quota_bytes"] = quota;
      out["offline"] = o;
    }
    json goals;
    if (out.contains("outbox_vs_bare_qos1")) goals["outbox_vs_bare_qos1>=0.8"] = out["outbox_vs_bare_qos1"].get<double>() >= 0.8;
    if (out.contains("outbox_msgs_per_s")) goals["outbox>=20000msgs/s"] = out["outbox_msgs_per_s"].get<double>() >= 20000;
    if (out.contains("backlog_100k_drain_s")) goals["backlog_100k<10s"] = out["backlog_100k_drain_s"].get<double>() < 10;
    if (out.contains("emit_to_subscriber_p99_ms")) goals["emit_p99<50ms"] = out["emit_to_subscriber_p99_ms"].get<double>() < 50;
    if (out.contains("offline")) {
      goals["offline_drain>=20000msgs/s"] = out["offline"]["drain_msgs_per_s"].get<double>() >= 20000;
      goals["offline_fresh_p99<1s"] = out["offline"]["fresh_p99_ms"].get<double>() < 1000;
    }
    out["goal_met"] = goals;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqtt_bench: %s\n", e.what());
    rc = 1;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  mosquitto_lib_cleanup();
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (const auto& [k, v] : out.items()) std::printf("%-28s %s\n", k.c_str(), v.dump().c_str());
  }
  return rc;
}
