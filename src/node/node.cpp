#include <edgert/node.hpp>

#include <edgert/mailbox.hpp>
#include <edgert/base_worker.hpp>
#include <edgert/component_metrics.hpp>
#include <edgert/component_registry.hpp>
#include <edgert/drophead_queue.hpp>
#include <edgert/metrics.hpp>
#include <edgert/plugin_host.hpp>
#include <edgert/queue_metrics.hpp>

#include "comms/comms.hpp"
#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "node/node_comms.hpp"
#include "node/node_health.hpp"
#include "node/node_store.hpp"
#include "pipeline/pipeline.hpp"
#include "plugins/search_paths.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>

namespace edgert {

namespace {

RuntimeOptions runtime_options(const Config& cfg) {
  RuntimeOptions o;
  o.heartbeat_interval = std::chrono::milliseconds(cfg.node.heartbeat_interval_ms);
  o.stop_stage_warn = std::chrono::milliseconds(cfg.runtime.stop_stage_warn_ms);
  o.task_timeout = std::chrono::milliseconds(cfg.runtime.task_timeout_ms);
  return o;
}

MailboxOptions mailbox_options(const Config& cfg) {
  const auto& m = cfg.mailbox;
  MailboxOptions mo;
  mo.data_dir = cfg.node.data_dir;
  mo.synchronous_full = m.synchronous == "full";
  mo.max_messages = static_cast<std::uint64_t>(m.max_messages);
  mo.max_bytes = static_cast<std::uint64_t>(m.max_bytes);
  mo.quota_policy = m.quota_policy == "evict_oldest" ? QuotaPolicy::evict_oldest : QuotaPolicy::reject_new;
  mo.max_payload_bytes = static_cast<std::size_t>(m.max_payload_bytes);
  mo.max_ttl = std::chrono::seconds(m.max_ttl_s);
  mo.wal_limit_bytes = static_cast<std::uint64_t>(m.wal_limit_bytes);
  mo.max_json_depth = static_cast<std::size_t>(m.max_json_depth);
  mo.max_id_bytes = static_cast<std::size_t>(m.max_id_bytes);
  mo.close_timeout = std::chrono::milliseconds(m.close_timeout_ms);
  mo.cleanup_interval = std::chrono::seconds(m.cleanup_interval_s);
  mo.inbox_retention = std::chrono::seconds(m.inbox_retention_s);
  mo.inbox_max_messages = static_cast<std::uint64_t>(m.inbox_max_messages);
  mo.inbox_max_bytes = static_cast<std::uint64_t>(m.inbox_max_bytes);
  mo.inbox_min_free_bytes = static_cast<std::uint64_t>(m.inbox_min_free_bytes);
  return mo;
}

PluginLoaderOptions loader_options(const Config& cfg) {
  PluginLoaderOptions o;
  o.search_paths = cfg.plugins.paths;
  o.secured = cfg.plugins.secured;
  o.allow = cfg.plugins.allow;
  o.max_payload_bytes = static_cast<std::size_t>(cfg.mailbox.max_payload_bytes);  // what emit may send is storable
  o.max_json_depth = static_cast<std::size_t>(cfg.mailbox.max_json_depth);
  // An unchanged plugin file is not loaded in a helper again (docs/plugins.md, "The scan cache").
  o.scan_cache_path = (std::filesystem::path(cfg.node.data_dir) / "plugin-scan-cache.json").string();
  return o;
}

// The signatures the configuration's streams use: capture types and stream plugins
// (disabled instances included: the pipeline creates them).
std::set<std::string> used_signatures(const Config& cfg) {
  std::set<std::string> used;
  for (const auto& stream : cfg.streams) {
    if (stream.capture) used.insert(stream.capture->type);
    for (const auto& p : stream.plugins) used.insert(p.signature);
  }
  return used;
}

struct LoadedPlugins {
  std::size_t refused = 0;
  std::size_t unused = 0;  // files scanned and accepted that no stream uses: not loaded
};

// Loads the plugins the configuration uses from the search paths (docs/plugins.md,
// "Where plugins are found"). Every file is first scanned in a child
// (scan_plugins_isolated, answered from the scan cache when the file is unchanged), so
// one that crashes or hangs while loading is logged at ERROR and skipped instead of
// killing the node; of the files that scanned clean, only those providing a signature
// in `used` are loaded in-process (a pack loads whole). Without the scan helper (an
// embedder that did not install it) everything is loaded in-process, after one WARNING.
LoadedPlugins load_plugins(PluginLoader& loader, const PluginLoaderOptions& options, const std::set<std::string>& used) {
  LoadedPlugins n;
  if (const auto problem = detail::scanner_helper_problem(options); !problem.empty()) {
    detail::log().warn("plugins are loaded without a crash check: {}", problem);
    n.refused = loader.load_all().size();
    return n;
  }
  std::vector<std::string> dirs;
  for (const auto& dir : loader.search_paths()) {
    std::error_code ec;
    if (std::filesystem::is_directory(dir, ec)) dirs.push_back(dir);
  }
  const auto scans = scan_plugins_isolated(dirs, options);
  std::set<std::string> wanted;  // files providing a used signature
  std::set<std::string> accepted;
  for (const auto& scan : scans) {
    if (!scan.accepted) continue;
    accepted.insert(scan.path);
    if (used.count(scan.info.signature) > 0) wanted.insert(scan.path);
  }
  for (const auto& scan : scans) {
    // A refusal's reason may come from the plugin's own process (it can write to the
    // scan's answer pipe): printable() keeps it to one safe line. A shadow reason is
    // built from printable() parts already (detail::shadowed_text).
    if (scan.shadowed) {
      detail::log().warn("{}", scan.reason);
    } else if (!scan.accepted) {
      detail::log().error("plugin {} refused: {}", detail::printable(scan.path, detail::kMaxLoggedText),
                          detail::printable(scan.reason, detail::kMaxLoggedText));
      ++n.refused;
    }
  }
  n.unused = accepted.size() - wanted.size();
  for (const auto& path : wanted) {  // a pack scans as one entry per plugin, all with its path: loaded once
    if (!loader.load(path).ok()) ++n.refused;  // load() logged why
  }
  return n;
}

}  // namespace

struct Node::Impl {
  Impl(Config c, NodeOptions o) : config(std::move(c)), options(std::move(o)) {}

  const Config config;
  NodeOptions options;
  MetricsRegistry metrics;
  // The component registry and its sweeper (node_health.hpp): after `metrics`, which
  // its registrations read into, so it goes first.
  std::unique_ptr<node::NodeHealth> health;
  // registry.db's writer (node_store.cpp): after `health`, whose registry it reads.
  std::unique_ptr<node::NodeStore> store;
  std::unique_ptr<SystemRuntime> runtime;

  // Owned here, published to other threads through the atomics below.
  std::unique_ptr<PluginLoader> loader;
  std::unique_ptr<Mailbox> mailbox;
  std::atomic<PluginLoader*> loader_view{nullptr};
  // The main job; its hooks are registered around the loader's and the mailbox's.
  std::unique_ptr<pipeline::Pipeline> pipeline;
  std::atomic<Mailbox*> mailbox_view{nullptr};
  MetricsRegistration mailbox_metrics;
  MetricsRegistration plugin_metrics;
  // Heartbeats: the loop only queues the tick (it must never block); a worker builds
  // the document (a metrics snapshot reads SQLite) and calls on_heartbeat. The queue
  // holds one tick: a publisher still busy with the last one skips to the newest,
  // and the skip is counted.
  DropHeadQueue<HeartbeatTick> ticks{1, OverflowPolicy::drop_head};
  std::unique_ptr<BaseWorker> publisher;
  MetricsRegistration ticks_metrics;
  MetricsRegistration publisher_metrics;
  Counter* published = nullptr;
  // A host callback that throws on every heartbeat: 10 lines a minute, then a count.
  detail::LogLimit heartbeat_error_log{10, std::chrono::seconds(60)};
  // Taken as the storage closes, after everything upstream has stopped and flushed
  // into it: what stats_json() shows once the node has stopped.
  mutable std::mutex final_mu;
  std::optional<Snapshot> final_snapshot;

  // Comms (docs/operations.md): created in create(), started in the comms stage.
  std::unique_ptr<comms::Comms> comms;
  std::shared_ptr<WorkerPulse> link_pulse;  // the `comms/link` row (with a broker)
  MetricsRegistration comms_metrics;
  std::map<std::string, CommandHandler> host_commands;  // add_command(), before start()
  std::mutex sampler_mu;
  node::ProcessSampler sampler{config.node.data_dir};
  const std::chrono::steady_clock::time_point created_at = std::chrono::steady_clock::now();
  mutable std::mutex shutdown_mu;
  std::string shutdown_reason;
  std::atomic<std::uint64_t> last_beat{0};  // the seq of the newest beat built

  void register_components();
  /// Registers the heartbeat publisher's hooks as the last `outputs` participant
  /// (register_components() says why). Node::start() calls it; once.
  void add_publisher();
  std::mutex publisher_added_mu;
  bool publisher_added = false;
  /// The one heartbeat builder (node::heartbeat_json): each beat's document, handed to
  /// on_heartbeat and published by comms, the SHUTDOWN heartbeat and STATUS's reply.
  /// `seq` 0: not a beat; the document carries the last beat's number.
  std::string heartbeat_document(const std::string& status, std::uint64_t seq = 0);
};

std::string Node::Impl::heartbeat_document(const std::string& status, std::uint64_t seq) {
  node::HeartbeatInputs in;
  in.node_id = config.node.id;
  in.status = status;
  in.seq = seq != 0 ? seq : last_beat.load();
  in.uptime_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - created_at).count();
  {
    std::lock_guard lk(sampler_mu);
    in.process = sampler.sample();
  }
  in.pipeline = nlohmann::json::parse(pipeline->summary_json(), nullptr, false);
  if (Mailbox* m = mailbox_view.load()) in.outbox = m->stats();
  in.comms = comms->stats();
  in.components = health->heartbeat_section();
  return node::heartbeat_json(in);
}

void Node::Impl::register_components() {
  // storage, first of all: the component registry's sweeper (and the runtime loop's
  // row), up before anything registers a row and down after everything has stopped.
  LifecycleHooks health_hooks;
  health_hooks.name = "health";
  health_hooks.start = [this] { return health->start(*runtime); };
  health_hooks.stop = [this] { health->stop(); };
  (void)runtime->add_participant(Stage::storage, std::move(health_hooks));
  // Each pipeline worker is a row, registered as it starts, beating from its own loop.
  pipeline->set_pulse_factory([this](const pipeline::PulseRequest& r) {
    return health->pulse(r.kind, r.name, r.labels, r.expects_progress, r.period);
  });

  // build: load the plugins the streams use, every file on the search paths checked in
  // a child first (load_plugins); a refused file is logged with its reason and the
  // others still load. (The pipeline will create instances of them.)
  LifecycleHooks plugins;
  plugins.name = "plugins";
  plugins.start = [this] {
    const auto loader_opts = loader_options(config);
    loader = std::make_unique<PluginLoader>(loader_opts);
    const LoadedPlugins got = load_plugins(*loader, loader_opts, used_signatures(config));
    detail::log().info("{} plugin(s) loaded, {} refused, {} file(s) not used by the configuration and not loaded",
                       loader->plugins().size(), got.refused, got.unused);
    plugin_metrics = metrics.register_collector(
        {{"edgert_plugins_loaded", {}, "plugin libraries loaded", MetricType::gauge},
         {"edgert_plugins_refused", {}, "plugin files refused at load (crashed, hung or rejected)", MetricType::gauge},
         {"edgert_plugins_unused", {}, "plugin files scanned clean but not loaded: no stream uses them",
          MetricType::gauge}},
        [n = loader->plugins().size(), r = got.refused, u = got.unused](std::span<double> out) {
          out[0] = static_cast<double>(n);
          out[1] = static_cast<double>(r);
          out[2] = static_cast<double>(u);
        });
    loader_view.store(loader.get());
    return Status{};
  };
  plugins.stop = [this] {
    plugin_metrics.reset();
    loader_view.store(nullptr);
    loader.reset();
  };
  (void)runtime->add_participant(Stage::build, std::move(plugins));

  // The pipeline (docs/pipeline.md): instances created once, here, off the frame path;
  // released before the loader goes (same stage, stopped in reverse).
  LifecycleHooks build;
  build.name = "pipeline";
  build.start = [this] { return pipeline->create(*loader, metrics); };
  build.stop = [this] { pipeline->destroy(); };
  (void)runtime->add_participant(Stage::build, std::move(build));

  // storage: the mailbox, first up and last down: comms reads it, outputs write it.
  LifecycleHooks mailbox_hooks;
  mailbox_hooks.name = "mailbox";
  // Mailbox::open's own error (io_error "<data_dir>: in use by another process ...")
  // is what Node::start returns.
  mailbox_hooks.start = [this] {
    MailboxOptions mo = mailbox_options(config);
    mo.writer_pulse = health->pulse("mailbox", "writer");
    auto opened = Mailbox::open(std::move(mo));
    if (!opened.ok()) return opened.status();
    mailbox = std::move(opened).value();
    mailbox_metrics = register_mailbox_metrics(metrics, "main", *mailbox);
    mailbox_view.store(mailbox.get());
    return Status{};
  };
  mailbox_hooks.stop = [this] {
    {
      auto last = metrics.snapshot();
      std::lock_guard lk(final_mu);
      final_snapshot = std::move(last);
    }
    mailbox_metrics.reset();  // no snapshot reads the mailbox after this
    mailbox_view.store(nullptr);
    mailbox.reset();
  };
  (void)runtime->add_participant(Stage::storage, std::move(mailbox_hooks));
  // registry.db: after the mailbox (it creates the data_dir and holds its lock), stopped
  // before it with a last write that marks the node stopped (docs/registry.md).
  (void)runtime->add_participant(Stage::storage, store->hooks());

  // comms: after the mailbox it reads, before the outputs that fill it; stopped after
  // them, so results emitted up to the end are still offered to the broker.
  LifecycleHooks comms_hooks;
  comms_hooks.name = "comms";
  comms_hooks.start = [this] {
    if (comms->enabled()) {
      link_pulse = health->pulse("comms", "link");
      comms->set_link_pulse(link_pulse);
    }
    if (Status st = comms->start(*mailbox); !st.ok()) return st;
    if (comms->enabled()) comms_metrics = comms->register_metrics(metrics);
    return Status{};
  };
  // The comms figures stay registered after stop: the final snapshot shows them.
  comms_hooks.stop = [this] {
    comms->stop();
    if (link_pulse) link_pulse->declare("stopped", "comms stopped");
  };
  (void)runtime->add_participant(Stage::comms, std::move(comms_hooks));

  LifecycleHooks outputs;
  outputs.name = "pipeline-outputs";
  outputs.start = [this] { return pipeline->open(mailbox.get()); };
  outputs.stop = [this] { pipeline->close(); };
  (void)runtime->add_participant(Stage::outputs, std::move(outputs));

  LifecycleHooks processing;
  processing.name = "pipeline-instances";
  processing.start = [this] { return pipeline->start_instances(); };
  processing.stop = [this] { pipeline->stop_instances(); };
  processing.drain = [this] { return pipeline->drain(); };
  (void)runtime->add_participant(Stage::processing, std::move(processing));

  LifecycleHooks acquisition;
  acquisition.name = "pipeline-streams";
  acquisition.start = [this] { return pipeline->start_streams(); };
  acquisition.stop = [this] { pipeline->stop_streams(); };
  (void)runtime->add_participant(Stage::acquisition, std::move(acquisition));

  LifecycleHooks triggers;
  triggers.name = "pipeline-triggers";
  triggers.start = [this] {
    pipeline->start_triggers(*runtime);
    return Status{};
  };
  triggers.stop = [this] { pipeline->stop_triggers(); };
  (void)runtime->add_participant(Stage::triggers, std::move(triggers));

  // The one heartbeat (node.heartbeat_interval_ms): the runtime's tick, turned here,
  // off the loop, into one document that comms publishes and on_heartbeat receives.
  // The runtime ticks from after the outputs start until just before they stop, so
  // the publisher runs for all of that: through the instances' start, the pipeline's
  // stop and its drain, when a fleet most needs to see the node alive. Its hooks sit
  // in `outputs` and are added by Node::start() (add_publisher), after every host
  // participant: the publisher starts after every outputs hook (a host's included)
  // and stops before any of them, so none is stopped while a document is handed over,
  // and comms (stopped after the outputs) is running for every beat. A tick queued
  // after it stopped is refused by the closed queue.
  if (config.node.heartbeat_interval_ms > 0) {
    published = &metrics.counter("edgert_heartbeats_published_total", {},
                                 "heartbeat documents built (each handed to comms and on_heartbeat)");
    publisher = std::make_unique<BaseWorker>(
        WorkerOptions("edgert-heartbeat"),
        [this](std::stop_token stop) {
          while (!stop.stop_requested()) {
            auto tick = ticks.pop_for(std::chrono::milliseconds(200));
            if (!tick) continue;
            last_beat.store(tick->seq);
            NodeHeartbeat hb;
            hb.node_id = config.node.id;
            hb.tick = *tick;
            // A beat that cannot be built or published (bad_alloc, a failing stats read)
            // is logged and skipped: the next tick tries again, the worker keeps running.
            try {
              hb.document = heartbeat_document("RUNNING", tick->seq);
              comms->beat(hb.document);
              published->add();
            } catch (const std::exception& e) {
              if (auto v = heartbeat_error_log.admit(); v.log) {
                detail::log().error("heartbeat {} not built or not published: {}{}", tick->seq, e.what(), v.suffix());
              }
              continue;
            }
            if (!options.on_heartbeat) continue;
            try {
              options.on_heartbeat(hb);
            } catch (const std::exception& e) {
              if (auto v = heartbeat_error_log.admit(); v.log) {
                detail::log().error("on_heartbeat threw: {}{}", e.what(), v.suffix());
              }
            } catch (...) {
              if (auto v = heartbeat_error_log.admit(); v.log) {
                detail::log().error("on_heartbeat threw an unknown exception{}", v.suffix());
              }
            }
          }
        },
        [this] { ticks.close(); });
    ticks_metrics = register_queue_metrics(metrics, "heartbeat", ticks);
    publisher_metrics = register_worker_metrics(metrics, *publisher);
  }
}

void Node::Impl::add_publisher() {
  std::lock_guard lk(publisher_added_mu);
  if (!publisher || publisher_added) return;
  LifecycleHooks hooks;
  hooks.name = "heartbeat-publisher";
  hooks.start = [this] { return publisher->start(); };
  hooks.stop = [this] {
    if (Status st = publisher->stop(); !st.ok() && st.code() != ErrorCode::again) {
      detail::log().warn("heartbeat publisher: {}", st.message());
    }
  };
  // Refused only once the runtime has started or stopped: then it is too late anyway.
  publisher_added = runtime->add_participant(Stage::outputs, std::move(hooks)).ok();
}

Result<std::unique_ptr<Node>> Node::create(Config config, NodeOptions options) {
  auto impl = std::make_unique<Impl>(std::move(config), std::move(options));
  // The node's range is narrower than the runtime's (which accepts 1 ms): the config
  // loader enforces it for files; a Config built in code is checked here.
  if (const auto ms = impl->config.node.heartbeat_interval_ms;
      ms != 0 && (ms < kMinHeartbeatIntervalMs || ms > kMaxHeartbeatIntervalMs)) {
    return Status{ErrorCode::invalid_argument, "node settings: node.heartbeat_interval_ms must be 0 (off) or within [" +
                                                   std::to_string(kMinHeartbeatIntervalMs) + ", " +
                                                   std::to_string(kMaxHeartbeatIntervalMs) + "], got " +
                                                   std::to_string(ms)};
  }
  if (const auto& h = impl->config.health;
      h.sweep_interval_ms < kMinSweepIntervalMs || h.sweep_interval_ms > kMaxSweepIntervalMs) {
    return Status{ErrorCode::invalid_argument, "node settings: health.sweep_interval_ms must be within [" +
                                                   std::to_string(kMinSweepIntervalMs) + ", " +
                                                   std::to_string(kMaxSweepIntervalMs) + "], got " +
                                                   std::to_string(h.sweep_interval_ms)};
  } else if (h.stale_after_misses < 1 || h.stale_after_misses > kMaxStaleAfterMisses) {
    return Status{ErrorCode::invalid_argument, "node settings: health.stale_after_misses must be within [1, " +
                                                   std::to_string(kMaxStaleAfterMisses) + "], got " +
                                                   std::to_string(h.stale_after_misses)};
  } else if (h.sweep_interval_ms * h.stale_after_misses < kMinStaleWindowMs) {
    return Status{ErrorCode::invalid_argument,
                  "node settings: health.sweep_interval_ms x health.stale_after_misses must be at least " +
                      std::to_string(kMinStaleWindowMs) + " ms, got " +
                      std::to_string(h.sweep_interval_ms * h.stale_after_misses)};
  }
  impl->health = std::make_unique<node::NodeHealth>(impl->config.health, impl->metrics);
  impl->store = std::make_unique<node::NodeStore>(impl->health->registry(), impl->metrics, impl->config.node.id,
                                                  impl->config.node.data_dir);
  RuntimeOptions ro = runtime_options(impl->config);
  if (Status st = validate(ro); !st.ok()) return Status{st.code(), "node settings: " + st.message()};
  Impl* raw = impl.get();
  ro.heartbeat_sink = [raw](const HeartbeatTick& tick) {
    if (raw->publisher) (void)raw->ticks.try_push(HeartbeatTick(tick));  // never blocks; a skip is counted
  };
  try {
    impl->runtime = std::make_unique<SystemRuntime>(std::move(ro));
  } catch (const std::exception& e) {
    return Status{ErrorCode::internal, std::string("cannot create the runtime: ") + e.what()};
  }
  impl->pipeline = std::make_unique<pipeline::Pipeline>(impl->config.node.id, impl->config.pipeline,
                                                       impl->config.streams);
  {
    // The supervisor (docs/operations.md, "Health and restarts", "The supervisor").
    // Restart history: registry.db's restart_history table (node_store.hpp), kept for
    // the longest restart window, so a node restart remembers a crash-looping plugin.
    pipeline::Pipeline::SupervisorSetup sup;
    sup.restart = impl->config.health.restart;
    {
      const auto& r = impl->config.health.restart;
      const double longest = std::max({r.policy_of("instance").window_s, r.policy_of("stream").window_s});
      sup.history = impl->store->restart_history(static_cast<std::int64_t>(longest * 1000.0));
    }
    sup.steady_ms = impl->options.supervisor_steady_ms;
    sup.wall_ms = impl->options.supervisor_wall_ms;
    sup.request_shutdown = [raw](const std::string& reason) {
      detail::log().error("{}; asking the host to stop the node", reason);
      std::lock_guard lk(raw->shutdown_mu);
      if (raw->shutdown_reason.empty()) raw->shutdown_reason = reason;
    };
    impl->pipeline->set_supervisor(std::move(sup));
  }
  {
    comms::CommsOptions co;
    co.node_id = raw->config.node.id;
    co.config = raw->config.comms;
    co.work_offline = raw->config.node.work_offline;
    co.heartbeat_interval = std::chrono::milliseconds(raw->config.node.heartbeat_interval_ms);
    co.max_json_depth = static_cast<std::size_t>(raw->config.mailbox.max_json_depth);
    co.max_id_bytes = static_cast<std::size_t>(raw->config.mailbox.max_id_bytes);
    co.heartbeat_document = [raw](const std::string& status) { return raw->heartbeat_document(status); };
    co.request_shutdown = [raw](const std::string& reason) {
      detail::log().error("{}; asking the host to stop the node", reason);
      std::lock_guard lk(raw->shutdown_mu);
      if (raw->shutdown_reason.empty()) raw->shutdown_reason = reason;
    };
    co.commands = node::builtin_commands([raw] { return raw->heartbeat_document("RUNNING"); },
                                         [raw](const std::string& stream) { return raw->pipeline->trigger(stream); },
                                         raw->config.node.id,
                                         [raw](const std::string& c) { return raw->pipeline->restart(c); });
    impl->comms = std::make_unique<comms::Comms>(std::move(co));
  }
  impl->register_components();
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() { stop(); }

Status Node::start() {
  impl_->add_publisher();
  return impl_->runtime->start();
}

void Node::stop() { impl_->runtime->stop(); }

bool Node::running() const noexcept { return impl_->runtime->running(); }

namespace {

// The metrics document plus the figures a reader wants without knowing the metric names:
// "streams", "instances", "outputs" (the pipeline's) and "mailbox" (docs/pipeline.md).
std::string stats_document(const Snapshot& snap, const std::string& pipeline_json, nlohmann::json comms) {
  auto value_of = [&snap](std::string_view name) -> double {
    const auto* s = snap.find(name, {{"mailbox", "main"}});
    return s ? s->value : 0;
  };
  auto count = [&](std::string_view name) {
    const double v = value_of(name);
    return std::isfinite(v) && v > 0 ? static_cast<std::uint64_t>(v) : std::uint64_t{0};
  };
  nlohmann::json extra = nlohmann::json::parse(pipeline_json, nullptr, false);
  if (!extra.is_object()) extra = nlohmann::json::object();
  extra["mailbox"] = {{"enqueued", count("edgert_mailbox_sent_total")},
                      {"delivered", count("edgert_mailbox_delivered_total")},
                      {"pending", count("edgert_mailbox_outbox_rows")}};
  extra["comms"] = std::move(comms);
  std::string doc = to_json(snap);
  std::string tail = extra.dump();  // {"streams":...}: spliced into the metrics object
  const auto close = doc.rfind('}');
  if (close == std::string::npos || tail.size() < 2) return doc;
  std::string head = doc.substr(0, close);
  while (!head.empty() && (head.back() == '\n' || head.back() == ' ')) head.pop_back();
  const bool empty = !head.empty() && head.back() == '{';
  return head + (empty ? "" : ",\n") + tail.substr(1, tail.size() - 2) + "\n}";
}

}  // namespace

std::string Node::stats_json() const {
  const auto pipeline_json = impl_->pipeline->summary_json();
  if (!impl_->runtime->running()) {
    std::lock_guard lk(impl_->final_mu);
    if (impl_->final_snapshot) return stats_document(*impl_->final_snapshot, pipeline_json, impl_->comms->stats());
  }
  return stats_document(impl_->metrics.snapshot(), pipeline_json, impl_->comms->stats());
}

void Node::add_command(std::string name, CommandHandler handler) {
  impl_->comms->add_command(std::move(name), std::move(handler));
}

std::string Node::shutdown_reason() const {
  std::lock_guard lk(impl_->shutdown_mu);
  return impl_->shutdown_reason;
}

std::string Node::comms_json() const { return impl_->comms->stats().dump(); }

void Node::add_result_sink(ResultSink sink) { impl_->pipeline->add_sink(std::move(sink)); }

Status Node::trigger(const std::string& stream) { return impl_->pipeline->trigger(stream); }

Result<std::string> Node::restart(const std::string& component) { return impl_->pipeline->restart(component); }

bool Node::pipeline_done() const { return impl_->pipeline->done(); }

MetricsRegistry& Node::metrics() noexcept { return impl_->metrics; }

ComponentRegistry& Node::components() noexcept { return impl_->health->registry(); }

SystemRuntime& Node::runtime() noexcept { return *impl_->runtime; }

Mailbox* Node::mailbox() noexcept { return impl_->mailbox_view.load(); }

PluginLoader* Node::plugins() noexcept { return impl_->loader_view.load(); }

const Config& Node::config() const noexcept { return impl_->config; }

}  // namespace edgert
