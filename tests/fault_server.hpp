// Loopback fault injection for network capture tests: TCP servers on 127.0.0.1 that
// never answer, reset, or serve a few MJPEG frames and then stall; a refused port; an
// fd counter for leak checks. Used by test_capture_plugins and test_pipeline_liveness.
#pragma once

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace edgert::testing {

inline int count_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A loopback TCP server on 127.0.0.1 (ephemeral port) that either accepts and never
// answers (reading and discarding until the peer closes) or accepts and resets.
class FaultServer {
 public:
  enum class Mode { silent, reset, stall };
  // stall: answers the first request with an MJPEG multipart stream (`body`: the
  // headers and a few frames), then sends nothing more and keeps the connection open.
  explicit FaultServer(Mode mode, std::string body = "") : mode_(mode), body_(std::move(body)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    REQUIRE(::pipe2(wake_, O_CLOEXEC) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~FaultServer() {
    const char x = 1;
    [[maybe_unused]] auto w = ::write(wake_[1], &x, 1);
    thread_.join();
    for (const int c : clients_) ::close(c);
    ::close(fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void run() {
    for (;;) {
      std::vector<pollfd> p = {{wake_[0], POLLIN, 0}, {fd_, POLLIN, 0}};
      for (const int c : clients_) p.push_back({c, POLLIN, 0});
      if (::poll(p.data(), p.size(), 5000) < 0) continue;
      if (p[0].revents) return;
      if (p[1].revents & POLLIN) {
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          ++accepted_;
          if (mode_ == Mode::reset) {
            const linger l{1, 0};  // close() sends RST
            ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            ::close(c);
          } else {
            if (mode_ == Mode::stall) {
              char req[4096];
              [[maybe_unused]] auto r = ::read(c, req, sizeof req);  // the request; its content does not matter
              for (std::size_t off = 0; off < body_.size();) {
                const auto w = ::send(c, body_.data() + off, body_.size() - off, MSG_NOSIGNAL);
                if (w <= 0) break;
                off += static_cast<std::size_t>(w);
              }
            }
            clients_.push_back(c);
          }
        }
      }
      for (std::size_t i = 2; i < p.size(); ++i) {
        if (!p[i].revents) continue;
        char buf[512];
        if (::read(p[i].fd, buf, sizeof buf) <= 0) {  // the peer closed: forget it
          ::close(p[i].fd);
          std::erase(clients_, p[i].fd);
        }
      }
    }
  }
  Mode mode_;
  std::string body_;
  int fd_ = -1, port_ = 0;
  int wake_[2] = {-1, -1};
  std::vector<int> clients_;  // server thread only, then the destructor after join
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// A port nothing listens on: bound to learn a free port number, then closed.
inline int refused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline std::string http_url(int port) { return "http://127.0.0.1:" + std::to_string(port) + "/stream.mjpg"; }

}  // namespace edgert::testing
