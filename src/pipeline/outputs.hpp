// Outputs: where every pipeline result goes (docs/pipeline.md, "Outputs"): a list of sinks, the host's in-process
// ones, the JSONL file and the mailbox outbox, each with its own lock, so a slow one stalls no other.
#pragma once

#include <edgert/pipeline.hpp>
#include <edgert/status.hpp>
#include <edgert/stream_config.hpp>

#include "core/json_check.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {
class Mailbox;
}  // namespace edgert

namespace edgert::pipeline {

/// Where a result came from.
struct ResultOrigin {
  std::string stream;
  std::string signature;
  std::string instance_id;
  std::uint64_t sequence = 0;
  std::int64_t captured_wall_ns = 0;
};

struct OutputCounters {
  std::atomic<std::uint64_t> results{0};        // results published (ERROR results included)
  std::atomic<std::uint64_t> error_results{0};  // of which ERROR results
  std::atomic<std::uint64_t> stored{0};         // committed to the outbox
  std::atomic<std::uint64_t> store_errors{0};   // refused by the mailbox (logged)
  std::atomic<std::uint64_t> sink_errors{0};    // in-process sinks that threw
  std::atomic<std::uint64_t> file_errors{0};    // JSONL lines not written (a failed write, or dropped: file too slow)
  std::atomic<std::uint64_t> late{0};           // emitted after close(): not delivered anywhere
};

/// Wall clock now, ms since the epoch.
std::int64_t wall_ms_now() noexcept;

/// One destination of results. write() runs on the thread that produced the result, concurrently with other
/// producers: an implementation locks what it shares, and never for longer than its own work.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  /// Producer threads. Never throws (failures are counted in OutputCounters and logged).
  virtual void write(const PipelineResult& result) = 0;
  /// Like write(), for the last sink of the list: it may take the result's bytes instead of copying them.
  virtual void take(PipelineResult&& result) { write(result); }
  /// Stop thread, once, after the last write(): finishes what is queued (bounded) and releases resources.
  virtual void close() {}
};

class Outputs {
 public:
  Outputs(std::string node_id, PipelineSection config);
  ~Outputs();
  Outputs(const Outputs&) = delete;
  Outputs& operator=(const Outputs&) = delete;

  /// Before open(); start thread.
  void add_sink(ResultSink sink);
  /// Start thread; opens the JSONL file for appending and begins storing into `mailbox` (may be null: no
  /// outbox). Error: io_error naming the file and the cause.
  [[nodiscard]] Status open(Mailbox* mailbox);
  /// Any thread; blocks only while the mailbox's writer queue is full. `json` is the plugin's payload as the
  /// host's emit checked it (check_json with `shape`); with the origin keys it becomes one result, extended as
  /// text, not parsed again (a payload that sets an origin key itself is the exception: parsed, overwritten).
  /// Never throws; failures are counted and logged. After close(): counted in `late`, going nowhere.
  void publish(const ResultOrigin& origin, std::string_view payload_type, std::string_view json,
               const detail::JsonShape& shape);
  /// Any thread. An ERROR result for `dropped` inputs (docs/pipeline.md, "Dropped inputs").
  void publish_error(const ResultOrigin& origin, std::string_view reason, std::string_view detail,
                     std::uint64_t dropped);
  /// Any thread. A notification (payload_type "notification") about an instance or stream.
  void notify(const ResultOrigin& origin, std::string_view level, std::string_view message);
  /// Any thread. Text a caller did not get from the host's emit: checked here, counted in store_errors and
  /// logged when it is not one JSON value.
  void publish_unchecked(const ResultOrigin& origin, std::string_view payload_type, std::string_view json);
  /// Stop thread; waits for writes in progress, every outbox write in flight (bounded by the mailbox's
  /// close_timeout) and the JSONL lines queued, then closes the file. Afterwards no sink is called again (a
  /// plugin call that outlives the node may still emit: counted in `late`, going nowhere; not logged, the
  /// process may be exiting). A sink must not call Node::stop(). Idempotent.
  void close();

  const OutputCounters& counters() const noexcept { return counters_; }

 private:
  void emit(PipelineResult result);

  const std::string node_id_;
  const PipelineSection config_;
  std::vector<ResultSink> host_sinks_;  // before open()
  OutputCounters counters_;

  std::shared_mutex mu_;  // shared while a result is written; open() and close() take it exclusively
  std::vector<std::unique_ptr<OutputSink>> sinks_;  // the host's, the JSONL file, the outbox (last)
  bool closed_ = true;
};

}  // namespace edgert::pipeline
