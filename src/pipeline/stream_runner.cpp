#include "pipeline/stream_runner.hpp"

#include <edgert/drophead_queue.hpp>

#include "core/log.hpp"
#include "core/printable.hpp"
#include "plugins/checked_sink.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace edgert::pipeline {

const char* to_string(StreamState s) noexcept {
  switch (s) {
    case StreamState::idle: return "idle";
    case StreamState::opening: return "opening";
    case StreamState::running: return "running";
    case StreamState::stalled: return "stalled";
    case StreamState::consumers_blocked: return "consumers_blocked";
    case StreamState::reconnecting: return "reconnecting";
    case StreamState::ended: return "ended";
    case StreamState::failed: return "failed";
    case StreamState::stopped: return "stopped";
  }
  return "unknown";
}

namespace {

struct Trigger {
  std::int64_t fired_wall_ns = 0;
  std::uint64_t count = 0;
};

// Forwards what a capture plugin notifies (or emits) to the outputs under the stream's name.
class CaptureSink final : public detail::CheckedSink {
 public:
  CaptureSink(std::shared_ptr<Outputs> out, ResultOrigin origin) : out_(std::move(out)), origin_(std::move(origin)) {}
  void on_checked_emit(const std::string&, std::string_view type, std::string_view json,
                       const detail::JsonShape& shape) override {
    ResultOrigin o = origin_;
    o.captured_wall_ns = wall_ns_now();
    out_->publish(o, type, json, shape);
  }
  void on_unchecked_refused(const std::string&, std::string_view type, std::string_view json) override {
    out_->publish_unchecked(origin_, type, json);
  }
  void on_notify(const std::string&, int level, std::string_view message) override {
    out_->notify(origin_, level >= 4 ? "error" : level == 3 ? "warning" : "info", message);
  }

 private:
  std::shared_ptr<Outputs> out_;
  ResultOrigin origin_;
};

}  // namespace

struct StreamRunner::State {
  State(StreamConfig c, std::vector<std::shared_ptr<InstanceRunner>> cons, std::shared_ptr<Outputs> out, double rate)
      : cfg(std::move(c)),
        consumers(std::move(cons)),
        outputs(std::move(out)),
        origin{cfg.name, "", "", 0, 0},
        trigger_drops(outputs, origin, rate, /*deferred=*/true),
        url(cfg.capture ? url_of(cfg.capture->config.json) : "") {
    if (cfg.trigger) {
      triggers = std::make_unique<DropHeadQueue<Trigger>>(
          static_cast<std::size_t>(cfg.trigger->queue_size), OverflowPolicy::drop_head, [this](Trigger&& t) {
            triggers_dropped.fetch_add(1);
            Input in;
            in.captured_wall_ns = t.fired_wall_ns;
            trigger_drops.dropped(in, "trigger queue overflow");
          });
    }
  }

  static std::string url_of(const std::string& config_json) {
    const auto j = nlohmann::json::parse(config_json, nullptr, false);
    if (!j.is_object() || !j.contains("url")) return "";
    return j["url"].is_string() ? j["url"].get<std::string>() : j["url"].dump();
  }
  // Built with += steps: one long operator+ chain trips gcc 12's false -Wrestrict at -O3.
  std::string who() const {
    std::string w = "stream '";
    w += detail::printable(cfg.name);
    w += "'";
    if (cfg.capture) {
      w += " (";
      w += detail::printable(cfg.capture->type);
      if (!url.empty()) {
        w += ' ';
        w += detail::printable(detail::redact_url(url), 200);
      }
      w += ')';
    }
    return w;
  }

  void run(std::stop_token stop, PluginLoader* loader);
  // Runs one opened source until it ends or fails; returns false when the stream is over.
  enum class Outcome { ended, failed, reopen, stopping };
  Outcome run_source(const std::stop_token& stop, PluginInstance* source);
  void fan_out(Input in, const std::stop_token& stop);

  const StreamConfig cfg;
  const std::vector<std::shared_ptr<InstanceRunner>> consumers;
  std::shared_ptr<Outputs> outputs;
  const ResultOrigin origin;
  DropReporter trigger_drops;
  const std::string url;
  std::unique_ptr<DropHeadQueue<Trigger>> triggers;
  std::atomic<std::uint64_t> trigger_count{0};

  std::atomic<std::uint64_t> captured{0}, errors{0}, reconnects{0}, triggers_dropped{0};
  std::atomic<std::int64_t> wait_ns{0};
  std::atomic<StreamState> state{StreamState::idle};
  std::atomic<bool> finished{false};
  std::atomic<std::int64_t> last_item_ns{0};
  std::atomic<std::int64_t> offer_started_ns{0};  // 0: not waiting for room
  std::atomic<bool> reported_stall{false};
  std::atomic<bool> reported_blocked{false};
  std::atomic<std::int64_t> longest_call_ns{0};  // longest open or capture() call
  std::uint64_t sequence = 0;  // capture thread only

  void note_call(std::int64_t started) {
    const auto took = mono_ns_now() - started;
    auto cur = longest_call_ns.load();
    while (took > cur && !longest_call_ns.compare_exchange_weak(cur, took)) {
    }
  }

  // Monitor thread only.
  std::int64_t fps_window_ns = 0;
  std::uint64_t fps_window_count = 0;
  std::atomic<double> fps{0};
};

void StreamRunner::State::fan_out(Input in, const std::stop_token& stop) {
  captured.fetch_add(1);
  last_item_ns.store(mono_ns_now());
  if (reported_stall.exchange(false)) detail::log().info("{}: source resumed", who());
  const bool live = cfg.capture ? cfg.capture->live_feed : false;
  offer_started_ns.store(mono_ns_now());
  std::int64_t waited = 0;
  for (const auto& c : consumers) waited += c->offer(in, live, stop);
  offer_started_ns.store(0);
  worker_progress();  // delivered to every consumer
  if (reported_blocked.exchange(false)) {
    detail::log().info("{}: consumers took input again", who());
    state.store(StreamState::running);
  }
  wait_ns.fetch_add(waited);
}

StreamRunner::State::Outcome StreamRunner::State::run_source(const std::stop_token& stop, PluginInstance* source) {
  using namespace std::chrono;
  const double fps_limit = cfg.capture ? cfg.capture->fps : 0;
  std::int64_t next_due = 0;
  while (!stop.stop_requested()) {
    worker_beat();  // each turn; a capture() call that never returns stops it
    std::optional<Trigger> trig;
    if (triggers) {
      trigger_drops.flush(false);  // dropped triggers are reported from here, never from trigger()
      trig = triggers->pop_for(milliseconds(200));
      if (!trig) continue;
    }
    if (fps_limit > 0) {
      const auto now = mono_ns_now();
      if (next_due > now && wait_for_stop(stop, nanoseconds(next_due - now))) break;
      next_due = std::max(now, next_due) + static_cast<std::int64_t>(1e9 / fps_limit);
    }
    // One item (per trigger when triggered): retry while the source says "again".
    for (;;) {
      if (!source) {  // a trigger-only stream: the trigger itself is the item
        nlohmann::json rec{{"trigger", cfg.trigger->type},
                           {"fired_at_ms", trig->fired_wall_ns / 1000000},
                           {"count", trig->count}};
        Input in;
        in.record = std::make_shared<const std::string>(rec.dump());
        in.sequence = ++sequence;
        in.captured_wall_ns = wall_ns_now();
        in.captured_mono_ns = mono_ns_now();
        fan_out(std::move(in), stop);
        break;
      }
      const auto call_started = mono_ns_now();
      auto got = source->capture();
      note_call(call_started);
      if (got.ok()) {
        auto c = std::move(got).value();
        Input in;
        in.sequence = ++sequence;
        in.captured_mono_ns = mono_ns_now();
        if (c.frame) {
          FrameInfo info = c.frame.info();
          info.sequence = in.sequence;  // the stream's count, kept across reopenings
          info.stream = cfg.name;
          in.captured_wall_ns = info.timestamp_ns;
          const auto* pixels = c.frame.data();
          in.frame = Frame::wrap(std::move(info), pixels, [keep = std::move(c.frame)] {});
        } else {
          in.record = std::make_shared<const std::string>(std::move(c.record_json));
          in.captured_wall_ns = wall_ns_now();
        }
        fan_out(std::move(in), stop);
        break;
      }
      const auto code = got.status().code();
      if (code == ErrorCode::again) {
        if (wait_for_stop(stop, milliseconds(1))) return Outcome::stopping;
        continue;
      }
      if (code == ErrorCode::end_of_stream) {
        detail::log().info("{}: end of input after {} item(s)", who(), captured.load());
        return cfg.capture->reconnectable == Reconnect::keepalive ? Outcome::reopen : Outcome::ended;
      }
      errors.fetch_add(1);
      detail::log().error("{}: capture failed: {}", who(), got.status().message());
      return Outcome::failed;
    }
  }
  return Outcome::stopping;
}

void StreamRunner::State::run(std::stop_token stop, PluginLoader* loader) {
  using namespace std::chrono;
  std::mt19937_64 rng(std::random_device{}());
  std::int64_t failures = 0;  // consecutive opens or reads that failed
  last_item_ns.store(mono_ns_now());
  while (!stop.stop_requested()) {
    Outcome outcome;
    if (!cfg.capture) {
      state.store(StreamState::running);
      outcome = run_source(stop, nullptr);
    } else {
      state.store(StreamState::opening);
      auto sink = std::make_shared<CaptureSink>(outputs, origin);
      const auto open_started = mono_ns_now();
      auto made = loader->create_instance(cfg.capture->type, cfg.name, cfg.capture->config.json, sink);
      note_call(open_started);
      std::unique_ptr<PluginInstance> source;
      if (!made.ok()) {
        errors.fetch_add(1);
        detail::log().error("{}: cannot open: {}", who(), made.status().message());
        outcome = made.status().code() == ErrorCode::invalid_argument || made.status().code() == ErrorCode::not_found
                      ? Outcome::ended  // a configuration the plugin refuses will not get better
                      : Outcome::failed;
        if (outcome == Outcome::ended) {
          state.store(StreamState::failed);
          outputs->notify(origin, "error", "stream cannot start: " + made.status().message());
          worker_declare("failed", "cannot start: " + made.status().message());
          break;
        }
      } else {
        source = std::move(made).value();
        const auto start_started = mono_ns_now();
        Status st = source->start();
        note_call(start_started);
        if (!st.ok()) {
          errors.fetch_add(1);
          detail::log().error("{}: cannot open: {}", who(), st.message());
          outcome = Outcome::failed;
        } else {
          state.store(StreamState::running);
          worker_declare("ready", "source open");
          last_item_ns.store(mono_ns_now());
          const auto before = captured.load();
          outcome = run_source(stop, source.get());
          if (captured.load() > before) failures = 0;
        }
        (void)source->stop();
        source.reset();
      }
    }
    if (outcome == Outcome::stopping) break;
    if (outcome == Outcome::ended) {
      state.store(StreamState::ended);
      worker_declare("stopped", "end of input");
      break;
    }
    if (outcome == Outcome::failed) {
      if (cfg.capture->reconnectable == Reconnect::no) {
        detail::log().error("{}: stopped after an error (reconnectable: no)", who());
        outputs->notify(origin, "error", "stream stopped after an error (reconnectable: no)");
        state.store(StreamState::failed);
        worker_declare("failed", "stopped after an error (reconnectable: no)");
        break;
      }
      if (++failures > cfg.capture->max_retries) {
        detail::log().error("{}: gave up after {} failed attempt(s) in a row (max_retries: {})", who(), failures,
                            cfg.capture->max_retries);
        outputs->notify(origin, "error", "stream gave up after " + std::to_string(failures) + " failed attempts");
        state.store(StreamState::failed);
        worker_declare("failed", "gave up after " + std::to_string(failures) + " failed attempts");
        break;
      }
    }
    // Reopen: doubling from sleep_on_error_ms (capped at 60 s or 32x), +-25% jitter so a
    // fleet of nodes does not hammer a camera in step.
    reconnects.fetch_add(1);
    state.store(StreamState::reconnecting);
    const double base = static_cast<double>(cfg.capture->sleep_on_error_ms) *
                        std::pow(2.0, static_cast<double>(std::min<std::int64_t>(std::max<std::int64_t>(failures - 1, 0), 5)));
    const double capped = std::min(base, std::max(60000.0, static_cast<double>(cfg.capture->sleep_on_error_ms)));
    const double jittered = capped * std::uniform_real_distribution<double>(0.75, 1.25)(rng);
    detail::log().warn("{}: reopening in {} ms (attempt {})", who(), static_cast<long long>(jittered), failures + 1);
    worker_declare("degraded", "reopening in " + std::to_string(static_cast<long long>(jittered)) + " ms (attempt " +
                                   std::to_string(failures + 1) + ")");
    if (wait_for_stop(stop, milliseconds(static_cast<std::int64_t>(jittered)))) break;
  }
  // No capture will serve another trigger: refuse new ones (Node::trigger answers
  // `closed`) instead of letting them overflow into ERROR results for ever.
  if (triggers) {
    triggers->close();
    trigger_drops.flush(true);
  }
  // Stopped by the node before it ended by itself: `stopped`, and not `finished` (it
  // is not a stream that is done).
  if (state.load() != StreamState::failed && state.load() != StreamState::ended) {
    state.store(StreamState::stopped);
    worker_declare("stopped", "worker stopped");
    return;
  }
  finished.store(true);
}

StreamRunner::StreamRunner(StreamConfig config, std::vector<std::shared_ptr<InstanceRunner>> consumers,
                           std::shared_ptr<Outputs> outputs, double drop_results_per_s)
    : s_(std::make_shared<State>(std::move(config), std::move(consumers), std::move(outputs), drop_results_per_s)) {}

StreamRunner::~StreamRunner() { stop(); }

Status StreamRunner::start(PluginLoader& loader, std::shared_ptr<WorkerPulse> pulse) {
  if (worker_) return {};
  auto s = s_;
  WorkerOptions wo("cap-" + s->cfg.name);
  wo.pulse = std::move(pulse);
  worker_ = std::make_unique<BaseWorker>(
      std::move(wo),
      [s, l = &loader](std::stop_token stop) { s->run(std::move(stop), l); },
      [s] {
        if (s->triggers) s->triggers->close();
      },
      s);
  return worker_->start();
}

void StreamRunner::stop() {
  if (!worker_) return;
  if (Status st = worker_->stop(); !st.ok() && st.code() != ErrorCode::again) {
    detail::log().warn("{}: {} (the capture call keeps its thread until it returns)", s_->who(), st.message());
  }
  s_->trigger_drops.flush(true);
}

Status StreamRunner::trigger() {
  if (!s_->triggers) return {ErrorCode::invalid_argument, "stream '" + s_->cfg.name + "' has no trigger"};
  Trigger t{wall_ns_now(), s_->trigger_count.fetch_add(1) + 1};
  const auto r = s_->triggers->try_push(std::move(t));
  if (r == PushResult::closed) return {ErrorCode::closed, "stream '" + s_->cfg.name + "' is stopped"};
  return {};
}

bool StreamRunner::triggered() const noexcept { return s_->cfg.trigger.has_value(); }
std::int64_t StreamRunner::trigger_period_ms() const noexcept {
  return s_->cfg.trigger && s_->cfg.trigger->type == "interval" ? s_->cfg.trigger->period_ms : 0;
}

void StreamRunner::check(std::int64_t now) {
  auto& s = *s_;
  if (s.fps_window_ns == 0) s.fps_window_ns = now;
  if (now - s.fps_window_ns >= 1000000000) {
    const auto c = s.captured.load();
    s.fps.store(static_cast<double>(c - s.fps_window_count) * 1e9 / static_cast<double>(now - s.fps_window_ns));
    s.fps_window_ns = now;
    s.fps_window_count = c;
  }
  s.trigger_drops.flush(false);
  if (!s.cfg.capture || s.finished.load()) return;
  // A source paced by `fps` waits between items by design: the pause counts as progress.
  const auto stall_ns = s.cfg.capture->stall_timeout_ms * 1000000 +
                        (s.cfg.capture->fps > 0 ? static_cast<std::int64_t>(1e9 / s.cfg.capture->fps) : 0);
  const auto offer = s.offer_started_ns.load();
  if (offer != 0 && now - offer > stall_ns && !s.reported_blocked.exchange(true)) {
    s.state.store(StreamState::consumers_blocked);
    detail::log().warn("{}: consumers blocked: waiting {} ms for room in a lossless queue (live_feed: false)", s.who(),
                       (now - offer) / 1000000);
  }
  const auto st = s.state.load();
  if (!s.triggers && offer == 0 && (st == StreamState::running || st == StreamState::opening) &&
      now - s.last_item_ns.load() > stall_ns && !s.reported_stall.exchange(true)) {
    s.state.store(StreamState::stalled);
    detail::log().warn("{}: source stalled: no item for {} ms", s.who(), (now - s.last_item_ns.load()) / 1000000);
    s.outputs->notify(s.origin, "warning", "source stalled");
  } else if (st == StreamState::stalled && !s.reported_stall.load()) {
    s.state.store(StreamState::running);
  }
}

bool StreamRunner::ended() const noexcept { return s_->finished.load(); }

StreamFigures StreamRunner::figures() const {
  StreamFigures f;
  f.captured = s_->captured.load();
  f.errors = s_->errors.load();
  f.reconnects = s_->reconnects.load();
  f.triggers = s_->trigger_count.load();
  f.triggers_dropped = s_->triggers_dropped.load();
  f.fps = s_->fps.load();
  f.capture_wait_s = static_cast<double>(s_->wait_ns.load()) / 1e9;
  f.state = s_->state.load();
  f.longest_call_ms = static_cast<double>(s_->longest_call_ns.load()) / 1e6;
  return f;
}

const std::string& StreamRunner::name() const noexcept { return s_->cfg.name; }
const StreamConfig& StreamRunner::config() const noexcept { return s_->cfg; }

}  // namespace edgert::pipeline
