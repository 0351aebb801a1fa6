// One result from a plugin's emit to the broker's PUBACK (docs/architecture.md, "One result, emit to PUBACK"): the
// payload is parsed once and its bytes copied at most twice by edgert on the way, counted here with a global
// allocation counter and the JSON check counter, not guessed; and a JSONL file that stops taking lines (a FIFO
// nobody reads) stalls no instance.
#include "comms_test_util.hpp"
#include "pipeline_test_util.hpp"

#include "core/json_check.hpp"

#include <atomic>
#include <cstdlib>
#include <fcntl.h>
#include <new>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using edgert::testing::comms_of;
using edgert::testing::comms_yaml;
using edgert::testing::make_node;
using edgert::testing::MosquittoBroker;
using edgert::testing::wait_until;
using json = nlohmann::json;

// ---- counting allocations of a payload's size ------------------------------------------------------------------
// Every operator new in the process (the plugins' too) is counted when it is at least g_big bytes: with a payload
// of 256 KiB and nothing else that large per result, each such allocation is one copy of the payload's bytes made
// by C++ code. SQLite and libmosquitto allocate with malloc: their one copy each is not counted.
namespace {
std::atomic<std::size_t> g_big{0};
std::atomic<std::uint64_t> g_big_allocs{0};
thread_local bool tl_uncounted = false;  // the test's own thread while it sets up (the plugin builds its blob)

void* counted_alloc(std::size_t n) {
  const std::size_t big = g_big.load(std::memory_order_relaxed);
  if (big != 0 && n >= big && !tl_uncounted) g_big_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using Scratch = edgert::testing::MadeScratch;

std::uint64_t delivered(const edgert::Node& n) { return comms_of(n)["delivered"].get<std::uint64_t>(); }

}  // namespace

TEST_CASE("a result is checked once and its bytes copied at most twice by edgert from emit to PUBACK",
          "[result_path]") {
  constexpr int kResults = 40;
  constexpr std::size_t kBlob = 256 * 1024;
  Scratch s;
  MosquittoBroker broker;
  broker.start();
  const std::string streams = R"(streams:
  - name: cam0
    capture: {type: pl_source, frames: )" + std::to_string(kResults) +
                              R"(, width: 8, height: 8, live_feed: false, reconnectable: no}
    plugins:
      - signature: pl_probe
        instances: [{instance_id: big, blob_bytes: )" + std::to_string(kBlob) + R"(}]
)";
  auto node = make_node(comms_yaml(s.dir, "pathnode", broker.port(), "  max_inbound_bytes: 1048576\n",
                                   "mailbox: {max_payload_bytes: 1048576}\n" + streams));
  // The one pass copies nothing: checked alone on the same payload, it makes no payload-sized allocation.
  const std::string payload = json{{"priority", 3}, {"blob", std::string(kBlob, 'x')}}.dump();
  g_big_allocs = 0;
  g_big = kBlob;
  edgert::detail::JsonShape shape;
  REQUIRE_FALSE(edgert::detail::check_json(payload, 64, &shape));
  g_big = 0;
  CHECK(g_big_allocs.load() == 0);

  edgert::detail::count_json_passes(true);
  const std::uint64_t checks_before = edgert::detail::json_full_checks();
  g_big_allocs = 0;
  g_big = kBlob;
  tl_uncounted = true;  // Node::start creates the instance on this thread; results flow on the node's threads
  REQUIRE(node->start().ok());
  tl_uncounted = false;
  REQUIRE(wait_until([&] { return delivered(*node) >= kResults; }, 120s));
  g_big = 0;
  const std::uint64_t checks = edgert::detail::json_full_checks() - checks_before;
  const std::uint64_t copies = g_big_allocs.load();
  const auto stats = json::parse(node->stats_json());
  node->stop();

  INFO("full JSON passes " << checks << ", payload-sized allocations " << copies << " for " << kResults
                           << " results");
  CHECK(stats["outputs"]["results"] == kResults);
  CHECK(delivered(*node) == kResults);
  // One pass, at emit: the pipeline extends the payload as text, the mailbox stores it unchecked, the forwarder
  // publishes the stored bytes.
  CHECK(checks == static_cast<std::uint64_t>(kResults));
  // Two copies by C++ code after the plugin's buffer: the result built from it (bound as the row's value, SQLite
  // writes it into its page), and the row read back for the publisher (libmosquitto copies that into its packet).
  CHECK(copies <= static_cast<std::uint64_t>(2 * kResults));
}

TEST_CASE("a results_jsonl file that stops taking lines stalls no instance; what it misses is counted",
          "[result_path]") {
  Scratch s;
  const auto fifo = s.dir / "results.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // A reader that reads nothing yet: the pipe fills after 64 KiB and every write blocks.
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  REQUIRE(reader >= 0);
  constexpr int kFrames = 3000;
  const std::string streams = R"(  - name: cam0
    capture: {type: pl_source, frames: )" + std::to_string(kFrames) +
                              R"(, width: 8, height: 8, live_feed: false, reconnectable: no}
    plugins: [{signature: pl_probe, instances: [{instance_id: a}]}]
  - name: cam1
    capture: {type: pl_source, frames: )" + std::to_string(kFrames) +
                              R"(, width: 8, height: 8, live_feed: false, reconnectable: no}
    plugins: [{signature: pl_probe, instances: [{instance_id: b}]}]
)";
  auto node = edgert::testing::make_pipeline_node(edgert::testing::pipeline_yaml(
      s.dir, streams, "pipeline: {outbox: false, results_jsonl: " + fifo.string() + "}\n"));
  REQUIRE(node->start().ok());
  auto processed = [&](const char* key) {
    const auto st = json::parse(node->stats_json());
    return st["instances"][key]["processed"].get<std::uint64_t>();
  };
  // Both instances finish every frame although the file has taken at most 64 KiB.
  const bool done = wait_until([&] { return processed("cam0/pl_probe/a") == kFrames && processed("cam1/pl_probe/b") == kFrames; }, 60s);
  CHECK(done);

  // Now read the FIFO to the end, counting lines ourselves, and stop the node.
  std::atomic<std::uint64_t> lines{0};
  std::thread drain([&] {
    ::fcntl(reader, F_SETFL, 0);  // blocking reads from here on
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(reader, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) lines += buf[i] == '\n';
    }
  });
  const auto before_stop = json::parse(node->stats_json())["outputs"];
  node->stop();  // closes the file: the reader sees EOF
  drain.join();
  ::close(reader);
  const auto out = json::parse(node->stats_json())["outputs"];
  INFO(out.dump());
  CHECK(out["results"].get<std::uint64_t>() >= 2u * kFrames);
  // Every result is a line read or a line counted as not written.
  CHECK(lines.load() + out["file_errors"].get<std::uint64_t>() == out["results"].get<std::uint64_t>());
  (void)before_stop;
}
