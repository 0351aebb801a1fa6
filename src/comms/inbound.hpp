// Reading an inbound envelope (docs/operations.md, "Inbound messages"): exactly one
// JSON object within the size and nesting limits, with the required fields of the
// right types. Anything else is a problem naming the reason and the field at fault.
#pragma once

#include <edgert/mailbox.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace edgert::comms {

struct InboundLimits {
  std::size_t max_bytes = 262144;
  std::size_t max_depth = 64;     // of the payload; the envelope adds one level
  std::size_t max_id_bytes = 256;
};

struct InboundEnvelope {
  Envelope envelope;               // payload: the payload value as compact JSON text
  nlohmann::json payload;
  std::int64_t expires_ms = 0;     // optional "expires_ms" field; 0: none
  std::string key_id, hmac;        // optional "signature": {"key_id", "hmac"}
};

struct InboundProblem {
  std::size_t reason = 0;          // index into kDeadLetterReasons (comms.hpp)
  std::string why;                 // "missing field 'sender_node_id'", ...
  std::string message_id, sender;  // what could be read, else ""
};

/// Never throws.
std::variant<InboundEnvelope, InboundProblem> parse_inbound(std::string_view raw, const InboundLimits& limits);

/// Index of `name` in kDeadLetterReasons.
std::size_t reason_index(std::string_view name);

}  // namespace edgert::comms
