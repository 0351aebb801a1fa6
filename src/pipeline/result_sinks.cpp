// The built-in result sinks: the host's callbacks, the JSONL file and the outbox (pipeline/result_sinks.hpp).
#include "pipeline/result_sinks.hpp"

#include "core/json_check.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"
#include "core/thread_name.hpp"

#include <cerrno>
#include <cstring>

namespace edgert::pipeline {

void HostSink::write(const PipelineResult& r) {
  try {
    sink_(r);
  } catch (const std::exception& e) {
    counters_.sink_errors.fetch_add(1, std::memory_order_relaxed);
    detail::log().error("pipeline: a result sink threw: {}", detail::printable(e.what(), 200));
  } catch (...) {
    counters_.sink_errors.fetch_add(1, std::memory_order_relaxed);
    detail::log().error("pipeline: a result sink threw an unknown exception");
  }
}

// ---- JSONL ---------------------------------------------------------------------------------------------------

struct JsonlSink::State {
  State(std::string p, std::FILE* f, OutputCounters& c) : path(std::move(p)), file(f), counters(&c) {}
  const std::string path;
  std::FILE* file;                 // the writer's; closed by whoever ends last (close(), or an abandoned writer)
  std::mutex mu;
  OutputCounters* counters;        // null once abandoned: the Outputs may be gone
  std::condition_variable cv;      // lines queued, or stopping
  std::condition_variable idle;    // the queue emptied
  std::deque<std::string> queue;
  std::size_t queued_bytes = 0;
  bool writing = false;
  bool stopping = false;
  bool dropping = false;           // inside a burst of drops (logged once)
};

Result<std::unique_ptr<JsonlSink>> JsonlSink::open(const std::string& path, OutputCounters& counters) {
  std::FILE* f = std::fopen(path.c_str(), "ae");
  if (!f) return Status{ErrorCode::io_error, "pipeline.results_jsonl: cannot open " + path + ": " + std::strerror(errno)};
  return std::unique_ptr<JsonlSink>(new JsonlSink(std::make_shared<State>(path, f, counters)));
}

JsonlSink::JsonlSink(std::shared_ptr<State> state) : state_(std::move(state)) {
  thread_ = std::thread([s = state_] {
    detail::set_current_thread_name("edgert-jsonl");
    run(s);
  });
}

JsonlSink::~JsonlSink() { close(); }

void JsonlSink::write(const PipelineResult& r) {
  std::string line;
  line.reserve(r.payload.size() + r.payload_type.size() + 48);
  line += "{\"payload_type\":";
  detail::append_json_string(line, r.payload_type);
  line += ",\"priority\":";
  line += std::to_string(r.priority);
  line += ",\"payload\":";
  line += r.payload;
  line += "}\n";
  State& s = *state_;
  std::size_t dropped = 0;
  bool first_of_burst = false;
  OutputCounters* counters = nullptr;
  {
    std::lock_guard lk(s.mu);
    if (s.stopping) return;
    counters = s.counters;
    s.queued_bytes += line.size();
    s.queue.push_back(std::move(line));
    while (s.queued_bytes > kMaxQueuedBytes && s.queue.size() > 1) {
      s.queued_bytes -= s.queue.front().size();
      s.queue.pop_front();
      ++dropped;
    }
    if (dropped && !s.dropping) first_of_burst = s.dropping = true;
  }
  s.cv.notify_one();
  if (dropped) {
    counters->file_errors.fetch_add(dropped, std::memory_order_relaxed);
    if (first_of_burst) {
      detail::log().error(
          "pipeline.results_jsonl: {} does not keep up (over {} MiB of lines waiting): the oldest lines are dropped, "
          "counted in edgert_pipeline_file_errors_total",
          s.path, kMaxQueuedBytes >> 20);
    }
  }
}

void JsonlSink::run(const std::shared_ptr<State>& sp) {
  State& s = *sp;
  std::unique_lock lk(s.mu);
  for (;;) {
    s.cv.wait(lk, [&s] { return s.stopping || !s.queue.empty(); });
    if (s.queue.empty()) break;  // stopping, all written
    std::deque<std::string> batch;
    batch.swap(s.queue);
    s.queued_bytes = 0;
    s.dropping = false;
    s.writing = true;
    lk.unlock();
    std::size_t failed = 0;
    int err = 0;
    for (const auto& line : batch) {
      if (std::fwrite(line.data(), 1, line.size(), s.file) != line.size()) {
        ++failed;
        err = errno;
      }
    }
    if (std::fflush(s.file) != 0 && failed == 0) {
      failed = batch.size();
      err = errno;
    }
    if (failed) std::clearerr(s.file);
    lk.lock();
    s.writing = false;
    if (failed && s.counters && s.counters->file_errors.fetch_add(failed, std::memory_order_relaxed) == 0) {
      detail::log().error("pipeline.results_jsonl: cannot write {}: {} (further failures are only counted)", s.path,
                          std::strerror(err));
    }
    s.idle.notify_all();
    if (!s.counters) break;  // abandoned by close(): the rest was counted there
  }
  if (!s.counters) {
    std::fclose(s.file);
    s.file = nullptr;
  }
}

void JsonlSink::close() {
  if (!thread_.joinable()) return;
  State& s = *state_;
  std::unique_lock lk(s.mu);
  s.stopping = true;
  s.cv.notify_all();
  if (s.idle.wait_for(lk, kCloseWait, [&s] { return s.queue.empty() && !s.writing; })) {
    lk.unlock();
    thread_.join();
    std::fclose(s.file);
    s.file = nullptr;
    return;
  }
  // The disk is stuck inside fwrite/fflush: count what is queued (and the batch being written) as lost and leave
  // the writer to finish alone; it closes the file and touches nothing of ours after this.
  const std::size_t lost = s.queue.size() + 1;
  s.counters->file_errors.fetch_add(lost, std::memory_order_relaxed);
  s.queue.clear();
  s.counters = nullptr;
  detail::log().error("pipeline.results_jsonl: {} did not take the last lines within {} s; about {} are counted "
                      "in edgert_pipeline_file_errors_total",
                      s.path, kCloseWait.count(), lost);
  lk.unlock();
  thread_.detach();
}

// ---- the outbox ----------------------------------------------------------------------------------------------

void OutboxSink::write(const PipelineResult& r) {
  PipelineResult copy = r;
  take(std::move(copy));
}

void OutboxSink::take(PipelineResult&& r) {
  Envelope env;
  env.sender_node_id = node_id_;
  env.payload_type = std::move(r.payload_type);
  env.payload = std::move(r.payload);
  env.timestamp_ms = r.detected_at_ms;
  SendOptions so;
  so.ttl = ttl_;
  so.priority = r.priority;
  PendingSend p = mailbox_.send_async(std::move(env), std::move(so));  // back-pressure waits here, no lock held
  std::lock_guard lk(mu_);
  in_flight_.push_back(std::move(p));
  reap(false);
}

void OutboxSink::reap(bool wait) {
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

void OutboxSink::close() {
  std::lock_guard lk(mu_);
  reap(true);
}

}  // namespace edgert::pipeline
