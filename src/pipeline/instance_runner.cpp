#include "pipeline/instance_runner.hpp"

#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "pipeline/restart_policy.hpp"
#include "plugins/checked_sink.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <thread>

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
    case InstanceState::restarting: return "restarting";
  }
  return "unknown";
}

namespace {

std::int64_t seconds_to_ns(double s) { return static_cast<std::int64_t>(std::llround(s * 1e9)); }

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

// One plugin object and the calls made into it. A replacement of a stuck instance
// starts a new generation; the old one is retired: its thread destroys its object once
// the stuck call returns, and touches nothing else of the instance's after that.
struct Generation {
  explicit Generation(std::uint64_t n) : number(n) {}
  const std::uint64_t number;
  std::unique_ptr<PluginInstance> instance;  // its worker thread's (created by create() before that)
  // When the current call started (mono ns); 0: not in a call; kRetired: retired in a
  // call (set by compare-exchange from the start time, so a call that returns at that
  // moment either sees the retirement or prevents it).
  std::atomic<std::int64_t> call_started_ns{0};
  std::atomic<bool> reported_stuck{false};
  static constexpr std::int64_t kRetired = -1;
};

struct InstanceRunner::State {
  State(const StreamConfig& stream, const StreamPluginConfig& plugin, const InstanceConfig& c,
        std::shared_ptr<Outputs> out, double drop_rate, Supervision supervision)
      : origin{stream.name, plugin.signature, c.instance_id, 0, 0},
        key(stream.name + "/" + plugin.signature + "/" + c.instance_id),
        cfg(c),
        live_feed(stream.capture ? stream.capture->live_feed : false),
        outputs(std::move(out)),
        drops(outputs, origin, drop_rate),
        sup(std::move(supervision)),
        policy(sup.policy, sup.seed) {
    if (!sup.history) sup.history = std::make_shared<MemoryRestartHistory>();
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

  void run(const std::stop_token& stop, const std::shared_ptr<Generation>& g);
  // False when the generation was retired during the call (its thread must leave).
  bool call(Generation& g, Input in, bool empty);
  void quarantine(const std::string& last);
  Status create_instance(Generation& g);
  void schedule_restart();
  void restart_now(Generation& g, const std::string& reason);
  std::int64_t steady() const { return sup.steady_ms ? sup.steady_ms() : mono_ns_now() / 1000000; }
  std::int64_t wall() const { return sup.wall_ms ? sup.wall_ms() : detail::wall_clock_ms(); }
  std::shared_ptr<Generation> generation() {
    std::lock_guard lk(gen_mu);
    return gen;
  }
  void set_error(const std::string& e) {
    std::lock_guard lk(err_mu);
    last_error = e;
  }
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
  std::atomic<std::int64_t> last_progress_ns{0};
  std::atomic<std::uint64_t> retired_in_flight{0};  // inputs held by retired (stuck) calls

  // Supervision.
  Supervision sup;
  PluginLoader* loader = nullptr;  // create()'s; outlives the workers (Pipeline::destroy)
  std::atomic<bool> restart_requested{false};   // RESTART: the worker re-creates at once
  std::atomic<std::int64_t> restart_due_ms{-1};  // steady; -1: none scheduled
  std::atomic<std::int64_t> restart_delay_ms{-1};
  std::atomic<std::uint64_t> restarts{0}, replaced{0};
  std::atomic<bool> gave_up{false};
  std::atomic<bool> restart_failed{false};  // the last re-creation's outcome (set before `restarts` moves)
  mutable std::mutex err_mu;
  std::string last_error;
  std::mutex policy_mu;  // the policy: the current worker, and replacements from the monitor
  RestartPolicy policy;
  std::int64_t counted_since_wall = INT64_MIN;  // under policy_mu: RESTART forgives what came before

  std::mutex current_mu;
  ResultOrigin current;

  // Worker thread only.
  std::uint64_t consecutive_errors = 0;
  std::uint64_t good_runs = 0;

  // Last: destroyed first, while everything its destroy() may emit into still exists.
  std::mutex gen_mu;
  std::shared_ptr<Generation> gen = std::make_shared<Generation>(1);  // the current one
};

bool InstanceRunner::State::call(Generation& g, Input in, bool empty) {
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
  g.call_started_ns.store(std::max<std::int64_t>(mono_ns_now(), 1));
  Status st;
  try {
    st = g.instance->process(pi);
  } catch (const std::exception& e) {
    st = Status{ErrorCode::internal, std::string("process() threw: ") + e.what()};
  }
  pi.frame = Frame();  // release our reference before counting the input done
  worker_progress();   // a call returned: the row's heartbeat and progress (docs/registry.md)
  const auto now = mono_ns_now();
  const bool retired = g.call_started_ns.exchange(0) == Generation::kRetired;
  if (retired) {
    // Replaced while stuck: count the input done and leave; a newer generation feeds.
    {
      std::lock_guard lk(acct);
      if (!empty) {
        --in_flight;
        ++processed;
      }
    }
    if (!empty) retired_in_flight.fetch_sub(1);
    detail::log().info("instance {}: the stuck process() call of generation {} returned; its object is destroyed",
                       detail::printable(key), g.number);
    g.call_started_ns.store(Generation::kRetired);
    return false;
  }
  last_progress_ns.store(now);
  if (!empty) latency.record_ns(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - in.captured_mono_ns)));
  {
    std::lock_guard lk(acct);
    if (!empty) {
      --in_flight;
      ++processed;
    }
  }
  if (g.reported_stuck.exchange(false)) {
    detail::log().info("instance {} returned after being stuck; fed again", detail::printable(key));
    accepting.store(true);
    if (state.load() == InstanceState::stuck) state.store(InstanceState::running);
  }
  if (st.ok()) {
    if (consecutive_errors > 0 && ++good_runs >= static_cast<std::uint64_t>(cfg.reset_after_good)) {
      consecutive_errors = 0;
      good_runs = 0;
    }
    return true;
  }
  errors.fetch_add(1);
  ++consecutive_errors;
  good_runs = 0;
  set_error(st.message());
  if (consecutive_errors >= static_cast<std::uint64_t>(cfg.quarantine_after)) {
    detail::log().error("instance {}: {} failed runs in a row, quarantined (not fed until restarted); last: {}",
                        detail::printable(key), consecutive_errors, st.message());
    quarantine(st.message());
    return true;
  }
  detail::log().error("instance {}: process() failed ({} in a row): {}", detail::printable(key), consecutive_errors,
                      st.message());
  return true;
}

void InstanceRunner::State::quarantine(const std::string& last) {
  accepting.store(false);
  state.store(InstanceState::quarantined);
  worker_declare("quarantined", std::to_string(consecutive_errors) + " failed runs in a row; last: " + last);
  outputs->notify(origin, "error", "instance quarantined after " + std::to_string(consecutive_errors) +
                                       " failed runs in a row; last: " + last);
  queue->drain([this](Input&& in) {
    {
      std::lock_guard lk(acct);
      --queued;
      ++dropped;
    }
    drops.dropped(in, "instance quarantined");
  });
  schedule_restart();
}

// Worker thread, with the instance quarantined.
void InstanceRunner::State::schedule_restart() {
  std::unique_lock lk(policy_mu);
  const auto now_wall = wall();
  const auto now = steady();
  sup.history->prune(now_wall);
  const auto n = sup.history->restarts_since(key, std::max(now_wall - policy.window_ms(), counted_since_wall));
  const auto d = policy.on_failure(now, n);
  lk.unlock();
  std::string last;
  {
    std::lock_guard elk(err_mu);
    last = last_error;
  }
  if (!d.restart) {
    restart_due_ms.store(-1);
    gave_up.store(true);
    detail::log().error("instance {}: not restarted ({}); stays quarantined until a RESTART command; last error: {}",
                        detail::printable(key), d.why, last);
    if (sup.policy.policy == RestartMode::never) return;  // the quarantine's notification said it all
    outputs->notify(origin, "error", "instance stays quarantined (" + d.why + "); last error: " + last);
    if (sup.gave_up) sup.gave_up(key, d.why + "; last error: " + last);
    return;
  }
  restart_delay_ms.store(d.delay_ms);
  restart_due_ms.store(now + d.delay_ms);
  detail::log().warn("instance {}: restarting in {} ms (restart {} in a row; {} of {} within {} s)",
                     detail::printable(key), d.delay_ms, d.attempt, n + 1, sup.policy.intensity,
                     seconds_text(sup.policy.window_s));
}

Status InstanceRunner::State::create_instance(Generation& g) {
  auto sink = std::make_shared<Sink>(this);
  auto made = loader->create_instance(origin.signature, key, cfg.config.json, sink);
  if (!made.ok()) {
    return {made.status().code(), cfg.where + ": " + cfg.config.path + ": " + made.status().message()};
  }
  g.instance = std::move(made).value();
  if (Status st = g.instance->start(); !st.ok()) {
    return {st.code(), cfg.where + ": " + key + ": start failed: " + st.message()};
  }
  return {};
}

// Worker thread of generation g: destroy its object, create a new one.
void InstanceRunner::State::restart_now(Generation& g, const std::string& reason) {
  state.store(InstanceState::restarting);
  worker_declare("restarting", reason);
  restart_due_ms.store(-1);
  if (g.instance) {
    (void)g.instance->stop();
    g.instance.reset();  // the plugin's destroy
  }
  const Status st = create_instance(g);
  restart_failed.store(!st.ok());
  const auto n = restarts.fetch_add(1) + 1;
  {
    std::lock_guard lk(policy_mu);
    policy.restarted(steady());
    const auto now_wall = wall();
    sup.history->record_restart(key, now_wall, now_wall + policy.window_ms(), reason);
  }
  if (!st.ok()) {
    set_error(st.message());
    detail::log().error("instance {}: restart failed ({}): {}", detail::printable(key), reason, st.message());
    state.store(InstanceState::quarantined);
    worker_declare("quarantined", "restart failed: " + st.message());
    schedule_restart();
    return;
  }
  consecutive_errors = 0;
  good_runs = 0;
  gave_up.store(false);
  detail::log().info("instance {}: restarted ({}; {} restart(s) so far)", detail::printable(key), reason, n);
  outputs->notify(origin, "info", "instance restarted (" + reason + ")");
  state.store(InstanceState::running);
  worker_declare("ready", "restarted (" + reason + ")");
  accepting.store(true);
}

void InstanceRunner::State::run(const std::stop_token& stop, const std::shared_ptr<Generation>& g) {
  using namespace std::chrono;
  const auto delay_ns = seconds_to_ns(cfg.process_delay);
  const auto empty_period_ns = delay_ns > 0 ? delay_ns : 1000000000;
  std::int64_t last_start = 0;
  if (!g->instance) {  // a replacement: its object is made here, off the monitor's thread
    state.store(InstanceState::restarting);
    worker_declare("restarting", "a replacement instance is being created");
    if (Status st = create_instance(*g); !st.ok()) {
      set_error(st.message());
      detail::log().error("instance {}: the replacement could not be created: {}", detail::printable(key),
                          st.message());
      quarantine(st.message());
    } else {
      accepting.store(true);
    }
  }
  if (state.load() != InstanceState::quarantined) {
    state.store(InstanceState::running);
    worker_declare("ready", "running");
  }
  while (!stop.stop_requested()) {
    worker_beat();  // each turn (at least every 200 ms): a call stuck in process() stops it
    if (state.load() == InstanceState::quarantined) {
      if (restart_requested.exchange(false)) {
        {
          std::lock_guard lk(policy_mu);
          policy.clear();
          counted_since_wall = wall();
        }
        restart_now(*g, "RESTART command");
        continue;
      }
      if (const auto due = restart_due_ms.load(); due >= 0 && steady() >= due) {
        restart_now(*g, "supervisor back-off");
        continue;
      }
      wait_for_stop(stop, milliseconds(10));
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
      if (!call(*g, std::move(*in), false)) break;
    } else if (cfg.allow_empty_inputs && !stop.stop_requested() &&
               mono_ns_now() - last_start >= (last_start == 0 ? 0 : empty_period_ns)) {
      last_start = mono_ns_now();
      if (!call(*g, Input{}, true)) break;
    }
  }
  if (g->call_started_ns.load() == Generation::kRetired) {
    // Retired: destroyed here, on its own thread, now that its call has returned.
    if (g->instance) {
      (void)g->instance->stop();
      g->instance.reset();
    }
    return;
  }
  if (state.load() != InstanceState::quarantined) {
    state.store(InstanceState::stopped);
    worker_declare("stopped", "worker stopped");
  }
}

InstanceRunner::InstanceRunner(const StreamConfig& stream, const StreamPluginConfig& plugin,
                               const InstanceConfig& config, std::shared_ptr<Outputs> outputs,
                               double drop_results_per_s, Supervision supervision)
    : s_(std::make_shared<State>(stream, plugin, config, std::move(outputs), drop_results_per_s,
                                 std::move(supervision))) {}

InstanceRunner::~InstanceRunner() { stop(); }

Status InstanceRunner::create(PluginLoader& loader) {
  if (s_->cfg.disabled) return {};
  s_->loader = &loader;
  return s_->create_instance(*s_->generation());
}

Status InstanceRunner::start(std::shared_ptr<WorkerPulse> pulse) {
  std::lock_guard lk(workers_mu_);
  pulse_ = std::move(pulse);
  if (s_->cfg.disabled || worker_) return {};
  stopped_ = false;
  return start_worker();
}

// Under workers_mu_: a worker for the current generation.
Status InstanceRunner::start_worker() {
  auto s = s_;
  WorkerOptions wo(s->origin.instance_id);
  // A replacement (replace_stuck) beats the same row: the row is the instance, and the
  // stuck thread, inside its call, does not beat it.
  wo.pulse = pulse_;
  worker_ = std::make_unique<BaseWorker>(
      std::move(wo),
      [s](std::stop_token stop) {
        const auto g = s->generation();
        s->run(stop, g);
      },
      [] {}, s);
  return worker_->start();
}

void InstanceRunner::stop() {
  std::vector<std::unique_ptr<BaseWorker>> workers;
  {
    std::lock_guard lk(workers_mu_);
    stopped_ = true;
    workers = std::move(retired_);
    retired_.clear();
    if (worker_) workers.push_back(std::move(worker_));
  }
  for (auto& w : workers) {
    if (Status st = w->stop(); !st.ok() && st.code() != ErrorCode::again) {
      detail::log().warn("instance {}: {} (its objects stay alive until the call returns)", detail::printable(key()),
                         st.message());
    }
    // A worker still stuck is let go now (its destructor detaches it after one more
    // join timeout) rather than waited for again when the pipeline is destroyed.
    w.reset();
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
    s.drop(input, s.state.load() == InstanceState::stuck ? "instance stuck" : "instance quarantined");
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
                                               : s.state.load() == InstanceState::stuck ? "instance stuck"
                                                                                        : "instance quarantined");
  return mono_ns_now() - t0;
}

void InstanceRunner::check(std::int64_t now) {
  auto& s = *s_;
  const auto g = s.generation();
  const auto started = g->call_started_ns.load();
  if (started > 0 && now - started > seconds_to_ns(s.cfg.stuck_after_s) && !g->reported_stuck.exchange(true)) {
    s.accepting.store(false);
    s.state.store(InstanceState::stuck);
    // The call may have returned meanwhile; its worker then saw reported_stuck either
    // set (and undid it) or not yet set: in the second case undo it here, or the
    // instance would stay unfed for good. (Flag first, re-check after: see call().)
    if (g->call_started_ns.load() != started) {
      if (g->reported_stuck.exchange(false)) {
        s.accepting.store(true);
        if (s.state.load() == InstanceState::stuck) s.state.store(InstanceState::running);
      }
      s.drops.flush(false);
      return;
    }
    const bool replace = s.sup.policy.policy != RestartMode::never &&
                         (s.sup.policy.replace_stuck || s.sup.policy.policy == RestartMode::always);
    const std::string msg = "in one process() call for more than " + seconds_text(s.cfg.stuck_after_s) +
                            " s: reported stuck, not fed until it returns" +
                            (replace ? " (a replacement is made)" : "") + "; its queued inputs are dropped";
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
    if (replace) (void)replace_stuck("replace_stuck");
  }
  s.drops.flush(false);
}

// Monitor or command thread. Retires the stuck generation and starts a new one.
Result<std::string> InstanceRunner::replace_stuck(const char* why) {
  auto& s = *s_;
  std::lock_guard lk(workers_mu_);
  if (stopped_ || !worker_) return Status{ErrorCode::closed, "instance " + s.key + " is stopped"};
  const auto old = s.generation();
  auto started = old->call_started_ns.load();
  if (started <= 0) return Status{ErrorCode::again, "instance " + s.key + " returned from its call meanwhile"};
  const bool manual = std::string_view(why) == "RESTART command";
  {
    std::lock_guard plk(s.policy_mu);
    const auto now_wall = s.wall();
    if (manual) {
      s.policy.clear();
      s.counted_since_wall = now_wall;
    }
    const auto n =
        s.sup.history->restarts_since(s.key, std::max(now_wall - s.policy.window_ms(), s.counted_since_wall));
    if (n >= s.sup.policy.intensity) {
      s.gave_up.store(true);
      const std::string msg = "stuck and not replaced: intensity spent: " + std::to_string(n) + " restarts within " +
                              seconds_text(s.sup.policy.window_s) + " s (intensity " +
                              std::to_string(s.sup.policy.intensity) + ")";
      detail::log().error("instance {}: {}; stays stuck until its call returns or a RESTART command",
                          detail::printable(s.key), msg);
      return Status{ErrorCode::quota_exceeded, msg};
    }
    if (!old->call_started_ns.compare_exchange_strong(started, Generation::kRetired)) {
      return Status{ErrorCode::again, "instance " + s.key + " returned from its call meanwhile"};
    }
    s.policy.restarted(s.steady());
    s.sup.history->record_restart(s.key, now_wall, now_wall + s.policy.window_ms(), "replaced stuck instance");
  }
  // The retired call still holds its input (in_flight) until it returns.
  s.retired_in_flight.fetch_add(1);
  auto next = std::make_shared<Generation>(old->number + 1);
  {
    std::lock_guard glk(s.gen_mu);
    s.gen = next;
  }
  s.restarts.fetch_add(1);
  s.replaced.fetch_add(1);
  detail::log().warn(
      "instance {}: replaced ({}): generation {} stays in its stuck process() call and is destroyed when it returns; "
      "generation {} takes the input",
      detail::printable(s.key), why, old->number, next->number);
  s.outputs->notify(s.origin, "warning",
                    "stuck instance replaced; the stuck object is destroyed when its call returns");
  // The old worker stays in its call; stop() joins it later (or lets it go).
  retired_.push_back(std::move(worker_));
  if (Status st = start_worker(); !st.ok()) return st;
  return std::string("replaced");
}

Result<std::string> InstanceRunner::restart() {
  auto& s = *s_;
  if (s.cfg.disabled) return Status{ErrorCode::invalid_argument, s.key + " is disabled in the configuration"};
  {
    std::lock_guard lk(workers_mu_);
    if (stopped_ || !worker_) return Status{ErrorCode::invalid_argument, s.key + " is not running (stopped)"};
  }
  const auto st = s.state.load();
  if (st == InstanceState::stuck) return replace_stuck("RESTART command");
  if (st != InstanceState::quarantined) {
    return Status{ErrorCode::invalid_argument,
                  s.key + " is " + to_string(st) + ", not quarantined or stuck: nothing to restart"};
  }
  const auto before = s.restarts.load();
  s.restart_requested.store(true);
  // The worker re-creates it within about 10 ms; wait (bounded) to say how it went.
  for (int i = 0; i < 500 && s.restarts.load() == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (s.restarts.load() == before) return std::string("restart requested");
  if (s.restart_failed.load()) {
    std::lock_guard elk(s.err_mu);
    return Status{ErrorCode::internal, s.key + ": restart failed: " + s.last_error};
  }
  return std::string("restarted");
}

bool InstanceRunner::idle() const {
  const auto st = s_->state.load();
  // A stuck instance is not fed and its queue was dropped: waiting for it to "drain"
  // would keep --exit-when-done waiting for a call that may never return.
  if (st == InstanceState::disabled || st == InstanceState::quarantined || st == InstanceState::stuck) return true;
  std::lock_guard lk(s_->acct);
  return s_->queued == 0 && s_->in_flight == s_->retired_in_flight.load();
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
  f.restarts = s_->restarts.load();
  f.replaced = s_->replaced.load();
  const auto due = s_->restart_due_ms.load();
  f.restart_in_ms = due < 0 ? -1 : std::max<std::int64_t>(0, due - s_->steady());
  f.restart_delay_ms = s_->restart_delay_ms.load();
  f.gave_up = s_->gave_up.load();
  {
    std::lock_guard lk(s_->err_mu);
    f.last_error = s_->last_error;
  }
  return f;
}

const std::string& InstanceRunner::key() const noexcept { return s_->key; }
bool InstanceRunner::disabled() const noexcept { return s_->cfg.disabled; }
const ResultOrigin& InstanceRunner::origin() const noexcept { return s_->origin; }

}  // namespace edgert::pipeline
