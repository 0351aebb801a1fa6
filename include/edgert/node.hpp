// Node: a whole edge node built from a Config, the composition root of edgert.
//
// A Node turns a Config into components and registers them with its SystemRuntime
// in the stages docs/runtime.md describes:
//   storage  first, the component registry's sweeper (health.sweep_interval_ms;
//            components(), docs/registry.md "Wiring into the Node")
//   build    the plugin loader (every .so on the search paths, refusals logged)
//            then the pipeline's business instances (docs/pipeline.md)
//   storage  the mailbox (<node.data_dir>/mailbox.db), then the component registry's
//            <node.data_dir>/registry.db (read by `edgert-node status`)
//   outputs  the pipeline's outputs (outbox, JSONL file, result sinks)
//   processing / acquisition / triggers  instance workers, capture workers, triggers
//   heartbeat the publisher, next to the runtime's heartbeat: every
//            node.heartbeat_interval_ms, one document, published by comms on
//            {root}/{id}/heartbeat and handed to on_heartbeat
// The HTTP endpoint will register here as it arrives.
//
// Embedding (the whole of a host application; docs/runtime.md, "Node"):
//   auto cfg = edgert::load_config("node.yaml");
//   if (!cfg) return fail(cfg.status());
//   auto created = edgert::Node::create(std::move(cfg).value());
//   if (!created) return fail(created.status());
//   auto node = std::move(created).value();
//   if (auto st = node->start(); !st.ok()) return fail(st);
//   wait_for_shutdown();
//   node->stop();
//
// Threads: create() and start() on one thread (start() runs the plugins' load-time
// code on it); stop(), stats_json() and the accessors from any thread.
#pragma once

#include <edgert/commands.hpp>
#include <edgert/config.hpp>
#include <edgert/export.hpp>
#include <edgert/pipeline.hpp>
#include <edgert/status.hpp>
#include <edgert/system_runtime.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace edgert {

class ComponentRegistry;
class Mailbox;
class MetricsRegistry;
class PluginLoader;

/// One heartbeat of a node, handed to NodeOptions::on_heartbeat.
struct NodeHeartbeat {
  std::string node_id;
  HeartbeatTick tick;
  /// JSON, the same document comms publishes on {root}/{id}/heartbeat (one builder):
  /// {"node_id", "edgert_version", "status", "seq", "time_ms", "uptime_s", "process",
  /// "disk", "streams", "instances", "outbox", "inbox", "comms", "components"}
  /// (docs/operations.md; "components": counts per status and the rows not `ready`).
  /// The full metrics snapshot is not in it: Node::stats_json() has that.
  std::string document;
};

struct NodeOptions {
  /// Receives the heartbeats, on the node's heartbeat thread (never the loop's). A
  /// callback slower than the heartbeat period skips to the newest tick (counted:
  /// edgert_queue_dropped_total{queue="heartbeat"}). Exceptions are logged. It may
  /// call Node::stop(). Never called once stop() has begun stopping the outputs.
  std::function<void(const NodeHeartbeat&)> on_heartbeat;
  /// The supervisor's clocks (docs/operations.md, "Health and restarts: the
  /// supervisor"): monotonic ms for back-off deadlines, wall ms since the epoch for the
  /// restart history. Empty: the steady and system clocks. Tests inject; called from
  /// the instances' worker threads and the command thread, so they must be thread-safe.
  std::function<std::int64_t()> supervisor_steady_ms;
  std::function<std::int64_t()> supervisor_wall_ms;
};

class EDGERT_API Node {
 public:
  /// Any thread; does no I/O (components open in start()). Returns invalid_argument
  /// for settings the runtime refuses (the message names the key).
  static Result<std::unique_ptr<Node>> create(Config config, NodeOptions options = {});

  /// Calls stop().
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// The creating thread; blocks while components open (plugins load, the mailbox
  /// opens); a stop() from another thread waits for it, then stops what started.
  /// Idempotent. On error nothing is left running (once such a stop() has returned)
  /// and the Status is the failing component's own, unchanged (a
  /// data_dir another node holds: io_error "<data_dir>: in use by another process
  /// (pid N holds <data_dir>/.lock); one node per data_dir"); the ERROR log line names
  /// the component. `internal` only for a component that threw (a bug), `closed` if
  /// stop() was called meanwhile.
  [[nodiscard]] Status start();

  /// Any thread; bounded (see SystemRuntime::stop). Idempotent.
  void stop();

  /// Any thread; never blocks.
  bool running() const noexcept;

  /// Any thread; briefly locks each metric source. The metrics snapshot as JSON,
  /// the same document `edgert-node run --stats-json` writes. Once stopped: the
  /// snapshot taken as the storage closed (the last one with every component's
  /// figures).
  std::string stats_json() const;

  /// Any thread. Components of a host register their own figures here.
  MetricsRegistry& metrics() noexcept;

  /// Any thread; never blocks; valid for the node's life. The node's component registry
  /// (edgert/component_registry.hpp, docs/registry.md): its streams, instances, mailbox
  /// writer, comms link and runtime loop are rows, swept every health.sweep_interval_ms
  /// while the node runs. A host registers its own components here
  /// (register_component(); beat() from the loop doing the work) and sees them in the
  /// metrics, the heartbeat document and the sweep's log lines like the node's own.
  ComponentRegistry& components() noexcept;

  /// Any thread; never blocks. Add a host's own participants before start().
  SystemRuntime& runtime() noexcept;

  /// Any thread. The open mailbox between start() and stop(), else null. The pointer
  /// must not be used once stop() may have begun: stop() closes it.
  Mailbox* mailbox() noexcept;
  /// Any thread. Null before start() and after stop().
  PluginLoader* plugins() noexcept;

  /// Before start(); any thread. `sink` receives every pipeline result (docs/pipeline.md,
  /// "Outputs") on the thread that produced it; see ResultSink.
  void add_result_sink(ResultSink sink);
  /// Any thread; never blocks. Fires one trigger of a triggered stream. Errors:
  /// not_found (no such stream), invalid_argument (it has no trigger), closed.
  [[nodiscard]] Status trigger(const std::string& stream);
  /// Any thread (the command thread's RESTART); blocks up to a few seconds while a
  /// quarantined instance is re-created. Restarts a quarantined instance (its
  /// intensity counted afresh) or replaces a stuck one: `component` is an instance
  /// ("<stream>/<signature>/<id>", "<stream>/<id>", "instance/...") or a stream
  /// ("<stream>", "stream/<stream>": its quarantined and stuck instances). Returns JSON
  /// {"restarted": [{"component", "done"}], "not_restarted": {"<key>": "<why>"}}.
  /// Errors: not_found (no such name), invalid_argument (nothing to restart, and why).
  [[nodiscard]] Result<std::string> restart(const std::string& component);
  /// Any thread; never blocks for long. True once every stream has ended and every
  /// instance queue has drained (`run --exit-when-done`); never for endless streams.
  bool pipeline_done() const;

  /// Before start(); any thread. Adds (or replaces a built-in: PING, STATUS, TRIGGER, RESTART)
  /// a command the node obeys when it arrives over comms (edgert/commands.hpp).
  void add_command(std::string name, CommandHandler handler);
  /// Any thread; never blocks. "" while the node runs as configured; otherwise why it
  /// asks its host to stop it (node.work_offline false and the broker out of reach:
  /// docs/operations.md). `edgert-node run` stops on it and exits 1.
  std::string shutdown_reason() const;
  /// Any thread; never blocks for long. The "comms" section of stats_json() and of the
  /// published heartbeat, as JSON ({"enabled": false} without a broker).
  std::string comms_json() const;

  /// Any thread; never blocks. The configuration the node was created from.
  const Config& config() const noexcept;

 private:
  struct Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgert
