#include "pipeline/pipeline.hpp"

#include "core/clock.hpp"
#include "core/log.hpp"

#include <edgert/base_worker.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <system_error>
#include <thread>

namespace edgert::pipeline {

using json = nlohmann::json;

Pipeline::Pipeline(std::string node_id, const PipelineSection& section, const std::vector<StreamConfig>& streams)
    : section_(section), stream_configs_(streams), outputs_(std::make_shared<Outputs>(std::move(node_id), section)) {}

Pipeline::~Pipeline() {
  stop_triggers();
  stop_streams();
  stop_instances();
  close();
  destroy();
}

void Pipeline::add_sink(ResultSink sink) { outputs_->add_sink(std::move(sink)); }

void Pipeline::set_pulse_factory(PulseFactory factory) { pulses_ = std::move(factory); }

void Pipeline::set_supervisor(SupervisorSetup setup) {
  supervisor_ = std::move(setup);
  if (!supervisor_.history) supervisor_.history = std::make_shared<MemoryRestartHistory>();
}

// An instance's worker thread: the instance gave up. Its stream counts the give-up;
// past the stream's intensity within its window, the node is asked to stop.
void Pipeline::escalate(const std::string& stream, const std::string& key, const std::string& why) {
  const auto& p = supervisor_.restart.policy_of("stream");
  if (p.policy == RestartMode::never) return;
  const auto now = supervisor_.wall_ms ? supervisor_.wall_ms() : detail::wall_clock_ms();
  const auto window = static_cast<std::int64_t>(std::llround(p.window_s * 1000.0));
  const std::string id = "stream/" + stream;
  supervisor_.history->record_restart(id, now, now + window, key + " gave up: " + why);
  const auto n = supervisor_.history->restarts_since(id, now - window);
  if (n < p.intensity) {
    detail::log().error("stream '{}': instance {} gave up ({} of {} within {} s before escalating)", stream, key, n,
                        p.intensity, p.window_s);
    return;
  }
  const std::string reason = "supervisor: stream '" + stream + "': " + std::to_string(n) +
                             " instance give-ups within " + std::to_string(static_cast<long long>(p.window_s)) +
                             " s (intensity " + std::to_string(p.intensity) + "); last: " + key + ": " + why;
  if (!supervisor_.restart.escalate_to_node || !supervisor_.request_shutdown) {
    detail::log().error("{} (health.restart.escalate_to_node is false: the node keeps running)", reason);
    return;
  }
  supervisor_.request_shutdown(reason);
}

Status Pipeline::create(PluginLoader& loader, MetricsRegistry& metrics) {
  std::unique_lock lk(runners_mu_);
  loader_ = &loader;
  const double rate = section_.drop_results_per_s;
  for (const auto& stream : stream_configs_) {
    std::vector<std::shared_ptr<InstanceRunner>> consumers;
    for (const auto& plugin : stream.plugins) {
      for (const auto& inst : plugin.instances) {
        Supervision sup;
        sup.policy = supervisor_.restart.policy_of("instance");
        sup.history = supervisor_.history;
        sup.steady_ms = supervisor_.steady_ms;
        sup.wall_ms = supervisor_.wall_ms;
        sup.gave_up = [this, name = stream.name](const std::string& key, const std::string& why) {
          escalate(name, key, why);
        };
        auto runner = std::make_shared<InstanceRunner>(stream, plugin, inst, outputs_, rate, std::move(sup));
        if (Status st = runner->create(loader); !st.ok()) {
          instances_.clear();
          streams_.clear();
          return st;
        }
        consumers.push_back(runner);
        instances_.push_back(std::move(runner));
      }
    }
    streams_.push_back(std::make_unique<StreamRunner>(stream, std::move(consumers), outputs_, rate));
  }

  // Metrics (docs/metrics.md, "Pipeline"): read from the runners' own figures at snapshot time.
  for (const auto& s : streams_) {
    const Labels l{{"stream", s->name()}};
    registrations_.push_back(metrics.register_collector(
        {{"edgert_stream_captured_total", l, "items captured", MetricType::counter},
         {"edgert_stream_errors_total", l, "failed opens and captures", MetricType::counter},
         {"edgert_stream_reconnects_total", l, "source reopenings", MetricType::counter},
         {"edgert_stream_fps", l, "items per second over the last second", MetricType::gauge},
         {"edgert_stream_capture_wait_seconds_total", l, "time spent waiting for room in lossless queues",
          MetricType::counter},
         {"edgert_stream_triggers_dropped_total", l, "triggers dropped from a full trigger queue",
          MetricType::counter},
         {"edgert_stream_state", l,
          "0 idle, 1 opening, 2 running, 3 stalled, 4 consumers_blocked, 5 reconnecting, 6 ended, 7 failed, 8 stopped",
          MetricType::gauge}},
        [r = s.get()](std::span<double> out) {
          const auto f = r->figures();
          out[0] = static_cast<double>(f.captured);
          out[1] = static_cast<double>(f.errors);
          out[2] = static_cast<double>(f.reconnects);
          out[3] = f.fps;
          out[4] = f.capture_wait_s;
          out[5] = static_cast<double>(f.triggers_dropped);
          out[6] = static_cast<double>(f.state);
        }));
  }
  for (const auto& i : instances_) {
    const auto& o = i->origin();
    const Labels l{{"stream", o.stream}, {"signature", o.signature}, {"instance", o.instance_id}};
    registrations_.push_back(metrics.register_collector(
        {{"edgert_instance_received_total", l, "inputs offered to the instance", MetricType::counter},
         {"edgert_instance_processed_total", l, "process() calls that returned", MetricType::counter},
         {"edgert_instance_dropped_total", l, "inputs dropped (each an ERROR result or part of a summary)",
          MetricType::counter},
         {"edgert_instance_errors_total", l, "process() calls that failed", MetricType::counter},
         {"edgert_instance_queue_depth", l, "inputs queued or in a call", MetricType::gauge},
         {"edgert_instance_latency_p50_seconds", l, "capture to end of process(), median", MetricType::gauge},
         {"edgert_instance_latency_p99_seconds", l, "capture to end of process(), 99th percentile",
          MetricType::gauge},
         {"edgert_instance_last_progress_age_seconds", l, "since the last call returned (-1: never)",
          MetricType::gauge},
         {"edgert_instance_state", l,
          "0 idle, 1 running, 2 backing_off, 3 stuck, 4 quarantined, 5 stopped, 6 disabled, 7 restarting",
          MetricType::gauge},
         {"edgert_instance_restarts_total", l, "re-creations by the supervisor or RESTART, and stuck replacements",
          MetricType::counter}},
        [r = i.get()](std::span<double> out) {
          const auto f = r->figures();
          out[0] = static_cast<double>(f.received);
          out[1] = static_cast<double>(f.processed);
          out[2] = static_cast<double>(f.dropped);
          out[3] = static_cast<double>(f.errors);
          out[4] = static_cast<double>(f.queued + f.in_flight);
          out[5] = f.latency_p50_ms / 1e3;
          out[6] = f.latency_p99_ms / 1e3;
          out[7] = f.last_progress_age_s;
          out[8] = static_cast<double>(f.state);
          out[9] = static_cast<double>(f.restarts);
        }));
  }
  const auto& c = outputs_->counters();
  registrations_.push_back(metrics.register_collector(
      {{"edgert_pipeline_results_total", {}, "results published (ERROR results included)", MetricType::counter},
       {"edgert_pipeline_error_results_total", {}, "ERROR results published", MetricType::counter},
       {"edgert_pipeline_stored_total", {}, "results committed to the outbox", MetricType::counter},
       {"edgert_pipeline_store_errors_total", {}, "results the outbox refused (logged)", MetricType::counter},
       {"edgert_pipeline_sink_errors_total", {}, "in-process result sinks that threw", MetricType::counter},
       {"edgert_pipeline_file_errors_total", {}, "results_jsonl lines not written", MetricType::counter}},
      [&c](std::span<double> out) {
        out[0] = static_cast<double>(c.results.load());
        out[1] = static_cast<double>(c.error_results.load());
        out[2] = static_cast<double>(c.stored.load());
        out[3] = static_cast<double>(c.store_errors.load());
        out[4] = static_cast<double>(c.sink_errors.load());
        out[5] = static_cast<double>(c.file_errors.load());
      }));
  return {};
}

Status Pipeline::open(Mailbox* mailbox) { return outputs_->open(mailbox); }

Status Pipeline::start_instances() {
  for (const auto& i : instances_) {
    std::shared_ptr<WorkerPulse> pulse;
    if (pulses_ && !i->disabled()) {
      const auto& o = i->origin();
      pulse = pulses_({"instance", i->key(), {{"stream", o.stream}, {"signature", o.signature}}, false, {}});
    }
    if (Status st = i->start(std::move(pulse)); !st.ok()) return st;
  }
  return {};
}

void Pipeline::stop_instances() {
  // In parallel: a stuck call costs its worker's join timeout once, not once per
  // stuck instance one after the other.
  std::vector<std::thread> stoppers;
  for (const auto& i : instances_) {
    try {
      stoppers.emplace_back([r = i] { r->stop(); });
    } catch (const std::system_error&) {
      i->stop();  // no thread to spare: stop it here
    }
  }
  for (auto& t : stoppers) t.join();
}

Status Pipeline::start_streams() {
  if (!loader_) return {};
  for (const auto& s : streams_) {
    std::shared_ptr<WorkerPulse> pulse;
    if (pulses_) {
      PulseRequest r{"stream", s->name(), {}, false, {}};
      if (const auto& c = s->config().capture) {
        r.labels["capture"] = c->type;
        // A continuous source is expected to deliver: beats without items read `blocked`
        // (waiting for room). A paced source is judged by its frame interval when longer.
        r.expects_progress = !s->triggered();
        if (c->fps > 0) r.period = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(1000.0 / c->fps)));
      } else {
        r.labels["trigger"] = s->config().trigger ? s->config().trigger->type : "";
      }
      pulse = pulses_(r);
    }
    if (Status st = s->start(*loader_, std::move(pulse)); !st.ok()) return st;
  }
  return {};
}

void Pipeline::stop_streams() {
  for (const auto& s : streams_) s->stop();
}

void Pipeline::start_triggers(SystemRuntime& runtime) {
  for (const auto& s : streams_) {
    if (const auto period = s->trigger_period_ms(); period > 0) {
      periodic_.push_back(runtime.spawn_periodic("trigger-" + s->name(), std::chrono::milliseconds(period),
                                                 [r = s.get()] { (void)r->trigger(); }));
    }
  }
  const auto period = std::chrono::milliseconds(section_.monitor_period_ms);
  monitor_ = std::make_unique<BaseWorker>(WorkerOptions("pipeline-mon"), [this, period](std::stop_token stop) {
    while (!wait_for_stop(stop, period)) monitor();
  });
  if (Status st = monitor_->start(); !st.ok()) detail::log().error("pipeline monitor: {}", st.message());
}

void Pipeline::stop_triggers() {
  for (auto& p : periodic_) p.cancel();
  periodic_.clear();
  if (monitor_) {
    (void)monitor_->stop();
    monitor_.reset();
  }
}

void Pipeline::monitor() {
  std::shared_lock lk(runners_mu_);
  const auto now = mono_ns_now();
  for (const auto& s : streams_) s->check(now);
  for (const auto& i : instances_) i->check(now);
}

std::size_t Pipeline::drain() {
  std::size_t n = 0;
  for (const auto& i : instances_) n += i->drain();
  return n;
}

void Pipeline::close() {
  outputs_->close();  // first: every outbox write settled, so `stored` is final
  if (instances_.empty() && streams_.empty()) return;
  auto last = live_summary_json();
  std::lock_guard lk(final_mu_);
  final_summary_ = std::move(last);
}

void Pipeline::destroy() {
  for (auto& r : registrations_) r.reset();  // before the lock: a snapshot may be collecting
  std::unique_lock lk(runners_mu_);
  registrations_.clear();
  streams_.clear();
  instances_.clear();
  loader_ = nullptr;
}

Result<std::string> Pipeline::restart(const std::string& component) {
  std::shared_lock lk(runners_mu_);
  std::string name = component;
  bool want_stream = true, want_instance = true;
  if (name.rfind("instance/", 0) == 0) {
    name = name.substr(9);
    want_stream = false;
  } else if (name.rfind("stream/", 0) == 0) {
    name = name.substr(7);
    want_instance = false;
  }
  std::vector<std::shared_ptr<InstanceRunner>> named;
  bool whole_stream = false;
  for (const auto& i : instances_) {
    const auto& o = i->origin();
    if (want_instance && (i->key() == name || o.stream + "/" + o.instance_id == name)) named.push_back(i);
  }
  if (named.empty() && want_stream) {
    for (const auto& i : instances_) {
      if (i->origin().stream == name) named.push_back(i);
    }
    whole_stream = !named.empty();
  }
  if (named.empty()) return Status{ErrorCode::not_found, "no instance or stream named '" + component + "'"};
  json restarted = json::array();
  json refused = json::object();
  for (const auto& i : named) {
    if (whole_stream) {  // a stream restarts what needs it and leaves the running ones alone
      const auto st = i->figures().state;
      if (st != InstanceState::quarantined && st != InstanceState::stuck) continue;
    }
    auto r = i->restart();
    if (r.ok()) {
      restarted.push_back({{"component", i->key()}, {"done", r.value()}});
    } else {
      refused[i->key()] = r.status().message();
    }
  }
  if (restarted.empty() && refused.empty()) {
    return Status{ErrorCode::invalid_argument, "stream '" + name + "': no quarantined or stuck instance to restart"};
  }
  if (restarted.empty() && !whole_stream && named.size() == 1) {
    return Status{ErrorCode::invalid_argument, refused.begin().value().get<std::string>()};
  }
  return json{{"restarted", restarted}, {"not_restarted", refused}}.dump();
}

Status Pipeline::trigger(const std::string& stream) {
  std::shared_lock lk(runners_mu_);
  for (const auto& s : streams_) {
    if (s->name() == stream) return s->trigger();
  }
  return {ErrorCode::not_found, "no stream named '" + stream + "'"};
}

bool Pipeline::done() const {
  std::shared_lock lk(runners_mu_);
  if (streams_.empty()) return false;
  for (const auto& s : streams_) {
    if (!s->ended()) return false;
  }
  for (const auto& i : instances_) {
    if (!i->idle()) return false;
  }
  return true;
}

std::string Pipeline::summary_json() const {
  {
    std::lock_guard lk(final_mu_);
    if (!final_summary_.empty()) return final_summary_;
  }
  return live_summary_json();
}

std::string Pipeline::live_summary_json() const {
  std::shared_lock lk(runners_mu_);
  auto round3 = [](double v) { return std::isfinite(v) ? std::round(v * 1000.0) / 1000.0 : 0.0; };
  json doc;
  doc["streams"] = json::object();
  for (const auto& s : streams_) {
    const auto f = s->figures();
    doc["streams"][s->name()] = {{"captured", f.captured},
                                 {"errors", f.errors},
                                 {"reconnects", f.reconnects},
                                 {"fps", round3(f.fps)},
                                 {"capture_wait_s", round3(f.capture_wait_s)},
                                 {"longest_call_ms", round3(f.longest_call_ms)},
                                 {"triggers", f.triggers},
                                 {"triggers_dropped", f.triggers_dropped},
                                 {"state", to_string(f.state)}};
  }
  doc["instances"] = json::object();
  for (const auto& i : instances_) {
    const auto f = i->figures();
    doc["instances"][i->key()] = {{"received", f.received},
                                  {"processed", f.processed},
                                  {"dropped", f.dropped},
                                  {"errors", f.errors},
                                  {"queued", f.queued + f.in_flight},
                                  {"latency_p50_ms", round3(f.latency_p50_ms)},
                                  {"latency_p99_ms", round3(f.latency_p99_ms)},
                                  {"last_progress_age_s", round3(f.last_progress_age_s)},
                                  {"state", to_string(f.state)},
                                  {"restarts", f.restarts},
                                  {"replaced", f.replaced},
                                  {"restart_in_ms", f.restart_in_ms},
                                  {"restart_delay_ms", f.restart_delay_ms},
                                  {"gave_up", f.gave_up},
                                  {"last_error", f.last_error}};
  }
  const auto& c = outputs_->counters();
  doc["outputs"] = {{"results", c.results.load()},       {"error_results", c.error_results.load()},
                    {"stored", c.stored.load()},         {"store_errors", c.store_errors.load()},
                    {"sink_errors", c.sink_errors.load()}, {"file_errors", c.file_errors.load()},
                    {"late", c.late.load()}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace edgert::pipeline
