// threshold: a business plugin written in C++ with <edgert/plugin.hpp>.
// For a record input it reads the number at `field`; for a frame, the mean pixel
// value. When the value exceeds `limit` it emits an "event" payload. The limit can
// be changed in place through update_config.
#include <edgert/plugin.hpp>

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace {

using nlohmann::json;

class Threshold : public edgert::sdk::Plugin {
 public:
  Threshold(edgert::sdk::Host host, std::string_view config) : Plugin(host) { apply(config); }

  void process(const edgert::sdk::Input& in) override {
    double value = 0;
    if (const edgert_frame* f = in.frame()) {
      value = mean(*f);
    } else {
      const json record = json::parse(in.record());  // throws on bad JSON: reported by the SDK
      const auto it = record.find(field_);
      if (it == record.end() || !it->is_number()) return;  // not ours to judge
      value = it->get<double>();
    }
    if (value <= limit_) return;
    const json event = {{"stream", std::string(in.stream())}, {"field", field_}, {"value", value}, {"limit", limit_}};
    if (!host().emit("event", event.dump())) throw std::runtime_error("host refused the event");
  }

  bool update_config(std::string_view config) override {
    apply(config);
    return true;
  }

 private:
  void apply(std::string_view config) {
    const json c = json::parse(config);
    limit_ = c.value("limit", 10.0);
    field_ = c.value("field", std::string("value"));
  }

  static double mean(const edgert_frame& f) {
    const int bpp = f.pixel_format == EDGERT_PIXEL_GRAY8 ? 1 : f.pixel_format == EDGERT_PIXEL_BGRA8 ? 4 : 3;
    double sum = 0;
    for (int y = 0; y < f.height; ++y) {
      const std::uint8_t* row = f.data + static_cast<std::ptrdiff_t>(y) * f.stride;
      for (int x = 0; x < f.width * bpp; ++x) sum += row[x];
    }
    return sum / (static_cast<double>(f.width) * f.height * bpp);
  }

  double limit_ = 10.0;
  std::string field_ = "value";
};

}  // namespace

EDGERT_PLUGIN_CLASS(Threshold, EDGERT_KIND_BUSINESS, "threshold", "1.0.0",
                    "emits an event when a record field or a frame's mean exceeds a limit",
                    R"({"limit": {"type": "number", "default": 10.0, "description": "emit when the value exceeds this"},
                        "field": {"type": "string", "default": "value", "description": "record field holding the value"}})");
