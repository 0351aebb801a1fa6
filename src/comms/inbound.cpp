#include "comms/inbound.hpp"

#include "comms/comms.hpp"
#include "core/json_check.hpp"
#include "core/printable.hpp"

#include <cstring>

namespace edgert::comms {

std::size_t reason_index(std::string_view name) {
  for (std::size_t i = 0; i < kDeadLetterReasonCount; ++i) {
    if (name == kDeadLetterReasons[i]) return i;
  }
  return reason_index("malformed");
}

std::variant<InboundEnvelope, InboundProblem> parse_inbound(std::string_view raw, const InboundLimits& limits) {
  InboundProblem p;
  auto fail = [&p](const char* reason, std::string why) {
    p.reason = reason_index(reason);
    p.why = std::move(why);
    return p;
  };
  if (raw.size() > limits.max_bytes) {
    return fail("oversized", std::to_string(raw.size()) + " bytes, over the limit of " +
                                 std::to_string(limits.max_bytes) + " (comms.max_inbound_bytes)");
  }
  // The result path's rules (core/json_check.hpp), before parsing: the parser recurses once per level. The
  // envelope is one level around the payload.
  switch (detail::precheck_json(raw, limits.max_depth + 1).kind) {
    case detail::JsonProblem::none: break;
    case detail::JsonProblem::empty: return fail("malformed", "empty message");
    case detail::JsonProblem::nul_byte: return fail("malformed", "contains a NUL byte");
    case detail::JsonProblem::byte_order_mark: return fail("malformed", "starts with a UTF-8 byte order mark");
    case detail::JsonProblem::too_deep:
    case detail::JsonProblem::invalid:
      return fail("malformed", "nests deeper than " + std::to_string(limits.max_depth) + " levels");
  }
  nlohmann::json j = nlohmann::json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("malformed", "not valid UTF-8 JSON");
  if (!j.is_object()) return fail("malformed", "not a JSON object");

  InboundEnvelope out;
  Envelope& e = out.envelope;
  // Whatever can be read is kept for the dead letter, even when something else fails.
  auto text_field = [&](const char* name, std::string& into) -> std::string {
    auto it = j.find(name);
    if (it == j.end()) return std::string("missing field '") + name + "'";
    if (!it->is_string()) return std::string("field '") + name + "' must be a string";
    into = it->get<std::string>();
    if (into.empty()) return std::string("field '") + name + "' is empty";
    if (into.size() > limits.max_id_bytes) {
      return std::string("field '") + name + "' is longer than " + std::to_string(limits.max_id_bytes) + " bytes";
    }
    // Node ids become topic levels (replies go to {root}/{sender}/inbox), and every id
    // is a line of the signed text: no separators, wildcards or control characters.
    for (const char c : into) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/' || c == '+' || c == '#') {
        return std::string("field '") + name + "' holds a control character, '/', '+' or '#'";
      }
    }
    return "";
  };
  std::string problems[4] = {text_field("message_id", e.message_id), text_field("sender_node_id", e.sender_node_id),
                             text_field("recipient_node_id", e.recipient_node_id),
                             text_field("payload_type", e.payload_type)};
  p.message_id = e.message_id;
  p.sender = e.sender_node_id;
  for (auto& what : problems) {
    if (!what.empty()) return fail("missing_field", std::move(what));
  }
  auto ts = j.find("timestamp");
  if (ts == j.end()) return fail("missing_field", "missing field 'timestamp'");
  if (!ts->is_number_integer()) return fail("missing_field", "field 'timestamp' must be an integer (ms since the epoch)");
  e.timestamp_ms = ts->get<std::int64_t>();
  auto payload = j.find("payload");
  if (payload == j.end()) return fail("missing_field", "missing field 'payload'");
  out.payload = std::move(*payload);
  e.payload = out.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (auto exp = j.find("expires_ms"); exp != j.end()) {
    if (!exp->is_number_integer()) return fail("malformed", "field 'expires_ms' must be an integer");
    out.expires_ms = exp->get<std::int64_t>();
  }
  if (auto sig = j.find("signature"); sig != j.end()) {
    if (!sig->is_object() || !sig->contains("key_id") || !sig->contains("hmac") || !(*sig)["key_id"].is_string() ||
        !(*sig)["hmac"].is_string()) {
      return fail("bad_signature", "field 'signature' must be {\"key_id\": string, \"hmac\": string}");
    }
    out.key_id = (*sig)["key_id"].get<std::string>();
    out.hmac = (*sig)["hmac"].get<std::string>();
  }
  return out;
}

}  // namespace edgert::comms
