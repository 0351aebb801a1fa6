// telemetry_urgency: a business plugin that grades vehicle telemetry records by their
// predicted days to failure (docs/plugins.md, "Bundled business plugins").
//
// CRITICAL under `critical_days`, HIGH under `high_days`, MEDIUM under `medium_days`,
// else LOW (1, 7 and 30 days by default). Each record at or above `min_level` becomes a
// "telemetry.urgency" payload whose top-level integer "priority" (CRITICAL 3 .. LOW 0)
// the pipeline maps to the mailbox priority. A malformed record is refused with
// EDGERT_ERR_INVALID_ARGUMENT and a logged error naming the field.
#include "business_support.hpp"

#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace {

using edgert_bundled::printable;
using edgert_bundled::Refusal;
using nlohmann::json;

constexpr const char* kLevels[] = {"LOW", "MEDIUM", "HIGH", "CRITICAL"};  // index == priority

int level_of(const std::string& name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kLevels[i]) return i;
  }
  throw Refusal("config key 'min_level': \"" + printable(name) + "\" is not one of LOW, MEDIUM, HIGH, CRITICAL");
}

std::string number_text(double v) { return json(v).dump(); }

class TelemetryUrgency : public edgert::sdk::Plugin {
 public:
  TelemetryUrgency(edgert::sdk::Host host, std::string_view config) : Plugin(host) { apply(config); }

  bool update_config(std::string_view config) override {
    apply(config);  // a Refusal leaves the previous settings in place (apply assigns last)
    return true;
  }

  edgert_status process_input(const edgert::sdk::Input& in) {
    if (in.frame() != nullptr) {
      throw Refusal("telemetry_urgency takes JSON records; got a frame on stream '" + printable(in.stream()) + "'");
    }
    const std::string where = "record on stream '" + printable(in.stream()) + "'";
    const json rec = json::parse(in.record(), nullptr, /*allow_exceptions=*/false);
    if (rec.is_discarded()) throw Refusal(where + ": not valid JSON");
    if (!rec.is_object()) throw Refusal(where + ": not a JSON object (got " + std::string(rec.type_name()) + ")");

    const auto vin = rec.find("vin");
    if (vin == rec.end()) throw Refusal(where + ": field 'vin' is missing");
    if (!vin->is_string() || vin->get_ref<const std::string&>().empty()) {
      throw Refusal(where + ": field 'vin' must be a non-empty string (got " + std::string(vin->type_name()) + ")");
    }
    const std::string& vin_text = vin->get_ref<const std::string&>();
    const std::string who = where + " vin '" + printable(vin_text) + "'";

    const auto days_it = rec.find("predicted_days_to_failure");
    if (days_it == rec.end()) throw Refusal(who + ": field 'predicted_days_to_failure' is missing");
    if (!days_it->is_number()) {
      throw Refusal(who + ": field 'predicted_days_to_failure' must be a number (got " +
                    std::string(days_it->type_name()) + ")");
    }
    const double days = days_it->get<double>();
    if (!std::isfinite(days) || days < 0) {
      throw Refusal(who + ": field 'predicted_days_to_failure' must be a finite number >= 0 (got " +
                    (std::isfinite(days) ? number_text(days) : std::string("a non-finite value")) + ")");
    }

    json component = nullptr;
    if (const auto c = rec.find("component"); c != rec.end() && !c->is_null()) {
      if (!c->is_string()) {
        throw Refusal(who + ": field 'component' must be a string (got " + std::string(c->type_name()) + ")");
      }
      component = *c;
    }
    std::int64_t timestamp_ms = host().wall_ns() / 1000000;  // the record's own time when it has one
    if (const auto t = rec.find("timestamp_ms"); t != rec.end()) {
      if (!t->is_number()) {
        throw Refusal(who + ": field 'timestamp_ms' must be a number (got " + std::string(t->type_name()) + ")");
      }
      // ms since the epoch: 0 up to 2^53 (exact in a double; year 285,000).
      const double ms = t->get<double>();
      if (!(ms >= 0 && ms <= 9007199254740992.0)) {
        throw Refusal(who + ": field 'timestamp_ms' must be milliseconds since the epoch, 0..2^53 (got " +
                      number_text(ms) + ")");
      }
      timestamp_ms = t->is_number_unsigned() ? static_cast<std::int64_t>(t->get<std::uint64_t>())
                     : t->is_number_integer() ? t->get<std::int64_t>()
                                              : std::llround(ms);
    }

    const int level = days < critical_ ? 3 : days < high_ ? 2 : days < medium_ ? 1 : 0;
    if (level < min_level_) return EDGERT_OK;
    const json out = {{"vin", vin_text},
                      {"urgency", kLevels[level]},
                      {"predicted_days_to_failure", days},
                      {"component", component},
                      {"timestamp_ms", timestamp_ms},
                      {"priority", level}};
    if (!host().emit("telemetry.urgency", out.dump(-1, ' ', false, json::error_handler_t::replace))) {
      throw std::runtime_error("the host refused the telemetry.urgency payload (see its log)");
    }
    return EDGERT_OK;
  }

 private:
  void apply(std::string_view config) {
    const json c = json::parse(config.empty() ? std::string_view("{}") : config);
    const double critical = c.value("critical_days", 1.0);
    const double high = c.value("high_days", 7.0);
    const double medium = c.value("medium_days", 30.0);
    const int min_level = level_of(c.value("min_level", std::string("LOW")));
    if (!(critical >= 0 && critical < high && high < medium)) {
      throw Refusal("config keys 'critical_days' < 'high_days' < 'medium_days' must increase; got " +
                    number_text(critical) + ", " + number_text(high) + ", " + number_text(medium));
    }
    critical_ = critical;
    high_ = high;
    medium_ = medium;
    min_level_ = min_level;
  }

  double critical_ = 1, high_ = 7, medium_ = 30;
  int min_level_ = 0;
};

constexpr const char* kSchema = R"({
  "critical_days": {"type": "number", "default": 1, "minimum": 0,
                    "description": "CRITICAL when predicted_days_to_failure is below this"},
  "high_days": {"type": "number", "default": 7, "minimum": 0,
                "description": "HIGH when below this (and not CRITICAL); must exceed critical_days"},
  "medium_days": {"type": "number", "default": 30, "minimum": 0,
                  "description": "MEDIUM when below this (and not HIGH); must exceed high_days; else LOW"},
  "min_level": {"type": "string", "default": "LOW", "enum": ["LOW", "MEDIUM", "HIGH", "CRITICAL"],
                "description": "emit only records at or above this urgency"}
})";

constexpr edgert_plugin_descriptor kDescriptor = edgert_bundled::describe_refusing<TelemetryUrgency>(
    "telemetry_urgency", "1.0.0", "grades vehicle telemetry by predicted days to failure (CRITICAL/HIGH/MEDIUM/LOW)",
    kSchema);

}  // namespace

EDGERT_DECLARE_PLUGIN(kDescriptor);
