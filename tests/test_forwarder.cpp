// The forwarder (src/comms/forwarder.cpp) against a scripted transport and a real
// mailbox file: what a real broker cannot be made to do on demand, such as a PUBACK
// for an old message id arriving while a new publish that got the same id is made.
// The transport keeps its own tally of every publish; the outbox is read back from
// the mailbox.
#include "comms/forwarder.hpp"
#include "envelope_builder.hpp"
#include "scratch_dir.hpp"
#include "wait_until.hpp"

#include <edgert/mailbox.hpp>
#include <edgert/transport.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using edgert::LinkState;
using edgert::Mailbox;
using edgert::comms::Forwarder;
using edgert::comms::ForwarderOptions;

namespace {

using edgert::testing::Scratch;
using edgert::testing::wait_until;

// publish() returns the mid `mid_of` names for the row (by its message_id, read from
// the payload), and runs `during` (if set) before it returns: the network thread's
// callbacks may run while publish() is still in progress.
class ScriptedTransport final : public edgert::Transport {
 public:
  std::function<int(const std::string& message_id)> mid_of;
  std::function<void(const std::string& message_id)> during;

  edgert::Status start(edgert::TransportEvents) override { return {}; }
  void stop(std::chrono::milliseconds) override {}
  edgert::Result<int> publish(const std::string&, std::string_view payload, edgert::PublishOptions) override {
    const std::string id = message_id_in(payload);
    {
      std::lock_guard lk(mu_);
      published_.push_back(id);
    }
    if (during) during(id);
    return mid_of(id);
  }
  edgert::Status subscribe(const std::string&, int) override { return {}; }
  LinkState state() const noexcept override { return LinkState::connected; }
  edgert::TransportStats stats() const override { return {}; }

  std::vector<std::string> published() const {
    std::lock_guard lk(mu_);
    return published_;
  }

 private:
  // Runs on the forwarder's publisher thread, where Catch2's assertions may not run
  // (they are not thread-safe): a payload without an id yields "", which the main
  // thread's checks of published() then fail on.
  static std::string message_id_in(std::string_view json) {
    const std::string key = "\"message_id\":\"";
    const auto at = json.find(key);
    if (at == std::string_view::npos) return {};
    const auto end = json.find('"', at + key.size());
    return std::string(json.substr(at + key.size(), end - at - key.size()));
  }
  mutable std::mutex mu_;
  std::vector<std::string> published_;
};

std::uint64_t outbox_rows(Mailbox& mb) { return mb.stats().value().outbox_rows; }

}  // namespace

// Issue 20, item 3b: message ids wrap at 65535. A PUBACK that arrives before its
// publish() returned is kept as an "early ack" and matched when the batch registers;
// one for an old row given up on (ack_timeout) that carries the id a new row is about
// to get must not be taken for the new row's: that row would be deleted without a
// PUBACK of its own (a loss).
TEST_CASE("a late PUBACK for a wrapped message id does not acknowledge the new row that reuses the id",
          "[comms][forwarder]") {
  Scratch s;
  edgert::MailboxOptions mo;
  mo.data_dir = s.dir.string();
  mo.backoff_base = 3600s;  // a failed row stays out of the way
  auto opened = Mailbox::open(mo);
  REQUIRE(opened.ok());
  Mailbox& mb = *opened.value();

  ScriptedTransport t;
  // Every id is fixed before the forwarder starts: the transport reads them from the
  // publisher's thread.
  const std::string old_id = "old", gate_id = "gate", a_id = "a", b_id = "b";
  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;           // publish() of the gate row waits while set
  std::string first_of_pair;   // the first of a and b to be published
  Forwarder* fwd_ptr = nullptr;
  t.mid_of = [&](const std::string& id) {
    if (id == old_id) return 7;
    if (id == gate_id) return 9;
    std::lock_guard lk(mu);
    return id == first_of_pair ? 8 : 7;  // the wrap: the second of the pair gets the old row's id
  };
  t.during = [&](const std::string& id) {
    if (id == gate_id) {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return !hold; });
      return;
    }
    if (id != a_id && id != b_id) return;
    bool first = false;
    {
      std::lock_guard lk(mu);
      if (first_of_pair.empty()) {
        first_of_pair = id;
        first = true;
      }
    }
    // The old row's PUBACK, late, arrives while the batch is being published, before
    // the publish() that hands out id 7 again.
    if (first) fwd_ptr->on_published(7, true, "");
  };
  auto envelope = [](int n, const std::string& id) {
    auto e = edgert::testing::numbered_envelope(n);
    e.message_id = id;
    return e;
  };

  ForwarderOptions fo;
  fo.node_id = "node-a";
  fo.window = 10;
  fo.ack_timeout = 200ms;
  Forwarder fwd(fo, mb, t);
  fwd_ptr = &fwd;
  mb.set_commit_listener([&] { fwd.wake(); });
  fwd.start();

  // 1. The old row is published as id 7; its PUBACK does not come in time: given up on.
  REQUIRE(mb.send(envelope(1, old_id)).ok());
  REQUIRE(wait_until([&] { return fwd.counters().ack_timeouts == 1; }));

  // 2. A gate row whose publish() blocks, so that a and b are leased meanwhile and
  //    published in one batch: the late PUBACK for 7 arrives during the first one's
  //    publish(), and the second one gets id 7.
  {
    std::lock_guard lk(mu);
    hold = true;
  }
  REQUIRE(mb.send(envelope(2, gate_id)).ok());
  REQUIRE(wait_until([&] { return t.published().size() == 2; }));  // the gate's publish() is waiting
  REQUIRE(mb.send(envelope(3, a_id)).ok());
  REQUIRE(mb.send(envelope(4, b_id)).ok());
  REQUIRE(wait_until([&] { return mb.stats().value().leased_now == 3; }));  // gate, a, b
  std::this_thread::sleep_for(50ms);  // from the lease into the ready queue: one batch
  {
    std::lock_guard lk(mu);
    hold = false;
  }
  cv.notify_all();
  REQUIRE(wait_until([&] { return t.published().size() == 4; }));
  std::string second;
  {
    std::lock_guard lk(mu);
    second = first_of_pair == a_id ? b_id : a_id;
  }

  // The gate (9) and the first of the pair (8) are acknowledged for real; the second
  // (7) never is.
  fwd.on_published(9, true, "");
  fwd.on_published(8, true, "");
  REQUIRE(wait_until([&] { return fwd.counters().delivered >= 2; }));
  std::this_thread::sleep_for(100ms);  // a wrong match would be deleted by now
  CHECK(fwd.counters().delivered == 2);
  fwd.stop(0ms);
  mb.set_commit_listener({});
  // Own tally: published once each; the old row and the second of the pair are still
  // stored (both failed for want of a PUBACK, backing off).
  const auto order = t.published();
  CHECK(std::count(order.begin(), order.end(), second) == 1);
  CHECK(outbox_rows(mb) == 2);
}
