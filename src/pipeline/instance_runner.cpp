#include "pipeline/instance_runner.hpp"

#include "core/log.hpp"
#include "core/printable.hpp"
#include "plugins/checked_sink.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace edgert::pipeline {

const char* to_string(InstanceState s) noexcept {
  switch (s) {
    case InstanceState::idle: return "idle";
    case InstanceState::running: return "running";
    case InstanceState::backing_off: return "backing_off";
    case InstanceState::stuck: return "stuck";
    case InstanceState::quarantined: return "quarantined";
    case InstanceState::stopped: return "stopped";
    case InstanceState::disabled: return "disabled";
  }
  return "unknown";
}

namespace {

std::int64_t seconds_to_ns(double s) { return static_cast<std::int64_t>(std::llround(s * 1e9)); }

}  // namespace

struct InstanceRunner::State {
  State(const StreamConfig& stream, const StreamPluginConfig& plugin, const InstanceConfig& c,
        std::shared_ptr<Outputs> out, double drop_rate)
      : origin{stream.name, plugin.signature, c.instance_id, 0, 0},
        key(stream.name + "/" + plugin.signature + "/" + c.instance_id),
        cfg(c),
        live_feed(stream.capture ? stream.capture->live_feed : false),
        outputs(std::move(out)),
        drops(outputs, origin, drop_rate) {
    queue = std::make_unique<DropHeadQueue<Input>>(
        static_cast<std::size_t>(cfg.max_inputs_queue_size),
        live_feed ? OverflowPolicy::drop_head : OverflowPolicy::block, [this](Input&& lost) {
          {
            std::lock_guard lk(acct);
            --queued;
            ++dropped;
          }
          drops.dropped(lost, "queue overflow");
        });
    state.store(cfg.disabled ? InstanceState::disabled : InstanceState::idle);
  }

  // What an emit made during a process() call refers to.
  class Sink final : public detail::CheckedSink {
   public:
    explicit Sink(State* s) : s_(s) {}
    void on_checked_emit(const std::string&, std::string_view type, std::string_view json,
                         const detail::JsonShape& shape) override {
      s_->outputs->publish(origin(), type, json, shape);
    }
    void on_unchecked_refused(const std::string&, std::string_view type, std::string_view json) override {
      s_->outputs->publish_unchecked(origin(), type, json);
    }
    ResultOrigin origin() const {
      std::lock_guard lk(s_->current_mu);
      return s_->current;
    }
    void on_notify(const std::string&, int level, std::string_view message) override {
      static const char* names[] = {"trace", "debug", "info", "warning", "error"};
      s_->outputs->notify(s_->origin, level >= 0 && level <= 4 ? names[level] : "info", message);
    }

   private:
    State* s_;  // the State owns the instance, so it outlives every call into this sink
  };

  void run(std::stop_token stop);
  void call(Input in, bool empty);
  void quarantine();
  void drop(const Input& in, const std::string& reason) {
    {
      std::lock_guard lk(acct);
      ++received;
      ++dropped;
    }
    drops.dropped(in, reason);
  }

  const ResultOrigin origin;
  const std::string key;
  const InstanceConfig cfg;
  const bool live_feed;
  std::shared_ptr<Outputs> outputs;
  DropReporter drops;
  std::unique_ptr<DropHeadQueue<Input>> queue;

  mutable std::mutex acct;  // the five figures of the accounting identity
  std::uint64_t received = 0, processed = 0, dropped = 0, queued = 0, in_flight = 0;
  std::atomic<std::uint64_t> errors{0};
  Histogram latency;  // capture to end of process()

  std::atomic<InstanceState> state{InstanceState::idle};
  std::atomic<bool> accepting{true};
  std::atomic<std::int64_t> call_started_ns{0};  // 0: not in a call
  std::atomic<std::int64_t> last_progress_ns{0};
  std::atomic<bool> reported_stuck{false};

  std::mutex current_mu;
  ResultOrigin current;

  // Worker thread only.
  std::uint64_t consecutive_errors = 0;
  std::uint64_t good_runs = 0;

  // Last: destroyed first, while everything its destroy() may emit into still exists.
  std::unique_ptr<PluginInstance> instance;  // created by create()
};

void InstanceRunner::State::call(Input in, bool empty) {
  {
    std::lock_guard lk(current_mu);
    current = origin;
    current.sequence = in.sequence;
    current.captured_wall_ns = empty ? wall_ns_now() : in.captured_wall_ns;
  }
  PluginInput pi;
  pi.stream = origin.stream;
  pi.frame = std::move(in.frame);
  if (in.record) pi.record_json = *in.record;
  call_started_ns.store(mono_ns_now());
  Status st;
  try {
    st = instance->process(pi);
  } catch (const std::exception& e) {
    st = Status{ErrorCode::internal, std::string("process() threw: ") + e.what()};
  }
  pi.frame = Frame();  // release our reference before counting the input done
  worker_progress();   // a call returned: the row's heartbeat and progress (docs/registry.md)
  const auto now = mono_ns_now();
  call_started_ns.store(0);
  last_progress_ns.store(now);
  if (!empty) latency.record_ns(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - in.captured_mono_ns)));
  {
    std::lock_guard lk(acct);
    if (!empty) {
      --in_flight;
      ++processed;
    }
  }
  if (reported_stuck.exchange(false)) {
    detail::log().info("instance {} returned after being stuck; fed again", detail::printable(key));
    accepting.store(true);
    if (state.load() == InstanceState::stuck) state.store(InstanceState::running);
  }
  if (st.ok()) {
    if (consecutive_errors > 0 && ++good_runs >= static_cast<std::uint64_t>(cfg.reset_after_good)) {
      consecutive_errors = 0;
      good_runs = 0;
    }
    return;
  }
  errors.fetch_add(1);
  ++consecutive_errors;
  good_runs = 0;
  if (consecutive_errors >= static_cast<std::uint64_t>(cfg.quarantine_after)) {
    detail::log().error("instance {}: {} failed runs in a row, quarantined (not fed until restarted); last: {}",
                        detail::printable(key), consecutive_errors, st.message());
    quarantine();
    return;
  }
  detail::log().error("instance {}: process() failed ({} in a row): {}", detail::printable(key), consecutive_errors,
                      st.message());
}

void InstanceRunner::State::quarantine() {
  accepting.store(false);
  state.store(InstanceState::quarantined);
  worker_declare("quarantined", std::to_string(consecutive_errors) + " failed runs in a row");
  outputs->notify(origin, "error",
                  "instance quarantined after " + std::to_string(consecutive_errors) + " failed runs in a row");
  queue->drain([this](Input&& in) {
    {
      std::lock_guard lk(acct);
      --queued;
      ++dropped;
    }
    drops.dropped(in, "instance quarantined");
  });
}

void InstanceRunner::State::run(std::stop_token stop) {
  using namespace std::chrono;
  const auto delay_ns = seconds_to_ns(cfg.process_delay);
  const auto empty_period_ns = delay_ns > 0 ? delay_ns : 1000000000;
  std::int64_t last_start = 0;
  state.store(InstanceState::running);
  worker_declare("ready", "running");
  while (!stop.stop_requested()) {
    worker_beat();  // each turn (at least every 200 ms): a call stuck in process() stops it
    if (state.load() == InstanceState::quarantined) {
      wait_for_stop(stop, seconds(1));
      continue;
    }
    // Back-off after failures: n failures in a row wait n x error_backoff_s (capped).
    if (consecutive_errors > 0 && good_runs == 0) {
      const double pause = std::min(cfg.max_backoff_s, cfg.error_backoff_s * static_cast<double>(consecutive_errors));
      if (pause > 0) {
        state.store(InstanceState::backing_off);
        char why[96];
        std::snprintf(why, sizeof why, "backing off %g s after %llu failed run(s) in a row", pause,
                      static_cast<unsigned long long>(consecutive_errors));
        worker_declare("degraded", why);
        if (wait_for_stop(stop, nanoseconds(seconds_to_ns(pause)))) break;
        state.store(InstanceState::running);
        worker_declare("ready", "running after back-off");
      }
    }
    if (delay_ns > 0 && last_start != 0) {
      const auto wait = last_start + delay_ns - mono_ns_now();
      if (wait > 0 && wait_for_stop(stop, nanoseconds(wait))) break;
    }
    auto budget = milliseconds(200);
    if (cfg.allow_empty_inputs) {
      const auto until = (last_start == 0 ? mono_ns_now() : last_start) + empty_period_ns - mono_ns_now();
      budget = std::min(budget, duration_cast<milliseconds>(nanoseconds(std::max<std::int64_t>(until, 0))));
    }
    auto in = queue->pop_for(budget);
    if (in) {
      {
        std::lock_guard lk(acct);
        --queued;
        ++in_flight;
      }
      last_start = mono_ns_now();
      call(std::move(*in), false);
    } else if (cfg.allow_empty_inputs && !stop.stop_requested() &&
               mono_ns_now() - last_start >= (last_start == 0 ? 0 : empty_period_ns)) {
      last_start = mono_ns_now();
      call(Input{}, true);
    }
  }
  if (state.load() != InstanceState::quarantined) {
    state.store(InstanceState::stopped);
    worker_declare("stopped", "worker stopped");
  }
}

InstanceRunner::InstanceRunner(const StreamConfig& stream, const StreamPluginConfig& plugin,
                               const InstanceConfig& config, std::shared_ptr<Outputs> outputs,
                               double drop_results_per_s)
    : s_(std::make_shared<State>(stream, plugin, config, std::move(outputs), drop_results_per_s)) {}

InstanceRunner::~InstanceRunner() { stop(); }

Status InstanceRunner::create(PluginLoader& loader) {
  if (s_->cfg.disabled) return {};
  auto sink = std::make_shared<State::Sink>(s_.get());
  auto made = loader.create_instance(s_->origin.signature, s_->key, s_->cfg.config.json, sink);
  if (!made.ok()) {
    return {made.status().code(), s_->cfg.where + ": " + s_->cfg.config.path + ": " + made.status().message()};
  }
  s_->instance = std::move(made).value();
  if (Status st = s_->instance->start(); !st.ok()) {
    return {st.code(), s_->cfg.where + ": " + s_->key + ": start failed: " + st.message()};
  }
  return {};
}

Status InstanceRunner::start(std::shared_ptr<WorkerPulse> pulse) {
  if (s_->cfg.disabled || worker_) return {};
  auto s = s_;
  WorkerOptions wo(s->origin.instance_id);
  wo.pulse = std::move(pulse);
  worker_ = std::make_unique<BaseWorker>(
      std::move(wo), [s](std::stop_token stop) { s->run(std::move(stop)); }, [] {}, s);
  return worker_->start();
}

void InstanceRunner::stop() {
  if (!worker_) return;
  if (Status st = worker_->stop(); !st.ok() && st.code() != ErrorCode::again) {
    detail::log().warn("instance {}: {} (its objects stay alive until the call returns)", detail::printable(key()),
                       st.message());
    // Let go of the stuck thread now (the destructor detaches it after one more join
    // timeout) rather than waiting for it again when the pipeline is destroyed.
    worker_.reset();
  }
}

std::size_t InstanceRunner::drain() {
  auto& s = *s_;
  const auto n = s.queue->drain([&s](Input&& in) {
    {
      std::lock_guard lk(s.acct);
      --s.queued;
      ++s.dropped;
    }
    s.drops.dropped(in, "not processed before stop");
  });
  s.drops.flush(true);
  return n;
}

std::int64_t InstanceRunner::offer(const Input& input, bool live_feed, const std::stop_token& stop) {
  auto& s = *s_;
  if (s.cfg.disabled) return 0;
  if (!s.accepting.load(std::memory_order_acquire)) {
    s.drop(input, s.state.load() == InstanceState::quarantined ? "instance quarantined" : "instance stuck");
    return 0;
  }
  {
    std::lock_guard lk(s.acct);
    ++s.received;
    ++s.queued;
  }
  Input copy = input;
  if (live_feed) {
    const auto r = s.queue->try_push(std::move(copy));
    if (!accepted(r) && r != PushResult::dropped_newest) {
      {
        std::lock_guard lk(s.acct);
        --s.queued;
        ++s.dropped;
      }
      s.drops.dropped(input, "not processed before stop");
    }
    return 0;
  }
  // Lossless: wait for room, re-checking stop and whether the instance still accepts.
  const auto t0 = mono_ns_now();
  for (;;) {
    worker_beat();  // the capture thread is alive while it waits: `blocked`, not `stalled`
    const auto r = s.queue->push_for(std::move(copy), std::chrono::milliseconds(50));
    if (accepted(r)) return mono_ns_now() - t0;
    if (r == PushResult::closed || stop.stop_requested() || !s.accepting.load(std::memory_order_acquire)) break;
  }
  {
    std::lock_guard lk(s.acct);
    --s.queued;
    ++s.dropped;
  }
  s.drops.dropped(input, stop.stop_requested() ? "not processed before stop"
                                               : s.state.load() == InstanceState::quarantined ? "instance quarantined"
                                                                                              : "instance stuck");
  return mono_ns_now() - t0;
}

void InstanceRunner::check(std::int64_t now) {
  auto& s = *s_;
  const auto started = s.call_started_ns.load();
  if (started != 0 && now - started > seconds_to_ns(s.cfg.stuck_after_s) && !s.reported_stuck.exchange(true)) {
    s.accepting.store(false);
    s.state.store(InstanceState::stuck);
    // The call may have returned meanwhile; its worker then saw reported_stuck either
    // set (and undid it) or not yet set: in the second case undo it here, or the
    // instance would stay unfed for good. (Flag first, re-check after: see call().)
    if (s.call_started_ns.load() != started) {
      if (s.reported_stuck.exchange(false)) {
        s.accepting.store(true);
        if (s.state.load() == InstanceState::stuck) s.state.store(InstanceState::running);
      }
      s.drops.flush(false);
      return;
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", s.cfg.stuck_after_s);
    const std::string msg = std::string("in one process() call for more than ") + secs +
                            " s: reported stuck, not fed until it returns; its queued inputs are dropped";
    detail::log().error("instance {}: {}", detail::printable(s.key), msg);
    s.outputs->notify(s.origin, "error", msg);
    // What waits in its queue would only grow stale (and hold frames: ~6 MB each at
    // 1080p) while the call does not return: drop it, reported like every drop.
    s.queue->drain([&s](Input&& in) {
      {
        std::lock_guard lk(s.acct);
        --s.queued;
        ++s.dropped;
      }
      s.drops.dropped(in, "instance stuck");
    });
  }
  s.drops.flush(false);
}

bool InstanceRunner::idle() const {
  const auto st = s_->state.load();
  // A stuck instance is not fed and its queue was dropped: waiting for it to "drain"
  // would keep --exit-when-done waiting for a call that may never return.
  if (st == InstanceState::disabled || st == InstanceState::quarantined || st == InstanceState::stuck) return true;
  std::lock_guard lk(s_->acct);
  return s_->queued == 0 && s_->in_flight == 0;
}

InstanceFigures InstanceRunner::figures() const {
  InstanceFigures f;
  {
    std::lock_guard lk(s_->acct);
    f.received = s_->received;
    f.processed = s_->processed;
    f.dropped = s_->dropped;
    f.queued = s_->queued;
    f.in_flight = s_->in_flight;
  }
  f.errors = s_->errors.load();
  const auto h = s_->latency.data();
  f.latency_p50_ms = h.quantile(0.5) * 1e3;
  f.latency_p99_ms = h.quantile(0.99) * 1e3;
  const auto last = s_->last_progress_ns.load();
  f.last_progress_age_s = last == 0 ? -1 : static_cast<double>(mono_ns_now() - last) / 1e9;
  f.state = s_->state.load();
  return f;
}

const std::string& InstanceRunner::key() const noexcept { return s_->key; }
bool InstanceRunner::disabled() const noexcept { return s_->cfg.disabled; }
const ResultOrigin& InstanceRunner::origin() const noexcept { return s_->origin; }

}  // namespace edgert::pipeline
