// Test envelopes: the outbox results and inbox mail the mailbox tests store, built one way.
#pragma once

#include <edgert/mailbox.hpp>

#include <cstddef>
#include <string>

namespace edgert::testing {

/// `{"n":N}`, or `{"n":N,"pad":"xxx..."}` with `pad` bytes of padding (to fill a disk or a page).
inline std::string numbered_payload(int n, std::size_t pad = 0) {
  std::string p = R"({"n":)" + std::to_string(n);
  if (pad > 0) p += R"(,"pad":")" + std::string(pad, 'x') + "\"";
  return p + "}";
}

/// A result as a node sends it: from `sender` to the fleet, type `detection` unless given.
inline Envelope result_envelope(std::string payload = R"({"n":1})", std::string id = "",
                                std::string sender = "node-a", std::string type = "detection") {
  Envelope e;
  e.message_id = std::move(id);
  e.sender_node_id = std::move(sender);
  e.recipient_node_id = "fleet";
  e.payload_type = std::move(type);
  e.payload = std::move(payload);
  return e;
}

/// result_envelope(numbered_payload(n, pad)): results told apart by their payload.
inline Envelope numbered_envelope(int n, std::size_t pad = 0) { return result_envelope(numbered_payload(n, pad)); }

}  // namespace edgert::testing
