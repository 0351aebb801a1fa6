// Outputs: where every pipeline result goes (docs/pipeline.md, "Outputs"): the mailbox
// outbox through send_async (durable, group-committed), the JSONL file, and the host's
// in-process sinks. Shared by the workers that produce results; kept alive by them.
#pragma once

#include <edgert/pipeline.hpp>
#include <edgert/status.hpp>
#include <edgert/stream_config.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {
class Mailbox;
class PendingSend;
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
  std::atomic<std::uint64_t> file_errors{0};    // JSONL lines that could not be written
  std::atomic<std::uint64_t> late{0};           // emitted after close(): not delivered anywhere
};

/// Wall clock now, ms since the epoch.
std::int64_t wall_ms_now() noexcept;

class Outputs {
 public:
  Outputs(std::string node_id, PipelineSection config);
  ~Outputs();
  Outputs(const Outputs&) = delete;
  Outputs& operator=(const Outputs&) = delete;

  /// Before open(); start thread.
  void add_sink(ResultSink sink);
  /// Start thread; opens the JSONL file for appending and begins storing into
  /// `mailbox` (may be null: no outbox). Error: io_error naming the file and the cause.
  [[nodiscard]] Status open(Mailbox* mailbox);
  /// Any thread; blocks only while the mailbox's writer queue is full. The plugin's
  /// `json` (one JSON value, checked by the host's emit) plus the origin keys becomes
  /// one result. Never throws; failures are counted and logged. After close(): counted
  /// in `results` and dropped from the outbox (logged once).
  void publish(const ResultOrigin& origin, std::string_view payload_type, std::string_view json);
  /// Any thread. An ERROR result for `dropped` inputs (docs/pipeline.md, "Dropped inputs").
  void publish_error(const ResultOrigin& origin, std::string_view reason, std::string_view detail,
                     std::uint64_t dropped);
  /// Any thread. A notification (payload_type "notification") about an instance or stream.
  void notify(const ResultOrigin& origin, std::string_view level, std::string_view message);
  /// Stop thread; waits for sink calls in progress and every outbox write in flight
  /// (bounded by the mailbox's close_timeout), flushes and closes the file. Afterwards
  /// no sink is called again (a plugin call that outlives the node may still emit:
  /// counted in `late`, going nowhere; not logged, the process may be exiting). A sink must not call Node::stop().
  /// Idempotent.
  void close();

  const OutputCounters& counters() const noexcept { return counters_; }

 private:
  void emit(PipelineResult result);
  void reap(bool wait);

  const std::string node_id_;
  const PipelineSection config_;
  std::shared_mutex sinks_mu_;  // shared while sinks run; close() takes it exclusively
  std::vector<ResultSink> sinks_;
  bool sinks_closed_ = false;
  OutputCounters counters_;

  std::mutex mu_;  // guards everything below
  Mailbox* mailbox_ = nullptr;
  bool closed_ = false;
  std::FILE* file_ = nullptr;
  std::deque<PendingSend> in_flight_;
};

}  // namespace edgert::pipeline
