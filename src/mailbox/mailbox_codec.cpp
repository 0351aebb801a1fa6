// The stored envelope JSON: encode() before a row is written, decode() when one is read back, and new message ids.
#include "mailbox/mailbox_impl.hpp"

#include "mailbox/envelope_check.hpp"

#include <nlohmann/json.hpp>

#include <random>

namespace edgert {

using json = nlohmann::json;

namespace {

// "msg:" + 12 hex digits of the wall clock in ms + 20 random hex digits: unique
// without coordination, and time-ordered so the message_id index grows at its end
// (random ids dirtied one index page per row: measured 2-3x slower commits).
std::string new_message_id() {
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};
  static const char* hex = "0123456789abcdef";
  std::string id = "msg:";
  const auto ms = static_cast<std::uint64_t>(system_ms());
  for (int shift = 44; shift >= 0; shift -= 4) id += hex[(ms >> shift) & 0xF];
  std::uint64_t r = rng();
  for (int k = 0; k < 16; ++k, r >>= 4) id += hex[r & 0xF];
  r = rng();
  for (int k = 0; k < 4; ++k, r >>= 4) id += hex[r & 0xF];
  return id;
}

}  // namespace

namespace detail::mbx {

std::string describe(const Envelope& env) {
  const std::string id = env.message_id.empty() ? std::string("(new)") : printable(env.message_id);
  const std::string type = env.payload_type.empty() ? std::string("no payload_type") : printable(env.payload_type);
  return "message " + id + " (" + type + ")";
}

Result<std::string> encode(Envelope& env, const MailboxOptions& opts, std::int64_t now) {
  const std::string who = describe(env);
  if (env.payload_type.empty()) return Status{ErrorCode::invalid_argument, who + ": payload_type is empty"};
  const std::pair<const char*, const std::string*> ids[] = {{"message_id", &env.message_id},
                                                            {"sender_node_id", &env.sender_node_id},
                                                            {"recipient_node_id", &env.recipient_node_id},
                                                            {"payload_type", &env.payload_type}};
  for (const auto& [name, value] : ids) {
    if (value->size() > opts.max_id_bytes) {
      return Status{ErrorCode::invalid_argument, who + ": " + name + " is " + std::to_string(value->size()) +
                                                     " bytes, over the " + std::to_string(opts.max_id_bytes) +
                                                     "-byte limit"};
    }
  }
  if (env.payload.size() > opts.max_payload_bytes) {
    return Status{ErrorCode::invalid_argument, who + ": payload is " + std::to_string(env.payload.size()) +
                                                   " bytes, over the " + std::to_string(opts.max_payload_bytes) +
                                                   "-byte limit"};
  }
  const std::size_t depth = std::min(opts.max_json_depth, detail::kMaxJsonDepthCap);
  if (std::string why = detail::json_problem(env.payload, depth); !why.empty()) {
    return Status{ErrorCode::invalid_argument, who + ": payload " + why};
  }
  if (env.message_id.empty()) env.message_id = new_message_id();
  if (env.timestamp_ms == 0) env.timestamp_ms = now;
  try {
    std::string out;
    out.reserve(env.payload.size() + 192);
    out += "{\"message_id\":";
    out += json(env.message_id).dump();  // dump() escapes and rejects invalid UTF-8
    out += ",\"sender_node_id\":";
    out += json(env.sender_node_id).dump();
    out += ",\"recipient_node_id\":";
    out += json(env.recipient_node_id).dump();
    out += ",\"timestamp\":";
    out += std::to_string(env.timestamp_ms);
    out += ",\"payload_type\":";
    out += json(env.payload_type).dump();
    out += ",\"payload\":";
    out += env.payload;
    out += "}";
    return out;
  } catch (const json::exception& e) {  // invalid UTF-8 in an id or type
    return Status{ErrorCode::invalid_argument, who + ": " + e.what()};
  }
}

Result<Envelope> decode(const std::string& text) {
  if (std::string why = detail::json_problem(text, detail::kMaxJsonDepthCap + 1, /*parse=*/false); !why.empty()) {
    return Status{ErrorCode::invalid_argument, "stored envelope " + why};
  }
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return Status{ErrorCode::invalid_argument, "stored envelope is not a JSON object (or not JSON)"};
  Envelope env;
  auto str = [&](const char* key, std::string& into, bool required) -> bool {
    const auto it = j.find(key);
    if (it == j.end()) return !required;
    if (!it->is_string()) return false;
    into = it->get<std::string>();
    return !(required && into.empty());
  };
  if (!str("message_id", env.message_id, true)) {
    return Status{ErrorCode::invalid_argument, "stored envelope has no message_id"};
  }
  if (!str("sender_node_id", env.sender_node_id, false) || !str("recipient_node_id", env.recipient_node_id, false) ||
      !str("payload_type", env.payload_type, true)) {
    return Status{ErrorCode::invalid_argument, "stored envelope has a malformed sender, recipient or payload_type"};
  }
  const auto ts = j.find("timestamp");
  if (ts != j.end()) {
    if (!ts->is_number_integer()) {
      return Status{ErrorCode::invalid_argument, "stored envelope timestamp is not an integer"};
    }
    env.timestamp_ms = ts->get<std::int64_t>();
  }
  const auto payload = j.find("payload");
  if (payload == j.end()) return Status{ErrorCode::invalid_argument, "stored envelope has no payload"};
  try {
    env.payload = payload->dump();
  } catch (const json::exception& e) {
    return Status{ErrorCode::invalid_argument, std::string("stored envelope payload: ") + e.what()};
  }
  return env;
}

}  // namespace detail::mbx
}  // namespace edgert
