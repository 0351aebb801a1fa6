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
  std::int64_t sleep_on_error_ms = 1000;   // [1, 3600000] between reopen attempts
  ConfigObject config;                     // every other key (e.g. url)
  std::string where;                       // "file:line" of the `capture` mapping
};

/// A stream driven by a timer instead of a capture source.
struct TriggerConfig {
  std::string type;                        // required, e.g. "interval"
  std::int64_t period_ms = 1000;           // [1, 86400000]
  ConfigObject config;                     // every other key
  std::string where;
};

struct InstanceConfig {
  std::string instance_id;                 // required; unique within its stream
  double process_delay = 0;                // seconds between two calls, [0, 3600]
  bool allow_empty_inputs = false;         // true: called even when no input arrived
  std::int64_t max_inputs_queue_size = 16; // [1, 1000000] inputs queued before the oldest drops
  bool disabled = false;                   // true: configured but not started
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
  std::optional<CaptureConfig> capture;    // exactly one of capture and trigger
  std::optional<TriggerConfig> trigger;
  std::vector<StreamPluginConfig> plugins;
  std::string where;                       // "file:line" of the list item
};

}  // namespace edgert
