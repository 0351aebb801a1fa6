// The built-in result sinks: the host's callbacks, the JSONL file (written by its own thread) and the outbox.
#pragma once

#include <edgert/mailbox.hpp>

#include "pipeline/outputs.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace edgert::pipeline {

/// A host's ResultSink, called on the producer's thread; what it throws is counted in sink_errors and logged.
class HostSink final : public OutputSink {
 public:
  HostSink(ResultSink sink, OutputCounters& counters) : sink_(std::move(sink)), counters_(counters) {}
  void write(const PipelineResult& r) override;

 private:
  ResultSink sink_;
  OutputCounters& counters_;
};

/// results_jsonl: write() formats the line and queues it; a thread of its own appends and flushes, so a slow or
/// stuck disk stalls no producer. At most kMaxQueuedBytes wait: past that the oldest line is dropped, counted in
/// file_errors (logged once per burst), like a DropHead queue.
class JsonlSink final : public OutputSink {
 public:
  static constexpr std::size_t kMaxQueuedBytes = std::size_t{16} << 20;
  static constexpr std::chrono::seconds kCloseWait{5};
  /// Start thread. Opens `path` for appending. Error: io_error naming the file and the cause.
  static Result<std::unique_ptr<JsonlSink>> open(const std::string& path, OutputCounters& counters);
  ~JsonlSink() override;
  void write(const PipelineResult& r) override;
  /// Stop thread; waits up to kCloseWait for the queued lines to be written, then closes the file. A writer
  /// stuck in the kernel (a hung disk) cannot be interrupted: it is left to finish alone, owning the file, and
  /// what it had not written is counted in file_errors.
  void close() override;

 private:
  struct State;
  explicit JsonlSink(std::shared_ptr<State> state);
  static void run(const std::shared_ptr<State>& s);

  std::shared_ptr<State> state_;  // shared with the writer thread, which may outlive this sink (close())
  std::thread thread_;
};

/// The mailbox outbox: send_async on the producer's thread (blocking only on the mailbox's back-pressure), no
/// lock held meanwhile; the answers are collected later (stored / store_errors).
class OutboxSink final : public OutputSink {
 public:
  OutboxSink(Mailbox& mailbox, std::string node_id, std::chrono::seconds ttl, OutputCounters& counters)
      : mailbox_(mailbox), node_id_(std::move(node_id)), ttl_(ttl), counters_(counters) {}
  void write(const PipelineResult& r) override;
  void take(PipelineResult&& r) override;
  /// Waits for every send in flight (bounded by the mailbox's close_timeout).
  void close() override;

 private:
  void reap(bool wait);

  Mailbox& mailbox_;
  const std::string node_id_;
  const std::chrono::seconds ttl_;
  OutputCounters& counters_;
  std::mutex mu_;  // in_flight_ only
  std::deque<PendingSend> in_flight_;
};

}  // namespace edgert::pipeline
