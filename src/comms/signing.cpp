#include "comms/signing.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>

namespace edgert::comms {

std::string canonical_text(const Envelope& e, std::int64_t expires_ms, const nlohmann::json& payload) {
  std::string t;
  t.reserve(e.message_id.size() + e.sender_node_id.size() + e.recipient_node_id.size() + e.payload_type.size() + 64);
  t += e.message_id;
  t += '\n';
  t += e.sender_node_id;
  t += '\n';
  t += e.recipient_node_id;
  t += '\n';
  t += std::to_string(e.timestamp_ms);
  t += '\n';
  t += std::to_string(expires_ms);
  t += '\n';
  t += e.payload_type;
  t += '\n';
  // Invalid UTF-8 cannot reach here (the envelope parsed), so dump() does not throw.
  t += payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return t;
}

namespace {
std::string to_hex(const unsigned char* md, unsigned int len) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0xf];
  }
  return out;
}
}  // namespace

std::string hmac_sha256_hex(const std::string& secret, const std::string& text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), md.data(), &len);
  return to_hex(md.data(), len);
}

std::string sha256_hex(const std::string& text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md.data(), &len, EVP_sha256(), nullptr);
  return to_hex(md.data(), len);
}

bool digest_equal(const std::string& a, const std::string& b) noexcept {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace edgert::comms
