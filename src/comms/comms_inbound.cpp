// Comms inbound policy: which messages from the broker are stored, deduplicated or dead-lettered, and why.
#include "comms/comms.hpp"

#include "comms/inbound.hpp"
#include "comms/signing.hpp"
#include "core/log.hpp"
#include "core/log_limit.hpp"
#include "core/printable.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace edgert::comms {

using detail::printable;
namespace {

// 2020-01-01T00:00:00Z: a wall clock before it is unset (a device booted without RTC
// or NTP), and no timestamp can be judged against it.
constexpr std::int64_t kClockSetMs = 1577836800000;

/// The replay-protection space of an inbound message (docs/operations.md, "Replay
/// protection"): a verified command is checked only against commands verified with the
/// same key from the same sender; unsigned commands (signing not required) and mail,
/// which anyone on the broker can send under any name, each get spaces of their own,
/// so they can never take an id a signed command will use. Sender ids hold no '/'
/// (parse_inbound), so the last level is always the sender.
std::string inbound_scope(bool is_command, const InboundEnvelope& in) {
  const std::string& sender = in.envelope.sender_node_id;
  if (!is_command) return "inbox/" + sender;
  if (in.hmac.empty()) return "commands/unsigned/" + sender;
  return "commands/" + in.key_id + "/" + sender;  // the signature was verified before the store
}

/// One log limit per dead-letter reason: ten lines a minute each, then a count.
template <std::size_t... I>
std::array<detail::LogLimit, sizeof...(I)> per_reason_limits(std::index_sequence<I...>) {
  return {{((void)I, detail::LogLimit{10, std::chrono::seconds(60)})...}};
}

}  // namespace

// "" if `timestamp_ms` is within +- window_s of `now`; else why not.
std::string stale_reason(std::int64_t timestamp_ms, std::int64_t now, std::int64_t window_s) {
  if (now < kClockSetMs) {
    return "this node's clock reads " + std::to_string(now) +
           " ms since the epoch, before 2020: it is unset, so no signed command can be checked for freshness "
           "(set the clock, e.g. NTP)";
  }
  if (timestamp_ms < 0) return "signed timestamp " + std::to_string(timestamp_ms) + " ms is before 1970";
  const std::int64_t window_ms = window_s * 1000;
  const std::int64_t age = now - timestamp_ms;  // both in [0, 2^63): cannot overflow
  if (age > window_ms) {
    return "signed timestamp " + std::to_string(timestamp_ms) + " ms is " + std::to_string(age / 1000) +
           " s old, outside comms.security.command_window_s (" + std::to_string(window_s) + " s)";
  }
  if (-age > window_ms) {
    return "signed timestamp " + std::to_string(timestamp_ms) + " ms is " + std::to_string(-age / 1000) +
           " s in the future, outside comms.security.command_window_s (" + std::to_string(window_s) +
           " s); check both clocks";
  }
  return "";
}

InboundVerdict Comms::dead_letter(const InboundMessage& m, std::size_t reason, const std::string& why,
                                  const std::string& id, const std::string& sender) {
  DeadLetter d;
  d.message_id = id;
  d.sender_node_id = sender;
  d.source = m.topic;
  d.reason = std::string(kDeadLetterReasons[reason]) + ": " + why;
  d.raw = m.payload;
  const Status stored = mailbox_->dead_letter(std::move(d));
  // Counted once the letter is stored (or its loss is known): whoever sees the count
  // move can read the letter.
  std::uint64_t n = 0;
  {
    std::lock_guard lk(mu_);
    n = ++counters_.dead_letters[reason];
    if (!stored.ok()) ++counters_.dead_letters_lost;
  }
  // At most ten WARNINGs a minute per reason, then a count: a hostile peer or a flood
  // must not be able to grow the log (the counters have every one).
  static auto lines = per_reason_limits(std::make_index_sequence<kDeadLetterReasonCount>{});
  if (auto v = lines[reason].admit(); v.log) {
    detail::log().warn("comms: dead-lettered a message on {} (message_id {}, sender {}): {} [{} #{}]{}",
                       printable(m.topic), printable(id.empty() ? "?" : id), printable(sender.empty() ? "?" : sender),
                       printable(why, 200), kDeadLetterReasons[reason], n, v.suffix());
  }
  if (!stored.ok()) {
    // The message is refused either way; what could not be kept is counted. (Not
    // deferred: a peer's garbage must not be able to hold the connection down.)
    static detail::LogLimit lost_lines{10, std::chrono::seconds(60)};
    if (auto v = lost_lines.admit(); v.log) {
      detail::log().error("comms: a dead letter ({}, message_id {}) was not stored, counted in "
                          "comms.dead_letters_lost: {}{}",
                          kDeadLetterReasons[reason], printable(id.empty() ? "?" : id), stored.message(), v.suffix());
    }
  }
  return InboundVerdict::accepted;
}

InboundVerdict Comms::on_message(const InboundMessage& m) {
  {
    std::lock_guard lk(mu_);
    ++counters_.received;
  }
  const std::string commands_topic = topic("commands"), inbox_topic = topic("inbox");
  const bool is_command = m.topic == commands_topic;
  if (!is_command && m.topic != inbox_topic) {
    return dead_letter(m, reason_index("unknown_topic"), "not a topic this node reads", "", "");
  }
  InboundLimits limits;
  limits.max_bytes = static_cast<std::size_t>(options_.config.max_inbound_bytes);
  limits.max_depth = options_.max_json_depth;
  limits.max_id_bytes = options_.max_id_bytes;
  auto parsed = parse_inbound(m.payload, limits);
  if (auto* p = std::get_if<InboundProblem>(&parsed)) return dead_letter(m, p->reason, p->why, p->message_id, p->sender);
  auto& in = std::get<InboundEnvelope>(parsed);
  const Envelope& e = in.envelope;
  if (e.recipient_node_id != options_.node_id) {
    return dead_letter(m, reason_index("wrong_recipient"),
                       "addressed to '" + e.recipient_node_id + "', this node is '" + options_.node_id + "'",
                       e.message_id, e.sender_node_id);
  }
  if ((in.expires_ms > 0 && in.expires_ms <= now_ms()) || m.expiry_left_s == 0) {
    return dead_letter(m, reason_index("expired"), "expired at " + std::to_string(in.expires_ms) + " ms",
                       e.message_id, e.sender_node_id);
  }
  if (!is_command && e.payload_type == "command") {
    // Commands come only through the commands topic, where signatures and senders are
    // checked: one in the inbox would otherwise run unchecked.
    return dead_letter(m, reason_index("malformed"), "a command on the inbox topic (send it to .../commands)",
                       e.message_id, e.sender_node_id);
  }
  if (is_command && m.retained) {
    // A retained command is handed to every new subscription: a node started with a
    // fresh data_dir (no inbox to deduplicate against) would run it again.
    return dead_letter(m, reason_index("retained"),
                       "a retained command (the broker hands it to every new session); publish commands with "
                       "retain false",
                       e.message_id, e.sender_node_id);
  }
  if (is_command) {
    const auto& sec = options_.config.security;
    if (in.hmac.empty()) {
      if (sec.require_signed) {
        return dead_letter(m, reason_index("unsigned"), "unsigned command (comms.security.require_signed)",
                           e.message_id, e.sender_node_id);
      }
    } else {
      auto key = sec.keys.find(in.key_id);
      if (key == sec.keys.end()) {
        return dead_letter(m, reason_index("bad_signature"), "signed with unknown key '" + in.key_id + "'",
                           e.message_id, e.sender_node_id);
      }
      if (!digest_equal(hmac_sha256_hex(key->second, canonical_text(e, in.expires_ms, in.payload)), in.hmac)) {
        return dead_letter(m, reason_index("bad_signature"), "signature does not match (key '" + in.key_id + "')",
                           e.message_id, e.sender_node_id);
      }
      // Freshness: the signed timestamp within +- command_window_s of this node's
      // clock. Within the window the inbox deduplicates a replay (its retention is at
      // least the window, checked at config load); outside it the age refuses it.
      if (std::string why = stale_reason(e.timestamp_ms, now_ms(), sec.command_window_s); !why.empty()) {
        return dead_letter(m, reason_index("stale"), why, e.message_id, e.sender_node_id);
      }
    }
    if (!sec.allowed_senders.empty() &&
        std::find(sec.allowed_senders.begin(), sec.allowed_senders.end(), e.sender_node_id) ==
            sec.allowed_senders.end()) {
      return dead_letter(m, reason_index("unknown_sender"),
                         "sender '" + e.sender_node_id + "' is not in comms.security.allowed_senders", e.message_id,
                         e.sender_node_id);
    }
    if (e.payload_type != "command" || !in.payload.is_object() || !in.payload.contains("command") ||
        !in.payload["command"].is_string()) {
      return dead_letter(m, reason_index("malformed"),
                         "a command needs payload_type \"command\" and payload {\"command\": \"NAME\", \"args\": {...}}",
                         e.message_id, e.sender_node_id);
    }
  }
  if (is_command) {
    // A flood of commands must not grow the inbox or the command thread's work without
    // bound: beyond max_queued_commands waiting, a new one is refused and never runs.
    // (Only this thread adds to queued_commands_, so the check holds until the store.)
    std::uint64_t queued = 0;
    {
      std::lock_guard lk(mu_);
      queued = queued_commands_;
    }
    if (queued >= static_cast<std::uint64_t>(options_.config.max_queued_commands)) {
      return dead_letter(m, reason_index("queue_full"),
                         std::to_string(queued) + " commands wait to run (comms.max_queued_commands); not run",
                         e.message_id, e.sender_node_id);
    }
  }
  // Stored before anything acts on it: a replayed message_id is not run twice, and a
  // command stored before a crash runs after the restart. Replay protection is per
  // space (inbound_scope): nothing unauthenticated shares one with a verified command.
  StoreOptions so;
  so.scope = inbound_scope(is_command, in);
  auto stored = mailbox_->store(e, so);
  if (!stored.ok()) {
    if (stored.status().code() == ErrorCode::invalid_argument) {
      // The inbox refuses the message itself (its own input checks): it never will take it.
      return dead_letter(m, reason_index("store_failed"), stored.status().message(), e.message_id,
                         e.sender_node_id);
    }
    // Full (inbox quota or disk), an I/O error, the mailbox closing: not kept, so not
    // acknowledged either. The transport drops the connection before the PUBACK and the
    // broker delivers the message again after a back-off (docs/operations.md,
    // "Acknowledgement"). Never dead-lettered for this: that would acknowledge it.
    std::uint64_t n = 0;
    {
      std::lock_guard lk(mu_);
      n = ++counters_.inbound_deferred;
    }
    static detail::LogLimit deferred_lines{5, std::chrono::seconds(60)};
    if (auto v = deferred_lines.admit(); v.log) {
      detail::log().warn("comms: message {} from {} on {} not stored ({}); not acknowledged, the broker delivers it "
                         "again [inbound_deferred #{}]{}",
                         printable(e.message_id), printable(e.sender_node_id), printable(m.topic),
                         stored.status().message(), n, v.suffix());
    }
    return InboundVerdict::deferred;
  }
  if (stored.value() == StoreResult::conflict) {
    // Same space, same id, other content: a forgery, a sender reusing ids, or a replay
    // altered on the way. Refused visibly, never dropped silently, never run.
    return dead_letter(m, reason_index("conflict"),
                       "message_id already stored in '" + so.scope + "' with other content; not stored, not run",
                       e.message_id, e.sender_node_id);
  }
  std::lock_guard lk(mu_);
  if (stored.value() == StoreResult::duplicate) {
    ++counters_.duplicates;
    return InboundVerdict::accepted;
  }
  ++counters_.stored;
  if (is_command) {
    ++queued_commands_;
    commands_waiting_ = true;
    cv_.notify_all();
  }
  return InboundVerdict::accepted;
}

}  // namespace edgert::comms
