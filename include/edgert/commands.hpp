// Commands: what a node does when the fleet asks (docs/operations.md, "Commands").
//
// A command arrives on {root}/{node_id}/commands as an envelope with payload_type
// "command" and payload {"command": "<NAME>", "args": {...}}. It is stored in the
// mailbox inbox before its handler runs (a replay with the same message_id is not run
// again) and acknowledged once the handler has returned; the reply goes back through
// the outbox to {root}/{sender}/inbox as payload_type "command.reply":
//   {"in_reply_to": "<message_id>", "command": "<NAME>", "ok": true, "result": <JSON>}
//   {"in_reply_to": "<message_id>", "command": "<NAME>", "ok": false, "error": "<why>"}
// edgert answers PING, STATUS, TRIGGER and RESTART itself; a host adds its own with
// Node::add_command().
#pragma once

#include <edgert/status.hpp>

#include <functional>
#include <string>

namespace edgert {

struct CommandRequest {
  std::string name;            // "PING", "STATUS", "TRIGGER", "RESTART", or a host's own
  std::string args_json;       // the "args" value as JSON text; "{}" when absent
  std::string sender_node_id;
  std::string message_id;
};

/// Runs on the node's command thread, one command at a time. Returns the result as
/// JSON text ("" means null), or an error that becomes the reply's "error". A handler
/// that throws is answered with the exception's text (counted as failed). Handlers
/// must not block for long: commands queue behind a slow one.
using CommandHandler = std::function<Result<std::string>(const CommandRequest& request)>;

}  // namespace edgert
