// json_bench: the result path's one pass (check_json, docs/architecture.md) against what it replaced, nlohmann's
// strict SAX parser walking the same text (json::accept, which builds no DOM but copies every string and number
// into its token buffer), and against a full json::parse, on three payload shapes, measured in one run.
//
//   small : a ~200 B detection (a few keys, numbers, a short array)
//   boxes : ~8 KiB, 64 boxes of floats and labels
//   blob  : 256 KiB, one long string (an encoded image)
//
// Each case runs `--rounds` times interleaved; the median MB/s is reported, and the ratio check_json / accept.
// Usage: json_bench [--seconds S] [--rounds R] [--json]
#include "core/json_check.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

std::string small_payload() {
  return json{{"label", "person"}, {"score", 0.9312}, {"box", {12, 40, 118, 260}}, {"priority", 2},
              {"frame", 123456}, {"model", "yolov5n"}, {"tracked", true}, {"note", "entered zone A"}}
      .dump();
}

std::string boxes_payload() {
  json boxes = json::array();
  for (int i = 0; i < 64; ++i) {
    boxes.push_back({{"x", i * 1.25}, {"y", i * 2.5 + 0.125}, {"w", 32.75}, {"h", 64.5}, {"label", "car"},
                     {"score", 0.5 + i / 256.0}, {"id", 1000 + i}});
  }
  return json{{"boxes", boxes}, {"frame", 98765}, {"stream", "cam-1"}}.dump();
}

std::string blob_payload() { return json{{"jpeg_b64", std::string(256 * 1024, 'Q')}, {"priority", 1}}.dump(); }

// MB/s of `pass` over `text`, run for about `seconds`.
double rate(const std::string& text, double seconds, const std::function<bool(const std::string&)>& pass) {
  std::size_t n = 0;
  bool all_ok = true;
  const auto t0 = Clock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    for (int i = 0; i < 16; ++i) all_ok &= pass(text);
    n += 16;
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!all_ok) {
    std::fprintf(stderr, "json_bench: a pass refused the payload\n");
    std::exit(1);
  }
  return static_cast<double>(n * text.size()) / s / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.5;
  int rounds = 3;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--json") {
      as_json = true;
    } else {
      std::fprintf(stderr, "usage: json_bench [--seconds S] [--rounds R] [--json]\n");
      return 2;
    }
  }
  const std::vector<std::pair<const char*, std::string>> payloads = {
      {"small", small_payload()}, {"boxes", boxes_payload()}, {"blob", blob_payload()}};
  auto check = [](const std::string& t) {
    edgert::detail::JsonShape shape;
    return !edgert::detail::check_json(t, 64, &shape);
  };
  auto accept = [](const std::string& t) { return json::accept(t); };
  auto parse = [](const std::string& t) { return !json::parse(t).is_discarded(); };

  std::string out = "{";
  for (const auto& [name, text] : payloads) {
    std::vector<double> c, a, p;
    for (int r = 0; r < rounds; ++r) {
      c.push_back(rate(text, seconds, check));
      a.push_back(rate(text, seconds, accept));
      p.push_back(rate(text, seconds, parse));
    }
    const double mc = median(c), ma = median(a), mp = median(p);
    char buf[512];
    if (as_json) {
      std::snprintf(buf, sizeof buf,
                    "%s\"%s\": {\"bytes\": %zu, \"check_json_mb_s\": %.1f, \"nlohmann_accept_mb_s\": %.1f, "
                    "\"nlohmann_parse_mb_s\": %.1f, \"check_vs_accept\": %.2f}",
                    out.size() > 1 ? ", " : "", name, text.size(), mc, ma, mp, mc / ma);
    } else {
      std::snprintf(buf, sizeof buf,
                    "%-6s %7zu B  check_json %8.1f MB/s  nlohmann accept %8.1f MB/s  parse %8.1f MB/s  "
                    "check/accept %.2f\n",
                    name, text.size(), mc, ma, mp, mc / ma);
    }
    out += buf;
  }
  if (as_json) {
    std::printf("%s}\n", out.c_str());
  } else {
    std::printf("%s", out.c_str() + 1);
  }
  return 0;
}
