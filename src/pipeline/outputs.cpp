// Outputs: builds each result once (the payload extended as text) and hands it to the sinks of result_sinks.cpp.
#include "pipeline/outputs.hpp"

#include "pipeline/result_sinks.hpp"

#include "core/log.hpp"
#include "core/printable.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <mutex>

namespace edgert::pipeline {

using json = nlohmann::json;

std::int64_t wall_ms_now() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// The mailbox priority a payload asks for: its top-level integer "priority", clamped (docs/pipeline.md, "Priority").
int clamp_priority(std::int64_t p) { return static_cast<int>(p < -1000 ? -1000 : p > 1000 ? 1000 : p); }

// Room reserved after a payload for the mailbox's envelope fields, so storing it needs no second buffer
// (mailbox/envelope_headroom in docs/architecture.md): ids are short, 512 bytes covers them.
constexpr std::size_t kEnvelopeHeadroom = 512;

void append_origin(std::string& out, const PipelineResult& r) {
  out += "\"stream\":";
  detail::append_json_string(out, r.stream);
  out += ",\"signature\":";
  detail::append_json_string(out, r.signature);
  out += ",\"instance_id\":";
  detail::append_json_string(out, r.instance_id);
  out += ",\"sequence\":";
  out += std::to_string(r.sequence);
  out += ",\"captured_at\":";
  out += std::to_string(r.captured_at_ms);
  out += ",\"detected_at\":";
  out += std::to_string(r.detected_at_ms);
}

}  // namespace

Outputs::Outputs(std::string node_id, PipelineSection config)
    : node_id_(std::move(node_id)), config_(std::move(config)), closed_(false) {}

Outputs::~Outputs() { close(); }

void Outputs::add_sink(ResultSink sink) {
  if (!sink) return;
  std::unique_lock lk(mu_);
  // The host's sinks run first, in the order added; the file and the outbox (added by open()) after them.
  auto it = sinks_.begin();
  while (it != sinks_.end() && dynamic_cast<HostSink*>(it->get()) != nullptr) ++it;
  sinks_.insert(it, std::make_unique<HostSink>(std::move(sink), counters_));
}

Status Outputs::open(Mailbox* mailbox) {
  std::unique_lock lk(mu_);
  for (const auto& s : sinks_) {
    if (dynamic_cast<HostSink*>(s.get()) == nullptr) return {};  // already open
  }
  if (!config_.results_jsonl.empty()) {
    auto file = JsonlSink::open(config_.results_jsonl, counters_);
    if (!file.ok()) return file.status();
    sinks_.push_back(std::move(file).value());
  }
  if (config_.outbox && mailbox) {
    sinks_.push_back(std::make_unique<OutboxSink>(*mailbox, node_id_, std::chrono::seconds(config_.result_ttl_s),
                                                  counters_));
  }
  closed_ = false;
  return {};
}

void Outputs::publish(const ResultOrigin& origin, std::string_view payload_type, std::string_view text,
                      const detail::JsonShape& shape) {
  PipelineResult r;
  r.stream = origin.stream;
  r.signature = origin.signature;
  r.instance_id = origin.instance_id;
  r.sequence = origin.sequence;
  r.captured_at_ms = origin.captured_wall_ns / 1000000;
  r.detected_at_ms = wall_ms_now();
  r.payload_type = std::string(payload_type);
  r.priority = shape.has_priority ? clamp_priority(shape.priority) : 0;
  const std::string_view value = text.substr(shape.begin, shape.end - shape.begin);
  if (shape.object && shape.result_keys == 0) {
    // {"stream":...,"detected_at":N,<the plugin's members>}: the plugin's bytes copied once, verbatim.
    r.payload.reserve(value.size() + 192 + kEnvelopeHeadroom);
    r.payload += '{';
    append_origin(r.payload, r);
    if (!shape.empty_object) r.payload += ',';
    r.payload.append(value.data() + 1, value.size() - 1);
  } else if (!shape.object) {
    r.payload.reserve(value.size() + 200 + kEnvelopeHeadroom);
    r.payload += "{\"data\":";
    r.payload.append(value.data(), value.size());
    r.payload += ',';
    append_origin(r.payload, r);
    r.payload += '}';
  } else {
    // The plugin set an origin key: ours win, as documented; the one case that parses the payload again.
    detail::count_full_parse();
    json payload = json::parse(value, nullptr, false);
    if (payload.is_discarded() || !payload.is_object()) payload = json{{"data", std::string(value)}};
    payload["stream"] = r.stream;
    payload["signature"] = r.signature;
    payload["instance_id"] = r.instance_id;
    payload["sequence"] = r.sequence;
    payload["captured_at"] = r.captured_at_ms;
    payload["detected_at"] = r.detected_at_ms;
    r.payload = payload.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  emit(std::move(r));
}

void Outputs::publish_unchecked(const ResultOrigin& origin, std::string_view payload_type, std::string_view text) {
  detail::JsonShape shape;
  if (const auto problem = detail::check_json(text, detail::kMaxJsonDepthCap, &shape)) {
    const auto n = counters_.store_errors.fetch_add(1, std::memory_order_relaxed);
    if (n < 10 || n % 1000 == 0) {
      detail::log().error("pipeline: a '{}' result from {} was dropped: its payload {} ({} so far)",
                          detail::printable(payload_type), detail::printable(origin.instance_id),
                          problem.text(detail::kMaxJsonDepthCap), n + 1);
    }
    return;
  }
  publish(origin, payload_type, text, shape);
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
  std::shared_lock lk(mu_);  // held while sinks run; close() waits for it
  if (closed_) {
    // Only counted: this runs on a thread that outlived the node (a stuck call that returned), possibly while
    // the process exits and the logger is torn down.
    counters_.late.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  counters_.results.fetch_add(1, std::memory_order_relaxed);
  if (sinks_.empty()) return;
  for (std::size_t i = 0; i + 1 < sinks_.size(); ++i) sinks_[i]->write(r);
  sinks_.back()->take(std::move(r));
}

void Outputs::close() {
  std::unique_lock lk(mu_);  // waits for writes in progress
  if (closed_ && sinks_.empty()) return;
  closed_ = true;
  for (auto& s : sinks_) s->close();
  sinks_.clear();
}

}  // namespace edgert::pipeline
