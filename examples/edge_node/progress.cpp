#include "progress.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <sstream>

namespace edgert_node {

using json = nlohmann::json;

namespace {

std::uint64_t u(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<std::uint64_t>() : 0;
}

double d(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string s(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::string progress_lines(const std::string& stats_json, double uptime_s) {
  const auto doc = json::parse(stats_json, nullptr, false);
  if (!doc.is_object()) return "(no figures)\n";
  std::ostringstream o;
  char buf[512];
  std::snprintf(buf, sizeof buf, "edgert-node  %.0f s", uptime_s);
  o << buf;
  if (const auto mb = doc.find("mailbox"); mb != doc.end()) {
    std::snprintf(buf, sizeof buf, "  outbox: %llu pending, %llu stored", static_cast<unsigned long long>(u(*mb, "pending")),
                  static_cast<unsigned long long>(u(*mb, "enqueued")));
    o << buf;
  }
  o << "\n";
  if (const auto st = doc.find("streams"); st != doc.end() && st->is_object()) {
    for (const auto& [name, f] : st->items()) {
      std::snprintf(buf, sizeof buf, "  stream %-20s %10llu captured %7.1f fps  %-12s errors %llu reconnects %llu\n",
                    name.c_str(), static_cast<unsigned long long>(u(f, "captured")), d(f, "fps"), s(f, "state").c_str(),
                    static_cast<unsigned long long>(u(f, "errors")),
                    static_cast<unsigned long long>(u(f, "reconnects")));
      o << buf;
    }
  }
  if (const auto in = doc.find("instances"); in != doc.end() && in->is_object()) {
    for (const auto& [name, f] : in->items()) {
      std::snprintf(buf, sizeof buf,
                    "    %-34s %10llu processed %8llu dropped %6llu errors  queue %llu  p99 %.1f ms  %s\n",
                    name.c_str(), static_cast<unsigned long long>(u(f, "processed")),
                    static_cast<unsigned long long>(u(f, "dropped")), static_cast<unsigned long long>(u(f, "errors")),
                    static_cast<unsigned long long>(u(f, "queued")), d(f, "latency_p99_ms"), s(f, "state").c_str());
      o << buf;
    }
  }
  return o.str();
}

ProgressPrinter::ProgressPrinter(std::FILE* out, double period_s)
    : out_(out), tty_(isatty(fileno(out)) == 1), period_s_(tty_ ? 0.5 : period_s) {}

void ProgressPrinter::update(const std::string& stats_json, double uptime_s) {
  if (uptime_s - last_ < period_s_) return;
  last_ = uptime_s;
  const auto text = progress_lines(stats_json, uptime_s);
  if (tty_) {
    if (lines_drawn_ > 0) std::fprintf(out_, "\033[%dA", lines_drawn_);  // back to the top of the block
    std::string cleared;
    int n = 0;
    for (char c : text) {
      if (c == '\n') {
        cleared += "\033[K";
        ++n;
      }
      cleared += c;
    }
    std::fputs(cleared.c_str(), out_);
    lines_drawn_ = n;
  } else {
    std::fputs(text.c_str(), out_);
  }
  std::fflush(out_);
}

std::string final_summary(const std::string& stats_json, const edgert::Config& config) {
  const auto doc = json::parse(stats_json, nullptr, false);
  std::ostringstream o;
  o << "\nSummary\n" << progress_lines(stats_json, 0).substr(progress_lines(stats_json, 0).find('\n') + 1);
  if (doc.is_object()) {
    if (const auto out = doc.find("outputs"); out != doc.end()) {
      o << "  results: " << u(*out, "results") << " (" << u(*out, "error_results") << " ERROR results for dropped inputs), "
        << u(*out, "stored") << " stored in the outbox";
      if (u(*out, "store_errors") > 0) o << ", " << u(*out, "store_errors") << " NOT stored (see the log)";
      o << "\n";
    }
  }
  std::error_code ec;
  const auto db = std::filesystem::absolute(std::filesystem::path(config.node.data_dir) / "mailbox.db", ec);
  o << "\nWhere the results are:\n"
    << "  outbox (SQLite, kept until delivered): " << db.string() << "\n"
    << "    edgert-node mailbox stats --data-dir " << db.parent_path().string() << "\n";
  if (!config.pipeline.results_jsonl.empty()) {
    o << "  every result, one JSON per line: " << config.pipeline.results_jsonl << "\n"
      << "    tail -n 3 " << config.pipeline.results_jsonl << "\n";
  }
  return o.str();
}

}  // namespace edgert_node
