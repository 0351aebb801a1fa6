// Mailbox: the durable store-and-forward outbox and inbox of a node (docs/mailbox.md),
// one SQLite file at <data_dir>/mailbox.db.
//
// Guarantees
//  - send() returns a message id only once the row is committed: it survives a crash
//    of the process (synchronous=normal, the default) or a power loss (full).
//  - Concurrent send() calls share transactions (group commit); each caller still
//    returns only after its own row is committed. send_async() lets one caller keep
//    many messages in flight; its future is ready once the row is committed.
//  - Nothing is dropped silently: expiry, eviction, refusal and duplicates are each
//    counted in stats(), and evictions are logged at WARNING and raise a notification.
//  - The backlog is never loaded into memory: pending() pages through it.
//  - Only a file SQLite reports as corrupt or not a database is moved aside on open
//    (to mailbox.db.corrupt-<timestamp>, never replacing an earlier one), after its
//    readable rows were salvaged into a fresh mailbox (counts logged at ERROR); any
//    other open failure leaves the file untouched and fails open.
//  - Each outbox row carries a checksum over its envelope and schedule: a value
//    damaged on disk makes the row unreadable (ERROR, counted in `unreadable`, kept,
//    skipped), never silently expired. A WAL from another mailbox is kept aside
//    (mailbox.db-wal.foreign-<timestamp>, ERROR), never replayed.
//  - One Mailbox per data_dir: it holds an exclusive lock on <data_dir>/.lock until
//    close(), and a second opener, in any process, is refused at once.
//  - A full integrity check runs in the background after each open; damaged indexes
//    are rebuilt, and a WAL that recovery would cut short is kept and reported.
//
// Threads: every member function may be called from any thread, concurrently with
// any other, close() included; calls block on SQLite I/O. Errors are returned, never
// thrown. Only the destructor must not race other calls (undefined behaviour).
#pragma once

#include <edgert/export.hpp>
#include <edgert/status.hpp>
#include <edgert/worker_pulse.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace edgert {

/// What travels: the wire envelope (docs/mailbox.md, "Outbox").
struct Envelope {
  std::string message_id;         // "" on send: one is generated ("msg:<32 hex>")
  std::string sender_node_id;
  std::string recipient_node_id;
  std::string payload_type;       // "detection", "heartbeat", "command", ...
  std::string payload;            // UTF-8 JSON text
  std::int64_t timestamp_ms = 0;  // 0 on send: now
};

struct SendOptions {
  /// Undelivered after this: expired (counted). Must be positive: 0 or less is refused
  /// (invalid_argument, counted in rejected). Longer than MailboxOptions::max_ttl acts
  /// as max_ttl, so seconds::max() means "as long as the mailbox allows". Measured in
  /// elapsed time: wall-clock jumps do not shorten or stretch it (docs/mailbox.md,
  /// "Clock jumps and TTLs").
  std::chrono::seconds ttl{24 * 3600};
  int priority = 0;                     // higher is delivered first and evicted last; a newcomer
                                        // never evicts a higher priority message (docs/mailbox.md)
  std::string idempotency_key;          // same key again (until the TTL): the first message's id
};

/// A due outbox row. From pending(): `envelope` decoded from the stored JSON, every
/// field. From lease(): not decoded: `envelope` holds only message_id,
/// recipient_node_id and payload_type (from the row's indexed columns); sender_node_id
/// and payload are empty and timestamp_ms 0; the stored JSON is in envelope_json.
struct OutboxMessage {
  Envelope envelope;
  int priority = 0;
  int attempts = 0;                  // failed deliveries so far
  std::int64_t next_attempt_ms = 0;  // wall clock, ms since the epoch
  std::int64_t expires_ms = 0;
  std::int64_t created_ms = 0;
  std::string envelope_json;         // the stored JSON, byte for byte: what a forwarder publishes
};

struct InboxMessage {
  Envelope envelope;
  std::string scope;  // the replay space it was stored in (StoreOptions::scope); ack() names it
  std::int64_t received_ms = 0;
  bool acknowledged = false;
};

/// How Mailbox::store() files a received message.
struct StoreOptions {
  /// The replay-protection space: a message_id is a duplicate only of one stored in the
  /// same scope. A receiver keeps what it authenticated apart from what it did not
  /// (e.g. "commands/<key_id>/<sender>" and "inbox/<sender>"), so an unauthenticated
  /// message can never take an id an authenticated one is checked against. At most
  /// max_id_bytes * 2 + 64 bytes; "" is a scope like any other.
  std::string scope;
};

/// stored: new, kept. duplicate: the same message (same scope, id and content) was
/// stored before; nothing changed. conflict: the scope already holds this id with
/// other content; not stored (counted in duplicates; the receiver dead-letters it).
enum class StoreResult { stored, duplicate, conflict };

/// Which due rows Mailbox::lease() hands out first.
enum class LeaseOrder {
  priority_first,  // highest priority, then earliest due (as pending())
  newest_first,    // the most recently stored
};

/// A received message the node refused (docs/mailbox.md, "Dead letters").
struct DeadLetter {
  std::string message_id;      // "" when it could not be read
  std::string sender_node_id;  // "" when unknown
  std::string source;          // where it came from (an MQTT topic)
  std::string reason;          // "malformed JSON at byte 17", "wrong recipient 'b'", ...
  std::string raw;             // the first max_dead_letter_raw_bytes of what arrived, as received
  std::int64_t received_ms = 0;  // 0 on dead_letter(): now
};

enum class QuotaPolicy { reject_new, evict_oldest };

struct MailboxCounters {
  std::uint64_t sent = 0;             // rows committed by send()
  std::uint64_t idempotent_hits = 0;  // send() answered with an earlier message's id
  std::uint64_t delivered = 0;
  std::uint64_t failed_attempts = 0;
  std::uint64_t expired = 0;
  std::uint64_t duplicates = 0;       // inbox replays, and sends reusing a stored message_id with other content, refused
  std::uint64_t evicted = 0;
  std::uint64_t rejected = 0;         // refused by quota, size or validation
  std::uint64_t commits = 0;          // send() transactions: sent / commits is the group size
  std::uint64_t write_errors = 0;     // sends not stored: io_error (their row or commit failed) or closed by close()
  std::uint64_t checkpoints = 0;      // background WAL checkpoints run
  std::uint64_t checkpoint_failures = 0;  // of those, did not finish (WARNING; retried)
  std::uint64_t unreadable = 0;           // stored rows that cannot be decoded or fail their checksum (ERROR; kept, skipped)
  std::uint64_t notification_errors = 0;  // on_notification calls that threw (ERROR)
  std::uint64_t disk_full = 0;            // sends refused because the disk is full (quota_exceeded; not stored)
  // The full PRAGMA integrity_check run in the background after open (docs/mailbox.md,
  // "Corruption"): passes completed (a re-check after a repair counts again), damage
  // repaired by REINDEX (WARNING), and damage REINDEX could not repair (ERROR).
  std::uint64_t integrity_checks = 0;
  std::uint64_t integrity_repairs = 0;
  std::uint64_t integrity_failures = 0;
  std::uint64_t clock_jumps = 0;          // wall-clock jumps the schedule was rebased for (WARNING)
  std::uint64_t leased = 0;               // rows handed out by lease()
  std::uint64_t lease_expired = 0;        // leases that ran out before mark_*() or release()
  std::uint64_t dead_lettered = 0;        // dead_letter() rows stored
  std::uint64_t dead_letters_pruned = 0;  // oldest dead letters removed to stay within max_dead_letters
  std::uint64_t cleanups = 0;             // cleanup passes run (the periodic one and cleanup_expired() calls)
  std::uint64_t inbox_retired = 0;        // acknowledged inbox rows removed after inbox_retention
  std::uint64_t inbox_refused = 0;        // store() refusals: inbox quota, or the disk below inbox_min_free_bytes
  std::uint64_t inbox_conflicts = 0;      // store() answers `conflict` (same scope and id, other content)
};

struct MailboxStats {
  std::uint64_t outbox_rows = 0, outbox_bytes = 0;
  std::uint64_t inbox_rows = 0, inbox_bytes = 0, inbox_unacked = 0;
  std::int64_t oldest_pending_age_ms = 0;  // 0 when the outbox is empty
  std::uint64_t leased_now = 0;            // outbox rows under a lease at this moment
  std::uint64_t dead_letter_rows = 0;
  MailboxCounters counters;                // since this process opened the mailbox
};

struct MailboxOptions {
  std::string data_dir = "./data";
  bool synchronous_full = false;  // false: NORMAL (survives a process crash); true: FULL (power loss)
  int busy_timeout_ms = 5000;
  /// Open runs PRAGMA quick_check (every page) on a file up to this size. A larger file
  /// with no free pages is checked only in part at open (header, schema, the tables
  /// other than the outbox, the outbox's indexes) and its outbox table by the background
  /// integrity_check; until that check vouches for the file, every later open runs the
  /// full quick_check (docs/mailbox.md, "Bounded check at open"). Default UINT64_MAX:
  /// always in full, because the partial check cannot see a page shared between the
  /// outbox table and another b-tree before the first write; opt in (e.g. 64 MiB) to
  /// open a large unverified backlog in a fraction of the time.
  std::uint64_t quick_check_max_bytes = UINT64_MAX;
  std::size_t max_payload_bytes = 1 << 20;  // larger payloads are refused
  /// Deepest nesting of arrays and objects a payload may have; deeper ones are refused
  /// (a reader re-serialising them would recurse once per level). Values above 1024
  /// act as 1024.
  std::size_t max_json_depth = 64;
  /// Longest message_id, sender_node_id, recipient_node_id, payload_type and
  /// idempotency_key, in bytes; longer ones are refused.
  std::size_t max_id_bytes = 256;
  /// Dead letters kept; beyond this the oldest are removed (counted: dead_letters_pruned),
  /// so a hostile peer cannot fill the disk with them. 0: none are kept (still counted).
  std::uint64_t max_dead_letters = 10000;
  std::size_t max_dead_letter_raw_bytes = 4096;  // longer raw input is cut to this
  std::uint64_t max_messages = 0;           // outbox quota; 0: unlimited
  std::uint64_t max_bytes = 0;              // outbox quota on stored envelope bytes; 0: unlimited
  /// At a full quota, expired rows are removed first (they never count against it);
  /// then reject_new refuses the newcomer, evict_oldest removes live rows of lower or
  /// equal priority, lowest and oldest first.
  QuotaPolicy quota_policy = QuotaPolicy::reject_new;
  /// The mailbox's own periodic cleanup (a background thread it owns): expired outbox
  /// rows and idempotency keys, and acknowledged inbox rows past inbox_retention, removed
  /// in batches of cleanup_batch rows per transaction (so a sender never waits behind a
  /// long delete). 0 disables it (cleanup_expired() still works).
  std::chrono::seconds cleanup_interval{60};
  std::size_t cleanup_batch = 1000;
  /// Replay window: acknowledged inbox rows are kept this long after they were received,
  /// so a replayed message_id is recognised, then removed. Unacknowledged rows stay
  /// until ack() (the inbox quota bounds them).
  std::chrono::seconds inbox_retention{24 * 3600};
  /// Inbox quota, separate from the outbox's: at either limit (rows, or stored envelope
  /// bytes, acknowledged rows included) store() refuses with quota_exceeded. 0: unlimited.
  std::uint64_t inbox_max_messages = 100000;
  std::uint64_t inbox_max_bytes = 64ull << 20;
  /// store() also refuses (quota_exceeded) while the file system has less than this
  /// free, so a flood of mail stops before the disk is full and the room results and
  /// delivery bookkeeping need stays free. 0: no floor.
  std::uint64_t inbox_min_free_bytes = 16ull << 20;
  std::chrono::milliseconds backoff_base{5000};   // next attempt after failure n (from 0):
  std::chrono::milliseconds backoff_cap{300000};  //   min(base * 2^n, cap)
  double backoff_jitter = 0.0;                    // +- this fraction, 0..1
  std::size_t max_batch = 256;    // rows per group commit; 1 disables group commit
  std::size_t max_queued = 8192;  // messages waiting for the writer; senders block beyond; 0: no bound
  /// WAL checkpoints run on a background thread (never inside a send's commit) each
  /// time this much new WAL has accumulated...
  std::uint64_t wal_checkpoint_bytes = 4 << 20;
  /// ...and, should the WAL still grow past this under sustained load, a checkpoint
  /// that waits for the writer resets it; on reset it is cut back to this size.
  std::uint64_t wal_limit_bytes = 64 << 20;
  /// Called (on the writing thread, must not block) for each eviction. An exception it
  /// throws is caught, counted (notification_errors) and logged at ERROR.
  std::function<void(const std::string& message)> on_notification;
  /// The longest close() (and so the destructor) waits for queued messages to be
  /// committed, chiefly for a write lock held by another process. Messages still
  /// uncommitted when it passes are answered `closed`, and counted (write_errors).
  /// Keep it well below the service manager's stop timeout (systemd: 90 s).
  std::chrono::milliseconds close_timeout{10000};
  /// A TTL longer than this acts as this (SendOptions::ttl). Values below 1 s are refused
  /// at open (invalid_argument); values above 100 years act as 100 years.
  std::chrono::seconds max_ttl{365 * 24 * 3600};
  /// The wall clock may drift this far from the elapsed monotonic time (or, across a
  /// restart, run backwards this far) before it counts as a jump and the stored
  /// schedule is rebased (docs/mailbox.md, "Clock jumps and TTLs"). Below 1 s acts as 1 s.
  std::chrono::milliseconds clock_jump_tolerance{60000};
  /// Wall clock in ms since the epoch; injectable for tests.
  std::function<std::int64_t()> clock_ms;
  /// Monotonic clock in ms (any origin), the reference jumps are measured against;
  /// injectable for tests together with clock_ms. With clock_ms injected and this
  /// left empty, jumps within a process are not detected (the injected clock is
  /// taken as the only time source).
  std::function<std::int64_t()> steady_ms;
  /// Optional: the writer thread's heartbeat (edgert/worker_pulse.hpp; the Node's
  /// `mailbox/writer` registry row). Beaten each turn of the writer and while it waits
  /// idle, so only a writer stuck inside SQLite stops beating. Called on the writer thread.
  std::shared_ptr<WorkerPulse> writer_pulse;
};

namespace detail {
struct MailboxSendRequest;
struct MailboxAccess;  // the library's own result path (src/mailbox/mailbox_access.hpp)
}

/// The outcome of Mailbox::send_async(): becomes ready once the message's row is
/// committed (or the message is refused). Move-only; may outlive the Mailbox.
class EDGERT_API PendingSend {
 public:
  PendingSend(PendingSend&&) noexcept;
  PendingSend& operator=(PendingSend&&) noexcept;
  ~PendingSend();  // does not wait; the message is committed all the same

  /// Any thread, never blocks: true once get() would return at once.
  bool ready() const noexcept;
  /// Blocks until ready; returns what send() would have returned (the message id or
  /// the error). Once: afterwards valid() is false and get() returns invalid_argument.
  Result<std::string> get();
  bool valid() const noexcept;

 private:
  friend class Mailbox;
  friend struct detail::MailboxAccess;
  explicit PendingSend(std::shared_ptr<detail::MailboxSendRequest> request);
  std::shared_ptr<detail::MailboxSendRequest> request_;
};

class EDGERT_API Mailbox {
 public:
  /// Any thread; blocks on file I/O, and up to busy_timeout_ms while another process
  /// holds the file locked. Opens (creating it if needed) <data_dir>/mailbox.db: WAL,
  /// PRAGMA quick_check, schema migrations. A file SQLite reports corrupt or not a
  /// database has its readable rows copied into a fresh mailbox, then is renamed to
  /// mailbox.db.corrupt-<UTC stamp>[-N] (ERROR with the rows saved and lost); a
  /// zero-byte one is reported at WARNING and initialised in place. A WAL that does
  /// not belong to the database (docs/mailbox.md) is moved aside unreplayed (ERROR).
  /// A WAL whose replay would stop at a damaged frame is copied aside first (ERROR); a
  /// WAL missing after an unclean stop is reported (WARNING). A full integrity_check
  /// then runs on a background thread: index damage is rebuilt (REINDEX), other
  /// damage logged at ERROR; see MailboxCounters::integrity_* (docs/mailbox.md).
  /// A wall clock set back while the mailbox was closed, or stored times written by
  /// an unset (1970) clock, rebase the stored schedule (WARNING, clock_jumps).
  /// Errors: io_error naming the file and the cause (locked, permission denied, a
  /// read-only file or data directory, disk full, I/O), the file left untouched;
  /// io_error "<data_dir>: in use by another process (pid N holds <data_dir>/.lock);
  /// one node per data_dir", without waiting, while another Mailbox holds the data_dir
  /// (docs/mailbox.md, "Second process on one data_dir"); unsupported for a schema
  /// newer than this build (docs/mailbox.md); invalid_argument for max_ttl below 1 s.
  static Result<std::unique_ptr<Mailbox>> open(MailboxOptions options);
  /// Calls close(). Any other call running on another thread during or after the
  /// destructor is undefined behaviour: stop them first (close() makes them return).
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  /// Any thread; blocks until the row is committed. A caller-chosen message_id
  /// already in the outbox is not stored again: if the stored envelope is identical
  /// (a resend; a timestamp_ms of 0 matches any) the answer is its id (counted in
  /// idempotent_hits), otherwise invalid_argument naming the id (counted in
  /// duplicates); either way the other messages of its group commit are unaffected.
  /// Errors: invalid_argument (the payload is not exactly one JSON value, nests deeper
  /// than max_json_depth or is larger than max_payload_bytes; an identifier is longer
  /// than max_id_bytes or not UTF-8; the message_id is taken; the ttl is not positive;
  /// nothing stored),
  /// quota_exceeded (reject_new, or evict_oldest with no message of lower or equal
  /// priority left to evict), io_error (this row, or its whole group's commit, failed;
  /// counted in write_errors), closed (close() was called; or close_timeout passed
  /// before the row could be committed).
  Result<std::string> send(Envelope envelope, SendOptions options = {});
  /// send() without waiting for the commit: validates the message, queues it for the
  /// next group commit and returns; the future yields what send() would have returned,
  /// once the row is committed. Lets one producer keep many messages in flight, so
  /// groups grow past one row per thread. Blocks only while `max_queued` messages
  /// already wait for the writer. Messages queued before close() are committed, or
  /// answered `closed` if close_timeout passes first.
  PendingSend send_async(Envelope envelope, SendOptions options = {});

  /// Up to `limit` messages due now and not leased (lease()), highest priority first,
  /// then earliest due; it leases nothing, so two callers get the same rows. Like
  /// send(), mark_failed(), cleanup_expired() and stats(), first rebases the stored
  /// schedule if the wall clock jumped (docs/mailbox.md, "Clock jumps and TTLs"). A
  /// stored row that cannot be decoded (e.g. written by an older build without the
  /// input checks) is skipped, logged at ERROR once and counted (unreadable); it stays
  /// in the file and mark_delivered() removes it.
  Result<std::vector<OutboxMessage>> pending(std::size_t limit);
  /// Like pending(), and the rows returned are leased to the caller: pending() and
  /// lease() do not return them again until mark_delivered(), mark_failed() or
  /// release() names them, or `lease_for` passes (counted: lease_expired). Leases live
  /// in this process's memory only: after a crash or close() every row is due again,
  /// so a message whose acknowledgement never came is delivered again (at-least-once).
  /// `lease_for` runs on the monotonic clock (MailboxOptions::steady_ms): wall-clock
  /// jumps neither expire nor extend it. Reads at most limit + leases held rows: the
  /// cost follows the caller's window, not the backlog (docs/mailbox.md, "Leases").
  /// `order` newest_first takes the most recently stored due rows instead (whatever
  /// their priority): a forwarder alternating the two keeps messages stored during a
  /// backlog's drain from waiting behind all of it (docs/operations.md, "Delivery").
  /// Unlike pending(), lease() does not parse the stored JSON: it is for publishing
  /// those bytes (OutboxMessage::envelope_json, copied once out of the row), and the
  /// routing fields come from the row's own columns (OutboxMessage says which). The
  /// bytes were validated by send() before they were stored, and the row checksum
  /// still guards them and the columns: a row that fails it is skipped, logged and
  /// counted (unreadable) as in pending(). A row whose JSON pending() cannot decode
  /// but whose checksum holds (written by a build older than the input checks, or
  /// edited by hand with row_sum cleared) is leased and published as stored; the
  /// receiver's own checks refuse it there.
  /// Any thread. Errors: invalid_argument for a lease_for of 0 or less (nothing
  /// leased), io_error, closed.
  Result<std::vector<OutboxMessage>> lease(std::size_t limit, std::chrono::milliseconds lease_for,
                                           LeaseOrder order = LeaseOrder::priority_first);
  /// Ends leases without counting an attempt (the rows are due again at once). Unknown
  /// ids are ignored. Any thread; never fails (after close() it does nothing useful).
  void release(const std::vector<std::string>& message_ids);
  /// Wakes `listener` after each commit that stored outbox rows (not for one that only
  /// answered idempotency hits, not for the inbox), on the writer thread, before that
  /// commit's senders are answered; it must not block or call the mailbox (a call
  /// from it into set_commit_listener() deadlocks). One listener; an empty function
  /// removes it. Any thread; waits out a call in progress, so the old listener may be
  /// destroyed once this returns. An exception it throws is caught, counted
  /// (notification_errors) and logged at ERROR; the commit stands.
  void set_commit_listener(std::function<void()> listener);

  /// Removes a delivered message and ends its lease. not_found if it is not in the outbox.
  Status mark_delivered(const std::string& message_id);
  /// Removes many delivered messages in one transaction and ends their leases; returns
  /// how many were in the outbox (ids not there are skipped, not errors). Any thread.
  /// Errors: io_error (nothing removed; the leases are kept, so the call can be
  /// repeated), closed.
  Result<std::size_t> mark_delivered(const std::vector<std::string>& message_ids);
  /// mark_failed() for many, in one transaction; ends their leases; returns how many
  /// were in the outbox. Any thread. Errors: io_error (nothing rescheduled; the leases
  /// are kept), closed.
  Result<std::size_t> mark_failed(const std::vector<std::string>& message_ids);
  /// Counts a failed attempt and schedules the next; returns its time (ms since epoch,
  /// saturating: a huge backoff gives a far-future time, never a wrapped one).
  Result<std::int64_t> mark_failed(const std::string& message_id);
  /// One cleanup pass, as the periodic one runs it: removes expired outbox rows and
  /// idempotency keys, and acknowledged inbox rows older than inbox_retention, in
  /// batches of cleanup_batch (db lock released between them). Returns how many
  /// outbox rows expired (counted in `expired`; inbox rows in `inbox_retired`). Any
  /// thread. Errors: io_error (what was removed before it stays removed), closed.
  Result<std::size_t> cleanup_expired();

  /// Stores a received message in `options.scope`. Validated as send() is;
  /// invalid_argument (counted in rejected) if not. Answers duplicate for the same
  /// message again and conflict for other content under a stored id (both counted,
  /// nothing stored). Errors: quota_exceeded (the inbox quota is reached, or the disk has
  /// less than inbox_min_free_bytes free; counted in inbox_refused; the receiver must not
  /// acknowledge the message to its sender), io_error, closed. Any thread; blocks on
  /// SQLite I/O; never uses the disk reserve.
  Result<StoreResult> store(const Envelope& envelope, const StoreOptions& options = {});
  /// Unacknowledged inbox messages, oldest first; `payload_type` "" means all. Reads
  /// through the mailbox's read-only connection: never waits for a writer. Undecodable
  /// rows are skipped and reported as in pending(); ack() retires them. Any thread.
  Result<std::vector<InboxMessage>> unacked(const std::string& payload_type = "", std::size_t limit = 1000);
  /// Marks a received message handled (it is retired after inbox_retention). not_found
  /// if `scope` holds no such message. Any thread. Bookkeeping: on a full disk it may
  /// use the reserve (as mark_delivered() does); store() never does.
  Status ack(const std::string& message_id, const std::string& scope = "");

  /// Stores a refused inbound message with the reason (raw cut to
  /// max_dead_letter_raw_bytes; any bytes, not only UTF-8, are kept; message_id and
  /// sender_node_id cut to max_id_bytes, source and reason to 1024 bytes). Removes the
  /// oldest beyond max_dead_letters in the same transaction (dead_letters_pruned).
  /// Any thread; blocks on SQLite I/O. Errors: io_error naming the file, the letter's
  /// message_id and source (e.g. a full disk: dead letters never use the disk reserve
  /// kept for delivery bookkeeping), closed.
  Status dead_letter(DeadLetter letter);
  /// The `limit` most recently stored dead letters, newest first. Any thread.
  /// Errors: io_error, closed.
  Result<std::vector<DeadLetter>> dead_letters(std::size_t limit = 100);

  /// Totals (kept by the writers in the same transactions as the rows: O(1), no row is
  /// counted) and this process's counters, read through the read-only connection: it
  /// never waits for the writer or a delivery. Any thread. Errors: io_error, closed.
  Result<MailboxStats> stats();
  const std::string& path() const noexcept;

  /// Any thread; idempotent. Stops accepting messages, commits what is queued, then
  /// stops the writer and checkpoint threads and closes the database. Blocks at most
  /// about close_timeout (plus one commit under way): once it passes, queued messages
  /// are answered `closed` ("mailbox <path>: closed before this message could be
  /// committed (...)"), counted in write_errors and summed up in one ERROR. Afterwards
  /// every other call returns `closed` (path() excepted). Returns ok; a later call ok.
  Status close();

  /// Row and byte totals of <data_dir>/mailbox.db through a read-only connection, safe
  /// while a node runs (counters are per process and stay zero here).
  static Result<MailboxStats> read_stats(const std::string& data_dir);
  /// PRAGMA integrity_check of <data_dir>/mailbox.db, read-only, safe while a node runs.
  static Status check(const std::string& data_dir);
  /// Copies <data_dir>/mailbox.db to `dest` with SQLite's online backup API; safe
  /// while a node runs (takes no lock). Errors: not_found without a mailbox; io_error
  /// naming the file for an unreadable source or unwritable dest, and when `dest` is
  /// the live mailbox.db (or its -wal/-shm) itself, however named.
  static Status backup(const std::string& data_dir, const std::string& dest);
  /// Any thread; blocks on file I/O. Replaces <data_dir>/mailbox.db with a copy of
  /// `backup` (docs/mailbox.md, "Restoring a backup"), holding the data_dir lock
  /// throughout: the backup must pass PRAGMA integrity_check and hold a mailbox schema
  /// this build understands; it is copied (with SQLite's backup API) to a temporary file
  /// in data_dir, the inbox rows of the mailbox being replaced that the backup lacks
  /// (or holds unacknowledged) are carried into the copy, so a restore never makes a
  /// received message new again (best effort: an unreadable current file is logged at
  /// WARNING and the restore goes on), the copy is fsynced, the old mailbox.db and its -wal/-shm are moved together to
  /// mailbox.db.pre-restore-<UTC stamp>[-N] (never deleted), the copy is renamed into
  /// place and the directory fsynced. Returns the name the old file was moved to ("" if
  /// there was none). Errors, the data_dir left as it was: io_error while a Mailbox
  /// holds the lock (naming the holder's pid), for a backup that is unreadable, corrupt
  /// or not a mailbox, or for a file the copy could not write; unsupported for a schema
  /// newer than this build.
  [[nodiscard]] static Result<std::string> restore(const std::string& data_dir, const std::string& backup);

  struct Impl;

 private:
  friend struct detail::MailboxAccess;
  explicit Mailbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgert
