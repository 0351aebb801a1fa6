// Renderers of a metrics Snapshot: JSON and the Prometheus text format 0.0.4.
#include <edgert/metrics_snapshot.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>

namespace edgert {

namespace {

// Shortest text that reads back as the same double ("3", "1.024e-06").
void append_number(std::string& out, double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

double seconds(std::uint64_t ns) { return static_cast<double>(ns) / 1e9; }

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void append_json_number(std::string& out, double v) {
  if (std::isfinite(v)) {
    append_number(out, v);
  } else {
    out += "null";  // JSON has no NaN or infinity
  }
}

// Label values: backslash, double quote and newline are escaped (format 0.0.4).
void append_prom_label_value(std::string& out, std::string_view s) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// HELP text: backslash and newline are escaped (format 0.0.4).
void append_prom_help(std::string& out, std::string_view s) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_prom_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    append_number(out, v);
  }
}

// {k="v",...[,le="bound"]} or nothing when there are no labels at all.
void append_prom_labels(std::string& out, const Labels& labels, const char* le = nullptr) {
  if (labels.empty() && !le) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_prom_label_value(out, v);
    out += '"';
  }
  if (le) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void append_prom_sample(std::string& out, std::string_view name, const char* suffix, const Labels& labels,
                        double value, const char* le = nullptr) {
  out += name;
  out += suffix;
  append_prom_labels(out, labels, le);
  out += ' ';
  append_prom_value(out, value);
  out += '\n';
}

}  // namespace

std::string to_json(const Snapshot& snapshot) {
  std::string out = "{";
  bool first_family = true;
  for (const auto& f : snapshot.families) {
    out += first_family ? "\n  " : ",\n  ";
    first_family = false;
    append_json_string(out, f.name);
    out += ": {\"type\": \"";
    out += to_string(f.type);
    out += "\", \"help\": ";
    append_json_string(out, f.help);
    out += ", \"series\": [";
    bool first_sample = true;
    for (const auto& s : f.samples) {
      out += first_sample ? "\n    {\"labels\": {" : ",\n    {\"labels\": {";
      first_sample = false;
      for (std::size_t i = 0; i < s.labels.size(); ++i) {
        if (i) out += ", ";
        append_json_string(out, s.labels[i].first);
        out += ": ";
        append_json_string(out, s.labels[i].second);
      }
      out += '}';
      if (f.type != MetricType::histogram) {
        out += ", \"value\": ";
        append_json_number(out, s.value);
      } else {
        HistogramData h = s.histogram;
        h.buckets.resize(kHistogramBuckets);
        out += ", \"count\": " + std::to_string(h.count) + ", \"sum_seconds\": ";
        append_json_number(out, seconds(h.sum_ns));
        for (const auto& [key, q] : {std::pair{"p50_seconds", 0.5}, {"p90_seconds", 0.9}, {"p99_seconds", 0.99}}) {
          out += ", \"";
          out += key;
          out += "\": ";
          append_json_number(out, h.quantile(q));
        }
        out += ", \"buckets\": [";
        bool first_bucket = true;
        for (std::size_t i = 0; i < kHistogramBuckets; ++i) {
          if (h.buckets[i] == 0) continue;
          out += first_bucket ? "[" : ", [";
          first_bucket = false;
          if (i + 1 == kHistogramBuckets) {
            out += "null";
          } else {
            append_json_number(out, seconds(histogram_bucket_upper(i)));
          }
          out += ", " + std::to_string(h.buckets[i]) + "]";
        }
        out += ']';
      }
      out += '}';
    }
    out += first_sample ? "]}" : "\n  ]}";
  }
  out += first_family ? "}\n" : "\n}\n";
  return out;
}

std::string to_prometheus(const Snapshot& snapshot) {
  std::string out;
  for (const auto& f : snapshot.families) {
    if (!f.help.empty()) {
      out += "# HELP " + f.name + ' ';
      append_prom_help(out, f.help);
      out += '\n';
    }
    out += "# TYPE " + f.name + ' ' + to_string(f.type) + '\n';
    for (const auto& s : f.samples) {
      if (f.type != MetricType::histogram) {
        append_prom_sample(out, f.name, "", s.labels, s.value);
        continue;
      }
      // Cumulative counts at the octave bounds 2^e ns: every bucket below such a
      // bound ends at or before it, so these counts are exact.
      HistogramData h = s.histogram;
      h.buckets.resize(kHistogramBuckets);
      std::uint64_t cumulative = h.buckets[0];
      for (unsigned e = kHistogramMinExp; e <= kHistogramMaxExp; ++e) {
        if (e > kHistogramMinExp) {
          for (std::size_t i = 1 + (e - 1 - kHistogramMinExp) * 4; i < 1 + (e - kHistogramMinExp) * 4; ++i) {
            cumulative += h.buckets[i];
          }
        }
        std::string le;
        append_number(le, seconds(std::uint64_t{1} << e));
        append_prom_sample(out, f.name, "_bucket", s.labels, static_cast<double>(cumulative), le.c_str());
      }
      append_prom_sample(out, f.name, "_bucket", s.labels, static_cast<double>(h.count), "+Inf");
      append_prom_sample(out, f.name, "_sum", s.labels, seconds(h.sum_ns));
      append_prom_sample(out, f.name, "_count", s.labels, static_cast<double>(h.count));
    }
  }
  return out;
}

}  // namespace edgert
