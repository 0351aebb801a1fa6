// Child of the mailbox crash test: sends messages from 4 threads forever and prints
// each id on stdout only after send() returned it (i.e. after it was committed).
// The parent kills it with SIGKILL at a random moment.
#include <edgert/log.hpp>
#include <edgert/mailbox.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
    return 2;
  }
  (void)edgert::set_log_level("warning");
  edgert::MailboxOptions o;
  o.data_dir = argv[1];
  auto mb = edgert::Mailbox::open(o);
  if (!mb.ok()) {
    std::fprintf(stderr, "child: %s\n", mb.status().message().c_str());
    return 1;
  }
  auto& m = *mb.value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (long i = 0;; ++i) {
        edgert::Envelope e;
        e.sender_node_id = "crash-child";
        e.payload_type = "crash";
        e.payload = "{\"thread\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}";
        auto id = m.send(e);
        if (!id.ok()) {
          std::fprintf(stderr, "child: %s\n", id.status().message().c_str());
          _exit(1);
        }
        const std::string line = id.value() + "\n";  // one write(): atomic on a pipe
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(1);
      }
    });
  }
  for (auto& t : threads) t.join();
}
