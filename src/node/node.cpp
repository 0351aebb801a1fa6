#include <edgert/node.hpp>

#include <edgert/mailbox.hpp>
#include <edgert/component_metrics.hpp>
#include <edgert/metrics.hpp>
#include <edgert/plugin_host.hpp>

#include "core/log.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace edgert {

namespace {

RuntimeOptions runtime_options(const Config& cfg) {
  RuntimeOptions o;
  o.heartbeat_hz = cfg.node.heartbeat_hz;
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
  mo.wal_limit_bytes = static_cast<std::uint64_t>(m.wal_limit_bytes);
  return mo;
}

PluginLoaderOptions loader_options(const Config& cfg) {
  PluginLoaderOptions o;
  o.search_paths = cfg.plugins.paths;
  o.secured = cfg.plugins.secured;
  o.allow = cfg.plugins.allow;
  return o;
}

}  // namespace

struct Node::Impl {
  Impl(Config c, NodeOptions o) : config(std::move(c)), options(std::move(o)) {}

  const Config config;
  NodeOptions options;
  MetricsRegistry metrics;
  std::unique_ptr<SystemRuntime> runtime;

  // Owned here, published to other threads through the atomics below.
  std::unique_ptr<PluginLoader> loader;
  std::unique_ptr<Mailbox> mailbox;
  std::atomic<PluginLoader*> loader_view{nullptr};
  std::atomic<Mailbox*> mailbox_view{nullptr};
  MetricsRegistration mailbox_metrics;
  MetricsRegistration plugin_metrics;
  // Taken as the storage closes, after everything upstream has stopped and flushed
  // into it: what stats_json() shows once the node has stopped.
  mutable std::mutex final_mu;
  std::optional<Snapshot> final_snapshot;

  void register_components();
  std::string heartbeat_document(const HeartbeatTick& tick) const;
};

std::string Node::Impl::heartbeat_document(const HeartbeatTick& tick) const {
  nlohmann::json doc;
  doc["node_id"] = config.node.id;
  doc["seq"] = tick.seq;
  doc["uptime_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(tick.uptime).count();
  doc["time_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(tick.wall.time_since_epoch()).count();
  doc["metrics"] = nlohmann::json::parse(to_json(metrics.snapshot()));
  return doc.dump();
}

void Node::Impl::register_components() {
  // build: load every plugin on the search paths; a refused file is logged with its
  // reason and the others still load. (The pipeline will create instances of them.)
  LifecycleHooks plugins;
  plugins.name = "plugins";
  plugins.start = [this] {
    loader = std::make_unique<PluginLoader>(loader_options(config));
    const auto refused = loader->load_all();
    detail::log().info("{} plugin(s) loaded, {} refused", loader->plugins().size(), refused.size());
    plugin_metrics = metrics.register_collector(
        {{"edgert_plugins_loaded", {}, "plugin libraries loaded", MetricType::gauge},
         {"edgert_plugins_refused", {}, "plugin files refused at load", MetricType::gauge}},
        [n = loader->plugins().size(), r = refused.size()](std::span<double> out) {
          out[0] = static_cast<double>(n);
          out[1] = static_cast<double>(r);
        });
    loader_view.store(loader.get());
  };
  plugins.stop = [this] {
    plugin_metrics.reset();
    loader_view.store(nullptr);
    loader.reset();
  };
  (void)runtime->add_participant(Stage::build, std::move(plugins));

  // storage: the mailbox, first up and last down: comms reads it, outputs write it.
  LifecycleHooks mailbox_hooks;
  mailbox_hooks.name = "mailbox";
  mailbox_hooks.start = [this] {
    auto opened = Mailbox::open(mailbox_options(config));
    if (!opened.ok()) throw std::runtime_error(opened.status().message());
    mailbox = std::move(opened).value();
    mailbox_metrics = register_mailbox_metrics(metrics, "main", *mailbox);
    mailbox_view.store(mailbox.get());
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
}

Result<std::unique_ptr<Node>> Node::create(Config config, NodeOptions options) {
  auto impl = std::make_unique<Impl>(std::move(config), std::move(options));
  RuntimeOptions ro = runtime_options(impl->config);
  if (Status st = validate(ro); !st.ok()) return Status{st.code(), "node settings: " + st.message()};
  Impl* raw = impl.get();
  ro.heartbeat_sink = [raw](const HeartbeatTick& tick) {
    if (!raw->options.on_heartbeat) return;
    NodeHeartbeat hb;
    hb.node_id = raw->config.node.id;
    hb.tick = tick;
    hb.document = raw->heartbeat_document(tick);
    raw->options.on_heartbeat(hb);
  };
  try {
    impl->runtime = std::make_unique<SystemRuntime>(std::move(ro));
  } catch (const std::exception& e) {
    return Status{ErrorCode::internal, std::string("cannot create the runtime: ") + e.what()};
  }
  impl->register_components();
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() { stop(); }

Status Node::start() { return impl_->runtime->start(); }

void Node::stop() { impl_->runtime->stop(); }

bool Node::running() const noexcept { return impl_->runtime->running(); }

std::string Node::stats_json() const {
  if (!impl_->runtime->running()) {
    std::lock_guard lk(impl_->final_mu);
    if (impl_->final_snapshot) return to_json(*impl_->final_snapshot);
  }
  return to_json(impl_->metrics.snapshot());
}

MetricsRegistry& Node::metrics() noexcept { return impl_->metrics; }

SystemRuntime& Node::runtime() noexcept { return *impl_->runtime; }

Mailbox* Node::mailbox() noexcept { return impl_->mailbox_view.load(); }

PluginLoader* Node::plugins() noexcept { return impl_->loader_view.load(); }

const Config& Node::config() const noexcept { return impl_->config; }

}  // namespace edgert
