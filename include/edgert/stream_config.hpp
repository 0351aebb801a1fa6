// The `streams:` section: what each stream captures (or what triggers it) and which
// business plugin instances consume it. Parsed and range-checked by load_config();
// the pipeline turns it into workers. Every key is described in docs/configuration.md.
//
// Host keys (typed below) are interpreted by edgert; every other key of `capture`,
// `trigger` and of an instance is the plugin's own configuration, kept as a
// ConfigObject so the plugin's schema can be checked later with file:line errors.
#pragma once

#include <edgert/config_object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace edgert {

/// What a capture source does after its input fails or ends.
enum class Reconnect {
  yes,        // reopen after sleep_on_error_ms, at most max_retries times in a row
  no,         // the stream ends
  keepalive,  // like yes, and reopen even after a clean end of input
};

struct CaptureConfig {
  std::string type;                        // required: the capture plugin's signature
  bool live_feed = false;                  // false: lossless; true: the newest frame wins
  Reconnect reconnectable = Reconnect::yes;
  double fps = 0;                          // 0: as fast as the source delivers; else [0.001, 1000]
  std::int64_t max_retries = 3;            // [0, 1000000] consecutive reopen attempts
  std::int64_t sleep_on_error_ms = 1000;   // [1, 3600000] between reopen attempts (jittered, doubling)
  std::int64_t stall_timeout_ms = 5000;    // [100, 3600000] no item for this long: "source stalled"
  ConfigObject config;                     // every other key (e.g. url)
  std::string where;                       // "file:line" of the `capture` mapping
};

/// What makes a stream capture: each trigger captures one item (from `capture`, or,
/// without one, a record {"trigger", "fired_at_ms", "count"}). Triggers wait in a
/// bounded queue; when it is full the oldest is dropped with an ERROR result.
struct TriggerConfig {
  std::string type;                        // required: "interval" or "manual" (Node::trigger only)
  std::int64_t period_ms = 1000;           // [1, 86400000] between interval triggers
  std::int64_t queue_size = 2;             // [1, 1000] triggers waiting to be served
  ConfigObject config;                     // every other key
  std::string where;
};

struct InstanceConfig {
  std::string instance_id;                 // required; unique within its stream
  double process_delay = 0;                // seconds between two calls, [0, 3600]
  bool allow_empty_inputs = false;         // true: called even when no input arrived
  std::int64_t max_inputs_queue_size = 16; // [1, 1000000] inputs queued before the oldest drops
  bool disabled = false;                   // true: configured but not started
  double error_backoff_s = 10;             // [0, 3600] pause after n failed runs in a row: n x this
  double max_backoff_s = 300;              // [0, 86400] cap of that pause
  std::int64_t reset_after_good = 5;       // [1, 1000000] good runs that clear the failure count
  std::int64_t quarantine_after = 20;      // [1, 1000000] failed runs in a row that stop the instance
  double stuck_after_s = 10;               // [0.1, 86400] in one call this long: "stuck", not fed
  ConfigObject config;                     // every other key: the plugin instance's settings
  std::string where;
};

struct StreamPluginConfig {
  std::string signature;                   // required: the business plugin's signature
  std::vector<InstanceConfig> instances;   // at least one
  std::string where;
};

struct StreamConfig {
  std::string name;                        // required; unique among streams
  std::optional<CaptureConfig> capture;    // at least one of capture and trigger
  std::optional<TriggerConfig> trigger;    // with capture: capture one item per trigger
  std::vector<StreamPluginConfig> plugins;
  std::string where;                       // "file:line" of the list item
};

/// The `pipeline:` section: where results go besides the mailbox (docs/configuration.md).
struct PipelineSection {
  bool outbox = true;                      // results are stored in the mailbox outbox
  std::string results_jsonl;               // "" or a file every result is appended to, one JSON per line
  std::int64_t result_ttl_s = 86400;       // [1, 31536000] outbox TTL of results
  double drop_results_per_s = 5;           // [0, 10000] ERROR results per second per instance for
                                           // dropped inputs; more are summarised (docs/pipeline.md)
  std::int64_t monitor_period_ms = 250;    // [10, 60000] how often stalls and stuck calls are checked
};

}  // namespace edgert
