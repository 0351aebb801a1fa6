// MetricsRegistry: registration, collectors and snapshots. The recording paths
// (Counter::add, Histogram::record) are inline in edgert/metrics.hpp and never come
// here. Registration and snapshot() share one mutex: both are rare next to
// recording, and holding it while collectors run is what lets a registration's
// destructor guarantee its collector is not running and will not run again.
#include <edgert/metrics.hpp>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace edgert {

namespace {

bool name_char(char c, bool first, bool colon) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool valid_name(std::string_view s, bool colon) noexcept {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!name_char(s[i], i == 0, colon)) return false;
  }
  return true;
}

// Prometheus requires UTF-8 label values; JSON readers reject anything else.
bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    static constexpr std::uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// name{k="v",...} for error messages (values quoted as given, unescaped).
std::string describe(std::string_view name, const Labels& labels) {
  std::string out(name);
  if (labels.empty()) return out;
  out += '{';
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first + "=\"" + labels[i].second + '"';
  }
  return out + '}';
}

}  // namespace

bool valid_metric_name(std::string_view name) noexcept { return valid_name(name, true); }

bool valid_label_name(std::string_view name) noexcept {
  return valid_name(name, false) && name.substr(0, 2) != "__";
}

const char* to_string(MetricType type) noexcept {
  switch (type) {
    case MetricType::counter:
      return "counter";
    case MetricType::gauge:
      return "gauge";
    case MetricType::histogram:
      return "histogram";
  }
  return "unknown";
}

namespace detail {

struct Owned {
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Collected {
  std::uint64_t collector;
  std::size_t index;
};

struct Family {
  MetricType type;
  std::string help;
  std::map<Labels, Owned> owned;
  std::map<Labels, Collected> collected;
  std::uint64_t family_collector = 0;  // non-zero: the family collector that owns the whole family
  std::size_t family_index = 0;        // its index in that collector's FamilySpec list
};

struct Collector {
  std::vector<SeriesSpec> series;  // labels sorted
  CollectFn collect;
  std::vector<double> values;      // filled by the last snapshot
};

struct FamilyCollector {
  std::vector<FamilySpec> families;
  FamilyCollectFn collect;
  std::vector<std::vector<MetricSample>> samples;  // per family, filled by the last snapshot
};

// Sorts `labels`; false when a name is invalid or repeats or a value is not UTF-8.
bool normalize_labels(Labels& labels) {
  std::sort(labels.begin(), labels.end());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i].first) || !valid_utf8(labels[i].second)) return false;
    if (i > 0 && labels[i - 1].first == labels[i].first) return false;
  }
  return true;
}

struct MetricsState {
  mutable std::mutex mutex;
  std::map<std::string, Family, std::less<>> families;
  std::map<std::uint64_t, Collector> collectors;
  std::map<std::uint64_t, FamilyCollector> family_collectors;
  std::uint64_t next_id = 1;
  Counter* collector_errors = nullptr;

  // Sorts `labels` and checks name, labels and type against what is registered.
  // Returns the family to add to, or nullptr when the name is new. Caller holds mutex.
  Family* check(std::string_view name, Labels& labels, MetricType type) {
    std::sort(labels.begin(), labels.end());
    if (!valid_metric_name(name)) {
      throw std::invalid_argument("metrics: invalid metric name '" + std::string(name) +
                                  "' (expected [a-zA-Z_:][a-zA-Z0-9_:]*)");
    }
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto& key = labels[i].first;
      if (!valid_label_name(key)) {
        throw std::invalid_argument("metrics: " + describe(name, labels) + ": invalid label name '" + key +
                                    "' (expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
      }
      if (!valid_utf8(labels[i].second)) {
        throw std::invalid_argument("metrics: " + std::string(name) + ": the value of label '" + key +
                                    "' is not valid UTF-8");
      }
      if (i > 0 && labels[i - 1].first == key) {
        throw std::invalid_argument("metrics: " + describe(name, labels) + ": label name '" + key + "' repeats");
      }
      if (type == MetricType::histogram && key == "le") {
        throw std::invalid_argument("metrics: " + describe(name, labels) +
                                    ": label name 'le' is reserved for histogram buckets");
      }
    }
    auto it = families.find(name);
    if (it == families.end()) return nullptr;
    if (it->second.family_collector != 0) {
      throw std::invalid_argument("metrics: " + describe(name, labels) + ": '" + std::string(name) +
                                  "' is reported by a family collector");
    }
    if (it->second.type != type) {
      throw std::invalid_argument("metrics: " + describe(name, labels) + ": '" + std::string(name) +
                                  "' is already registered as a " + to_string(it->second.type) +
                                  ", not a " + to_string(type));
    }
    return &it->second;
  }

  template <class T>
  T& instrument(std::string_view name, Labels labels, std::string_view help, MetricType type,
                std::unique_ptr<T> Owned::*member) {
    std::lock_guard lock(mutex);
    Family* fam = check(name, labels, type);
    if (fam && fam->collected.count(labels)) {
      throw std::invalid_argument("metrics: " + describe(name, labels) + " is already reported by a collector");
    }
    if (!fam) fam = &families.emplace(std::string(name), Family{type, std::string(help), {}, {}}).first->second;
    Owned& slot = fam->owned[labels];
    if (!(slot.*member)) slot.*member = std::make_unique<T>();
    return *(slot.*member);
  }

  void unregister(std::uint64_t id) noexcept {
    std::lock_guard lock(mutex);
    if (auto fc = family_collectors.find(id); fc != family_collectors.end()) {
      for (const auto& spec : fc->second.families) {
        auto f = families.find(spec.name);
        if (f != families.end() && f->second.family_collector == id) families.erase(f);
      }
      family_collectors.erase(fc);
      return;
    }
    auto it = collectors.find(id);
    if (it == collectors.end()) return;
    for (const auto& spec : it->second.series) {
      auto f = families.find(spec.name);
      if (f == families.end()) continue;
      f->second.collected.erase(spec.labels);
      if (f->second.collected.empty() && f->second.owned.empty()) families.erase(f);
    }
    collectors.erase(it);
  }
};

}  // namespace detail

MetricsRegistration::MetricsRegistration(std::weak_ptr<detail::MetricsState> state, std::uint64_t id) noexcept
    : state_(std::move(state)), id_(id) {}

MetricsRegistration::MetricsRegistration(MetricsRegistration&& other) noexcept
    : state_(std::move(other.state_)), id_(std::exchange(other.id_, 0)) {}

MetricsRegistration& MetricsRegistration::operator=(MetricsRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::move(other.state_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

MetricsRegistration::~MetricsRegistration() { reset(); }

void MetricsRegistration::reset() noexcept {
  if (id_ == 0) return;
  if (auto state = state_.lock()) state->unregister(id_);
  state_.reset();
  id_ = 0;
}

MetricsRegistry::MetricsRegistry() : state_(std::make_shared<detail::MetricsState>()) {
  state_->collector_errors =
      &counter("edgert_metrics_collector_errors_total", {}, "Snapshot-time collectors that threw (their series read NaN).");
}

MetricsRegistry::~MetricsRegistry() = default;

Counter& MetricsRegistry::counter(std::string_view name, Labels labels, std::string_view help) {
  return state_->instrument(name, std::move(labels), help, MetricType::counter, &detail::Owned::counter);
}

Gauge& MetricsRegistry::gauge(std::string_view name, Labels labels, std::string_view help) {
  return state_->instrument(name, std::move(labels), help, MetricType::gauge, &detail::Owned::gauge);
}

Histogram& MetricsRegistry::histogram(std::string_view name, Labels labels, std::string_view help) {
  return state_->instrument(name, std::move(labels), help, MetricType::histogram, &detail::Owned::histogram);
}

MetricsRegistration MetricsRegistry::register_collector(std::vector<SeriesSpec> series, CollectFn collect) {
  if (!collect) throw std::invalid_argument("metrics: register_collector: empty collect function");
  auto& st = *state_;
  std::lock_guard lock(st.mutex);
  // Validate everything before changing anything, so a refusal registers nothing.
  std::map<std::pair<std::string, Labels>, MetricType> seen;
  for (auto& spec : series) {
    if (spec.type == MetricType::histogram) {
      throw std::invalid_argument("metrics: " + describe(spec.name, spec.labels) +
                                  ": collectors report counters and gauges only");
    }
    const detail::Family* fam = st.check(spec.name, spec.labels, spec.type);
    const bool taken = fam && (fam->owned.count(spec.labels) || fam->collected.count(spec.labels));
    auto [it, fresh] = seen.emplace(std::make_pair(spec.name, spec.labels), spec.type);
    if (taken || !fresh) {
      throw std::invalid_argument("metrics: " + describe(spec.name, spec.labels) + " is already registered");
    }
    for (const auto& [key, type] : seen) {
      if (key.first == spec.name && type != spec.type) {
        throw std::invalid_argument("metrics: " + describe(spec.name, spec.labels) + ": '" + spec.name +
                                    "' is declared both as a " + to_string(type) + " and a " +
                                    to_string(spec.type));
      }
    }
  }
  const std::uint64_t id = st.next_id++;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& spec = series[i];
    auto fam = st.families.find(spec.name);
    if (fam == st.families.end()) {
      fam = st.families.emplace(spec.name, detail::Family{spec.type, spec.help, {}, {}}).first;
    }
    fam->second.collected.emplace(spec.labels, detail::Collected{id, i});
  }
  const std::size_t n = series.size();
  st.collectors.emplace(id, detail::Collector{std::move(series), std::move(collect), std::vector<double>(n)});
  return MetricsRegistration(state_, id);
}

MetricsRegistration MetricsRegistry::register_family_collector(std::vector<FamilySpec> families,
                                                               FamilyCollectFn collect) {
  if (!collect) throw std::invalid_argument("metrics: register_family_collector: empty collect function");
  auto& st = *state_;
  std::lock_guard lock(st.mutex);
  for (std::size_t i = 0; i < families.size(); ++i) {
    const auto& f = families[i];
    if (!valid_metric_name(f.name)) {
      throw std::invalid_argument("metrics: invalid metric name '" + f.name + "' (expected [a-zA-Z_:][a-zA-Z0-9_:]*)");
    }
    if (f.type == MetricType::histogram) {
      throw std::invalid_argument("metrics: " + f.name + ": family collectors report counters and gauges only");
    }
    if (st.families.count(f.name)) throw std::invalid_argument("metrics: " + f.name + " is already registered");
    for (std::size_t k = 0; k < i; ++k) {
      if (families[k].name == f.name) throw std::invalid_argument("metrics: " + f.name + " is declared twice");
    }
  }
  const std::uint64_t id = st.next_id++;
  for (std::size_t i = 0; i < families.size(); ++i) {
    detail::Family fam{families[i].type, families[i].help, {}, {}, id, i};
    st.families.emplace(families[i].name, std::move(fam));
  }
  const std::size_t n = families.size();
  st.family_collectors.emplace(id, detail::FamilyCollector{std::move(families), std::move(collect),
                                                           std::vector<std::vector<MetricSample>>(n)});
  return MetricsRegistration(state_, id);
}

Snapshot MetricsRegistry::snapshot() const {
  auto& st = *state_;
  std::lock_guard lock(st.mutex);
  for (auto& [id, c] : st.collectors) {
    std::fill(c.values.begin(), c.values.end(), 0.0);
    try {
      c.collect(std::span<double>(c.values));
    } catch (...) {
      std::fill(c.values.begin(), c.values.end(), std::nan(""));
      st.collector_errors->add();
    }
  }
  for (auto& [id, fc] : st.family_collectors) {
    for (auto& v : fc.samples) v.clear();
    std::vector<FamilySample> produced;
    try {
      fc.collect(produced);
    } catch (...) {
      produced.clear();
      st.collector_errors->add();
    }
    for (auto& p : produced) {
      if (p.family >= fc.samples.size() || !detail::normalize_labels(p.labels)) {
        st.collector_errors->add();
        continue;
      }
      fc.samples[p.family].push_back(MetricSample{std::move(p.labels), p.value, {}});
    }
    for (auto& v : fc.samples) {
      std::stable_sort(v.begin(), v.end(),
                       [](const MetricSample& a, const MetricSample& b) { return a.labels < b.labels; });
      const auto dup = std::unique(v.begin(), v.end(),
                                   [](const MetricSample& a, const MetricSample& b) { return a.labels == b.labels; });
      for (auto it = dup; it != v.end(); ++it) st.collector_errors->add();
      v.erase(dup, v.end());
    }
  }
  Snapshot snap;
  snap.families.reserve(st.families.size());
  for (const auto& [name, fam] : st.families) {
    MetricFamily out{name, fam.type, fam.help, {}};
    if (fam.family_collector != 0) {
      out.samples = st.family_collectors.at(fam.family_collector).samples[fam.family_index];
      snap.families.push_back(std::move(out));
      continue;
    }
    out.samples.reserve(fam.owned.size() + fam.collected.size());
    for (const auto& [labels, o] : fam.owned) {
      MetricSample s{labels, 0, {}};
      if (o.counter) s.value = static_cast<double>(o.counter->value());
      if (o.gauge) s.value = o.gauge->value();
      if (o.histogram) s.histogram = o.histogram->data();
      out.samples.push_back(std::move(s));
    }
    for (const auto& [labels, c] : fam.collected) {
      out.samples.push_back(MetricSample{labels, st.collectors.at(c.collector).values[c.index], {}});
    }
    // Owned and collected series of one name may interleave.
    if (!fam.owned.empty() && !fam.collected.empty()) {
      std::sort(out.samples.begin(), out.samples.end(),
                [](const MetricSample& a, const MetricSample& b) { return a.labels < b.labels; });
    }
    snap.families.push_back(std::move(out));
  }
  return snap;
}

double HistogramData::quantile(double q) const noexcept {
  if (count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets.size() && i < kHistogramBuckets; ++i) {
    seen += buckets[i];
    if (seen >= rank) {
      if (i + 1 == kHistogramBuckets) return static_cast<double>(histogram_bucket_lower(i)) / 1e9;
      const double mid =
          (static_cast<double>(histogram_bucket_lower(i)) + static_cast<double>(histogram_bucket_upper(i))) / 2;
      return mid / 1e9;
    }
  }
  return static_cast<double>(histogram_bucket_lower(kHistogramBuckets - 1)) / 1e9;  // buckets changed under us
}

const MetricFamily* Snapshot::family(std::string_view name) const {
  auto it = std::lower_bound(families.begin(), families.end(), name,
                             [](const MetricFamily& f, std::string_view n) { return f.name < n; });
  return it != families.end() && it->name == name ? &*it : nullptr;
}

const MetricSample* Snapshot::find(std::string_view name, Labels labels) const {
  const MetricFamily* f = family(name);
  if (!f) return nullptr;
  std::sort(labels.begin(), labels.end());
  for (const auto& s : f->samples) {
    if (s.labels == labels) return &s;
  }
  return nullptr;
}

}  // namespace edgert
