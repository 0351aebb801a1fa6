// read_node_status(): registry.db and mailbox.db of a data_dir, judged for `edgert-node status`.
#include <edgert/node_status.hpp>

#include <edgert/mailbox.hpp>

#include "registry/registry_store.hpp"

#include <nlohmann/json.hpp>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>

namespace edgert {
namespace {

std::int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double age_s(std::int64_t now_ms, std::int64_t then_ms) {
  return static_cast<double>(std::max<std::int64_t>(0, now_ms - then_ms)) / 1000.0;
}

// On this host: kill(pid, 0) succeeds, or fails only for lack of permission.
bool pid_alive(std::int64_t pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
  return errno == EPERM;
}

std::string seconds_text(double s) {
  char buf[64];
  if (s < 100) {
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  } else if (s < 3600 * 48) {
    const auto t = static_cast<long long>(s);
    if (t < 3600) {
      std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
    } else {
      std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    }
  } else {
    std::snprintf(buf, sizeof buf, "%.1f d", s / 86400);
  }
  return buf;
}

// One line of text for a table cell: control characters become spaces.
std::string one_line(std::string s, std::size_t max = 80) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace

Result<NodeStatus> read_node_status(const std::string& data_dir, const NodeStatusOptions& options) {
  NodeStatus ns;
  ns.data_dir = data_dir;
  ns.path = (std::filesystem::path(data_dir) / "registry.db").string();
  auto stored = detail::read_registry_db(ns.path, options.busy_timeout_ms);
  if (!stored.ok()) return stored.status();
  const std::int64_t now = options.wall_ms ? options.wall_ms() : system_ms();
  const auto& n = stored.value().node;
  ns.node_id = n.node_id;
  ns.pid = n.pid;
  ns.version = n.version;
  ns.state = n.state;
  ns.started_at_ms = n.started_at_ms;
  ns.last_write_ms = n.last_write_ms;
  ns.write_interval_ms = n.write_interval_ms;
  ns.last_write_age_s = age_s(now, n.last_write_ms);
  const std::int64_t stale_ms =
      options.stale_after.count() > 0 ? options.stale_after.count() : std::max<std::int64_t>(3 * n.write_interval_ms, 3000);
  const std::string last_write = "last write " + seconds_text(ns.last_write_age_s) + " ago";
  if (n.state != "running") {
    ns.not_running_reason = "stopped (its last write said so); " + last_write;
  } else if (!pid_alive(n.pid)) {
    ns.not_running_reason = "process " + std::to_string(n.pid) + " is gone (it did not stop cleanly); " + last_write;
  } else if (now - n.last_write_ms > stale_ms) {
    ns.not_running_reason = "no write for " + seconds_text(ns.last_write_age_s) + " (expected every " +
                            std::to_string(n.write_interval_ms) + " ms): hung, or process " + std::to_string(n.pid) +
                            " is another program now";
  }
  ns.running = ns.not_running_reason.empty();
  for (const auto& r : stored.value().components) {
    NodeStatusComponent c;
    c.id = r.id;
    c.kind = r.kind;
    c.name = r.name;
    c.last_status = r.status;
    c.status = ns.running ? r.status : (r.status == "stopped" ? "stopped" : "unknown");
    c.reason = r.reason;
    c.heartbeat_age_s = age_s(now, r.last_heartbeat_ms);
    c.restarts = r.restarts;
    c.last_error = r.last_error;
    c.last_error_age_s = r.last_error_ms > 0 ? age_s(now, r.last_error_ms) : -1;
    c.labels = r.labels;
    ns.components.push_back(std::move(c));
  }
  auto mb = Mailbox::read_stats(data_dir);
  if (mb.ok()) {
    const auto& s = mb.value();
    ns.mailbox.readable = true;
    ns.mailbox.outbox_rows = s.outbox_rows;
    ns.mailbox.outbox_bytes = s.outbox_bytes;
    ns.mailbox.inbox_rows = s.inbox_rows;
    ns.mailbox.inbox_bytes = s.inbox_bytes;
    ns.mailbox.inbox_unacked = s.inbox_unacked;
    ns.mailbox.dead_letter_rows = s.dead_letter_rows;
    ns.mailbox.oldest_pending_age_ms = s.oldest_pending_age_ms;
  } else {
    ns.mailbox.error = mb.status().message();
  }
  return ns;
}

int NodeStatus::exit_code() const noexcept {
  if (!running) return 2;
  for (const auto& c : components) {
    if (c.status != "ready" && c.status != "stopped") return 1;
  }
  return 0;
}

std::string NodeStatus::to_json() const {
  nlohmann::ordered_json node;
  node["id"] = node_id;
  node["running"] = running;
  node["state"] = state;
  if (!running) node["not_running_reason"] = not_running_reason;
  node["pid"] = pid;
  node["version"] = version;
  node["started_at_ms"] = started_at_ms;
  node["last_write_ms"] = last_write_ms;
  node["last_write_age_s"] = last_write_age_s;
  node["write_interval_ms"] = write_interval_ms;
  node["registry_db"] = path;
  nlohmann::ordered_json comps = nlohmann::ordered_json::array();
  for (const auto& c : components) {
    nlohmann::ordered_json j;
    j["id"] = c.id;
    j["kind"] = c.kind;
    j["name"] = c.name;
    j["status"] = c.status;
    j["last_status"] = c.last_status;
    j["reason"] = c.reason;
    j["heartbeat_age_s"] = c.heartbeat_age_s;
    j["restarts"] = c.restarts;
    j["last_error"] = c.last_error;
    if (c.last_error_age_s >= 0) j["last_error_age_s"] = c.last_error_age_s;
    j["labels"] = c.labels;
    comps.push_back(std::move(j));
  }
  nlohmann::ordered_json mb;
  mb["readable"] = mailbox.readable;
  if (mailbox.readable) {
    mb["outbox_rows"] = mailbox.outbox_rows;
    mb["outbox_bytes"] = mailbox.outbox_bytes;
    mb["oldest_pending_age_ms"] = mailbox.oldest_pending_age_ms;
    mb["inbox_rows"] = mailbox.inbox_rows;
    mb["inbox_bytes"] = mailbox.inbox_bytes;
    mb["inbox_unacked"] = mailbox.inbox_unacked;
    mb["dead_letter_rows"] = mailbox.dead_letter_rows;
  } else {
    mb["error"] = mailbox.error;
  }
  nlohmann::ordered_json doc;
  doc["node"] = std::move(node);
  doc["components"] = std::move(comps);
  doc["mailbox"] = std::move(mb);
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string NodeStatus::to_table() const {
  std::string out = "node " + one_line(node_id) + ": ";
  if (running) {
    out += "running, pid " + std::to_string(pid) + ", edgert " + one_line(version) + ", up " +
           seconds_text(age_s(last_write_ms, started_at_ms)) + ", last write " + seconds_text(last_write_age_s) +
           " ago\n";
  } else {
    out += "NOT RUNNING: " + not_running_reason + "\n";
  }
  std::size_t wk = 4, wn = 4, ws = 6;
  for (const auto& c : components) {
    wk = std::max(wk, one_line(c.kind, 24).size());
    wn = std::max(wn, one_line(c.name, 40).size());
    ws = std::max(ws, c.status.size());
  }
  auto pad = [](std::string s, std::size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
  };
  out += pad("KIND", wk) + "  " + pad("NAME", wn) + "  " + pad("STATUS", ws) + "  " + pad("HEARTBEAT", 9) + "  " +
         "RESTARTS  LAST ERROR / REASON\n";
  for (const auto& c : components) {
    std::string note = c.last_error.empty() ? c.reason : c.last_error;
    if (!running && c.status != c.last_status) note = "last written " + c.last_status + (note.empty() ? "" : ": " + note);
    out += pad(one_line(c.kind, 24), wk) + "  " + pad(one_line(c.name, 40), wn) + "  " + pad(c.status, ws) + "  " +
           pad(seconds_text(c.heartbeat_age_s), 9) + "  " + pad(std::to_string(c.restarts), 8) + "  " +
           (note.empty() ? "-" : one_line(note)) + "\n";
  }
  if (components.empty()) out += "(no components)\n";
  if (mailbox.readable) {
    out += "mailbox: outbox " + std::to_string(mailbox.outbox_rows) + " rows (" + std::to_string(mailbox.outbox_bytes) +
           " bytes" +
           (mailbox.outbox_rows > 0 ? ", oldest " + seconds_text(static_cast<double>(mailbox.oldest_pending_age_ms) / 1000.0)
                                    : std::string{}) +
           "), inbox " + std::to_string(mailbox.inbox_rows) + " rows (" + std::to_string(mailbox.inbox_unacked) +
           " unacknowledged), dead letters " + std::to_string(mailbox.dead_letter_rows) + "\n";
  } else {
    out += "mailbox: not readable: " + one_line(mailbox.error, 200) + "\n";
  }
  return out;
}

}  // namespace edgert
