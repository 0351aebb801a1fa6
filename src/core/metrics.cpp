// STUB: the API only, so the tests can be seen failing first.
#include <edgert/metrics.hpp>
namespace edgert {
namespace detail { struct MetricsState {}; }
const char* to_string(MetricType) noexcept { return ""; }
double HistogramData::quantile(double) const noexcept { return 0; }
const MetricSample* Snapshot::find(std::string_view, Labels) const { return nullptr; }
const MetricFamily* Snapshot::family(std::string_view) const { return nullptr; }
std::string to_json(const Snapshot&) { return "{}"; }
std::string to_prometheus(const Snapshot&) { return ""; }
MetricsRegistration::MetricsRegistration(std::weak_ptr<detail::MetricsState> s, std::uint64_t id) noexcept : state_(std::move(s)), id_(id) {}
MetricsRegistration::MetricsRegistration(MetricsRegistration&& o) noexcept = default;
MetricsRegistration& MetricsRegistration::operator=(MetricsRegistration&& o) noexcept = default;
MetricsRegistration::~MetricsRegistration() = default;
void MetricsRegistration::reset() noexcept {}
MetricsRegistry::MetricsRegistry() : state_(std::make_shared<detail::MetricsState>()) {}
MetricsRegistry::~MetricsRegistry() = default;
static Counter g_c; static Gauge g_g; static Histogram g_h;
Counter& MetricsRegistry::counter(std::string_view, Labels, std::string_view) { return g_c; }
Gauge& MetricsRegistry::gauge(std::string_view, Labels, std::string_view) { return g_g; }
Histogram& MetricsRegistry::histogram(std::string_view, Labels, std::string_view) { return g_h; }
MetricsRegistration MetricsRegistry::register_collector(std::vector<SeriesSpec>, CollectFn) { return {}; }
Snapshot MetricsRegistry::snapshot() const { return {}; }
bool valid_metric_name(std::string_view) noexcept { return true; }
bool valid_label_name(std::string_view) noexcept { return true; }
}
