// `edgert-node run --progress`: live figures while a node runs, and the summary at exit.
#pragma once

#include <edgert/config.hpp>

#include <cstdio>
#include <string>

namespace edgert_node {

/// Renders the node's stats document (Node::stats_json) as a few lines: frames per
/// stream, processed/dropped per instance, outbox depth.
std::string progress_lines(const std::string& stats_json, double uptime_s);

/// Prints progress to `out`: on a terminal the block is redrawn in place, otherwise
/// one block every `period_s` seconds.
class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, double period_s);
  /// Call often; prints when due.
  void update(const std::string& stats_json, double uptime_s);

 private:
  std::FILE* out_;
  bool tty_;
  double period_s_;
  double last_ = -1e9;
  int lines_drawn_ = 0;
};

/// What the run did and where its results are (printed once the node has stopped).
std::string final_summary(const std::string& stats_json, const edgert::Config& config);

}  // namespace edgert_node
