// Child of the mailbox crash test: sends messages from 4 threads forever and prints
// each id on stdout only after send() returned it (i.e. after it was committed).
// With "async", each thread keeps 16 send_async() messages in flight and prints an
// id once its PendingSend::get() returned it. The parent kills it with SIGKILL at a
// random moment.
// With "race", it only opens the mailbox: refused, it prints "refused <error>" and
// exits 3; opened, it sends one message, prints "opened <id>" once that is committed,
// keeps the mailbox open until its stdin closes, and exits 0.
#include <edgert/log.hpp>
#include <edgert/mailbox.hpp>

#include <unistd.h>

#include <cstdio>
#include <deque>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR [blocking|async|race]\n", argv[0]);
    return 2;
  }
  const std::string mode = argc > 2 ? argv[2] : "blocking";
  const bool async = mode == "async";
  (void)edgert::set_log_level("warning");
  edgert::MailboxOptions o;
  o.data_dir = argv[1];
  auto mb = edgert::Mailbox::open(o);
  if (mode == "race") {
    auto say = [](const std::string& line) {
      const std::string text = line + "\n";
      return ::write(1, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    };
    if (!mb.ok()) return say("refused " + mb.status().message()) ? 3 : 1;
    edgert::Envelope e;
    e.sender_node_id = "race-child";
    e.payload_type = "crash";
    e.payload = "{\"race\":true}";
    auto id = mb.value()->send(e);
    if (!id.ok() || !say("opened " + id.value())) return 1;
    char c;
    while (::read(0, &c, 1) > 0) {
    }
    return 0;
  }
  if (!mb.ok()) {
    std::fprintf(stderr, "child: %s\n", mb.status().message().c_str());
    return 1;
  }
  auto& m = *mb.value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t, async] {
      auto report = [](edgert::Result<std::string> id) {
        if (!id.ok()) {
          std::fprintf(stderr, "child: %s\n", id.status().message().c_str());
          _exit(1);
        }
        const std::string line = id.value() + "\n";  // one write(): atomic on a pipe
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(1);
      };
      std::deque<edgert::PendingSend> window;
      for (long i = 0;; ++i) {
        edgert::Envelope e;
        e.sender_node_id = "crash-child";
        e.payload_type = "crash";
        e.payload = "{\"thread\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}";
        if (!async) {
          report(m.send(e));
          continue;
        }
        if (window.size() == 16) {
          report(window.front().get());
          window.pop_front();
        }
        window.push_back(m.send_async(e));
      }
    });
  }
  for (auto& t : threads) t.join();
}
