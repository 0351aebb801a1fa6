// Uses the installed headers and libedgert.so: a queue, a worker and a runtime.
#include <edgert/edgert.hpp>
#include <edgert/plugin_testing.hpp>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace {
class Counter : public edgert::WorkerTask {
 public:
  explicit Counter(edgert::DropHeadQueue<int>& q) : q_(q) {}
  std::atomic<int> sum{0};

  void run(std::stop_token stop) override {
    while (!stop.stop_requested()) {
      if (auto v = q_.pop_for(std::chrono::milliseconds(10))) sum += *v;
    }
  }

 private:
  edgert::DropHeadQueue<int>& q_;
};
}  // namespace

// Loads the out-of-tree plugin built against the installed package (argv[1]).
int run_plugin(const char* path) {
  struct Sink : edgert::PluginSink {
    std::string got;
    void on_emit(const std::string&, std::string_view, std::string_view json) override { got = json; }
  };
  edgert::PluginLoaderOptions opts;
  opts.use_default_paths = false;
  opts.use_environment = false;
  edgert::PluginLoader loader(opts);
  auto info = loader.load(path);
  if (!info.ok()) {
    std::printf("consumer: %s\n", info.status().message().c_str());
    return 6;
  }
  // The isolated scanner runs the helper installed next to libedgert.
  const auto scans = edgert::scan_plugins_isolated({path}, opts);
  if (scans.size() != 1 || !scans[0].accepted || scans[0].info.signature != "hello") {
    std::printf("consumer: scan: %s\n", scans.empty() ? "no result" : scans[0].reason.c_str());
    return 10;
  }
  auto sink = std::make_shared<Sink>();
  auto inst = loader.create_instance("hello", "hello-1", "", sink);
  if (!inst.ok()) return 7;
  edgert::PluginInput in;
  in.stream = "s";
  in.record_json = "{}";
  if (!inst.value()->process(in).ok()) return 8;
  std::printf("consumer: plugin said %s\n", sink->got.c_str());
  if (sink->got != "{\"hello\":\"world\"}") return 9;

  // The same plugin through the installed testing kit (edgert::plugin_testing).
  edgert::plugin_testing::PluginHarness h;
  if (auto st = h.load(path); !st.ok()) {
    std::printf("consumer: kit: %s\n", st.message().c_str());
    return 11;
  }
  auto kit_inst = h.create("hello", "hello-kit");
  if (!kit_inst.ok() || !kit_inst->process_record("{}").ok()) return 12;
  const auto emitted = h.emitted();
  if (emitted.size() != 1 || emitted[0].instance != "hello-kit" || emitted[0].json != sink->got) return 13;
  std::printf("consumer: kit collected %s %s\n", emitted[0].payload_type.c_str(), emitted[0].json.c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (std::strcmp(edgert::version_string(), EDGERT_VERSION_STRING) != 0) return 1;  // header and library agree
  if (argc > 1) {
    if (int rc = run_plugin(argv[1]); rc != 0) return rc;
  }
  edgert::DropHeadQueue<int> q(8, edgert::OverflowPolicy::block);
  auto counter = std::make_shared<Counter>(q);
  edgert::BaseWorker worker(edgert::WorkerOptions{"consumer-w"}, counter);
  edgert::SystemRuntime runtime;
  if (!runtime.add_participant(edgert::Stage::processing,
                               {"counter", [&] { return worker.start(); }, [&] { (void)worker.stop(); }, {}})
           .ok())
    return 2;
  if (!runtime.start().ok()) return 3;
  for (int i = 1; i <= 100; ++i) {
    if (q.push(std::move(i)) != edgert::PushResult::ok) return 4;
  }
  while (q.size() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  runtime.stop();
  std::printf("consumer: sum=%d\n", counter->sum.load());
  return counter->sum == 5050 ? 0 : 5;
}
