#include <edgert/system_runtime.hpp>

#include "core/log.hpp"
#include "core/loop.hpp"
#include "core/thread_name.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <list>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

namespace edgert {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

const char* to_string(Stage stage) noexcept {
  switch (stage) {
    case Stage::config: return "config";
    case Stage::build: return "build";
    case Stage::storage: return "storage";
    case Stage::processing: return "processing";
    case Stage::acquisition: return "acquisition";
    case Stage::comms: return "comms";
    case Stage::outputs: return "outputs";
    case Stage::triggers: return "triggers";
  }
  return "unknown";
}

namespace {

long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Thread-backed task; `done` is shared so an abandoned thread can finish safely.
struct BackgroundTask {
  std::string name;
  std::stop_source stop;
  std::thread thread;
  std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
};

// Runs every stage's hook in start order; stop walks this list backwards.
constexpr Stage kStartOrder[] = {Stage::config,     Stage::build,       Stage::storage,  Stage::comms,
                                 Stage::outputs,    Stage::processing,  Stage::acquisition, Stage::triggers};

}  // namespace

namespace detail {

struct PeriodicTimer;

// What a PeriodicHandle shares with the loop. `call_mu` is held while fn runs, so
// cancel() can promise that no call begins after it returns; `calling` lets fn
// cancel its own task. Holds no asio object, so a handle may outlive the runtime.
struct PeriodicState {
  std::string name;
  std::mutex call_mu;
  std::function<void()> fn;  // guarded by call_mu; released on cancel
  std::atomic<bool> cancelled{false};
  std::atomic<std::thread::id> calling{};
  std::weak_ptr<asio::io_context> io;            // never keeps the loop alive
  std::weak_ptr<PeriodicTimer> timer;  // to wake the pending wait on cancel
};

// The loop's side: owned by the pending wait handler and by the runtime.
struct PeriodicTimer {
  PeriodicTimer(asio::io_context& io, Clock::duration p, std::shared_ptr<PeriodicState> s)
      : timer(io), period(p), state(std::move(s)) {}
  asio::steady_timer timer;  // touched only on the loop thread
  Clock::duration period;
  Clock::time_point next;
  std::shared_ptr<PeriodicState> state;
};

void cancel_periodic(PeriodicState& s) noexcept {
  if (s.calling.load() == std::this_thread::get_id()) {  // from inside fn: it ends soon
    s.cancelled.store(true);
    return;
  }
  std::function<void()> released;
  {
    std::lock_guard lk(s.call_mu);  // waits for a call in progress
    s.cancelled.store(true);
    released.swap(s.fn);
  }
  if (auto io = s.io.lock()) {
    try {
      // Ends the pending wait now rather than a period later, freeing the timer.
      asio::post(*io, [weak = s.timer] {
        if (auto t = weak.lock()) t->timer.cancel();
      });
    } catch (...) {  // allocation failure: the flag alone keeps the promise
    }
  }
}

}  // namespace detail

void PeriodicHandle::cancel() noexcept {
  if (state_) detail::cancel_periodic(*state_);
}

bool PeriodicHandle::active() const noexcept {
  if (!state_ || state_->cancelled.load()) return false;
  auto io = state_->io.lock();
  return io && !io->stopped();
}

namespace {

void arm(const std::shared_ptr<detail::PeriodicTimer>& task) {
  // Fixed rate: deadlines are whole periods after the first, and ticks missed while
  // the loop was busy are skipped rather than fired in a burst.
  task->next += task->period;
  if (const auto now = Clock::now(); task->next <= now) {
    task->next += ((now - task->next) / task->period + 1) * task->period;
  }
  task->timer.expires_at(task->next);
  task->timer.async_wait([task](const boost::system::error_code& ec) {
    if (ec) return;  // the timer was cancelled
    auto& st = *task->state;
    {
      std::unique_lock lk(st.call_mu);
      // A timer that had already expired when cancel() ran still calls this handler
      // with success: the flag, not the timer, decides.
      if (st.cancelled.load()) return;
      st.calling.store(std::this_thread::get_id());
      try {
        st.fn();
      } catch (const std::exception& e) {
        detail::log().error("periodic task '{}' threw: {}", st.name, e.what());
      } catch (...) {
        detail::log().error("periodic task '{}' threw an unknown exception", st.name);
      }
      st.calling.store(std::thread::id{});
      if (st.cancelled.load()) {  // fn cancelled its own task
        st.fn = nullptr;
        return;
      }
    }
    arm(task);
  });
}

}  // namespace

Status validate(const RuntimeOptions& o) {
  const auto hb = o.heartbeat_interval;
  if (!(hb.count() == 0 ||
        (hb >= RuntimeOptions::min_heartbeat_interval && hb <= RuntimeOptions::max_heartbeat_interval))) {
    return {ErrorCode::invalid_argument,
            fmt::format("heartbeat_interval must be 0 (off) or within [{}, {}] ms, got {} ms",
                        RuntimeOptions::min_heartbeat_interval.count(),
                        RuntimeOptions::max_heartbeat_interval.count(), hb.count())};
  }
  for (auto [name, v] : {std::pair{"stop_stage_warn", o.stop_stage_warn}, std::pair{"task_timeout", o.task_timeout},
                         std::pair{"loop_timeout", o.loop_timeout}}) {
    if (v.count() < 0) return {ErrorCode::invalid_argument, fmt::format("{} must not be negative", name)};
  }
  return {};
}

struct SystemRuntime::Impl {
  explicit Impl(RuntimeOptions opts) : options(std::move(opts)) {}

  RuntimeOptions options;
  std::shared_ptr<asio::io_context> io = std::make_shared<asio::io_context>(1);
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{io->get_executor()};
  std::thread loop_thread;
  std::thread::id loop_id;  // set before the constructor returns
  std::thread stopper;      // runs a stop() asked for on the loop thread; joined by ~SystemRuntime
  std::shared_ptr<std::atomic<bool>> loop_exited = std::make_shared<std::atomic<bool>>(false);

  // Held by start() and stop() while hooks run, so they never interleave. Recursive:
  // a hook may call stop() on its own thread.
  std::recursive_mutex lifecycle;
  std::mutex mu;  // guards everything below
  std::condition_variable cv;
  bool loop_closed = false;
  bool started = false;
  bool stopped = false;
  bool stopping = false;
  std::thread::id stopping_thread;
  Clock::time_point start_time;
  std::vector<std::pair<Stage, LifecycleHooks>> participants;
  std::vector<std::size_t> started_participants;  // indexes, in start order
  std::list<BackgroundTask> tasks;
  std::vector<std::shared_ptr<detail::PeriodicTimer>> periodic;
  std::atomic<std::uint64_t> heartbeats{0};
  PeriodicHandle heartbeat;            // started after outputs, cancelled before them
  std::optional<std::size_t> starting;  // the participant whose start hook runs now
  std::thread::id starting_thread;

  void stop_hook(LifecycleHooks& hooks);
  void stop_started();
};

namespace detail {
struct RuntimeAccess {
  static asio::io_context& io(SystemRuntime& rt) { return *rt.impl_->io; }
};
asio::io_context& io_context(SystemRuntime& runtime) { return RuntimeAccess::io(runtime); }
}  // namespace detail

SystemRuntime::SystemRuntime(RuntimeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->loop_thread = std::thread([io = impl_->io, exited = impl_->loop_exited] {
    detail::set_current_thread_name("edgert-loop");
    for (;;) {
      try {
        io->run();
        break;
      } catch (const std::exception& e) {
        detail::log().error("edgert loop: a handler threw: {}", e.what());
      } catch (...) {
        detail::log().error("edgert loop: a handler threw an unknown exception");
      }
    }
    exited->store(true);
  });
  impl_->loop_id = impl_->loop_thread.get_id();
}

SystemRuntime::~SystemRuntime() {
  stop();
  if (impl_->stopper.joinable()) impl_->stopper.join();  // stop() waited for it to finish
}

Status SystemRuntime::add_participant(Stage stage, LifecycleHooks hooks) {
  std::lock_guard lk(impl_->mu);
  if (impl_->started || impl_->stopped) {
    return {ErrorCode::invalid_argument,
            "add_participant('" + hooks.name + "'): the runtime has already been started"};
  }
  impl_->participants.emplace_back(stage, std::move(hooks));
  return {};
}

Status SystemRuntime::start() {
  auto& m = *impl_;
  std::lock_guard lifecycle(m.lifecycle);
  std::unique_lock lk(m.mu);
  if (m.stopped || m.stopping) return {ErrorCode::closed, "the runtime was stopped; create a new one"};
  if (m.started) return {};
  if (Status st = validate(m.options); !st.ok()) return st;
  const auto heartbeat_interval = m.options.heartbeat_interval;
  m.started = true;
  m.start_time = Clock::now();
  lk.unlock();
  detail::log().info("runtime starting ({} participants)", m.participants.size());

  auto stopped_meanwhile = [&] {
    std::lock_guard guard(m.mu);
    return m.stopping || m.stopped;
  };
  for (Stage stage : kStartOrder) {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < m.participants.size(); ++i) {
      auto& [s, hooks] = m.participants[i];
      if (s != stage) continue;
      {
        std::lock_guard guard(m.mu);
        m.starting = i;
        m.starting_thread = std::this_thread::get_id();
      }
      // The hook's own Status is what the caller gets: a component that reports
      // io_error for a locked data_dir must reach the host as io_error. Only a throw,
      // which no hook should do, becomes `internal`, naming the component.
      const std::string what = std::string("start of '") + hooks.name + "' (" + to_string(stage) + ")";
      Status st;
      try {
        if (hooks.start) st = hooks.start();
      } catch (const std::exception& e) {
        st = {ErrorCode::internal, what + " threw: " + e.what()};
      } catch (...) {
        st = {ErrorCode::internal, what + " threw an unknown exception"};
      }
      if (!st.ok() && st.message().empty()) st = {st.code(), what + " failed"};
      {
        std::lock_guard guard(m.mu);
        m.starting.reset();
        if (st.ok() && !m.stopped) m.started_participants.push_back(i);  // a same-thread stop() already stopped it
      }
      if (!st.ok()) {
        // The log names the component; a message that already does (a throw, an
        // empty message) is not named twice.
        if (st.message().rfind(what, 0) == 0) {
          detail::log().error("runtime start failed: {}", st.message());
        } else {
          detail::log().error("runtime start failed: {} failed: {}", what, st.message());
        }
        stop_during_start();
        return st;
      }
      // The hook called stop() (on this thread: it already ran; on another: it runs
      // once start() releases the lifecycle lock; see stop_during_start).
      if (stopped_meanwhile()) return {ErrorCode::closed, "stop() was called during start() (by '" + hooks.name + "')"};
    }
    detail::log().debug("start stage {} took {} ms", to_string(stage), ms_since(t0));
    if (stage == Stage::outputs && heartbeat_interval.count() > 0) {
      m.heartbeat = spawn_periodic("heartbeat", heartbeat_interval, [&m] {
        HeartbeatTick tick;
        tick.seq = m.heartbeats.fetch_add(1) + 1;
        tick.uptime = Clock::now() - m.start_time;
        tick.wall = std::chrono::system_clock::now();
        if (m.options.heartbeat_sink) m.options.heartbeat_sink(tick);
      });
    }
  }
  detail::log().info("runtime started");
  return {};
}

void SystemRuntime::Impl::stop_hook(LifecycleHooks& hooks) {
  if (!hooks.stop) return;
  try {
    hooks.stop();
  } catch (const std::exception& e) {
    detail::log().error("stop of '{}' threw: {}", hooks.name, e.what());
  } catch (...) {
    detail::log().error("stop of '{}' threw an unknown exception", hooks.name);
  }
}

// Stops what started in exact reverse order. The drain step and the heartbeat sit
// between the last hook above outputs and the first hook of outputs or below.
void SystemRuntime::Impl::stop_started() {
  std::vector<std::size_t> order;
  {
    std::lock_guard lk(mu);
    order = started_participants;
    // stop() from inside a start hook: that hook counts as started.
    if (starting && starting_thread == std::this_thread::get_id()) order.push_back(*starting);
    started_participants.clear();
  }
  auto after_outputs = [&](std::size_t i) { return participants[i].first > Stage::outputs; };
  bool drained = false;
  auto drain_and_stop_heartbeat = [&] {
    if (drained) return;
    drained = true;
    const auto t0 = Clock::now();
    std::size_t items = 0;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      auto& hooks = participants[*it].second;
      if (!hooks.drain) continue;
      try {
        items += hooks.drain();
      } catch (const std::exception& e) {
        detail::log().error("drain of '{}' threw: {}", hooks.name, e.what());
      } catch (...) {
        detail::log().error("drain of '{}' threw an unknown exception", hooks.name);
      }
    }
    detail::log().debug("stop step drain took {} ms ({} items)", ms_since(t0), items);
    heartbeat.cancel();  // waits for a tick in progress: none begins after this
  };

  std::size_t k = order.size();
  while (k > 0) {
    const Stage stage = participants[order[k - 1]].first;
    if (!after_outputs(order[k - 1])) drain_and_stop_heartbeat();
    const auto t0 = Clock::now();
    for (; k > 0 && participants[order[k - 1]].first == stage; --k) stop_hook(participants[order[k - 1]].second);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    if (took > options.stop_stage_warn) {
      detail::log().warn("stop stage {} took {} ms (warning threshold {} ms)", to_string(stage), took.count(),
                         options.stop_stage_warn.count());
    } else {
      detail::log().debug("stop stage {} took {} ms", to_string(stage), took.count());
    }
  }
  drain_and_stop_heartbeat();
}

void SystemRuntime::stop() {
  auto& m = *impl_;
  if (std::this_thread::get_id() == m.loop_id) {
    // From a timer or heartbeat callback: stop hooks may wait on the loop and
    // shutdown_loop() joins it, so the stop runs on a thread of its own.
    std::lock_guard lk(m.mu);
    if (!m.stopped && !m.stopping && !m.stopper.joinable()) {
      detail::log().warn("stop() called on the loop thread; stopping on a helper thread");
      m.stopper = std::thread([this] {
        detail::set_current_thread_name("edgert-stop");
        stop();
      });
    }
    return;
  }
  {
    std::unique_lock lk(m.mu);
    if (m.stopped) return;
    if (m.stopping) {
      if (m.stopping_thread == std::this_thread::get_id()) return;  // re-entered from a hook
      m.cv.wait(lk, [&] { return m.stopped; });  // the first stop() is bounded
      return;
    }
    m.stopping = true;
    m.stopping_thread = std::this_thread::get_id();
  }
  std::lock_guard lifecycle(m.lifecycle);  // waits for a start() in progress on another thread
  stop_locked();
}

// With the lifecycle lock held, by the thread that claimed the stop (`stopping`).
void SystemRuntime::stop_locked() {
  auto& m = *impl_;
  const auto t0 = Clock::now();
  bool was_started = false;
  {
    std::lock_guard lk(m.mu);
    was_started = m.started && !m.stopped;
  }
  if (was_started) detail::log().info("runtime stopping");
  m.stop_started();
  shutdown_loop();
  {
    std::lock_guard lk(m.mu);
    m.stopped = true;
    m.stopping = false;
  }
  m.cv.notify_all();
  if (was_started) detail::log().info("runtime stopped in {} ms", ms_since(t0));
}

// start() failed, or stop() was called while it held the lifecycle lock. If a stop()
// on another thread began, it waits for that lock: leave the stop to it (it runs as
// soon as start() returns). Calling stop() here would wait for that stop() in turn, a
// deadlock; and running its stop hooks here would too when that thread is one a hook
// joins (a NodeOptions::on_heartbeat that calls Node::stop() runs on the publisher
// worker, which the publisher's stop hook joins). Otherwise stop here, now.
void SystemRuntime::stop_during_start() {
  auto& m = *impl_;
  {
    std::lock_guard lk(m.mu);
    if (m.stopped) return;   // a hook's stop() on this thread already did it
    if (m.stopping) return;  // another thread's stop(); never this one (a hook's stop() has returned)
    m.stopping = true;
    m.stopping_thread = std::this_thread::get_id();
  }
  stop_locked();
}

bool SystemRuntime::running() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->started && !impl_->stopped && !impl_->stopping;
}

bool SystemRuntime::post(std::function<void()> fn) {
  std::lock_guard lk(impl_->mu);
  if (impl_->loop_closed) return false;
  asio::post(*impl_->io, std::move(fn));
  return true;
}

bool SystemRuntime::spawn_background_task(std::string name, std::function<void(std::stop_token)> fn) {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  if (m.loop_closed) return false;
  // Reap finished tasks so a long-lived node does not accumulate records.
  for (auto it = m.tasks.begin(); it != m.tasks.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = m.tasks.erase(it);
    } else {
      ++it;
    }
  }
  auto& task = m.tasks.emplace_back();
  task.name = std::move(name);
  task.thread = std::thread([fn = std::move(fn), token = task.stop.get_token(), done = task.done,
                             tname = task.name] {
    detail::set_current_thread_name(tname);
    try {
      fn(token);
    } catch (const std::exception& e) {
      detail::log().error("background task '{}' threw: {}", tname, e.what());
    } catch (...) {
      detail::log().error("background task '{}' threw an unknown exception", tname);
    }
    done->store(true);
  });
  return true;
}

PeriodicHandle SystemRuntime::spawn_periodic(std::string name, std::chrono::nanoseconds period,
                                             std::function<void()> fn) {
  auto& m = *impl_;
  const auto p = std::chrono::duration_cast<Clock::duration>(period);
  if (p <= Clock::duration::zero()) {
    detail::log().error("spawn_periodic('{}'): the period must be positive", name);
    return {};
  }
  std::lock_guard lk(m.mu);
  if (m.loop_closed) return {};
  // Forget tasks that were cancelled, so a long-lived node does not accumulate them.
  std::erase_if(m.periodic, [](const auto& t) { return t->state->cancelled.load(); });
  auto state = std::make_shared<detail::PeriodicState>();
  state->name = std::move(name);
  state->fn = std::move(fn);
  state->io = m.io;
  auto task = std::make_shared<detail::PeriodicTimer>(*m.io, p, state);
  state->timer = task;
  task->next = Clock::now();
  m.periodic.push_back(task);
  asio::post(*m.io, [task] { arm(task); });
  return PeriodicHandle(std::move(state));
}

void SystemRuntime::shutdown_loop() {
  auto& m = *impl_;
  std::list<BackgroundTask> tasks;
  std::vector<std::shared_ptr<detail::PeriodicTimer>> periodic;
  {
    std::lock_guard lk(m.mu);
    if (m.loop_closed) return;
    m.loop_closed = true;
    tasks.swap(m.tasks);
    periodic.swap(m.periodic);
  }
  const auto t0 = Clock::now();
  for (auto& p : periodic) detail::cancel_periodic(*p->state);
  for (auto& t : tasks) t.stop.request_stop();

  const auto deadline = t0 + m.options.task_timeout;
  std::vector<std::string> pending;
  for (auto& t : tasks) {
    while (!t.done->load() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (t.done->load()) {
      t.thread.join();
    } else {
      pending.push_back(t.name);
      t.thread.detach();  // abandoned: it owns everything it touches (see header)
    }
  }

  m.guard.reset();
  m.io->stop();
  const auto loop_deadline = Clock::now() + m.options.loop_timeout;
  while (!m.loop_exited->load() && Clock::now() < loop_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (m.loop_exited->load()) {
    m.loop_thread.join();
  } else {
    detail::log().warn("shutdown_loop: the loop thread is stuck in a handler after {} ms; abandoning it",
                       m.options.loop_timeout.count());
    m.loop_thread.detach();  // it holds its own reference to the io_context
  }

  if (pending.empty()) {
    detail::log().debug("shutdown_loop pending_tasks=0 ({} ms)", ms_since(t0));
  } else {
    std::string names;
    for (auto& n : pending) names += (names.empty() ? "" : ", ") + n;
    detail::log().info("shutdown_loop pending_tasks={} [{}] still running after {} ms; abandoned",
                       pending.size(), names, m.options.task_timeout.count());
  }
}

std::size_t SystemRuntime::pending_tasks() const {
  std::lock_guard lk(impl_->mu);
  return static_cast<std::size_t>(
      std::count_if(impl_->tasks.begin(), impl_->tasks.end(), [](const BackgroundTask& t) { return !t.done->load(); }));
}

std::uint64_t SystemRuntime::heartbeats() const noexcept { return impl_->heartbeats.load(); }

}  // namespace edgert
