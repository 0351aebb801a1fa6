// Comms command dispatcher: runs stored commands on "edgert-commands" and stores their replies.
#include "comms/comms.hpp"

#include "comms/signing.hpp"
#include "core/log.hpp"
#include "core/printable.hpp"

#include <algorithm>

namespace edgert::comms {

using detail::printable;

std::string reply_key(const std::string& message_id, std::size_t max_key_bytes) {
  std::string key = "reply:" + message_id;
  if (key.size() <= max_key_bytes) return key;
  // '#' cannot occur in an inbound message id (inbound.cpp), so a hashed key never
  // equals a plain one. The digest is cut to fit: all 256 bits from max_key_bytes 70
  // up, 40 bits at the smallest mailbox.max_id_bytes (16).
  const std::size_t hex = std::min<std::size_t>(64, max_key_bytes > 16 ? max_key_bytes - 6 : 10);
  return "reply#" + sha256_hex(message_id).substr(0, hex);
}

void Comms::run_command(const InboxMessage& msg) {
  CommandRequest req;
  req.message_id = msg.envelope.message_id;
  req.sender_node_id = msg.envelope.sender_node_id;
  nlohmann::json reply{{"in_reply_to", req.message_id}};
  const auto payload = nlohmann::json::parse(msg.envelope.payload, nullptr, false);
  Result<std::string> result = Status{ErrorCode::invalid_argument, "malformed command payload"};
  if (payload.is_object() && payload.contains("command") && payload["command"].is_string()) {
    req.name = payload["command"].get<std::string>();
    req.args_json = payload.contains("args") ? payload["args"].dump() : "{}";
    auto h = options_.commands.find(req.name);
    if (h == options_.commands.end()) {
      result = Status{ErrorCode::not_found, "unknown command '" + req.name + "'"};
    } else {
      try {
        result = h->second(req);
      } catch (const std::exception& ex) {
        result = Status{ErrorCode::internal, std::string("the handler threw: ") + ex.what()};
      } catch (...) {
        result = Status{ErrorCode::internal, "the handler threw"};
      }
    }
  }
  reply["command"] = req.name;
  if (result.ok()) {
    reply["ok"] = true;
    auto value = result.value().empty() ? nlohmann::json() : nlohmann::json::parse(result.value(), nullptr, false);
    reply["result"] = value.is_discarded() ? nlohmann::json(result.value()) : std::move(value);
  } else {
    reply["ok"] = false;
    reply["error"] = result.status().message();
    if (auto v = command_failed_log_.admit(); v.log) {
      detail::log().warn("comms: command {} ({} from {}) failed: {}{}", printable(req.name),
                         printable(req.message_id), printable(req.sender_node_id), result.status().message(),
                         v.suffix());
    }
  }
  {
    std::lock_guard lk(mu_);
    ++(result.ok() ? counters_.commands_run : counters_.commands_failed);
  }
  Envelope r;
  r.sender_node_id = options_.node_id;
  r.recipient_node_id = req.sender_node_id;
  r.payload_type = "command.reply";
  r.payload = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  SendOptions so;
  so.ttl = std::chrono::seconds(3600);
  so.priority = 2;
  // A command run again after a crash replies once.
  so.idempotency_key = reply_key(req.message_id, options_.max_id_bytes);
  if (auto sent = mailbox_->send(std::move(r), so); !sent.ok()) {
    std::lock_guard lk(mu_);
    ++counters_.replies_failed;
    if (auto v = reply_failed_log_.admit(); v.log) {
      detail::log().error("comms: the reply to command {} was not stored: {}{}", printable(req.message_id),
                          sent.status().message(), v.suffix());
    }
  }
}

void Comms::dispatch_loop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (!commands_waiting_) {
      cv_.wait_for(lk, std::chrono::seconds(5), [this] { return commands_waiting_ || stopping_; });
      continue;
    }
    commands_waiting_ = false;
    lk.unlock();
    auto batch = mailbox_->unacked("command", 64);
    if (batch.ok()) {
      for (const auto& msg : batch.value()) {
        {
          std::lock_guard g(mu_);
          if (stopping_) break;  // the rest stay stored and unacknowledged: they run after the restart
        }
        run_command(msg);
        if (Status st = mailbox_->ack(msg.envelope.message_id, msg.scope); !st.ok()) {
          if (auto v = ack_failed_log_.admit(); v.log) {
            detail::log().error("comms: acknowledging command {} failed: {}{}", printable(msg.envelope.message_id),
                                st.message(), v.suffix());
          }
        } else {
          std::lock_guard g(mu_);
          if (queued_commands_ > 0) --queued_commands_;
        }
      }
    } else if (batch.status().code() != ErrorCode::closed) {
      detail::log().error("comms: reading stored commands failed: {}", batch.status().message());
    }
    lk.lock();
    if (batch.ok() && batch.value().size() == 64) commands_waiting_ = true;  // more may wait
  }
}

}  // namespace edgert::comms
