// The pure per-partition replication core: one `Copy` object is one node's copy of one
// partition, acting as primary or replica as the (metadata-decided) configuration says.
// PacificA-style: the configuration (epoch, primary, replicas) is kept by a consensus service
// (Rabia metadata); data is replicated primary -> replicas outside consensus.
//
// Pure: no clock, socket, file, thread or random device. Time comes in as `now_ms` (this
// node's monotonic clock); messages come in through receive(); everything the copy wants done
// comes out of take_output(). The runtime (src/dht) and the simulator (tests/sim/repl) drive it.
//
// Effects are opaque bytes here: the deterministic result of one write (see src/dht/effect.h).
// Applying the same effects in LSN order to the same starting state gives the same state.
// Effects are full-state ("key k now holds value v" / "key k is absent"), so re-applying one is
// harmless (idempotent) — catch-up may resend.
//
// Protocol summary (messages below):
//  - The primary numbers every write with the next LSN (1, 2, ...; a new primary continues
//    from its own last LSN) and stamps it with its epoch; an LSN is only ever reused for a
//    different entry after the entry it replaces was discarded as uncommitted, and the pair
//    (lsn, epoch) names one entry everywhere. It streams entries to every replica in Append
//    messages, batched up to Options::max_batch_bytes, with at most
//    Options::max_inflight_bytes unacknowledged per replica (back-pressure: append() refuses
//    with kUnavailable "replication backlog full" past Options::max_backlog_bytes).
//  - A replica accepts an Append only if its epoch equals the replica's configured epoch, it
//    comes from the configured primary, the replica is not fenced for a newer epoch, and
//    (prev_lsn, prev_epoch) names the replica's last entry (or an entry it holds; entries it
//    already holds are skipped). Else it answers mismatch with its last (lsn, epoch) so the
//    primary resends from there, or sends a snapshot if its log no longer reaches back or the
//    replica's last entry is not in the primary's log (diverged). Accepted entries come out in
//    Output::apply; the runtime applies them and calls durable(lsn) once they are as durable
//    as the engine promises; only then does the replica acknowledge that LSN.
//  - The primary's commit LSN is the highest LSN held durably by `write_quorum` copies, the
//    primary counted (its own durability also comes in through durable()), provided that entry
//    was created in the current epoch (Raft's rule: an older entry is committed by a newer one
//    above it, never by counting its copies). So that older entries commit without waiting
//    for a client write, a primary starts every epoch with a BARRIER entry: an empty effect,
//    which the runtime applies as nothing (but records as applied and reports durable).
//    Output::committed_lsn rises monotonically; the runtime answers every client write with
//    lsn <= committed, and answers a read of a key only once the LSN of that key's last write
//    is committed (a read never shows a write that may still be lost).
//  - Leases: every AppendAck grants the primary a read lease: the replica promises not to
//    answer a Fence for a newer epoch until lease_ms after it sent the ack, by its own clock.
//    A copy that restarted may have granted one just before it crashed, so it answers no Fence
//    until lease_ms after the first time it is called.
//    The primary holds the lease until (send time of the Append that was acked) + lease_ms -
//    max_drift_ms, by its own clock, counting only grants from enough replicas that every
//    fence quorum (below) contains one of them. can_serve_reads(now) is false otherwise. With
//    no replicas the primary always holds it.
//  - Failover (driven by the runtime / the simulator's failover manager, decided in metadata):
//    to replace a primary at epoch e, the manager sends Fence{e+1} to the members; a fenced
//    copy refuses Appends of epochs < e+1 from then on and answers FenceAck{last lsn and its
//    epoch} (after any lease it granted has run out). choose_new_primary() picks, from at least
//    fence_quorum() answers of copies configured in epoch e and in sync in it (they hold e's
//    barrier, so every write committed before e; in a partition's first epoch, e = 1, where
//    nothing precedes the barrier, a copy that holds nothing at all also counts: it holds that
//    empty prefix and acknowledged nothing) — or from every copy of the configuration —
//    the copy with the highest (last_epoch, last_lsn). That copy holds every
//    committed write (each is on write_quorum copies; the fence quorum intersects them). The
//    metadata then decides the new configuration with epoch e+1; configure() installs it.
//  - Restarts: a copy that restarted is configured again only with an epoch decided AFTER its
//    restart (the failover manager bumps the epoch to re-add it): it forgot which Fences it
//    answered, so it must never rejoin the epoch it was fenced in. A persistent engine tells
//    the new Copy what it holds with recover(); a memory engine starts empty.
//  - A new primary serves writes at once (continuing its LSNs) and reads once it holds a lease.
//    Replicas of the new epoch whose log diverges (their last entry is not in the primary's
//    log: uncommitted entries of an old primary) cannot undo applied effects: they get a
//    snapshot (reset_partition first: until it completes the copy holds nothing, and it is
//    not in sync, so its fence answers do not count).
#pragma once

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"

namespace keel::replication {

using NodeId = uint32_t;

// One write's effect: immutable bytes, shared by reference. The log and every Append that
// carries the entry to a replica point at the same bytes (one allocation per write, not one
// copy per replica and batch). The count is not atomic, as a copy lives on one thread: every
// copy of one effect stays on the thread that made it (a moved effect may change threads).
class Effect {
 public:
  Effect() = default;
  Effect(std::string_view bytes) {  // NOLINT: implicit, effects are written as strings
    if (bytes.empty()) return;
    void* mem = std::malloc(sizeof(Buf) + bytes.size());
    if (!mem) throw std::bad_alloc();
    buf_ = new (mem) Buf{1, bytes.size()};
    std::memcpy(buf_->data(), bytes.data(), bytes.size());
  }
  Effect(const std::string& bytes) : Effect(std::string_view(bytes)) {}  // NOLINT
  Effect(const char* bytes) : Effect(std::string_view(bytes)) {}         // NOLINT
  Effect(const Effect& o) noexcept : buf_(o.buf_) {
    if (buf_) ++buf_->refs;
  }
  Effect(Effect&& o) noexcept : buf_(std::exchange(o.buf_, nullptr)) {}
  Effect& operator=(Effect o) noexcept {
    std::swap(buf_, o.buf_);
    return *this;
  }
  ~Effect() {
    if (buf_ && --buf_->refs == 0) free_buf(buf_);
  }
  std::string_view view() const { return buf_ ? std::string_view(buf_->data(), buf_->size) : std::string_view(); }
  operator std::string_view() const { return view(); }  // NOLINT
  size_t size() const { return buf_ ? buf_->size : 0; }
  bool empty() const { return !buf_; }

 private:
  struct Buf {
    uint32_t refs;
    size_t size;
    char* data() { return reinterpret_cast<char*>(this + 1); }
  };
  // Out of line: inlined, GCC 12 takes a shared buffer's release for a use after free.
  static void free_buf(Buf* b);
  Buf* buf_ = nullptr;
};

struct Entry {
  uint64_t lsn = 0;
  uint64_t epoch = 0;  // the epoch of the primary that created it
  Effect effect;       // empty: an epoch's barrier entry (apply nothing)
};

// A partition's configuration, as decided in metadata.
struct Config {
  uint64_t epoch = 0;
  NodeId primary = 0;
  std::vector<NodeId> replicas;  // ordered, primary excluded
  uint32_t write_quorum = 1;     // copies (primary counted) that must hold a write to ack it
  // Copies being filled (rebalancing): streamed to like replicas, but they count for nothing:
  // not for the write quorum, the read lease or a failover. Not part of the decided map; the
  // primary learns them through set_learners(), a learner's own copy through configure().
  std::vector<NodeId> learners;
};

// Replicas whose answers a failover needs: enough that their highest LSN covers every
// committed write. min(replicas, copies - write_quorum + 1), at least 1. (With write_quorum 1
// no answer set is enough: a write acknowledged by the primary alone is lost with it; the
// most up-to-date of all answering replicas is taken, as Redis does.)
uint32_t fence_quorum(const Config& c);

// --- Messages (the runtime adds the partition id and encodes them; see codec below).
struct Append {
  uint64_t epoch = 0;
  uint64_t prev_lsn = 0;  // entries[0].lsn == prev_lsn + 1 (no entries: a heartbeat)
  uint64_t prev_epoch = 0;  // epoch of the entry at prev_lsn (0 when prev_lsn is 0)
  std::vector<Entry> entries;
  uint64_t commit_lsn = 0;
  int64_t sent_ms = 0;  // primary's clock; echoed in the ack (lease accounting)
};
struct AppendAck {
  uint64_t epoch = 0;
  uint64_t durable_lsn = 0;  // the replica holds every entry through this LSN durably
  uint64_t last_lsn = 0;     // ... and has received through this one
  uint64_t last_epoch = 0;   // epoch of the entry at last_lsn
  bool mismatch = false;     // prev did not match: resend after last, or send a snapshot
  int64_t echo_sent_ms = 0;
  // A replica holding part of an interrupted snapshot (the transfer begun at resume_lsn, whose
  // entry there has resume_epoch; every key before resume_key received) asks to continue it:
  // the primary resumes the scan at resume_key and then streams the log from resume_lsn + 1,
  // if its log still reaches back that far. Else it sends a whole snapshot.
  bool resumable = false;
  uint64_t resume_lsn = 0, resume_epoch = 0;
  std::string resume_key;
  uint64_t resume_source = 0;  // SnapshotBegin::source of the interrupted transfer
};
// Snapshot transfer: the primary streams the partition's live keys as effects, then the log
// from `snapshot_lsn` + 1 on. The pure core only decides when; the runtime scans the engine.
struct SnapshotBegin {
  uint64_t epoch = 0;
  uint64_t snapshot_lsn = 0;  // entries after this LSN follow as Appends
  uint64_t snapshot_epoch = 0;  // epoch of the entry at snapshot_lsn
  // Continues the transfer the replica holds part of (AppendAck::resumable): keys from
  // resume_key on follow; the replica keeps what it has.
  bool resume = false;
  std::string resume_key;
  // The primary process that streams it (Options::source, and a count of the times its log
  // lost entries). The keys it scans may hold writes it has not committed yet; only the same
  // process, while its log still has those writes, may continue a transfer (another could
  // never correct them).
  uint64_t source = 0;
};
struct SnapshotChunk {
  uint64_t epoch = 0;
  uint64_t snapshot_lsn = 0;  // which transfer (a stale chunk is ignored)
  uint32_t seq = 0;           // 0, 1, ...: a gap aborts the transfer (the primary restarts it)
  std::vector<std::string> effects;
  bool last = false;
  std::string next_key;  // not last: the scan goes on from this key (where a resume starts)
  // Last chunk: the primary's last LSN when it sent it. The keys were scanned while writes went
  // on, so they may hold effects of entries up to here (some not committed); the replica
  // vouches for no LSN until its log reaches this one (Copy: settling).
  uint64_t settle_lsn = 0;
};
struct Fence {
  uint64_t new_epoch = 0;
};
struct FenceAck {
  uint64_t new_epoch = 0;
  uint64_t last_lsn = 0;
  uint64_t epoch = 0;  // the replica's configured epoch when it answered
  uint64_t last_epoch = 0;  // epoch of the entry at last_lsn
  // It holds the first entry (barrier) of its configured epoch, hence every write committed
  // before that epoch. False while it catches up: a copy re-added empty, or one whose data a
  // snapshot reset, holds less than it may have acknowledged before.
  bool in_sync = false;
};
using Message = std::variant<Append, AppendAck, SnapshotBegin, SnapshotChunk, Fence, FenceAck>;

// Layout: version byte, type byte, fields as varints / length-prefixed bytes (src/base codec).
std::string encode(const Message& m);
// The same, appended to `out` (a frame being built: no intermediate copy).
void encode_to(std::string& out, const Message& m);
// Bounded: at most kMaxDecodeEntries entries/effects per message and kMaxEffectBytes per
// effect, checked before allocating; kCorruption names what is wrong.
inline constexpr size_t kMaxDecodeEntries = 1 << 20;
inline constexpr size_t kMaxEffectBytes = 64 << 20;
Result<Message> decode(std::string_view bytes);

struct Options {
  size_t max_batch_bytes = 256 << 10;     // effects per Append
  size_t max_inflight_bytes = 4 << 20;    // unacknowledged bytes per replica
  size_t max_backlog_bytes = 64 << 20;    // append() refuses past this (not yet committed)
  size_t log_keep_bytes = 64 << 20;       // committed entries kept for catch-up
  // Primary: committed entries a replica or learner that answers has not yet received are kept
  // as long as they take at most this much (beside log_keep_bytes): a copy that falls behind
  // for a while (a busy node) catches up from the log instead of needing a whole snapshot,
  // which would only add to the load that slowed it. 0: keep only log_keep_bytes.
  size_t lag_keep_bytes = 4 << 20;
  int64_t heartbeat_ms = 50;              // empty Append when idle (lease renewal)
  int64_t resend_after_ms = 200;          // resend unacknowledged entries
  int64_t lease_ms = 2000;
  int64_t max_drift_ms = 200;             // clock rate/offset bound assumed between nodes
  uint64_t source = 0;                    // this process (its incarnation): see SnapshotBegin
};

enum class Role { kNone, kPrimary, kReplica };

struct Output {
  std::vector<std::pair<NodeId, Message>> send;
  // Entries to apply to the engine, in LSN order: on a replica every accepted entry; on a
  // primary only the barrier it creates when it takes an epoch (empty effect: apply nothing,
  // but record the LSN/epoch as applied and report it through durable()).
  std::vector<Entry> apply;
  // Replica: a snapshot is starting: drop the partition's keys before applying what follows.
  bool reset_partition = false;
  std::vector<std::string> apply_snapshot;  // replica: snapshot effects to apply (any order)
  // Replica: the snapshot is complete; the copy now holds everything through this LSN (call
  // durable(lsn) once the snapshot's effects are durable). 0: none completed.
  uint64_t snapshot_done_lsn = 0;
  // Replica: once apply_snapshot is applied, the engine holds every key before `next_key` of
  // the transfer begun at `lsn` (epoch: of the entry there). Kept with the data (a partial
  // log mark), it lets the transfer resume after a restart: recover_partial().
  struct SnapshotProgress {
    uint64_t lsn = 0, epoch = 0, source = 0;
    std::string next_key;
  };
  std::optional<SnapshotProgress> snapshot_progress;
  // Primary: stream a snapshot to this replica (runtime scans the engine, sends chunks with
  // snapshot_chunk(); starting LSN is given by begin_snapshot()).
  // A transfer that stalls is noticed by the usual mismatch path and requested again here.
  std::vector<NodeId> snapshot_needed;
  uint64_t committed_lsn = 0;  // primary: every write with lsn <= this is acknowledged
};

struct CopyStatus {
  Role role = Role::kNone;
  uint64_t epoch = 0;
  uint64_t last_lsn = 0, last_epoch = 0, durable_lsn = 0, committed_lsn = 0;
  uint64_t fenced_epoch = 0;
  bool lease = false;
  struct ReplicaState {
    NodeId id = 0;
    uint64_t acked_lsn = 0;
    bool snapshotting = false;
  };
  std::vector<ReplicaState> replicas;
  uint64_t backlog_bytes = 0;
};

class Copy {
 public:
  Copy(NodeId self, Options opt = {});

  // After a restart with a persistent engine, before configure(): the engine holds every entry
  // through `lsn` durably, the last of them created in `epoch`. (A memory engine skips this:
  // it restarts empty.) The in-memory log is gone, so a lagging replica of this copy gets a
  // snapshot.
  void recover(uint64_t lsn, uint64_t epoch);
  // The same, when the engine holds part of a snapshot (Output::snapshot_progress was kept):
  // the copy holds no LSN, but asks its primary to resume the transfer rather than start over.
  void recover_partial(uint64_t lsn, uint64_t epoch, uint64_t source, std::string next_key);
  // Replica: the engine did not take (part of) the snapshot applied last (its disk refused
  // it): the copy holds nothing, and asks for a whole snapshot.
  void snapshot_failed(int64_t now_ms);

  // Installs a decided configuration (called for every new epoch, in epoch order; an older or
  // equal epoch is ignored). last_lsn continues from what this copy holds. kInvalidArgument
  // (nothing changes) when the configuration is malformed: write_quorum 0 or above the number
  // of copies, the primary among the replicas, a replica listed twice.
  Status configure(const Config& c, int64_t now_ms);

  // Primary only: numbers a write's effect. kUnavailable if not the primary, fenced, or the
  // backlog is full (the message says which); kInvalidArgument for an empty effect (reserved
  // for barriers).
  Result<uint64_t> append(Effect effect, int64_t now_ms);
  // Local durability: entries through `lsn` are as durable as the engine promises.
  void durable(uint64_t lsn, int64_t now_ms);
  // Replica: the engine could not apply the entry at `lsn` (its disk is full or failing), so
  // neither it nor any entry after it is held: they are forgotten (never acknowledged) and the
  // primary sends them again after its next Append meets the mismatch. Ignored on a primary,
  // for an LSN already durable, or beyond what the copy has.
  void apply_failed(uint64_t lsn, int64_t now_ms);
  // Primary: sends the entries appended so far to every replica now, within each replica's
  // in-flight window, instead of waiting for the previous Append's ack (append() sends at
  // once only to an idle replica). The runtime calls it once per batch of writes.
  void ship(int64_t now_ms);
  bool can_serve_reads(int64_t now_ms) const;
  bool is_primary() const;

  // Primary: the learners of this epoch (replacing the previous list; the epoch does not
  // change). A new learner is streamed to from the primary's last LSN (a mismatch brings it a
  // snapshot). kInvalidArgument if one is the primary or a replica, or is listed twice.
  Status set_learners(std::vector<NodeId> learners, int64_t now_ms);
  // Planned handover (rebalancing): this primary stops taking writes and serving reads, but
  // keeps streaming what it has to its replicas and learners, so that `to` (a replica or a
  // learner, or this primary itself when it stays primary) and every learner come to hold
  // every entry — hence every write this primary acknowledged. Once handover_done(), the
  // metadata may switch to epoch + 1 with `to` as primary and the learners as copies: nothing
  // can be acknowledged here any more, and every acknowledged write is on write_quorum copies
  // of the new configuration (the primary and each learner hold all of them; the replicas
  // kept hold what they held). There is no way back except a new configuration.
  // kInvalidArgument if `to` is not this primary, a replica or a learner; kUnavailable if not
  // the primary.
  Status hand_over(NodeId to, int64_t now_ms);
  // This primary, the handover target and every learner hold (durably) every entry this
  // primary has.
  bool handover_done() const;
  NodeId handing_over_to() const { return handover_to_; }
  // Primary: how far a replica or learner is: (durably acknowledged LSN, snapshot streaming).
  // nullopt if it is not one.
  struct PeerProgress {
    uint64_t acked = 0;
    bool snapshotting = false;
  };
  std::optional<PeerProgress> progress(NodeId peer) const;

  void receive(NodeId from, const Message& m, int64_t now_ms);
  void tick(int64_t now_ms);

  // Primary, snapshot to `to` (after it was listed in Output::snapshot_needed): begin_snapshot
  // returns the SnapshotBegin to send (its LSN is the primary's last LSN now; the runtime
  // scans the engine from here on); each batch of effects goes out as the SnapshotChunk that
  // snapshot_chunk() returns, the last one with last = true; after it the replica is streamed
  // the log from snapshot_lsn + 1.
  SnapshotBegin begin_snapshot(NodeId to, int64_t now_ms);
  SnapshotChunk snapshot_chunk(NodeId to, std::vector<std::string> effects, bool last,
                               int64_t now_ms, std::string next_key = {});
  // Primary: the transfer to `to` now streaming (a number that changes when it is begun
  // again, e.g. resumed from where the replica says it is), or nullopt when none is: the
  // runtime stops scanning for a transfer that is no longer current.
  std::optional<uint64_t> snapshot_id(NodeId to) const;
  // Primary: `to` waits for begin_snapshot() (listed in snapshot_needed).
  bool snapshot_wanted(NodeId to) const;
  // Primary: the transfer to `to` stops (its link went down: it may be restarting). The peer is
  // probed again as a new one would be; its answer says whether to resume (it kept part) or
  // start over.
  void abandon_snapshot(NodeId to, int64_t now_ms);

  Output take_output();
  // What the engine holds of this partition once the output taken so far is applied: the
  // (lsn, epoch) of the last entry, or (0, 0) while a snapshot is being installed (the engine
  // holds part of one, which no LSN describes). The runtime keeps it with the data
  // (storage::Engine::set_log_mark) and hands it to recover() after a restart.
  std::pair<uint64_t, uint64_t> held() const {
    if (snap_in_progress_ || settling_) return {0, 0};
    return {last_, last_epoch_};
  }
  // Replica: all the keys of a transfer are in, but they may hold effects of entries past the
  // copy's log (writes the primary made while it scanned, uncommitted ones among them): until
  // the log reaches SnapshotChunk::settle_lsn the copy claims no LSN (held() is (0, 0)), is not
  // in sync, grants no lease, acknowledges nothing as durable, and is dropped by a new epoch.
  // Otherwise a failover to a primary that never had those writes would leave them here for
  // good (no log entry would ever touch those keys again). The engine keeps this mark instead
  // of an LSN: the transfer resumes from the last chunk's first key after a restart.
  std::optional<Output::SnapshotProgress> settling_mark() const {
    if (!settling_) return std::nullopt;
    return Output::SnapshotProgress{snap_lsn_, snap_epoch_, snap_source_, settle_key_};
  }
  // Whether take_output() has anything to do (the runtime's timer skips copies without).
  bool has_output() const {
    return !out_.send.empty() || !out_.apply.empty() || out_.reset_partition ||
           !out_.apply_snapshot.empty() || out_.snapshot_done_lsn != 0 || !out_.snapshot_needed.empty();
  }
  CopyStatus status(int64_t now_ms) const;
  uint64_t last_lsn() const { return last_; }
  uint64_t committed_lsn() const { return commit_; }
  // Primary: the highest LSN durably held by `k` copies (the primary counted, learners not):
  // what a write that asks for its own quorum waits for (a named cache's writeQuorum). With k
  // equal to the configured write_quorum this is committed_lsn(). k above write_quorum also
  // waits for committed_lsn() (so the epoch rule holds); k below it may be answered before the
  // write is committed, and such a write is lost if the primary is lost before it commits. k
  // is capped at the number of copies. 0 on a replica.
  uint64_t held_by(uint32_t k) const;
  // Replica: the last time (now_ms of the call) it received an Append after which it held
  // every entry up to the primary's commit LSN carried in it — so it reflected every write
  // acknowledged before the primary sent it. INT64_MIN if never since it became a replica in
  // its current epoch, or if it is not a replica. Reads served by a replica are at most
  // (now - fresh_as_of_ms()) plus one message's flight behind the primary.
  int64_t fresh_as_of_ms() const { return role_ == Role::kReplica ? fresh_as_of_ms_ : INT64_MIN; }
  // Primary of its epoch, not fenced for a newer one and not handing over: a write may be
  // applied and appended.
  bool writable() const { return role_ == Role::kPrimary && !fenced() && handover_to_ == 0; }
  uint64_t last_epoch() const { return last_epoch_; }
  const Config& config() const { return cfg_; }

 private:
  struct Peer {
    NodeId id = 0;
    uint64_t next = 1;        // next LSN to send
    uint64_t acked = 0;       // durable on the replica (acks of this epoch)
    uint64_t received = 0;    // received by the replica (acks of this epoch)
    int64_t last_send_ms = INT64_MIN / 2;
    int64_t last_progress_ms = 0;  // last ack that moved received/acked, or (re)start
    int64_t lease_until_ms = INT64_MIN / 2;  // primary clock
    bool want_snapshot = false;  // listed in snapshot_needed, waiting for begin_snapshot
    bool snapshotting = false;   // chunks being sent
    uint64_t snap_lsn = 0;
    uint32_t snap_seq = 0;
    uint64_t snap_id = 0;        // transfers begun to this peer
    std::optional<AppendAck> resume;  // begin_snapshot() continues this interrupted transfer
    std::string snap_from_key;        // where the transfer under way began (resumed)
    bool snap_resumed = false;
    bool learner = false;  // counts for neither the write quorum nor the lease
    bool heard = false;    // it answered in this epoch: `received` is where it is
  };

  void see(int64_t now_ms);
  uint64_t epoch_at(uint64_t lsn, bool* known) const;
  size_t bytes_between(uint64_t from_lsn, uint64_t to_lsn) const;  // entries (from, to]
  void push_entry(Entry e);
  void trim_log();
  void flush(int64_t now_ms, bool only_idle);
  void send_to(Peer& p, int64_t now_ms);
  void pump(Peer& p, int64_t now_ms);
  void advance_commit();
  void on_append(NodeId from, const Append& a, int64_t now_ms);
  void on_ack(NodeId from, const AppendAck& a, int64_t now_ms);
  void on_snapshot_begin(NodeId from, const SnapshotBegin& b, int64_t now_ms);
  void interrupt_snapshot(int64_t now_ms);
  void drop_partial();
  // Forgets the log and every LSN, and drops the partition's data (reset_partition).
  void hold_nothing();
  bool resumable_from(const AppendAck& a) const;
  void on_snapshot_chunk(NodeId from, SnapshotChunk c, int64_t now_ms);
  void on_fence(NodeId from, const Fence& f, int64_t now_ms);
  void abort_snapshot(int64_t now_ms);
  void send_ack(bool mismatch, int64_t now_ms);
  void answer_fences(int64_t now_ms);
  bool in_sync() const;  // what a FenceAck says: this copy holds every write committed before its epoch
  bool fenced() const { return fenced_epoch_ > cfg_.epoch; }
  Peer* peer(NodeId id);
  Peer new_peer(NodeId id, bool learner, int64_t now_ms) const;
  uint64_t kth_held(uint32_t k) const;
  size_t lease_grants_needed() const;

  NodeId self_;
  Options opt_;
  Config cfg_;
  Role role_ = Role::kNone;
  uint64_t last_ = 0, last_epoch_ = 0, durable_ = 0, commit_ = 0;
  uint64_t epoch_start_ = 0;  // primary: LSN of this epoch's barrier
  uint64_t fenced_epoch_ = 0;
  NodeId handover_to_ = 0;  // primary handing over (0: not)
  // The log: entries log_[i] has LSN log_first_ + i; entries before it were trimmed (their
  // positions are known only as base_lsn_/base_epoch_, the entry just before log_first_).
  // A deque: trimming the front costs what it drops, not what stays (a log kept for a lagging
  // copy holds megabytes above the trim point).
  std::deque<Entry> log_;
  // cum_bytes_[i]: bytes (effects and per-entry overhead) of every entry through log_[i] since
  // the copy began counting; base_cum_ the same through the entry before log_first_. Absolute,
  // so trimming needs no adjustment.
  std::deque<uint64_t> cum_bytes_;
  uint64_t base_cum_ = 0;
  uint64_t log_first_ = 1;
  uint64_t base_lsn_ = 0, base_epoch_ = 0;
  std::vector<Peer> peers_;
  // Replica state.
  int64_t last_append_sent_ms_ = 0;  // echo for acks sent from durable()
  bool clock_seen_ = false;
  int64_t promise_until_ms_ = 0;  // no Fence answered before this (own clock)
  std::vector<std::pair<NodeId, uint64_t>> pending_fences_;  // (manager, new_epoch)
  bool snap_in_progress_ = false;
  int64_t fresh_as_of_ms_ = INT64_MIN;
  uint64_t snap_lsn_ = 0, snap_epoch_ = 0;
  uint32_t snap_next_seq_ = 0;
  uint64_t snap_done_lsn_ = 0;
  std::string snap_next_key_;  // where the transfer in progress goes on
  bool settling_ = false;      // see settling_mark()
  uint64_t settle_lsn_ = 0;
  std::string settle_key_;     // the first key of the transfer's last chunk
  bool snap_resumed_ = false;  // it continues a transfer whose first part the engine holds
  // An interrupted transfer whose keys the engine keeps (before partial_key_, of the transfer
  // begun at partial_lsn_): the copy holds no LSN, and its acks ask to resume.
  bool partial_ = false;
  bool partial_announced_ = false;  // a chunk of the old stream was answered with the ask
  uint64_t partial_lsn_ = 0, partial_epoch_ = 0, partial_source_ = 0;
  uint64_t snap_source_ = 0;
  // Bumped whenever entries this copy held are dropped (restart, snapshot, refused apply): a
  // transfer it streamed can be resumed only while its log still has what it had then.
  uint64_t log_generation_ = 0;
  uint64_t source_token() const { return opt_.source ^ (log_generation_ * 0x9E3779B97F4A7C15ull); }
  std::string partial_key_;
  Output out_;
};

// From FenceAcks gathered for epoch c.epoch + 1, the copy to promote: the highest
// (last_epoch, last_lsn), ties broken by replica order (then the old primary). Answers count
// only from members of c; enough means at least fence_quorum(c) answers from copies that were
// configured in c.epoch and in sync (ack.epoch == c.epoch && ack.in_sync), or an answer from
// every member of c (after a total outage, restarted copies answer with what they recovered).
// nullopt if too few.
std::optional<NodeId> choose_new_primary(const Config& c, const std::vector<std::pair<NodeId, FenceAck>>& acks);

}  // namespace keel::replication
