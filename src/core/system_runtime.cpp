#include <edgert/system_runtime.hpp>

#include "core/log.hpp"
#include "core/loop.hpp"
#include "core/thread_name.hpp"

#include <boost/asio/executor_work_guard.hpp>
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

struct PeriodicTask {
  PeriodicTask(asio::io_context& io, std::string n, Clock::duration p, std::function<void()> f)
      : timer(io), name(std::move(n)), period(p), fn(std::move(f)) {}
  asio::steady_timer timer;
  std::string name;
  Clock::duration period;
  Clock::time_point next;
  std::function<void()> fn;
};

void arm(const std::shared_ptr<PeriodicTask>& task) {
  task->next += task->period;
  task->timer.expires_at(task->next);
  task->timer.async_wait([task](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the loop is closing
    try {
      task->fn();
    } catch (const std::exception& e) {
      detail::log().error("periodic task '{}' threw: {}", task->name, e.what());
    } catch (...) {
      detail::log().error("periodic task '{}' threw an unknown exception", task->name);
    }
    arm(task);
  });
}

}  // namespace

struct SystemRuntime::Impl {
  explicit Impl(RuntimeOptions opts) : options(std::move(opts)) {}

  RuntimeOptions options;
  std::shared_ptr<asio::io_context> io = std::make_shared<asio::io_context>(1);
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{io->get_executor()};
  std::thread loop_thread;
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
  std::vector<std::shared_ptr<PeriodicTask>> periodic;
  std::atomic<std::uint64_t> heartbeats{0};

  void run_stop_stage(const char* label, const std::vector<std::size_t>& order);
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
}

SystemRuntime::~SystemRuntime() { stop(); }

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
  m.started = true;
  m.start_time = Clock::now();
  lk.unlock();
  detail::log().info("runtime starting ({} participants)", m.participants.size());

  auto start_stage = [&](Stage stage) -> Status {
    for (std::size_t i = 0; i < m.participants.size(); ++i) {
      auto& [s, hooks] = m.participants[i];
      if (s != stage) continue;
      try {
        if (hooks.start) hooks.start();
      } catch (const std::exception& e) {
        return {ErrorCode::internal,
                std::string("start of '") + hooks.name + "' (" + to_string(stage) + ") failed: " + e.what()};
      }
      bool stopped_meanwhile;
      {
        std::lock_guard guard(m.mu);
        stopped_meanwhile = m.stopping || m.stopped;
      }
      if (stopped_meanwhile) {  // the hook itself called stop(): undo just this one
        if (hooks.stop) hooks.stop();
        return {ErrorCode::closed, "stop() was called during start() (by '" + hooks.name + "')"};
      }
      m.started_participants.push_back(i);
    }
    return {};
  };
  auto start_heartbeat = [&] {
    if (m.options.heartbeat_hz <= 0) return;
    const auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1.0 / m.options.heartbeat_hz));
    spawn_periodic("heartbeat", period, [&m] {
      HeartbeatTick tick;
      tick.seq = m.heartbeats.fetch_add(1) + 1;
      tick.uptime = Clock::now() - m.start_time;
      tick.wall = std::chrono::system_clock::now();
      if (m.options.heartbeat_sink) m.options.heartbeat_sink(tick);
    });
  };

  for (Stage stage : {Stage::config, Stage::build, Stage::processing, Stage::acquisition, Stage::comms,
                      Stage::outputs, Stage::triggers}) {
    if (stage == Stage::triggers) start_heartbeat();
    const auto t0 = Clock::now();
    if (Status st = start_stage(stage); !st.ok()) {
      if (st.code() == ErrorCode::closed) return st;
      detail::log().error("runtime start failed: {}", st.message());
      stop();
      return st;
    }
    {
      std::lock_guard guard(m.mu);
      if (m.stopping || m.stopped) return {ErrorCode::closed, "stop() was called during start()"};
    }
    detail::log().debug("start stage {} took {} ms", to_string(stage), ms_since(t0));
  }
  detail::log().info("runtime started");
  return {};
}

void SystemRuntime::Impl::run_stop_stage(const char* label, const std::vector<std::size_t>& order) {
  const auto t0 = Clock::now();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    auto& hooks = participants[*it].second;
    if (!hooks.stop) continue;
    try {
      hooks.stop();
    } catch (const std::exception& e) {
      detail::log().error("stop of '{}' threw: {}", hooks.name, e.what());
    } catch (...) {
      detail::log().error("stop of '{}' threw an unknown exception", hooks.name);
    }
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  if (took > options.stage_timeout) {
    detail::log().warn("stop stage {} took {} ms (budget {} ms)", label, took.count(),
                       options.stage_timeout.count());
  } else {
    detail::log().debug("stop stage {} took {} ms", label, took.count());
  }
}

void SystemRuntime::Impl::stop_started() {
  auto in_stage = [&](std::initializer_list<Stage> stages) {
    std::vector<std::size_t> out;
    for (std::size_t i : started_participants) {
      if (std::find(stages.begin(), stages.end(), participants[i].first) != stages.end()) out.push_back(i);
    }
    return out;
  };
  run_stop_stage("triggers", in_stage({Stage::triggers}));
  run_stop_stage("acquisition", in_stage({Stage::acquisition}));
  run_stop_stage("processing", in_stage({Stage::processing}));

  const auto t0 = Clock::now();
  std::size_t drained = 0;
  for (std::size_t i : started_participants) {
    auto& hooks = participants[i].second;
    if (!hooks.drain) continue;
    try {
      drained += hooks.drain();
    } catch (const std::exception& e) {
      detail::log().error("drain of '{}' threw: {}", hooks.name, e.what());
    }
  }
  detail::log().debug("stop stage drain took {} ms ({} items)", ms_since(t0), drained);

  {
    // The heartbeat stops before the outputs it feeds.
    std::lock_guard lk(mu);
    for (auto& p : periodic) {
      if (p->name == "heartbeat") asio::post(*io, [p] { p->timer.cancel(); });
    }
  }
  run_stop_stage("outputs", in_stage({Stage::outputs}));
  run_stop_stage("comms", in_stage({Stage::comms}));
  run_stop_stage("build", in_stage({Stage::build}));
  run_stop_stage("config", in_stage({Stage::config}));
  started_participants.clear();
}

void SystemRuntime::stop() {
  auto& m = *impl_;
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
  const auto t0 = Clock::now();
  const bool was_started = m.started;
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

bool SystemRuntime::spawn_periodic(std::string name, std::chrono::nanoseconds period, std::function<void()> fn) {
  auto& m = *impl_;
  std::lock_guard lk(m.mu);
  if (m.loop_closed) return false;
  auto task = std::make_shared<PeriodicTask>(*m.io, std::move(name),
                                             std::chrono::duration_cast<Clock::duration>(period), std::move(fn));
  task->next = Clock::now();
  m.periodic.push_back(task);
  asio::post(*m.io, [task] { arm(task); });
  return true;
}

void SystemRuntime::shutdown_loop() {
  auto& m = *impl_;
  std::list<BackgroundTask> tasks;
  std::vector<std::shared_ptr<PeriodicTask>> periodic;
  {
    std::lock_guard lk(m.mu);
    if (m.loop_closed) return;
    m.loop_closed = true;
    tasks.swap(m.tasks);
    periodic.swap(m.periodic);
  }
  const auto t0 = Clock::now();
  for (auto& p : periodic) asio::post(*m.io, [p] { p->timer.cancel(); });
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
