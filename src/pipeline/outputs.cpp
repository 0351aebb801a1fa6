#include "pipeline/outputs.hpp"

#include <edgert/mailbox.hpp>

#include "core/log.hpp"
#include "core/printable.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace edgert::pipeline {

using json = nlohmann::json;

std::int64_t wall_ms_now() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// The mailbox priority a payload asks for: its top-level integer "priority", clamped
// (docs/pipeline.md, "Priority").
int priority_of(const json& payload) {
  const auto it = payload.find("priority");
  if (it == payload.end() || !it->is_number_integer()) return 0;
  const auto p = it->get<std::int64_t>();
  return static_cast<int>(p < -1000 ? -1000 : p > 1000 ? 1000 : p);
}

}  // namespace

Outputs::Outputs(std::string node_id, PipelineSection config) : node_id_(std::move(node_id)), config_(std::move(config)) {}

Outputs::~Outputs() { close(); }

void Outputs::add_sink(ResultSink sink) {
  if (sink) sinks_.push_back(std::move(sink));
}

Status Outputs::open(Mailbox* mailbox) {
  std::lock_guard lk(mu_);
  if (!config_.results_jsonl.empty() && !file_) {
    file_ = std::fopen(config_.results_jsonl.c_str(), "ae");
    if (!file_) {
      return {ErrorCode::io_error,
              "pipeline.results_jsonl: cannot open " + config_.results_jsonl + ": " + std::strerror(errno)};
    }
  }
  mailbox_ = config_.outbox ? mailbox : nullptr;
  closed_ = false;
  return {};
}

void Outputs::publish(const ResultOrigin& origin, std::string_view payload_type, std::string_view text) {
  PipelineResult r;
  r.stream = origin.stream;
  r.signature = origin.signature;
  r.instance_id = origin.instance_id;
  r.sequence = origin.sequence;
  r.captured_at_ms = origin.captured_wall_ns / 1000000;
  r.detected_at_ms = wall_ms_now();
  r.payload_type = std::string(payload_type);
  json payload = json::parse(text, nullptr, false);
  if (payload.is_discarded()) payload = json(std::string(text));  // emit checked it; keep it whatever happens
  if (!payload.is_object()) payload = json{{"data", std::move(payload)}};
  r.priority = priority_of(payload);
  payload["stream"] = r.stream;
  payload["signature"] = r.signature;
  payload["instance_id"] = r.instance_id;
  payload["sequence"] = r.sequence;
  payload["captured_at"] = r.captured_at_ms;
  payload["detected_at"] = r.detected_at_ms;
  r.payload = payload.dump(-1, ' ', false, json::error_handler_t::replace);
  emit(std::move(r));
}

void Outputs::publish_error(const ResultOrigin& origin, std::string_view reason, std::string_view detail,
                            std::uint64_t dropped) {
  PipelineResult r;
  r.stream = origin.stream;
  r.signature = origin.signature;
  r.instance_id = origin.instance_id;
  r.sequence = origin.sequence;
  r.captured_at_ms = origin.captured_wall_ns / 1000000;
  r.detected_at_ms = wall_ms_now();
  r.payload_type = "pipeline.error";
  r.error = true;
  std::string message = "Error: " + std::string(reason);
  if (!detail.empty()) message += ": " + std::string(detail);
  json payload{{"result", "ERROR"},
               {"message", message},
               {"reason", std::string(reason)},
               {"dropped", dropped},
               {"stream", r.stream},
               {"signature", r.signature},
               {"instance_id", r.instance_id},
               {"sequence", r.sequence},
               {"captured_at", r.captured_at_ms},
               {"detected_at", r.detected_at_ms}};
  r.payload = payload.dump(-1, ' ', false, json::error_handler_t::replace);
  counters_.error_results.fetch_add(1, std::memory_order_relaxed);
  emit(std::move(r));
}

void Outputs::notify(const ResultOrigin& origin, std::string_view level, std::string_view message) {
  PipelineResult r;
  r.stream = origin.stream;
  r.signature = origin.signature;
  r.instance_id = origin.instance_id;
  r.detected_at_ms = wall_ms_now();
  r.payload_type = "notification";
  json payload{{"level", std::string(level)},
               {"message", std::string(message)},
               {"stream", r.stream},
               {"signature", r.signature},
               {"instance_id", r.instance_id},
               {"detected_at", r.detected_at_ms}};
  r.payload = payload.dump(-1, ' ', false, json::error_handler_t::replace);
  r.priority = 1;  // ahead of ordinary results when the outbox drains after an outage
  emit(std::move(r));
}

void Outputs::emit(PipelineResult r) {
  std::shared_lock sinks_lock(sinks_mu_);
  if (sinks_closed_) {
    // Only counted: this runs on a thread that outlived the node (a stuck call that
    // returned), possibly while the process exits and the logger is torn down.
    counters_.late.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  counters_.results.fetch_add(1, std::memory_order_relaxed);
  for (const auto& sink : sinks_) {
    try {
      sink(r);
    } catch (const std::exception& e) {
      counters_.sink_errors.fetch_add(1, std::memory_order_relaxed);
      detail::log().error("pipeline: a result sink threw: {}", detail::printable(e.what(), 200));
    } catch (...) {
      counters_.sink_errors.fetch_add(1, std::memory_order_relaxed);
      detail::log().error("pipeline: a result sink threw an unknown exception");
    }
  }
  std::lock_guard lk(mu_);
  if (file_) {
    json line{{"payload_type", r.payload_type}, {"priority", r.priority}};
    std::string text = line.dump();
    text.pop_back();
    text += ",\"payload\":" + r.payload + "}\n";
    if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
      if (counters_.file_errors.fetch_add(1, std::memory_order_relaxed) == 0) {
        detail::log().error("pipeline.results_jsonl: cannot write {}: {} (further failures are only counted)",
                            config_.results_jsonl, std::strerror(errno));
      }
      std::clearerr(file_);
    }
  }
  if (!mailbox_ || closed_) return;
  Envelope env;
  env.sender_node_id = node_id_;
  env.payload_type = r.payload_type;
  env.payload = std::move(r.payload);
  env.timestamp_ms = r.detected_at_ms;
  SendOptions so;
  so.ttl = std::chrono::seconds(config_.result_ttl_s);
  so.priority = r.priority;
  in_flight_.push_back(mailbox_->send_async(std::move(env), std::move(so)));
  reap(false);
}

void Outputs::reap(bool wait) {
  while (!in_flight_.empty() && (wait || in_flight_.front().ready())) {
    auto res = in_flight_.front().get();
    in_flight_.pop_front();
    if (res.ok()) {
      counters_.stored.fetch_add(1, std::memory_order_relaxed);
    } else {
      const auto n = counters_.store_errors.fetch_add(1, std::memory_order_relaxed);
      if (n < 10 || n % 1000 == 0) {
        detail::log().error("pipeline: a result was not stored in the outbox ({} so far): {}", n + 1,
                            res.status().message());
      }
    }
  }
}

void Outputs::close() {
  {
    std::unique_lock sinks_lock(sinks_mu_);  // waits for sink calls in progress
    sinks_closed_ = true;
    sinks_.clear();
  }
  std::lock_guard lk(mu_);
  if (closed_ && !file_ && in_flight_.empty()) return;
  closed_ = true;
  reap(true);
  mailbox_ = nullptr;
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
}

}  // namespace edgert::pipeline
