// synthetic_telemetry: a capture plugin producing vehicle telemetry records (JSON),
// shaped after the predictive-maintenance flow of docs/plugins.md, "Bundled plugins":
// a VIN, sensor readings, the component expected to fail and its predicted days to
// failure. Vehicles are visited round-robin; every value except timestamp_ms follows
// from `seed`, so two runs with the same configuration give the same records.
//
// Urgency bands (telemetry_urgency's levels): the first round(near_failure_fraction *
// vehicles) vehicles are near failure and alternate CRITICAL (< 1 day) and HIGH
// (< 7 days); the others alternate MEDIUM (< 30 days) and LOW (>= 30 days). With the
// defaults (10 vehicles, 0.3) all four bands are present.
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using nlohmann::json;

std::uint64_t next_random(std::uint64_t& state) {  // splitmix64: portable and fixed
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [lo, hi).
double uniform(std::uint64_t& state, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(next_random(state) >> 11) * 0x1.0p-53;
}

// Rounded to `digits` decimals so the JSON text stays short and identical across runs.
double round_to(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

constexpr std::array<const char*, 5> kComponents = {"brakes", "battery", "engine", "oil_pump", "tires"};

struct Vehicle {
  std::string vin;
  const char* component;
  double days;        // predicted days to failure, within the vehicle's band
  double health;      // 0 (failing now) .. 1 (healthy): how degraded the component's sensor reads
  double mileage_km;
  std::uint64_t noise;  // per-vehicle generator state for sensor jitter
};

class SyntheticTelemetry : public edgert::sdk::Plugin {
 public:
  SyntheticTelemetry(edgert::sdk::Host host, std::string_view config) : Plugin(host) {
    const json c = json::parse(config);
    const int vehicles = c.at("vehicles").get<int>();
    const double rate = c.at("rate_hz").get<double>();
    records_ = c.at("records").get<std::int64_t>();
    const double near = c.at("near_failure_fraction").get<double>();
    std::uint64_t state = c.at("seed").get<std::uint64_t>();
    if (rate > 0) interval_ns_ = static_cast<std::int64_t>(1e9 / rate);
    const int near_count = static_cast<int>(std::lround(near * vehicles));
    static constexpr char kVinChars[] = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789";  // no I, O, Q
    for (int i = 0; i < vehicles; ++i) {
      Vehicle v{};
      v.vin = "SYN";  // a synthetic manufacturer prefix, then 14 seeded characters
      for (int k = 0; k < 14; ++k) v.vin += kVinChars[next_random(state) % (sizeof kVinChars - 1)];
      v.component = kComponents[next_random(state) % kComponents.size()];
      const bool is_near = i < near_count;
      const int band = is_near ? i % 2 : 2 + (i - near_count) % 2;  // 0 CRITICAL, 1 HIGH, 2 MEDIUM, 3 LOW
      static constexpr double kLo[] = {0.05, 1.0, 7.0, 30.0};
      static constexpr double kHi[] = {0.95, 6.9, 29.5, 365.0};
      v.days = round_to(uniform(state, kLo[band], kHi[band]), 2);
      v.health = std::min(1.0, v.days / 60.0);
      v.mileage_km = round_to(uniform(state, 5000.0, 250000.0), 1);
      v.noise = next_random(state);
      fleet_.push_back(std::move(v));
    }
  }

  edgert_status capture(edgert_capture& out) override {
    if (records_ > 0 && produced_ >= records_) return EDGERT_ERR_END_OF_STREAM;
    pace();
    Vehicle& v = fleet_[static_cast<std::size_t>(produced_ % static_cast<std::int64_t>(fleet_.size()))];
    const std::int64_t wall_ns = host().wall_ns();
    const std::string text = record(v, wall_ns / 1000000).dump();
    auto* buf = static_cast<char*>(std::malloc(text.size() + 1));
    if (buf == nullptr) {
      host().error("cannot allocate a " + std::to_string(text.size()) + "-byte record");
      return EDGERT_ERR_NO_MEMORY;
    }
    std::memcpy(buf, text.c_str(), text.size() + 1);
    ++produced_;
    out.record_json = buf;
    out.record_len = text.size();
    out.timestamp_ns = wall_ns;
    out.release = &std::free;
    out.release_data = buf;
    return EDGERT_OK;
  }

 private:
  // One reading of vehicle v. The failing component's sensor is pulled towards its
  // failure value as health falls; the others read normal with jitter.
  json record(Vehicle& v, std::int64_t timestamp_ms) {
    auto jitter = [&](double spread) { return uniform(v.noise, -spread, spread); };
    const double bad = 1.0 - v.health;
    const bool engine = std::strcmp(v.component, "engine") == 0;
    const bool oil = std::strcmp(v.component, "oil_pump") == 0;
    const bool battery = std::strcmp(v.component, "battery") == 0;
    const bool brakes = std::strcmp(v.component, "brakes") == 0;
    const bool tires = std::strcmp(v.component, "tires") == 0;
    v.mileage_km = round_to(v.mileage_km + uniform(v.noise, 0.5, 3.0), 1);
    json sensors = {
        {"engine_temp_c", round_to(90.0 + (engine ? 35.0 * bad : 0.0) + jitter(2.0), 1)},
        {"oil_pressure_kpa", round_to(300.0 - (oil ? 220.0 * bad : 0.0) + jitter(10.0), 1)},
        {"battery_voltage", round_to(12.6 - (battery ? 1.8 * bad : 0.0) + jitter(0.1), 2)},
        {"brake_pad_wear_pct", round_to(std::min(100.0, 20.0 + (brakes ? 78.0 * bad : 0.0) + jitter(2.0)), 1)},
        {"tire_pressure_kpa", round_to(230.0 - (tires ? 90.0 * bad : 0.0) + jitter(4.0), 1)},
        {"mileage_km", v.mileage_km}};
    return json{{"vin", v.vin},
                {"timestamp_ms", timestamp_ms},
                {"sensors", std::move(sensors)},
                {"predicted_days_to_failure", v.days},
                {"component", v.component}};
  }

  // As synthetic_camera: at most one interval of waiting, no catch-up bursts.
  void pace() {
    if (interval_ns_ <= 0) return;
    const std::int64_t now = host().monotonic_ns();
    if (next_due_ns_ == 0 || now - next_due_ns_ > interval_ns_) next_due_ns_ = now;
    if (next_due_ns_ > now) std::this_thread::sleep_for(std::chrono::nanoseconds(next_due_ns_ - now));
    next_due_ns_ += interval_ns_;
  }

  std::vector<Vehicle> fleet_;
  std::int64_t records_ = 0, produced_ = 0;
  std::int64_t interval_ns_ = 0, next_due_ns_ = 0;
};

}  // namespace

EDGERT_PLUGIN_CLASS(SyntheticTelemetry, EDGERT_KIND_CAPTURE, "synthetic_telemetry", "1.0.0",
                    "vehicle telemetry records (JSON) with predicted days to failure, at a rate",
                    R"schema({"vehicles": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100000,
                                     "description": "vehicles in the fleet, visited round-robin"},
                        "rate_hz": {"type": "number", "default": 10, "minimum": 0, "maximum": 100000,
                                    "description": "records per second on the monotonic clock; 0: as fast as called"},
                        "records": {"type": "integer", "default": 0, "minimum": 0,
                                    "description": "records before end of stream; 0: endless"},
                        "seed": {"type": "integer", "default": 1, "minimum": 0,
                                 "description": "VINs, components and readings; same seed, same records"},
                        "near_failure_fraction": {"type": "number", "default": 0.3, "minimum": 0, "maximum": 1,
                                                  "description": "share of vehicles under 7 days to failure (CRITICAL/HIGH)"}})schema");
