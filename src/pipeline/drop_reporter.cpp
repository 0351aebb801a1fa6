#include "pipeline/drop_reporter.hpp"

#include <algorithm>

namespace edgert::pipeline {

DropReporter::DropReporter(std::shared_ptr<Outputs> outputs, ResultOrigin origin, double per_second, bool deferred)
    : outputs_(std::move(outputs)),
      origin_(std::move(origin)),
      per_second_(per_second),
      deferred_(deferred),
      tokens_(std::max(1.0, per_second)),
      refilled_ns_(mono_ns_now()) {}

void DropReporter::dropped(const Input& input, const std::string& reason) {
  bool own_result = false;
  {
    std::lock_guard lk(mu_);
    const auto now = mono_ns_now();
    tokens_ = std::min(std::max(1.0, per_second_), tokens_ + per_second_ * static_cast<double>(now - refilled_ns_) / 1e9);
    refilled_ns_ = now;
    if (!deferred_ && per_second_ > 0 && tokens_ >= 1.0) {
      tokens_ -= 1.0;
      own_result = true;
    } else {
      auto& p = pending_[reason];
      if (p.count == 0) {
        p.first_seq = input.sequence;
        p.first_captured_ns = input.captured_wall_ns;
      }
      ++p.count;
      p.last_seq = input.sequence;
    }
  }
  if (own_result) {
    ResultOrigin o = origin_;
    o.sequence = input.sequence;
    o.captured_wall_ns = input.captured_wall_ns;
    outputs_->publish_error(o, reason, "input " + std::to_string(input.sequence) + " dropped", 1);
  }
}

void DropReporter::flush(bool force) {
  std::map<std::string, Pending> due;
  {
    std::lock_guard lk(mu_);
    const auto now = mono_ns_now();
    if (pending_.empty() || (!force && now - last_summary_ns_ < 1000000000)) return;
    last_summary_ns_ = now;
    due.swap(pending_);
  }
  for (const auto& [reason, p] : due) {
    ResultOrigin o = origin_;
    o.sequence = p.last_seq;
    o.captured_wall_ns = p.first_captured_ns;
    std::string detail = std::to_string(p.count) + (p.count == 1 ? " input" : " inputs") + " dropped";
    if (p.first_seq != 0) detail += " (sequences " + std::to_string(p.first_seq) + "-" + std::to_string(p.last_seq) + ")";
    detail += ", reported together";
    outputs_->publish_error(o, reason, detail, p.count);
  }
}

}  // namespace edgert::pipeline
