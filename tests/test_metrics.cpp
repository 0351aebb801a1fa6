#include <edgert/base_worker.hpp>
#include <edgert/component_metrics.hpp>
#include <edgert/mailbox.hpp>
#include <edgert/metrics.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/queue_metrics.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::Labels;
using edgert::MetricsRegistry;
using edgert::MetricType;

namespace {

double value_of(const edgert::Snapshot& s, const std::string& name, Labels labels = {}) {
  const auto* m = s.find(name, std::move(labels));
  if (!m) FAIL("no series " << name);
  return m->value;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE("metrics: N threads x M counter adds equal the snapshot", "[metrics][concurrency]") {
  MetricsRegistry reg;
  constexpr int kThreads = 4, kAdds = 100000;
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> own(kThreads, 0);  // each thread's own tally
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto& c = reg.counter("edgert_test_events_total", {{"kind", "a"}}, "test");
      for (int i = 0; i < kAdds; ++i) {
        c.add(static_cast<std::uint64_t>(1 + (i & 1)));
        own[static_cast<std::size_t>(t)] += static_cast<std::uint64_t>(1 + (i & 1));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t expected = 0;
  for (auto v : own) expected += v;
  const auto snap = reg.snapshot();
  CHECK(value_of(snap, "edgert_test_events_total", {{"kind", "a"}}) == static_cast<double>(expected));
  CHECK(expected == std::uint64_t{kThreads} * kAdds * 3 / 2);
}

TEST_CASE("metrics: same name and labels (any order) return the same instrument", "[metrics]") {
  MetricsRegistry reg;
  auto& a = reg.counter("edgert_x_total", {{"a", "1"}, {"b", "2"}});
  auto& b = reg.counter("edgert_x_total", {{"b", "2"}, {"a", "1"}});
  auto& c = reg.counter("edgert_x_total", {{"a", "1"}, {"b", "3"}});
  CHECK(&a == &b);
  CHECK(&a != &c);
  a.add(5);
  c.add(1);
  const auto snap = reg.snapshot();
  const auto* fam = snap.family("edgert_x_total");
  REQUIRE(fam);
  CHECK(fam->samples.size() == 2);
  CHECK(value_of(snap, "edgert_x_total", {{"b", "2"}, {"a", "1"}}) == 5);
  CHECK(value_of(snap, "edgert_x_total", {{"a", "1"}, {"b", "3"}}) == 1);
}

TEST_CASE("metrics: bad names, labels and type clashes are clear errors", "[metrics]") {
  MetricsRegistry reg;
  (void)reg.counter("edgert_requests_total", {{"q", "a"}});
  const auto clash = error_of([&] { (void)reg.gauge("edgert_requests_total", {{"q", "b"}}); });
  CHECK_THAT(clash, Catch::Contains("edgert_requests_total") && Catch::Contains("counter") &&
                        Catch::Contains("gauge"));
  CHECK_THAT(error_of([&] { (void)reg.histogram("edgert_requests_total"); }), Catch::Contains("counter"));
  CHECK_THAT(error_of([&] { (void)reg.counter("1bad"); }), Catch::Contains("'1bad'"));
  CHECK_THAT(error_of([&] { (void)reg.counter("bad-name"); }), Catch::Contains("'bad-name'"));
  CHECK_THAT(error_of([&] { (void)reg.counter(""); }), Catch::Contains("metric name"));
  CHECK_THAT(error_of([&] { (void)reg.counter("ok_total", {{"bad-label", "v"}}); }),
             Catch::Contains("'bad-label'") && Catch::Contains("ok_total"));
  CHECK_THAT(error_of([&] { (void)reg.counter("ok_total", {{"__reserved", "v"}}); }), Catch::Contains("__reserved"));
  CHECK_THAT(error_of([&] { (void)reg.counter("ok_total", {{"a", "1"}, {"a", "2"}}); }),
             Catch::Contains("repeat") && Catch::Contains("'a'"));
  CHECK_THAT(error_of([&] { (void)reg.histogram("lat_seconds", {{"le", "1"}}); }), Catch::Contains("le"));
  // Nothing half-registered: the good names still work and the bad ones are absent.
  const auto snap = reg.snapshot();
  CHECK(snap.family("1bad") == nullptr);
  CHECK(snap.family("ok_total") == nullptr);
  CHECK(snap.family("lat_seconds") == nullptr);
  // A clash between a collector and an instrument is refused too.
  CHECK_THAT(error_of([&] {
               auto r = reg.register_collector({{"edgert_requests_total", {{"q", "a"}}, "", MetricType::counter}},
                                               [](std::span<double>) {});
             }),
             Catch::Contains("already"));
  CHECK_THAT(error_of([&] {
               auto r = reg.register_collector({{"edgert_requests_total", {{"q", "z"}}, "", MetricType::gauge}},
                                               [](std::span<double>) {});
             }),
             Catch::Contains("counter"));
}

TEST_CASE("metrics: histogram bucket bounds are log-linear and contiguous", "[metrics]") {
  using edgert::histogram_bucket;
  using edgert::histogram_bucket_lower;
  using edgert::histogram_bucket_upper;
  CHECK(histogram_bucket(0) == 0);
  CHECK(histogram_bucket(1023) == 0);
  CHECK(histogram_bucket(1024) == 1);
  CHECK(histogram_bucket(1279) == 1);
  CHECK(histogram_bucket(1280) == 2);
  CHECK(histogram_bucket(2047) == 4);
  CHECK(histogram_bucket(2048) == 5);
  CHECK(histogram_bucket((std::uint64_t{1} << 37) - 1) == edgert::kHistogramBuckets - 2);
  CHECK(histogram_bucket(std::uint64_t{1} << 37) == edgert::kHistogramBuckets - 1);
  CHECK(histogram_bucket(UINT64_MAX) == edgert::kHistogramBuckets - 1);
  for (std::size_t i = 0; i + 1 < edgert::kHistogramBuckets; ++i) {
    INFO("bucket " << i);
    CHECK(histogram_bucket_upper(i) == histogram_bucket_lower(i + 1));
    CHECK(histogram_bucket(histogram_bucket_lower(i)) == i);
    CHECK(histogram_bucket(histogram_bucket_upper(i) - 1) == i);
    if (i > 0) CHECK(static_cast<double>(histogram_bucket_upper(i)) <= 1.25 * static_cast<double>(histogram_bucket_lower(i)));
  }
}

TEST_CASE("metrics: histogram counts match the records of several threads", "[metrics][concurrency]") {
  MetricsRegistry reg;
  auto& h = reg.histogram("edgert_test_latency_seconds", {}, "test");
  constexpr int kThreads = 3, kRecords = 50000;
  std::vector<std::uint64_t> own_sum(kThreads, 0), own_count(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecords; ++i) {
        const std::uint64_t ns = 500 + static_cast<std::uint64_t>(i) * 37 + static_cast<std::uint64_t>(t);
        h.record(std::chrono::nanoseconds(ns));
        own_sum[static_cast<std::size_t>(t)] += ns;
        ++own_count[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t count = 0, sum = 0;
  for (int t = 0; t < kThreads; ++t) {
    count += own_count[static_cast<std::size_t>(t)];
    sum += own_sum[static_cast<std::size_t>(t)];
  }
  const auto snap = reg.snapshot();
  const auto* s = snap.find("edgert_test_latency_seconds");
  REQUIRE(s);
  CHECK(s->histogram.count == count);
  CHECK(s->histogram.sum_ns == sum);
  std::uint64_t in_buckets = 0;
  for (auto b : s->histogram.buckets) in_buckets += b;
  CHECK(in_buckets == count);
  h.record(-5ns);  // clamps to 0, counted in the first bucket
  CHECK(reg.snapshot().find("edgert_test_latency_seconds")->histogram.buckets[0] ==
        s->histogram.buckets[0] + 1);
}

TEST_CASE("metrics: quantiles are within 12.5% of a known distribution", "[metrics]") {
  MetricsRegistry reg;
  auto& h = reg.histogram("edgert_q_seconds");
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> log_us(0.0, std::log(5e6));  // 1 us .. 5 s, log-uniform
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 20000; ++i) {
    const auto ns = static_cast<std::uint64_t>(1100.0 * std::exp(log_us(rng)));
    values.push_back(ns);
    h.record_ns(ns);
  }
  std::sort(values.begin(), values.end());
  const auto data = reg.snapshot().find("edgert_q_seconds")->histogram;
  for (double q : {0.5, 0.9, 0.99, 0.999, 1.0}) {
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
    const double truth = static_cast<double>(values[rank - 1]) * 1e-9;
    const double est = data.quantile(q);
    INFO("q=" << q << " truth=" << truth << " estimate=" << est);
    CHECK(std::abs(est - truth) <= 0.125 * truth);
  }
  // Sanity of the estimator itself: the p50 estimate is not just any value.
  CHECK(data.quantile(0.5) < data.quantile(0.99));
  edgert::HistogramData empty;
  CHECK(empty.quantile(0.5) == 0);
}

namespace {
// A component with its own figures, registered through a collector. The registration
// is the last member, so it is destroyed (unregistered) before the figures are.
struct Component {
  Component(MetricsRegistry& reg, std::string name, std::atomic<int>& calls)
      : figures(std::make_unique<std::uint64_t[]>(2)), calls_(calls) {
    figures[0] = 7;
    figures[1] = 3;
    registration = reg.register_collector(
        {{"edgert_comp_items_total", {{"comp", name}}, "items", MetricType::counter},
         {"edgert_comp_depth", {{"comp", name}}, "depth", MetricType::gauge}},
        [this](std::span<double> out) {
          calls_.fetch_add(1);
          out[0] = static_cast<double>(figures[0]);  // use-after-free under ASan if called late
          out[1] = static_cast<double>(figures[1]);
        });
  }
  std::unique_ptr<std::uint64_t[]> figures;
  std::atomic<int>& calls_;
  edgert::MetricsRegistration registration;
};
}  // namespace

TEST_CASE("metrics: collectors are read at snapshot time and unregistered with their component", "[metrics]") {
  MetricsRegistry reg;
  std::atomic<int> calls{0};
  auto comp = std::make_unique<Component>(reg, "c1", calls);
  auto snap = reg.snapshot();
  CHECK(calls.load() == 1);
  CHECK(value_of(snap, "edgert_comp_items_total", {{"comp", "c1"}}) == 7);
  CHECK(value_of(snap, "edgert_comp_depth", {{"comp", "c1"}}) == 3);
  comp->figures[0] = 9;
  CHECK(value_of(reg.snapshot(), "edgert_comp_items_total", {{"comp", "c1"}}) == 9);
  CHECK(calls.load() == 2);
  // Same series twice: refused, the first keeps working.
  std::atomic<int> calls2{0};
  CHECK_THROWS_AS(Component(reg, "c1", calls2), std::invalid_argument);
  comp.reset();
  snap = reg.snapshot();
  CHECK(calls.load() == 2);  // never called after the component went away
  CHECK(snap.family("edgert_comp_items_total") == nullptr);
  // The name is free again, even for another type.
  CHECK_NOTHROW(reg.gauge("edgert_comp_items_total"));
}

TEST_CASE("metrics: snapshots racing component destruction never call a dead collector",
          "[metrics][concurrency]") {
  MetricsRegistry reg;
  std::atomic<int> calls{0};
  std::atomic<bool> done{false};
  std::atomic<int> snapshots{0};
  std::thread snapper([&] {
    while (!done.load()) {
      const auto s = reg.snapshot();
      if (const auto* f = s.family("edgert_comp_items_total")) {
        for (const auto& m : f->samples) REQUIRE(m.value == 7);
      }
      snapshots.fetch_add(1);
    }
  });
  int created = 0;
  // Names from a table, not "c" + std::to_string(i): gcc 12 at -O3 reports a false
  // -Wrestrict on that concatenation (GCC PR 105329).
  const std::array<std::string, 3> names{"c0", "c1", "c2"};
  for (int i = 0; i < 2000; ++i) {
    Component c(reg, names[static_cast<std::size_t>(i % 3)], calls);
    ++created;
    if (i % 100 == 0) std::this_thread::yield();
  }
  done = true;
  snapper.join();
  CHECK(created == 2000);
  CHECK(snapshots.load() > 0);
  const int before = calls.load();
  (void)reg.snapshot();
  CHECK(calls.load() == before);
}

TEST_CASE("metrics: a throwing collector reads NaN and is counted", "[metrics]") {
  MetricsRegistry reg;
  auto r = reg.register_collector({{"edgert_flaky", {}, "", MetricType::gauge}},
                                  [](std::span<double>) { throw std::runtime_error("disk gone"); });
  const auto snap = reg.snapshot();
  CHECK(std::isnan(value_of(snap, "edgert_flaky")));
  CHECK(value_of(snap, "edgert_metrics_collector_errors_total") == 1);
  CHECK_THAT(edgert::to_json(snap), Catch::Contains("\"value\": null"));
  CHECK_THAT(edgert::to_prometheus(snap), Catch::Contains("edgert_flaky NaN\n"));
}

TEST_CASE("metrics: a registration may outlive its registry", "[metrics]") {
  edgert::MetricsRegistration r;
  {
    MetricsRegistry reg;
    r = reg.register_collector({{"edgert_g", {}, "", MetricType::gauge}}, [](std::span<double> o) { o[0] = 1; });
    CHECK(r.active());
  }
  r.reset();
  CHECK_FALSE(r.active());
}

TEST_CASE("metrics: JSON is nested name -> labels -> value and escapes label values", "[metrics]") {
  MetricsRegistry reg;
  const std::string nasty = "a\"b\\c\nd\te";
  reg.counter("edgert_queue_dropped_total", {{"queue", "cam0/motion/m1"}}, "Dropped \"items\"").add(3);
  reg.counter("edgert_queue_dropped_total", {{"queue", nasty}}).add(4);
  reg.gauge("edgert_temp", {}, "t").set(-1.5);
  reg.histogram("edgert_lat_seconds").record(3ms);
  const auto j = nlohmann::json::parse(edgert::to_json(reg.snapshot()));
  const auto& f = j.at("edgert_queue_dropped_total");
  CHECK(f.at("type") == "counter");
  CHECK(f.at("help") == "Dropped \"items\"");
  REQUIRE(f.at("series").size() == 2);
  bool seen_plain = false, seen_nasty = false;
  for (const auto& s : f.at("series")) {
    if (s.at("labels").at("queue") == "cam0/motion/m1") {
      seen_plain = true;
      CHECK(s.at("value") == 3);
    }
    if (s.at("labels").at("queue") == nasty) {
      seen_nasty = true;
      CHECK(s.at("value") == 4);
    }
  }
  CHECK(seen_plain);
  CHECK(seen_nasty);
  CHECK(j.at("edgert_temp").at("series").at(0).at("value") == -1.5);
  const auto& h = j.at("edgert_lat_seconds").at("series").at(0);
  CHECK(h.at("count") == 1);
  CHECK(h.at("sum_seconds").get<double>() == Approx(0.003));
  CHECK(h.at("p50_seconds").get<double>() == Approx(0.003).epsilon(0.125));
  CHECK(h.at("buckets").size() == 1);
}

TEST_CASE("metrics: Prometheus text format 0.0.4", "[metrics]") {
  MetricsRegistry reg;
  reg.counter("edgert_queue_dropped_total", {{"queue", "cam0/motion/m1"}}, "Dropped items.\nSecond \\ line").add(3);
  reg.counter("edgert_queue_dropped_total", {{"queue", "q\"1\\\n"}}).add(1);
  reg.gauge("edgert_up").set(1);
  auto& h = reg.histogram("edgert_lat_seconds", {{"stage", "s"}}, "Latency.");
  h.record_ns(1500);         // bucket [1280, 1536) ns, below le=2^11 ns
  h.record_ns(3'000'000);    // 3 ms
  h.record_ns(200'000'000'000ULL);  // 200 s: only in +Inf
  const std::string text = edgert::to_prometheus(reg.snapshot());
  CHECK_THAT(text, Catch::Contains("# HELP edgert_queue_dropped_total Dropped items.\\nSecond \\\\ line\n"
                                   "# TYPE edgert_queue_dropped_total counter\n"));
  CHECK_THAT(text, Catch::Contains("edgert_queue_dropped_total{queue=\"cam0/motion/m1\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("edgert_queue_dropped_total{queue=\"q\\\"1\\\\\\n\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE edgert_up gauge\nedgert_up 1\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE edgert_lat_seconds histogram\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_bucket{stage=\"s\",le=\"1.024e-06\"} 0\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_bucket{stage=\"s\",le=\"2.048e-06\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_bucket{stage=\"s\",le=\"0.004194304\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_bucket{stage=\"s\",le=\"137.438953472\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_bucket{stage=\"s\",le=\"+Inf\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_sum{stage=\"s\"} 200.0030015\n"));
  CHECK_THAT(text, Catch::Contains("edgert_lat_seconds_count{stage=\"s\"} 3\n"));
  // Every line is a comment or `name{labels} value`: no raw newline inside a value.
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    REQUIRE(nl != std::string::npos);
    const std::string line = text.substr(pos, nl - pos);
    INFO(line);
    CHECK((line.rfind("# ", 0) == 0 || line.rfind("edgert_", 0) == 0));
    pos = nl + 1;
  }
}

TEST_CASE("metrics: queue adapter reports the queue's own counters", "[metrics]") {
  MetricsRegistry reg;
  std::uint64_t overflowed = 0;  // the overflow callback's own tally
  edgert::DropHeadQueue<int> q(4, edgert::OverflowPolicy::drop_head, [&](int&&) { ++overflowed; });
  auto r = edgert::register_queue_metrics(reg, "cam0/motion/m1", q);
  int pushed = 0, popped = 0;
  for (int i = 0; i < 10; ++i) {
    if (edgert::accepted(q.try_push(int{i}))) ++pushed;
  }
  for (int i = 0; i < 3; ++i) {
    if (q.try_pop()) ++popped;
  }
  const Labels l{{"queue", "cam0/motion/m1"}};
  const auto snap = reg.snapshot();
  CHECK(value_of(snap, "edgert_queue_pushed_total", l) == pushed);
  CHECK(value_of(snap, "edgert_queue_popped_total", l) == popped);
  CHECK(value_of(snap, "edgert_queue_dropped_total", l) == static_cast<double>(overflowed));
  CHECK(overflowed == 6);
  CHECK(value_of(snap, "edgert_queue_size", l) == pushed - popped - static_cast<double>(overflowed));
  CHECK(value_of(snap, "edgert_queue_high_water", l) == 4);
  CHECK(value_of(snap, "edgert_queue_capacity", l) == 4);
  CHECK_THROWS_AS(edgert::register_queue_metrics(reg, "cam0/motion/m1", q), std::invalid_argument);
}

TEST_CASE("metrics: worker adapter reports state and failures", "[metrics]") {
  MetricsRegistry reg;
  auto runs = std::make_shared<std::atomic<int>>(0);  // the worker's own tally
  edgert::BaseWorker w(edgert::WorkerOptions{"metrics-fail"}, [runs](std::stop_token) {
    runs->fetch_add(1);
    throw std::runtime_error("boom");
  });
  auto r = edgert::register_worker_metrics(reg, w);
  const Labels l{{"worker", "metrics-fail"}};
  CHECK(value_of(reg.snapshot(), "edgert_worker_state", l) == 0);  // idle
  for (int round = 0; round < 2; ++round) {
    REQUIRE(w.start().ok());
    for (int i = 0; i < 500 && w.state() != edgert::WorkerState::failed; ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(w.state() == edgert::WorkerState::failed);
  }
  const auto snap = reg.snapshot();
  CHECK(value_of(snap, "edgert_worker_state", l) == 4);  // failed
  CHECK(value_of(snap, "edgert_worker_failures_total", l) == runs->load());
  CHECK(runs->load() == 2);
}

TEST_CASE("metrics: mailbox adapter reports Mailbox::stats()", "[metrics]") {
  const auto dir = std::filesystem::temp_directory_path() / ("edgert_metrics_mb_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    edgert::MailboxOptions o;
    o.data_dir = dir.string();
    auto mb = edgert::Mailbox::open(o);
    REQUIRE(mb.ok());
    MetricsRegistry reg;
    auto r = edgert::register_mailbox_metrics(reg, "main", *mb.value());
    int sent = 0;
    for (int i = 0; i < 3; ++i) {
      edgert::Envelope e;
      e.recipient_node_id = "peer";
      e.payload_type = "t";
      e.payload = "{\"i\": " + std::to_string(i) + "}";
      auto id = mb.value()->send(e);
      REQUIRE(id.ok());
      ++sent;
    }
    const Labels l{{"mailbox", "main"}};
    const auto snap = reg.snapshot();
    CHECK(value_of(snap, "edgert_mailbox_sent_total", l) == sent);
    CHECK(value_of(snap, "edgert_mailbox_outbox_rows", l) == sent);
    CHECK(value_of(snap, "edgert_mailbox_outbox_bytes", l) > 0);
    CHECK(value_of(snap, "edgert_mailbox_delivered_total", l) == 0);
    CHECK(value_of(snap, "edgert_metrics_collector_errors_total") == 0);
  }
  std::filesystem::remove_all(dir);
}

namespace {
class FakeInstance : public edgert::PluginInstance {
 public:
  edgert::Status start() override { return {}; }
  edgert::Status process(const edgert::PluginInput&) override {
    errors_.fetch_add(1);
    return {edgert::ErrorCode::internal, "no"};
  }
  edgert::Result<edgert::Captured> capture() override { return edgert::Status{edgert::ErrorCode::unsupported, ""}; }
  edgert::Status stop() override { return {}; }
  edgert::Status update_config(std::string_view) override { return {}; }
  const edgert::PluginInfo& plugin() const noexcept override { return info_; }
  const std::string& name() const noexcept override { return name_; }
  std::uint64_t errors() const noexcept override { return errors_.load(); }

 private:
  edgert::PluginInfo info_{"fake_sig", edgert::PluginKind::business, "1.0.0", "", "", 1, ""};
  std::string name_ = "inst1";
  std::atomic<std::uint64_t> errors_{0};
};
}  // namespace

TEST_CASE("metrics: plugin adapter reports instance errors", "[metrics]") {
  MetricsRegistry reg;
  FakeInstance inst;
  auto r = edgert::register_plugin_metrics(reg, inst);
  int failed = 0;
  for (int i = 0; i < 5; ++i) {
    if (!inst.process({}).ok()) ++failed;
  }
  CHECK(value_of(reg.snapshot(), "edgert_plugin_errors_total", {{"plugin", "fake_sig"}, {"instance", "inst1"}}) ==
        failed);
}

TEST_CASE("metrics: label values must be UTF-8", "[metrics]") {
  MetricsRegistry reg;
  CHECK_NOTHROW(reg.counter("edgert_u_total", {{"cam", "caméra"}}));
  CHECK_THAT(error_of([&] { (void)reg.counter("edgert_u_total", {{"cam", std::string("\xff\xfe")}}); }),
             Catch::Contains("edgert_u_total") && Catch::Contains("'cam'") && Catch::Contains("UTF-8"));
  CHECK_THAT(error_of([&] { (void)reg.counter("edgert_u_total", {{"cam", std::string("\xc3")}}); }),
             Catch::Contains("UTF-8"));
}
