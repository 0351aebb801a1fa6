// Pipeline results: what a host application receives from the main job.
//
// A node's pipeline (docs/pipeline.md) runs one capture worker per stream and one
// worker per business plugin instance, fed by its own bounded queue. Everything an
// instance emits becomes a result: a JSON payload holding the plugin's own object plus
// the keys below, stored in the mailbox outbox (pipeline.outbox), appended to the JSONL
// file (pipeline.results_jsonl) and handed to every in-process sink a host registered
// with Node::add_result_sink().
//
// Keys the host adds to every payload (they replace a plugin's keys of the same name):
//   stream, signature, instance_id   where the result came from
//   sequence                         the input's sequence number in its stream (from 1)
//   captured_at, detected_at         ms since the Unix epoch: when the input was captured,
//                                    when the result was made
// Inputs that could not be processed (queue overflow, a stuck or quarantined instance,
// a node stopping) become ERROR results: payload_type "pipeline.error" with
//   result: "ERROR", message: "Error: queue overflow: ..." (or "Error: instance stuck",
//   "Error: instance quarantined", "Error: not processed before stop",
//   "Error: trigger queue overflow"), reason (the word after "Error: "), dropped (how
//   many inputs this result stands for: 1, or a summary's count).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace edgert {

/// One result, as a host's in-process sink receives it.
struct PipelineResult {
  std::string stream;
  std::string signature;     // "" for a stream's own results (trigger overflow)
  std::string instance_id;   // "" likewise
  std::uint64_t sequence = 0;
  std::int64_t captured_at_ms = 0;
  std::int64_t detected_at_ms = 0;
  std::string payload_type;  // the plugin's, or "pipeline.error"
  std::string payload;       // the JSON object described above
  int priority = 0;          // the mailbox priority it was stored with
  bool error = false;        // true for ERROR results
};

/// Receives every result on the thread that produced it (an instance's worker, a
/// capture worker for its drop results, the pipeline monitor for summaries). Keep it
/// short: it delays that worker. An exception it throws is logged and counted
/// (edgert_pipeline_sink_errors_total); the result still goes to the other outputs.
using ResultSink = std::function<void(const PipelineResult&)>;

}  // namespace edgert
