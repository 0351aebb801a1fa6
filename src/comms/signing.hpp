// Signed envelopes: HMAC-SHA256 over canonical fields (docs/operations.md, "Signed
// commands"). The canonical text is seven fields joined by '\n' in this order:
// message_id, sender_node_id, recipient_node_id, timestamp (decimal ms), expires_ms
// (decimal, 0 when absent), payload_type, and last the payload re-serialised compactly
// with object keys sorted (nlohmann::json::dump()). The identifiers cannot hold a
// control character (inbound.cpp refuses them), so the text is unambiguous. The envelope carries {"signature": {"key_id": "...",
// "hmac": "<64 lowercase hex>"}}.
#pragma once

#include <edgert/mailbox.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace edgert::comms {

/// The text that is signed. `payload` is the parsed payload value.
std::string canonical_text(const Envelope& envelope, std::int64_t expires_ms, const nlohmann::json& payload);

/// Lowercase hex HMAC-SHA256 of `text` under `secret`.
std::string hmac_sha256_hex(const std::string& secret, const std::string& text);

/// Lowercase hex SHA-256 of `text`.
std::string sha256_hex(const std::string& text);

/// Constant-time comparison of two hex digests.
bool digest_equal(const std::string& a, const std::string& b) noexcept;

}  // namespace edgert::comms
