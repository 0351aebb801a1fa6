// Test fixtures for MQTT: a real mosquitto broker on a free loopback port from a
// generated config (MosquittoBroker), and a plain libmosquitto v5 client (TestClient)
// that subscribes, collects and publishes. Header-only; Catch2 REQUIREs on setup
// failures. Needs /usr/sbin/mosquitto, mosquitto_passwd and openssl (scripts/deps.sh).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <catch2/catch.hpp>
#include <edgert/transport.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "scratch_dir.hpp"

namespace edgert::testing {

struct BrokerOptions {
  bool persistence = false;
  bool tls = false;
  bool passwords = false;
  std::string extra_config;
};

namespace mqtt_detail {

inline int free_loopback_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t n = sizeof a;
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n) == 0);
  ::close(s);
  return ntohs(a.sin_port);
}

inline bool tcp_connects(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void run_or_fail(const std::string& cmd, const std::filesystem::path& log) {
  const std::string full = cmd + " >>'" + log.string() + "' 2>&1";
  const int rc = std::system(full.c_str());
  INFO("command: " << cmd << "\n" << read_file(log));
  REQUIRE(rc == 0);
}

}  // namespace mqtt_detail

/// A real /usr/sbin/mosquitto on 127.0.0.1 (never another interface).
class MosquittoBroker {
 public:
  /// Picks the port and writes the config (and certificates, password file); does not start.
  explicit MosquittoBroker(BrokerOptions o = {}) : opts_(std::move(o)), scratch_("edgert-mqtt-broker") {
    namespace fs = std::filesystem;
    fs::create_directories(scratch_.dir);
    port_ = mqtt_detail::free_loopback_port();
    const fs::path d = scratch_.dir;
    const auto setup_log = d / "setup.log";
    if (opts_.tls) {
      // A CA, a server certificate for 127.0.0.1 (SAN IP) signed by it, and an unrelated CA.
      auto ca = [&](const std::string& name) {
        mqtt_detail::run_or_fail(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj '/CN=" +
                name + "' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign -keyout '" +
                (d / (name + ".key")).string() + "' -out '" + (d / (name + ".crt")).string() + "'",
            setup_log);
      };
      ca("edgert-test-ca");
      ca("edgert-wrong-ca");
      std::ofstream(d / "server.ext") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n";
      mqtt_detail::run_or_fail("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                               "-subj '/CN=127.0.0.1' -keyout '" +
                                   (d / "server.key").string() + "' -out '" + (d / "server.csr").string() + "'",
                               setup_log);
      mqtt_detail::run_or_fail("openssl x509 -req -days 2 -in '" + (d / "server.csr").string() + "' -CA '" +
                                   (d / "edgert-test-ca.crt").string() + "' -CAkey '" +
                                   (d / "edgert-test-ca.key").string() + "' -CAcreateserial -out '" +
                                   (d / "server.crt").string() + "' -extfile '" + (d / "server.ext").string() + "'",
                               setup_log);
    }
    if (opts_.passwords) {
      mqtt_detail::run_or_fail("mosquitto_passwd -c -b '" + (d / "passwd").string() + "' edge s3cret", setup_log);
    }
    std::ofstream conf(d / "mosquitto.conf");
    conf << "listener " << port_ << " 127.0.0.1\n"
         << "user root\n"
         << "allow_anonymous " << (opts_.passwords ? "false" : "true") << "\n"
         << "log_dest file " << (d / "mosquitto.log").string() << "\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"  // not debug: one line per PUBLISH
         << "persistence " << (opts_.persistence ? "true" : "false") << "\n"
         << "persistence_location " << d.string() << "/\n";
    if (opts_.passwords) conf << "password_file " << (d / "passwd").string() << "\n";
    if (opts_.tls) {
      conf << "cafile " << ca_file() << "\n"
           << "certfile " << (d / "server.crt").string() << "\n"
           << "keyfile " << (d / "server.key").string() << "\n"
           << "require_certificate false\n";
    }
    conf << opts_.extra_config << "\n";
  }

  ~MosquittoBroker() {
    if (pid_ > 0) kill();
  }
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  /// fork/exec mosquitto -c <conf>; waits (up to 10 s) until a TCP connect succeeds.
  void start() {
    REQUIRE(pid_ <= 0);
    const std::string conf = (scratch_.dir / "mosquitto.conf").string();
    const std::string out = (scratch_.dir / "stdout.log").string();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pid_ = pid;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("mosquitto exited at start:\n" << log());
      }
      if (mqtt_detail::tcp_connects(port_)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("mosquitto did not accept connections within 10 s:\n" << log());
  }
  void stop() { signal_and_wait(SIGTERM); }
  void kill() { signal_and_wait(SIGKILL); }
  void pause() {
    REQUIRE(pid_ > 0);
    ::kill(pid_, SIGSTOP);
  }
  void resume() {
    REQUIRE(pid_ > 0);
    ::kill(pid_, SIGCONT);
  }

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string dir() const { return scratch_.dir.string(); }
  std::string ca_file() const { return (scratch_.dir / "edgert-test-ca.crt").string(); }
  std::string wrong_ca_file() const { return (scratch_.dir / "edgert-wrong-ca.crt").string(); }
  /// The broker's log and stdout so far (for failure messages).
  std::string log() const {
    return mqtt_detail::read_file(scratch_.dir / "mosquitto.log") + mqtt_detail::read_file(scratch_.dir / "stdout.log");
  }

 private:
  void signal_and_wait(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a paused broker must be able to act on SIGTERM
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  BrokerOptions opts_;
  ScratchDir scratch_;
  int port_ = 0;
  pid_t pid_ = -1;
};

/// A plain libmosquitto v5 client (its own loop_start thread) for tests.
class TestClient {
 public:
  TestClient(int port, std::string client_id, bool clean_start = true) : id_(std::move(client_id)) {
    mosquitto_lib_init();
    m_ = mosquitto_new(id_.c_str(), clean_start, this);
    REQUIRE(m_ != nullptr);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    // A subscriber that reads everything at once: the broker never has to queue for it.
    mosquitto_int_option(m_, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
    mosquitto_connect_v5_callback_set(m_, [](mosquitto* m, void* o, int rc, int, const mosquitto_property*) {
      auto* t = static_cast<TestClient*>(o);
      std::lock_guard lk(t->mu_);
      t->connack_ = rc;
      if (rc == 0 && t->resubscribe_) {
        for (const auto& [filter, qos] : t->filters_) mosquitto_subscribe_v5(m, nullptr, filter.c_str(), qos, 0, nullptr);
      }
      t->cv_.notify_all();
    });
    mosquitto_publish_v5_callback_set(m_, [](mosquitto*, void* o, int mid, int, const mosquitto_property*) {
      auto* t = static_cast<TestClient*>(o);
      std::lock_guard lk(t->mu_);
      t->acked_[mid] = true;
      t->cv_.notify_all();
    });
    mosquitto_subscribe_v5_callback_set(m_, [](mosquitto*, void* o, int mid, int, const int*, const mosquitto_property*) {
      auto* t = static_cast<TestClient*>(o);
      std::lock_guard lk(t->mu_);
      t->acked_[mid] = true;
      t->cv_.notify_all();
    });
    mosquitto_message_v5_callback_set(
        m_, [](mosquitto*, void* o, const mosquitto_message* msg, const mosquitto_property* props) {
          auto* t = static_cast<TestClient*>(o);
          edgert::InboundMessage in;
          in.topic = msg->topic;
          if (msg->payloadlen > 0) in.payload.assign(static_cast<const char*>(msg->payload), msg->payloadlen);
          in.qos = msg->qos;
          in.retained = msg->retain;
          std::uint32_t left = 0;
          if (props && mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left, false))
            in.expiry_left_s = left;
          const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
          std::lock_guard lk(t->mu_);
          t->messages_.push_back(std::move(in));
          t->received_ms_.push_back(now);
          t->cv_.notify_all();
        });
    // MQTT v5: a session outlives its connection only with a session-expiry interval;
    // clean start off alone is not enough.
    mosquitto_property* props = nullptr;
    if (!clean_start) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 3600);
    const int rc = mosquitto_connect_bind_v5(m_, "127.0.0.1", port, 30, nullptr, props);
    mosquitto_property_free_all(&props);
    REQUIRE(rc == MOSQ_ERR_SUCCESS);
    REQUIRE(mosquitto_loop_start(m_) == MOSQ_ERR_SUCCESS);
    std::unique_lock lk(mu_);
    REQUIRE(cv_.wait_for(lk, std::chrono::seconds(10), [&] { return connack_ >= 0; }));
    REQUIRE(connack_ == 0);
  }
  ~TestClient() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  /// Waits (up to 10 s) for the SUBACK.
  void subscribe(const std::string& filter, int qos = 1) {
    {
      std::lock_guard lk(mu_);
      filters_[filter] = qos;
    }
    int mid = 0;
    REQUIRE(mosquitto_subscribe_v5(m_, &mid, filter.c_str(), qos, 0, nullptr) == MOSQ_ERR_SUCCESS);
    std::unique_lock lk(mu_);
    REQUIRE(cv_.wait_for(lk, std::chrono::seconds(10), [&] { return acked_[mid]; }));
  }
  /// Waits (up to 10 s) for the PUBACK (QoS 1) or the write (QoS 0); false if none came.
  bool publish(const std::string& topic, const std::string& payload, int qos = 1, bool retain = false,
               int expiry_s = 0) {
    mosquitto_property* props = nullptr;
    if (expiry_s > 0)
      mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, static_cast<std::uint32_t>(expiry_s));
    int mid = 0;
    const int rc = mosquitto_publish_v5(m_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(),
                                        qos, retain, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) return false;
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(10), [&] { return acked_[mid]; });
  }
  /// true: every subscription is sent again on each reconnect (a broker restarted
  /// without persistence forgot it).
  void resubscribe_on_connect(bool on) {
    std::lock_guard lk(mu_);
    resubscribe_ = on;
  }
  /// The wall clock (ms) at which each of messages() arrived, read in the callback.
  std::vector<std::int64_t> received_ms() const {
    std::lock_guard lk(mu_);
    return received_ms_;
  }
  /// Everything received, in order.
  std::vector<edgert::InboundMessage> messages() const {
    std::lock_guard lk(mu_);
    return messages_;
  }
  bool wait_for(std::function<bool(const std::vector<edgert::InboundMessage>&)> pred,
                std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return pred(messages_); });
  }

 private:
  std::string id_;
  mosquitto* m_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int connack_ = -1;
  std::map<int, bool> acked_;
  std::vector<edgert::InboundMessage> messages_;
  std::vector<std::int64_t> received_ms_;
  std::map<std::string, int> filters_;
  bool resubscribe_ = false;
};

}  // namespace edgert::testing
