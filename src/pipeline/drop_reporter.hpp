// Turns dropped inputs into ERROR results without flooding the outbox
// (docs/pipeline.md, "Dropped inputs"): one result per drop while a token bucket of
// pipeline.drop_results_per_s allows it, then one summary per second per reason with
// the count and the sequence range. Every drop is counted whether or not it gets a
// result of its own.
#pragma once

#include "pipeline/input.hpp"
#include "pipeline/outputs.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace edgert::pipeline {

class DropReporter {
 public:
  /// `deferred`: dropped() never publishes (it may run where blocking is not allowed:
  /// Node::trigger(), the runtime's loop); every drop waits for flush() as a summary.
  DropReporter(std::shared_ptr<Outputs> outputs, ResultOrigin origin, double per_second, bool deferred = false);
  /// Any thread; never throws. One input dropped for `reason`. Publishes an ERROR
  /// result (which may block on the outputs) unless deferred or over the rate.
  void dropped(const Input& input, const std::string& reason);
  /// Any thread. Publishes the summaries due (all of them when `force`).
  void flush(bool force);

 private:
  struct Pending {
    std::uint64_t count = 0;
    std::uint64_t first_seq = 0;
    std::uint64_t last_seq = 0;
    std::int64_t first_captured_ns = 0;
  };
  std::shared_ptr<Outputs> outputs_;
  const ResultOrigin origin_;
  const double per_second_;
  const bool deferred_;
  std::mutex mu_;
  double tokens_;
  std::int64_t refilled_ns_;
  std::int64_t last_summary_ns_ = 0;
  std::map<std::string, Pending> pending_;
};

}  // namespace edgert::pipeline
