// Uses the installed headers and libedgert.so: a queue, a worker and a runtime.
#include <edgert/edgert.hpp>

#include <cstdio>
#include <cstring>
#include <thread>

namespace {
class Counter : public edgert::BaseWorker {
 public:
  explicit Counter(edgert::DropHeadQueue<int>& q) : BaseWorker("consumer-w"), q_(q) {}
  ~Counter() override { stop(); }
  int sum = 0;

 protected:
  void run(std::stop_token stop) override {
    while (!stop.stop_requested()) {
      if (auto v = q_.pop_for(std::chrono::milliseconds(10))) sum += *v;
    }
  }

 private:
  edgert::DropHeadQueue<int>& q_;
};
}  // namespace

int main() {
  if (std::strcmp(edgert::version_string(), "0.1.0") != 0) return 1;
  edgert::DropHeadQueue<int> q(8, edgert::OverflowPolicy::block);
  Counter worker(q);
  edgert::SystemRuntime runtime;
  if (!runtime.add_participant(edgert::Stage::processing,
                               {"counter", [&] { worker.start(); }, [&] { worker.stop(); }, {}}).ok())
    return 2;
  if (!runtime.start().ok()) return 3;
  for (int i = 1; i <= 100; ++i) {
    if (q.push(std::move(i)) != edgert::PushResult::ok) return 4;
  }
  while (q.size() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  runtime.stop();
  std::printf("consumer: sum=%d\n", worker.sum);
  return worker.sum == 5050 ? 0 : 5;
}
